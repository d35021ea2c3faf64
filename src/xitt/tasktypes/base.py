"""What every task type declares (`TaskType`), and the reading helpers the types share.

A type's unit is a folder `xitt/tasktypes/<type>/`: its `__init__.py` holds the torch-free
half (how source rows are unified, the rules of its settings, its scores, the degenerate
check, the per-example terms a report resamples), read by the data readers, the validation,
the records and the report; its `training.py` holds the half that needs torch (features and
tokenisation, the collator, the module and its head, the predictions file, how a
validation scores the development set), imported only by a stage that trains or evaluates
(`TaskType.training`). Generic code asks the unit; it never branches on a type's name.
"""

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from xitt import XittError


class TaskType:
    """One task type. Subclasses set `name`, `columns` (the unified rows' columns) and the
    methods below that differ from these defaults."""

    name: str
    # The unified rows' columns (`unify`), the same for every source and language.
    columns: tuple[str, ...]
    # The record field of the type's primary score (what gains, trends and power read), and
    # the other score fields its records may carry (`xitt.core.records.Record`).
    primary = "f1"
    companions: tuple[str, ...] = ()
    # Whether `train_sample: {per_class: k}` (and so few-shot transfer) can draw k of each class.
    has_classes = False
    # Whether a target task of the type has a training stage (retrieval scores the encoder it
    # is given), and the transfer modes it supports (None: all).
    trains = True
    transfer_modes: tuple[str, ...] | None = None

    def primary_for(self, task: Mapping[str, Any]) -> str:
        """The record field of a task's primary score (a type may score its tasks differently)."""
        return self.primary

    def companions_for(self, task: Mapping[str, Any]) -> tuple[str, ...]:
        return self.companions

    def rows_view(self, task: Mapping[str, Any]) -> dict[str, Any] | None:
        """What a language's prediction rows depend on besides the model and the test files,
        for a type whose rows are kept in the store and shared by its tasks (retrieval's
        embeddings: two tasks scoring the same sentences embed them once); None: not kept."""
        return None

    def evaluation_languages(self, task: Mapping[str, Any], langs: list[str]) -> list[str]:
        """The languages an evaluation in `langs` reads (retrieval adds its English side)."""
        return list(langs)

    @property
    def training(self) -> ModuleType:
        """The torch half of the unit (`<type>/training.py`): `MODEL_COLUMNS`, `SCORING_COLUMNS`,
        `tokenise`, `collator`, `module`, `predictions_files` (each evaluated language's),
        `GATHERS_DEV_ROWS`, `dev_scores`."""
        return importlib.import_module(f"xitt.tasktypes.{self.name}.training")

    def check(self, task: Mapping[str, Any], group: str) -> None:
        """The rules of the type's own settings of a task (`group`: itt or target): one
        paragraph naming the setting, the rule and the fix. No data is read."""

    def unify(self, raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> Any:
        """A source's rows (a `datasets.Dataset`) in the type's columns."""
        raise NotImplementedError

    def data_note(self, predictions: Mapping[str, Any], rows: Any) -> str | None:
        """What a record's split note says of its test rows (the unified and scored rows of one
        language) and its predictions file: rows kept although they are off (QA answers not
        at their offset), how a test set was built from them (retrieval's carve), counted;
        None when there is nothing to say."""
        return predictions.get("note")

    def scores(self, predictions: Mapping[str, Any]) -> dict[str, float]:
        """A predictions file's scores (0-100) as a record carries them: the primary, its
        companions and `n` (examples)."""
        raise NotImplementedError

    def degenerate(self, predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
        """One sentence when the predictions give every example the same output, else None."""
        raise NotImplementedError

    def example_terms(self, predictions: Mapping[str, Any], path: Any) -> tuple[str, Any]:
        """(metric, counts): one row of counts per example, in file order, whose sums give
        the score (`ratio_terms`); None counts where the score is no ratio of sums
        (classification's macro-F1, resampled from its confusion matrix)."""
        raise NotImplementedError

    def ratio_terms(self, metric: str, counts: Any) -> tuple[Any, Any]:
        """Each example's part of the score's numerator and denominator (0-1)."""
        raise ValueError(f"{metric} is not a ratio of sums over examples")

    def diverged_hint(self, task: Mapping[str, Any], group: str) -> str:
        """What else can make this type's loss not finite before the first update ('' if nothing)."""
        return ""


MIN_EXAMPLES = 2  # a single example's output is always "the same for every example"


def row_ids(batch: Mapping[str, list], column: str, has_id: bool, id_prefix: str, indices: list[int]) -> list[str]:
    """The rows' ids: the source's own, or `<split>-<row number>`, the same in every language
    of a parallel data set."""
    return [str(value) for value in batch[column]] if has_id else [f"{id_prefix}-{index:07d}" for index in indices]


def source_columns(raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], wanted: list[str],
                   where: str) -> dict[str, str]:
    """The source's columns that hold the task's fields (`columns: {ours: theirs}`); fails
    naming the missing ones and the setting that maps them."""
    mapping = dict(section.get("columns") or {})
    absent = [field for field in wanted if mapping.get(field, field) not in raw.column_names]
    if absent:
        raise XittError(
            f"Task '{task['name']}': {where} has no column "
            f"{', '.join(repr(mapping.get(field, field)) for field in absent)} (for the task's "
            f"{', '.join(absent)}); its columns are: {', '.join(raw.column_names)}. Map them in the "
            f"task config's `{section.get('declared_at', task['source'])}.columns` ({{task field: source column}})."
        )
    return {field: mapping.get(field, field) for field in [*wanted, "id"]}


def label_lookup(task: Mapping[str, Any], section: Mapping[str, Any], raw_values: list[Any],
                 class_names: list[str] | None, where: str) -> dict[Any, int]:
    """Each raw label value's index in the task's label list: a class name from the data's
    own class list (so integer codes are never read by position), else the value as text;
    then the source's `label_map`, then the task's (its label scheme)."""
    labels = [str(label) for label in task["labels"]]
    source_map = {str(key): str(value) for key, value in (section.get("label_map") or {}).items()}
    task_map = {str(key): str(value) for key, value in (task.get("label_map") or {}).items()}
    lookup, unknown = {}, []
    for value in raw_values:
        name = class_names[value] if class_names and isinstance(value, int) and 0 <= value < len(class_names) else value
        name = str(name).strip()  # " positive " (spaces a spreadsheet or hand edit left) is "positive"
        name = source_map.get(name, name)
        name = task_map.get(name, name)
        if name in labels:
            lookup[value] = labels.index(name)
        else:
            unknown.append(value)
    if unknown:
        shown = ", ".join(repr(value) for value in sorted(unknown, key=str)[:10])
        raise XittError(
            f"Task '{task['name']}': {where} has label values {shown} that are not among the task's "
            f"labels {labels}. Map them in the task config's `label_map` (source value: task label)"
            f"{' (a value of -1 marks an unlabelled test set: evaluate on another split)' if -1 in unknown else ''}."
        )
    return lookup


def class_names(feature: Any) -> list[str] | None:
    """The class names of a `datasets.ClassLabel` feature (a hub data set's integer labels),
    read without importing `datasets`; None for plain values."""
    names = getattr(feature, "names", None)
    return list(names) if isinstance(names, (list, tuple)) else None


def check_fast_tokenizer(tokenizer: Any) -> None:
    """Tagging and QA features need a fast (Rust) tokenizer: word ids and character offsets."""
    if not getattr(tokenizer, "is_fast", False):
        raise XittError(f"The tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer, but tagging and QA "
                        f"features need its word ids and character offsets. Load it with "
                        f"AutoTokenizer.from_pretrained(..., use_fast=True), or convert it with "
                        f"transformers' convert_slow_tokenizer.")
