"""Scores for sequence tagging: entity F1 for NER (PAN-X) and word accuracy for POS (UD).

Torch-free on purpose: the same functions score predictions at evaluation time and
recompute F1 from saved predictions in the report.

Entity F1 follows the CoNLL-2000 `conlleval` definition (Tjong Kim Sang & Buchholz, 2000),
which is also seqeval's default (non-strict) mode (equal to it on thousands of random tag
sequences: tests/test_metric_crosscheck.py):

* An entity (a "chunk") is a maximal run of tags `B-X I-X I-X ...` of one type X.
* A chunk starts at `B-X`, and also at an `I-X` that does not continue a chunk of type X
  (after `O`, at the start of the sentence, or after a tag of another type). So a stray
  `I-X` is read as the first word of an entity of type X, as conlleval reads it, rather
  than being dropped (seqeval's strict IOB2 mode drops it; we do not use that mode).
* A chunk ends before `O`, before `B-*`, before a tag of another type, and at the end of
  the sentence.
* A predicted entity counts as correct only if its type, first word and last word all
  equal those of a gold entity (exact match). A boundary error or a type error is
  therefore both a false positive and a false negative.
* Precision, recall and F1 are micro-averaged: entity counts are summed over all
  sentences before dividing. F1 = 2PR / (P + R), 0 when P + R = 0, and a precision
  (recall) with no predicted (gold) entities is 0, as conlleval reports it.

POS tagging is scored as XTREME scores UDPOS: the "F1" it reports is micro accuracy over
words, which is what `token_accuracy` computes.

For a paired bootstrap over sentences, `entity_counts` and `token_counts` give per-sentence
counts; the score of any resample is the score of the summed counts
(`f1_from_counts`, `accuracy_from_counts`), which equals recomputing it from scratch.
"""

from collections.abc import Sequence

from xitt import XittError

Span = tuple[str, int, int]

OUTSIDE = "O"


def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O"; anything else is an error, because a
    tag set outside IOB2 (IOBES, BILOU, bare types) would be silently mis-scored."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, dash, entity_type = tag.partition("-")
    if dash and prefix in ("B", "I") and entity_type:
        return prefix, entity_type
    raise XittError(f"The tag {tag!r} is not an IOB2 tag. Entity scoring reads IOB2 tags only: 'O', "
                    f"'B-<type>' and 'I-<type>'; convert the labels to IOB2 (or score a POS task with "
                    f"token_accuracy, which accepts any tag).")


def iob2_spans(tags: Sequence[str]) -> set[Span]:
    """The entities of one sentence as (type, start, end) with `end` exclusive (word
    indices), under the conlleval convention described in the module docstring: an `I-X`
    that does not continue an entity of type X starts a new one."""
    spans: set[Span] = set()
    current_type, start = None, 0
    for index, tag in enumerate(tags):
        prefix, entity_type = _split_tag(tag)
        continues = prefix == "I" and entity_type == current_type
        if current_type is not None and not continues:
            spans.add((current_type, start, index))
            current_type = None
        if prefix != OUTSIDE and not continues:
            current_type, start = entity_type, index
    if current_type is not None:
        spans.add((current_type, start, len(tags)))
    return spans


def _check_aligned(gold_sentences: Sequence[Sequence[str]], pred_sentences: Sequence[Sequence[str]]) -> None:
    """Gold and predicted tags must pair up word by word: a silent zip would score a
    truncated prediction as if the missing words did not exist."""
    if len(gold_sentences) != len(pred_sentences):
        raise XittError(f"There are {len(gold_sentences)} gold sentences but {len(pred_sentences)} predicted ones. "
                        f"Give one predicted tag sequence per gold sentence, in the same order.")
    for index, (gold, pred) in enumerate(zip(gold_sentences, pred_sentences)):
        if len(gold) != len(pred):
            raise XittError(f"Sentence {index} has {len(gold)} gold tags but {len(pred)} predicted tags. Predict one "
                            f"tag per word; for words the model did not see (cut by truncation) predict a "
                            f"fill tag such as 'O' so that they are scored as misses.")


def entity_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    """(true positives, predicted entities, gold entities) of one sentence, exact span and
    type match."""
    _check_aligned([gold], [pred])
    gold_spans, pred_spans = iob2_spans(gold), iob2_spans(pred)
    return len(gold_spans & pred_spans), len(pred_spans), len(gold_spans)


def f1_from_counts(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Precision, recall and F1 (0-100) from summed entity counts."""
    precision = 100.0 * tp / n_pred if n_pred else 0.0
    recall = 100.0 * tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_scores(gold_sentences: Sequence[Sequence[str]],
                  pred_sentences: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro entity precision, recall and F1 (0-100) over all sentences, plus the summed
    counts `tp`, `n_pred`, `n_gold`."""
    _check_aligned(gold_sentences, pred_sentences)
    tp = n_pred = n_gold = 0
    for gold, pred in zip(gold_sentences, pred_sentences):
        sentence_tp, sentence_pred, sentence_gold = entity_counts(gold, pred)
        tp, n_pred, n_gold = tp + sentence_tp, n_pred + sentence_pred, n_gold + sentence_gold
    return {**f1_from_counts(tp, n_pred, n_gold), "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def token_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int]:
    """(correctly tagged words, words) of one sentence."""
    _check_aligned([gold], [pred])
    return sum(g == p for g, p in zip(gold, pred)), len(gold)


def accuracy_from_counts(correct: int, total: int) -> float:
    """Accuracy (0-100) from summed word counts; 0 when there are no words."""
    return 100.0 * correct / total if total else 0.0


def token_accuracy(gold_sentences: Sequence[Sequence[str]], pred_sentences: Sequence[Sequence[str]]) -> float:
    """Micro accuracy (0-100) over all words of all sentences: XTREME's POS "F1"."""
    _check_aligned(gold_sentences, pred_sentences)
    correct = total = 0
    for gold, pred in zip(gold_sentences, pred_sentences):
        sentence_correct, sentence_total = token_counts(gold, pred)
        correct, total = correct + sentence_correct, total + sentence_total
    return accuracy_from_counts(correct, total)
