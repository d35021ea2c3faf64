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
    n: int  # examples scored (texts, sentences, questions)
    # the record field of the task type's primary score (`xitt.tasktypes`: what gains, trends
    # and power read); records written before the field are F1's
    metric: str = "f1"
    # scores (0-100), each task's own: F1 is macro-F1 for classification, entity F1 or word
    # accuracy for tagging, SQuAD token F1 for QA
    f1: float | None = None
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
    reverse_accuracy: float | None = None  # retrieval (nearest): English -> the language
    # retrieval (mining): the margin threshold applied to the test pairs, and where it came from
    threshold: float | None = None
    threshold_from: str | None = None
    # whether the scores do not depend on the seed (a pretrained encoder scored without any
    # training: one value per model, recorded as seed 0 and paired with every seed of its twins)
    seed_independent: bool = False
    # the stored target model whose encoder a retrieval target scored, when it is not the cell's
    # own (ITT or pretrained) encoder (`evaluate.py ckpt=<store>/target/<key> target=<retrieval
    # task>`): `<stage>:<the task it was fine-tuned on>` (`target:demo`; `/<transfer>` when not
    # zero-shot); its key is `target_key`, its training language(s) `train_lang`. A setting of its
    # own in reports, never one run with the ITT encoder's scores
    scored_model: str | None = None
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
    # what looked broken (xitt.tasktypes.degenerate_predictions): degenerate predictions on the development
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
    # (and the field its `metric` names, `primary_score`)
    REQUIRED = ("cell_key", "model", "size", "params", "itt", "target", "transfer", "freezing", "seed", "lang")
    NUMBERS = {"params": int, "seed": int, "f1": float, "n": float, "accuracy": float, "precision": float,
               "recall": float, "exact_match": float, "reverse_accuracy": float, "threshold": float,
               "keep_layers": float, "selected_epoch": float, "epochs_run": float, "epoch_budget": float,
               "dev_f1": float, "dev_f1_best": float, "dev_f1_last": float}

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
            if stored_result_key(record_path(results_dir, lang)) != cell.result_key(cell.scored_key(lang), lang)]


# Every score field a record may carry: its title in reports and its short title in the
# table a cell prints.
SCORE_TITLES = {"f1": ("F1", "F1"), "accuracy": ("accuracy", "acc"), "precision": ("precision", "P"),
                "recall": ("recall", "R"), "exact_match": ("exact match", "EM"),
                "reverse_accuracy": ("accuracy from English", "acc<-en")}


def primary_score(record: dict[str, Any]) -> float | None:
    """The value of the record's primary score (the field its `metric` names)."""
    return record.get(record.get("metric") or "f1")


def score_title(metric: str) -> str:
    """'F1', 'accuracy', ...: how reports name a score field."""
    return SCORE_TITLES.get(metric, (metric,))[0]


def format_scores(records: list[dict[str, Any]]) -> str:
    """The per-language table printed at the end of a cell: the primary score first, then the
    task's other scores."""
    if not records:
        return ""
    first = records[0]
    shown = [first.get("metric") or "f1"]
    shown += [name for name in SCORE_TITLES if name not in shown and first.get(name) is not None]
    lines = [f"{first['cell_name']}  (encoder parameters: {first['params']:,})",
             f"{'lang':<8}" + "".join(f"{SCORE_TITLES.get(name, (name, name))[1]:>8}" for name in shown) + f"{'n':>7}"]
    lines += [f"{r['lang']:<8}" + "".join(f"{r[name]:>8.1f}" for name in shown) + f"{r['n']:>7}"
              for r in records]
    warnings = list(dict.fromkeys(warning for r in records for warning in r.get("warnings") or ()))
    if warnings:
        lines += ["Warning: this model's predictions are degenerate; its scores are recorded but flagged, "
                  "and a report leaves them out of the ITT gains:",
                  *(f"  - {warning}" for warning in warnings)]
    return "\n".join(lines)
