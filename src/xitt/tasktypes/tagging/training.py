"""Tagging's torch half: first-sub-word labels, a linear tagger over every token's state,
and one predicted tag per word in the predictions file."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from xitt.models.module import EncoderModule
from xitt.tasktypes.rows import dev_scores_from_rows, each_language, pad_to
from xitt.tasktypes.tagging import ENTITY_F1
from xitt.tasktypes.tagging.features import IGNORE_INDEX, tag_features, word_tags

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "row")
# A sentence's gold tags and where its words start, for the predictions file.
SCORING_COLUMNS = ("id", "tags", "word_positions")
GATHERS_DEV_ROWS = True
dev_scores = dev_scores_from_rows


def tokenise(task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int,
             batch: dict[str, list]) -> dict[str, list]:
    examples = [{"id": id_, "tokens": tokens, "tags": tags}
                for id_, tokens, tags in zip(batch["id"], batch["tokens"], batch["tags"])]
    features = tag_features(tokenizer, examples, task["labels"], max_length)
    features.pop("n_words")
    return {**features, "id": batch["id"], "tags": batch["tags"]}


def collator(tokenizer: PreTrainedTokenizerBase):
    """Per-token labels are padded with -100 (ignored by the loss)."""
    return DataCollatorForTokenClassification(tokenizer)


class TokenTagger(EncoderModule):
    """One label per word (NER, POS): a linear layer over every token's state. The data
    label only each word's first sub-word; every other position is -100, which the loss
    ignores (`features.tag_features`)."""

    def __init__(self, encoder: nn.Module, num_labels: int, hparams: Mapping[str, Any]):
        super().__init__(encoder, hparams)
        self.max_length = int(hparams["max_length"])
        self.prediction_width = 1 + self.max_length
        self.head = nn.Sequential(nn.Dropout(float(hparams["dropout"])),
                                  nn.Linear(encoder.config.hidden_size, num_labels))
        self.loss = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.states(batch))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.logits(batch)
        return self.log_loss(self.loss(logits.flatten(0, 1), batch["labels"].flatten()), batch)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, predicted label of each token position, -1 beyond the batch's length)."""
        predictions = pad_to(self.logits(batch).argmax(dim=-1), self.max_length, -1)
        return torch.cat([batch["row"].unsqueeze(1), predictions], dim=1)


def module(encoder: nn.Module, task: Mapping[str, Any], hparams: Mapping[str, Any], pooling: str,
           dev_langs: Sequence[str]) -> TokenTagger:
    return TokenTagger(encoder, len(task["labels"]), hparams)


def predictions_file(task: Mapping[str, Any], lang: str, rows: np.ndarray, data: datasets.Dataset) -> dict[str, Any]:
    """One predicted tag per word. A word cut by truncation counts as a miss: no entity ("O")
    for NER, a tag outside the tag set for POS."""
    labels = list(task["labels"])
    fill = "O" if task["metric"] == ENTITY_F1 else "_"
    numbers = rows[:, 0].astype(np.int64)
    ids, tags, positions = data["id"], data["tags"], data["word_positions"]
    return {"task_type": "tagging", "metric": task["metric"], "labels": labels,
            "ids": [ids[row] for row in numbers], "gold": [tags[row] for row in numbers],
            "pred": [word_tags(positions[row], predictions, labels, fill)
                     for row, predictions in zip(numbers, rows[:, 1:])]}


def predictions_files(task: Mapping[str, Any], langs: Sequence[str], rows: Mapping[str, np.ndarray],
                      data: Mapping[str, datasets.Dataset]) -> dict[str, dict[str, Any]]:
    return each_language(predictions_file, task, langs, rows, data)
