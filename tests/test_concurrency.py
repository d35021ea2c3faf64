"""Jobs that need the same artifact at the same moment: one builds it, the others wait and
reuse it; a job killed while building leaves nothing that a later job could mistake for
the artifact, and its lock does not outlive it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_script, start_script
from xitt.core.store import ArtifactStore

# A slow build that writes several files, so that a reader of a torn artifact would notice.
WORKER = r"""
import json, os, sys, time
from pathlib import Path
from xitt.core.store import ArtifactStore

root, key, sleep_s = sys.argv[1], sys.argv[2], float(sys.argv[3])

def build(out):
    (out / "started").write_text(str(os.getpid()))
    for part in range(5):
        time.sleep(sleep_s / 5)
        (out / f"part{part}.txt").write_text(f"{key}:{part}\n" * 1000)
    return {"builder": os.getpid()}

folder = ArtifactStore(root, lock_timeout_s=120).get_or_build("demo", key, build, {"key": key})
parts = sorted(p.name for p in folder.glob("part*.txt"))
whole = parts == [f"part{i}.txt" for i in range(5)] and all(
    (folder / name).read_text() == f"{key}:{name[4]}\n" * 1000 for name in parts)
print(json.dumps({"pid": os.getpid(), "folder": str(folder), "whole": whole,
                  "builder": json.loads((folder / "meta.json").read_text())["metrics"]["builder"]}))
"""


def start_worker(root: Path, key: str, sleep_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, str(root), key, str(sleep_s)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_jobs_build_an_artifact_once_and_all_read_it_whole(tmp_path):
    workers = [start_worker(tmp_path, "shared-key", sleep_s=3) for _ in range(4)]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    store = ArtifactStore(tmp_path)
    assert [e["key"] for e in store.events()] == ["shared-key"]  # built once
    assert all(r["whole"] for r in reports)  # nobody saw a half-written artifact
    assert len({r["builder"] for r in reports}) == 1 and len({r["folder"] for r in reports}) == 1
    assert not list((tmp_path / "demo").glob(".tmp-*"))


def test_a_build_killed_midway_is_cleaned_up_and_built_again(tmp_path):
    victim = start_worker(tmp_path, "killed-key", sleep_s=10)  # killed after its first of five parts (2 s)
    deadline = time.time() + 60
    while not list((tmp_path / "demo").glob(".tmp-killed-key-*/part0.txt")):
        assert time.time() < deadline and victim.poll() is None, "the first build never started"
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)  # no cleanup code runs: the lock is released by the OS
    victim.wait(timeout=30)
    leftovers = list((tmp_path / "demo").glob(".tmp-killed-key-*"))
    assert leftovers and not ArtifactStore(tmp_path).has("demo", "killed-key")

    survivor = start_worker(tmp_path, "killed-key", sleep_s=0.5)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["whole"] and report["builder"] == survivor.pid
    assert not any(path.exists() for path in leftovers)  # the dead job's half-written folder is gone
    assert [e["pid"] for e in ArtifactStore(tmp_path).events()] == [survivor.pid]


@pytest.mark.slow
def test_concurrent_runs_of_one_cell_train_each_stage_once(tmp_path):
    """Three `python train.py` of the same cell at once (as three SLURM tasks would):
    one trains the ITT and target models, the others wait and reuse them."""
    overrides = ["logger=none", f"paths.root={tmp_path}", "itt.hparams.epochs=1", "target.hparams.epochs=3"]
    started = time.time()
    runs = [start_script("train.py", *overrides) for _ in range(3)]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-3000:]
        assert "\nfar " in out  # each run prints the cell's scores
    events = ArtifactStore(tmp_path / "store").events()
    assert sorted(e["kind"] for e in events) == ["itt", "target", "tokenizer"], events
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")
               if not p.name.endswith(".predictions.json")]
    assert sorted(r["lang"] for r in records) == ["en", "far", "mid", "near"]
    assert all(r["n"] == 300 and r["itt_key"] for r in records)
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    print(f"3 concurrent runs of one cell: {time.time() - started:.0f} s")

    # And a run after them finds everything done.
    again = run_script("train.py", *overrides)
    assert again.returncode == 0 and "nothing to train" in (again.stdout + again.stderr)

    # The same cell whose target stage starts from the stored ITT encoder in a fresh
    # process (another process's history): the same model, the same F1.
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "store" / "itt", other / "store" / "itt")
    fresh = run_script("train.py", *[o for o in overrides if not o.startswith("paths.root")], f"paths.root={other}")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert [e["kind"] for e in ArtifactStore(other / "store").events()] == ["tokenizer", "target"]
    again_f1 = {json.loads(p.read_text())["lang"]: json.loads(p.read_text())["f1"]
                for p in (other / "results").rglob("*.json") if not p.name.endswith(".predictions.json")}
    assert again_f1 == pytest.approx({r["lang"]: r["f1"] for r in records}, abs=0.01)
