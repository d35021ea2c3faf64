"""Figures of the report: the gain per language group against parameters (the answer at a
glance), gain against model size per language, a language x size heatmap, the absolute score.
`metric` is how the setting's score is named ("F1", "accuracy": `xitt.core.records.score_title`).

Each function takes rows of one setting (see ``gains.by_setting``) and returns a
matplotlib Figure.  Figures are built with the object API on an Agg canvas rather than
through pyplot, so they neither need nor change the global backend: the report renders
PNGs on a headless compute node, and the notebook displays the very same Figure objects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .gains import OK
from .records import NO_ITT
from .stats import MIN_SEEDS_FOR_CLAIM
from .tables import group_label, shown_interval, size_label

_PANEL_SIZE = (3.2, 2.6)
_MAX_COLUMNS = 4
# Lines of one panel are shifted along the log axis by this many decades each, so that
# their error bars at the same size do not hide each other.
_DODGE_DECADES = 0.03
_GROUPINGS = {"resource": "resource level", "script": "script"}  # scope -> panel title


def plot_gain_by_group(gains: pd.DataFrame, metric: str) -> Figure:
    """ITT gain against parameter count (log scale) with error bars, one line per language
    group and one for all languages (black): a panel per grouping (resource level,
    script) and a row per intermediate task.

    The error bars are the intervals of the tables (``tables.shown_interval``): over seeds
    and test examples, or, with hollow markers, over test examples only.  A grouping with
    a single group would only repeat the all-languages line, so it gets no panel.
    """
    pooled = gains[(gains["status"] == OK) & (gains["scope"] != "language")]
    scopes = [scope for scope in _GROUPINGS
              if pooled.loc[pooled["scope"] == scope, "group"].nunique() > 1] or ["overall"]
    itts = sorted(pooled["itt"].unique())
    figure = _figure(len(itts), len(scopes), width=4.2 * len(scopes), height=3.2 * len(itts))
    panels = [(itt, scope) for itt in itts for scope in scopes]
    sizes = pooled[["size", "params"]].drop_duplicates().sort_values("params")
    for axes, (itt, scope) in zip(figure.axes, panels):
        rows = pooled[pooled["itt"] == itt]
        lines = [("overall", "all")] + [
            (scope, group) for group in sorted(rows.loc[rows["scope"] == scope, "group"].unique())]
        for position, (line_scope, group) in enumerate(lines):
            line = rows[(rows["scope"] == line_scope) & (rows["group"] == group)]
            style = {"color": "black", "linewidth": 2} if line_scope == "overall" else {}
            dodge = 10 ** (_DODGE_DECADES * (position - (len(lines) - 1) / 2))
            _error_bar_line(axes, line, "gain", dodge, label=group_label(line_scope, group),
                            **style)
        axes.axhline(0.0, color="0.5", linewidth=0.8)
        _size_axis(axes, sizes)
        grouping = f", by {_GROUPINGS[scope]}" if scope in _GROUPINGS else ""
        axes.set_title(f"ITT with {itt}{grouping}", fontsize=9)
        axes.set_ylabel(f"ITT gain ({metric} points)")
        axes.legend(fontsize=7)
    figure.suptitle("Error bars: intervals over seeds and test examples; hollow markers: test "
                    f"examples only (fewer than {MIN_SEEDS_FOR_CLAIM} seeds)", fontsize=7)
    return figure


def plot_gain_vs_size(gains: pd.DataFrame, metric: str) -> Figure:
    """ITT gain against parameter count (log scale), one panel per language and one for
    the mean over languages, one line per intermediate task, shaded confidence band (the
    intervals of the tables)."""
    return _by_size_panels(gains[gains["status"] == OK], "gain", f"ITT gain ({metric} points)",
                           zero_line=True)


def plot_score_vs_size(scores: pd.DataFrame, metric: str) -> Figure:
    """The absolute score against parameter count, with ITT (each task) and without (dashed)."""
    return _by_size_panels(scores, "score", metric, zero_line=False)


def plot_gain_heatmap(gains: pd.DataFrame, itt: str, metric: str) -> Figure:
    """Gain of one intermediate task per language (rows) and size (columns); blank cells
    are missing counterparts."""
    rows = gains[(gains["scope"] == "language") & (gains["itt"] == itt)]
    rows = rows.sort_values(["resource", "group"], kind="stable")
    languages = list(dict.fromkeys(rows["group"]))
    sizes = rows[["size", "params"]].drop_duplicates().sort_values("params")
    values = np.full((len(languages), len(sizes)), np.nan)
    for row in rows.itertuples(index=False):
        column = sizes["size"].tolist().index(row.size)
        values[languages.index(row.group), column] = row.gain
    figure = _figure(1, 1, width=1.4 + 1.1 * len(sizes), height=1.2 + 0.35 * len(languages))
    axes = figure.axes[0]
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = axes.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-limit, vmax=limit,
                        aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        dark_cell = abs(value) > 0.6 * limit  # False for nan
        axes.text(j, i, "missing" if math.isnan(value) else f"{value:+.1f}", ha="center",
                  va="center", fontsize=8, color="white" if dark_cell else "black")
    axes.set_xticks(range(len(sizes)),
                    [size_label(s, p) for s, p in zip(sizes["size"], sizes["params"])])
    axes.set_yticks(range(len(languages)), languages)
    axes.set_title(f"ITT gain with {itt} ({metric} points)")
    figure.colorbar(image, ax=axes)
    return figure


def _by_size_panels(table: pd.DataFrame, value_column: str, ylabel: str,
                    zero_line: bool) -> Figure:
    """Small multiples: the mean over languages first, then each language."""
    overall = table[table["scope"] == "overall"]
    languages = table[table["scope"] == "language"]
    panels = [("overall", "all")] + [("language", lang)
                                     for lang in sorted(languages["group"].unique())]
    n_columns = min(_MAX_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_columns)
    figure = _figure(n_rows, n_columns)
    sizes = table[["size", "params"]].drop_duplicates().sort_values("params")
    for axes, (scope, group) in zip(figure.axes, panels):
        panel = overall if scope == "overall" else languages[languages["group"] == group]
        for itt, line in panel.groupby("itt", sort=True):
            line = line.sort_values("params")
            style = {"linestyle": "--", "color": "0.4"} if itt == NO_ITT else {}
            drawn = axes.plot(line["params"], line[value_column], marker="o", label=itt, **style)
            low, high, _ = zip(*map(shown_interval, line.to_dict("records")))
            axes.fill_between(line["params"], low, high, alpha=0.2,
                              color=drawn[0].get_color(), linewidth=0)
        if zero_line:
            axes.axhline(0.0, color="black", linewidth=0.8)
        _size_axis(axes, sizes)
        axes.set_title(group_label(scope, group))
        axes.set_ylabel(ylabel)
    for unused in figure.axes[len(panels):]:
        unused.set_visible(False)
    if figure.axes[0].get_legend_handles_labels()[0]:
        figure.axes[0].legend(title="ITT", fontsize=7)
    return figure


def _error_bar_line(axes, line: pd.DataFrame, value_column: str, dodge: float,
                    **style) -> None:
    """A line through the estimates at ``dodge`` times their parameter count, with error
    bars: filled markers over seeds and test examples, hollow over test examples only."""
    line = line.sort_values("params")
    x = line["params"].to_numpy() * dodge
    (drawn,) = axes.plot(x, line[value_column], **style)
    color = drawn.get_color()
    for position, row in zip(x, line.to_dict("records")):
        low, high, test_set_only = shown_interval(row)
        value = row[value_column]
        error = None if math.isnan(low) else [[value - low], [high - value]]
        axes.errorbar([position], [value], yerr=error, fmt="o", color=color, capsize=3,
                      markerfacecolor="white" if test_set_only else color)


def _size_axis(axes, sizes: pd.DataFrame) -> None:
    """A log parameter axis labelled with the sizes."""
    axes.set_xscale("log")
    axes.set_xticks(sizes["params"], [size_label(s, p) for s, p in
                                      zip(sizes["size"], sizes["params"])], fontsize=7)
    axes.minorticks_off()


def _figure(n_rows: int, n_columns: int, width: float | None = None,
            height: float | None = None) -> Figure:
    figure = Figure(figsize=(width or _PANEL_SIZE[0] * n_columns,
                             height or _PANEL_SIZE[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    figure.subplots(n_rows, n_columns, squeeze=False)
    return figure
