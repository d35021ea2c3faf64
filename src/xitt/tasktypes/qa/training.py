"""QA's torch half: windows of each question, a start and an end logit per token, and each
question's best span over all its windows in the predictions file."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from xitt.metrics import qa as qa_metrics
from xitt.models.module import EncoderModule
from xitt.tasktypes.qa.features import best_spans, qa_features
from xitt.tasktypes.rows import dev_scores_from_rows, each_language, pad_to

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions", "row")
# A window's question id, context, gold answers and the context characters of its tokens.
SCORING_COLUMNS = ("id", "context", "answers", "offsets")
GATHERS_DEV_ROWS = True
NO_OFFSET = [-1, -1]  # question, special and padding tokens of a window
dev_scores = dev_scores_from_rows


def tokenise(task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int,
             batch: dict[str, list]) -> dict[str, list]:
    """The windows of each question (a question may give several rows)."""
    examples = [{"id": id_, "question": question, "context": context, "answers": answers}
                for id_, question, context, answers in
                zip(batch["id"], batch["question"], batch["context"], batch["answers"])]
    features = qa_features(tokenizer, examples, max_length, int(task["doc_stride"]), int(task["max_query_length"]))
    rows: dict[str, list] = {key: [] for key in (*features, "offsets", "id", "context", "answers")
                             if key not in ("offset_mapping", "example_index")}
    for window, example_index in enumerate(features["example_index"]):
        # qa_features pads every window to max_length; the cache keeps the real tokens
        # only (the collator pads each batch), so that short contexts make short batches.
        real = [position for position, mask in enumerate(features["attention_mask"][window]) if mask]
        first, last = real[0], real[-1] + 1
        for key in features:
            if key not in ("offset_mapping", "example_index", "start_positions", "end_positions"):
                rows[key].append(features[key][window][first:last])
        rows["start_positions"].append(features["start_positions"][window] - first)
        rows["end_positions"].append(features["end_positions"][window] - first)
        rows["offsets"].append([list(offset) if offset is not None else NO_OFFSET
                                for offset in features["offset_mapping"][window][first:last]])
        example = examples[example_index]
        rows["id"].append(example["id"])
        rows["context"].append(example["context"])
        rows["answers"].append(example["answers"])
    return rows


def collator(tokenizer: PreTrainedTokenizerBase):
    return DataCollatorWithPadding(tokenizer)


class SpanExtractor(EncoderModule):
    """Extractive QA: a start and an end logit per token; the loss is the mean of the two
    cross-entropies (a window without the answer points both at its CLS token)."""

    def __init__(self, encoder: nn.Module, hparams: Mapping[str, Any]):
        super().__init__(encoder, hparams)
        self.max_length = int(hparams["max_length"])
        self.prediction_width = 1 + 2 * self.max_length
        self.head = nn.Linear(encoder.config.hidden_size, 2)
        self.loss = nn.CrossEntropyLoss()

    def span_logits(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.head(self.states(batch)).float().unbind(dim=-1)
        # padding can never be a start or an end
        padding = batch["attention_mask"] == 0
        return start.masked_fill(padding, -1e4), end.masked_fill(padding, -1e4)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        start, end = self.span_logits(batch)
        loss = (self.loss(start, batch["start_positions"]) + self.loss(end, batch["end_positions"])) / 2
        return self.log_loss(loss, batch)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, start logits, end logits), each padded to `max_length` (float rows: a row
        number below 2^24 is exact in float32)."""
        start, end = self.span_logits(batch)
        return torch.cat([batch["row"].unsqueeze(1).float(), pad_to(start, self.max_length, -1e4),
                          pad_to(end, self.max_length, -1e4)], dim=1)


def module(encoder: nn.Module, task: Mapping[str, Any], hparams: Mapping[str, Any], pooling: str,
           dev_langs: Sequence[str]) -> SpanExtractor:
    return SpanExtractor(encoder, hparams)


def predictions_file(task: Mapping[str, Any], lang: str, rows: np.ndarray, data: datasets.Dataset) -> dict[str, Any]:
    """Rows are windows; the answer of a question is its best span over all its windows."""
    numbers = rows[:, 0].astype(np.int64)
    length = (rows.shape[1] - 1) // 2
    window_ids, offsets, contexts, answers = data["id"], data["offsets"], data["context"], data["answers"]
    examples: dict[str, dict[str, Any]] = {}  # by question id, in the order of their first window
    for row in numbers:
        examples.setdefault(window_ids[row], {"context": contexts[row], "answers": answers[row]})
    order = list(examples)
    position = {example_id: index for index, example_id in enumerate(order)}
    features = {"example_index": [position[window_ids[row]] for row in numbers],
                "offset_mapping": [[None if offset == NO_OFFSET else tuple(offset) for offset in offsets[row]]
                                   for row in numbers]}
    predicted = best_spans(features, rows[:, 1:1 + length], rows[:, 1 + length:], [examples[i] for i in order],
                           n_best=int(task["n_best"]), max_answer_length=int(task["max_answer_length"]))
    # Scored with the language's own normalisation where MLQA defines one (xitt.metrics.qa),
    # else SQuAD's (the synthetic demo languages, TyDiQA's languages outside MLQA/XQuAD).
    return {"task_type": "qa", "lang": lang if lang in qa_metrics.LANGUAGES else None, "ids": order,
            "gold": [examples[i]["answers"]["text"] for i in order], "pred": predicted}


def predictions_files(task: Mapping[str, Any], langs: Sequence[str], rows: Mapping[str, np.ndarray],
                      data: Mapping[str, datasets.Dataset]) -> dict[str, dict[str, Any]]:
    return each_language(predictions_file, task, langs, rows, data)
