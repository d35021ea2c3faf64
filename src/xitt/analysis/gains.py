"""From records to the answer: mean score, ITT gain and the gain's trend with model size.

A record's score is its task type's primary score (``metric``: F1 for classification,
tagging, QA and mining, accuracy for a type scored by it); every table below is in points
of that score, and a setting (one target) has one.

The research question compares, for each model size, a cell trained with an English
intermediate task against its *twin* without one (``itt == "none"``, everything else
equal: model, size, target task, transfer mode, freezing, training and test language).
This module builds four tables, all with intervals from ``stats``:

* ``summary``: one row per record (cell x language x seed), its score with an interval over
  test examples;
* ``scores``: the score averaged over seeds, per cell and language and pooled over languages;
* ``gains``: ITT minus no-ITT score on the same seeds (where the twin has them), per language
  and pooled over language groups; an ITT cell without a twin gets a row with
  ``status == "missing_counterpart"``;
* ``trends``: the least-squares slope of the gain against log10(parameters), in points
  per tenfold increase of parameters, per language, language group and overall.

Every estimate has two intervals: ``ci_low``/``ci_high`` over seeds and test examples (the
question asked), and ``ci_low_test_set``/``ci_high_test_set`` over test examples only (these
trained models).  Gains and slopes also get the tests dual to them, ``p_value`` and
``p_value_test_set``, and a ``verdict``: whether the first interval lies above or below 0
or includes it, or ``too_few_seeds`` where ``seed_level_claim`` is False (see ``stats``).
Gains also say what the design could detect (``stats``, Power): ``mde``, the smallest true
gain that the seed-level test detects with 80% power; ``seeds_for_2pt`` and
``seeds_for_observed``, how many seeds would detect a gain of ``REFERENCE_GAIN`` points
and one of the observed size (inf: more than ``MAX_SEEDS``); and the two variances they are
computed from, ``seed_variance`` and ``test_variance``, which ``xitt.plan --power-from``
reads to plan another grid.

Pooled rows ("scopes") are plain means over the languages that have the quantity:
resource level and script groups come from ``languages``, and "overall" is all languages.
A group slope is the mean of its languages' slopes, so a language missing at one size
does not bend the trend.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xitt.core.records import score_title
from xitt.metrics.classification import macro_f1

from .languages import language_groups
from .records import CELL_KEYS, NO_ITT, SETTING_KEYS, Predictions, Results
from .stats import (Estimate, bootstrap_macro_f1, bootstrap_ratio, combine,
                    pool_seeds, ratio_score, slope_weights, stable_rng)

OK = "ok"
MISSING_COUNTERPART = "missing_counterpart"
# A language of an ITT cell where every run of it, or of its twin, has degenerate
# predictions (a record's ``warnings``): no gain, unless flagged runs are included.
FLAGGED = "flagged"
OVERALL = "all"
# How pooled rows group languages: scope name -> language code -> group name.
SCOPES: dict[str, Callable[[str], str]] = {
    "resource": lambda lang: language_groups(lang).resource,
    "script": lambda lang: language_groups(lang).script,
    "overall": lambda lang: OVERALL,
}
# Recomputed and recorded scores differing by more than this means the two definitions differ.
SCORE_MISMATCH_TOLERANCE = 0.05
# Points of the score: a gain of the size X-STILTs reports for ITT on most tasks (1-3 points), for
# which every gain states how many seeds would detect it (``seeds_for_2pt``).
REFERENCE_GAIN = 2.0

Key = tuple  # values of CELL_KEYS (+ lang)

# Columns each table has even when no row fills them (e.g. only missing counterparts).
_POOLED = ["scope", "group", "ci_low", "ci_high", "ci_low_test_set", "ci_high_test_set",
           "seed_level_claim", "n_languages", "status"]
_TESTS = ["p_value", "verdict", "p_value_test_set"]
POWER_COLUMNS = ["mde", "seeds_for_2pt", "seeds_for_observed", "seed_variance", "test_variance"]
SCORE_COLUMNS = [*CELL_KEYS, "score", *_POOLED]
GAIN_COLUMNS = [*CELL_KEYS, "gain", *_TESTS, *POWER_COLUMNS, *_POOLED]
TREND_COLUMNS = [*SETTING_KEYS, "itt", "sizes", "slope_per_decade", *_TESTS, *_POOLED]


@dataclass
class Analysis:
    """The tables of the report; ``level`` is the confidence level of their intervals."""

    summary: pd.DataFrame
    scores: pd.DataFrame
    gains: pd.DataFrame
    trends: pd.DataFrame
    results: Results
    level: float
    n_bootstrap: int
    include_flagged: bool = False  # whether flagged records count in the gains and trends

    @property
    def missing_counterparts(self) -> pd.DataFrame:
        return self.gains[self.gains["status"] == MISSING_COUNTERPART]

    @property
    def flagged(self) -> pd.DataFrame:
        """The records with warnings (degenerate predictions), as summary rows."""
        return self.summary[self.summary["warnings"] != ""]


def analyse(results: Results, *, n_bootstrap: int = 1000, level: float = 0.95,
            seed: int = 0, include_flagged: bool = False) -> Analysis:
    """Scores, gains and trends of the records, with ``level`` intervals and p-values.

    ``n_bootstrap`` resamples of the test examples per test set, drawn from generators
    determined by ``seed`` and the test set, so the same inputs give the same report.
    Records with warnings (degenerate predictions) keep their scores (with the warnings in
    a column) but are left out of the gains and trends, unless ``include_flagged``.
    """
    run_estimates = _run_estimates(results, n_bootstrap, seed)
    records = results.records
    summary = _summary(records, run_estimates, level)

    seeds, warnings = records["seed"].to_numpy(), records["warnings"].to_numpy()
    groups = records.groupby([*CELL_KEYS, "lang"], sort=False, dropna=False).indices
    cell_estimates = {  # (cell, lang) -> {seed: estimate}
        key: {int(seeds[record_id]): run_estimates[record_id] for record_id in record_ids}
        for key, record_ids in groups.items()}
    gain_estimates_in = {  # the same without the flagged runs, unless they are included
        key: {int(seeds[record_id]): run_estimates[record_id] for record_id in record_ids
              if include_flagged or not warnings[record_id]}
        for key, record_ids in groups.items()}
    independent = records["seed_independent"].to_numpy()
    constant = {key for key, record_ids in groups.items() if independent[record_ids].all()}
    cell_estimates = _paired_with_every_seed(cell_estimates, constant)
    gain_estimates_in = _paired_with_every_seed(gain_estimates_in, constant)

    score_rows, score_estimates = [], {}
    for key, per_seed in cell_estimates.items():
        score_estimates[key] = pool_seeds(per_seed)
        score_rows.append({**_row(key, "language", key[-1], score_estimates[key], level, "score"),
                           "warnings": "; ".join(f"seed {seeds[record_id]}: {warnings[record_id]}"
                                                 for record_id in groups[key] if warnings[record_id])})
    score_rows += _pooled_rows(score_estimates, level, "score")

    gain_rows, gain_estimates = _gains(gain_estimates_in, level)
    gain_rows += [{**row, "status": OK, "note": ""}
                  for row in _pooled_rows(gain_estimates, level, "gain")]

    scores = _sorted(score_rows, SCORE_COLUMNS)
    scores["warnings"] = scores["warnings"].fillna("")  # pooled rows: see their languages
    return Analysis(
        summary=summary,
        scores=scores,
        gains=_sorted(gain_rows, GAIN_COLUMNS),
        trends=_trends(gain_estimates, level),
        results=results,
        level=level,
        n_bootstrap=n_bootstrap,
        include_flagged=include_flagged,
    )


def _paired_with_every_seed(cell_estimates: dict[Key, dict[int, Estimate]],
                            constant: set[Key]) -> dict[Key, dict[int, Estimate]]:
    """A cell whose scores do not depend on the seed (a pretrained encoder scored without
    training: one record, seed 0) stands for every seed of the cells it is compared with
    (its ITT twins: same key but the intermediate task): the same value and replicates under
    each of their seeds, so that its seed variance is zero, not unknown, and every ITT seed
    is paired with it. Without such twins it stays as recorded (one value, test-set noise)."""
    itt_position = CELL_KEYS.index("itt")
    twins_seeds = defaultdict(set)
    for key, per_seed in cell_estimates.items():
        if key[itt_position] != NO_ITT:
            twins_seeds[key[:itt_position] + (NO_ITT,) + key[itt_position + 1:]].update(per_seed)
    out = dict(cell_estimates)
    for key in constant:
        wanted = twins_seeds.get(key)
        if wanted and cell_estimates[key]:
            estimate = next(iter(cell_estimates[key].values()))
            out[key] = {seed: estimate for seed in sorted(wanted)}
    return out


def _run_estimates(results: Results, n_bootstrap: int, seed: int) -> dict[int, Estimate]:
    """Each record's score with its bootstrap replicates; records of a test set share resamples."""
    recorded = results.records["score"].tolist()
    metrics = results.records["metric"].tolist()
    paths = results.records["record_path"].tolist()
    estimates = {}
    by_test_set = defaultdict(list)
    for record_id, predictions in results.predictions.items():
        # keyed by the metric too: records scored differently cannot be resampled together
        by_test_set[predictions.metric, predictions.test_set].append(record_id)
    for (_, test_set), record_ids in by_test_set.items():
        members = [results.predictions[record_id] for record_id in record_ids]
        scores, replicates = _recomputed_scores(members, n_bootstrap, stable_rng(seed, test_set))
        for record_id, score, member_replicates in zip(record_ids, scores, replicates):
            if abs(recorded[record_id] - score) > SCORE_MISMATCH_TOLERANCE:
                title = score_title(metrics[record_id])
                warnings.warn(f"{paths[record_id]}: recorded {title} {recorded[record_id]:.2f} "
                              f"but the {title} of its predictions is {score:.2f}; the report "
                              "uses the latter", stacklevel=3)
            estimates[record_id] = Estimate(score, member_replicates)
    for record_id, score in enumerate(recorded):
        if record_id not in estimates:  # no predictions: the recorded score, without example noise
            estimates[record_id] = Estimate(score, np.full(n_bootstrap, score),
                                            examples_resampled=False)
    return estimates


def _recomputed_scores(members: list[Predictions], n_bootstrap: int,
                       rng: np.random.Generator) -> tuple[list[float], np.ndarray]:
    """The score of each of the records of one test set (all of one metric), recomputed from
    their predictions, and its replicates on resamples shared by all of them."""
    if members[0].counts is None:  # a score resampled from its confusion matrix (macro-F1)
        n_classes = max(p.n_classes for p in members)
        gold, pred = np.stack([p.gold for p in members]), np.stack([p.pred for p in members])
        scores = [macro_f1(member_gold, member_pred, n_classes)
                  for member_gold, member_pred in zip(gold, pred)]
        return scores, bootstrap_macro_f1(gold, pred, n_classes, n_bootstrap, rng)
    terms = [p.ratio_terms() for p in members]
    numerators = np.stack([numerator for numerator, _ in terms])
    denominators = np.stack([denominator for _, denominator in terms])
    scores = ratio_score(numerators.sum(axis=1), denominators.sum(axis=1)).tolist()
    return scores, bootstrap_ratio(numerators, denominators, n_bootstrap, rng)


def _summary(records: pd.DataFrame, run_estimates: Mapping[int, Estimate],
             level: float) -> pd.DataFrame:
    summary = records.copy()
    groups = [language_groups(lang) for lang in summary["lang"]]
    summary["resource"] = [group.resource for group in groups]
    summary["script"] = [group.script for group in groups]
    estimates = [run_estimates[record_id] for record_id in summary.index]
    summary["has_predictions"] = [e.examples_resampled for e in estimates]
    summary["score_from_predictions"] = [e.value if e.examples_resampled else math.nan
                                         for e in estimates]
    intervals = [e.test_set_interval(level) for e in estimates]  # one run: no seed noise
    summary["score_ci_low"] = [low for low, _ in intervals]
    summary["score_ci_high"] = [high for _, high in intervals]
    summary["n"] = summary["n"].astype("Int64")  # a count; missing where not recorded
    first = ["cell_key", "cell_name", *CELL_KEYS, "lang", "resource", "script", "seed", "score",
             "score_from_predictions", "score_ci_low", "score_ci_high", "f1", "accuracy", "n"]
    summary = summary[first + [c for c in summary.columns if c not in first]]
    return summary.sort_values([*SETTING_KEYS, "params", "size", "itt", "lang", "seed"],
                               kind="stable").reset_index(drop=True)


def _gains(cell_estimates: Mapping[Key, Mapping[int, Estimate]],
           level: float) -> tuple[list[dict], dict[Key, Estimate]]:
    """Per-language gain rows (including missing twins) and the estimates of those found."""
    itt_position = CELL_KEYS.index("itt")
    rows, estimates = [], {}
    for key, itt_seeds in cell_estimates.items():
        if key[itt_position] == NO_ITT:
            continue
        twin_key = key[:itt_position] + (NO_ITT,) + key[itt_position + 1:]
        lang = key[-1]
        if not itt_seeds or (twin_key in cell_estimates and not cell_estimates[twin_key]):
            rows.append({**_key_columns(key, "language", lang), "status": FLAGGED,
                         "note": "every run of this cell or of its itt=none twin in this language "
                                 "has degenerate predictions (flagged) and is left out",
                         "seeds": ""})
            continue
        if twin_key not in cell_estimates:
            rows.append({**_key_columns(key, "language", lang), "status": MISSING_COUNTERPART,
                         "note": "no itt=none cell with the same model, size, target, "
                                 "transfer, freezing, train_lang and lang",
                         "seeds": _seed_list(itt_seeds)})
            continue
        none_seeds = cell_estimates[twin_key]
        matched = sorted(set(itt_seeds) & set(none_seeds))
        if matched:  # pair runs of the same seed; seeds without a twin are listed, not used
            pairing = {"seed_pairing": "matched", "seeds": _seed_list(matched),
                       "unused_seeds": _unused_seeds_text(itt_seeds, none_seeds, matched)}
            itt_seeds = {seed: itt_seeds[seed] for seed in matched}
            none_seeds = {seed: none_seeds[seed] for seed in matched}
        else:  # no common seed: compare the means of different seeds
            pairing = {"seed_pairing": "unmatched",
                       "seeds": f"itt: {_seed_list(itt_seeds)}; none: {_seed_list(none_seeds)}",
                       "unused_seeds": ""}
        itt, none = pool_seeds(itt_seeds), pool_seeds(none_seeds)
        estimates[key] = combine([itt, none], [1.0, -1.0])
        rows.append({**_row(key, "language", lang, estimates[key], level, "gain"), **pairing,
                     "score_itt": itt.value, "score_none": none.value, "status": OK, "note": ""})
    return rows, estimates


def _unused_seeds_text(itt_seeds: Iterable[int], none_seeds: Iterable[int],
                       matched: list[int]) -> str:
    unused = {side: set(seeds) - set(matched)
              for side, seeds in (("itt", itt_seeds), (NO_ITT, none_seeds))}
    return "; ".join(f"{side}: {_seed_list(seeds)}" for side, seeds in unused.items() if seeds)


def _pooled_rows(per_language: Mapping[Key, Estimate], level: float, value_name: str) -> list[dict]:
    """Means over the languages of each language group, per cell."""
    members = defaultdict(list)
    for key, estimate in per_language.items():
        cell, lang = key[:-1], key[-1]
        for scope, group_of in SCOPES.items():
            members[cell, scope, group_of(lang)].append(estimate)
    rows = []
    for (cell, scope, group), estimates in members.items():
        pooled = combine(estimates, [1.0 / len(estimates)] * len(estimates))
        rows.append({**_row(cell, scope, group, pooled, level, value_name),
                     "n_languages": len(estimates)})
    return rows


def _trends(gains: Mapping[Key, Estimate], level: float) -> pd.DataFrame:
    """Slope of the gain against log10(params), per language and pooled over groups."""
    size_position, params_position = CELL_KEYS.index("size"), CELL_KEYS.index("params")
    itt_position = CELL_KEYS.index("itt")
    curves = defaultdict(dict)  # (setting, itt, lang) -> {(params, size): gain}
    for key, estimate in gains.items():
        curve = (*key[:len(SETTING_KEYS)], key[itt_position], key[-1])
        curves[curve][key[params_position], key[size_position]] = estimate

    rows = []
    group_members = defaultdict(list)  # (setting, itt, scope, group) -> slope terms per language
    for curve, by_size in curves.items():
        sizes = sorted(by_size)
        columns = {**dict(zip((*SETTING_KEYS, "itt"), curve[:-1])), "scope": "language",
                   "group": curve[-1], **_size_columns(sizes), "n_languages": 1}
        if len({params for params, _ in sizes}) < 2:
            rows.append({**columns, "slope_per_decade": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan, "status": "too_few_sizes",
                         "note": "a slope needs gains at two or more model sizes"})
            continue
        weights = slope_weights([math.log10(params) for params, _ in sizes])
        terms = {size: (weight, by_size[size]) for size, weight in zip(sizes, weights)}
        rows.append({**columns, **_interval_columns(_mean_slope([terms]), level,
                                                    "slope_per_decade"),
                     "status": OK, "note": ""})
        for scope, group_of in SCOPES.items():
            group_members[(*curve[:-1], scope, group_of(curve[-1]))].append(terms)

    for (*setting_itt, scope, group), members in group_members.items():
        sizes = sorted({size for terms in members for size in terms})
        rows.append({**dict(zip((*SETTING_KEYS, "itt"), setting_itt)), "scope": scope,
                     "group": group, **_size_columns(sizes), "n_languages": len(members),
                     **_interval_columns(_mean_slope(members), level, "slope_per_decade"),
                     "status": OK, "note": ""})
    return _sorted(rows, TREND_COLUMNS)


def _mean_slope(per_language: list[dict[tuple, tuple[float, Estimate]]]) -> Estimate:
    """The mean over languages of their slopes, each a weighted sum of its gains by size.

    Summed size by size first: one size's languages are scored by the same models, so
    their seed noise must be combined seed by seed (it is correlated), while different
    sizes are different models, so where seeds do not line up the fallback of ``combine``
    (independent seed noise) is only ever taken across sizes.
    """
    by_size = defaultdict(list)
    for terms in per_language:
        for size, (weight, gain) in terms.items():
            by_size[size].append((weight / len(per_language), gain))
    at_sizes = [combine([gain for _, gain in terms], [weight for weight, _ in terms])
                for _, terms in sorted(by_size.items())]
    return combine(at_sizes, [1.0] * len(at_sizes))


def _size_columns(sizes: list[tuple[int, str]]) -> dict:
    """``sizes`` as (params, size name) pairs, in increasing parameter count."""
    return {"n_sizes": len(sizes), "sizes": ", ".join(size for _, size in sizes)}


def _row(cell: Key, scope: str, group: str, estimate: Estimate, level: float,
         value_name: str) -> dict:
    return {**_key_columns(cell, scope, group), **_interval_columns(estimate, level, value_name)}


def _key_columns(cell: Key, scope: str, group: str) -> dict:
    columns = dict(zip(CELL_KEYS, cell))
    columns.update(scope=scope, group=group)
    if scope == "language":
        columns.update(language_groups(group)._asdict())
    return columns


def _interval_columns(estimate: Estimate, level: float, value_name: str) -> dict:
    """Value, both intervals and how they were obtained.  Gains and slopes also get their
    tests and verdict; whether a mean score differs from zero is not a question asked here."""
    low, high = estimate.interval(level)
    test_low, test_high = estimate.test_set_interval(level)
    columns = {value_name: estimate.value, "ci_low": low, "ci_high": high,
               "ci_low_test_set": test_low, "ci_high_test_set": test_high,
               "seed_level_claim": estimate.supports_seed_claim}
    if value_name in ("gain", "slope_per_decade"):
        columns.update(p_value=estimate.p_value(), verdict=estimate.verdict(level),
                       p_value_test_set=estimate.p_value_test_set())
    if value_name == "gain":
        columns.update(_power_columns(estimate, level))
    return {**columns, "n_seeds": estimate.n_seeds, "seeds": _seed_list(estimate.per_seed),
            "seed_noise": estimate.seed_noise_known,
            "examples_resampled": estimate.examples_resampled}


def _power_columns(estimate: Estimate, level: float) -> dict:
    """What the design detects with ``stats.POWER`` (nan where the seed noise is unknown)."""
    return {"mde": estimate.minimum_detectable_effect(level),
            "seeds_for_2pt": estimate.seeds_to_detect(REFERENCE_GAIN, level),
            "seeds_for_observed": estimate.seeds_to_detect(estimate.value, level),
            "seed_variance": estimate.seed_noise()[0], "test_variance": estimate.test_variance}


def _seed_list(seeds: Iterable[int]) -> str:
    return " ".join(str(seed) for seed in sorted(seeds))


_SCOPE_ORDER = {"language": 0, "resource": 1, "script": 2, "overall": 3}
_READING_ORDER = (*SETTING_KEYS, "params", "size", "itt", "scope", "group")


def _sorted(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows in reading order (setting, size by parameter count, ITT, scope, group), with at
    least ``columns``, so that readers can select on them even where no row has a value."""

    def reading_key(row: dict) -> tuple:
        return tuple(_SCOPE_ORDER[row[c]] if c == "scope" else row[c]
                     for c in _READING_ORDER if c in row)

    table = pd.DataFrame(sorted(rows, key=reading_key))
    return table.reindex(columns=[*table.columns, *(c for c in columns if c not in table)])
