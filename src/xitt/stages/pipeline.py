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
from xitt.data.tasks import missing_data_assets
from xitt.data.tokenizer import load_tokenizer
from xitt.models.encoder import apply_freezing, build_encoder, count_parameters, load_encoder, missing_model_assets
from xitt.models.module import SequenceClassifier
from xitt.stages.cell import Cell
from xitt.stages.loggers import finish_logger, stage_logger
from xitt.stages.store import ArtifactStore, library_versions, write_json_atomic

log = logging.getLogger(__name__)
HEAD_FILE = "head.safetensors"


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
                    ".*in eval mode at the start of training.*"):
        warnings.filterwarnings("ignore", message=message)


class CellRunner:
    """Runs one cell's stages with the run machinery of its config (trainer, logger, paths)."""

    def __init__(self, cfg: DictConfig, sweep: str | None = None):
        quiet_libraries()
        self.cfg = cfg
        self.cell = Cell.from_config(cfg)
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
        """Stop before any training when an offline machine lacks a model or data set."""
        tasks = [self.cell.target] + ([self.cell.itt] if self.cell.itt else [])
        missing = missing_model_assets(self.cell.model) + [m for task in tasks for m in missing_data_assets(task)]
        if missing:
            raise XittError(
                f"This machine is offline (HF_HUB_OFFLINE=1) and the Hugging Face cache lacks: "
                f"{'; '.join(missing)}. Fill the cache first on a machine with network with "
                f"`python -m xitt.prepare <the same overrides>` (or point the model and tasks at local files)."
            )

    # -- stages ------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Run the stages the cell still needs; return its records (one per language)."""
        pending = self.pending_langs()
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

        def build(out: Path) -> dict:
            log.info("Cell %s: ITT on %s (artifact %s)", cell.name, cell.itt["name"], cell.itt_key)
            encoder = self.pretrained_encoder(tokenizer)
            freezing = cell.freezing_for("itt")
            apply_freezing(encoder, freezing["mode"], freezing["k"])
            module = SequenceClassifier(encoder, len(cell.itt["labels"]), cell.itt["hparams"], cell.model["pooling"])
            metrics = self.fit("itt", module, cell.itt, tokenizer, cell.itt["languages"][:1])
            encoder.requires_grad_(True)
            encoder.save_pretrained(out)
            tokenizer.save_pretrained(out)
            return metrics

        return self.store.get_or_build("itt", cell.itt_key, build, {
            "model": cell.model, "itt": cell.itt, "freezing": cell.freezing_for("itt"), "seed": cell.seed})

    def target(self, tokenizer: PreTrainedTokenizerBase, itt_dir: Path | None, train_langs: list[str]) -> Path:
        cell = self.cell
        key = cell.target_key(train_langs)

        def build(out: Path) -> dict:
            log.info("Cell %s: target fine-tuning on %s (%s), artifact %s",
                     cell.name, cell.target["name"], ",".join(train_langs), key)
            encoder = (load_encoder(itt_dir, cell.model.get("encoder_class", "AutoModel"))
                       if itt_dir else self.pretrained_encoder(tokenizer))
            freezing = cell.freezing_for("target")
            apply_freezing(encoder, freezing["mode"], freezing["k"])
            module = SequenceClassifier(encoder, len(cell.target["labels"]), cell.target["hparams"], cell.model["pooling"])
            metrics = self.fit("target", module, cell.target, tokenizer, train_langs)
            encoder.requires_grad_(True)
            encoder.save_pretrained(out)
            tokenizer.save_pretrained(out)
            save_file({name: t.contiguous() for name, t in module.head.state_dict().items()}, str(out / HEAD_FILE))
            return metrics

        return self.store.get_or_build("target", key, build, {
            "start": cell.itt_key or "pretrained", "model": cell.model, "target": cell.target,
            "transfer": cell.transfer, "train_langs": train_langs, "freezing": cell.freezing_for("target"),
            "seed": cell.seed, "labels": cell.target["labels"], "pooling": cell.model["pooling"]})

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
                return
            params = count_parameters(encoder)
            records = [self.write_record(lang, target_key, train_langs, module, data, params, started)
                       for lang in langs]
            log_scores(logger, records)
        finally:
            finish_logger()

    # -- machinery ---------------------------------------------------------------------

    def datamodule(self, task: dict, tokenizer: PreTrainedTokenizerBase, train_langs: Sequence[str] = (),
                   eval_langs: Sequence[str] = ()) -> TaskDataModule:
        hparams = task["hparams"]
        return TaskDataModule(task, tokenizer, train_langs, eval_langs, batch_size=int(hparams["batch_size"]),
                              eval_batch_size=int(task.get("eval_batch_size", 128)),
                              max_length=int(hparams["max_length"]), num_workers=int(self.cfg.get("num_workers", 0)))

    def logger(self, stage: str):
        return stage_logger(self.cfg.logger, cell_name=self.cell.name, stage=stage,
                            group=self.sweep or "single", tags=self.cell.tags, config=self.cell.config)

    def trainer(self, **overrides: Any) -> pl.Trainer:
        return instantiate(self.cfg.trainer)(enable_checkpointing=False, **overrides)

    def fit(self, stage: str, module: SequenceClassifier, task: dict, tokenizer: PreTrainedTokenizerBase,
            train_langs: Sequence[str]) -> dict:
        pl.seed_everything(self.cell.seed, workers=True, verbose=False)
        data = self.datamodule(task, tokenizer, train_langs=train_langs)
        logger = self.logger(stage)
        try:
            trainer = self.trainer(max_epochs=int(task["hparams"]["epochs"]), logger=logger)
            trainer.fit(module, datamodule=data)
        finally:
            finish_logger()
        loss = trainer.callback_metrics.get("train/loss")
        return {"train_loss": None if loss is None else float(loss), "steps": int(trainer.global_step),
                "train_examples": len(data.train_set)}

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
            "sweep": self.sweep, "config": cell.config, "versions": library_versions(),
            "predictions": predictions_file, "eval_s": round(time.time() - started, 3),
            "created": datetime.now(timezone.utc).isoformat(),
        }
        write_json_atomic(self.record_path(lang), record)
        return record


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
