"""The report of a grid: what ``python evaluate.py report=<folder>`` writes.

``build_report`` reads the records of one or more results or sweep folders, analyses them
(``gains.analyse``) and writes, into one folder, the machine-readable tables (CSV), the
tables for people (``report.md``, LaTeX) and the figures (PNG), and logs the same tables
and figures to a W&B run when one is given.  ``report.md`` reads as the answer: its first
lines are one sentence per setting and intermediate task (the gain per size with its
interval, whether it is distinguishable from 0, and the trend per tenfold parameters),
then the figure of the gain per language group against parameters; it lists every ITT
cell that could not be compared because its no-ITT twin is missing, and every record left
out of the gains because its predictions are degenerate (``include_flagged`` counts them).
Paths in the report are relative to its folder: it names none of its machine's folders.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from xitt.core.records import score_title

from .gains import OK, POWER_COLUMNS, REFERENCE_GAIN, Analysis, analyse
from .plots import plot_gain_by_group, plot_gain_heatmap, plot_gain_vs_size, plot_score_vs_size
from .records import NO_ITT, SETTING_KEYS, load_results
from .stats import ABOVE_ZERO, BELOW_ZERO, MAX_SEEDS, MIN_SEEDS_FOR_CLAIM, POWER
from .tables import (MARKS_TEXT, TEST_SET_ONLY, format_estimate, format_p_value, format_params,
                     interval_matrix, to_latex, to_markdown, trend_table)

TABLES = ("summary", "scores", "gains", "trends")
# What an answer keeps of each estimate: its value and the columns the tables read.
_ESTIMATE_COLUMNS = ["ci_low", "ci_high", "p_value", "verdict", "ci_low_test_set",
                     "ci_high_test_set", "p_value_test_set", "seed_level_claim", "n_seeds",
                     "seed_noise"]


def build_report(sources: Iterable[str | Path], out_dir: str | Path, wandb_run=None, *,
                 n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                 include_flagged: bool = False) -> dict:
    """Analyse the records under ``sources`` and write the report into ``out_dir``.

    Returns the paths written and the key numbers (see ``write_report``).  Raises
    ``ReportError`` when a source holds no records.  Flagged records (degenerate
    predictions) are left out of the gains unless ``include_flagged``.
    """
    analysis = analyse(load_results(sources), n_bootstrap=n_bootstrap, level=level, seed=seed,
                       include_flagged=include_flagged)
    return write_report(analysis, out_dir, wandb_run)


def write_report(analysis: Analysis, out_dir: str | Path, wandb_run=None) -> dict:
    """Write CSV, Markdown, LaTeX and PNG outputs of ``analysis``; log them to ``wandb_run``.

    Returns ``{"out_dir", "files": {name: path}, "n_records", "n_gains",
    "n_missing_counterparts", "answers": [...]}`` (see ``answers``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name in TABLES:
        files[f"{name}.csv"] = out_dir / f"{name}.csv"
        _with_relative_paths(getattr(analysis, name), out_dir).to_csv(files[f"{name}.csv"], index=False)

    selection = selection_table(analysis.results.records)
    if not selection.empty:
        files["selection.csv"] = out_dir / "selection.csv"
        selection.to_csv(files["selection.csv"], index=False)
    figures = dict(_figures(analysis))
    for name, figure in figures.items():
        files[name] = out_dir / name
        figure.savefig(files[name], dpi=120)

    latex = _latex_tables(analysis)
    for name, text in latex.items():
        files[name] = out_dir / name
        files[name].write_text(text)

    answer_list = answers(analysis)
    files["report.md"] = out_dir / "report.md"
    files["report.md"].write_text(report_markdown(analysis, answer_list, figures, out_dir))

    if wandb_run is not None:
        _log_to_wandb(wandb_run, analysis, answer_list, files, figures)
    return {
        "out_dir": out_dir,
        "files": files,
        "n_records": len(analysis.summary),
        "n_gains": int((analysis.gains["status"] == OK).sum()),
        "n_missing_counterparts": len(analysis.missing_counterparts),
        "answers": answer_list,
    }


def by_setting(table: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame]]:
    """(setting, rows) for each setting (model, target, transfer, freezing, train_lang)."""
    if table.empty:
        return
    for values, rows in table.groupby(list(SETTING_KEYS), sort=True, dropna=False):
        yield dict(zip(SETTING_KEYS, values)), rows


def setting_title(setting: dict) -> str:
    title = (f"{setting['model']} on {setting['target']}, {setting['transfer']}, "
             f"freezing {setting['freezing']}")
    title += f", trained on {setting['train_lang']}" if setting["train_lang"] else ""
    selection = {"best": ", best epoch on the development set", "last": ", last epoch"}
    title += selection.get(setting.get("selection") or "", "")
    title += f", trained with {setting['training']}" if setting.get("training") else ""
    scored = setting.get("scored_model")
    return title + (f", the encoder of the stored {scored} model" if scored else "")


def answers(analysis: Analysis) -> list[dict]:
    """Per setting and intermediate task: the gain per size over all languages and its
    slope per decade of parameters, each with intervals, tests and verdict, what the
    design detects (gains' ``POWER_COLUMNS``), and the sentence that says them
    (``"gains"``: one dict per size; ``"slope"``: a dict, or None with fewer than two
    sizes; ``"level"``: the intervals' confidence level)."""
    gains = analysis.gains
    overall_gains = gains[(gains["scope"] == "overall") & (gains["status"] == OK)]
    trends = analysis.trends
    overall_trends = trends[(trends["scope"] == "overall") & (trends["status"] == OK)]
    result = []
    for setting, rows in by_setting(overall_gains):
        for itt, itt_rows in rows.groupby("itt", sort=True):
            trend = overall_trends
            for key, value in {**setting, "itt": itt}.items():
                trend = trend[trend[key] == value]
            answer = {**setting, "itt": itt, "level": analysis.level,
                      "score_name": score_name(setting),
                      "n_languages": int(itt_rows["n_languages"].max()),
                      "gains": itt_rows.sort_values("params")[
                          ["size", "params", "gain", *_ESTIMATE_COLUMNS, *POWER_COLUMNS]
                      ].to_dict("records"),
                      "slope": (trend[["slope_per_decade", "sizes", *_ESTIMATE_COLUMNS]]
                                .to_dict("records")[0] if len(trend) else None)}
            answer["sentence"] = answer_sentence(answer)
            result.append(answer)
    return result


def answer_sentence(answer: dict) -> str:
    """'ITT with mnli changes xnli F1 (...) by +1.2 [0.3, 2.1] at base (278M params;
    distinguishable from 0, p = 0.012) and ...; per tenfold parameters the gain changes by
    -0.4 [-1.6, 0.8] F1 points (not distinguishable from 0, p = 0.48). With 80% power at a
    two-sided 0.05, this design (3 seeds) detects gains of 6.1 F1 or more at base; 9 seeds
    would detect a gain of 2, and 14 the observed gain.'"""
    at_sizes = [f"{format_estimate(g, 'gain')} at {g['size']} ({format_params(g['params'])} "
                f"params{_verdict_text(g, '; ')})" for g in answer["gains"]]
    by = _listing(at_sizes)
    languages = answer["n_languages"]
    over = f"mean over {languages} languages" if languages > 1 else "one language"
    metric = answer["score_name"]  # "F1", "accuracy": the setting's score
    sentence = (f"ITT with {answer['itt']} changes {answer['target']} {metric} "
                f"({setting_title(answer)}; {over}) by {by}")
    slope = answer["slope"]
    if slope is None:
        sentence += "; a trend needs gains at two or more sizes."
    else:
        verdict = _verdict_text(slope, " (", ")")
        sentence += (f"; per tenfold parameters the gain changes by "
                     f"{format_estimate(slope, 'slope_per_decade')} {metric} points{verdict}.")
    estimates = [*answer["gains"], *([slope] if slope else [])]
    without_claim = [e for e in estimates if not e["seed_level_claim"]]
    if without_claim:
        fewest = min(int(e["n_seeds"]) for e in without_claim)
        sentence += (f" {TEST_SET_ONLY} With {fewest} seed{'s' if fewest != 1 else ''} no "
                     f"seed-level claim can be made ({MIN_SEEDS_FOR_CLAIM} or more are needed): "
                     "these intervals cover the test examples only, for these trained models.")
    return sentence + _power_text(answer["gains"], answer["level"], metric)


def _power_text(gains: list[dict], level: float, metric: str) -> str:
    """' With 80% power at a two-sided 0.05, this design (3 seeds) detects gains of 6.1 and
    4.2 F1 or more at s and m; 9 and 5 seeds would detect a gain of 2, and 14 and more than
    100 the observed gains.'  Without a seed-level claim only the seeds needed are said
    (from the spread of the seeds there are); nothing with a single seed."""
    if any(math.isnan(g["seeds_for_2pt"]) for g in gains):
        return ""
    power = f"{POWER:.0%} power at a two-sided {1 - level:.2g}"
    sizes = _listing([g["size"] for g in gains])
    for_reference = f"{_listing([_seeds_text(g['seeds_for_2pt']) for g in gains])} seeds"
    for_observed = (f"{_listing([_seeds_text(g['seeds_for_observed']) for g in gains])} the "
                    f"observed gain{'s' if len(gains) > 1 else ''}")
    if not all(g["seed_level_claim"] for g in gains):
        return (f" From the spread of these seeds, {for_reference} would detect a gain of "
                f"{REFERENCE_GAIN:g} with {power} at {sizes}, and {for_observed}.")
    counts = [f"{g['n_seeds']:.0f}" for g in gains]
    seeds = counts[0] if len(set(counts)) == 1 else _listing(counts)
    mdes = _listing([format_mde(g["mde"]) for g in gains])
    return (f" With {power}, this design ({seeds} seeds) detects gains of {mdes} {metric} or more at "
            f"{sizes}; {for_reference} would detect a gain of {REFERENCE_GAIN:g}, and "
            f"{for_observed}.")


def format_mde(mde: float) -> str:
    """A minimum detectable effect to one decimal, rounded up: the gain said is one that the
    design detects (rounded to nearest, 2.04 would read 2.0 beside '7 seeds detect 2')."""
    return f"{math.ceil(round(mde * 10, 6)) / 10:.1f}"


def _seeds_text(seeds: float) -> str:
    return f"more than {MAX_SEEDS}" if math.isinf(seeds) else f"{seeds:.0f}"


def _listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _verdict_text(estimate: dict, before: str, after: str = "") -> str:
    """'; distinguishable from 0, p = 0.012' (with the given brackets), or '' where the
    estimate supports no seed-level claim."""
    if not estimate["seed_level_claim"]:
        return ""
    distinguishable = estimate["verdict"] in (ABOVE_ZERO, BELOW_ZERO)
    return (f"{before}{'' if distinguishable else 'not '}distinguishable from 0, "
            f"{format_p_value(estimate['p_value'])}{after}")


def _depth_ladder_note(records: pd.DataFrame) -> list[str]:
    """Says so when sizes are a depth ladder (`model.keep_layers`): the bottom layers of one
    pretrained checkpoint, not separately pretrained models."""
    if "keep_layers" not in records or not records["keep_layers"].notna().any():
        return []
    ladders = records[records["keep_layers"].notna()].groupby("model")["keep_layers"].unique()
    described = "; ".join(f"{model}: {', '.join(str(int(k)) for k in sorted(kept))} layers"
                          for model, kept in ladders.items())
    return [f"**Sizes here are a depth ladder** ({described}): the bottom layers of one pretrained "
            f"checkpoint, the rest dropped, not separately pretrained models. The trend says how ITT's "
            f"effect depends on the depth kept of a fixed encoder, not on pretraining scale.\n"]


def _seed_independent_note(records: pd.DataFrame) -> list[str]:
    """Says so when cells do not depend on their seed (a pretrained encoder scored without
    training), and, for mined pairs, that resampling keeps the threshold."""
    notes = []
    if records["seed_independent"].any():
        cells = sorted(records.loc[records["seed_independent"], "cell_name"].unique())
        notes.append(f"**Seed-independent cells** ({len(cells)}: {', '.join(cells[:6])}"
                     f"{', ...' if len(cells) > 6 else ''}): a pretrained encoder scored without any training "
                     f"is one model whatever the seed, so it was scored once (seed 0) and its value stands for "
                     f"every seed of its ITT twins. Its seed variance is zero by construction: a gain's seed "
                     f"noise is the ITT cells' alone, and its own interval covers the test sentences only.\n")
    if records["threshold"].notna().any():
        notes.append("**Mining thresholds are fixed** per record (tuned on the development carve, never on the "
                     "test pairs): the bootstrap resamples the test sentences with each record's threshold "
                     "held, so intervals do not include the threshold's own noise.\n")
    return notes


def report_markdown(analysis: Analysis, answer_list: list[dict],
                    figures: dict[str, Figure], out_dir: str | Path = ".") -> str:
    level = f"{analysis.level:.0%}"
    records = analysis.summary
    sentences = ([f"- {answer['sentence']}" for answer in answer_list]
                 or ["No ITT cell has a no-ITT twin to compare with (see below)."])
    parts = [
        "# ITT gain versus model size\n",
        "\n".join(sentences) + "\n",
        *_flagged_note(analysis),
        *_depth_ladder_note(records),
        *_seed_independent_note(records),
        *(f"![ITT gain vs parameters by language group]({name})\n" for name in figures
          if name.startswith("gain_by_group_")),
        f"Gains are points of the target's score (its task type's primary: F1, or accuracy) of the "
        f"ITT cell minus its no-ITT twin on the same seeds "
        f"(above: the mean over languages). Intervals are {level} over training seeds and test "
        f"examples; a gain is distinguishable from 0 where this interval excludes 0, which is "
        f"where the seed-level test gives p < {1 - analysis.level:.2g}. Marks: {MARKS_TEXT}. "
        f"Figures: the same intervals as error bars (hollow markers: test examples only). "
        f"Sources: {', '.join(_source_text(s, out_dir) for s in analysis.results.sources)}; {len(records)} "
        f"records ({int(records['has_predictions'].sum())} with per-example predictions). "
        "See Method.\n",
    ]
    gains_by_setting = dict(_setting_items(analysis.gains))
    trends_by_setting = dict(_setting_items(analysis.trends))
    for key, scores in _setting_items(analysis.scores):
        slug = _slug(key)
        setting = dict(zip(SETTING_KEYS, key))
        parts.append(f"## {setting_title(setting)}\n")
        metric = score_name(setting)
        for itt, rows in gains_by_setting.get(key, scores.iloc[:0]).groupby("itt", sort=True):
            heatmap = _heatmap_name(key, itt)
            parts += [f"### Gain of ITT with {itt} ({metric} points, {level} CI)\n",
                      to_markdown(interval_matrix(rows, "gain", mark_significant=True))]
            parts += [f"![gain heatmap {itt}]({heatmap})\n"] if heatmap in figures else []
        if f"gain_vs_size_{slug}.png" in figures:
            parts.append(f"![gain vs size](gain_vs_size_{slug}.png)\n")
        if key in trends_by_setting:
            parts += [f"### Trend of the gain: {metric} points per tenfold parameters\n",
                      to_markdown(trend_table(trends_by_setting[key]))]
        parts += [f"### Absolute {metric} ({level} CI)\n",
                  to_markdown(_score_matrix(scores)),
                  f"![{metric} vs size](score_vs_size_{slug}.png)\n"]
    parts += _selection_section(analysis.results.records)
    parts += _flagged_section(analysis)
    parts += _missing_and_problems(analysis, out_dir)
    parts += ["## Method\n", _method_text(analysis)]
    return "\n".join(parts)


def selection_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per trained target model (cell and seed; a zero-shot model serves every
    language): how it was selected on the development set, the epoch stored out of the
    budget, and whether training was still improving at its end (last - best development
    F1: 0 when the last validation was the best). `at_budget_edge`: the model stored, or
    the best one, is the last epoch of the full budget, a sign that more epochs might have
    helped."""
    if "selection" not in records or not (records["selection"].astype(str) != "").any():
        return pd.DataFrame()
    keys = [*SETTING_KEYS, "size", "itt", "seed"]
    models = records[records["selection"].astype(str) != ""].drop_duplicates(keys)
    table = models[[*keys, "selected_epoch", "epochs_run", "epoch_budget", "dev_lang",
                    "dev_f1", "dev_f1_best", "dev_f1_last"]].copy()
    table["last_minus_best"] = table["dev_f1_last"] - table["dev_f1_best"]
    table[["dev_f1", "dev_f1_best", "dev_f1_last", "last_minus_best"]] = table[
        ["dev_f1", "dev_f1_best", "dev_f1_last", "last_minus_best"]].round(1) + 0.0  # no -0.0
    best_epoch_is_last = table["dev_f1_last"] >= table["dev_f1_best"]
    table["at_budget_edge"] = best_epoch_is_last & (table["epochs_run"] == table["epoch_budget"])
    for column in ("selected_epoch", "epochs_run", "epoch_budget"):
        table[column] = table[column].astype("Int64")
    return table.sort_values(keys).reset_index(drop=True)


def _selection_section(records: pd.DataFrame) -> list[str]:
    table = selection_table(records)
    if table.empty:
        return []
    parts = ["## Model selection\n",
             "Each target model as stored: selected on the development set (`best`) or the last epoch "
             "(`last`), its epoch out of the budget, and last - best development F1 (0: still improving "
             "at the end, or flat).\n"]
    twins = table.groupby([*SETTING_KEYS, "size", "seed"])
    edge = [key for key, rows in twins
            if rows["itt"].nunique() > 1 and (rows["itt"] == NO_ITT).any() and rows["at_budget_edge"].all()]
    if edge:
        parts.append(f"**Warning:** in {len(edge)} ITT / no-ITT pair(s) both models were best at the last "
                     f"epoch of the budget (`at_budget_edge`), so both may be under-trained and their "
                     f"difference may measure how fast each learns rather than where each ends. Raise "
                     f"`target.hparams.epochs` and run again (finished stages are reused where their keys "
                     f"allow).\n")
    constant = [key for key in SETTING_KEYS if key != "selection" and table[key].nunique() == 1]
    shown = table.drop(columns=constant)
    parts.append(to_markdown(shown))
    return parts


def _flagged_note(analysis: Analysis, shown: int = 10) -> list[str]:
    """How many records have degenerate predictions and which, under the answer: left out
    of its gains (the default), or counted with ``include_flagged``."""
    flagged = analysis.flagged
    if flagged.empty:
        return []
    langs = flagged.groupby("cell_name", sort=True)["lang"].agg(lambda values: ", ".join(values))
    which = [f"{cell} ({cell_langs})" for cell, cell_langs in langs.items()]
    which = which[:shown] + ([f"and {len(which) - shown} more cells"] if len(which) > shown else [])
    counted = f"{len(flagged)} of {len(analysis.summary)} records"
    head = (f"**Counted in the gains although flagged: {counted}**, whose predictions are degenerate "
            "(`include_flagged=true`)" if analysis.include_flagged else
            f"**Left out of the gains: {counted}**, whose predictions are degenerate (the model gives "
            "every example the same output); `include_flagged=true` counts them")
    return [f"{head}: {'; '.join(which)}. What was seen: Flagged records, below.\n"]


def _flagged_section(analysis: Analysis) -> list[str]:
    flagged = analysis.flagged
    if flagged.empty:
        return []
    use = "counted in" if analysis.include_flagged else "left out of"
    return ["## Flagged records\n",
            f"Records whose model gives every example of the development or test set the same output "
            f"(one class, one tag, an empty answer): their scores say nothing of transfer, so they are "
            f"{use} the gains and trends (their scores stay in the score tables).\n",
            to_markdown(flagged[["cell_name", "lang", "seed", "metric", "score", "warnings"]].assign(
                score=flagged["score"].round(1)))]


def _relative(path: str | Path, out_dir: str | Path) -> str:
    """``path`` relative to the report's folder."""
    return os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())


# An absolute path in a sentence (a problem while reading), up to a space or a quote.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[^\s'\"`]+")


def _relative_paths_in(text: str, out_dir: str | Path) -> str:
    def relative(match: re.Match) -> str:
        path = match.group(0).rstrip(",.:;)")
        return _relative(path, out_dir) + match.group(0)[len(path):]

    return _ABSOLUTE_PATH.sub(relative, text)


def _with_relative_paths(table: pd.DataFrame, out_dir: str | Path) -> pd.DataFrame:
    if "record_path" not in table:
        return table
    return table.assign(record_path=[_relative(path, out_dir) for path in table["record_path"]])


def _source_text(source: str | Path, out_dir: str | Path) -> str:
    """A source folder relative to the report's folder, named too where the report lies in it."""
    shown = _relative(source, out_dir)
    if set(Path(shown).parts) <= {".", ".."}:
        return f"`{shown}` (`{Path(source).resolve().name}`)"
    return f"`{shown}`"


def _missing_and_problems(analysis: Analysis, out_dir: str | Path = ".") -> list[str]:
    missing = analysis.missing_counterparts
    parts = ["## Missing counterparts\n"]
    if missing.empty:
        parts.append("None: every ITT cell has its no-ITT twin.\n")
    else:
        columns = [*SETTING_KEYS, "size", "params", "itt", "group", "seeds"]
        parts += [f"{len(missing)} ITT cell(s) have no `itt=none` twin with the same model, "
                  "size, target, transfer, freezing, training language and language; they "
                  "are excluded from the gains (rows with status `missing_counterpart` in "
                  "gains.csv). Run the missing no-ITT cells to include them.\n",
                  to_markdown(missing[columns].rename(columns={"group": "lang"}))]
    superseded = analysis.results.superseded
    if len(superseded):
        parts += ["## Superseded records\n",
                  "Records of a run that was evaluated again; the latest one is used.\n",
                  to_markdown(_with_relative_paths(superseded[["record_path", "created"]], out_dir))]
    if analysis.results.problems:
        parts += ["## Problems while reading\n",
                  *(f"- {_relative_paths_in(problem, out_dir)}" for problem in analysis.results.problems), ""]
    return parts


def _method_text(analysis: Analysis) -> str:
    return (
        "Each target is scored by its task type's primary score (`metric`; macro-F1 for "
        "classification, entity F1 for NER, word accuracy for POS, SQuAD token F1 for QA), "
        "recomputed from the per-example "
        "predictions; the test examples resampled are texts, sentences or questions (never "
        "tokens). A gain pairs the ITT and "
        "no-ITT runs of the same seeds (seeds without a twin are listed in gains.csv, "
        "`unused_seeds`). The question is whether ITT changes the score over training randomness "
        "and the test sample, so an interval adds two independent parts in quadrature. Seed "
        "noise: the spread of the per-seed estimate (for a gain, the per-seed paired "
        "differences) with a Student-t quantile (a bootstrap over a few seeds would "
        "understate it). Test-set noise: from "
        f"{analysis.n_bootstrap} bootstrap resamples of the test examples, the same for "
        "every model scored on the same test set (so differences are paired), of which only "
        "the part shared by all seeds is added: the covariance of two seeds' replicates. "
        "Each seed's own part (its models' idiosyncratic errors on these examples) already "
        "varies between seeds and is in the seed noise. The p-value is the dual of this "
        "interval (the 1 - level at which it just reaches 0), so a gain is marked exactly "
        "where its interval excludes 0. With fewer than "
        f"{MIN_SEEDS_FOR_CLAIM} seeds the seed noise rests on one degree of freedom or none "
        "(with two seeds the t quantile is 12.7): no seed-level claim is made and the "
        "tables show the interval over test examples only (`†`), which speaks of these "
        "trained models. gains.csv keeps every number: `ci_low`, `ci_high` and `p_value` "
        "over seeds and test examples (wherever two seeds allow them), `verdict` (whether "
        "they support a claim and where 0 lies), and `ci_low_test_set`, `ci_high_test_set` "
        "and `p_value_test_set`, the paired bootstrap test on the test examples. Power: "
        f"`mde` is the smallest true gain that the seed-level test detects with {POWER:.0%} "
        "power, from the same interval (the chance that the estimate leaves it, over the "
        "spread of the estimate and of its seed variance); `seeds_for_2pt` and "
        f"`seeds_for_observed` are the seeds that would detect a gain of {REFERENCE_GAIN:g} "
        "and one of the observed size, with the seed variance scaled as 1/seeds and the "
        "test-set part as measured (`seed_variance`, `test_variance`; inf: more than "
        f"{MAX_SEEDS}, or none, as more seeds do not shrink the test-set part). Where "
        "seeds do not line up, the seed noise of independent models is added (Welch-"
        "Satterthwaite). Trends are least-squares slopes of the gain on log10(parameters), "
        "in points per tenfold increase, with the same intervals and tests; group and "
        "overall values are means over the languages that have them. Language groups: "
        "resource level and script from `xitt.analysis.languages` (unknown codes: 'other').\n"
    )


def _setting_items(table: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    for setting, rows in by_setting(table):
        yield tuple(setting.values()), rows


def _figures(analysis: Analysis) -> Iterator[tuple[str, Figure]]:
    """(file name, figure) of every plot; every setting has scores, some also have gains."""
    gains_by_setting = dict(_setting_items(analysis.gains))
    for key, scores in _setting_items(analysis.scores):
        slug = _slug(key)
        metric = score_name(dict(zip(SETTING_KEYS, key)))
        found = gains_by_setting.get(key, analysis.gains.iloc[:0])
        found = found[found["status"] == OK]
        if len(found):
            yield f"gain_by_group_{slug}.png", plot_gain_by_group(found, metric)
            yield f"gain_vs_size_{slug}.png", plot_gain_vs_size(found, metric)
        for itt in sorted(found["itt"].unique()):
            yield _heatmap_name(key, itt), plot_gain_heatmap(gains_by_setting[key], itt, metric)
        yield f"score_vs_size_{slug}.png", plot_score_vs_size(scores, metric)


def score_name(setting: dict) -> str:
    """How a setting's score (its target's primary in the mode it ran) is named: 'F1', 'accuracy'."""
    return score_title(setting["metric"])


def _score_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """The score per language and over all languages (the group means add nothing to read here)."""
    shown = scores[scores["scope"].isin(["language", "overall"])]
    return interval_matrix(shown, "score", ("itt",), signed=False)


def _latex_tables(analysis: Analysis) -> dict[str, str]:
    marks = (f"{analysis.level:.0%} intervals over seeds and test examples; * the interval "
             f"excludes 0; {TEST_SET_ONLY} fewer than {MIN_SEEDS_FOR_CLAIM} seeds: interval over "
             "test examples only")
    gains = [to_latex(interval_matrix(rows, "gain", mark_significant=True),
                      f"ITT gain with {itt} in {score_name(setting)} points "
                      f"({setting_title(setting)}); {marks}",
                      f"tab:gain-{_slug((*setting.values(), itt))}")
             for setting, setting_rows in by_setting(analysis.gains)
             for itt, rows in setting_rows.groupby("itt", sort=True)]
    scores = [to_latex(_score_matrix(rows), f"{score_title(rows['metric'].iloc[0])} ({setting_title(setting)})",
                       f"tab:score-{_slug(setting.values())}")
              for setting, rows in by_setting(analysis.scores)]
    trends = [to_latex(trend_table(rows), f"Slope of the ITT gain in "
                       f"{score_name(setting)} points per tenfold "
                       f"parameters ({setting_title(setting)}); {marks}",
                       f"tab:trend-{_slug(setting.values())}")
              for setting, rows in by_setting(analysis.trends)]
    return {"gains.tex": "\n".join(gains), "scores.tex": "\n".join(scores),
            "trends.tex": "\n".join(trends)}


def _log_to_wandb(run, analysis: Analysis, answer_list: list[dict], files: dict[str, Path],
                  figures: dict[str, Figure]) -> None:
    import wandb  # only needed when a run is given

    logged = {f"report/{name}": wandb.Table(dataframe=_wandb_safe(getattr(analysis, name)))
              for name in TABLES}
    logged["report/answers"] = wandb.Table(
        columns=["itt", "answer"], data=[[a["itt"], a["sentence"]] for a in answer_list])
    logged.update({f"report/{Path(name).stem}": wandb.Image(str(files[name]))
                   for name in figures})
    run.log(logged)


def _wandb_safe(table: pd.DataFrame) -> pd.DataFrame:
    """W&B tables need one type per column, with None for missing values (not NaN or NA)."""
    return table.astype(object).where(table.notna(), None)


def _heatmap_name(setting_key: tuple, itt: str) -> str:
    return f"gain_heatmap_{_slug((*setting_key, itt))}.png"


def _slug(values: Iterable) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(v) for v in values if str(v) != "")).strip("_")
