"""Content keys: an artifact's identity is the hash of exactly what determines it."""

import hashlib
import json
from typing import Any

# Bump when the meaning of a stored artifact changes, so that old ones are not reused.
STORE_FORMAT = 3  # 2: seeded heads, reshuffled epochs, resumable random state; 3: length-grouped batches


def content_key(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (dict order does not matter)."""
    text = json.dumps({"format": STORE_FORMAT, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
