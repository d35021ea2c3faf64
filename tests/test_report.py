"""The demo grid of the README end to end: its records, a second run that trains nothing, a
failing cell that does not stop the grid, its report, the notebook on its results, a stored
target model evaluated again without training, and the grid killed anywhere.

Every test that needs the finished demo grid lives in this module, so that `make test`'s
workers (`--dist loadfile`) train it once."""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import DEMO_GRID, DEMO_LANGS, DEMO_TARGET_EPOCHS, REPO, builds, records_under, run_script, start_script
from xitt.core.naming import sweep_name
from xitt.core.store import ArtifactStore

def sweep_dir(root: Path) -> Path:
    """The demo grid's sweep folder (other tests add sweeps of their own beside it)."""
    return root / "multirun" / sweep_name(DEMO_GRID)


def test_report_of_the_demo_grid_states_the_gain_per_size(demo_grid, tmp_path):
    result = run_script("evaluate.py", f"report={sweep_dir(demo_grid)}", f"out={tmp_path}", "n_bootstrap=200")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("summary.csv", "gains.csv", "report.md"):
        assert (tmp_path / name).is_file(), name
    assert list(tmp_path.glob("gain_vs_size_*.png")) and list(tmp_path.glob("gain_heatmap_*.png"))
    assert list(tmp_path.glob("score_vs_size_*.png")) and list(tmp_path.glob("*.tex"))
    report = (tmp_path / "report.md").read_text()
    assert re.search(r"ITT with demo changes demo F1 \(.*\) by [+-]\d+\.\d \[", report), report[:3000]
    for size in ("s", "m"):
        assert f" at {size} (" in report, report[:3000]
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 8 * 4  # one row per cell x language


def test_notebook_runs_on_the_demo_grid_results(demo_grid):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook_path = REPO / "notebooks" / "analysis.ipynb"
    notebook = nbformat.read(notebook_path, as_version=4)
    os.environ["XITT_RESULTS"] = str(demo_grid / "results")
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    finally:
        del os.environ["XITT_RESULTS"]
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert "ITT with demo changes demo F1" in "".join(output.get("text", "") for output in outputs)


def test_stored_target_model_is_evaluated_on_more_languages_without_training(demo_grid):
    cell_folder = next(p for p in (demo_grid / "results").iterdir() if p.name.startswith("tiny-s_itt-demo_demo"))
    record = json.loads((cell_folder / "far.json").read_text())
    (cell_folder / "far.json").unlink()
    events_before = (demo_grid / "store" / "events.jsonl").read_text()
    target = demo_grid / "store" / "target" / record["target_key"]
    result = run_script("evaluate.py", f"ckpt={target}", "target_lang.langs=[far]", f"paths.root={demo_grid}")
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((cell_folder / "far.json").read_text())
    assert again["f1"] == pytest.approx(record["f1"]) and again["result_key"] == record["result_key"]
    assert (demo_grid / "store" / "events.jsonl").read_text() == events_before  # nothing trained
    assert "far" in result.stdout


def test_report_of_an_empty_folder_says_what_to_do(tmp_path):
    result = run_script("evaluate.py", f"report={tmp_path}")
    assert result.returncode == 1
    assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr


# -- the grid's records, re-runs and failures ---------------------------------------------


def test_grid_writes_one_record_per_cell_and_language(demo_grid):
    records = records_under(demo_grid)
    cells = {(r["size"], r["itt"], r["seed"]) for r in records}
    assert cells == {(size, itt, seed) for size in "sm" for itt in ("none", "demo") for seed in (1, 2)}
    assert sorted((r["size"], r["itt"], r["seed"], r["lang"]) for r in records) == sorted(
        (*cell, lang) for cell in cells for lang in DEMO_LANGS)
    # Each ITT encoder is trained once per distinct ITT key; each target model once per cell.
    itt_keys = {r["itt_key"] for r in records if r["itt_key"]}
    assert sorted(builds(demo_grid, "itt")) == sorted(itt_keys) and len(itt_keys) == 2 * 2
    assert len(builds(demo_grid, "target")) == 8
    (sweep_dir,) = (demo_grid / "multirun").iterdir()
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == sorted(
        f"itt={itt},model=tiny,seed={seed},size={size},{DEMO_TARGET_EPOCHS}" for size in "sm" for itt in ("none", "demo")
        for seed in (1, 2))


def test_second_run_of_the_grid_trains_nothing(demo_grid):
    before = ArtifactStore(demo_grid / "store").events()
    result = run_script("train.py", "-m", *DEMO_GRID, "logger=csv", f"paths.root={demo_grid}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 cells: 0 run, 8 skipped (already done), 0 failed" in result.stdout
    assert "nothing to train (skipped)" in result.stderr + result.stdout
    assert ArtifactStore(demo_grid / "store").events() == before


def test_failing_cell_is_recorded_and_the_grid_goes_on(demo_grid):
    grid = ["model=tiny", "size=s,xl", "itt=demo", DEMO_TARGET_EPOCHS]
    result = run_script("train.py", "-m", *grid, "logger=none", f"paths.root={demo_grid}")
    assert result.returncode != 0
    assert "2 cells: 0 run, 1 skipped (already done), 1 failed" in result.stdout
    assert "Model family 'tiny' has no size 'xl'. Its sizes are: s, m, l" in result.stdout
    sweep = demo_grid / "multirun" / sweep_name(grid)
    outcome = json.loads((sweep / f"itt=demo,model=tiny,size=xl,{DEMO_TARGET_EPOCHS}" / "cell.json").read_text())
    assert outcome["status"] == "failed" and "has no size 'xl'" in outcome["reason"]


# -- kill anywhere, lose nothing ------------------------------------------------------------


KILL_GRID = ["model=tiny", "size=s", "itt=none,demo", "seed=1", DEMO_TARGET_EPOCHS, "trainer.checkpoint_min_interval_s=0"]


def f1_of_size_s(root: Path) -> dict[tuple[str, str], float]:
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
    killed_at = []
    for name, reached in KILL_POINTS:
        run = start_script("train.py", "-m", *KILL_GRID, "logger=none", f"paths.root={tmp_path}")
        deadline = time.time() + 300
        while not reached(tmp_path) and run.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            killed_at.append(name)
        run.wait(timeout=60)
    assert len(killed_at) >= 4, killed_at  # the grid was still running at (nearly) every point

    final = run_script("train.py", "-m", *KILL_GRID, "logger=none", f"paths.root={tmp_path}")
    assert final.returncode == 0, final.stderr[-3000:]
    assert f1_of_size_s(tmp_path) == pytest.approx(f1_of_size_s(demo_grid), abs=0.01)
    store = tmp_path / "store"
    assert not list(store.rglob(".tmp-*")) and not list(store.rglob(".work-*"))
    assert not list(store.rglob("*.corrupt-*"))  # the store only ever holds whole artifacts
    for record in (tmp_path / "results").rglob("*.json"):
        json.loads(record.read_text())  # every record and predictions file is whole JSON
