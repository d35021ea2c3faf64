"""Classification: one label per text or text pair (NLI, paraphrase, sentiment), scored by
macro-F1 (scikit-learn's default: a class that is neither gold nor predicted is left out of
the mean) with accuracy beside it.

Unified rows: `id`, the task's `text_fields`, `label` (an index into the task's `labels`).
A predictions file: `ids`, `gold` and `pred` (class indices; a gold label below 0 marks an
unlabelled example, left out of the scores), `labels`.
"""

from collections.abc import Mapping
from typing import Any

from xitt.tasktypes.base import MIN_EXAMPLES, TaskType, class_names, label_lookup, row_ids, source_columns

MACRO_F1 = "macro_f1"
# How the head pools the encoder's states (a model family's `pooling`): the first token, the
# last real token (left-padding models such as XLNet), or the mean of the real tokens.
POOLINGS = ("cls", "last", "mean")


class Classification(TaskType):
    name = "classification"
    columns = ("id", "label")  # and the task's text fields
    companions = ("accuracy",)
    has_classes = True

    def unify(self, raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> Any:
        """Rename the source's columns to the task's fields (`columns: {ours: theirs}`) and map
        its labels onto the task's label list."""
        columns = source_columns(raw, task, section, [*task["text_fields"], "label"], where)
        label_column = columns["label"]
        lookup = label_lookup(task, section, raw.unique(label_column), class_names(raw.features[label_column]), where)
        has_id = columns["id"] in raw.column_names

        def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            out = {field: batch[columns[field]] for field in task["text_fields"]}
            out["label"] = [lookup[value] for value in batch[label_column]]
            out["id"] = row_ids(batch, columns["id"], has_id, id_prefix, indices)
            return out

        unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
        return unified.select_columns(["id", *task["text_fields"], "label"])

    def scores(self, predictions: Mapping[str, Any]) -> dict[str, float]:
        from xitt.metrics.classification import classification_scores

        return classification_scores(predictions["gold"], predictions["pred"], len(predictions["labels"]))

    def degenerate(self, predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
        """One class predicted for every example, where the gold labels differ (a test set of
        one class is predicted perfectly by one class)."""
        gold, pred = predictions["gold"], predictions["pred"]
        classes = set(pred)
        if len(pred) >= MIN_EXAMPLES and len(classes) == 1 and len({label for label in gold if label >= 0}) > 1:
            labels = predictions.get("labels") or []
            index = int(next(iter(classes)))
            name = labels[index] if 0 <= index < len(labels) else f"class {index}"
            return f"predicts one class ({name}) for all {len(pred):,} {split} examples in {lang}"
        return None

    def example_terms(self, predictions: Mapping[str, Any], path: Any) -> tuple[str, Any]:
        """Macro-F1 is no ratio of sums: the report resamples the gold and predicted classes
        themselves (its confusion matrix)."""
        return MACRO_F1, None
