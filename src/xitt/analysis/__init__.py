"""Analysis of a grid's results: does English ITT help cross-lingual transfer more or less
as the multilingual model grows?

The pipeline writes one record (and one predictions file) per evaluated cell and
language; this package turns the records of one or more results or sweep folders into the
answer: the target's score (its task type's primary, e.g. F1) per cell, ITT gain against the matching no-ITT cell with confidence intervals
over seeds and test examples and the test dual to them (a seed-level claim needs three
seeds), the trend of the gain against log10(parameters), tables and plots.
``build_report`` does all of it (it is what ``python evaluate.py report=<folder>``
calls); the notebook uses the steps one by one: ``load_results`` -> ``analyse`` -> tables,
plots and ``answers``.
"""

from .gains import Analysis, analyse
from .languages import language_groups
from .plots import plot_gain_by_group, plot_gain_heatmap, plot_gain_vs_size, plot_score_vs_size
from .records import ReportError, Results, find_record_candidates, load_results
from .report import answers, build_report, by_setting, score_name, setting_title, write_report
from xitt.metrics.classification import macro_f1

from .stats import (MIN_SEEDS_FOR_CLAIM, Estimate, bootstrap_macro_f1, bootstrap_ratio, combine, pool_seeds,
                    ratio_score)
from .tables import interval_matrix, to_markdown, trend_table

__all__ = [
    "MIN_SEEDS_FOR_CLAIM", "Analysis", "Estimate", "ReportError", "Results", "analyse",
    "answers", "bootstrap_macro_f1", "bootstrap_ratio", "build_report", "by_setting",
    "combine", "find_record_candidates", "interval_matrix", "language_groups",
    "load_results", "macro_f1", "plot_gain_by_group", "plot_gain_heatmap", "plot_gain_vs_size",
    "plot_score_vs_size", "pool_seeds", "ratio_score", "score_name", "setting_title",
    "to_markdown", "trend_table", "write_report",
]
