"""The retrieval task type end to end: the demo retrieval cell offline (both modes, one
embedding pass shared by them), the real encoder on the XNLI-built sets, a cell that trains
nothing being one cell whatever its seed, the report's pairing of such a cell with every ITT
seed, bad input refused in one paragraph with nothing recorded, and `evaluate.py ckpt=<stored
model> target=<retrieval task>` scoring the encoder of a stored ITT or target model."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import builds, run_script
from xitt.analysis import analyse, load_results
from xitt.tasktypes import prediction_scores

QUIET = ["logger=none", "trainer.enable_progress_bar=false"]


def records_in(results: Path) -> dict[str, dict[str, dict]]:
    """{cell folder: {lang: record}}."""
    cells: dict[str, dict[str, dict]] = {}
    for path in sorted(results.rglob("*.json")):
        if not path.name.endswith(".predictions.json"):
            record = json.loads(path.read_text())
            cells.setdefault(path.parent.name, {})[record["lang"]] = record
    return cells


def built(root: Path, kind: str) -> int:
    events = root / "store/events.jsonl"
    lines = events.read_text().splitlines() if events.is_file() else []
    return sum(json.loads(line).get("kind") == kind for line in lines)


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory) -> dict:
    """One store for the demo tests of this module: `train.py`'s demo retrieval cell over the
    demo ITT model in both modes, nearest then mining (the records `evaluate.py` must
    reproduce), and a demo target model fine-tuned from that ITT model (one epoch, English
    only: its encoder is what `evaluate.py` scores). {"root", "nearest" and "mining" (the two
    runs), "rows_after_nearest" and "rows_after_mining" (embeddings stored after each)}."""
    root = tmp_path_factory.mktemp("stored_models")
    cell = ["itt=demo", "target=demo_retrieval", f"paths.root={root}", *QUIET]
    nearest = run_script("train.py", *cell)
    assert nearest.returncode == 0, nearest.stderr[-3000:]
    rows_after_nearest = built(root, "rows")
    mining = run_script("train.py", *cell, "target.retrieval.mode=mining")
    assert mining.returncode == 0, mining.stderr[-3000:]
    rows_after_mining = built(root, "rows")
    target = run_script("train.py", "itt=demo", "target=demo", "target.hparams.epochs=1", "target_lang.langs=[en]",
                        f"paths.root={root}", *QUIET)
    assert target.returncode == 0, target.stderr[-3000:]
    return {"root": root, "nearest": nearest, "mining": mining, "rows_after_nearest": rows_after_nearest,
            "rows_after_mining": rows_after_mining}


def test_demo_retrieval_scores_both_modes_from_one_embedding_pass_offline(demo_models):
    root = demo_models["root"]
    assert "acc<-en" in demo_models["nearest"].stdout
    assert demo_models["rows_after_nearest"] == 4  # near, mid, far and the English side, embedded once each
    assert demo_models["rows_after_mining"] == 4  # mining read the same embeddings
    assert built(root, "itt") == 1 and built(root, "target") == 1  # nothing trained for retrieval (1: demo's)

    cells = {name: records for name, records in records_in(root / "results").items()
             if {(r["target"], r.get("scored_model")) for r in records.values()} == {("demo_retrieval", None)}}
    assert len(cells) == 2
    for name, records in cells.items():
        assert sorted(records) == ["far", "mid", "near"]
        for record in records.values():
            predictions = json.loads((root / "results" / name / record["predictions"]).read_text())
            for score, value in prediction_scores(predictions).items():
                assert record[score] == value
            assert "development carve 30%" in record["split_note"] and "model selection" not in record["split_note"]
            if record["metric"] == "f1":
                assert record["threshold"] is not None and "development carve" in record["threshold_from"]
                assert record["precision"] is not None and record["accuracy"] is None
            else:
                assert record["metric"] == "accuracy" and record["reverse_accuracy"] is not None
        # the synthetic languages drift ever further from English
        assert records["near"][records["near"]["metric"]] > records["far"][records["far"]["metric"]]


def test_a_pretrained_encoder_without_itt_is_one_cell_whatever_the_seed(shared, tmp_path):
    """e5-small at 3 layers (fast), no ITT, on 600 XNLI hypotheses in two languages: seeds 1
    and 2 are one cell (one records folder, the second run finds it), accuracy far above
    chance (1 in 480)."""
    overrides = ["model=e5_depth", f"model.name_or_path={shared / 'models/multilingual-e5-small'}", "size=l3",
                 "itt=none", "target=xnli_nearest", f"target.path={shared / 'data/xnli'}",
                 "target_lang.langs=[de,sw]", "target.retrieval.prefix='query: '", "target.retrieval.sentences=[hypothesis]",
                 "+target.test_sample={n: 600, seed: 1}", f"paths.root={tmp_path}", *QUIET]
    first = run_script("train.py", *overrides, "seed=1", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_script("train.py", *overrides, "seed=2")
    assert second.returncode == 0 and "nothing to train (skipped)" in second.stderr + second.stdout
    ((name, records),) = records_in(tmp_path / "results").items()
    assert name.startswith("e5_depth-l3_itt-none_xnli_nearest_zero_shot_none_noseed")
    for lang, record in records.items():
        assert record["seed"] == 0 and record["seed_independent"] is True
        assert record["accuracy"] > 20, (lang, record["accuracy"])
        assert "dropped as duplicates" in record["split_note"]
    assert records["de"]["accuracy"] > records["sw"]["accuracy"]  # a high- and a low-resource language


def _write_xnli_like(folder: Path, langs: dict[str, list[tuple[str, str]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, lines in langs.items():
        (folder / f"dev-{lang}.tsv").write_text("".join(f"{p}\t{h}\tneutral\n" for p, h in lines), encoding="utf-8")


@pytest.mark.parametrize("problem, expected", [
    ("short", "do not hold the same sentences"),
    ("empty", "has an empty sentence"),
    ("no_english", "cannot read its local data"),
])
def test_bad_retrieval_data_is_one_paragraph_and_nothing_is_recorded(tmp_path, problem, expected):
    english = [(f"premise number {g}", f"hypothesis number {g} {i}") for g in range(12) for i in range(3)]
    german = [(f"Prämisse {g}", f"Hypothese {g} {i}") for g in range(12) for i in range(3)]
    if problem == "short":
        german = german[:-3]  # a premise group less: the files are no longer aligned
    if problem == "empty":
        german[5] = (german[5][0], " ")
    files = {"de": german} if problem == "no_english" else {"en": english, "de": german}
    _write_xnli_like(tmp_path / "data", files)
    result = run_script("train.py", "itt=none", "target=xnli_nearest", f"target.path={tmp_path / 'data'}",
                        "target_lang.langs=[de]", f"paths.root={tmp_path}", *QUIET)
    assert result.returncode != 0
    message = result.stderr.split("xitt: ")[-1]
    assert expected in message and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not list((tmp_path / "results").rglob("*.json")) if (tmp_path / "results").exists() else True


@pytest.mark.parametrize("overrides, expected", [
    (["itt=none", "target=demo_retrieval", "transfer=few_shot"], "supports transfer zero_shot"),
    (["itt=demo", "itt.task_type=retrieval", "+itt.pivot_lang=en", "target=demo"], "cannot be the itt task"),
    (["itt=none", "target=demo_retrieval", "target.retrieval.layer=0"], "is not a layer"),
    (["itt=none", "target=demo_retrieval", "target.retrieval.mode=bitext"], "is not a retrieval mode"),
])
def test_retrieval_settings_are_checked_before_work(tmp_path, overrides, expected):
    result = run_script("train.py", *overrides, f"paths.root={tmp_path}", *QUIET)
    assert result.returncode != 0 and expected in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("meta.json"))


def test_a_seed_independent_twin_is_paired_with_every_itt_seed(tmp_path):
    """No-ITT records of a pretrained encoder (seed 0, seed_independent) against ITT records
    of seeds 1-3: every ITT seed is paired; the gain's seed noise is the ITT seeds' spread
    (no invented variance, no division by zero); the no-ITT score's interval is as wide as
    its test-set interval."""
    rng = np.random.default_rng(0)
    n = 400
    gold = [f"s{i}" for i in range(n)]

    def write(itt: str, seed: int, correct: float) -> None:
        folder = tmp_path / f"e5-l3_itt-{itt}_seed{seed}"
        folder.mkdir()
        pred = [g if rng.random() < correct else "other" for g in gold]
        predictions = {"task_type": "retrieval", "metric": "retrieval_accuracy", "ids": gold, "gold": gold,
                       "pred": pred, "reverse": {"ids": gold, "gold": gold, "pred": pred}}
        (folder / "de.predictions.json").write_text(json.dumps(predictions))
        scores = prediction_scores(predictions)
        record = {"cell_key": folder.name, "cell_name": folder.name, "model": "e5_depth", "size": "l3",
                  "params": 30_000_000, "itt": itt, "target": "xnli_nearest", "transfer": "zero_shot",
                  "freezing": "none", "seed": seed, "lang": "de", "metric": "accuracy", **scores,
                  "seed_independent": itt == "none", "predictions": "de.predictions.json",
                  "created": "2026-01-01T00:00:00"}
        (folder / "de.json").write_text(json.dumps(record))

    write("none", 0, 0.6)
    for seed, correct in ((1, 0.66), (2, 0.70), (3, 0.68)):
        write("udpos", seed, correct)
    analysis = analyse(load_results([tmp_path]), n_bootstrap=200)
    gain = analysis.gains[(analysis.gains["scope"] == "language")].iloc[0]
    assert gain["status"] == "ok" and gain["seeds"] == "1 2 3" and gain["seed_pairing"] == "matched"
    summary = analysis.summary.set_index(["itt", "seed"])
    itt_scores = np.array([summary.loc[("udpos", seed), "score"] for seed in (1, 2, 3)])
    none_score = summary.loc[("none", 0), "score"]
    assert gain["gain"] == pytest.approx(itt_scores.mean() - none_score)
    assert gain["seed_variance"] == pytest.approx(itt_scores.var(ddof=1) / 3)
    scores = analysis.scores[analysis.scores["scope"] == "language"].set_index("itt")
    none_row = scores.loc["none"]
    # its seed part is zero: its interval is its test-set noise alone (normal approximation vs
    # percentile bootstrap: the widths agree within a tenth or so), not widened by a t quantile
    width = none_row["ci_high"] - none_row["ci_low"]
    test_width = none_row["ci_high_test_set"] - none_row["ci_low_test_set"]
    assert 0.9 < width / test_width < 1.2, (width, test_width)


# -- evaluate.py ckpt=<stored model> target=<retrieval task> --------------------------------

def retrieval_cells(root: Path) -> dict[str | None, dict[str, dict]]:
    """The demo retrieval records of the nearest mode (the one `evaluate.py` runs here) by the
    model whose encoder they scored ({scored_model: {lang: record}}; None: the cell's own ITT
    encoder)."""
    cells: dict[str | None, dict[str, dict]] = {}
    for records in records_in(root / "results").values():
        for lang, record in records.items():
            if record["target"] == "demo_retrieval" and record["metric"] == "accuracy":
                cells.setdefault(record.get("scored_model"), {})[lang] = record
    return cells


def store_snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(path.relative_to(root)), path.stat().st_mtime_ns) for folder in ("store", "results")
                  for path in (root / folder).rglob("*") if path.is_file())


def test_evaluate_scores_an_itt_model_with_a_retrieval_task_as_train_py_does(demo_models):
    root = demo_models["root"]
    (itt_key,) = builds(root, "itt")
    trained = retrieval_cells(root)[None]
    built_before = [builds(root, kind) for kind in ("itt", "target", "rows")]
    result = run_script("evaluate.py", f"ckpt={root / 'store/itt' / itt_key}", "target=demo_retrieval",
                        f"paths.root={root}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "acc<-en" in result.stdout
    evaluated = retrieval_cells(root)[None]
    assert sorted(evaluated) == sorted(trained) == ["far", "mid", "near"]
    for lang, record in evaluated.items():
        # one cell, one folder, one record per language: the same as train.py's, rewritten
        assert record["created"] != trained[lang]["created"]
        for field in ("cell_key", "cell_name", "result_key", "target_key", "itt_key", "seed", "seed_independent",
                      "train_lang", "params", "n", "accuracy", "reverse_accuracy", "metric", "scored_model"):
            assert record[field] == trained[lang][field], (lang, field)
        assert record["target_key"] == itt_key and record["seed"] == 1
    # the stored embeddings of the ITT model were read, nothing was trained or embedded again
    assert [builds(root, kind) for kind in ("itt", "target", "rows")] == built_before


def test_evaluate_scores_a_target_models_encoder_in_a_cell_of_its_own(demo_models):
    from xitt.analysis import load_results

    root = demo_models["root"]
    (itt_key,), (target_key,) = builds(root, "itt"), builds(root, "target")
    rows_before = builds(root, "rows")
    result = run_script("evaluate.py", f"ckpt={root / 'store/target' / target_key}", "target=demo_retrieval",
                        f"paths.root={root}")
    assert result.returncode == 0, result.stderr[-3000:]
    cells = retrieval_cells(root)
    own, scored = cells[None], cells["target:demo"]
    assert sorted(scored) == ["far", "mid", "near"]
    for lang, record in scored.items():
        # it names the model scored: a target model fine-tuned on demo (in English) from the ITT model
        assert record["target_key"] == target_key and record["itt_key"] == itt_key and record["itt"] == "demo"
        assert record["train_lang"] == "en" and record["seed"] == 1 and not record["seed_independent"]
        assert record["config"]["scored_model"]["key"] == target_key
        # ... in a cell of its own: another key, folder and result key than the ITT encoder's
        assert record["cell_key"] != own[lang]["cell_key"] and record["result_key"] != own[lang]["result_key"]
        assert "demo_retrieval-of-target-demo" in record["cell_name"] != own[lang]["cell_name"]
    assert len({record["cell_key"] for record in scored.values()}) == 1
    # its own embeddings (keyed by the target model), nothing trained
    assert len(builds(root, "rows")) == len(rows_before) + 4 and builds(root, "target") == [target_key]
    # a report keeps the two apart: no record supersedes another
    results = load_results([root / "results"])
    assert len(results.superseded) == 0
    assert set(results.records["scored_model"]) >= {"", "target:demo"}


def test_evaluate_takes_only_a_retrieval_target_and_writes_nothing_else(demo_models):
    root = demo_models["root"]
    (itt_key,) = builds(root, "itt")
    itt_dir = root / "store/itt" / itt_key
    before = store_snapshot(root)
    trains = run_script("evaluate.py", f"ckpt={itt_dir}", "target=demo", f"paths.root={root}")
    assert trains.returncode == 1 and "Traceback" not in trains.stderr, trains.stderr[-2000:]
    message = trains.stderr.split("xitt: ")[-1]
    assert "`target=demo` is a classification task" in message and "only takes a retrieval task" in message
    assert "drop `target=`" in message and "demo_retrieval" in message and "\n" not in message.strip()
    # without `target=`, an ITT model is refused as before: it has no target task of its own
    no_target = run_script("evaluate.py", f"ckpt={itt_dir}", f"paths.root={root}")
    assert no_target.returncode == 1 and "is a 'itt' artifact, not a target model" in no_target.stderr
    assert store_snapshot(root) == before
