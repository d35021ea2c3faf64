"""Tests of the analysis on synthetic grids whose true ITT gain is known.

The simulated models are classifiers whose per-example probability of being right is set
exactly: every example has a latent difficulty shared by all models (so the models'
errors are correlated, as on a real test set), and a model is right when a mix of that
difficulty and its own noise falls below its accuracy.  With balanced classes and errors
spread evenly over the wrong classes, expected macro-F1 equals accuracy, so the true F1
gain of ITT is 100 x (accuracy with ITT - accuracy without).  The true gain is linear in
log10(params), and every (size, ITT, seed) model gets a random seed effect shared by all
languages, as one zero-shot model scores every language.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import f1_score

from xitt.analysis import (Estimate, ReportError, analyse, bootstrap_macro_f1, build_report,
                           interval_matrix, language_groups, load_results, macro_f1,
                           pool_seeds)
from xitt.analysis.report import answers
from xitt.analysis.stats import resample_indices

N_CLASSES = 3
LABELS = ["entailment", "neutral", "contradiction"]


@dataclass
class SyntheticGrid:
    """The truth behind a simulated grid (accuracies as probabilities)."""

    params: dict[str, int] = field(default_factory=lambda: {"s": 10**6, "m": 10**7, "l": 10**8})
    gain_at_10m: dict[str, float] = field(
        default_factory=lambda: {"de": 0.04, "sw": 0.06, "xx": 0.05})
    gain_slope: float = 0.03  # per decade of parameters
    base_accuracy: float = 0.55
    seed_sd: float = 0.01  # sd of a model's accuracy over training seeds
    difficulty_share: float = 0.5  # share of an example's noise common to all models
    seeds: tuple[int, ...] = (1, 2, 3)
    n_examples: int = 500
    itt: str = "demo"

    @property
    def languages(self) -> list[str]:
        return list(self.gain_at_10m)

    def true_gain(self, lang: str, size: str) -> float:
        """The population F1 gain in F1 points."""
        decades = math.log10(self.params[size]) - 7
        return 100 * (self.gain_at_10m[lang] + self.gain_slope * decades)

    def accuracy(self, lang: str, size: str, itt: str) -> float:
        decades = math.log10(self.params[size]) - 6
        gain = self.true_gain(lang, size) / 100 if itt != "none" else 0.0
        return self.base_accuracy + 0.05 * decades + gain


def simulate(truth: SyntheticGrid, rng: np.random.Generator,
             skip: frozenset = frozenset()) -> list[tuple[dict, dict]]:
    """(record, predictions) pairs of a simulated grid; ``skip`` holds (size, itt, lang)."""
    test_sets = {}
    for lang in truth.languages:
        test_sets[lang] = (rng.integers(0, N_CLASSES, truth.n_examples),
                           rng.standard_normal(truth.n_examples))
    outputs = []
    for size, params in truth.params.items():
        for itt in ("none", truth.itt):
            for seed in truth.seeds:
                seed_effect = rng.normal(0.0, truth.seed_sd)
                for lang, (gold, difficulty) in test_sets.items():
                    if (size, itt, lang) in skip:
                        continue
                    accuracy = truth.accuracy(lang, size, itt) + seed_effect
                    share = truth.difficulty_share
                    latent = (math.sqrt(share) * difficulty
                              + math.sqrt(1 - share) * rng.standard_normal(len(gold)))
                    right = norm.cdf(latent) < accuracy
                    wrong_label = (gold + rng.integers(1, N_CLASSES, len(gold))) % N_CLASSES
                    pred = np.where(right, gold, wrong_label)
                    outputs.append(_record_and_predictions(
                        size, params, itt, seed, lang, gold, pred))
    return outputs


def _record_and_predictions(size, params, itt, seed, lang, gold, pred) -> tuple[dict, dict]:
    cell_name = f"tiny-{size}-{itt}-xnli-zero_shot-seed{seed}"
    record = {
        "cell_key": f"key-{cell_name}", "cell_name": cell_name, "target_key": f"t-{cell_name}",
        "itt_key": None if itt == "none" else f"i-{size}-{itt}-{seed}", "model": "tiny",
        "size": size, "params": params, "itt": itt, "target": "xnli",
        "transfer": "zero_shot", "freezing": "none", "seed": seed, "lang": lang,
        "train_lang": "en", "f1": macro_f1(gold, pred, N_CLASSES),
        "accuracy": 100 * float(np.mean(gold == pred)), "n": len(gold), "sweep": None,
        "config": {"lr": 2e-5}, "versions": {"xitt": "0"},
        "predictions": f"{lang}.predictions.json", "created": "2025-01-01T00:00:00",
    }
    predictions = {"ids": list(range(len(gold))), "gold": gold.tolist(), "pred": pred.tolist(),
                   "labels": LABELS}
    return record, predictions


def write_results(root: Path, outputs: list[tuple[dict, dict]]) -> list[Path]:
    """Write records as the pipeline does: <root>/<cell dir>/<lang>.json and predictions."""
    paths = []
    for record, predictions in outputs:
        folder = root / record["cell_name"]
        folder.mkdir(parents=True, exist_ok=True)
        if predictions is not None:
            (folder / f"{record['lang']}.predictions.json").write_text(json.dumps(predictions))
        path = folder / f"{record['lang']}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def write_synthetic_results(root: Path, truth: SyntheticGrid | None = None, seed: int = 0,
                            skip: frozenset = frozenset()) -> SyntheticGrid:
    truth = truth or SyntheticGrid()
    write_results(root, simulate(truth, np.random.default_rng(seed), skip))
    return truth


def language_gains(analysis) -> pd.DataFrame:
    gains = analysis.gains
    return gains[(gains["scope"] == "language") & (gains["status"] == "ok")]


# --- macro-F1 and its bootstrap -------------------------------------------------------

def test_macro_f1_matches_scikit_learn_and_the_bootstrap_recomputes_it_per_resample():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, gold, rng.integers(0, 4, 300))
    pred[pred == 3] = 2  # a class never predicted
    assert macro_f1(gold, pred, 4) == pytest.approx(100 * f1_score(gold, pred, average="macro"))

    replicates = bootstrap_macro_f1(gold, np.stack([pred, gold]), 4, 50,
                                    np.random.default_rng(7))
    indices = np.concatenate(list(resample_indices(300, 50, np.random.default_rng(7))))
    expected = [100 * f1_score(gold[i], pred[i], average="macro") for i in indices]
    assert replicates.shape == (2, 50)
    np.testing.assert_allclose(replicates[0], expected)
    np.testing.assert_allclose(replicates[1], 100.0)


def test_an_interval_adds_seed_noise_to_the_test_set_noise_that_seeds_share():
    seeds_only = pool_seeds({seed: Estimate(value, np.full(100, value), examples_resampled=False)
                             for seed, value in ((1, 1.0), (2, 3.0), (3, 5.0))})
    half_width = 4.302653 * 2.0 / math.sqrt(3)  # t(0.975, 2 dof) x standard error of the mean
    assert seeds_only.interval() == pytest.approx((3.0 - half_width, 3.0 + half_width))

    # each seed's replicates: a test-set deviation all seeds share (sd 1) and one of its own
    # (sd 2), which the spread of the seeds already holds and must not be counted again
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 1.0, 20_000)
    both = pool_seeds({seed: Estimate(value, value + shared + rng.normal(0.0, 2.0, 20_000))
                       for seed, value in ((1, 1.0), (2, 3.0), (3, 5.0))})
    assert both.test_variance == pytest.approx(1.0, rel=0.1)
    low, high = both.interval()
    expected = math.hypot(half_width, 1.959964 * math.sqrt(both.test_variance))
    assert (high - 3.0, 3.0 - low) == pytest.approx((expected, expected))


# --- estimates against the truth ------------------------------------------------------

def test_gains_and_slopes_match_the_truth_and_intervals_cover_it(tmp_path):
    truth = SyntheticGrid()
    n_simulations = 30
    gain_errors, gain_covered, slope_errors, slope_covered = [], [], [], []
    for simulation in range(n_simulations):
        root = tmp_path / f"grid{simulation}"
        write_synthetic_results(root, truth, seed=simulation)
        analysis = analyse(load_results([root]), n_bootstrap=200, seed=simulation)
        for row in language_gains(analysis).itertuples():
            true_gain = truth.true_gain(row.group, row.size)
            gain_errors.append(row.gain - true_gain)
            gain_covered.append(row.ci_low <= true_gain <= row.ci_high)
        trends = analysis.trends[analysis.trends["scope"].isin(["language", "overall"])]
        for row in trends.itertuples():
            slope_errors.append(row.slope_per_decade - 100 * truth.gain_slope)
            slope_covered.append(row.ci_low <= 100 * truth.gain_slope <= row.ci_high)

    assert len(gain_errors) == n_simulations * 9 and len(slope_errors) == n_simulations * 4
    # unbiased: the mean error over 270 gains (120 slopes) is a few tenths at most
    assert abs(np.mean(gain_errors)) < 0.4
    assert abs(np.mean(slope_errors)) < 0.4
    assert np.sqrt(np.mean(np.square(gain_errors))) < 3.5  # one gain errs by about 1.8
    assert 0.85 <= np.mean(gain_covered) <= 1.0
    assert 0.85 <= np.mean(slope_covered) <= 1.0


def test_the_test_set_test_finds_a_real_gain_and_not_a_null_one(tmp_path):
    real = SyntheticGrid(gain_at_10m={"de": 0.08}, gain_slope=0.0, seed_sd=0.0)
    write_synthetic_results(tmp_path / "real", real, seed=1)
    p_real = language_gains(analyse(load_results([tmp_path / "real"]), n_bootstrap=500))
    assert (p_real["p_value_test_set"] < 0.01).all()

    null_p_values = []
    for simulation in range(8):
        null = SyntheticGrid(gain_at_10m={"de": 0.0, "sw": 0.0}, gain_slope=0.0, seed_sd=0.0)
        root = tmp_path / f"null{simulation}"
        write_synthetic_results(root, null, seed=100 + simulation)
        null_p_values += language_gains(analyse(load_results([root]), n_bootstrap=500))[
            "p_value_test_set"].tolist()
    assert np.mean(np.less(null_p_values, 0.05)) <= 0.15  # about 0.05 expected
    assert np.median(null_p_values) > 0.3  # about 0.5 expected


def test_marks_follow_the_interval_over_seeds_and_not_the_test_set_alone(tmp_path):
    # seed noise much larger than test-set noise: the test-set test alone finds "effects"
    # that are seed luck; a mark must follow the interval that holds the seed noise
    noisy = SyntheticGrid(gain_at_10m={"de": 0.0, "sw": 0.03}, gain_slope=0.0, seed_sd=0.04)
    write_synthetic_results(tmp_path / "results", noisy, seed=3)
    gains = analyse(load_results([tmp_path / "results"]), n_bootstrap=300).gains
    gains = gains[gains["status"] == "ok"]
    excludes_zero = (gains["ci_low"] > 0) | (gains["ci_high"] < 0)
    marked = gains["verdict"].isin(["above_zero", "below_zero"])
    assert gains["seed_level_claim"].all()
    assert (marked == excludes_zero).all() and (marked == (gains["p_value"] < 0.05)).all()
    assert ((gains["p_value_test_set"] < 0.05) & ~marked).any()  # the case this prevents

    matrix = interval_matrix(gains, "gain", mark_significant=True)
    stars = matrix.drop(columns="language").map(lambda text: text.endswith("*"))
    assert stars.to_numpy().sum() == marked.sum()


# --- the report -----------------------------------------------------------------------

def test_missing_twins_are_listed_in_gains_and_report(tmp_path):
    skip = frozenset({("m", "none", "de")})
    write_synthetic_results(tmp_path / "results", skip=skip)
    result = build_report([tmp_path / "results"], tmp_path / "report", n_bootstrap=100)

    gains = pd.read_csv(result["files"]["gains.csv"])
    missing = gains[gains["status"] == "missing_counterpart"]
    assert missing[["size", "itt", "group"]].values.tolist() == [["m", "demo", "de"]]
    assert result["n_missing_counterparts"] == 1
    report = result["files"]["report.md"].read_text()
    section = report.split("## Missing counterparts")[1].split("## ")[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| tiny")]
    assert rows == [["tiny", "xnli", "f1", "zero_shot", "none", "en", "", "", "", "m", "10000000", "demo", "de",
                     "1 2 3"]]
    # the other languages of that size still give a pooled gain, from two languages
    pooled = gains[(gains["scope"] == "overall") & (gains["size"] == "m")]
    assert pooled["n_languages"].tolist() == [2]


def test_build_report_writes_tables_plots_and_answer_and_logs_to_wandb(tmp_path):
    write_synthetic_results(tmp_path / "results")

    class RecordingRun:
        logged: dict = {}

        def log(self, values):
            self.logged.update(values)

    run = RecordingRun()
    result = build_report([str(tmp_path / "results")], tmp_path / "report", wandb_run=run,
                          n_bootstrap=100)

    files = result["files"]
    for name in ("summary.csv", "scores.csv", "gains.csv", "trends.csv", "report.md",
                 "gains.tex", "scores.tex", "trends.tex"):
        assert files[name].is_file() and files[name].stat().st_size > 0, name
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    slug = "tiny-xnli-f1-zero_shot-none-en"
    assert pngs == [f"gain_by_group_{slug}.png", f"gain_heatmap_{slug}-demo.png", f"gain_vs_size_{slug}.png",
                    f"score_vs_size_{slug}.png"]

    summary = pd.read_csv(files["summary.csv"])
    assert len(summary) == 3 * 2 * 3 * 3  # sizes x itt x seeds x languages
    np.testing.assert_allclose(summary["f1"], summary["score_from_predictions"])
    assert summary.set_index("lang")["resource"].to_dict() == {
        "de": "high", "sw": "low", "xx": "other"}

    (answer,) = result["answers"]
    assert [g["size"] for g in answer["gains"]] == ["s", "m", "l"]
    slope = answer["slope"]
    assert slope["ci_low"] < slope["slope_per_decade"] < slope["ci_high"]
    sentence = answer["sentence"]
    assert sentence.startswith("ITT with demo changes xnli F1 (tiny on xnli")
    assert "at s (1M params; " in sentence and "per tenfold parameters" in sentence
    # each size and the trend say whether they are distinguishable from 0, with p
    assert len(re.findall(r"distinguishable from 0, p [=<] ", sentence)) == 4
    # the report opens with the answer, and its first figure is the gain by language group
    report = files["report.md"].read_text()
    assert report.splitlines()[:3] == ["# ITT gain versus model size", "", f"- {sentence}"]
    assert re.search(r"!\[[^]]*\]\(([^)]*)\)", report).group(1) == f"gain_by_group_{slug}.png"
    assert "\\begin{tabular}" in files["gains.tex"].read_text()

    import wandb
    assert isinstance(run.logged["report/gains"], wandb.Table)
    assert isinstance(run.logged[f"report/gain_vs_size_{slug}"], wandb.Image)


def test_grids_without_twins_sizes_or_predictions_still_give_a_report(tmp_path):
    one_size = SyntheticGrid(params={"m": 10**7}, seeds=(1, 2), n_examples=100)
    outputs = simulate(one_size, np.random.default_rng(0))
    write_results(tmp_path / "no_itt", [o for o in outputs if o[0]["itt"] == "none"])
    result = build_report([tmp_path / "no_itt"], tmp_path / "report1", n_bootstrap=50)
    assert result["answers"] == [] and result["n_gains"] == 0
    assert "No ITT cell has a no-ITT twin" in result["files"]["report.md"].read_text()

    paths = write_results(tmp_path / "no_predictions", outputs)
    for path in paths:
        path.with_name(f"{path.stem}.predictions.json").unlink()
    result = build_report([tmp_path / "no_predictions"], tmp_path / "report2", n_bootstrap=50)
    (answer,) = result["answers"]
    assert answer["slope"] is None and "two or more sizes" in answer["sentence"]
    gains = pd.read_csv(result["files"]["gains.csv"])
    assert gains["p_value_test_set"].isna().all() and (gains["seed_noise"] == "full").all()
    assert (gains["verdict"] == "too_few_seeds").all()
    assert "has no predictions file" in result["files"]["report.md"].read_text()


def test_with_two_seeds_the_report_makes_no_seed_level_claim(tmp_path):
    write_synthetic_results(tmp_path / "results", SyntheticGrid(seeds=(1, 2), n_examples=200))
    result = build_report([tmp_path / "results"], tmp_path / "report", n_bootstrap=100)

    (answer,) = result["answers"]
    sentence = answer["sentence"]
    assert "With 2 seeds no seed-level claim can be made" in sentence
    assert "distinguishable" not in sentence
    first = answer["gains"][0]  # shown with its interval over test examples, marked
    assert (f"{first['gain']:+.1f} [{first['ci_low_test_set']:.1f}, "
            f"{first['ci_high_test_set']:.1f}] † at s (1M params)") in sentence
    # the form the end-to-end test of the demo grid (two seeds) looks for
    report = result["files"]["report.md"].read_text()
    assert re.search(r"ITT with demo changes xnli F1 \(.*\) by [+-]\d+\.\d \[", report)
    gain_table = report.split("### Gain of ITT with demo")[1].split("###")[0]
    assert "*" not in gain_table and gain_table.count("†") == 9 * 3  # groups x sizes
    gains = pd.read_csv(result["files"]["gains.csv"])
    assert (gains["verdict"] == "too_few_seeds").all() and not gains["seed_level_claim"].any()


def test_a_folder_without_records_raises_a_report_error_that_says_what_to_do(tmp_path):
    (tmp_path / "empty" / ".hydra").mkdir(parents=True)
    (tmp_path / "empty" / "wandb-summary.json").write_text('{"loss": 1.0}')
    with pytest.raises(ReportError, match="No result records found in .*empty.*Run a grid"):
        build_report([tmp_path / "empty"], tmp_path / "report")
    with pytest.raises(ValueError, match="does not exist"):
        load_results([tmp_path / "nowhere"])


def test_sweep_folders_follow_records_txt_and_count_each_record_once(tmp_path):
    truth = SyntheticGrid(gain_at_10m={"de": 0.05}, seeds=(1, 2), n_examples=100)
    paths = write_results(tmp_path / "results", simulate(truth, np.random.default_rng(0)))
    sweep_job = tmp_path / "multirun" / "2025-01-01" / "0"
    sweep_job.mkdir(parents=True)
    (sweep_job / "records.txt").write_text("\n".join(str(p.resolve()) for p in paths) + "\n")

    from_sweep = load_results([tmp_path / "multirun"])
    assert len(from_sweep.records) == len(paths) and len(from_sweep.predictions) == len(paths)
    both = load_results([tmp_path / "multirun", tmp_path / "results"])
    assert len(both.records) == len(paths) and both.superseded.empty


def test_a_later_record_of_the_same_run_supersedes_the_earlier_one(tmp_path):
    truth = SyntheticGrid(gain_at_10m={"de": 0.05}, seeds=(1,), n_examples=100)
    outputs = simulate(truth, np.random.default_rng(0))
    write_results(tmp_path / "old", outputs)
    record, predictions = outputs[0]
    write_results(tmp_path / "new", [({**record, "created": "2025-02-01T00:00:00"}, predictions)])

    results = load_results([tmp_path / "old", tmp_path / "new"])
    assert len(results.records) == len(outputs)
    assert len(results.superseded) == 1 and "old" in results.superseded["record_path"][0]


def test_language_groups_put_unknown_codes_in_other():
    assert language_groups("de") == ("high", "Latin")
    assert language_groups("zh-CN") == ("high", "Han")
    assert language_groups("ur") == ("low", "Arabic")
    assert language_groups("xx") == ("other", "other")


def test_gains_read_each_records_primary_score_not_f1_by_name(tmp_path):
    """A target whose task type's primary score is an accuracy: records name it (`metric`) and
    hold no F1; scores, gains and sentences are in its points."""
    outputs = simulate(SyntheticGrid(), np.random.default_rng(0))
    for record, _ in outputs:
        record.update(metric="accuracy", predictions="")
        del record["f1"]
    write_results(tmp_path / "results", [(record, None) for record, _ in outputs])  # recorded scores only
    analysis = analyse(load_results([tmp_path / "results"]), n_bootstrap=50)
    records = pd.DataFrame([record for record, _ in outputs])
    expected = records[records["lang"] == "de"].groupby(["size", "itt"])["accuracy"].mean()
    scores = analysis.scores[analysis.scores["scope"] == "language"].set_index("group")
    de = scores.loc["de"].set_index(["size", "itt"])
    assert set(scores["metric"]) == {"accuracy"}
    assert de["score"].sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy())
    (answer,) = answers(analysis)
    assert answer["sentence"].startswith("ITT with demo changes xnli accuracy (")
    assert "F1" not in answer["sentence"]
