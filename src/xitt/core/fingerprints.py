"""What a local file holds, as a short hash: part of the key of every artifact built from it,
so that a data file or a checkpoint edited in place is never answered from a stale artifact.

The hash is of the whole content (sha256): an edit that keeps a file's size (one label
changed for another of the same length) changes it too. To stay cheap for multi-GB files it
is computed once per version of a file: remembered beside the file's size, modification
time and inode, in memory and, for files of a megabyte or more (smaller ones hash in less
time than the cache takes to read), in `<XITT_CACHE or ~/.cache/xitt>/fingerprints.json`, so
that later runs pay one `stat` per file. A file modified within the last few seconds is not
remembered (the clock may not have ticked between two edits; git's "racily clean" rule).
Copying or touching a file costs one new hash and gives the same fingerprint.
"""

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from xitt.core.jobs import cache_dir

FINGERPRINTS_FILE = "fingerprints.json"
CHUNK = 4 * 1024 * 1024
RACY_S = 3.0
REMEMBERED_MIN_BYTES = 1 << 20
_memory: dict[str, tuple[tuple[int, int, int], str]] = {}


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _cache_path() -> Path:
    return Path(cache_dir()) / FINGERPRINTS_FILE


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember(path: str, signature: tuple[int, int, int], digest: str) -> None:
    _memory[path] = (signature, digest)
    if signature[0] < REMEMBERED_MIN_BYTES:
        return
    cache = {known: entry for known, entry in _read_cache().items() if os.path.exists(known)}
    cache[path] = [*signature, digest]
    target = _cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, target)  # a concurrent job's entries may be lost: they are computed again
    except OSError:
        pass  # a read-only home: fingerprints are then computed once per process


def file_fingerprint(path: str | Path) -> str | None:
    """The sha256 (16 hex digits) of a file's content; None when there is no such file (the
    asset check says so before anything trains)."""
    path = os.path.realpath(path)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    signature = _signature(stat)
    known = _memory.get(path)
    if known is None and signature[0] >= REMEMBERED_MIN_BYTES:
        stored = _read_cache().get(path)
        known = (tuple(stored[:3]), stored[3]) if isinstance(stored, list) and len(stored) == 4 else None
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()[:16]
    if time.time() - stat.st_mtime_ns / 1e9 > RACY_S:
        _remember(path, signature, value)
    return value


def folder_fingerprint(folder: str | Path) -> dict[str, str | None]:
    """Each file of a folder (a checkpoint: config, weights, tokenizer), by its path inside
    it; hidden files and folders (`.cache`, `.git`) and documentation (`*.md`: a model card,
    a provenance note) are left out."""
    root = Path(folder)
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix != ".md"
                   and not any(part.startswith(".") for part in path.relative_to(root).parts))
    return {str(path.relative_to(root)): file_fingerprint(path) for path in files}
