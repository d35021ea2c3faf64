"""Extractive QA: an answer span of the context per question, scored by SQuAD's token F1
with exact match beside it (MLQA's language-aware normalisation where MLQA defines one, else
SQuAD's). A context longer than a window is cut into overlapping windows (`features.py`).

Its settings (task-level, read by tokenisation, development scoring and evaluation alike):
`doc_stride` (context tokens two consecutive windows share), `max_query_length` (tokens of
the question kept), `n_best` (starts x ends searched per window), `max_answer_length`.

Unified rows: `id`, `question`, `context`, `answers` (`{text: [...], answer_start: [...]}`),
and the column the task is carved by (`split_group`) when it is another one.
A predictions file: `task_type: qa`, `lang` (whose normalisation scores it; null for
SQuAD's), `ids`, `gold` (each question's gold answer texts), `pred` (one answer text each).
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xitt import XittError
from xitt.tasktypes.base import MIN_EXAMPLES, TaskType, row_ids, source_columns

QA_F1 = "qa_f1"
# Answers whose text is not at their offset in the context, of all answers: a data set may
# carry a few (they train towards the wrong span and are logged); more means a broken file.
MAX_MISPLACED_SHARE = 0.01
log = logging.getLogger(__name__)
# Room a window keeps besides the question and the context: special tokens (<s> q </s></s> c </s>).
SPECIAL_TOKENS = 4


class QA(TaskType):
    name = "qa"
    columns = ("id", "question", "context", "answers")
    companions = ("exact_match",)

    def check(self, task: Mapping[str, Any], group: str) -> None:
        """Each window setting a whole number >= 1, and a window with room for the question,
        the special tokens and more context than two windows share."""
        from xitt.core.validate import check_whole

        settings = {name: check_whole(task.get(name), f"{group}.{name}", 1, f"a whole number >= 1 ({words})")
                    for name, words in (("doc_stride", "context tokens two consecutive windows share"),
                                        ("max_query_length", "question tokens kept"),
                                        ("n_best", "starts and ends searched per window"),
                                        ("max_answer_length", "tokens of an answer"))}
        length = int(task["hparams"]["max_length"])
        context = length - settings["max_query_length"] - SPECIAL_TOKENS
        if settings["doc_stride"] >= context:
            raise XittError(
                f"`{group}.doc_stride={settings['doc_stride']}` leaves QA windows no new context: a window of "
                f"`{group}.hparams.max_length={length}` tokens holds the question (up to "
                f"`{group}.max_query_length={settings['max_query_length']}`), {SPECIAL_TOKENS} special tokens and "
                f"{context} context tokens, and two windows share `doc_stride` of them. Set `{group}.doc_stride` "
                f"below {context} (XTREME: 128 with max_length 384), or raise `{group}.hparams.max_length`.")

    def unify(self, raw: Any, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> Any:
        """Questions with their context and gold answers (SQuAD's columns)."""
        group = [task["split_group"]] if task.get("split_group") not in (None, *self.columns) else []
        columns = source_columns(raw, task, section, ["question", "context", "answers", *group], where)
        has_id = columns["id"] in raw.column_names

        def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            return {"id": row_ids(batch, columns["id"], has_id, id_prefix, indices),
                    **{field: batch[columns[field]] for field in ("question", "context", *group)},
                    "answers": [{"text": list(a["text"]), "answer_start": [int(s) for s in a["answer_start"]]}
                                for a in batch[columns["answers"]]]}

        unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
        check_answer_offsets(task, where, unified["id"], unified["context"], unified["answers"])
        return unified.select_columns([*self.columns, *group])

    def data_note(self, predictions: Mapping[str, Any], rows: Any) -> str | None:
        misplaced, total = misplaced_answers(rows["id"], rows["context"], rows["answers"])
        if not misplaced:
            return None
        return (f"{len(misplaced):,} of the {total:,} gold answers of the test set are not at their offset in "
                f"the context (kept; e.g. question {misplaced[0][0]!r})")

    def scores(self, predictions: Mapping[str, Any]) -> dict[str, float]:
        from xitt.metrics.qa import qa_scores

        gold = predictions["gold"]
        return {**qa_scores(predictions["pred"], gold, predictions.get("lang")), "n": len(gold)}

    def degenerate(self, predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
        """An empty answer to every question."""
        pred = predictions["pred"]
        empty = sum(not str(answer).strip() for answer in pred)
        if len(pred) >= MIN_EXAMPLES and empty == len(pred):
            return f"predicts an empty answer for all {len(pred):,} {split} questions in {lang}"
        return None

    def example_terms(self, predictions: Mapping[str, Any], path: Any) -> tuple[str, Any]:
        """(F1, exact match) of each question, in 0-1, as the evaluation scored it."""
        from xitt.metrics.qa import qa_example_scores

        lang = predictions.get("lang")  # None: SQuAD's English normalisation, as at evaluation
        return QA_F1, np.array([qa_example_scores(p, g, lang) for p, g in zip(predictions["pred"], predictions["gold"])],
                               dtype=np.float64)

    def ratio_terms(self, metric: str, counts: Any) -> tuple[Any, Any]:
        f1 = counts[:, 0]  # the mean over questions
        return f1, np.ones_like(f1)


def misplaced_answers(ids: Sequence[str], contexts: Sequence[str],
                      answers: Sequence[Mapping[str, list]]) -> tuple[list[tuple[str, str, int]], int]:
    """The gold answers whose text is not where their `answer_start` says in their context
    ((question id, text, start) each), and the count of all answers."""
    misplaced, total = [], 0
    for id_, context, answer in zip(ids, contexts, answers):
        for text, start in zip(answer["text"], answer["answer_start"]):
            total += 1
            if context[start:start + len(text)] != text:
                misplaced.append((id_, text, start))
    return misplaced, total


def check_answer_offsets(task: Mapping[str, Any], where: str, ids: Sequence[str], contexts: Sequence[str],
                         answers: Sequence[Mapping[str, list]]) -> None:
    """Each gold answer's text where its `answer_start` says, in its context: a few misplaced
    answers are counted and logged (and named in the records' split note: `QA.data_note`);
    above `MAX_MISPLACED_SHARE` of them the file is refused, naming the first."""
    misplaced, total = misplaced_answers(ids, contexts, answers)
    if not misplaced:
        return
    id_, text, start = misplaced[0]
    seen = f"{len(misplaced):,} of its {total:,} gold answers are not at their offset in the context"
    if len(misplaced) > MAX_MISPLACED_SHARE * total:
        raise XittError(
            f"Task '{task['name']}': {where}: {seen} (the first: question {id_!r}, answer {text!r} at character "
            f"{start}), more than {MAX_MISPLACED_SHARE:.0%}; a model would learn wrong spans. Check that `answer_start` "
            f"counts characters of the same `context` text (not bytes, not after a cleaning step), or fix the file.")
    log.warning("Task '%s': %s: %s (e.g. question %r); they are kept.", task["name"], where, seen, id_)
