"""The artifact store: every stage output lives under the hash of what determines it.

Writes are atomic (build in a temporary folder, then rename), so a reader sees a whole
artifact or none; a per-artifact file lock makes concurrent jobs that need the same
artifact train it once: the first builds, the others wait and then reuse it. The lock is
an OS lock (flock), so a job that dies releases it and a waiting job takes over, removing
the dead job's half-written temporary folder first.
"""

import json
import logging
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
from xitt.core.ranks import Ranks

META_FILE = "meta.json"
log = logging.getLogger(__name__)


def artifact_problem(folder: Path) -> str | None:
    """What is wrong with a stored artifact, or None: its meta.json must be JSON, and each
    safetensors file must have a whole header and the data it announces (read without
    loading the weights)."""
    from safetensors import SafetensorError, safe_open

    try:
        json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as error:
        return f"{META_FILE} is not readable JSON: {error}"
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="numpy"):
                pass
        except (OSError, SafetensorError) as error:
            return f"{weights.name}: {error}"
    return None


def library_versions() -> dict[str, str]:
    """The versions that a stored artifact or a result record was produced with (read from
    the installed packages' metadata: a process that stores without training, such as a
    tokenizer build, need not import them)."""
    from importlib.metadata import version

    return {
        "xitt": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "pytorch_lightning": version("pytorch-lightning"),
        "datasets": version("datasets"),
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON under a temporary name and rename it, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class ArtifactStore:
    """Artifacts of one kind (`itt`, `target`, `tokenizer`) live in `<root>/<kind>/<key>/`,
    each with a `meta.json` (config, metrics, timings, versions) written last.

    Beside them, `<root>/<kind>/.work-<key>/` holds what an unfinished build keeps across a
    crash or a preemption (training checkpoints); it is removed once the artifact is stored.

    In a multi-process job (`ranks`, see `xitt.stages.ranks`) only rank 0 takes the lock,
    decides and writes; the other ranks follow its decision, train along when the build is
    collective (a `trainer.fit`), and read the artifact after rank 0 has stored it."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 6 * 3600, ranks: Ranks | None = None,
                 lock_poll_s: float = 10.0):
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s
        self.ranks = ranks or Ranks()
        # How often rank 0 tells the other ranks that it is still waiting for another job's
        # lock: short enough to stay inside the process group's collective timeout.
        self.lock_poll_s = lock_poll_s

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def work_dir(self, kind: str, key: str) -> Path:
        """Where a build keeps its resumable state (checkpoints) until the artifact is stored."""
        return self.root / kind / f".work-{key}"

    def has(self, kind: str, key: str) -> bool:
        """Whether the artifact is stored whole. One that is not (a meta.json that is not
        JSON, a truncated or corrupted safetensors file) counts as absent: its stage builds
        it again, and moves the broken one aside first (`_remove_leftovers`)."""
        folder = self.path(kind, key)
        if not (folder / META_FILE).is_file():
            return False
        problem = artifact_problem(folder)
        if problem:
            log.warning("The %s artifact %s is damaged (%s): it will be rebuilt.", kind, folder, problem)
        return problem is None

    def meta(self, kind: str, key: str) -> dict:
        return json.loads((self.path(kind, key) / META_FILE).read_text())

    def events(self) -> list[dict]:
        """The build log: one entry per artifact this store has built."""
        log = self.root / "events.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def get_or_build(
        self, kind: str, key: str, build: Callable[[Path | None], dict | None], config: dict,
        *, collective: bool = False,
    ) -> Path:
        """Return the artifact's folder, building it first with `build(tmp_dir)` (which
        returns its metrics) unless it is already stored or being built by another job.

        `collective=True` marks a build that all ranks of the job must run together (it
        trains); rank 0 gets the folder to write, the others `None`. A build that is not
        collective runs on rank 0 alone while the others wait."""
        final = self.path(kind, key)
        if self.ranks.world_size == 1 and self.has(kind, key):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final) + ".lock") if self.ranks.is_zero else None
        try:
            if self._claim(kind, key, lock) == "stored":
                return final
            self._build(kind, key, build, config, collective)
            return final
        finally:
            if lock is not None and lock.is_locked:
                lock.release()

    def _claim(self, kind: str, key: str, lock: FileLock | None) -> str:
        """`stored` when the artifact exists, `claimed` when rank 0 now holds its lock and
        this job builds it. Rank 0 waits for another job's build in short turns and tells
        the other ranks after each turn, so that no collective waits for hours."""
        single = self.ranks.world_size == 1
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            state = None
            if lock is not None:  # rank 0
                if self.has(kind, key):
                    state = "stored"
                else:
                    remaining = max(0.0, deadline - time.monotonic())
                    try:
                        lock.acquire(timeout=remaining if single else min(self.lock_poll_s, remaining))
                        state = "stored" if self.has(kind, key) else "claimed"  # built while we waited?
                    except Timeout:
                        state = "timeout" if time.monotonic() >= deadline else "waiting"
            state = self.ranks.broadcast(state)
            if state == "timeout":
                raise XittError(
                    f"Waited {self.lock_timeout_s:.0f} s for another job to finish building the "
                    f"{kind} artifact {key} (lock {self.path(kind, key)}.lock). If no job is building it, "
                    f"the lock belongs to a hung process: stop that process, or wait longer with "
                    f"`+store_lock_timeout_s=<seconds>` if the build is just slow."
                )
            if state != "waiting":
                return state

    def _build(self, kind: str, key: str, build: Callable[[Path | None], dict | None], config: dict,
               collective: bool) -> None:
        """Rank 0 (holding the lock) builds into a temporary folder and renames it into
        place; the other ranks build along when the build is collective; then all meet."""
        final = self.path(kind, key)
        tmp = None
        if self.ranks.is_zero:
            self._remove_leftovers(final)
            tmp = final.with_name(f".tmp-{key}-{uuid.uuid4().hex[:8]}")
            tmp.mkdir()
        try:
            started = time.time()
            metrics = (build(tmp) or {}) if tmp is not None or collective else {}
            if tmp is not None:
                meta = {
                    "kind": kind,
                    "key": key,
                    "config": config,
                    "metrics": metrics,
                    "timings": {"build_s": round(time.time() - started, 3)},
                    "versions": library_versions(),
                    "created": datetime.now(timezone.utc).isoformat(),
                    "host": socket.gethostname(),
                    "world_size": self.ranks.world_size,
                }
                write_json_atomic(tmp / META_FILE, meta)
                os.rename(tmp, final)
                shutil.rmtree(self.work_dir(kind, key), ignore_errors=True)
                self._log_event(kind, key, meta)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.ranks.barrier("artifact stored")

    def _remove_leftovers(self, final: Path) -> None:
        """Drop half-built folders of this key left by a job that died: we hold the lock,
        so nobody else is writing them. (The work folder stays: it is how a build resumes.)
        A damaged artifact in the final place is moved aside (`<key>.corrupt-<time>`), kept
        for whoever wants to know what happened to it."""
        for leftover in final.parent.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if final.exists():
            aside = final.with_name(f"{final.name}.corrupt-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}")
            os.rename(final, aside)
            log.warning("Moved the damaged artifact %s aside to %s.", final, aside)

    def _log_event(self, kind: str, key: str, meta: dict) -> None:
        entry = {"event": "built", "kind": kind, "key": key, "build_s": meta["timings"]["build_s"],
                 "pid": os.getpid(), "host": socket.gethostname(), "world_size": meta["world_size"],
                 "time": datetime.now(timezone.utc).isoformat()}
        resumed = meta["metrics"].get("resumed_from_epoch")
        if resumed is not None:
            entry["resumed_from_epoch"] = resumed
        # One short write in append mode: concurrent jobs do not interleave lines.
        with open(self.root / "events.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
