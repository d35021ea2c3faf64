"""Result records: the schema of one record (one evaluated cell and language), where it
lives, and which languages of a cell still lack one. Torch-free: the planner and the
report read records without loading a model."""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from xitt.core.cell import Cell

PREDICTIONS_SUFFIX = ".predictions.json"


@dataclass
class Record:
    """One evaluated (cell, language): what was trained, how, and its scores (0-100)."""

    # which run: the cell, the artifacts it used, and the key of this evaluation
    cell_key: str
    cell_name: str
    result_key: str
    target_key: str
    itt_key: str | None
    # the grid's axes
    model: str
    size: str
    params: int  # counted from the loaded encoder
    itt: str
    target: str
    transfer: str
    freezing: str
    seed: int
    lang: str
    train_lang: str
    # scores: F1 is the task's own (macro-F1, entity F1, word accuracy, SQuAD token F1)
    f1: float
    n: int
    # the weight-shaping trainer settings that differ from `trainer=cpu`'s
    # (`xitt.core.keys.training_label`: `precision=bf16-mixed`; '' for none): part of the
    # setting a report groups by, so models trained two ways are never mixed
    training: str = ""
    # how the target model was trained that gives the same model by design (devices,
    # strategy, kernels: `xitt.core.keys.SAME_BY_DESIGN`), from its meta.json
    run_settings: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    exact_match: float | None = None
    # a depth ladder's size (`model.keep_layers`): the bottom layers kept of the checkpoint
    keep_layers: int | None = None
    # model selection of the target model (xitt.stages.selection; None without validation):
    # best|last, the epoch stored (1-based), the epochs trained and allowed, the development
    # F1 of the stored model, of the best and of the last validation, in which language(s)
    selection: str | None = None
    selected_epoch: int | None = None
    epochs_run: int | None = None
    epoch_budget: int | None = None
    dev_f1: float | None = None
    dev_f1_best: float | None = None
    dev_f1_last: float | None = None
    dev_lang: str | None = None
    # what looked broken (xitt.metrics.degenerate): degenerate predictions on the development
    # set of the stored model or on this language's test set; the record is kept, but flagged
    warnings: list[str] = field(default_factory=list)
    # provenance
    split_note: str | None = None
    few_shot_k: int | None = None
    few_shot_seed: int | None = None
    sweep: str | None = None
    predictions: str = ""
    eval_s: float | None = None
    created: str = ""
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    versions: dict[str, str] = field(default_factory=dict, repr=False)

    # The fields a file must have to count as a record, and the ones that are numbers.
    REQUIRED = ("cell_key", "model", "size", "params", "itt", "target", "transfer", "freezing", "seed", "lang", "f1")
    NUMBERS = {"params": int, "seed": int, "f1": float, "n": float, "accuracy": float, "precision": float,
               "recall": float, "exact_match": float, "keep_layers": float, "selected_epoch": float, "epochs_run": float,
               "epoch_budget": float, "dev_f1": float, "dev_f1_best": float, "dev_f1_last": float}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def columns(cls) -> list[str]:
        """The fields a table of records has (the resolved config and versions left out)."""
        return [f.name for f in fields(cls) if f.name not in ("config", "versions", "run_settings")]


def cell_results_dir(results_root: str | Path, cell: Cell) -> Path:
    return Path(results_root) / f"{cell.name}-{cell.cell_key[:8]}"


def record_path(results_dir: Path, lang: str) -> Path:
    return results_dir / f"{lang}.json"


def read_records(results_dir: Path, langs: list[str]) -> list[dict[str, Any]]:
    return [json.loads(record_path(results_dir, lang).read_text()) for lang in langs]


def stored_result_key(path: Path) -> str | None:
    """The result key of the record at `path`; None when there is none, or it is not a
    whole record (a truncated file is evaluated again and overwritten)."""
    try:
        return json.loads(path.read_text()).get("result_key")
    except (OSError, ValueError, AttributeError):
        return None


def pending_langs(cell: Cell, results_dir: Path) -> list[str]:
    """The languages without a record of the cell's current result key."""
    return [lang for lang in cell.eval_langs
            if stored_result_key(record_path(results_dir, lang)) != cell.result_key(
                cell.target_key(cell.train_langs_for(lang)), lang)]


# The scores besides F1 that a task's records may carry, with their column titles.
OTHER_SCORES = (("accuracy", "acc"), ("precision", "P"), ("recall", "R"), ("exact_match", "EM"))


def format_scores(records: list[dict[str, Any]]) -> str:
    """The per-language F1 table printed at the end of a cell (with the task's other scores)."""
    if not records:
        return ""
    first = records[0]
    others = [(name, short) for name, short in OTHER_SCORES if first.get(name) is not None]
    lines = [f"{first['cell_name']}  (encoder parameters: {first['params']:,})",
             f"{'lang':<8}{'F1':>8}" + "".join(f"{short:>8}" for _, short in others) + f"{'n':>7}"]
    lines += [f"{r['lang']:<8}{r['f1']:>8.1f}" + "".join(f"{r[name]:>8.1f}" for name, _ in others) + f"{r['n']:>7}"
              for r in records]
    warnings = list(dict.fromkeys(warning for r in records for warning in r.get("warnings") or ()))
    if warnings:
        lines += ["Warning: this model's predictions are degenerate; its scores are recorded but flagged, "
                  "and a report leaves them out of the ITT gains:",
                  *(f"  - {warning}" for warning in warnings)]
    return "\n".join(lines)
