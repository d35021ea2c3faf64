"""Running cells as Hydra jobs: deterministic directories, one outcome file per cell,
failures recorded without stopping the grid, and a summary when the grid ends.

Kept light on imports: the stages (and torch) load only when a cell runs, so that Hydra
answers `--help` and config errors at once.
"""

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from xitt import XittError
from xitt.core.jobs import in_multirun, is_global_zero, precision_hint, set_math_threads, uses_gpu
from xitt.core.naming import SWEEP_ENV
from xitt.core.cell import Cell
from xitt.core.records import (cell_results_dir, format_scores, pending_langs, primary_score, read_records,
                               record_path)
from xitt.core.store import write_json_atomic
from xitt.core.validate import typed
from xitt.grid_expand import expand_grid
from xitt.memory import memory_warnings

log = logging.getLogger("xitt")
OUTCOME_FILE = "cell.json"
RECORDS_FILE = "records.txt"
def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job = one cell. In a multirun, a failing cell is recorded with its reason
    and the grid goes on; in a single run, the error is shown as one paragraph."""
    hydra_cfg = HydraConfig.get()
    multirun = in_multirun()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = Path(hydra_cfg.sweep.dir).name if multirun else None
    outcome: dict[str, Any] = {"overrides": list(hydra_cfg.overrides.task), "job_dir": str(job_dir)}
    started = time.time()
    try:
        cell = Cell.from_config(cfg)  # every setting checked before anything loads
        outcome.update(cell=cell.name, cell_key=cell.cell_key)
        results_dir = cell_results_dir(cfg.paths.results, cell)
        if pending_langs(cell, results_dir):
            set_math_threads(typed(cfg.trainer.get("devices"), int) or 1, typed(cfg.get("num_workers"), int) or 0)
            hint = precision_hint(cfg.trainer)
            if hint and is_global_zero():
                log.info(hint)
            from xitt.stages.pipeline import CellRunner  # torch: only when a cell has work to do

            runner = CellRunner(cfg, sweep=sweep)
            records = runner.run()
            if not runner.ranks.is_zero:  # the other ranks of a multi-process job: rank 0 reports
                return outcome
            status = "skipped" if runner.skipped else "done"
        else:  # a finished cell answers without starting torch
            log.info("Cell %s: all %d languages already evaluated, nothing to train (skipped).",
                     cell.name, len(cell.eval_langs))
            records, status = read_records(results_dir, cell.eval_langs), "skipped"
        outcome.update(status=status, records=[str(record_path(results_dir, r["lang"]).resolve()) for r in records],
                       scores={r["lang"]: round(primary_score(r), 2) for r in records})
        if is_global_zero():
            (job_dir / RECORDS_FILE).write_text("".join(f"{path}\n" for path in outcome["records"]))
            print(format_scores(records), flush=True)
    except SystemExit as stop:  # preempted (xitt.stages.resume.Preempted): say where it stopped
        if getattr(stop, "message", None):
            print(f"\nxitt: {stop.message}", file=sys.stderr, flush=True)
        raise
    except Exception as error:
        outcome.update(status="failed", reason=str(error) if isinstance(error, XittError)
                       else f"{type(error).__name__}: {error}")
        if not isinstance(error, XittError):
            outcome["traceback"] = traceback.format_exc()
        if not multirun:
            _write_outcome(job_dir, outcome, started)
            if isinstance(error, XittError):
                print(f"\nxitt: {error}", file=sys.stderr)
                sys.exit(1)
            raise
        log.error("Cell %s failed: %s", outcome.get("cell", job_dir.name), outcome["reason"])
    _write_outcome(job_dir, outcome, started)
    return outcome


def _write_outcome(job_dir: Path, outcome: dict[str, Any], started: float) -> None:
    if not is_global_zero():  # one outcome per job, also when it fails on several ranks
        return
    outcome["seconds"] = round(time.time() - started, 2)
    # Atomic: the grid summary may read the outcomes of other cells while they are written.
    write_json_atomic(job_dir / OUTCOME_FILE, outcome)


def warn_about_gpu_memory(config: DictConfig) -> None:
    """Before a GPU grid is launched: say which of its training stages will not fit their
    GPUs (xitt.memory's estimate), while there is still time to change the settings.
    CPU grids skip the check (and its cost of composing every cell)."""
    if not uses_gpu(config.trainer):
        return

    try:
        warnings = [w for _, cfg in expand_grid(list(config.hydra.overrides.task)) for w in memory_warnings(cfg)]
    except XittError as error:  # the cells themselves will report it
        log.debug("Memory check skipped: %s", error)
        return
    for warning in dict.fromkeys(warnings):
        log.warning("GPU memory: %s", warning)


def check_output_root(config: DictConfig) -> None:
    """Before Hydra makes its job folders under `paths.root`: stop with one paragraph when
    the root cannot hold them (a file, a folder this user cannot write)."""
    root = Path(str(config.paths.root))
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".xitt-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = "it is a file" if root.is_file() else error.strerror.lower()
        print(f"\nxitt: The output root `paths.root={root}` cannot hold the run's folders ({reason}). "
              f"Point `paths.root` (or the XITT_ROOT variable) at a folder you can write, e.g. "
              f"`paths.root=outputs`.", file=sys.stderr, flush=True)
        sys.exit(1)


class GridSummary(Callback):
    """Before a run or grid: the output root is usable. At the end of a multirun: how many
    cells trained, were skipped or failed (and why)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_root(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_root(config)
        self.started = time.time()
        warn_about_gpu_memory(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        os.environ.pop(SWEEP_ENV, None)  # the next grid in this process gets its own name
        since = getattr(self, "started", 0.0) - 1
        outcomes = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}"))
                    if path.stat().st_mtime >= since]
        counts = {status: sum(o["status"] == status for o in outcomes) for status in ("done", "skipped", "failed")}
        print(f"\nGrid {sweep_dir}: {len(outcomes)} cells: {counts['done']} run, "
              f"{counts['skipped']} skipped (already done), {counts['failed']} failed.", flush=True)
        failed = [o for o in outcomes if o["status"] == "failed"]
        for outcome in failed:
            print(f"  FAILED {outcome.get('cell', outcome['job_dir'])}: {outcome['reason']}", flush=True)
        if failed:
            # Hydra turns exceptions raised in callbacks into warnings, so the exit status is
            # set by train.py from this list (see `grid_exit_status`).
            FAILED_GRIDS.append(sweep_dir)
            print(f"xitt: {len(failed)} of {len(outcomes)} cells failed; their reasons are above and in "
                  f"{sweep_dir}/*/{OUTCOME_FILE}. Fix them and run the same command again: finished "
                  f"cells are skipped.", file=sys.stderr, flush=True)


FAILED_GRIDS: list[Path] = []


def grid_exit_status() -> int:
    """Non-zero when a grid of this process had failing cells."""
    return 1 if FAILED_GRIDS else 0
