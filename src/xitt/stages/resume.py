"""Preemption: a training stage that is told to stop saves a checkpoint, and the next
attempt of the same stage resumes from it instead of starting over.

SLURM warns a job with a signal before its time limit or when it is preempted (submitit
asks for SIGUSR2, `signal_delay_s` seconds ahead; a plain `scancel` sends SIGTERM).
While a stage trains, `PreemptionGuard` catches SIGUSR1, SIGUSR2 and SIGTERM and only
notes them: stopping in the middle of an optimizer step would leave nothing to resume
from. `StageCheckpoints` (a Lightning callback) then saves `last.ckpt` in the artifact's
work folder (`<store>/<kind>/.work-<key>/`, see `ArtifactStore.work_dir`) at the end of
the batch, and hands the signal on to whoever handled it before: submitit requeues the
job and exits; without submitit the process exits with status 128 + signal number. The
checkpoint is also written every `trainer.checkpoint_every_n_epochs` epochs (default 1),
unless the previous one is younger than `trainer.checkpoint_min_interval_s` (default 60 s),
so a job killed without warning loses at most that many epochs or that long.

When the stage runs again (the requeued job, or the same command run by hand), `fit`
finds `last.ckpt` and passes it to `trainer.fit(ckpt_path=...)`: weights, optimizer,
scheduler, loop state and random state (dropout) continue where they stopped, and the
training batches of an interrupted epoch continue with the ones not yet trained
(`ShardedBatchSampler`'s resume): the resumed stage ends with the model an uninterrupted
one would have.
"""

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from xitt.core.store import write_json_atomic

log = logging.getLogger(__name__)
CHECKPOINT = "last.ckpt"
CHECKPOINT_INFO = "last.json"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2", "SIGTERM") if hasattr(signal, name))


class Preempted(SystemExit):
    """The stage saved its checkpoint and the process is leaving because it was told to.
    A SystemExit, so that the grid's per-cell error handling does not record it as a
    failed cell, and the process ends with status 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.message = message


class PreemptionGuard:
    """While active, stop signals are noted (`signum`) instead of acted on; `pass_on`
    later gives the noted signal to the handler that was installed before."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():  # signals are main-thread only
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            log.warning("Received %s: the stage saves a checkpoint at the end of this batch, then stops.",
                        signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        if self.signum is not None and exc_info[0] is None:
            # Noted after the last batch: training finished, so there is nothing to save;
            # the signal still takes its effect now.
            self.pass_on()

    def pass_on(self, message: str | None = None) -> None:
        """Give the noted signal to the previous handler (submitit's requeues and exits);
        if that was the default action or it returned, leave with `Preempted`."""
        signum = self.signum
        handler = self._previous.get(signum, signal.getsignal(signum))
        if callable(handler):
            handler(signum, None)
        raise Preempted(signum, message or f"Stopped by {signal.Signals(signum).name}.")


@dataclass
class ResumePoint:
    path: Path
    epochs_done: int  # whole epochs done: training resumes in epoch `epochs_done` (0-based)
    global_step: int
    batches_done: int  # batches of that epoch already trained (0 for an epoch-end checkpoint)


class StageCheckpoints(pl.Callback):
    """Saves the stage's resumable state in its work folder at each epoch end and when a
    stop signal was noted, and tells where to resume from."""

    def __init__(self, work_dir: Path, guard: PreemptionGuard, describe: str, every_n_epochs: int = 1,
                 min_interval_s: float = 0.0):
        self.work_dir = Path(work_dir)
        self.guard = guard
        self.describe = describe  # "Cell <name>: ITT", for the log
        self.every_n_epochs = every_n_epochs  # 0: only when signalled
        self.min_interval_s = min_interval_s
        self._last_saved = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_saved = time.monotonic()

    def resume_point(self) -> ResumePoint | None:
        import json

        checkpoint, info = self.work_dir / CHECKPOINT, self.work_dir / CHECKPOINT_INFO
        if not (checkpoint.exists() and info.is_file()):
            return None
        saved = json.loads(info.read_text())
        return ResumePoint(checkpoint, int(saved["epochs_done"]), int(saved["global_step"]),
                           int(saved.get("batches_done", 0)))

    def _save(self, trainer: pl.Trainer, epochs_done: int, reason: str, batches_done: int = 0) -> None:
        """Write the checkpoint under a temporary name and rename it, so that a job killed
        while saving leaves the previous checkpoint whole."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        partial = self.work_dir / f"{CHECKPOINT}.partial"
        trainer.save_checkpoint(partial, weights_only=False)  # all ranks: sharded strategies write shards
        if trainer.is_global_zero:
            final = self.work_dir / CHECKPOINT
            if final.is_dir():  # sharded checkpoints are folders; os.replace cannot overwrite one
                import shutil

                shutil.rmtree(final)
            os.replace(partial, final)
            write_json_atomic(self.work_dir / CHECKPOINT_INFO, {
                "epochs_done": epochs_done, "batches_done": batches_done, "global_step": trainer.global_step,
                "reason": reason,
                "saved": datetime.now(timezone.utc).isoformat()})
        trainer.strategy.barrier("stage checkpoint saved")
        self._last_saved = time.monotonic()

    def _stop_if_signalled(self, trainer: pl.Trainer, epochs_done: int, batches_done: int = 0) -> None:
        # Every rank must stop at the same point: the signal may have reached only some.
        if not trainer.strategy.reduce_boolean_decision(self.guard.signum is not None, all=False):
            return
        self._save(trainer, epochs_done, "preempted", batches_done)
        if self.guard.signum is None:  # this rank did not get the signal itself
            self.guard.signum = signal.SIGTERM
        message = (f"{self.describe}: stopped by {signal.Signals(self.guard.signum).name} at epoch {epochs_done}, "
                   f"step {trainer.global_step}, after saving a checkpoint in {self.work_dir}. Run the same "
                   f"command again to resume from it (a job submitted with launcher=slurm is requeued "
                   f"and resumes by itself).")
        log.warning(message)
        self.guard.pass_on(message)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # The random state goes with the weights: the resumed stage draws the dropout masks
        # the uninterrupted one would have drawn next.
        checkpoint["xitt_rng"] = {"torch": torch.get_rng_state(),
                                  "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get("xitt_rng")
        if state:
            torch.set_rng_state(state["torch"])
            if state["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._stop_if_signalled(trainer, trainer.current_epoch, batch_idx + 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        # Not after the last epoch: the artifact itself is written next.
        if not (self.every_n_epochs and done % self.every_n_epochs == 0 and done < trainer.max_epochs):
            return
        # Every rank must agree on skipping (saving is collective): rank 0's clock decides.
        if not trainer.strategy.broadcast(time.monotonic() - self._last_saved < self.min_interval_s):
            self._save(trainer, done, "epoch end")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_signalled(trainer, trainer.current_epoch)  # a signal after the last batch
