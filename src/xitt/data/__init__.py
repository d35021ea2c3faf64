"""Tasks, readers, tokenisation and the Lightning DataModule."""
