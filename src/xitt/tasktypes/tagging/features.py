"""Model inputs for tagging, and the way back from model outputs to one tag per word.

Torch-free: these functions take a Hugging Face *fast* tokenizer (they need its
`word_ids()`) and return plain Python lists, so a DataModule can wrap them in tensors and a
report can reuse them without torch.

Only the first sub-word of each word carries the word's label; every other position (later
sub-words, special tokens) gets -100, the index the loss ignores. Words are found with
`word_ids()`, not by looking for a leading-space marker ("▁" in sentencepiece, the absence
of "##" in WordPiece), so the same code is right for both kinds. A sentence longer than
`max_length` is truncated: its last words get no label and no prediction, and `word_tags`
fills them in so that scoring counts them (as misses).
"""

from collections.abc import Sequence
from typing import Any

from xitt import XittError
from xitt.tasktypes.base import check_fast_tokenizer

IGNORE_INDEX = -100
SPACE_MARKER = "▁"  # sentencepiece's word-start marker, as a token of its own


def tag_features(tokenizer: Any, examples: Sequence[dict[str, Any]], label_list: Sequence[str],
                 max_length: int) -> dict[str, list]:
    """Tokenise pre-split words and label the first sub-word of each word.

    `examples` are dicts with "tokens" (words) and, for labelled data, "tags" (one per
    word; without "tags" every label is -100). Returns a dict of lists, one entry per
    example, unpadded (a collator pads a batch):

    * "input_ids", "attention_mask" (and "token_type_ids" when the tokenizer makes them);
    * "labels": the index of the word's tag in `label_list` at each word's first sub-word,
      -100 elsewhere;
    * "word_positions": per word, the position of its first sub-word (not counting a bare
      "▁" piece, which carries no part of the word), or -1 when the word has none (cut by truncation, or a word the tokenizer turns into no token at all);
    * "n_words": how many leading words survived truncation (the last word with a token,
      plus one); the words after them were cut.
    """
    check_fast_tokenizer(tokenizer)
    label_index = {label: index for index, label in enumerate(label_list)}
    encoding = tokenizer([list(example["tokens"]) for example in examples], is_split_into_words=True,
                         truncation=True, max_length=max_length)
    features: dict[str, list] = {key: list(values) for key, values in encoding.items()}
    features.update(labels=[], word_positions=[], n_words=[])
    for number, example in enumerate(examples):
        tags = example.get("tags")
        positions = [-1] * len(example["tokens"])
        word_ids, pieces = encoding.word_ids(number), encoding.tokens(number)
        for position, word in enumerate(word_ids):
            # A word's sub-words are consecutive, so a new word id marks a first sub-word;
            # but a sentencepiece tokenizer puts a bare "▁" before a word that has no
            # piece starting with the marker (XLM-R before most Chinese and Japanese
            # words): the word's first real sub-word is the one after it.
            if word is None:
                continue
            first = positions[word]
            if first < 0 or (position == first + 1 and pieces[first] == SPACE_MARKER):
                positions[word] = position
        labels = [IGNORE_INDEX] * len(word_ids)
        if tags is not None:
            for word, position in enumerate(positions):
                if position >= 0:
                    labels[position] = _tag_index(tags[word], label_index, example)
        kept = [word for word, position in enumerate(positions) if position >= 0]
        features["labels"].append(labels)
        features["word_positions"].append(positions)
        features["n_words"].append(kept[-1] + 1 if kept else 0)
    return features


def _tag_index(tag: str, label_index: dict[str, int], example: dict[str, Any]) -> int:
    if tag not in label_index:
        raise XittError(f"The tag {tag!r} of example {example.get('id', '?')!r} is not in the task's label list "
                        f"{list(label_index)}. Add it to the label list, or check that the file belongs to this task.")
    return label_index[tag]


def word_tags(word_positions: Sequence[int], token_predictions: Sequence[int], label_list: Sequence[str],
              fill: str) -> list[str]:
    """One predicted tag per word of one example: the prediction at the word's first
    sub-word, or `fill` for a word without one (cut by truncation). Use fill="O" for NER
    (a cut entity is then a miss) and a tag outside the tag set for POS (a cut word is then
    wrong), so that truncation lowers the score instead of shrinking the test set."""
    return [label_list[int(token_predictions[position])] if position >= 0 else fill
            for position in word_positions]
