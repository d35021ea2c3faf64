"""The LightningModules, one per task type, sharing the encoder set-up and AdamW with
linear warmup and decay (`EncoderModule`): sentence classification (a pooled head), token
classification (a label per token) and extractive QA (start and end logits). Evaluation
goes through Lightning's prediction loop (`predict_step`): the pipeline gathers the
predictions of every rank and scores them with `xitt.metrics`. Validation (model selection,
`xitt.stages.selection`) counts a classifier's development predictions in torchmetrics
objects the module holds; tagging and QA predict the development set as the test sets."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import MixedPrecision
import torch
from torch import nn
from torchmetrics import MetricCollection
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


class NonFiniteLoss(Exception):
    """A training step's loss was NaN or infinite (`EncoderModule.check_loss`): the model
    diverged. The pipeline turns it into the stage's message, with what to try."""

    def __init__(self, step: int | None, loss: float | None, lr: float | None, epoch: int):
        super().__init__(f"training loss {loss} at global step {step} (epoch {epoch}, learning rate {lr})")
        self.step, self.loss, self.lr, self.epoch = step, loss, lr, epoch


class EncoderModule(pl.LightningModule):
    """What every head shares: the encoder (its dropout set from the hyper-parameters),
    activation checkpointing, and the optimizer and schedule. A subclass adds its `head`,
    `training_step`, `predict_step` and `prediction_width` (the columns of one example's
    row of predictions, the example's row number first, so that rows of every rank and
    batch can be gathered into one array)."""

    prediction_width: int

    def __init__(self, encoder: nn.Module, hparams: Mapping[str, Any]):
        super().__init__()
        self.encoder = encoder.train()  # checkpoints load in eval mode; Lightning keeps modes
        self.train_hparams = dict(hparams)
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
        # The first training step whose loss was NaN or infinite, and that loss, kept on the
        # device (`watch_loss`); the learning rate of each step since the last check.
        self._nonfinite_step: torch.Tensor | None = None
        self._nonfinite_loss: torch.Tensor | None = None
        self._recent_lrs: dict[int, float] = {}

    def states(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's last hidden states of a batch (the targets and row numbers left out)."""
        inputs = {key: value for key, value in batch.items() if key not in NOT_MODEL_INPUTS}
        return self.encoder(**inputs).last_hidden_state

    def enable_activation_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them:
        about a third more compute for activation memory that grows with one layer, not
        all of them; what lets the XL/XXL encoders train with a useful batch per GPU."""
        self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> torch.Tensor:
        """Tagging and QA: the development set is predicted as the test sets are, and
        `xitt.stages.selection` scores the gathered rows with xitt's own scorers (entity F1
        and SQuAD F1 need each example's words and character offsets, which the rows are
        matched with). Classification counts its predictions in torchmetrics instead
        (`SequenceClassifier.validation_step`)."""
        return self.predict_step(batch, batch_idx, dataloader_idx)

    def log_loss(self, loss: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # Not on the progress bar: it would read the loss back from the device at every step
        # (a host synchronisation); the logger reads it every `log_every_n_steps` only.
        self.log("train/loss", loss, batch_size=batch["input_ids"].size(0))
        self.watch_loss(loss)
        return loss

    def watch_loss(self, loss: torch.Tensor) -> None:
        """Note the first global step whose loss is NaN or infinite, without reading the
        loss back to the host: two device scalars updated by `torch.where` (the step goes in
        as a kernel argument, not a copy), read by `check_loss`."""
        step = self.trainer.global_step
        self._recent_lrs.setdefault(step, float(self.trainer.optimizers[0].param_groups[0]["lr"]))
        loss = loss.detach().float()
        if self._nonfinite_step is None:
            self._nonfinite_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._nonfinite_loss = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self._nonfinite_step < 0)
        self._nonfinite_step = torch.where(first, step, self._nonfinite_step)
        self._nonfinite_loss = torch.where(first, loss, self._nonfinite_loss)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Reading the note back is a host synchronisation (on a GPU it waits for every queued
        # kernel), so it is read as often as the logger reads the loss anyway, every
        # `log_every_n_steps` batches, and at the last batch of each epoch: before the
        # epoch's validation, checkpoint and model selection can keep a diverged model.
        if (batch_idx + 1) % max(int(self.trainer.log_every_n_steps), 1) == 0 or self.trainer.is_last_batch:
            self.check_loss()

    def check_loss(self) -> None:
        """Raise `NonFiniteLoss` when a step's loss was NaN or infinite on any rank (a
        collective: every rank checks at the same batches)."""
        step = -1 if self._nonfinite_step is None else int(self._nonfinite_step)
        lrs, self._recent_lrs = self._recent_lrs, {}
        if self.trainer.strategy.reduce_boolean_decision(step >= 0, all=False):
            if step < 0:  # another rank's loss (its gradients, shared, break this rank's weights too)
                raise NonFiniteLoss(None, None, None, self.trainer.current_epoch + 1)
            raise NonFiniteLoss(step, float(self._nonfinite_loss), lrs.get(step), self.trainer.current_epoch + 1)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (it
        assumes a float16 gradient scaler). bfloat16 autocast has no scaler, so there the
        gradients are clipped as they are; every other case goes through Lightning."""
        if (gradient_clip_val and type(self.trainer.precision_plugin) is MixedPrecision
                and str(self.trainer.precision) == "bf16-mixed"):
            parameters = [p for p in self.parameters() if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 else decay).append(parameter)  # biases, norms
        # fused: one kernel for all parameters instead of a loop over them (about 30% of a
        # small encoder's step time on CPU). Not under float16 mixed precision, where
        # Lightning's gradient scaler must unscale before clipping and a fused step would.
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": float(self.train_hparams["weight_decay"])},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=float(self.train_hparams["lr"]), fused=str(self.trainer.precision) != "16-mixed",
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(float(self.train_hparams["warmup_ratio"]) * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# Batch entries that are targets or bookkeeping, not encoder inputs.
NOT_MODEL_INPUTS = ("labels", "row", "start_positions", "end_positions")


def _pad_to(values: torch.Tensor, length: int, fill: float) -> torch.Tensor:
    """`values` (batch, L) padded on the right to (batch, length): every batch's rows get
    the same width, whatever its own padded length."""
    return nn.functional.pad(values, (0, length - values.size(1)), value=fill)


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


class TokenTagger(EncoderModule):
    """One label per word (NER, POS): a linear layer over every token's state. The data
    label only each word's first sub-word; every other position is -100, which the loss
    ignores (xitt.data.f1_features.tag_features)."""

    def __init__(self, encoder: nn.Module, num_labels: int, hparams: Mapping[str, Any]):
        super().__init__(encoder, hparams)
        self.max_length = int(hparams["max_length"])
        self.prediction_width = 1 + self.max_length
        self.head = nn.Sequential(nn.Dropout(float(hparams["dropout"])),
                                  nn.Linear(encoder.config.hidden_size, num_labels))
        self.loss = nn.CrossEntropyLoss(ignore_index=-100)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.states(batch))

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.logits(batch)
        return self.log_loss(self.loss(logits.flatten(0, 1), batch["labels"].flatten()), batch)

    def predict_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """(row, predicted label of each token position, -1 beyond the batch's length)."""
        predictions = _pad_to(self.logits(batch).argmax(dim=-1), self.max_length, -1)
        return torch.cat([batch["row"].unsqueeze(1), predictions], dim=1)


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
        return torch.cat([batch["row"].unsqueeze(1).float(), _pad_to(start, self.max_length, -1e4),
                          _pad_to(end, self.max_length, -1e4)], dim=1)
