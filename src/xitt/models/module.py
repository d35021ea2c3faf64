"""The LightningModule: an encoder, a pooled classification head, AdamW with linear warmup
and decay. Evaluation goes through Lightning's prediction loop (`predict_step`): the
pipeline gathers the predictions of every rank and scores them with `xitt.metrics`."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
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


class SequenceClassifier(pl.LightningModule):
    def __init__(self, encoder: nn.Module, num_labels: int, hparams: Mapping[str, Any],
                 pooling: str = "cls"):
        super().__init__()
        self.encoder = encoder.train()  # checkpoints load in eval mode; Lightning keeps modes
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels, float(hparams["dropout"]), pooling)
        self.train_hparams = dict(hparams)
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

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, gold, predicted) per example of the batch."""
        predictions = self(**self._model_inputs(batch)).argmax(dim=-1)
        return torch.stack([batch["row"], batch["labels"], predictions], dim=1)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)  # biases, norms
        # fused: one kernel for all parameters instead of a loop over them (about 30% of a
        # small encoder's step time on CPU).
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": float(self.train_hparams["weight_decay"])},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=float(self.train_hparams["lr"]), fused=True,
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(float(self.train_hparams["warmup_ratio"]) * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
