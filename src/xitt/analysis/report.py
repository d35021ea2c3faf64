"""The report of a grid: what ``python evaluate.py report=<folder>`` writes.

``build_report`` reads the records of one or more results or sweep folders, analyses them
(``gains.analyse``) and writes, into one folder, the machine-readable tables (CSV), the
tables for people (``report.md``, LaTeX) and the figures (PNG), and logs the same tables
and figures to a W&B run when one is given.  ``report.md`` opens with the answer to the
research question in numbers, one sentence per setting and intermediate task, and lists
every ITT cell that could not be compared because its no-ITT twin is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .gains import OK, Analysis, analyse
from .plots import plot_f1_vs_size, plot_gain_heatmap, plot_gain_vs_size
from .records import SETTING_KEYS, load_results
from .tables import (format_estimate, format_params, interval_matrix, to_latex, to_markdown,
                     trend_table)

TABLES = ("summary", "scores", "gains", "trends")


def build_report(sources: Iterable[str | Path], out_dir: str | Path, wandb_run=None, *,
                 n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Analyse the records under ``sources`` and write the report into ``out_dir``.

    Returns the paths written and the key numbers (see ``write_report``).  Raises
    ``ReportError`` when a source holds no records.
    """
    analysis = analyse(load_results(sources), n_bootstrap=n_bootstrap, level=level, seed=seed)
    return write_report(analysis, out_dir, wandb_run)


def write_report(analysis: Analysis, out_dir: str | Path, wandb_run=None) -> dict:
    """Write CSV, Markdown, LaTeX and PNG outputs of ``analysis``; log them to ``wandb_run``.

    Returns ``{"out_dir", "files": {name: path}, "n_records", "n_gains",
    "n_missing_counterparts", "answers": [...]}`` where each answer holds the gain per
    size (mean over languages) and the slope per decade of parameters, with intervals.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name in TABLES:
        files[f"{name}.csv"] = out_dir / f"{name}.csv"
        getattr(analysis, name).to_csv(files[f"{name}.csv"], index=False)

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
    files["report.md"].write_text(report_markdown(analysis, answer_list, figures))

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
    return title + (f", trained on {setting['train_lang']}" if setting["train_lang"] else "")


def answers(analysis: Analysis) -> list[dict]:
    """Per setting and intermediate task: gain per size over all languages, and the slope."""
    gains = analysis.gains
    overall_gains = gains[(gains["scope"] == "overall") & (gains["status"] == OK)]
    trends = analysis.trends
    overall_trends = trends[trends["scope"] == "overall"]
    result = []
    for setting, rows in by_setting(overall_gains):
        for itt, itt_rows in rows.groupby("itt", sort=True):
            answer = {**setting, "itt": itt,
                      "n_languages": int(itt_rows["n_languages"].max()),
                      "gains": itt_rows.sort_values("params")[
                          ["size", "params", "gain", "ci_low", "ci_high", "p_value",
                           "seed_noise"]
                      ].to_dict("records"),
                      "slope_per_decade": None, "slope_ci_low": None, "slope_ci_high": None,
                      "slope_seed_noise": None}
            trend = overall_trends
            for key, value in {**setting, "itt": itt}.items():
                trend = trend[trend[key] == value]
            if len(trend):
                slope = trend.iloc[0]
                answer.update(slope_per_decade=float(slope.slope_per_decade),
                              slope_ci_low=float(slope.ci_low), slope_ci_high=float(slope.ci_high),
                              slope_seed_noise=slope.seed_noise)
            answer["sentence"] = answer_sentence(answer)
            result.append(answer)
    return result


def answer_sentence(answer: dict) -> str:
    """'ITT with mnli changes xnli F1 (...) by +1.2 [0.3, 2.1] at base (278M params) and ...'"""
    at_sizes = [f"{format_estimate(g['gain'], g['ci_low'], g['ci_high'], g['seed_noise'])} "
                f"at {g['size']} ({format_params(g['params'])} params)" for g in answer["gains"]]
    by = at_sizes[0] if len(at_sizes) == 1 else ", ".join(at_sizes[:-1]) + " and " + at_sizes[-1]
    languages = answer["n_languages"]
    over = f"mean over {languages} languages" if languages > 1 else "one language"
    sentence = (f"ITT with {answer['itt']} changes {answer['target']} F1 "
                f"({setting_title(answer)}; {over}) by {by}")
    if answer["slope_per_decade"] is None:
        return sentence + "; a slope needs gains at two or more sizes."
    slope = format_estimate(answer["slope_per_decade"], answer["slope_ci_low"],
                            answer["slope_ci_high"], answer["slope_seed_noise"])
    return sentence + f"; slope per decade of parameters: {slope} F1 points."


def report_markdown(analysis: Analysis, answer_list: list[dict],
                    figures: dict[str, Figure]) -> str:
    level = f"{analysis.level:.0%}"
    records = analysis.summary
    parts = [
        "# ITT gain versus model size\n",
        f"Sources: {', '.join(f'`{s}`' for s in analysis.results.sources)}. "
        f"{len(records)} records ({int(records['has_predictions'].sum())} with per-example "
        f"predictions). Gains are F1 points of the ITT cell minus its no-ITT twin on the same "
        f"seeds; intervals are {level} over test examples and seeds; `*` marks p < 0.05 in a "
        "paired test on the same test examples; `†` marks intervals without (some of) the "
        "seed noise, where only one seed was available (see Method).\n",
        "## Answer\n",
        *(f"- {answer['sentence']}" for answer in answer_list),
        "" if answer_list else "No ITT cell has a no-ITT twin to compare with (see below).",
        "",
    ]
    gains_by_setting = dict(_setting_items(analysis.gains))
    trends_by_setting = dict(_setting_items(analysis.trends))
    for key, scores in _setting_items(analysis.scores):
        slug = _slug(key)
        parts.append(f"## {setting_title(dict(zip(SETTING_KEYS, key)))}\n")
        for itt, rows in gains_by_setting.get(key, scores.iloc[:0]).groupby("itt", sort=True):
            heatmap = _heatmap_name(key, itt)
            parts += [f"### Gain of ITT with {itt} (F1 points, {level} CI)\n",
                      to_markdown(interval_matrix(rows, "gain", mark_significant=True))]
            parts += [f"![gain heatmap {itt}]({heatmap})\n"] if heatmap in figures else []
        if f"gain_vs_size_{slug}.png" in figures:
            parts.append(f"![gain vs size](gain_vs_size_{slug}.png)\n")
        if key in trends_by_setting:
            parts += ["### Trend of the gain: F1 points per tenfold parameters\n",
                      to_markdown(trend_table(trends_by_setting[key]))]
        parts += [f"### Absolute F1 ({level} CI)\n",
                  to_markdown(_f1_matrix(scores)),
                  f"![F1 vs size](f1_vs_size_{slug}.png)\n"]
    parts += _missing_and_problems(analysis)
    parts += ["## Method\n", _method_text(analysis)]
    return "\n".join(parts)


def _missing_and_problems(analysis: Analysis) -> list[str]:
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
                  to_markdown(superseded[["record_path", "created"]])]
    if analysis.results.problems:
        parts += ["## Problems while reading\n",
                  *(f"- {problem}" for problem in analysis.results.problems), ""]
    return parts


def _method_text(analysis: Analysis) -> str:
    return (
        "Macro-F1 is recomputed from the per-example predictions. A gain pairs the ITT and "
        "no-ITT runs of the same seeds (seeds without a twin are listed in gains.csv, "
        "`unused_seeds`). An interval combines two independent parts in quadrature: "
        f"test-set noise, from {analysis.n_bootstrap} bootstrap resamples of the test "
        "examples (the same resamples for every model scored on the same test set, so "
        "differences are paired), and seed noise, from the between-seed spread of the "
        "estimate computed seed by seed, with a Student-t quantile (a bootstrap over a few "
        "seeds would understate it; with two seeds the t quantile is 12.7, so intervals are "
        "wide). Where seeds do not line up, the seed noise of independent models is added; "
        "an input with a single seed has no known seed noise (`†`). The p-value is the "
        "paired bootstrap test on the test examples: it asks whether test-set noise alone "
        "explains the difference between these trained models. Trends are least-squares "
        "slopes of the gain on log10(parameters), in F1 points per tenfold increase; group "
        "and overall values are means over the languages that have them. Language groups: "
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
        found = gains_by_setting.get(key, analysis.gains.iloc[:0])
        found = found[found["status"] == OK]
        if len(found):
            yield f"gain_vs_size_{slug}.png", plot_gain_vs_size(found)
        for itt in sorted(found["itt"].unique()):
            yield _heatmap_name(key, itt), plot_gain_heatmap(gains_by_setting[key], itt)
        yield f"f1_vs_size_{slug}.png", plot_f1_vs_size(scores)


def _f1_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """F1 per language and over all languages (the group means add nothing to read here)."""
    shown = scores[scores["scope"].isin(["language", "overall"])]
    return interval_matrix(shown, "f1", ("itt",), signed=False)


def _latex_tables(analysis: Analysis) -> dict[str, str]:
    gains = [to_latex(interval_matrix(rows, "gain", mark_significant=True),
                      f"ITT gain with {itt} in F1 points ({setting_title(setting)}); "
                      "* p < 0.05 in the paired test on the test examples; "
                      "† interval without (some of) the seed noise",
                      f"tab:gain-{_slug((*setting.values(), itt))}")
             for setting, setting_rows in by_setting(analysis.gains)
             for itt, rows in setting_rows.groupby("itt", sort=True)]
    scores = [to_latex(_f1_matrix(rows), f"F1 ({setting_title(setting)})",
                       f"tab:f1-{_slug(setting.values())}")
              for setting, rows in by_setting(analysis.scores)]
    trends = [to_latex(trend_table(rows), "Slope of the ITT gain in F1 points per tenfold "
                       f"parameters ({setting_title(setting)})",
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
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(v) for v in values)).strip("_")
