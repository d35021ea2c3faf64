"""Model inputs for extractive QA, and the way back from start and end logits to answers.

Torch-free: these functions take a Hugging Face *fast* tokenizer (they need its
`sequence_ids()` and character offsets) and return plain Python lists.

SQuAD-style windows. A context longer than the room left after the question is cut into
overlapping windows (the question repeated in each); `doc_stride` is the number of context
tokens two consecutive windows share (Hugging Face's `stride`, not the step of the original
BERT script). Each window's answer label is the (start, end) token of the first gold answer
when the whole answer lies in the window's context, else the index of the CLS token
(position 0 where the tokenizer has no CLS).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from xitt import XittError
from xitt.tasktypes.base import check_fast_tokenizer


def _truncated_question(tokenizer: Any, question: str, max_query_length: int) -> str:
    """The question cut to its first `max_query_length` tokens, cut on a character offset
    so that re-tokenising it gives those tokens again. Leading whitespace is dropped:
    some SQuAD-style questions start with many spaces, which waste the window's room."""
    question = question.lstrip()
    encoding = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    if len(offsets) <= max_query_length:
        return question
    return question[:offsets[max_query_length - 1][1]]


def qa_features(tokenizer: Any, examples: Sequence[dict[str, Any]], max_length: int, doc_stride: int,
                max_query_length: int) -> dict[str, list]:
    """SQuAD-style windows: question first, context second, truncating only the context.

    `examples` are dicts as `read_squad_json` returns them ("question", "context",
    "answers" with "text" and "answer_start"). Returns a dict of lists, one entry per
    window, padded to `max_length`:

    * "input_ids", "attention_mask" (and "token_type_ids" when the tokenizer makes them);
    * "start_positions", "end_positions": the answer's first and last token in this
      window, or the CLS index when the first gold answer is not entirely inside the
      window's context (or the example has no answer);
    * "example_index": the position in `examples` of the example the window comes from;
    * "offset_mapping": per token, its (start, end) characters in the context for context
      tokens, None for question, special and padding tokens (so a span can only be read
      from the context).
    """
    check_fast_tokenizer(tokenizer)
    questions = [_truncated_question(tokenizer, example["question"], max_query_length) for example in examples]
    contexts = [example["context"] for example in examples]
    special = tokenizer.num_special_tokens_to_add(pair=True)
    for example, question in zip(examples, questions):
        room = max_length - special - len(tokenizer(question, add_special_tokens=False)["input_ids"])
        # The tokenizer needs strictly more context room than overlap, or it cannot advance
        # (the Rust side panics rather than raising).
        if room <= doc_stride:
            raise XittError(f"Question {example.get('id', '?')!r} leaves {room} tokens of context room in a window "
                            f"of max_length={max_length}, but doc_stride={doc_stride} tokens must overlap between "
                            f"windows, which needs more room than that. Lower doc_stride (a quarter of max_length "
                            f"is usual) or max_query_length, or raise max_length.")
    encoding = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=doc_stride,
                         return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    features: dict[str, list] = {key: list(encoding[key]) for key in encoding.keys()
                                 if key not in ("offset_mapping", "overflow_to_sample_mapping")}
    features.update(start_positions=[], end_positions=[], example_index=[], offset_mapping=[])
    for window, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
        sequence_ids = encoding.sequence_ids(window)
        offsets = [tuple(offset) if sequence == 1 else None
                   for offset, sequence in zip(encoding["offset_mapping"][window], sequence_ids)]
        input_ids = encoding["input_ids"][window]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        start, end = _answer_tokens(examples[example_index], offsets)
        features["start_positions"].append(cls_index if start is None else start)
        features["end_positions"].append(cls_index if end is None else end)
        features["example_index"].append(example_index)
        features["offset_mapping"].append(offsets)
    return features


def _answer_tokens(example: dict[str, Any], offsets: list[tuple[int, int] | None]) -> tuple[int | None, int | None]:
    """The first and last context token of the example's first gold answer, or
    (None, None) when the answer is not entirely inside this window's context."""
    answers = example.get("answers") or {"text": [], "answer_start": []}
    if not answers["text"]:
        return None, None
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [position for position, offset in enumerate(offsets) if offset is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return None, None
    # The start token is the last one that begins at or before the answer's first
    # character, the end token the first one from there that reaches its last character;
    # a token that overlaps the answer only partly is included, so the span covers it.
    start = max(position for position in context if offsets[position][0] <= start_char)
    end = min(position for position in context if position >= start and offsets[position][1] >= end_char)
    return start, end


def best_spans(features: dict[str, list], start_logits: Any, end_logits: Any, examples: Sequence[dict[str, Any]],
               n_best: int = 20, max_answer_length: int = 30) -> list[str]:
    """The predicted answer text of each example, read from the context characters.

    Over all windows of an example, the candidates are pairs of one of the `n_best`
    highest-scoring context tokens as start and one of the `n_best` highest as end (both
    inside the context, start <= end, at most `max_answer_length` tokens); the answer is
    the pair with the largest start + end logit, returned as
    `context[offset[start].start : offset[end].end]`, so it is the original text with its
    own spacing and case. "" when no window has a valid pair. Ties go to the earlier
    window and the higher-ranked start.

    `start_logits` and `end_logits` are arrays (or nested lists) of shape
    (windows, max_length), in the order of `features`."""
    start_logits, end_logits = np.asarray(start_logits, dtype=float), np.asarray(end_logits, dtype=float)
    n_windows = len(features["example_index"])
    if start_logits.shape != end_logits.shape or start_logits.ndim != 2 or start_logits.shape[0] != n_windows:
        raise XittError(f"best_spans got start logits of shape {start_logits.shape} and end logits of shape "
                        f"{end_logits.shape} for {n_windows} windows. Give one row of logits per window, in the "
                        f"order of the features, each as long as the window's input_ids.")
    windows_of: dict[int, list[int]] = {}
    for window, example_index in enumerate(features["example_index"]):
        windows_of.setdefault(example_index, []).append(window)

    answers = []
    for example_index, example in enumerate(examples):
        best_score, best_text = -np.inf, ""
        for window in windows_of.get(example_index, []):
            offsets = features["offset_mapping"][window]
            context = np.array([position for position, offset in enumerate(offsets) if offset is not None], dtype=int)
            if context.size == 0:
                continue
            starts = _top(start_logits[window], context, n_best)
            ends = _top(end_logits[window], context, n_best)
            for start in starts:
                for end in ends:
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    score = start_logits[window, start] + end_logits[window, end]
                    if score > best_score:
                        best_score = score
                        # stripped: tokenizers whose tokens carry their leading space
                        # (Metaspace "▁word") give offsets that include it
                        best_text = example["context"][offsets[start][0]:offsets[end][1]].strip()
        answers.append(best_text)
    return answers


def _top(logits: np.ndarray, positions: np.ndarray, n: int) -> list[int]:
    """The `n` positions (among `positions`) with the highest logits, best first; a stable
    sort keeps equal logits in text order."""
    order = np.argsort(-logits[positions], kind="stable")[:n]
    return [int(position) for position in positions[order]]
