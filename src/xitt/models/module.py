"""The LightningModule: an encoder, a pooled classification head, AdamW with linear
warmup and decay, and per-language macro-F1 / accuracy kept in torchmetrics objects (so
that they are reduced across DDP ranks)."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from transformers import get_linear_schedule_with_warmup

POOLINGS = ("cls", "last", "mean")


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


def wrap_layers_named(names: Sequence[str]):
    """An FSDP auto-wrap policy that makes each transformer layer its own FSDP unit, found
    by class name (`XLMRobertaLayer`, `MT5Block`, ...), so that one trainer config serves
    every model family: a unit's weights are gathered only while that layer computes."""
    import functools

    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    wanted = frozenset(names)
    return functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda module: type(module).__name__ in wanted)


def language_metrics(num_labels: int) -> MetricCollection:
    return MetricCollection({
        "f1": MulticlassF1Score(num_classes=num_labels, average="macro"),
        "accuracy": MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "n": SumMetric(),
    })


class SequenceClassifier(pl.LightningModule):
    def __init__(self, encoder: nn.Module, num_labels: int, hparams: Mapping[str, Any],
                 pooling: str = "cls", eval_langs: Sequence[str] = ()):
        super().__init__()
        self.encoder = encoder.train()  # checkpoints load in eval mode; Lightning keeps modes
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels, float(hparams["dropout"]), pooling)
        self.train_hparams = dict(hparams)
        self.eval_langs = list(eval_langs)
        self.test_metrics = nn.ModuleDict({lang: language_metrics(num_labels) for lang in self.eval_langs})
        self.loss = nn.CrossEntropyLoss()
        # `encoder_dropout` overrides the checkpoint's own dropout rates (all of them: hidden,
        # attention); 0 makes training deterministic given the data order.
        if hparams.get("encoder_dropout") is not None:
            for layer in encoder.modules():
                if isinstance(layer, nn.Dropout):
                    layer.p = float(hparams["encoder_dropout"])
        # The pooler of BERT-like checkpoints is not used: keep it out of the gradients
        # (DDP would otherwise wait for gradients that never come).
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler.requires_grad_(False)
        self.test_scores: dict[str, dict[str, float]] = {}
        self.test_predictions: dict[str, dict[str, list[int]]] = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        return self.head(states, attention_mask)

    def enable_activation_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them:
        about a third more compute for activation memory that grows with one layer, not
        all of them; what lets the XL/XXL encoders train with a useful batch per GPU."""
        self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    @staticmethod
    def _model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value for key, value in batch.items() if key not in ("labels", "row")}

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(**self._model_inputs(batch)), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].size(0))
        return loss

    def on_test_epoch_start(self) -> None:
        self._rows: dict[str, list[torch.Tensor]] = {lang: [] for lang in self.eval_langs}

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        lang = self.eval_langs[dataloader_idx]
        predictions = self(**self._model_inputs(batch)).argmax(dim=-1)
        self.test_metrics[lang]["f1"].update(predictions, batch["labels"])
        self.test_metrics[lang]["accuracy"].update(predictions, batch["labels"])
        self.test_metrics[lang]["n"].update(torch.ones_like(batch["labels"], dtype=torch.float).sum())
        self._rows[lang].append(torch.stack([batch["row"], batch["labels"], predictions], dim=1))

    def on_test_epoch_end(self) -> None:
        for lang in self.eval_langs:
            scores = self.test_metrics[lang].compute()
            self.test_scores[lang] = {
                "f1": 100 * scores["f1"].item(),
                "accuracy": 100 * scores["accuracy"].item(),
                "n": int(scores["n"].item()),
            }
            self.test_metrics[lang].reset()
            rows = torch.cat(self._rows[lang]) if self._rows[lang] else torch.zeros(0, 3, dtype=torch.long)
            self.test_predictions[lang] = self._by_row(self._gather_rows(rows))

    def _gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's (row, gold, predicted) triples. Test shards differ in size by up to
        one example (no rank repeats one), and all_gather needs equal shapes: pad with
        rows of -1, then drop them."""
        if self.trainer.world_size == 1:
            return rows
        counts = self.all_gather(torch.tensor(rows.size(0), device=self.device))
        padded = torch.full((int(counts.max()), 3), -1, dtype=torch.long, device=self.device)
        padded[: rows.size(0)] = rows
        gathered = self.all_gather(padded).reshape(-1, 3)
        return gathered[gathered[:, 0] >= 0]

    @staticmethod
    def _by_row(rows: torch.Tensor) -> dict[str, list[int]]:
        """Predictions in test-set order (a row seen twice counts once)."""
        unique: dict[int, tuple[int, int]] = {}
        for row, gold, predicted in rows.tolist():
            unique[row] = (gold, predicted)
        order = sorted(unique)
        return {"row": order, "gold": [unique[r][0] for r in order], "pred": [unique[r][1] for r in order]}

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)  # biases, norms
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": float(self.train_hparams["weight_decay"])},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=float(self.train_hparams["lr"]),
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(float(self.train_hparams["warmup_ratio"]) * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
