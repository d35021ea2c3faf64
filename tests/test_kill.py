"""Kill anywhere, lose nothing: a grid SIGKILLed at several points (ITT training, target
training, evaluation, right after an artifact is stored, between cells) and run again each
time ends complete, with nothing torn or left behind, and with the F1 of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_script

GRID = ["model=tiny", "size=s", "itt=none,demo", "seed=1"]


def records(root: Path) -> dict[tuple[str, str], float]:
    found = [json.loads(p.read_text()) for p in (root / "results").rglob("*.json")
             if not p.name.endswith(".predictions.json")]
    return {(r["itt"], r["lang"]): r["f1"] for r in found if r["size"] == "s" and r["seed"] == 1}


def events(root: Path) -> int:
    log = root / "store" / "events.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


# (what the run is doing when it is killed, how to recognise that moment)
KILL_POINTS = [
    ("ITT training", lambda root: list((root / "store" / "itt").glob(".work-*/last.json"))),
    ("right after an artifact is stored", lambda root: events(root) >= 2),  # tokenizer, then ITT
    ("target training", lambda root: list((root / "store" / "target").glob(".work-*/last.json"))),
    ("evaluation", lambda root: list((root / "results").rglob("*.predictions.json"))),
    ("between cells", lambda root: list((root / "multirun").rglob("cell.json"))),
]


@pytest.mark.slow
def test_a_grid_killed_at_five_points_ends_as_an_uninterrupted_one(tmp_path, demo_grid):
    command = [sys.executable, "train.py", "-m", *GRID, "logger=none", f"paths.root={tmp_path}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("XITT_SWEEP_NAME", None)
    killed_at = []
    for name, reached in KILL_POINTS:
        run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not reached(tmp_path) and run.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            killed_at.append(name)
        run.wait(timeout=60)
    assert len(killed_at) >= 4, killed_at  # the grid was still running at (nearly) every point

    final = run_script("train.py", "-m", *GRID, "logger=none", f"paths.root={tmp_path}")
    assert final.returncode == 0, final.stderr[-3000:]
    assert records(tmp_path) == pytest.approx(records(demo_grid), abs=0.01)
    store = tmp_path / "store"
    assert not list(store.rglob(".tmp-*")) and not list(store.rglob(".work-*"))
    assert not list(store.rglob("*.corrupt-*"))  # the store only ever holds whole artifacts
    for record in (tmp_path / "results").rglob("*.json"):
        json.loads(record.read_text())  # every record and predictions file is whole JSON
