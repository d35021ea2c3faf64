"""The answer end to end: the demo grid of the README, its report, the notebook on its
results, and a stored target model evaluated again without training."""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import DEMO_GRID, REPO, run_script
from xitt.core.naming import sweep_name

def sweep_dir(root: Path) -> Path:
    """The demo grid's sweep folder (other tests add sweeps of their own beside it)."""
    return root / "multirun" / sweep_name(DEMO_GRID)


def test_report_of_the_demo_grid_states_the_gain_per_size(demo_grid, tmp_path):
    result = run_script("evaluate.py", f"report={sweep_dir(demo_grid)}", f"out={tmp_path}", "n_bootstrap=200")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("summary.csv", "gains.csv", "report.md"):
        assert (tmp_path / name).is_file(), name
    assert list(tmp_path.glob("gain_vs_size_*.png")) and list(tmp_path.glob("gain_heatmap_*.png"))
    assert list(tmp_path.glob("f1_vs_size_*.png")) and list(tmp_path.glob("*.tex"))
    report = (tmp_path / "report.md").read_text()
    assert re.search(r"ITT with demo changes demo F1 \(.*\) by [+-]\d+\.\d \[", report), report[:3000]
    for size in ("s", "m", "l"):
        assert f" at {size} (" in report, report[:3000]
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 12 * 4  # one row per cell x language


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
