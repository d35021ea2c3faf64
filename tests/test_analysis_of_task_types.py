"""The report on tagging (NER, POS) and extractive QA targets: F1 is F1.

The records and predictions files here have the formats the pipeline writes
(the task type's ``predictions_file``) and the scores it records
(``prediction_scores``), so the report must recompute exactly the recorded F1, and its
bootstrap must resample the units the test set samples (sentences, questions), never the
tokens or entities inside them.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from xitt.analysis import analyse, bootstrap_ratio, build_report, load_results
from xitt.analysis.records import read_predictions
from xitt.analysis.stats import resample_indices
from xitt.core.records import PREDICTIONS_SUFFIX, Record
from xitt.metrics.qa import qa_scores
from xitt.metrics.tagging import entity_scores, token_accuracy
from xitt.tasktypes import prediction_scores
from xitt.tasktypes.qa import QA_F1
from xitt.tasktypes.tagging import ENTITY_F1, WORD_ACCURACY

# Hand-made predictions files, ids out of order (the report sorts them).
NER = {"task_type": "tagging", "metric": "entity_f1", "labels": ["O", "B-PER", "I-PER"],
       "ids": ["s2", "s0", "s1"],
       "gold": [["B-ORG", "O", "B-PER"], ["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]],
       "pred": [["B-ORG", "O", "I-PER"], ["B-PER", "I-PER", "O", "B-ORG"], ["B-LOC", "O"]]}
# per sentence in id order: (tp, predicted, gold) entities; a stray I-PER starts an entity
NER_COUNTS = [[1, 2, 2], [0, 1, 0], [2, 2, 2]]
POS = {"task_type": "tagging", "metric": "word_accuracy", "labels": ["NOUN", "VERB", "DET"],
       "ids": ["b", "a"], "gold": [["DET", "NOUN", "PUNCT"], ["NOUN", "VERB"]],
       "pred": [["DET", "NOUN", "_"], ["NOUN", "NOUN"]]}  # "_": a word cut by truncation
POS_COUNTS = [[1, 2], [2, 3]]
QA = {"task_type": "qa", "lang": "en", "ids": ["q1", "q2", "q3"],
      "gold": [["Eiffel Tower"], ["Paris, France", "Paris"], ["1889"]],
      "pred": ["the Eiffel Tower", "in Paris", ""]}
QA_COUNTS = [[1.0, 1.0], [2 / 3, 0.0], [0.0, 0.0]]  # (F1, exact match) per question


def write_record(root: Path, predictions: dict, *, target: str, lang: str = "de",
                 size: str = "s", params: int = 10**6, itt: str = "none", seed: int = 1,
                 **overrides) -> Path:
    """A record and its predictions file, as ``Pipeline.write_record`` writes them."""
    cell_name = f"tiny-{size}-{itt}-{target}-zero_shot-seed{seed}"
    folder = root / cell_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lang}{PREDICTIONS_SUFFIX}").write_text(json.dumps(predictions))
    record = Record(
        cell_key=f"key-{cell_name}", cell_name=cell_name, result_key=f"r-{cell_name}-{lang}",
        target_key=f"t-{cell_name}", itt_key=None if itt == "none" else f"i-{size}-{seed}",
        model="tiny", size=size, params=params, itt=itt, target=target, transfer="zero_shot",
        freezing="none", seed=seed, lang=lang, train_lang="en",
        **prediction_scores(predictions), predictions=f"{lang}{PREDICTIONS_SUFFIX}",
        created="2025-01-01T00:00:00").as_dict()
    path = folder / f"{lang}.json"
    path.write_text(json.dumps({**record, **overrides}))
    return path


# --- per-example statistics and the recomputed F1 --------------------------------------

@pytest.mark.parametrize("predictions, metric, counts", [
    (NER, ENTITY_F1, NER_COUNTS), (POS, WORD_ACCURACY, POS_COUNTS), (QA, QA_F1, QA_COUNTS)],
    ids=["ner", "pos", "qa"])
def test_predictions_become_counts_per_sentence_or_question(tmp_path, predictions, metric,
                                                            counts):
    path = tmp_path / "de.predictions.json"
    path.write_text(json.dumps(predictions))
    read = read_predictions(path, "target")
    assert read.metric == metric
    np.testing.assert_allclose(read.counts, counts)  # sorted by id, one row per unit
    same_ids = read_predictions(path, "target")
    assert read.test_set == same_ids.test_set and read.test_set.startswith("target:")


def test_the_report_recomputes_the_recorded_f1_of_every_task_type(tmp_path):
    expected = {"panx": 100 * 2 * 3 / (5 + 4), "udpos": 100 * 3 / 5,
                "xquad": 100 * (1 + 2 / 3) / 3}
    for target, predictions in (("panx", NER), ("udpos", POS), ("xquad", QA)):
        write_record(tmp_path, predictions, target=target)
    results = load_results([tmp_path])
    assert not results.problems
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recorded-vs-recomputed mismatch warns
        summary = analyse(results, n_bootstrap=50).summary.set_index("target")
    for target, f1 in expected.items():
        assert summary.loc[target, "f1"] == pytest.approx(f1)
        assert summary.loc[target, "score_from_predictions"] == pytest.approx(f1, abs=1e-9)
        assert summary.loc[target, "score_ci_low"] <= f1 <= summary.loc[target, "score_ci_high"]


def test_a_recorded_f1_that_its_predictions_do_not_give_is_flagged(tmp_path):
    write_record(tmp_path, NER, target="panx", f1=90.0)
    with pytest.warns(UserWarning, match="recorded F1 90.00 but the F1 of its predictions"):
        summary = analyse(load_results([tmp_path]), n_bootstrap=20).summary
    assert summary["score_from_predictions"].iloc[0] == pytest.approx(200 / 3)


def test_unreadable_tagging_or_qa_predictions_are_listed_not_fatal(tmp_path):
    broken = {"de": {**NER, "pred": [["B-ORG", "O", "E-PER"], *NER["pred"][1:]]},  # not IOB2
              "sw": {**NER, "pred": [["B-ORG", "O"], *NER["pred"][1:]]},  # a truncated sentence
              "fr": {**QA, "gold": [[], *QA["gold"][1:]]}}  # a question without gold answers
    for lang, predictions in broken.items():
        record = write_record(tmp_path, QA if lang == "fr" else NER,
                              target="xquad" if lang == "fr" else "panx", lang=lang)
        record.with_name(f"{lang}{PREDICTIONS_SUFFIX}").write_text(json.dumps(predictions))
    results = load_results([tmp_path])
    assert len(results.problems) == 3 and not results.predictions
    assert all(problem.startswith("unreadable predictions") for problem in results.problems)


# --- the bootstrap resamples sentences and questions -----------------------------------

def _random_ner(rng: np.random.Generator, n_sentences: int) -> dict:
    gold, pred = [], []
    for _ in range(n_sentences):
        tags = rng.choice(["O", "B-PER", "I-PER", "B-LOC"], size=rng.integers(1, 8)).tolist()
        gold.append(tags)
        pred.append([tag if rng.random() < 0.7 else rng.choice(["O", "B-LOC", "I-PER"])
                     for tag in tags])
    return {"task_type": "tagging", "metric": "entity_f1", "labels": [],
            "ids": [f"s{i:04d}" for i in range(n_sentences)], "gold": gold, "pred": pred}


def _random_pos(rng: np.random.Generator, n_sentences: int) -> dict:
    ner = _random_ner(rng, n_sentences)
    return {**ner, "metric": "word_accuracy"}


def _random_qa(rng: np.random.Generator, n_questions: int) -> dict:
    words = ["red", "river", "the", "old", "bridge", "town", "1889"]
    gold = [[" ".join(rng.choice(words, size=rng.integers(1, 4)))] for _ in range(n_questions)]
    pred = [answers[0] if rng.random() < 0.4 else " ".join(rng.choice(words, size=2))
            for answers in gold]
    return {"task_type": "qa", "lang": None, "ids": [f"q{i:04d}" for i in range(n_questions)],
            "gold": gold, "pred": pred}


def _score_from_scratch(predictions: dict, rows: np.ndarray) -> float:
    gold = [predictions["gold"][row] for row in rows]
    pred = [predictions["pred"][row] for row in rows]
    if predictions["task_type"] == "qa":
        return qa_scores(pred, gold, predictions["lang"])["f1"]
    if predictions["metric"] == "entity_f1":
        return entity_scores(gold, pred)["f1"]
    return token_accuracy(gold, pred)


@pytest.mark.parametrize("make", [_random_ner, _random_pos, _random_qa], ids=["ner", "pos", "qa"])
def test_each_replicate_is_the_metric_of_resampled_sentences_or_questions(tmp_path, make):
    predictions = make(np.random.default_rng(0), 60)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(predictions))  # ids already sorted: rows stay in file order
    numerators, denominators = read_predictions(path, "t").ratio_terms()
    replicates = bootstrap_ratio(numerators, denominators, 40, np.random.default_rng(7))
    # the same resamples as bootstrap_macro_f1 draws: rows of units, scored from scratch
    rows = np.concatenate(list(resample_indices(60, 40, np.random.default_rng(7))))
    expected = [_score_from_scratch(predictions, resample) for resample in rows]
    assert replicates.shape == (1, 40)
    np.testing.assert_allclose(replicates[0], expected, atol=1e-9)


def test_one_sentence_holding_all_entities_gives_the_wide_interval_of_one_unit(tmp_path):
    # 20 sentences, all 6 entities in the first, 3 of them found and 3 given the wrong
    # type: F1 = 2 x 3 / (6 + 6) = 50.  A resample holds that sentence (F1 50, however
    # often it is drawn) or not (no entities: F1 0), the latter with probability
    # (19/20)^20; resampling entities or tokens would give a narrow interval around 50.
    busy = ["B-PER", "O", "B-LOC", "O", "B-PER", "I-PER", "B-LOC", "B-PER", "O", "B-LOC"]
    found = ["B-PER", "O", "B-LOC", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "O", "B-PER"]
    empty = [["O", "O", "O"]] * 19
    predictions = {"task_type": "tagging", "metric": "entity_f1", "labels": [],
                   "ids": [f"s{i:02d}" for i in range(20)],
                   "gold": [busy, *empty], "pred": [found, *empty]}
    write_record(tmp_path, predictions, target="panx")
    results = load_results([tmp_path])
    summary = analyse(results, n_bootstrap=2000).summary.iloc[0]
    assert summary["score_from_predictions"] == pytest.approx(50.0)
    assert (summary["score_ci_low"], summary["score_ci_high"]) == (0.0, 100.0)

    numerators, denominators = results.predictions[0].ratio_terms()
    replicates = bootstrap_ratio(numerators, denominators, 4000, np.random.default_rng(1))[0]
    assert set(np.unique(replicates)) == {0.0, 50.0}
    assert np.mean(replicates == 0.0) == pytest.approx((19 / 20) ** 20, abs=0.025)


@pytest.mark.parametrize("make", [_random_ner, _random_pos, _random_qa], ids=["ner", "pos", "qa"])
def test_replicates_centre_on_the_estimate_and_pair_records_of_a_test_set(tmp_path, make):
    predictions = make(np.random.default_rng(3), 400)
    # a second model on the same units: the first, but right on every tenth one
    other = {**predictions, "pred": list(predictions["pred"])}
    for row in range(0, 400, 10):
        gold = predictions["gold"][row]
        other["pred"][row] = gold[0] if predictions["task_type"] == "qa" else gold
    terms = []
    for name, content in (("a", predictions), ("b", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
        terms.append(read_predictions(tmp_path / f"{name}.json", "t").ratio_terms())
    numerators = np.stack([numerator for numerator, _ in terms])
    denominators = np.stack([denominator for _, denominator in terms])
    replicates = bootstrap_ratio(numerators, denominators, 2000, np.random.default_rng(5))
    point = 100 * numerators.sum(axis=1) / denominators.sum(axis=1)
    spread = replicates.std(axis=1)
    assert np.all(np.abs(replicates.mean(axis=1) - point) < 0.15 * spread)
    # paired: the difference varies far less than either model, as both draw the same units
    assert (replicates[1] - replicates[0]).std() < 0.6 * spread.min()
    # a model resampled alone, by a generator of the same seed, gets the same draws
    alone = bootstrap_ratio(numerators[1], denominators[1], 2000, np.random.default_rng(5))
    np.testing.assert_allclose(alone[0], replicates[1])


# --- the report of a NER grid with a known gain ----------------------------------------

SIZES = {"s": 10**6, "m": 10**8}
TRUE_GAIN = {"s": 5.0, "m": 10.0}  # entity F1 points of itt=demo over itt=none
BASE_F1 = {"s": 60.0, "m": 70.0}
SEED_SD = 0.5  # sd of a model's F1 over training seeds
DIFFICULTY_SHARE = 0.8  # share of an entity's noise that is its sentence's, for all models
TYPES = ["PER", "ORG", "LOC"]


def _ner_test_set(rng: np.random.Generator, n_sentences: int) -> dict:
    """Sentences of 0-3 entities ("O B-X I-X" each), and a difficulty per sentence that all
    models share, so that a sentence's entities are found or missed together."""
    entities = rng.choice(4, size=n_sentences, p=[0.3, 0.3, 0.25, 0.15])
    types = [rng.choice(TYPES, size=count).tolist() for count in entities]
    return {"ids": [f"s{i:04d}" for i in range(n_sentences)], "types": types,
            "gold": [[tag for t in sentence for tag in ("O", f"B-{t}", f"I-{t}")] + ["O"]
                     for sentence in types],
            "difficulty": rng.standard_normal(n_sentences)}


def _ner_model(rng: np.random.Generator, test_set: dict, f1: float) -> dict:
    """A model that finds each entity (right span and type) with probability f1 / 100 and
    otherwise gives the right span a wrong type.  Predicted and gold entities are then
    equally many, so the entity F1 of the population is exactly ``f1``."""
    pred = []
    for types, difficulty in zip(test_set["types"], test_set["difficulty"]):
        latent = (math.sqrt(DIFFICULTY_SHARE) * difficulty
                  + math.sqrt(1 - DIFFICULTY_SHARE) * rng.standard_normal(len(types)))
        right = norm.cdf(latent) < f1 / 100  # latent is standard normal
        tags = ["O"]
        for entity_type, is_right in zip(types, right):
            shown = entity_type if is_right else TYPES[(TYPES.index(entity_type) + 1) % 3]
            tags[-1:] = ["O", f"B-{shown}", f"I-{shown}", "O"]
        pred.append(tags)
    return {"task_type": "tagging", "metric": "entity_f1", "labels": [],
            "ids": test_set["ids"], "gold": test_set["gold"], "pred": pred}


def write_ner_grid(root: Path, rng: np.random.Generator) -> None:
    """2 sizes x itt none/demo x 3 seeds, scored on two languages' test sets."""
    test_sets = {lang: _ner_test_set(rng, 500) for lang in ("de", "sw")}
    for size, params in SIZES.items():
        for itt in ("none", "demo"):
            for seed in (1, 2, 3):
                f1 = BASE_F1[size] + (TRUE_GAIN[size] if itt == "demo" else 0.0)
                f1 += rng.normal(0.0, SEED_SD)  # the seed's model, shared by its languages
                for lang, test_set in test_sets.items():
                    write_record(root, _ner_model(rng, test_set, f1), target="panx",
                                 lang=lang, size=size, params=params, itt=itt, seed=seed)


def test_the_report_of_a_ner_grid_finds_the_known_gain(tmp_path):
    write_ner_grid(tmp_path / "results", np.random.default_rng(11))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every recorded F1 is recomputed
        report = build_report([tmp_path / "results"], tmp_path / "report", n_bootstrap=400)
    assert report["n_records"] == 24 and report["n_missing_counterparts"] == 0
    summary = pd.read_csv(report["files"]["summary.csv"])
    assert summary["has_predictions"].all()
    np.testing.assert_allclose(summary["score_from_predictions"], summary["f1"], atol=1e-9)

    gains = pd.read_csv(report["files"]["gains.csv"])
    gains = gains[gains["scope"].isin(["language", "overall"])]
    assert len(gains) == 2 * 3  # per size: two languages and overall
    # (over 30 such grids: 97% of these intervals cover the truth, 8 points wide on average)
    for row in gains.itertuples():
        assert row.ci_low <= TRUE_GAIN[row.size] <= row.ci_high
        assert row.ci_high - row.ci_low < 15  # informative, not trivially covering
    overall = gains[gains["scope"] == "overall"].set_index("size")
    assert overall.loc["m", "verdict"] == "above_zero"
    assert overall.loc["m", "gain"] - overall.loc["s", "gain"] == pytest.approx(5.0, abs=3.0)
    assert "entity F1 for NER" in (tmp_path / "report" / "report.md").read_text()
