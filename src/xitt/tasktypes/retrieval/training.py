"""Retrieval's torch half: sentences tokenised with the task's prefix, the embedding module
(the mean of one layer's token states over the real tokens, as XTREME embeds sentences), and
the predictions files, scored by `protocol` from every language's embeddings and the English
side's, embedded once per evaluation."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from xitt import XittError
from xitt.models.module import ENCODER_INPUTS, EncoderModule
from xitt.tasktypes.retrieval import OWN, PIVOT, settings
from xitt.tasktypes.retrieval.protocol import Side, score_language

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "row")
SCORING_COLUMNS = ("id", "text", "group", "side")
GATHERS_DEV_ROWS = False  # nothing is trained, so nothing is validated


def tokenise(task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int,
             batch: dict[str, list]) -> dict[str, list]:
    prefix = settings(task)["prefix"]
    encoded = tokenizer([prefix + text for text in batch["text"]], truncation=True, max_length=max_length)
    return {**encoded, **{column: batch[column] for column in SCORING_COLUMNS}}


def collator(tokenizer: PreTrainedTokenizerBase):
    return DataCollatorWithPadding(tokenizer)


def layer_index(layer: str | int, layers: int) -> int:
    """The hidden-states index of a `retrieval.layer` setting (0 is the embeddings' output):
    `last` = layers, `middle` = layers // 2 + 1 (XTREME's layer 7 of XLM-R base's 12), a
    number = itself."""
    index = layers if layer == "last" else layers // 2 + 1 if layer == "middle" else int(layer)
    if not 1 <= index <= layers:
        raise XittError(f"`target.retrieval.layer={layer}` asks for layer {index}, but the encoder has {layers} "
                        f"layers. Use `last`, `middle` or a number from 1 to {layers}.")
    return index


class SentenceEmbedder(EncoderModule):
    """A sentence's embedding: the mean over its real tokens of the states that one layer
    outputs. Evaluation only: it has no head and trains nothing."""

    def __init__(self, encoder: nn.Module, layer: str | int, hparams: Mapping[str, Any]):
        super().__init__(encoder, hparams)
        config = encoder.config
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers")
        self.layer = layer_index(layer, int(layers))
        self.prediction_width = 1 + int(getattr(config, "hidden_size", None) or config.d_model)

    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: value for key, value in batch.items() if key in ENCODER_INPUTS}
        states = self.encoder(**inputs, output_hidden_states=True).hidden_states[self.layer]
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, embedding...) per sentence, in float32 whatever the precision."""
        return torch.cat([batch["row"].unsqueeze(1).float(), self.embed(batch).float()], dim=1)


def module(encoder: nn.Module, task: Mapping[str, Any], hparams: Mapping[str, Any], pooling: str,
           dev_langs: Sequence[str]) -> SentenceEmbedder:
    return SentenceEmbedder(encoder, settings(task)["layer"], hparams)


def side(lang: str, rows: np.ndarray, data: datasets.Dataset, which: str = OWN) -> Side:
    """A language's embedded sentences of one side (the rows, by their row number in `data`)."""
    ids, groups, texts, sides = data["id"], data["group"], data["text"], data["side"]
    rows = rows[np.array([sides[n] == which for n in rows[:, 0].astype(np.int64)], dtype=bool).reshape(-1)]
    numbers = rows[:, 0].astype(np.int64)
    return Side(lang, [ids[n] for n in numbers], [groups[n] for n in numbers], [texts[n] for n in numbers],
                rows[:, 1:].astype(np.float32))


def predictions_files(task: Mapping[str, Any], langs: Sequence[str], rows: Mapping[str, np.ndarray],
                      data: Mapping[str, datasets.Dataset]) -> dict[str, dict[str, Any]]:
    """Each scored language's predictions file, against the English side: the `pivot_lang`
    files' (embedded once for every language), or the language's own English rows."""
    pivot = task["pivot_lang"]
    with_pivot = bool(settings(task)["pivot_sentence"])
    english = None if with_pivot else side(pivot, rows[pivot], data[pivot])
    return {lang: {"task_type": "retrieval", "lang": lang, "pivot_lang": pivot,
                   **score_language(task, side(lang, rows[lang], data[lang]),
                                    side(pivot, rows[lang], data[lang], PIVOT) if with_pivot else english)}
            for lang in langs}


def dev_scores(*_: Any) -> tuple[dict, list[str]]:
    raise XittError("A retrieval task trains nothing, so it has no development scores.")
