"""Tagging: one tag per word. NER (`metric: entity_f1`, IOB2 tags) is scored by exact-span
entity F1 with precision and recall (conlleval's); POS (`metric: word_accuracy`) by the share
of words tagged right, XTREME's "F1" for it. Only the first sub-word of a word is labelled
and predicted (`features.py`).

Unified rows: `id`, `tokens` (the words), `tags` (one label name of the task per word).
A predictions file: `task_type: tagging`, `metric`, `labels`, `ids`, `gold` and `pred` (one
list of tag names per sentence).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from xitt import XittError
from xitt.tasktypes.base import MIN_EXAMPLES, TaskType, class_names, label_lookup, row_ids, source_columns

ENTITY_F1, WORD_ACCURACY = "entity_f1", "word_accuracy"
METRICS = (ENTITY_F1, WORD_ACCURACY)


class Tagging(TaskType):
    name = "tagging"
    columns = ("id", "tokens", "tags")
    companions = ("accuracy", "precision", "recall")

    def check(self, task: Mapping[str, Any], group: str) -> None:
        if task.get("metric") not in METRICS:
            raise XittError(f"Tagging task '{task['name']}' has metric {task.get('metric')!r}; set `metric` in its "
                            f"config to entity_f1 (NER, IOB2 tags) or word_accuracy (POS).")

    def unify(self, raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> Any:
        """Words and their tags as label names of the task: a hub's class indices become the
        class names, then the label maps apply, as for classification labels."""
        columns = source_columns(raw, task, section, ["tokens", "tags"], where)
        inner = getattr(raw.features[columns["tags"]], "feature", None)  # a sequence of class labels on the hub
        values = sorted({value for tags in raw[columns["tags"]] for value in tags}, key=str)
        lookup = label_lookup(task, section, values, class_names(inner), where)
        labels = list(task["labels"])
        has_id = columns["id"] in raw.column_names

        def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            return {"id": row_ids(batch, columns["id"], has_id, id_prefix, indices),
                    "tokens": batch[columns["tokens"]],
                    "tags": [[labels[lookup[tag]] for tag in tags] for tags in batch[columns["tags"]]]}

        unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
        return unified.select_columns(list(self.columns))

    def scores(self, predictions: Mapping[str, Any]) -> dict[str, float]:
        from xitt.metrics.tagging import entity_scores, token_accuracy

        gold, pred = predictions["gold"], predictions["pred"]
        if predictions["metric"] == ENTITY_F1:
            scores = entity_scores(gold, pred)
            return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"], "n": len(gold)}
        if predictions["metric"] == WORD_ACCURACY:
            accuracy = token_accuracy(gold, pred)
            return {"f1": accuracy, "accuracy": accuracy, "n": len(gold)}
        raise XittError(f"A tagging predictions file has metric {predictions['metric']!r}; the tagging metrics "
                        f"are entity_f1 (NER) and word_accuracy (POS).")

    def degenerate(self, predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
        """One tag for every word, where the gold tags differ."""
        gold, pred = predictions["gold"], predictions["pred"]
        tags = {tag for sentence in pred for tag in sentence}
        words = sum(len(sentence) for sentence in pred)
        gold_tags = {tag for sentence in gold for tag in sentence}
        if words >= MIN_EXAMPLES and len(tags) == 1 and len(gold_tags) > 1:
            return (f"predicts one tag ({next(iter(tags))}) for all {words:,} words of the {len(pred):,} "
                    f"{split} sentences in {lang}")
        return None

    def example_terms(self, predictions: Mapping[str, Any], path: Any) -> tuple[str, Any]:
        """(true positive, predicted, gold) entities of each sentence for NER, (correct, all)
        words for POS."""
        from xitt.metrics.tagging import entity_counts, token_counts

        count = {ENTITY_F1: entity_counts, WORD_ACCURACY: token_counts}.get(predictions.get("metric"))
        if count is None:
            raise ValueError(f"{path} has tagging metric {predictions.get('metric')!r}; the report reads "
                             f"{ENTITY_F1} and {WORD_ACCURACY}")
        gold, pred = predictions["gold"], predictions["pred"]
        # A truncated prediction must not be scored as if its missing words did not exist
        # (entity_counts, unlike the evaluation's entity_scores, does not check this).
        if any(len(g) != len(p) for g, p in zip(gold, pred)):
            raise ValueError(f"a sentence has more or fewer predicted tags than gold tags in {path}")
        return predictions["metric"], np.array([count(g, p) for g, p in zip(gold, pred)], dtype=np.float64)

    def ratio_terms(self, metric: str, counts: Any) -> tuple[Any, Any]:
        if metric == ENTITY_F1:  # conlleval's 2PR / (P + R) is 2 TP / (predicted + gold)
            tp, n_pred, n_gold = counts.T
            return 2.0 * tp, n_pred + n_gold
        correct, total = counts.T
        return correct, total

    def diverged_hint(self, task: Mapping[str, Any], group: str) -> str:
        return (f" (with `{group}.hparams.max_length={task['hparams']['max_length']}`, a tagging batch can lose "
                f"every word to truncation: no token is labelled, and the mean loss is 0/0)")
