"""The three stages of a cell, each reusing what the artifact store already holds:

1. ITT: fine-tune the pretrained encoder on the English intermediate task; keep the encoder.
2. Target: start from the ITT encoder (or the pretrained one), add a fresh head, fine-tune.
3. Evaluate: score every requested language; one JSON record per (cell, language).
"""

import json
import logging
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from xitt import XittError
from xitt.data.datamodule import TaskDataModule
from xitt.data.tasks import missing_data_assets, split_note
from xitt.data.tokenizer import load_tokenizer
from xitt.models.encoder import apply_freezing, build_encoder, count_parameters, load_encoder, missing_model_assets
from xitt.models.module import SequenceClassifier
from xitt.stages.cell import Cell
from xitt.stages.loggers import finish_logger, stage_logger
from xitt.stages.ranks import Ranks
from xitt.stages.resume import PreemptionGuard, StageCheckpoints
from xitt.stages.store import ArtifactStore, library_versions, write_json_atomic

log = logging.getLogger(__name__)
HEAD_FILE = "head.safetensors"
# Keys of the `trainer` config that xitt reads itself; all others are pl.Trainer arguments.
XITT_TRAINER_KEYS = ("activation_checkpointing", "checkpoint_every_n_epochs", "gpu_memory_gb")
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


class CellRunner:
    """Runs one cell's stages with the run machinery of its config (trainer, logger, paths)."""

    def __init__(self, cfg: DictConfig, sweep: str | None = None):
        quiet_libraries()
        self.cfg = cfg
        self.cell = Cell.from_config(cfg)
        self.ranks = Ranks()
        self.store = ArtifactStore(cfg.paths.store)
        self.results_dir = Path(cfg.paths.results) / f"{self.cell.name}-{self.cell.cell_key[:8]}"
        self.sweep = sweep

    # -- bookkeeping -------------------------------------------------------------------

    def record_path(self, lang: str) -> Path:
        return self.results_dir / f"{lang}.json"

    def pending_langs(self) -> list[str]:
        """Languages without a record of the current result key."""
        pending = []
        for lang in self.cell.eval_langs:
            target_key = self.cell.target_key(self.cell.train_langs_for(lang))
            path = self.record_path(lang)
            if not path.is_file() or json.loads(path.read_text()).get("result_key") != self.cell.result_key(target_key, lang):
                pending.append(lang)
        return pending

    def check_assets(self) -> None:
        """Stop before any training when the machine lacks a model or data set the cell
        needs: local files that are not there, or hub assets missing from an offline cache."""
        needs = self.cell.data_needs()
        missing = missing_model_assets(self.cell.model) + [
            asset for task, lang, split in needs for asset in missing_data_assets(task, lang, split)]
        missing = list(dict.fromkeys(missing))
        if missing:
            raise XittError(
                f"Stopping before training: this machine lacks {'; '.join(missing)}. For hub models "
                f"and data sets on an offline machine (HF_HUB_OFFLINE=1), fill the Hugging Face cache "
                f"first on a machine with network with `python -m xitt.prepare <the same overrides>`; "
                f"for local files, point the task's `path` at the folder that holds them."
            )

    # -- stages ------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Run the stages the cell still needs; return its records (one per language).
        In a multi-process job all ranks run it; they follow rank 0's view of the store."""
        self.ranks = Ranks.start(self.trainer())
        self.store = ArtifactStore(self.cfg.paths.store, ranks=self.ranks,
                                   lock_timeout_s=float(self.cfg.get("store_lock_timeout_s") or DEFAULT_LOCK_TIMEOUT_S))
        records = self.run_stages(self.ranks.broadcast(self.pending_langs()))
        self.ranks.finish()
        return records

    def run_stages(self, pending: list[str]) -> list[dict[str, Any]]:
        if not pending:
            log.info("Cell %s: all %d languages already evaluated, nothing to train (skipped).",
                     self.cell.name, len(self.cell.eval_langs))
            return [json.loads(self.record_path(lang).read_text()) for lang in self.cell.eval_langs]
        self.check_assets()
        tokenizer = load_tokenizer(self.cell.model, self.cell.model.get("name_or_path"), self.store)
        itt_dir = self.intermediate(tokenizer)
        by_training: dict[tuple[str, ...], list[str]] = {}
        for lang in pending:
            by_training.setdefault(tuple(self.cell.train_langs_for(lang)), []).append(lang)
        for train_langs, langs in by_training.items():
            target_dir = self.target(tokenizer, itt_dir, list(train_langs))
            self.evaluate(tokenizer, target_dir, list(train_langs), langs)
        return [json.loads(self.record_path(lang).read_text()) for lang in self.cell.eval_langs]

    def pretrained_encoder(self, tokenizer: PreTrainedTokenizerBase) -> torch.nn.Module:
        return build_encoder(self.cell.model, len(tokenizer), tokenizer.pad_token_id, self.cell.seed)

    def intermediate(self, tokenizer: PreTrainedTokenizerBase) -> Path | None:
        cell = self.cell
        if cell.itt is None:
            return None

        def build(out: Path | None) -> dict:
            log.info("Cell %s: ITT on %s (artifact %s)", cell.name, cell.itt["name"], cell.itt_key)
            encoder = self.pretrained_encoder(tokenizer)
            freezing = cell.freezing_for("itt")
            apply_freezing(encoder, freezing["mode"], freezing["k"])
            module = SequenceClassifier(encoder, len(cell.itt["labels"]), cell.itt["hparams"], cell.model["pooling"])
            metrics, weights = self.fit("itt", module, cell.itt, tokenizer, cell.itt["languages"][:1],
                                        self.store.work_dir("itt", cell.itt_key))
            if out is not None:
                save_trained(out, module, tokenizer, weights, with_head=False)
            return metrics

        return self.store.get_or_build("itt", cell.itt_key, build, {
            "model": cell.model, "itt": cell.itt, "freezing": cell.freezing_for("itt"), "seed": cell.seed},
            collective=True)

    def target(self, tokenizer: PreTrainedTokenizerBase, itt_dir: Path | None, train_langs: list[str]) -> Path:
        """The target model evaluated on `train_langs`' languages. Few-shot models start
        from the English zero-shot model (built first, or reused from the store)."""
        cell = self.cell
        if cell.transfer["mode"] != "few_shot":
            return self.train_target(tokenizer, itt_dir, cell.itt_key or "pretrained", cell.target_key(train_langs),
                                     cell.target_training_task, cell.transfer, train_langs)
        english_langs = [cell.transfer["train_lang"]]
        english_dir = self.train_target(tokenizer, itt_dir, cell.itt_key or "pretrained", cell.english_target_key,
                                        cell.target, cell.english_transfer, english_langs)
        return self.train_target(tokenizer, english_dir, cell.english_target_key, cell.target_key(train_langs),
                                 cell.target_training_task, cell.transfer, train_langs, stage="few_shot")

    def train_target(self, tokenizer: PreTrainedTokenizerBase, start_dir: Path | None, start: str, key: str,
                     task: dict, transfer: dict, train_langs: list[str], stage: str = "target") -> Path:
        """Fine-tune a target model from `start_dir` (the pretrained encoder when None):
        with a fresh head from an encoder, or continuing the head of a target model."""
        cell = self.cell

        def build(out: Path | None) -> dict:
            log.info("Cell %s: %s fine-tuning on %s (%s), artifact %s",
                     cell.name, stage, cell.target["name"], ",".join(train_langs), key)
            encoder = (load_encoder(start_dir, cell.model.get("encoder_class", "AutoModel"))
                       if start_dir else self.pretrained_encoder(tokenizer))
            freezing = cell.freezing_for("target")
            apply_freezing(encoder, freezing["mode"], freezing["k"])
            module = SequenceClassifier(encoder, len(task["labels"]), task["hparams"], cell.model["pooling"])
            if start_dir is not None and (start_dir / HEAD_FILE).is_file():
                module.head.load_state_dict(load_file(str(start_dir / HEAD_FILE)))
            metrics, weights = self.fit(stage, module, task, tokenizer, train_langs, self.store.work_dir("target", key))
            if out is not None:
                save_trained(out, module, tokenizer, weights, with_head=True)
            return metrics

        return self.store.get_or_build("target", key, build, {
            "start": start, "model": cell.model, "target": task,
            "transfer": transfer, "train_langs": train_langs, "freezing": cell.freezing_for("target"),
            "seed": cell.seed, "labels": task["labels"], "pooling": cell.model["pooling"],
            "cell_config": cell.config}, collective=True)  # lets `evaluate.py ckpt=...` rebuild the cell

    def evaluate(self, tokenizer: PreTrainedTokenizerBase, target_dir: Path, train_langs: list[str],
                 langs: list[str]) -> None:
        cell = self.cell
        target_key = target_dir.name
        encoder = load_encoder(target_dir, cell.model.get("encoder_class", "AutoModel"))
        module = SequenceClassifier(encoder, len(cell.target["labels"]), cell.target["hparams"],
                                    cell.model["pooling"], eval_langs=langs)
        module.head.load_state_dict(load_file(str(target_dir / HEAD_FILE)))
        data = self.datamodule(cell.target, tokenizer, eval_langs=langs)
        started = time.time()
        logger = self.logger("evaluate")
        try:
            trainer = self.trainer(logger=logger)
            trainer.test(module, datamodule=data, verbose=False)
            if not trainer.is_global_zero:
                self.ranks.barrier("records written")  # the other ranks read them next
                return
            params = count_parameters(encoder)
            records = [self.write_record(lang, target_key, train_langs, module, data, params, started)
                       for lang in langs]
            log_scores(logger, records)
            self.ranks.barrier("records written")
        finally:
            finish_logger()

    # -- machinery ---------------------------------------------------------------------

    def datamodule(self, task: dict, tokenizer: PreTrainedTokenizerBase, train_langs: Sequence[str] = (),
                   eval_langs: Sequence[str] = ()) -> TaskDataModule:
        hparams = task["hparams"]
        return TaskDataModule(task, tokenizer, train_langs, eval_langs, batch_size=int(hparams["batch_size"]),
                              eval_batch_size=int(task.get("eval_batch_size", 128)),
                              max_length=int(hparams["max_length"]), num_workers=int(self.cfg.get("num_workers", 0)),
                              cache_dir=Path(self.cfg.paths.store) / "data", seed=self.cell.seed)

    def logger(self, stage: str):
        if not self.ranks.is_zero:  # one W&B run per job: rank 0's
            return False
        return stage_logger(self.cfg.logger, cell_name=self.cell.name, stage=stage,
                            group=self.sweep or "single", tags=self.cell.tags, config=self.cell.config)

    def trainer(self, **overrides: Any) -> pl.Trainer:
        return build_trainer(self.cfg.trainer, **overrides)

    def fit(self, stage: str, module: SequenceClassifier, task: dict, tokenizer: PreTrainedTokenizerBase,
            train_langs: Sequence[str], work_dir: Path) -> tuple[dict, dict[str, torch.Tensor] | None]:
        """Train `module`; resume from the checkpoint in `work_dir` when an earlier attempt
        left one (see `xitt.stages.resume`). Returns the metrics and, for strategies that
        shard the weights, the whole weights gathered on rank 0 (None otherwise)."""
        pl.seed_everything(self.cell.seed, workers=True, verbose=False)
        if self.cfg.trainer.get("activation_checkpointing"):
            module.enable_activation_checkpointing()
        data = self.datamodule(task, tokenizer, train_langs=train_langs)
        logger = self.logger(stage)
        metrics: dict[str, Any] = {}
        try:
            with PreemptionGuard() as guard:
                checkpoints = StageCheckpoints(work_dir, guard, f"Cell {self.cell.name}: {stage}",
                                               int(self.cfg.trainer.get("checkpoint_every_n_epochs", 1)))
                resume = checkpoints.resume_point()
                if resume:
                    log.info("Cell %s: resuming %s from epoch %d (step %d), checkpoint %s",
                             self.cell.name, stage, resume.epochs_done, resume.global_step, resume.path)
                    metrics.update(resumed_from_epoch=resume.epochs_done, resumed_from_step=resume.global_step)
                    data.resume_at = (resume.epochs_done, resume.batches_done)
                trainer = self.trainer(max_epochs=int(task["hparams"]["epochs"]), logger=logger,
                                       callbacks=[checkpoints])
                trainer.fit(module, datamodule=data, ckpt_path=resume.path if resume else None)
                weights = gathered_weights(trainer)
        finally:
            finish_logger()
        loss = trainer.callback_metrics.get("train/loss")
        metrics.update(train_loss=None if loss is None else float(loss), steps=int(trainer.global_step),
                       train_examples=len(data.train_set), world_size=self.ranks.world_size)
        return metrics, weights

    def write_record(self, lang: str, target_key: str, train_langs: list[str], module: SequenceClassifier,
                     data: TaskDataModule, params: int, started: float) -> dict[str, Any]:
        cell = self.cell
        predictions = module.test_predictions[lang]
        ids = data.test_ids[lang]
        predictions_file = f"{lang}.predictions.json"
        write_json_atomic(self.results_dir / predictions_file, {
            "ids": [ids[row] for row in predictions["row"]], "gold": predictions["gold"],
            "pred": predictions["pred"], "labels": list(cell.target["labels"])})
        record = {
            "cell_key": cell.cell_key, "cell_name": cell.name, "target_key": target_key,
            "itt_key": cell.itt_key, "result_key": cell.result_key(target_key, lang),
            "model": cell.model["family"], "size": cell.model["size"], "params": params,
            "itt": cell.itt_name, "target": cell.target["name"], "transfer": cell.transfer["mode"],
            "freezing": cell.freezing_name, "seed": cell.seed, "lang": lang,
            "train_lang": ",".join(train_langs), **module.test_scores[lang],
            "split_note": split_note(cell.target),
            "few_shot_k": int(cell.transfer["k"]) if cell.transfer["mode"] == "few_shot" else None,
            "few_shot_seed": int(cell.transfer["sample_seed"]) if cell.transfer["mode"] == "few_shot" else None,
            "sweep": self.sweep, "config": cell.config, "versions": library_versions(),
            "predictions": predictions_file, "eval_s": round(time.time() - started, 3),
            "created": datetime.now(timezone.utc).isoformat(),
        }
        write_json_atomic(self.record_path(lang), record)
        return record


def build_trainer(trainer_cfg: DictConfig, **overrides: Any) -> pl.Trainer:
    """A Lightning Trainer from the `trainer` config (without xitt's own keys). Lightning's
    own checkpointing and SLURM requeueing are off: the stages checkpoint into the artifact
    store and resume per artifact (see `xitt.stages.resume`); Lightning's SLURM handler
    would save into the working directory and requeue on its own."""
    from lightning_fabric.plugins.environments import SLURMEnvironment
    from omegaconf import open_dict

    cfg = trainer_cfg.copy()
    with open_dict(cfg):
        for key in XITT_TRAINER_KEYS:
            cfg.pop(key, None)
    precision, accelerator = str(cfg.get("precision")), str(cfg.get("accelerator"))
    if accelerator == "cpu" and precision in ("16", "16-mixed"):
        raise XittError(
            f"`trainer.precision={precision}` (float16 mixed precision) needs a GPU; on CPU Lightning "
            f"would silently train in bfloat16 instead, under a key that says float16. Use "
            f"`trainer.precision=bf16-mixed` (or 32-true) on CPU, or `trainer=gpu` on a GPU machine."
        )
    if SLURMEnvironment.detect() and "plugins" not in overrides:
        overrides["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    # The DataModule splits batches over the ranks itself (see TaskDataModule).
    return instantiate(cfg)(enable_checkpointing=False, use_distributed_sampler=False, **overrides)


def gathered_weights(trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
    """The module's whole weights when the strategy shards them (FSDP, DeepSpeed): every
    rank takes part in gathering them, rank 0 receives them. None for strategies where
    each process holds the whole model (one device, DDP), which save it directly."""
    from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy

    strategy = trainer.strategy
    if isinstance(strategy, FSDPStrategy):
        # Checkpoints may be sharded (fast to save and resume); the stored encoder is whole.
        sharded, strategy._state_dict_type = strategy._state_dict_type, "full"
        try:
            return strategy.lightning_module_state_dict()
        finally:
            strategy._state_dict_type = sharded
    if isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3:  # stage 2 keeps whole weights
        import deepspeed

        module = strategy.lightning_module
        # Gathers every parameter on every GPU at once: the bf16 weights must fit one GPU
        # beside its shard (xlmr-xxl: 21 GB), which the planner's settings leave room for.
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0):
            if strategy.is_global_zero:
                return {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}
        return None
    return None


def save_trained(out: Path, module: SequenceClassifier, tokenizer: PreTrainedTokenizerBase,
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


def log_scores(logger, records: list[dict[str, Any]]) -> None:
    """Per-language F1 as scalars `test/f1/<lang>` and, for W&B, as one table."""
    if not logger:
        return
    logger.log_metrics({f"test/{metric}/{r['lang']}": r[metric] for r in records for metric in ("f1", "accuracy")})
    if hasattr(logger, "log_table"):
        logger.log_table(key="test/scores", columns=["lang", "f1", "accuracy", "n"],
                         data=[[r["lang"], r["f1"], r["accuracy"], r["n"]] for r in records])
    logger.save()


def format_scores(records: list[dict[str, Any]]) -> str:
    """The per-language F1 table printed at the end of a cell."""
    if not records:
        return ""
    first = records[0]
    lines = [f"{first['cell_name']}  (encoder parameters: {first['params']:,})",
             f"{'lang':<8}{'F1':>8}{'acc':>8}{'n':>7}"]
    lines += [f"{r['lang']:<8}{r['f1']:>8.1f}{r['accuracy']:>8.1f}{r['n']:>7}" for r in records]
    return "\n".join(lines)
