"""The artifact store: every stage output lives under the hash of what determines it.

Writes are atomic (build in a temporary folder, then rename), so a reader sees a whole
artifact or none; a per-artifact file lock makes concurrent jobs that need the same
artifact train it once: the first builds, the others wait and then reuse it. The lock is
an OS lock (flock), so a job that dies releases it and a waiting job takes over.
"""

import json
import os
import platform
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from xitt import XittError, __version__

META_FILE = "meta.json"


def library_versions() -> dict[str, str]:
    """The versions that a stored artifact or a result record was produced with."""
    import datasets
    import pytorch_lightning
    import torch
    import transformers

    return {
        "xitt": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "datasets": datasets.__version__,
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON under a temporary name and rename it, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class ArtifactStore:
    """Artifacts of one kind (`itt`, `target`, `tokenizer`) live in `<root>/<kind>/<key>/`,
    each with a `meta.json` (config, metrics, timings, versions) written last."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 6 * 3600):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / META_FILE).is_file()

    def meta(self, kind: str, key: str) -> dict:
        return json.loads((self.path(kind, key) / META_FILE).read_text())

    def events(self) -> list[dict]:
        """The build log: one entry per artifact this store has built."""
        log = self.root / "events.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def get_or_build(
        self, kind: str, key: str, build: Callable[[Path], dict | None], config: dict
    ) -> Path:
        """Return the artifact's folder, building it first with `build(tmp_dir)` (which
        returns its metrics) unless it is already stored or being built by another job."""
        final = self.path(kind, key)
        if self.has(kind, key):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final) + ".lock", timeout=self.lock_timeout_s)
        try:
            with lock:
                if self.has(kind, key):  # another job built it while this one waited
                    return final
                self._remove_leftovers(final)
                tmp = final.with_name(f".tmp-{key}-{uuid.uuid4().hex[:8]}")
                tmp.mkdir()
                try:
                    started = time.time()
                    metrics = build(tmp) or {}
                    meta = {
                        "kind": kind,
                        "key": key,
                        "config": config,
                        "metrics": metrics,
                        "timings": {"build_s": round(time.time() - started, 3)},
                        "versions": library_versions(),
                        "created": datetime.now(timezone.utc).isoformat(),
                        "host": socket.gethostname(),
                    }
                    write_json_atomic(tmp / META_FILE, meta)
                    os.rename(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                self._log_event(kind, key, meta["timings"]["build_s"])
                return final
        except Timeout:
            raise XittError(
                f"Waited {self.lock_timeout_s:.0f} s for another job to finish building the "
                f"{kind} artifact {key} (lock {lock.lock_file}). If no job is building it, the "
                f"lock belongs to a hung process: stop that process, or raise "
                f"`store.lock_timeout_s` if the build is just slow."
            ) from None

    def _remove_leftovers(self, final: Path) -> None:
        """Drop half-built folders of this key left by a job that died: we hold the lock,
        so nobody else is writing them."""
        for leftover in final.parent.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if final.exists():  # a folder without meta.json is not an artifact
            shutil.rmtree(final)

    def _log_event(self, kind: str, key: str, build_s: float) -> None:
        entry = {"event": "built", "kind": kind, "key": key, "build_s": build_s,
                 "pid": os.getpid(), "host": socket.gethostname(),
                 "time": datetime.now(timezone.utc).isoformat()}
        # One short write in append mode: concurrent jobs do not interleave lines.
        with open(self.root / "events.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
