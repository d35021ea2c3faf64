"""Model selection on the development set: a training stage scores its task's development
split after every `selection.every_n_epochs` epochs, with the task's own metric (the F1 of
the test records), logs its primary score as `val/<primary>` (`val/f1` for the F1 types),
and stores the best-scoring model (`best`, by
Lightning's `ModelCheckpoint`) or the last one (`last`); `selection.patience` stops
training early (Lightning's `EarlyStopping`). The development languages are the stage's
(`Stage.dev_langs`): English for zero-shot and few-shot targets, never a target language.

How the development set is scored is the task type's (`dev_scores` of
`xitt.tasktypes.<type>.training`): classification's macro-F1 and accuracy are torchmetrics
objects of the module, which torchmetrics sums over the ranks; tagging and QA gather their
prediction rows from every rank (`GATHERS_DEV_ROWS`) and score them as the test sets are.
Either way `DevScore` logs the one value that the curve, `ModelCheckpoint` and
`EarlyStopping` read.

The callbacks' state (the curve, the best score and its checkpoint, early stopping's
count) is part of the stage's preemption checkpoint, so a resumed stage selects as an
uninterrupted one would.
"""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from xitt.core.cell import Stage
from xitt.core.taskspec import dev_split
from xitt.data.datamodule import TaskDataModule
from xitt.tasktypes import task_type

SELECTION_FOLDER = "selection"  # in the stage's work folder: the best model's checkpoint


class DevScore(pl.Callback):
    """Scores the development set at the end of each validation, per language as the test
    sets are scored, logs each score's mean over the languages as `val/<score>` (the type's
    primary score is the monitored one; `val/<score>/<lang>` too when there are several
    languages), and keeps the primary score as the stage's validation curve."""

    def __init__(self, task: dict[str, Any], data: TaskDataModule, langs: tuple[str, ...]):
        self.task, self.data, self.langs = task, data, langs
        self.training = task_type(task).training
        self.primary = task_type(task).primary_for(task)
        self.curve: list[dict[str, Any]] = []
        self._rows: dict[int, list[torch.Tensor]] = {}
        # What the task type's degenerate check (`xitt.tasktypes`) saw in the last validation's predictions.
        self.seen: list[str] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = {index: [] for index in range(len(self.langs))}

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.training.GATHERS_DEV_ROWS:
            self._rows[dataloader_idx].append(outputs.detach())

    def scores(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, dict[str, float]]:
        """Each development language's scores (0-100; every rank takes part and gets the same),
        and what the degenerate check saw in them (`seen`)."""
        scores, self.seen = self.training.dev_scores(trainer, pl_module, self.task, self.langs, self._rows,
                                                     self.data.dev_data)
        return scores

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = self.scores(trainer, pl_module)
        self._rows = {}
        means = {name: sum(by_lang[name] for by_lang in scores.values()) / len(scores)
                 for name in scores[self.langs[0]]}
        # Every rank has the scores of the whole development set: no reduction by Lightning.
        for name, mean in means.items():
            pl_module.log(f"val/{name}", mean, prog_bar=name == self.primary)
            if len(scores) > 1:
                for lang, by_lang in scores.items():
                    pl_module.log(f"val/{name}/{lang}", by_lang[name])
        self.curve.append({"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                           self.primary: round(means[self.primary], 4), **({"warnings": self.seen} if self.seen else {})})

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = list(state_dict["curve"])


def selection_callbacks(stage: Stage, data: TaskDataModule, work_dir: Path) -> list[pl.Callback]:
    """The stage's validation scorer, its best-model checkpoint (`best`) and early stopping
    (`patience`); none when the stage does not validate."""
    if not stage.validates:
        return []
    scorer = DevScore(stage.task, data, stage.dev_langs)
    monitor = f"val/{scorer.primary}"
    callbacks: list[pl.Callback] = [scorer]
    if stage.selection["mode"] == "best":
        # Only the weights: the optimizer is not needed to store the selected model, and
        # the preemption checkpoint (StageCheckpoints) keeps what resuming needs. Saved at the
        # end of validation, not of the training epoch: the epoch-end preemption checkpoint
        # must already hold the updated best score and path, or a stage killed after it
        # would resume without knowing its best epoch.
        callbacks.append(ModelCheckpoint(dirpath=work_dir / SELECTION_FOLDER, filename="best", monitor=monitor,
                                         mode="max", save_top_k=1, save_weights_only=True,
                                         auto_insert_metric_name=False, enable_version_counter=False,
                                         save_on_train_epoch_end=False))
    if stage.selection.get("patience"):
        callbacks.append(EarlyStopping(monitor=monitor, mode="max", patience=int(stage.selection["patience"]),
                                       check_on_train_epoch_end=False))
    return callbacks


def trainer_settings(stage: Stage) -> dict[str, Any]:
    """The Trainer arguments of the validation loop (none at all when the stage does not
    validate). No sanity check: a partial pass would enter the curve."""
    if not stage.validates:
        return {"limit_val_batches": 0, "enable_checkpointing": False}
    return {"check_val_every_n_epoch": int(stage.selection["every_n_epochs"]), "num_sanity_val_steps": 0,
            "enable_checkpointing": stage.selection["mode"] == "best"}


def select(trainer: pl.Trainer, stage: Stage, callbacks: list[pl.Callback]) -> dict[str, Any] | None:
    """After fitting: load the best checkpoint's weights into the module for `best` (every
    rank), and describe the selection for the artifact's meta.json and the records: mode,
    development split and languages, the curve, the selected epoch and step, the selected,
    best and last development F1, the epochs trained and the budget, and what
    the task type's degenerate check (`xitt.tasktypes`) saw in the stored model's development predictions."""
    scorer = next((callback for callback in callbacks if isinstance(callback, DevScore)), None)
    if scorer is None:
        return None
    curve = scorer.curve
    checkpoint = next((callback for callback in callbacks if isinstance(callback, ModelCheckpoint)), None)
    if checkpoint is not None and checkpoint.best_model_path:
        trainer.strategy.barrier("best model saved")
        state = trainer.strategy.load_checkpoint(checkpoint.best_model_path)
        trainer.strategy.load_model_state_dict(state)
    primary = scorer.primary  # the development "F1" fields hold the type's primary score
    best = max(curve, key=lambda point: point[primary]) if curve else None  # the first of equal scores
    selected = best if stage.selection["mode"] == "best" else (curve[-1] if curve else None)
    return {
        "mode": stage.selection["mode"], "every_n_epochs": stage.selection["every_n_epochs"],
        "patience": stage.selection.get("patience"), "dev_split": dev_split(stage.task),
        "dev_langs": list(stage.dev_langs), "curve": curve,
        "selected_epoch": selected and selected["epoch"], "selected_step": selected and selected["step"],
        "dev_f1": selected and selected[primary], "dev_f1_best": best and best[primary],
        "dev_f1_last": curve[-1][primary] if curve else None,
        "epochs_run": int(trainer.current_epoch),  # fewer than the budget when stopped early
        "epoch_budget": int(stage.hparams["epochs"]),
        "dev_warnings": (selected or {}).get("warnings", []),
    }
