"""The analysis tables formatted for reading: Markdown for report.md, LaTeX for papers.

The CSV files keep every number; these tables put one estimate and the interval a reader
should see in each cell ("+1.2 [-0.3, 2.7]"), languages in rows and model sizes (by
parameter count) in columns, which is the shape in which the answer is read.  pandas
renders them (``DataFrame.to_markdown`` through tabulate, ``Styler.to_latex`` through
jinja2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from .gains import FLAGGED, OK
from .stats import ABOVE_ZERO, BELOW_ZERO, MIN_SEEDS_FOR_CLAIM

DISTINGUISHABLE = "*"  # the interval over seeds and test examples excludes 0
TEST_SET_ONLY = "†"  # the interval covers test examples only: too few seeds for a claim
MARKS_TEXT = (f"`{DISTINGUISHABLE}` the interval over seeds and test examples excludes 0; "
              f"`{TEST_SET_ONLY}` fewer than {MIN_SEEDS_FOR_CLAIM} seeds, so no seed-level "
              "claim: the interval covers the test examples only, for these trained models")
_SCOPE_TITLES = {"resource": "resource", "script": "script", "overall": "all languages"}


def format_params(params: float) -> str:
    """A parameter count for people: 1.2B, 278M, 560k."""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if params >= threshold:
            return f"{params / threshold:.3g}{suffix}"
    return f"{params:.0f}"


def size_label(size: str, params: float) -> str:
    return f"{size} ({format_params(params)})"


def shown_interval(row: Mapping) -> tuple[float, float, bool]:
    """The interval a reader is shown, and whether it covers test examples only.

    Over seeds and test examples where the estimate supports a seed-level claim; else the
    interval over test examples, for these trained models, rather than a seed interval
    that few seeds make too wide to read (two seeds: 12.7 standard errors).
    """
    if row["seed_level_claim"]:
        return row["ci_low"], row["ci_high"], False
    return row["ci_low_test_set"], row["ci_high_test_set"], True


def format_estimate(row: Mapping, value_column: str, signed: bool = True,
                    mark: bool = False) -> str:
    """'+1.2 [0.3, 2.1]' (one decimal, as F1 points are reported) with the interval of
    ``shown_interval``, marked '†' when it covers test examples only and, with ``mark``,
    '*' when the estimate is distinguishable from 0."""
    value = row[value_column]
    if pd.isna(value):
        return "n/a"
    low, high, test_set_only = shown_interval(row)
    text = f"{value:{'+' if signed else ''}.1f}"
    if not math.isnan(low):  # nan: no predictions, so no test-set interval
        text += f" [{low:.1f}, {high:.1f}]"
    if test_set_only:
        text += f" {TEST_SET_ONLY}"
    if mark and row.get("verdict") in (ABOVE_ZERO, BELOW_ZERO):
        text += f" {DISTINGUISHABLE}"
    return text


def format_p_value(p_value: float) -> str:
    """'p = 0.012', 'p < 0.001' or 'p n/a'."""
    if math.isnan(p_value):
        return "p n/a"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def group_label(scope: str, group: str) -> str:
    """Row label of a language ('de') or of a pooled group ('resource: low', 'all languages')."""
    if scope == "language":
        return group
    if scope == "overall":
        return _SCOPE_TITLES[scope]
    return f"{_SCOPE_TITLES[scope]}: {group}"


def interval_matrix(table: pd.DataFrame, value_column: str, row_keys: tuple[str, ...] = (),
                    signed: bool = True, mark_significant: bool = False) -> pd.DataFrame:
    """Estimates with intervals, one row per language or group (and ``row_keys``), one
    column per model size.

    With ``mark_significant``, '*' marks estimates whose interval over seeds and test
    examples excludes 0; '†' marks intervals over test examples only (see
    ``shown_interval``).  Rows without an estimate read 'missing' (a missing counterpart)
    or 'flagged' (every run of the cell or its twin has degenerate predictions).
    """
    table = table.sort_values("params", kind="stable")
    size_columns = list(dict.fromkeys(size_label(s, p) for s, p in zip(table["size"],
                                                                       table["params"])))
    cells: dict[tuple, dict[str, str]] = {}
    for row in table.to_dict("records"):
        label = (group_label(row["scope"], row["group"]), *(row[k] for k in row_keys))
        if row.get("status") == FLAGGED:
            text = FLAGGED
        elif pd.isna(row[value_column]):
            text = "missing"
        else:
            text = format_estimate(row, value_column, signed, mark_significant)
        cells.setdefault(label, {})[size_label(row["size"], row["params"])] = text
    index = pd.MultiIndex.from_tuples(list(cells), names=["language", *row_keys])
    matrix = pd.DataFrame(list(cells.values()), index=index, columns=size_columns)
    return matrix.fillna("").reset_index()


def trend_table(trends: pd.DataFrame) -> pd.DataFrame:
    """Slope per tenfold increase of parameters, per language and group, as text."""
    rows = trends.to_dict("records")
    return pd.DataFrame({
        "itt": trends["itt"],
        "language": [group_label(s, g) for s, g in zip(trends["scope"], trends["group"])],
        "sizes": trends["sizes"],
        "slope per decade [CI]": [
            format_estimate(row, "slope_per_decade", mark=True) if row["status"] == OK
            else row["status"].replace("_", " ") for row in rows],
    })


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown (pipe) table of the cells as text.  tabulate leaves '|' as it is, which
    would split a cell (a path, say), so it is escaped first."""
    def escape(value) -> str:
        return str(value).replace("|", "\\|")

    text = table.map(escape).rename(columns=escape)
    return text.to_markdown(index=False, disable_numparse=True) + "\n"


# pandas escapes the cells and headers of a LaTeX table, but not its caption.
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", TEST_SET_ONLY: r"\dag{}"}


def latex_escape(text: object) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    styler = (table.astype(str).style.hide(axis="index")
              .format(escape="latex").format_index(escape="latex", axis=1))
    latex = styler.to_latex(caption=latex_escape(caption), label=label, position="t",
                            position_float="centering", hrules=True, environment="table")
    return latex.replace(TEST_SET_ONLY, r"\dag{}")  # a dagger that needs no Unicode setup
