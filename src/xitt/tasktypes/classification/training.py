"""Classification's torch half: tokenised rows, the pooled head and its module, the
predictions file, and development scores counted in torchmetrics (summed over the ranks)."""

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from xitt.models.module import EncoderModule
from xitt.tasktypes.classification import POOLINGS
from xitt.tasktypes.rows import each_language

# What the model sees of a row (the target is renamed `labels` by the collator), and what is
# kept beside it for scoring.
MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "label", "row")
SCORING_COLUMNS = ("id",)
# Its development predictions are counted by the module's torchmetrics objects, not gathered.
GATHERS_DEV_ROWS = False


def tokenise(task: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int,
             batch: dict[str, list]) -> dict[str, list]:
    texts = [batch[field] for field in task["text_fields"]]
    encoded = tokenizer(*texts, truncation=True, max_length=max_length)
    return {**encoded, "label": batch["label"], "id": batch["id"]}


def collator(tokenizer: PreTrainedTokenizerBase):
    return DataCollatorWithPadding(tokenizer)


class ClassificationHead(nn.Module):
    """Pool the encoder's states (first token, last real token, or mean), then
    dropout-dense-tanh-dropout-linear as in RoBERTa's head."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, num_labels)

    def pool(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        if self.pooling == "mean":
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        # last real token, wherever the padding is (XLNet pads on the left)
        positions = torch.arange(states.size(1), device=states.device).expand_as(attention_mask)
        last = (positions * attention_mask).argmax(dim=1)
        return states[torch.arange(states.size(0), device=states.device), last]

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.dropout(self.pool(states, attention_mask))
        return self.out(self.dropout(torch.tanh(self.dense(pooled))))


def dev_metrics(num_labels: int) -> MetricCollection:
    """A classifier's development scores (model selection): macro-F1 and accuracy. torchmetrics
    counts each rank's predictions and sums the counts over the ranks when it computes, so
    every rank scores the whole development set. Its macro-F1 leaves a class that is neither
    a gold label nor a prediction out of the mean (torchmetrics >= 1.4), as
    `xitt.metrics.classification.macro_f1` (the test records' F1, scikit-learn's default)
    does; the two agree up to float32 rounding (tests/test_metric_crosscheck.py)."""
    return MetricCollection({"f1": MulticlassF1Score(num_labels, average="macro"),
                             "accuracy": MulticlassAccuracy(num_labels, average="micro")})


class SequenceClassifier(EncoderModule):
    """One label per text (pair): a pooled classification head."""

    prediction_width = 3

    def __init__(self, encoder: nn.Module, num_labels: int, hparams: Mapping[str, Any],
                 pooling: str = "cls", dev_langs: Sequence[str] = ()):
        super().__init__(encoder, hparams)
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels, float(hparams["dropout"]), pooling)
        self.loss = nn.CrossEntropyLoss()
        # One set of development metrics per development language, in the order of the
        # validation loaders; the counts are not part of the weights.
        self.dev_langs = tuple(dev_langs)
        self.dev_metrics = nn.ModuleList(dev_metrics(num_labels) for _ in self.dev_langs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        return self.head(states, attention_mask)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.states(batch), batch["attention_mask"])

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.log_loss(self.loss(self.logits(batch), batch["labels"]), batch)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, gold, predicted) per example of the batch."""
        predictions = self.logits(batch).argmax(dim=-1)
        return torch.stack([batch["row"], batch["labels"], predictions], dim=1)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """The batch's predictions counted into its development language's metrics."""
        self.dev_metrics[dataloader_idx].update(self.logits(batch).argmax(dim=-1), batch["labels"])

    def dev_scores(self) -> dict[str, dict[str, float]]:
        """Each development language's macro-F1 and accuracy (0-100) over the validation just
        run, from the counts of every rank (a collective: every rank calls it), then reset
        for the next validation."""
        scores = {}
        for lang, metrics in zip(self.dev_langs, self.dev_metrics):
            scores[lang] = {name: 100.0 * float(value) for name, value in metrics.compute().items()}
            metrics.reset()
        return scores


def module(encoder: nn.Module, task: Mapping[str, Any], hparams: Mapping[str, Any], pooling: str,
           dev_langs: Sequence[str]) -> SequenceClassifier:
    return SequenceClassifier(encoder, len(task["labels"]), hparams, pooling, dev_langs=dev_langs)


def predictions_file(task: Mapping[str, Any], lang: str, rows: np.ndarray, data: datasets.Dataset) -> dict[str, Any]:
    """(row, gold, predicted) rows as a predictions file."""
    ids = data["id"]
    return {"ids": [ids[row] for row in rows[:, 0].astype(np.int64)], "gold": rows[:, 1].tolist(),
            "pred": rows[:, 2].tolist(), "labels": list(task["labels"])}


def class_multisets(trainer: pl.Trainer, f1: MulticlassF1Score, task: Mapping[str, Any]) -> dict[str, Any]:
    """The gold and the predicted classes of a validation (every rank's, from the counts of
    the module's macro-F1: gold = tp + fn, predicted = tp + fp per class), as a predictions
    file's `gold` and `pred` lists for the degenerate check, which reads which classes occur
    and how often, not which example had which."""
    counts = trainer.strategy.reduce(torch.stack([f1.tp + f1.fn, f1.tp + f1.fp]), reduce_op="sum").cpu()
    classes = torch.arange(counts.size(1))
    return {"gold": classes.repeat_interleave(counts[0]).tolist(), "pred": classes.repeat_interleave(counts[1]).tolist(),
            "labels": list(task["labels"])}


def dev_scores(trainer: pl.Trainer, pl_module: SequenceClassifier, task: Mapping[str, Any], langs: Sequence[str],
               gathered: Mapping[int, list], dev_data: Mapping[str, datasets.Dataset]) -> tuple[dict, list[str]]:
    """Each development language's scores from the module's counts, and what the degenerate
    check saw (before `dev_scores`, which resets the counts)."""
    from xitt.tasktypes import degenerate_predictions

    seen = [seen for lang, metrics in zip(langs, pl_module.dev_metrics)
            if (seen := degenerate_predictions(class_multisets(trainer, metrics["f1"], task), "development", lang))]
    return pl_module.dev_scores(), seen


def predictions_files(task: Mapping[str, Any], langs: Sequence[str], rows: Mapping[str, np.ndarray],
                      data: Mapping[str, datasets.Dataset]) -> dict[str, dict[str, Any]]:
    return each_language(predictions_file, task, langs, rows, data)
