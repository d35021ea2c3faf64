"""The F1 task types end to end: the demo NER and QA cells through `train.py`, offline,
with per-language records scored from their predictions files; an ITT encoder reused by a
target of another head type; the real tagging and QA tasks' declarations; and one real
cell (e5-small, PAN-X English -> zero-shot NER) above the trivial baseline."""

import json
from pathlib import Path

import pytest

from conftest import compose, run_script
from xitt.core.cell import Cell
from xitt.core.records import PREDICTIONS_SUFFIX
from xitt.tasktypes import prediction_scores

DEMO_LANGS = ["en", "near", "mid", "far"]
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.checkpoint_every_n_epochs=0"]


def records_of(results: Path) -> dict[str, dict[str, dict]]:
    """{cell folder name: {lang: record}} under a results folder."""
    cells: dict[str, dict[str, dict]] = {}
    for path in sorted(results.rglob("*.json")):
        if not path.name.endswith(PREDICTIONS_SUFFIX):
            record = json.loads(path.read_text())
            cells.setdefault(path.parent.name, {})[record["lang"]] = record
    return cells


def assert_recomputable(results_dir: Path, record: dict) -> dict:
    """The record's scores are exactly those of its predictions file."""
    predictions = json.loads((results_dir / record["predictions"]).read_text())
    recomputed = prediction_scores(predictions)
    for name, value in recomputed.items():
        assert record[name] == value, (name, record[name], value)
    assert len(predictions["ids"]) == len(predictions["gold"]) == len(predictions["pred"]) == record["n"]
    return predictions


def test_demo_ner_and_qa_cells_run_offline_and_reuse_one_itt_encoder(tmp_path):
    root = [f"paths.root={tmp_path}", *QUIET]
    # the QA cell builds the ITT encoder, which the NER cell starts from
    for target in ("demo_qa", "demo_ner"):
        result = run_script("train.py", "itt=demo", f"target={target}", *root)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"tiny-s_itt-demo_{target}" in result.stdout

    built = [json.loads(line) for line in (tmp_path / "store/events.jsonl").read_text().splitlines()]
    itt_builds = [event for event in built if event.get("kind") == "itt" and event.get("event") == "built"]
    assert len(itt_builds) == 1, built  # one ITT encoder, trained once, for both targets

    cells = records_of(tmp_path / "results")
    by_target = {(records["en"]["itt"], records["en"]["target"]): (name, records) for name, records in cells.items()}
    itt_keys = {records["en"]["itt_key"] for (itt, _), (_, records) in by_target.items() if itt == "demo"}
    assert len(itt_keys) == 1 and None not in itt_keys

    for (itt, target), (name, records) in by_target.items():
        assert sorted(records) == sorted(DEMO_LANGS)
        for lang, record in records.items():
            # every task type validates on its English development split and stores the best epoch
            assert record["selection"] == "best" and record["dev_lang"] == "en" and record["dev_f1"] > 0
            assert record["dev_f1"] == record["dev_f1_best"] and 1 <= record["selected_epoch"] <= record["epoch_budget"]
            predictions = assert_recomputable(tmp_path / "results" / name, record)
            if target == "demo_ner":
                assert record["precision"] is not None and record["recall"] is not None
                assert record["exact_match"] is None and predictions["metric"] == "entity_f1"
                assert all(len(g) == len(p) for g, p in zip(predictions["gold"], predictions["pred"]))
            elif target == "demo_qa":
                assert record["exact_match"] is not None and record["precision"] is None
                assert all(isinstance(text, str) for text in predictions["pred"])
        # the trivial baselines score 0: all-O tags find no entity, an empty answer matches none
        if target in ("demo_ner", "demo_qa"):
            assert records["en"]["f1"] > 40, (itt, target, records["en"]["f1"])
            assert records["en"]["f1"] > records["far"]["f1"]


def test_a_qa_itt_encoder_starts_a_classification_target(shared, tmp_path):
    """`itt=squad` (here on TyDiQA-GoldP English, SQuAD's format) then a sentence
    classification target: the ITT artifact is an encoder only, whatever its head was."""
    result = run_script("train.py", "itt=squad", "itt.source=local", f"itt.path={shared / 'data/tydiqa'}",
                        "itt.local.pattern=tydiqa.goldp.en.train.json", "itt.train_sample={n: 300, seed: 1}",
                        "itt.hparams.max_length=128", "itt.doc_stride=32", "itt.hparams.lr=1e-3",
                        "itt.hparams.epochs=1", "target=demo", f"paths.root={tmp_path}", *QUIET)
    assert result.returncode == 0, result.stderr[-3000:]
    ((name, records),) = records_of(tmp_path / "results").items()
    assert sorted(records) == sorted(DEMO_LANGS) and records["en"]["itt"] == "squad"
    assert records["en"]["accuracy"] is not None and records["en"]["f1"] > 40  # chance: 33
    assert_recomputable(tmp_path / "results" / name, records["en"])


def test_f1_tasks_compose_with_their_sources_and_languages():
    expected = {"panx": ("tagging", 40, "google/xtreme"), "udpos": ("tagging", 16, "google/xtreme"),
                "xquad": ("qa", 12, "google/xquad"), "mlqa": ("qa", 7, "google/xtreme"),
                "tydiqa": ("qa", 9, "google-research-datasets/tydiqa")}
    for name, (kind, n_langs, hub) in expected.items():
        cell = Cell.from_config(compose(f"target={name}"))
        target = cell.target
        assert target["task_type"] == kind and len(target["languages"]) == n_langs and target["hub"]["path"] == hub
        assert target["local"]["format"] in ("panx", "conllu", "squad")
    squad = Cell.from_config(compose("itt=squad", "target=xnli"))
    assert squad.itt["task_type"] == "qa" and squad.itt["hub"]["path"] == "rajpurkar/squad"
    assert squad.target["name"] == "xnli" and squad.itt_key


def test_a_task_without_a_task_type_is_classification():
    from xitt.tasktypes import task_type

    target = dict(Cell.from_config(compose("target=demo")).target)
    del target["task_type"]
    assert task_type(target).name == "classification"


def test_an_unknown_task_type_is_one_paragraph_naming_the_fix(tmp_path):
    result = run_script("train.py", "target=demo", "target.task_type=ranking", f"paths.root={tmp_path}", *QUIET)
    assert result.returncode != 0
    assert "task_type 'ranking'" in result.stderr and "classification, tagging, qa" in result.stderr


@pytest.mark.slow
def test_real_panx_english_transfers_zero_shot_above_the_all_o_baseline(shared, tmp_path):
    """e5-small's bottom 6 layers (the depth ladder's l6: 60% of the 12-layer cell's time)
    fine-tuned on 1000 English PAN-X sentences (2 epochs of 63 batches of 16, the lowest 3
    layers frozen), the epoch selected on 300 English sentences held out of training (all 2,000
    held out score the same here, in 14 s more); entity F1 on 300 dev sentences of each other
    language (de 57.5, fr 48.0, es 40.1, ru 31.9, tr 56.3 on a 2-core AMD EPYC). The majority
    tag (O) finds no entity: F1 0. (With 32-sentence batches at lr 5e-5, 63 steps leave F1
    near 10.)"""
    langs = ["de", "fr", "es", "ru", "tr"]
    result = run_script(
        "train.py", "model=e5_depth", "size=l6", f"model.name_or_path={shared / 'models/multilingual-e5-small'}",
        "itt=none",
        "target=panx", "target.source=local", f"target.path={shared / 'data/panx'}", "target.test_split=validation",
        f"target_lang.langs=[en,{','.join(langs)}]", "target.train_sample={n: 1000, seed: 1}",
        "target.test_sample={n: 300, seed: 1}", "+target.dev_sample={n: 300, seed: 0}", "target.hparams.epochs=2",
        "target.hparams.lr=1e-4",
        "target.hparams.batch_size=16", "target.hparams.max_length=64", "freezing=bottom_k", "freezing.k=3",
        f"paths.root={tmp_path}", *QUIET,
        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    ((name, records),) = records_of(tmp_path / "results").items()
    scores = {lang: round(record["f1"], 1) for lang, record in records.items()}
    print(f"\nzero-shot PAN-X entity F1 from English (e5-small, all-O baseline 0): {scores}")
    for record in records.values():
        assert record["n"] == 300 and record["train_lang"] == "en"
        assert_recomputable(tmp_path / "results" / name, record)
    assert sum(scores[lang] > 20 for lang in langs) >= 4, scores
