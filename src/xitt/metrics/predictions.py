"""A record's scores from its predictions file, for every task type (torch-free): the
evaluation writes the predictions file and scores exactly what it wrote, and a report can
recompute the same numbers, or resample examples, from the file alone.

The file's shape per task type (`task_type`; files without one are classification):

- classification: `ids`, `gold` and `pred` (class indices), `labels`;
- tagging: `ids`, `gold` and `pred` (one list of tag names per sentence), `labels`,
  `metric` (`entity_f1` for NER, `word_accuracy` for POS);
- qa: `ids`, `gold` (the gold answer texts of each question), `pred` (one answer text per
  question), `lang` (the language whose normalisation scores it, null for SQuAD's).
"""

from typing import Any

from xitt import XittError
from xitt.metrics.classification import classification_scores
from xitt.metrics.qa import qa_scores
from xitt.metrics.tagging import entity_scores, token_accuracy


def prediction_scores(predictions: dict[str, Any]) -> dict[str, float]:
    """The scores a record carries (0-100): `f1` and `n` (examples: texts, sentences or
    questions), plus `accuracy` (classification, POS), `precision` and `recall` (NER) or
    `exact_match` (QA)."""
    kind = predictions.get("task_type", "classification")
    gold, pred = predictions["gold"], predictions["pred"]
    if kind == "classification":
        return classification_scores(gold, pred, len(predictions["labels"]))
    if kind == "tagging":
        if predictions["metric"] == "entity_f1":
            scores = entity_scores(gold, pred)
            return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"], "n": len(gold)}
        if predictions["metric"] == "word_accuracy":
            accuracy = token_accuracy(gold, pred)
            return {"f1": accuracy, "accuracy": accuracy, "n": len(gold)}
        raise XittError(f"A tagging predictions file has metric {predictions['metric']!r}; the tagging metrics "
                        f"are entity_f1 (NER) and word_accuracy (POS).")
    if kind == "qa":
        return {**qa_scores(pred, gold, predictions.get("lang")), "n": len(gold)}
    raise XittError(f"A predictions file has task_type {kind!r}; the task types are classification, tagging, qa.")
