"""What the LightningModule of every task type shares (`EncoderModule`): the encoder set-up,
the non-finite-loss watch, and AdamW with linear warmup and decay. Each type's module and
head are its unit's (`xitt.tasktypes.<type>.training`). Evaluation goes through Lightning's
prediction loop (`predict_step`): the pipeline gathers the predictions of every rank and
scores them through the type. Validation (model selection, `xitt.stages.selection`) is the
type's too: a classifier counts its development predictions in torchmetrics objects, tagging
and QA predict the development set as the test sets."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.plugins.precision import MixedPrecision
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

# The batch entries the encoder reads (the others are the type's targets and the row number).
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
        inputs = {key: value for key, value in batch.items() if key in ENCODER_INPUTS}
        return self.encoder(**inputs).last_hidden_state

    def enable_activation_checkpointing(self) -> None:
        """Recompute each layer's activations in the backward pass instead of keeping them:
        about a third more compute for activation memory that grows with one layer, not
        all of them; what lets the XL/XXL encoders train with a useful batch per GPU."""
        if hasattr(self.encoder, "activation_checkpointing_enable"):  # its name since transformers 5.x
            self.encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
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
