"""Broken models are never results: a training stage whose loss becomes NaN or infinite
stops and stores nothing; a model whose predictions are degenerate (one class for every
example, one tag for every word, an empty answer to every question) is kept but flagged, in
its record, on the console and in the report, which leaves it out of the gains by default.
And a report names no folder of the machine it was made on.

The end-to-end cases are certain by construction, not by one CPU's numerics:
`target.hparams.lr=1e30` multiplies every weight by 1 - lr x weight_decay (about -1e28) at
each AdamW step, so the float32 weights overflow to infinity within two updates and the loss
is NaN; `target.hparams.max_length=2` leaves every text as the same two special tokens, so
the model sees one input and gives every example the same class.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import DEMO_LANGS, REPO, run_script
from xitt.analysis import analyse, build_report, load_results
from xitt.core.records import PREDICTIONS_SUFFIX, Record, format_scores
from xitt.metrics.classification import classification_scores
from xitt.tasktypes import degenerate_predictions

LABELS = ["negative", "neutral", "positive"]
# An absolute path of a POSIX machine, wherever it stands in a CSV cell or a sentence.
ABSOLUTE_PATH = re.compile(r"(^|[\s,`'\"(|=])/[A-Za-z0-9_.-]+/", re.MULTILINE)


# --- the check itself -------------------------------------------------------------------

def test_degenerate_predictions_say_what_was_seen_for_each_task_type():
    one_class = {"gold": [0, 1, 2, 1], "pred": [2, 2, 2, 2], "labels": LABELS}
    assert degenerate_predictions(one_class, "test", "de") == \
        "predicts one class (positive) for all 4 test examples in de"
    assert degenerate_predictions({**one_class, "pred": [2, 2, 1, 2]}, "test", "de") is None
    # one gold class predicted throughout is right, not broken; one example says nothing
    assert degenerate_predictions({"gold": [2, 2], "pred": [2, 2], "labels": LABELS}, "test", "de") is None
    assert degenerate_predictions({"gold": [0], "pred": [2], "labels": LABELS}, "test", "de") is None

    tags = {"task_type": "tagging", "metric": "entity_f1", "labels": ["O", "B-PER", "I-PER"],
            "gold": [["B-PER", "I-PER", "O"], ["O", "O"]], "pred": [["O", "O", "O"], ["O", "O"]]}
    assert degenerate_predictions(tags, "development", "en") == \
        "predicts one tag (O) for all 5 words of the 2 development sentences in en"
    assert degenerate_predictions({**tags, "pred": [["B-PER", "O", "O"], ["O", "O"]]}, "test", "en") is None

    answers = {"task_type": "qa", "lang": None, "gold": [["Paris"], ["1889"], ["Eiffel"]], "pred": ["", " ", ""]}
    assert degenerate_predictions(answers, "test", "sw") == "predicts an empty answer for all 3 test questions in sw"
    assert degenerate_predictions({**answers, "pred": ["", "1889", ""]}, "test", "sw") is None


def test_the_scores_table_prints_the_warnings_under_it():
    record = {"cell_name": "c", "params": 10, "lang": "de", "f1": 16.7, "accuracy": 33.3, "n": 300,
              "warnings": ["predicts one class (neutral) for all 300 test examples in de"]}
    text = format_scores([record, {**record, "lang": "fr", "warnings": []}])
    table, warning = text.split("\nWarning: ")
    assert "de" in table and "fr" in table
    assert warning.splitlines()[1:] == ["  - predicts one class (neutral) for all 300 test examples in de"]
    assert "Warning" not in format_scores([{**record, "warnings": []}])
    old = {key: value for key, value in record.items() if key != "warnings"}  # a record from before
    assert "Warning" not in format_scores([old])


# --- the report -------------------------------------------------------------------------

def write_cell(root: Path, *, size: str, itt: str, seed: int, lang: str, pred: np.ndarray, gold: np.ndarray,
               warnings: list[str] | None = None) -> Path:
    """A record and its predictions file as the pipeline writes them; `warnings=None`
    writes a record from before the check (no `warnings` field)."""
    cell_name = f"tiny-{size}_itt-{itt}_demo_zero_shot_none_seed{seed}"
    folder = root / cell_name
    folder.mkdir(parents=True, exist_ok=True)
    predictions = {"ids": [f"x{i}" for i in range(len(gold))], "gold": gold.tolist(), "pred": pred.tolist(),
                   "labels": LABELS}
    (folder / f"{lang}{PREDICTIONS_SUFFIX}").write_text(json.dumps(predictions))
    record = Record(cell_key=f"key-{cell_name}", cell_name=cell_name, result_key=f"r-{cell_name}-{lang}",
                    target_key=f"t-{cell_name}", itt_key=None if itt == "none" else f"i-{size}-{seed}",
                    model="tiny", size=size, params={"s": 10**6, "m": 10**7}[size], itt=itt, target="demo",
                    transfer="zero_shot", freezing="none", seed=seed, lang=lang, train_lang="en",
                    **classification_scores(gold, pred, len(LABELS)), warnings=warnings or [],
                    predictions=f"{lang}{PREDICTIONS_SUFFIX}", created="2025-01-01T00:00:00").as_dict()
    if warnings is None:
        del record["warnings"]
    path = folder / f"{lang}.json"
    path.write_text(json.dumps(record))
    return path


def write_grid(root: Path, broken: dict[tuple, list[str] | None]) -> None:
    """Two sizes, ITT or none, three seeds, two languages; `broken` maps (size, itt, seed,
    lang) to the warnings its record was written with, and its model predicts one class
    unless the warnings say it was the development set."""
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 200)
    for size in ("s", "m"):
        for itt in ("none", "demo"):
            for seed in (1, 2, 3):
                for lang in ("de", "sw"):
                    key = (size, itt, seed, lang)
                    pred = np.where(rng.random(200) < 0.6, gold, rng.integers(0, 3, 200))
                    warnings = broken.get(key, [])
                    if key in broken and not any("development" in w for w in warnings or []):
                        pred = np.ones_like(gold)
                    write_cell(root, size=size, itt=itt, seed=seed, lang=lang, pred=pred, gold=gold,
                               warnings=warnings)


def language_gain(gains: pd.DataFrame, size: str, lang: str) -> pd.Series:
    rows = gains[(gains["scope"] == "language") & (gains["size"] == size) & (gains["group"] == lang)]
    assert len(rows) == 1
    return rows.iloc[0]


DEV_WARNING = "predicts one class (negative) for all 150 development examples in en"


def test_a_report_leaves_flagged_records_out_of_the_gains_and_says_which(tmp_path):
    results = tmp_path / "results"
    # an old record (no warnings field) whose test predictions are one class; a new one
    # flagged on its development set only; every seed of (m, demo, sw)
    write_grid(results, {("s", "demo", 2, "de"): None, ("s", "none", 3, "sw"): [DEV_WARNING],
                         **{("m", "demo", seed, "sw"): None for seed in (1, 2, 3)}})
    loaded = load_results([results])
    analysis = analyse(loaded, n_bootstrap=50)
    flagged = analysis.flagged.set_index(["size", "itt", "seed", "lang"])["warnings"]
    assert flagged.to_dict() == {
        ("s", "demo", 2, "de"): "predicts one class (neutral) for all 200 test examples in de",
        ("s", "none", 3, "sw"): DEV_WARNING,
        **{("m", "demo", seed, "sw"): "predicts one class (neutral) for all 200 test examples in sw"
           for seed in (1, 2, 3)}}
    # left out seed by seed: the pairs that remain are used
    assert language_gain(analysis.gains, "s", "de")["seeds"] == "1 3"
    assert language_gain(analysis.gains, "s", "sw")["seeds"] == "1 2"
    assert language_gain(analysis.gains, "s", "sw")["status"] == "ok"
    every_seed = language_gain(analysis.gains, "m", "sw")
    assert every_seed["status"] == "flagged" and np.isnan(every_seed["gain"])
    # their scores stay, with the warnings beside them
    scores = analysis.scores[analysis.scores["scope"] == "language"].set_index(["size", "itt", "group"])
    assert scores.loc[("s", "demo", "de"), "warnings"] == \
        "seed 2: predicts one class (neutral) for all 200 test examples in de"
    assert scores.loc[("s", "demo", "sw"), "warnings"] == ""
    assert scores.loc[("s", "demo", "de"), "n_seeds"] == 3

    counted = analyse(loaded, n_bootstrap=50, include_flagged=True)
    assert language_gain(counted.gains, "s", "de")["seeds"] == "1 2 3"
    assert language_gain(counted.gains, "m", "sw")["status"] == "ok"

    out = tmp_path / "report"
    build_report([results], out, n_bootstrap=50)
    head = (out / "report.md").read_text().split("\n## ")[0]
    assert "**Left out of the gains: 5 of 24 records**" in head
    assert "`include_flagged=true` counts them" in head
    for cell, langs in (("tiny-s_itt-demo_demo_zero_shot_none_seed2", "de"),
                        ("tiny-s_itt-none_demo_zero_shot_none_seed3", "sw"),
                        ("tiny-m_itt-demo_demo_zero_shot_none_seed1", "sw")):
        assert f"{cell} ({langs})" in head
    report = (out / "report.md").read_text()
    assert "## Flagged records" in report and DEV_WARNING in report
    assert re.search(r"\| sw\s*\|[^\n]*\| flagged\s*\|\n", report)  # the gain table: sw at size m
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert (summary["warnings"] != "").sum() == 5
    assert "warnings" in pd.read_csv(out / "scores.csv").columns

    build_report([results], out, n_bootstrap=50, include_flagged=True)
    head = (out / "report.md").read_text().split("\n## ")[0]
    assert "**Counted in the gains although flagged: 5 of 24 records**" in head


def test_evaluate_prints_the_records_left_out_and_counts_them_on_request(tmp_path):
    results = tmp_path / "results"
    write_grid(results, {("s", "demo", 2, "de"): None})
    left_out = run_script("evaluate.py", f"report={results}", "n_bootstrap=20")
    assert left_out.returncode == 0, left_out.stderr[-3000:]
    assert "**Left out of the gains: 1 of 24 records**" in left_out.stdout
    assert "tiny-s_itt-demo_demo_zero_shot_none_seed2 (de)" in left_out.stdout
    counted = run_script("evaluate.py", f"report={results}", "n_bootstrap=20", "include_flagged=true")
    assert counted.returncode == 0, counted.stderr[-3000:]
    assert "**Counted in the gains although flagged: 1 of 24 records**" in counted.stdout


def test_a_report_names_paths_relative_to_its_folder(tmp_path):
    results = tmp_path / "machine" / "results"
    write_grid(results, {})
    cell = results / "tiny-s_itt-none_demo_zero_shot_none_seed1"
    newer = json.loads((cell / "de.json").read_text())
    (cell / "de.again.json").write_text(json.dumps({**newer, "created": "2026-01-01T00:00:00"}))  # supersedes
    (cell / "sw.predictions.json").write_text("{not json")  # a problem while reading
    out = tmp_path / "elsewhere" / "report"
    build_report([results], out, n_bootstrap=20)
    written = {path.name: path.read_text() for path in out.iterdir() if path.suffix in (".csv", ".md", ".tex")}
    assert {"summary.csv", "scores.csv", "gains.csv", "trends.csv", "report.md"} <= set(written)
    for name, text in written.items():
        assert str(tmp_path) not in text, name
        assert not ABSOLUTE_PATH.search(text), (name, ABSOLUTE_PATH.search(text))
    summary = pd.read_csv(out / "summary.csv")
    for relative in summary["record_path"]:
        assert not Path(relative).is_absolute() and (out / relative).resolve().is_file()
    report = written["report.md"]
    assert "## Superseded records" in report and "../../machine/results/" in report
    assert "unreadable predictions ../../machine/results/tiny-s_itt-none_demo_zero_shot_none_seed1/sw" in report


def test_the_committed_reports_hold_no_machine_paths():
    committed = [path for path in (REPO / "docs" / "results").rglob("*") if path.suffix in (".csv", ".md", ".tex")]
    assert committed
    for path in committed:
        found = ABSOLUTE_PATH.search(path.read_text())
        assert found is None, f"{path}: {found.group(0)}"


# --- end to end: real training of the tiny demo model -----------------------------------

def train(root: Path, *overrides: str):
    return run_script("train.py", "itt=none", "target.hparams.epochs=1", "logger=none",
                      "trainer.enable_progress_bar=false", f"paths.root={root}", *overrides)


def stored(root: Path, kind: str) -> list[str]:
    """The names in the store's folder of a kind: artifacts, and any build leftovers."""
    folder = root / "store" / kind
    return sorted(path.name for path in folder.iterdir() if not path.name.endswith(".lock")) if folder.is_dir() else []


def test_a_diverging_stage_stops_with_one_paragraph_and_stores_nothing(tmp_path):
    result = train(tmp_path, "target.hparams.lr=1e30")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = result.stderr.split("xitt: ")[-1]
    assert re.search(r"the target stage diverged: its training loss was (nan|inf|-inf) at global step \d+ "
                     r"\(epoch 1, learning rate [\d.e+]+\)", message), message
    assert "nothing was stored or recorded" in message and "`target.hparams.lr=1e+29`" in message
    assert "trainer.gradient_clip_val=" in message
    assert stored(tmp_path, "target") == []  # no artifact, no half-built folder, no checkpoints
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
    outcome = json.loads(next((tmp_path / "runs").glob("*/cell.json")).read_text())
    assert outcome["status"] == "failed" and "diverged" in outcome["reason"]


def test_a_loss_not_finite_before_any_update_is_blamed_on_the_data_not_the_learning_rate(tmp_path):
    # max_length=2 keeps only the two special tokens of every sentence: no token is labelled,
    # and the mean cross-entropy over no tokens is 0/0
    result = train(tmp_path, "target=demo_ner", "target.hparams.max_length=2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.split("xitt: ")[-1]
    assert "training loss was nan at global step 0, before the first update" in message, message
    assert "the learning rate did not cause it" in message and "`target.hparams.max_length=2`" in message
    assert stored(tmp_path, "target") == []


def test_a_diverging_cell_fails_in_a_grid_and_the_others_run(tmp_path):
    result = run_script("train.py", "-m", "itt=demo", "itt.hparams.epochs=1", "itt.hparams.lr=3e-4,1e30",
                        "target.hparams.epochs=1", "target_lang.langs=[en]", "logger=none",
                        "trainer.enable_progress_bar=false", f"paths.root={tmp_path}")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 cells: 1 run, 0 skipped (already done), 1 failed" in result.stdout
    assert re.search(r"FAILED \S+: Cell \S+: the itt stage diverged: .*`itt\.hparams\.lr=1e\+29`", result.stdout)
    assert len(stored(tmp_path, "itt")) == 1 and len(stored(tmp_path, "target")) == 1  # the finite cell's


def test_a_degenerate_model_is_recorded_flagged_and_printed(tmp_path):
    result = train(tmp_path, "target.hparams.max_length=2")
    assert result.returncode == 0, result.stderr[-3000:]
    records = {record["lang"]: record for record in map(json.loads, (
        path.read_text() for path in (tmp_path / "results").rglob("*.json")
        if not path.name.endswith(PREDICTIONS_SUFFIX)))}
    assert sorted(records) == sorted(DEMO_LANGS)
    predicted = json.loads(next((tmp_path / "results").rglob(f"en{PREDICTIONS_SUFFIX}")).read_text())["pred"]
    name = LABELS[predicted[0]]
    meta = json.loads(next((tmp_path / "store" / "target").glob("*/meta.json")).read_text())
    dev, = meta["metrics"]["selection"]["dev_warnings"]  # the same input for every example: the same class
    assert re.fullmatch(rf"predicts one class \({name}\) for all \d+ development examples in en", dev), dev
    for lang, record in records.items():
        test = f"predicts one class ({name}) for all {record['n']} test examples in {lang}"
        assert record["warnings"] == [dev, test]
    table, printed = result.stdout.split("Warning: this model's predictions are degenerate")
    assert all(f"\n{lang} " in table for lang in DEMO_LANGS)
    assert f"  - {dev}\n" in printed
    for lang in DEMO_LANGS:
        assert f"  - {records[lang]['warnings'][1]}\n" in printed

    again = train(tmp_path, "target.hparams.max_length=2")  # a finished cell prints its records as they are
    assert again.returncode == 0 and f"  - {dev}\n" in again.stdout
