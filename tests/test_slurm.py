"""The grid on a real SLURM cluster: a one-node cluster on this machine
(`scripts/local-slurm.sh`), the demo grid submitted as a job array with
`launcher=slurm_local`, and a cell preempted with SLURM's warning signal that is
requeued and resumes from its checkpoint. Also where a sweep's W&B runs go."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_script, start_script
from xitt.core.store import ArtifactStore

SCRIPT = REPO / "scripts" / "local-slurm.sh"


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster: started here (installing slurm-wlm and munge if
    missing) unless one already runs, and stopped again at the end if started here."""
    if sys.platform != "linux":
        pytest.skip("the local SLURM cluster needs Linux")
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root (it installs packages and starts daemons)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install slurm-wlm and munge")
    was_running = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    if not was_running:
        started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        if started.returncode != 0:
            pytest.skip(f"the local SLURM cluster did not start:\n{_tail(started.stdout + started.stderr)}")
    yield
    if not was_running:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_grid_runs_as_a_slurm_job_array(slurm_cluster, tmp_path):
    started = time.time()
    result = run_script("train.py", "-m", "launcher=slurm_local", "model=tiny", "size=s", "itt=none,demo",
                        "logger=none", f"paths.root={tmp_path}", "+trainer.max_steps=20", timeout=900)
    assert result.returncode == 0, _tail(result.stdout + result.stderr, 60)
    assert "2 cells: 2 run, 0 skipped (already done), 0 failed" in result.stdout  # the sweep's GridSummary

    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")
               if not p.name.endswith(".predictions.json")]
    cells = {(r["size"], r["itt"]) for r in records}
    assert cells == {("s", "none"), ("s", "demo")}
    assert sorted((r["cell_key"], r["lang"]) for r in records) == sorted(
        {(r["cell_key"], r["lang"]) for r in records})  # one record per (cell, language)
    assert len(records) == 8 and all(r["n"] == 300 for r in records)
    events = ArtifactStore(tmp_path / "store").events()
    assert sum(e["kind"] == "itt" for e in events) == 1 and sum(e["kind"] == "target" for e in events) == 2

    # submitit's folder: one array job, one task per cell, logs in <sweep dir>/.submitit/<job>_<task>/
    [sweep_dir] = list((tmp_path / "multirun").iterdir())
    task_dirs = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    array_ids = {name.split("_")[0] for name in task_dirs}
    assert len(task_dirs) == 2 and len(array_ids) == 1, task_dirs
    assert sorted(name.split("_")[1] for name in task_dirs) == ["0", "1"]
    [array_id] = array_ids
    submission = (sweep_dir / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    assert re.search(r"#SBATCH --array=0-1%\d+", submission) and "#SBATCH --partition=debug" in submission
    outcomes = [json.loads(p.read_text()) for p in sweep_dir.glob("*/cell.json")]
    assert sorted(o["status"] for o in outcomes) == ["done"] * 2
    print(f"SLURM array {array_id}: 2 cells in {time.time() - started:.0f} s")


@pytest.mark.slow
def test_a_preempted_cell_is_requeued_and_resumes(slurm_cluster, tmp_path):
    """`scancel --signal=USR2` (what SLURM sends `signal_delay_s` before the time limit, and
    on preemption): the ITT stage saves a checkpoint, submitit requeues the job, and the
    requeued job resumes the stage from the checkpoint."""
    grid = start_script("train.py", "-m", "launcher=slurm_local", "logger=none", f"paths.root={tmp_path}",
                        "itt.hparams.epochs=3", "+trainer.limit_train_batches=40", "target.hparams.epochs=1",
                        "trainer.checkpoint_min_interval_s=0")
    itt_dir = tmp_path / "store" / "itt"
    job = None
    try:
        deadline = time.time() + 600
        while not list(itt_dir.glob(".work-*/last.json")):
            assert grid.poll() is None, _tail("".join(grid.communicate()), 60)
            assert time.time() < deadline, "the ITT stage did not finish its first epoch"
            time.sleep(0.3)
        # a one-cell grid is a plain job (not an array): <sweep dir>/.submitit/<job id>/
        job = next(p for p in (tmp_path / "multirun").glob("*/.submitit/*") if p.is_dir()).name
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        # SLURM holds a requeued job for a while (Reason=BeginTime); let it start at once.
        deadline = time.time() + 120
        while grid.poll() is None and time.time() < deadline:
            reason = subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True).stdout
            if reason.strip() == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                break
            time.sleep(0.5)
        out = "".join(grid.communicate(timeout=900))  # its stdout, then its stderr
    finally:
        if grid.poll() is None:
            if job:
                subprocess.run(["scancel", job])
            grid.kill()
    assert grid.returncode == 0, _tail(out, 60)
    assert "1 cells: 1 run" in out

    itt_key = next(e["key"] for e in ArtifactStore(tmp_path / "store").events() if e["kind"] == "itt")
    meta = ArtifactStore(tmp_path / "store").meta("itt", itt_key)
    assert meta["metrics"]["resumed_from_epoch"] >= 1 and meta["metrics"]["steps"] == 3 * 40
    task_log = next((tmp_path / "multirun").glob(f"*/.submitit/{job}/{job}_0_log.err")).read_text()
    assert "Caught signal SIGUSR2" in task_log and "DUE TO JOB REQUEUE" in task_log, _tail(task_log, 40)
    task_out = next((tmp_path / "multirun").glob(f"*/.submitit/{job}/{job}_0_log.out")).read_text()
    assert "resuming itt from epoch" in task_out


def test_sweep_jobs_log_wandb_runs_under_their_sweep_folder(tmp_path):
    """A multirun job's W&B runs go to `<sweep dir>/wandb` (one sweep, one folder to sync);
    a single run's to `paths.wandb`. Grouped by sweep, typed by stage, tagged by axis."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from conftest import compose
    from xitt.stages.loggers import stage_logger

    cfg = compose("logger=wandb", f"paths.root={tmp_path}")
    kwargs = dict(cell_name="cell", stage="itt", group="the-sweep", tags=["size=s"], config={}, folder="cell-0123abcd",
                  version="itt-4567ef01")
    single = stage_logger(cfg.logger, **kwargs)
    assert Path(single.save_dir) == tmp_path / "wandb"

    from hydra import compose as hydra_compose, initialize_config_dir

    from xitt import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra_cfg = hydra_compose(config_name="train", overrides=[f"paths.root={tmp_path}"],
                                  return_hydra_config=True)
    with open_dict(hydra_cfg):
        hydra_cfg.hydra.mode = RunMode.MULTIRUN
        hydra_cfg.hydra.sweep.dir = str(tmp_path / "multirun" / "the-sweep")
    HydraConfig.instance().set_config(hydra_cfg)
    try:
        in_sweep = stage_logger(cfg.logger, **kwargs)
    finally:
        HydraConfig.instance().cfg = None
    assert Path(in_sweep.save_dir) == tmp_path / "multirun" / "the-sweep" / "wandb"
    assert in_sweep._wandb_init["group"] == "the-sweep" and in_sweep._wandb_init["job_type"] == "itt"
    assert in_sweep._wandb_init["tags"] == ["size=s"]
