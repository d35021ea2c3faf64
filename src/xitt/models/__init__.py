"""Encoders (any HF id or local folder, or tiny ones built from a config), heads,
freezing, and the LightningModule that trains them."""
