"""Content keys: an artifact's identity is the hash of exactly what determines it; and the one
classification of every setting a cell accepts by how it bears on what a stage stores.

A setting is in exactly one class (tests/test_keys.py fails for an accepted setting in none,
so a new Lightning argument cannot slip in unclassified):

- SHAPES: can change a training stage's weights (or which epoch it stores): in that stage's
  key, in the cell's key (so in its records' folder) and in the record's `training` label
  when it differs from `trainer=cpu`'s value;
- SAME_BY_DESIGN: the same model by design, not bit for bit (how many devices share the
  work, kernels): not keyed; recorded in each artifact's meta.json and in every record
  (`run_settings`), and tests train with and without it to the same F1 (tests/test_ddp.py,
  tests/test_keys.py);
- EVALUATION: changes what an evaluation reads, not the model: in the result key;
- NO_EFFECT: cannot change what is stored (progress bar, logging, checkpoint interval,
  workers, where files go): in no key; tests/test_keys.py trains with each changed and
  gets the same weights bit for bit;
- REFUSED: a stored stage cannot honour it (a time limit, a development-only run): any value
  but the neutral one is refused before work starts (`xitt.core.validate`);
- SET_BY_STAGES: each stage sets it itself from a setting that is keyed (the epochs from the
  task's hyper-parameters, ...): refused in the config (`xitt.core.validate`).
"""

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Bump when the meaning of a stored artifact changes, so that old ones are not reused.
# 2: seeded heads, reshuffled epochs, resumable random state; 3: length-grouped batches;
# 4: every weight-shaping trainer setting keyed, zero-shot targets keyed without their test
# languages, local data files and checkpoints keyed by content. Artifacts of an older format
# are left alone (never found, never deleted) and built again under the new keys.
STORE_FORMAT = 4

SHAPES, SAME_BY_DESIGN, EVALUATION, NO_EFFECT, REFUSED, SET_BY_STAGES = (
    "shapes", "same_by_design", "evaluation", "no_effect", "refused", "set_by_stages")

# Every key the `trainer` group accepts, and so the one list of them: Lightning's Trainer
# arguments (pytorch_lightning 2.6; Lightning's own list needs torch, which validation does not
# load, so it is copied here and tests/test_keys.py compares it with the Trainer's signature),
# xitt's own (`xitt.core.validate.XITT_TRAINER_RULES`) and Hydra's two.
TRAINER_SETTINGS: dict[str, tuple[str, str]] = {
    # -- shapes the weights --
    "precision": (SHAPES, "the arithmetic of every step"),
    "accumulate_grad_batches": (SHAPES, "batches per optimizer step: it multiplies the effective batch"),
    "gradient_clip_val": (SHAPES, "rescales large gradients"),
    "gradient_clip_algorithm": (SHAPES, "how they are rescaled (norm or value), when clipping is on"),
    "limit_train_batches": (SHAPES, "training batches per epoch"),
    "max_steps": (SHAPES, "stops training after this many optimizer steps"),
    "min_steps": (SHAPES, "trains at least this many steps"),
    "min_epochs": (SHAPES, "holds off early stopping"),
    "limit_val_batches": (SHAPES, "the development batches whose score decides which epoch is stored"),
    "val_check_interval": (SHAPES, "when the development set is scored, so which model is stored"),
    "plugins": (SHAPES, "precision, checkpoint-IO or environment plugins: keyed as written"),
    "compile": (SHAPES, "torch.compile: the same model by design, but keyed rather than checked (a compile "
                        "takes minutes on a CPU, too long for the suite)"),
    # -- the same model by design, not bit for bit: recorded --
    "accelerator": (SAME_BY_DESIGN, "the device type"),
    "devices": (SAME_BY_DESIGN, "ranks share each batch; the effective batch stays the task's batch_size"),
    "num_nodes": (SAME_BY_DESIGN, "machines: ranks share each batch, as devices"),
    "strategy": (SAME_BY_DESIGN, "how ranks share the model and its gradients (DDP, FSDP, DeepSpeed)"),
    "deterministic": (SAME_BY_DESIGN, "deterministic kernels"),
    "benchmark": (SAME_BY_DESIGN, "cuDNN's choice of convolution kernels"),
    "sync_batchnorm": (SAME_BY_DESIGN, "batch-norm statistics over ranks (the encoders have no batch norm)"),
    "activation_checkpointing": (SAME_BY_DESIGN, "activations recomputed in the backward pass, with the same "
                                                 "random state"),
    # -- what an evaluation reads --
    "limit_predict_batches": (EVALUATION, "the test batches scored"),
    # -- cannot change the weights --
    "log_every_n_steps": (NO_EFFECT, "how often the loss is logged"),
    "enable_progress_bar": (NO_EFFECT, "console output"),
    "enable_model_summary": (NO_EFFECT, "console output"),
    "num_sanity_val_steps": (NO_EFFECT, "every stage sets 0 (a partial pass would enter the development curve)"),
    "limit_test_batches": (NO_EFFECT, "xitt runs no test loop (evaluation is a prediction loop)"),
    "inference_mode": (NO_EFFECT, "prediction without autograd either way"),
    "detect_anomaly": (NO_EFFECT, "checks the backward pass; it changes no value"),
    "profiler": (NO_EFFECT, "timings"),
    "reload_dataloaders_every_n_epochs": (NO_EFFECT, "the DataModule's batches are a function of seed and epoch"),
    "default_root_dir": (NO_EFFECT, "where Lightning would write (the stages give it a logger and checkpoints)"),
    "enable_autolog_hparams": (NO_EFFECT, "logging"),
    "checkpoint_every_n_epochs": (NO_EFFECT, "resumable checkpoints hold the random state: a resumed stage trains "
                                             "the same model"),
    "checkpoint_min_interval_s": (NO_EFFECT, "as checkpoint_every_n_epochs"),
    "gpu_memory_gb": (NO_EFFECT, "read by the memory planner only"),
    "_target_": (NO_EFFECT, "Hydra: the Trainer class"),
    "_partial_": (NO_EFFECT, "Hydra: how the Trainer is made"),
    # -- refused: a stored stage cannot honour them --
    "max_time": (REFUSED, "a time limit: what is stored would depend on the machine's speed"),
    "fast_dev_run": (REFUSED, "a development run of a few batches, not a model to store"),
    "overfit_batches": (REFUSED, "a debugging run on a few batches, not a model to store"),
    "barebones": (REFUSED, "a mode without the callbacks that select, checkpoint and resume the model"),
    "model_registry": (REFUSED, "an upload of checkpoints to Lightning's model registry: xitt keeps its models "
                                "in its artifact store and needs no network"),
    # -- set by each stage itself, from (a value here would be overridden unseen) --
    "max_epochs": (SET_BY_STAGES, "the task's epochs (`itt.hparams.epochs`, `target.hparams.epochs`)"),
    "logger": (SET_BY_STAGES, "the `logger` group (`logger=csv`, `logger=wandb`, `logger=none`)"),
    "callbacks": (SET_BY_STAGES, "xitt (checkpoints, model selection, early stopping)"),
    "enable_checkpointing": (SET_BY_STAGES, "model selection (`selection.itt`, `selection.target`)"),
    "check_val_every_n_epoch": (SET_BY_STAGES, "`selection.every_n_epochs`"),
    "use_distributed_sampler": (SET_BY_STAGES, "xitt (its DataModule splits the batches over the ranks itself)"),
}
# What an absent trainer setting means: Lightning's default (its signature's; compared by
# tests/test_keys.py) or xitt's. A REFUSED setting may only have this value.
DEFAULTS: dict[str, Any] = {
    "precision": "32-true", "accumulate_grad_batches": 1, "gradient_clip_val": None, "gradient_clip_algorithm": None,
    "limit_train_batches": None, "max_steps": -1, "min_steps": None, "min_epochs": None, "limit_val_batches": None,
    "val_check_interval": None, "plugins": None, "compile": False, "limit_predict_batches": None,
    "max_time": None, "fast_dev_run": False, "overfit_batches": 0.0, "barebones": False, "model_registry": None,
}
# `trainer=cpu`'s values (conf/trainer/cpu.yaml): a record's `training` label names the
# weight-shaping settings that differ from them.
REFERENCE = {"gradient_clip_val": 1.0}
# The spellings of one precision (lightning_fabric reads "32" as "32-true", ...).
PRECISION_NAMES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}

# The top-level settings of a cell (conf/train.yaml), and the class of each group's settings.
CELL_SETTINGS: dict[str, tuple[str, str]] = {
    "size": (SHAPES, "the model's size"),
    "model": (SHAPES, "every model setting: checkpoint (a local one by content), pooling, layers kept"),
    "itt": (SHAPES, "the ITT task: see TASK_SETTINGS"),
    "target": (SHAPES, "the target task: see TASK_SETTINGS"),
    "freezing": (SHAPES, "what stays frozen, in the stages it applies to"),
    "transfer": (SHAPES, "the transfer mode, training language, few-shot draw"),
    "selection": (SHAPES, "which epoch a stage stores"),
    "seed": (SHAPES, "the random state of heads, dropout and batch order"),
    "trainer": (SHAPES, "each setting classified in TRAINER_SETTINGS"),
    "scored_model": (SHAPES, "the stored target model whose encoder a retrieval target scores (set by "
                             "`evaluate.py ckpt=<target artifact> target=<retrieval task>`): its key is the "
                             "model scored, in the cell key and the result keys"),
    "target_lang": (EVALUATION, "the languages scored: a zero-shot target model is shared by all of them"),
    "num_workers": (NO_EFFECT, "DataLoader worker processes: the batches are made the same"),
    "store_lock_timeout_s": (NO_EFFECT, "how long a job waits for another's artifact"),
    "logger": (NO_EFFECT, "where metrics are logged"),
    "launcher": (NO_EFFECT, "where jobs run"),
    "paths": (NO_EFFECT, "where outputs go"),
    "experiment": (NO_EFFECT, "a named preset of the other settings, which are classified themselves"),
}
# A model family's settings (conf/model/*.yaml) that do not shape the model; every other one
# does (checkpoint, pooling, layers kept, encoder class, a tiny model's shape and config).
MODEL_SETTINGS: dict[str, tuple[str, str]] = {
    "shape": (NO_EFFECT, "the memory planner's figures (parameters, hidden size, layers, ...)"),
}
# A task's settings that do not shape a model trained on it; every other one does (a setting
# not listed here, also one added with `+itt.<name>=...`, is keyed).
TASK_SETTINGS: dict[str, tuple[str, str]] = {
    "languages": (NO_EFFECT, "the task's languages: the ones a stage trains in are keyed as its training "
                             "languages, the ones scored are in the result keys"),
    "eval_batch_size": (EVALUATION, "test batches: padding differs, the scores may differ in the last digits"),
    "test_sample": (EVALUATION, "the test examples scored"),
}


def content_key(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (dict order does not matter)."""
    text = json.dumps({"format": STORE_FORMAT, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _effective(name: str, value: Any) -> Any:
    """A setting's value with equal spellings made one (`32` is `32-true`, an absent limit
    is the whole epoch), so that two spellings of one model share its key."""
    if name == "precision":
        return "32-true" if value is None else PRECISION_NAMES.get(str(value), str(value))
    if name in ("limit_train_batches", "limit_val_batches", "limit_predict_batches", "val_check_interval"):
        return 1.0 if value is None else value
    if name == "gradient_clip_val" and value in (None, 0, 0.0):
        return None
    return value


def _settings_of(trainer: Mapping[str, Any], kind: str) -> dict[str, Any]:
    values = {name: _effective(name, trainer.get(name, DEFAULTS.get(name)))
              for name, (cls, _) in TRAINER_SETTINGS.items() if cls == kind}
    if kind == SHAPES and values.get("gradient_clip_val") is None:
        values["gradient_clip_algorithm"] = None  # without clipping there is nothing to rescale
    elif kind == SHAPES:
        values["gradient_clip_algorithm"] = values.get("gradient_clip_algorithm") or "norm"
    return values


def training_settings(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer settings that shape a stage's weights, each with its effective value: part
    of every training stage's key."""
    return _settings_of(trainer, SHAPES)


def same_by_design_settings(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that give the same model by design (devices, strategy, kernels): kept in
    meta.json and the records, not in keys."""
    return _settings_of(trainer, SAME_BY_DESIGN)


def training_label(trainer: Mapping[str, Any]) -> str:
    """The weight-shaping trainer settings that differ from `trainer=cpu`'s, as `name=value`
    joined by commas (`precision=bf16-mixed,gradient_clip_val=0.001`); '' for none. It names
    a record's setting in reports and tells job folders of one command apart."""
    reference = _settings_of({**DEFAULTS, **REFERENCE}, SHAPES)
    chosen = training_settings(trainer)
    return ",".join(f"{name}={_shown(chosen[name])}" for name in sorted(chosen) if chosen[name] != reference[name])


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return content_key(value)[:8]  # a plugin object: too long for a folder name
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def model_key_view(model: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved model as it enters the keys: every setting but those that do not shape it."""
    return {name: value for name, value in model.items() if name not in MODEL_SETTINGS}


def task_key_view(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task as it enters the key of a model trained on it: every setting but those that do
    not shape the model (`TASK_SETTINGS`)."""
    return {name: value for name, value in task.items() if name not in TASK_SETTINGS}


def evaluation_settings(trainer: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """What an evaluation reads beyond the target model: part of every result key."""
    return {**{name: task.get(name) for name, (cls, _) in TASK_SETTINGS.items() if cls == EVALUATION},
            **_settings_of(trainer, EVALUATION), "test_split": task["test_split"],
            "max_length": task["hparams"]["max_length"]}
