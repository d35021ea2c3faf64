"""Running one cell: its stages (`Cell.stages()`) in order, each reusing what the artifact
store already holds.

- ITT / target / few-shot: fine-tune (the pretrained encoder, or the artifact the stage
  starts from) and store the model; ITT keeps the encoder only, target models their head too.
- Evaluate: Lightning's prediction loop over every language's test set, predictions
  gathered from all ranks, turned into a predictions file per language (classes, tags per
  word, answer texts) and scored from it, one record per language.

The task's type (`xitt.tasktypes`) decides the module (`module_for`), how predictions become
a predictions file and how it is scored; everything here is shared by every type.
"""

import json
import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from xitt import XittError
from xitt.compat import fsdp_full_state_dict, start_ranks
from xitt.core.cell import Cell, Stage, split_fingerprints
from xitt.core.jobs import in_multirun
from xitt.core.keys import content_key, training_label
from xitt.core.ranks import Ranks
from xitt.core.records import (PREDICTIONS_SUFFIX, Record, cell_results_dir, pending_langs,
                               read_records, record_path)
from xitt.core.store import META_FILE, ArtifactStore, library_versions, write_json_atomic
from xitt.core.taskspec import split_note
from xitt.core.validate import XITT_TRAINER_RULES
from xitt.data.datamodule import TaskDataModule
from xitt.data.tasks import load_split, missing_data_assets
from xitt.data.tokenizer import load_tokenizer
from xitt.models.encoder import apply_freezing, build_encoder, count_parameters, load_encoder, missing_model_assets
from xitt.models.module import EncoderModule, NonFiniteLoss
from xitt.stages.loggers import finish_logger, stage_logger
from xitt.stages.selection import select, selection_callbacks, trainer_settings
from xitt.stages.resume import PreemptionGuard, StageCheckpoints
from xitt.tasktypes import degenerate_predictions, prediction_scores, task_type
from xitt.tasktypes.rows import gather_rows

log = logging.getLogger(__name__)
HEAD_FILE = "head.safetensors"
# Kept prediction rows (`TaskType.rows_view`): a store kind, and the file in each artifact.
ROWS, ROWS_FILE = "rows", "rows.npy"
# The config group whose `hparams` a training stage trains with (few-shot: the transfer's).
HPARAMS_GROUP = {"itt": "itt", "target": "target", "few_shot": "transfer"}
DEFAULT_LOCK_TIMEOUT_S = 6 * 3600


def quiet_libraries() -> None:
    """Keep the console to what a user reads: the training progress bar, the stages, the
    scores. Library chatter that does not apply here (hints about srun, tips, per-file
    progress bars of tiny files) is silenced."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    for message in (".*srun.*", ".*LeafSpec.*", ".*log_every_n_steps.*", ".*does not have many workers.*",
                    ".*in eval mode at the start of training.*",
                    # the stages do resume mid-epoch batches themselves (xitt.stages.resume)
                    ".*dataloader is not resumable.*"):
        warnings.filterwarnings("ignore", message=message)


def job_processes(trainer_cfg: DictConfig) -> int | None:
    """How many processes a trainer config runs (devices x nodes); None when Lightning
    decides (`devices: auto`)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int):
        count = devices
    elif isinstance(devices, str) and devices.isdigit():
        count = int(devices)
    elif not isinstance(devices, str):  # a list of device indices
        count = len(devices)
    else:
        return None
    return count * int(trainer_cfg.get("num_nodes") or 1)


class CellRunner:
    """Runs one cell's stages with the run machinery of its config (trainer, logger, paths).
    Built once per job: in a multi-process job it starts the process group first, since
    every store decision after that is collective."""

    def __init__(self, cfg: DictConfig, sweep: str | None = None, callbacks: Sequence[pl.Callback] = ()):
        """`callbacks`: Lightning callbacks added to every Trainer the runner builds (timers,
        probes of a benchmark or a test); `runner.callbacks` may be extended later too."""
        quiet_libraries()
        self.cfg = cfg
        self.sweep = sweep
        self.callbacks = list(callbacks)
        self.cell = Cell.from_config(cfg)
        self.results_dir = cell_results_dir(cfg.paths.results, self.cell)
        processes = job_processes(cfg.trainer)
        strategy = start_ranks(self.trainer(), in_multirun()) if processes is None or processes > 1 else None
        self.ranks = Ranks(strategy)
        self.store = ArtifactStore(cfg.paths.store, ranks=self.ranks,
                                   lock_timeout_s=float(cfg.get("store_lock_timeout_s") or DEFAULT_LOCK_TIMEOUT_S))
        self.skipped = False

    def run(self) -> list[dict[str, Any]]:
        """Run the stages the cell still needs; return its records (one per language) on
        rank 0, nothing on the other ranks. All ranks follow rank 0's view of the store."""
        pending = self.ranks.broadcast(pending_langs(self.cell, self.results_dir))
        self.skipped = not pending
        written: dict[str, dict[str, Any]] = {}
        if pending:
            self.check_assets()
            stages = self.cell.stages(pending)
            self.check_data(stages)
            tokenizer = load_tokenizer(self.cell.model, self.store)
            for stage in stages:
                if stage.trains:
                    self.train(stage, tokenizer)
                else:
                    written.update(self.evaluate(stage, tokenizer))
        else:
            log.info("Cell %s: all %d languages already evaluated, nothing to train (skipped).",
                     self.cell.name, len(self.cell.eval_langs))
        self.ranks.finish()
        if not self.ranks.is_zero:
            return []
        done = [lang for lang in self.cell.eval_langs if lang not in written]
        stored = dict(zip(done, read_records(self.results_dir, done)))
        return [written.get(lang) or stored[lang] for lang in self.cell.eval_langs]

    def check_assets(self) -> None:
        """Stop before any training when the machine lacks a model or data set the cell
        needs: local files that are not there, or hub assets missing from an offline cache."""
        missing = missing_model_assets(self.cell.model) + [
            asset for task, lang, split in self.cell.data_needs() for asset in missing_data_assets(task, lang, split)]
        missing = list(dict.fromkeys(missing))
        if missing:
            raise XittError(
                f"Stopping before training: this machine lacks {'; '.join(missing)}. For hub models "
                f"and data sets on an offline machine (HF_HUB_OFFLINE=1), fill the Hugging Face cache "
                f"first on a machine with network with `python -m xitt.prepare <the same overrides>`; "
                f"for local files, point the task's `path` at the folder that holds them."
            )

    def check_data(self, stages: list[Stage]) -> None:
        """Read every split that the stages still to run need, before any training: a
        missing column, an unknown label, an empty split or a few-shot k larger than a class
        fails now, naming the file, not after the intermediate task has trained for hours."""
        for stage in stages:
            if stage.trains and self.store.has(stage.store, stage.key):
                continue
            for task, lang, split in stage.data_needs():
                if len(load_split(task, lang, split)) == 0:
                    raise XittError(
                        f"Task '{task['name']}' has no examples in its '{split}' split for {lang} "
                        f"({task['source']} source{', ' + str(task.get('path')) if task.get('path') else ''}). "
                        f"Check the data files, or the task's split settings (`train_split`, `test_split`, "
                        f"`split_ratio`, `train_sample`)."
                    )

    # -- stages ------------------------------------------------------------------------

    def module_for(self, stage: Stage, tokenizer: PreTrainedTokenizerBase, start_dir: Path | None) -> EncoderModule:
        """The module a stage trains or evaluates: the pretrained encoder (None), or the
        encoder of the artifact in `start_dir` and its head when it has one; under the
        stage's freezing, with the module of the stage's task type. An ITT artifact holds an
        encoder only, so any task type can start from any ITT task's encoder."""
        if start_dir is None:
            encoder = build_encoder(self.cell.model, len(tokenizer), tokenizer.pad_token_id, self.cell.seed)
        else:
            encoder = load_encoder(start_dir, self.cell.model.get("encoder_class", "AutoModel"))
        apply_freezing(encoder, stage.freezing["mode"], stage.freezing["k"])
        module = task_type(stage.task).training.module(encoder, stage.task, stage.hparams, self.cell.model["pooling"],
                                                       stage.dev_langs if stage.validates else ())
        # a module without a head (retrieval's embedder) scores a target model's encoder alone
        if start_dir is not None and (start_dir / HEAD_FILE).is_file() and getattr(module, "head", None) is not None:
            module.head.load_state_dict(load_file(str(start_dir / HEAD_FILE)))
        return module

    def train(self, stage: Stage, tokenizer: PreTrainedTokenizerBase) -> Path:
        """The stage's artifact: from the store, or trained now and stored."""
        cell = self.cell

        def build(out: Path | None) -> dict:
            log.info("Cell %s: %s on %s (%s), artifact %s", cell.name, stage.name, stage.task["name"],
                     ",".join(stage.train_langs), stage.key)
            # Seeded before the model is built: a fresh head's weights are drawn now, and must
            # not depend on what this process did before (other stages, other cells).
            pl.seed_everything(cell.seed, workers=True, verbose=False)
            module = self.module_for(stage, tokenizer, self.store.path(*stage.start) if stage.start else None)
            metrics, weights = self.fit(stage, module, tokenizer)
            if out is not None:
                save_trained(out, module, tokenizer, weights, with_head=stage.store == "target")
            return metrics

        start = stage.start[1] if stage.start else "pretrained"
        return self.store.get_or_build(stage.store, stage.key, build, {
            "stage": stage.name, "start": start, "model": cell.model, "task": stage.task,
            "transfer": stage.transfer, "train_langs": list(stage.train_langs), "freezing": stage.freezing,
            "seed": cell.seed, "labels": stage.task.get("labels"), "pooling": cell.model["pooling"],
            "training": cell.training, "run_settings": cell.run_settings,
            "cell_config": cell.config}, collective=True)  # lets `evaluate.py ckpt=...` rebuild the cell

    def evaluate(self, stage: Stage, tokenizer: PreTrainedTokenizerBase,
                 model_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        """Score the stage's target model (from the store, or `model_dir`) on its languages;
        write one record per language (rank 0) and return them."""
        started = time.time()
        unit = task_type(stage.task)
        # the model scored: a stored one, or (a target that trains nothing) the pretrained encoder
        model_dir = model_dir or (self.store.path(*stage.start) if stage.start else None)
        module = self.module_for(stage, tokenizer, model_dir)
        read_langs = unit.evaluation_languages(stage.task, list(stage.eval_langs))
        data = self.datamodule(stage.task, tokenizer, eval_langs=tuple(read_langs))
        rows = self.stored_rows(stage, read_langs)
        to_predict = tuple(lang for lang in read_langs if lang not in rows)
        logger = self.logger(stage)
        try:
            trainer = self.trainer(logger=logger)
            if to_predict:
                predicted = data if len(to_predict) == len(read_langs) else self.datamodule(
                    stage.task, tokenizer, eval_langs=to_predict)
                outputs = trainer.predict(module, datamodule=predicted, return_predictions=True)
                per_lang = outputs if len(to_predict) > 1 else [outputs]
                for lang, batches in zip(to_predict, per_lang):
                    rows[lang] = gather_rows(trainer, batches, module.prediction_width)
                    self.store_rows(stage, lang, rows[lang])
            if not data.test_data:  # no prediction ran on it: its rows' ids and texts
                data.setup("predict")
            records = {}
            if self.ranks.is_zero:
                params = count_parameters(module.encoder)
                built = _meta_of(model_dir) if model_dir and stage.store == "target" else {}
                files = unit.training.predictions_files(stage.task, stage.eval_langs, rows, data.test_data)
                records = {lang: self.write_record(stage, lang, files[lang], params, started, built,
                                                   unit.data_note(files[lang], data.test_data[lang]))
                           for lang in stage.eval_langs}
                log_scores(logger, list(records.values()), stage.task)
            self.ranks.barrier("records written")
            return records
        finally:
            finish_logger()

    def rows_key(self, stage: Stage, lang: str) -> str | None:
        """The store key of one language's prediction rows of the stage's model, for a type
        whose rows are kept (`rows_view`: retrieval's embeddings, shared by its tasks over
        the same sentences); None for the others."""
        view = task_type(stage.task).rows_view(stage.task)
        if view is None:
            return None
        files = split_fingerprints(stage.task, [(lang, stage.task["test_split"])])
        return content_key({"model": stage.key, "rows": view, "lang": lang, "files": files})

    def stored_rows(self, stage: Stage, langs: list[str]) -> dict[str, Any]:
        """The kept prediction rows of the languages that have them (every rank reads them)."""
        keys = {lang: self.rows_key(stage, lang) for lang in langs}
        stored = self.ranks.broadcast([lang for lang, key in keys.items() if key and self.store.has(ROWS, key)])
        return {lang: np.load(self.store.path(ROWS, keys[lang]) / ROWS_FILE) for lang in stored}

    def store_rows(self, stage: Stage, lang: str, rows: Any) -> None:
        key = self.rows_key(stage, lang)
        if key is not None:
            self.store.get_or_build(ROWS, key, lambda out: np.save(out / ROWS_FILE, rows), {
                "model": stage.key, "task": stage.task["name"], "lang": lang, "rows": len(rows)})

    def write_record(self, stage: Stage, lang: str, predictions: dict[str, Any], params: int,
                     started: float, built: dict[str, Any], data_note: str | None = None) -> dict[str, Any]:
        """One language's predictions file and its record, scored from exactly that file.
        `built` is the target model's meta.json ({} for a folder that is no artifact);
        `data_note` what the task type says of the test rows (`TaskType.data_note`)."""
        cell = self.cell
        selection = built.get("metrics", {}).get("selection")
        predictions_name = f"{lang}{PREDICTIONS_SUFFIX}"
        write_json_atomic(self.results_dir / predictions_name, predictions)
        # Kept but flagged: the stored model's development set (checked as it was selected)
        # and this language's test set.
        # (not a scored target model's head's development predictions when only its encoder is scored)
        dev_flags = (selection or {}).get("dev_warnings") if task_type(stage.task).trains else None
        flags = [*(dev_flags or ()), *filter(None, [degenerate_predictions(predictions, "test", lang)])]
        few_shot = cell.transfer["mode"] == "few_shot"
        record = Record(
            cell_key=cell.cell_key, cell_name=cell.name, result_key=cell.result_key(stage.key, lang),
            target_key=stage.key, itt_key=cell.itt_key, model=cell.model["family"], size=cell.model["size"],
            params=params, itt=cell.itt_name, target=cell.target["name"], transfer=cell.transfer["mode"],
            freezing=cell.freezing_name, seed=cell.seed if cell.seed_matters else 0, lang=lang,
            train_lang=",".join(stage.train_langs),
            training=training_label(cell.trainer), run_settings=built.get("config", {}).get("run_settings") or {},
            metric=task_type(cell.target).primary_for(cell.target), **prediction_scores(predictions),
            **_selection_fields(selection), seed_independent=not cell.seed_matters, scored_model=cell.scored_model,
            **{name: predictions[name] for name in ("threshold", "threshold_from") if name in predictions},
            keep_layers=cell.model.get("keep_layers"),
            split_note="; ".join(filter(None, [split_note(cell.target), data_note])) or None,
            few_shot_k=int(cell.transfer["k"]) if few_shot else None,
            few_shot_seed=int(cell.transfer["sample_seed"]) if few_shot else None,
            warnings=flags, sweep=self.sweep, predictions=predictions_name, eval_s=round(time.time() - started, 3),
            created=datetime.now(timezone.utc).isoformat(), config=cell.config, versions=library_versions(),
        ).as_dict()
        write_json_atomic(record_path(self.results_dir, lang), record)
        return record

    # -- machinery ---------------------------------------------------------------------

    def datamodule(self, task: dict, tokenizer: PreTrainedTokenizerBase, train_langs: tuple[str, ...] = (),
                   eval_langs: tuple[str, ...] = (), dev_langs: tuple[str, ...] = ()) -> TaskDataModule:
        hparams = task["hparams"]
        return TaskDataModule(task, tokenizer, train_langs, eval_langs, dev_langs, batch_size=int(hparams["batch_size"]),
                              eval_batch_size=int(task.get("eval_batch_size", 128)),
                              max_length=int(hparams["max_length"]), num_workers=int(self.cfg.get("num_workers", 0)),
                              cache_dir=Path(self.cfg.paths.store) / "data", seed=self.cell.seed)

    def logger(self, stage: Stage):
        """The stage's logger; a file logger writes to `<cell's results folder name>/<stage>-<its
        artifact key>`, so that no run of other settings overwrites its logs."""
        if not self.ranks.is_zero:  # one W&B run per job: rank 0's
            return False
        return stage_logger(self.cfg.logger, cell_name=self.cell.name, stage=stage.name, group=self.sweep or "single",
                            tags=self.cell.tags, config=self.cell.config, folder=self.results_dir.name,
                            version=f"{stage.name}-{stage.key[:8]}")

    def trainer(self, **overrides: Any) -> pl.Trainer:
        """A Trainer of the cell's trainer config, with the runner's extra callbacks."""
        if self.callbacks:
            overrides["callbacks"] = [*overrides.get("callbacks", []), *self.callbacks]
        return build_trainer(self.cfg.trainer, **overrides)

    def fit(self, stage: Stage, module: EncoderModule,
            tokenizer: PreTrainedTokenizerBase) -> tuple[dict, dict[str, torch.Tensor] | None]:
        """Train `module`; resume from the checkpoint in the stage's work folder when an
        earlier attempt left one (see `xitt.stages.resume`). Returns the metrics and, for
        strategies that shard the weights, the whole weights gathered on rank 0."""
        if self.cfg.trainer.get("activation_checkpointing"):
            module.enable_activation_checkpointing()
        if self.cfg.trainer.get("compile"):
            # In place (nn.Module.compile): the weights keep their names, so the stored model
            # is the same files; dynamic, since every batch has its own padded length.
            module.encoder.compile(dynamic=True)
        data = self.datamodule(stage.task, tokenizer, train_langs=stage.train_langs,
                               dev_langs=stage.dev_langs if stage.validates else ())
        logger = self.logger(stage)
        metrics: dict[str, Any] = {}
        work_dir = self.store.work_dir(stage.store, stage.key)
        try:
            with PreemptionGuard() as guard:
                checkpoints = StageCheckpoints(work_dir, guard, f"Cell {self.cell.name}: {stage.name}",
                                               int(self.cfg.trainer.get("checkpoint_every_n_epochs", 1)),
                                               float(self.cfg.trainer.get("checkpoint_min_interval_s", 0)))
                resume = checkpoints.resume_point()
                if resume:
                    log.info("Cell %s: resuming %s from epoch %d (step %d), checkpoint %s",
                             self.cell.name, stage.name, resume.epochs_done, resume.global_step, resume.path)
                    metrics.update(resumed_from_epoch=resume.epochs_done, resumed_from_step=resume.global_step)
                    data.resume_at = (resume.epochs_done, resume.batches_done)
                selecting = selection_callbacks(stage, data, work_dir)
                trainer = self.trainer(max_epochs=int(stage.hparams["epochs"]), logger=logger,
                                       callbacks=[checkpoints, *selecting], **trainer_settings(stage))
                trainer.fit(module, datamodule=data, ckpt_path=resume.path if resume else None)
                metrics["selection"] = select(trainer, stage, selecting)
                weights = gathered_weights(trainer)
        except NonFiniteLoss as diverged:
            # Its checkpoints may hold the broken weights, which a run of the same stage (the
            # same command, run again to see it fail again) would resume from.
            if self.ranks.is_zero:
                shutil.rmtree(work_dir, ignore_errors=True)
            raise XittError(self.diverged_message(stage, diverged)) from None
        finally:
            finish_logger()
        loss = trainer.callback_metrics.get("train/loss")
        metrics.update(train_loss=None if loss is None else float(loss), steps=int(trainer.global_step),
                       train_examples=len(data.train_set), world_size=self.ranks.world_size)
        return metrics, weights

    def diverged_message(self, stage: Stage, diverged: NonFiniteLoss) -> str:
        """The paragraph of a stage whose training loss became NaN or infinite."""
        group = HPARAMS_GROUP.get(stage.name, stage.name)
        lr = float(stage.hparams["lr"])
        precision = str(self.cfg.trainer.get("precision"))
        full_precision = ("" if precision.startswith(("32", "64")) else
                          f"full precision (`trainer.precision=32-true`; it trains in {precision} now)")
        stopped = "It stopped there, and nothing was stored or recorded for it."
        if diverged.step == 0:  # no update yet: the starting model and the data, not the learning rate
            truncated = task_type(stage.task).diverged_hint(stage.task, group)
            return (f"Cell {self.cell.name}: the {stage.name} stage's training loss was {diverged.loss} at global "
                    f"step 0, before the first update, so the learning rate did not cause it: the starting model "
                    f"or the first batches did{truncated}. {stopped} Check the training data and "
                    f"`{group}.hparams.max_length`{', or try ' + full_precision if full_precision else ''}, then "
                    f"run the same command again.")
        if diverged.step is None:
            seen = f"its training loss was not finite on another rank by epoch {diverged.epoch}"
        else:
            at = "" if diverged.lr is None else f", learning rate {diverged.lr:.3g}"
            seen = f"its training loss was {diverged.loss} at global step {diverged.step} (epoch {diverged.epoch}{at})"
        clip = self.cfg.trainer.get("gradient_clip_val")
        tries = [f"a lower learning rate (`{group}.hparams.lr={lr / 10:g}`; its peak is {lr:g} now)",
                 *filter(None, [full_precision]),
                 f"stronger gradient clipping (`trainer.gradient_clip_val={float(clip) / 4:g}`; {float(clip):g} now)"
                 if clip else "gradient clipping (`trainer.gradient_clip_val=1.0`)"]
        return (f"Cell {self.cell.name}: the {stage.name} stage diverged: {seen}. {stopped} Try "
                f"{', '.join(tries[:-1])} or {tries[-1]}, then run the same command again.")


def _meta_of(model_dir: Path) -> dict[str, Any]:
    """The meta.json of the target model in `model_dir` (how it was selected and trained);
    {} for a folder that is not an artifact."""
    meta = Path(model_dir) / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _selection_fields(selection: dict[str, Any] | None) -> dict[str, Any]:
    """The record's model-selection fields (see `Record`)."""
    if not selection:
        return {}
    return {"selection": selection["mode"], "selected_epoch": selection["selected_epoch"],
            "epochs_run": selection["epochs_run"], "epoch_budget": selection["epoch_budget"],
            "dev_f1": selection["dev_f1"], "dev_f1_best": selection["dev_f1_best"],
            "dev_f1_last": selection["dev_f1_last"], "dev_lang": ",".join(selection["dev_langs"])}


def build_trainer(trainer_cfg: DictConfig, **overrides: Any) -> pl.Trainer:
    """A Lightning Trainer from the `trainer` config (without xitt's own keys). Lightning's
    own checkpointing and SLURM requeueing are off: the stages checkpoint into the artifact
    store and resume per artifact (see `xitt.stages.resume`); Lightning's SLURM handler
    would save into the working directory and requeue on its own."""
    from lightning_fabric.plugins.environments import SLURMEnvironment
    from omegaconf import open_dict

    cfg = trainer_cfg.copy()
    with open_dict(cfg):
        for key in XITT_TRAINER_RULES:  # the keys xitt reads itself: not Trainer arguments
            cfg.pop(key, None)
    if SLURMEnvironment.detect() and "plugins" not in overrides:
        overrides["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    # The DataModule splits batches over the ranks itself (see TaskDataModule). Lightning's
    # checkpointing is on only where model selection passes its ModelCheckpoint.
    overrides.setdefault("enable_checkpointing", False)
    return instantiate(cfg)(use_distributed_sampler=False, **overrides)


def gathered_weights(trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
    """The module's whole weights when the strategy shards them (FSDP, DeepSpeed): every
    rank takes part in gathering them, rank 0 receives them. None for strategies where
    each process holds the whole model (one device, DDP), which save it directly."""
    from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy

    strategy = trainer.strategy
    if isinstance(strategy, FSDPStrategy):
        # Checkpoints may be sharded (fast to save and resume); the stored encoder is whole.
        return fsdp_full_state_dict(strategy)
    if isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3:  # stage 2 keeps whole weights
        import deepspeed

        module = strategy.lightning_module
        # Gathers every parameter at once (not layer by layer): the bf16 weights must fit one
        # GPU beside its shard (xlmr-xxl: 21 GB), which the planner's settings leave room for.
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0):
            if strategy.is_global_zero:
                return {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}
        return None
    return None


def save_trained(out: Path, module: EncoderModule, tokenizer: PreTrainedTokenizerBase,
                 weights: dict[str, torch.Tensor] | None, with_head: bool) -> None:
    """Write a trained model as safetensors: the encoder (a Hugging Face folder), its
    tokenizer and, for target models, the head. `weights` are the gathered weights of a
    sharded strategy, or None to take them from the module itself."""
    def part(prefix: str) -> dict[str, torch.Tensor] | None:
        if weights is None:
            return None
        return {name[len(prefix):]: tensor.contiguous() for name, tensor in weights.items() if name.startswith(prefix)}

    module.encoder.requires_grad_(True)
    module.encoder.save_pretrained(out, state_dict=part("encoder."))
    tokenizer.save_pretrained(out)
    if with_head:
        head = part("head.") or {name: t.contiguous() for name, t in module.head.state_dict().items()}
        save_file(head, str(out / HEAD_FILE))


def log_scores(logger, records: list[dict[str, Any]], task: dict[str, Any]) -> None:
    """Per-language scores as scalars `test/<score>/<lang>` and, for W&B, as one table: the
    task type's primary score and those of its companions the records carry."""
    if not logger:
        return
    unit = task_type(task)
    names = [unit.primary_for(task),
             *(name for name in unit.companions_for(task) if records and records[0].get(name) is not None)]
    logger.log_metrics({f"test/{name}/{r['lang']}": r[name] for r in records for name in names})
    if hasattr(logger, "log_table"):
        logger.log_table(key="test/scores", columns=["lang", *names, "n"],
                         data=[[r["lang"], *(r[name] for name in names), r["n"]] for r in records])
    logger.save()
