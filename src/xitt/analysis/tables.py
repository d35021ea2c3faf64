"""The analysis tables formatted for reading: Markdown for report.md, LaTeX for papers.

The CSV files keep every number; these tables put one estimate and its interval in each
cell ("+1.2 [-0.3, 2.7]"), languages in rows and model sizes (by parameter count) in
columns, which is the shape in which the answer is read.  They are rendered by hand
because pandas' ``to_markdown`` needs ``tabulate`` and ``to_latex`` needs ``jinja2``,
neither of which the project depends on, and a table of strings needs only a few lines.
"""

from __future__ import annotations

import math

import pandas as pd

from .gains import OK
from .stats import FULL

SIGNIFICANCE_THRESHOLD = 0.05
WITHOUT_SEED_NOISE = "†"  # marks intervals that lack (some of) the seed noise
_SCOPE_TITLES = {"resource": "resource", "script": "script", "overall": "all languages"}


def format_params(params: float) -> str:
    """A parameter count for people: 1.2B, 278M, 560k."""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if params >= threshold:
            return f"{params / threshold:.3g}{suffix}"
    return f"{params:.0f}"


def size_label(size: str, params: float) -> str:
    return f"{size} ({format_params(params)})"


def format_estimate(value: float, low: float, high: float, seed_noise: str = FULL,
                    signed: bool = True) -> str:
    """'+1.2 [-0.3, 2.7]' (one decimal, as F1 points are reported), marked '†' when the
    interval lacks (some of) the seed noise."""
    if math.isnan(value):
        return "n/a"
    sign = "+" if signed else ""
    text = f"{value:{sign}.1f} [{low:.1f}, {high:.1f}]"
    return text if seed_noise == FULL else f"{text} {WITHOUT_SEED_NOISE}"


def format_p_value(p_value: float) -> str:
    if math.isnan(p_value):
        return "n/a"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


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

    With ``mark_significant``, '*' marks estimates whose paired test gives p < 0.05; '†'
    marks intervals without (some of) the seed noise, where only one seed was available.
    Rows without an estimate (e.g. a missing counterpart) read 'missing'.
    """
    table = table.sort_values("params", kind="stable")
    size_columns = list(dict.fromkeys(size_label(s, p) for s, p in zip(table["size"],
                                                                       table["params"])))
    cells: dict[tuple, dict[str, str]] = {}
    for row in table.itertuples(index=False):
        label = (group_label(row.scope, row.group), *(getattr(row, k) for k in row_keys))
        value = getattr(row, value_column)
        if pd.isna(value):
            text = "missing"
        else:
            text = format_estimate(value, row.ci_low, row.ci_high, row.seed_noise, signed)
        if mark_significant and not pd.isna(value) and row.p_value < SIGNIFICANCE_THRESHOLD:
            text += " *"
        cells.setdefault(label, {})[size_label(row.size, row.params)] = text
    index = pd.MultiIndex.from_tuples(list(cells), names=["language", *row_keys])
    matrix = pd.DataFrame(list(cells.values()), index=index, columns=size_columns)
    return matrix.fillna("").reset_index()


def trend_table(trends: pd.DataFrame) -> pd.DataFrame:
    """Slope per tenfold increase of parameters, per language and group, as text."""
    return pd.DataFrame({
        "itt": trends["itt"],
        "language": [group_label(s, g) for s, g in zip(trends["scope"], trends["group"])],
        "sizes": trends["sizes"],
        "slope per decade [CI]": [
            format_estimate(row.slope_per_decade, row.ci_low, row.ci_high, row.seed_noise)
            if row.status == OK else row.status.replace("_", " ")
            for row in trends.itertuples(index=False)],
    })


def to_markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", WITHOUT_SEED_NOISE: r"\dag{}"}


def latex_escape(text: object) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{" + "l" * len(table.columns) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\"
              for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}",
              rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
