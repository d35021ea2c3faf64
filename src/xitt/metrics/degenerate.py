"""Degenerate predictions: a model that gives every example the same output (one class for
every text, one tag for every word, an empty answer to every question) has learnt nothing
of its input, whatever its F1 says (a constant class scores 16.7 macro-F1 on three
balanced classes, which reads like a weak model, not a broken one).

Read from a predictions file's content (the format `xitt.metrics.predictions` describes),
torch-free: the evaluation flags the test and development sets of a model as it scores
them, and the report flags records written before the check existed from the predictions
files beside them.
"""

from typing import Any

# A single example's output is always "the same for every example".
MIN_EXAMPLES = 2


def degenerate_predictions(predictions: dict[str, Any], split: str, lang: str) -> str | None:
    """One sentence naming what was seen when the predictions of `split` ("test",
    "development") in `lang` are degenerate, else None. A constant class or tag is only a
    sign of a broken model where the gold labels differ between examples (a test set of
    one class is predicted perfectly by one class)."""
    kind = predictions.get("task_type", "classification")
    gold, pred = predictions["gold"], predictions["pred"]
    if kind == "qa":
        empty = sum(not str(answer).strip() for answer in pred)
        if len(pred) >= MIN_EXAMPLES and empty == len(pred):
            return f"predicts an empty answer for all {len(pred):,} {split} questions in {lang}"
        return None
    if kind == "tagging":
        tags = {tag for sentence in pred for tag in sentence}
        words = sum(len(sentence) for sentence in pred)
        gold_tags = {tag for sentence in gold for tag in sentence}
        if words >= MIN_EXAMPLES and len(tags) == 1 and len(gold_tags) > 1:
            return (f"predicts one tag ({next(iter(tags))}) for all {words:,} words of the {len(pred):,} "
                    f"{split} sentences in {lang}")
        return None
    classes = set(pred)
    if len(pred) >= MIN_EXAMPLES and len(classes) == 1 and len({label for label in gold if label >= 0}) > 1:
        labels = predictions.get("labels") or []
        index = int(next(iter(classes)))
        name = labels[index] if 0 <= index < len(labels) else f"class {index}"
        return f"predicts one class ({name}) for all {len(pred):,} {split} examples in {lang}"
    return None
