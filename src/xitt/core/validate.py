"""Every setting of a composed cell checked before anything is loaded or trained: one
declaration of the rules, one paragraph per failure naming the value, the rule and the fix.

Called by `Cell.from_config`, so the pipeline, the planner and `xitt.prepare` refuse the
same configs. Rules that need the data (few-shot k against the smallest class, columns,
labels) are checked when the data is first read, still before training
(`CellRunner.check_data`).
"""

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xitt import XittError
from xitt.core.keys import DEFAULTS, REFUSED, SET_BY_STAGES, TRAINER_SETTINGS
from xitt.tasktypes import task_type
from xitt.tasktypes.classification import POOLINGS

# A setting: how to read it (int, float, bool or str: see `typed`), the rule it must meet, the
# rule in words.
Rule = tuple[Callable[[Any], Any], Callable[[Any], bool], str]
HPARAMS: dict[str, Rule] = {
    "lr": (float, lambda v: v > 0, "a finite number > 0 (e.g. 2e-5)"),
    "epochs": (int, lambda v: v >= 1, "a whole number >= 1"),
    "batch_size": (int, lambda v: v >= 1, "a whole number >= 1"),
    "max_length": (int, lambda v: v >= 1, "a whole number >= 1 (tokens per example)"),
    "warmup_ratio": (float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "weight_decay": (float, lambda v: v >= 0, "a finite number >= 0"),
    "dropout": (float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "encoder_dropout": (float, lambda v: 0 <= v < 1, "a number in [0, 1), or null for the checkpoint's own"),
}
# Settings that may be null (the checkpoint's or Lightning's default), beside their rule.
NULLABLE = ("encoder_dropout", "gradient_clip_val", "gradient_clip_algorithm", "log_every_n_steps",
            "num_sanity_val_steps", "enable_progress_bar", "enable_model_summary", "benchmark", "min_epochs",
            "min_steps", "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
            "val_check_interval", "store_lock_timeout_s")

# The values Lightning's Trainer accepts where it names them (its arguments themselves are
# `xitt.core.keys.TRAINER_SETTINGS`). xitt checks them here, with the other settings, because
# Lightning checks them only when a stage builds its Trainer (after the tokenizer and earlier
# stages may have been stored), some with a traceback and some not at all
# (`log_every_n_steps=0` divides by zero at the first step). Lightning keeps these lists
# private (or in registries that need torch, which validation does not load), so they are
# copied here; tests/test_validation.py compares each with Lightning's own.
# lightning_fabric's `_PRECISION_INPUT`, as text (`trainer.precision=32` composes to an int).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "32", "16", "bf16", "64")
# The accelerator registry's names, and the two the Trainer adds (`gpu`: cuda or mps).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# The strategy registry's names, and `auto`; or a strategy object (`_target_: ...Strategy`).
STRATEGIES = (
    "auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true", "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true", "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2",
    "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme",
    "fsdp", "fsdp_cpu_offload", "single_device", "single_tpu", "single_xla", "xla", "xla_debug")
# A switch: true or false as YAML and overrides write them (1 or "yes" would be read as text).
FLAG: Rule = (bool, lambda v: True, "true or false")
# A number of batches (whole, >= 0) or a share of them (a fraction in [0, 1]).
BATCHES: Rule = (float, lambda v: 0 <= v <= 1 or v.is_integer() and v > 1,
                 "a whole number of batches or a fraction in [0, 1]")
# The Trainer arguments with a rule: the others are objects Lightning reads as they are
# (profiler, plugins, max_time, default_root_dir, ...). accelerator, strategy and devices
# take several kinds of value and have checks of their own (`check_trainer`).
TRAINER_RULES: dict[str, Rule] = {
    "num_nodes": (int, lambda v: v >= 1, "a whole number >= 1"),
    "precision": (str, lambda v: v in PRECISIONS, f"one of Lightning's precisions: {', '.join(PRECISIONS)}"),
    "min_epochs": (int, lambda v: v >= 0, "a whole number >= 0"),
    "max_steps": (int, lambda v: v == -1 or v >= 1, "a whole number >= 1, or -1 for no limit"),
    "min_steps": (int, lambda v: v >= 0, "a whole number >= 0"),
    "limit_train_batches": BATCHES, "limit_val_batches": BATCHES, "limit_test_batches": BATCHES,
    "limit_predict_batches": BATCHES, "overfit_batches": BATCHES,
    "val_check_interval": (float, lambda v: 0 < v <= 1 or v.is_integer() and v > 1,
                           "a whole number of batches >= 1 or a fraction of an epoch in (0, 1]"),
    "num_sanity_val_steps": (int, lambda v: v >= -1, "a whole number >= 0, or -1 for all"),
    "log_every_n_steps": (int, lambda v: v >= 1, "a whole number >= 1 (steps between logged losses)"),
    "enable_progress_bar": FLAG,
    "enable_model_summary": FLAG,
    "accumulate_grad_batches": (int, lambda v: v >= 1, "a whole number >= 1 (batches per optimizer step)"),
    "gradient_clip_val": (float, lambda v: v >= 0, "a finite number >= 0, or null for no clipping"),
    "gradient_clip_algorithm": (str, lambda v: v in ("norm", "value"), "norm or value"),
    "benchmark": FLAG,
    "inference_mode": FLAG,
    "detect_anomaly": FLAG,
    "barebones": FLAG,
    "sync_batchnorm": FLAG,
    "reload_dataloaders_every_n_epochs": (int, lambda v: v >= 0, "a whole number >= 0"),
    "enable_autolog_hparams": FLAG,
}
# xitt's own keys of the `trainer` group, read by the stages and the planner, not passed on.
XITT_TRAINER_RULES: dict[str, Rule] = {
    "activation_checkpointing": FLAG,
    "compile": FLAG,
    "checkpoint_every_n_epochs": (int, lambda v: v >= 0,
                                  "a whole number >= 0 (epochs between checkpoints; 0: only when SLURM warns)"),
    "checkpoint_min_interval_s": (float, lambda v: v >= 0, "a finite number of seconds >= 0"),
    "gpu_memory_gb": (float, lambda v: v > 0, "a finite number of GB > 0"),
}
# Hydra's keys of the group: how the Trainer is made from it.
HYDRA_KEYS = ("_target_", "_partial_")
# How long a job waits for another job's artifact before it gives up (null: the default).
STORE_LOCK_TIMEOUT: Rule = (float, lambda v: v > 0, "a finite number of seconds > 0, or null for the default")
# Lightning's `seed_everything` range (lightning_fabric.utilities.seed: numpy's 32-bit seeds).
SEED_RANGE = (0, 2**32 - 1)
# The top-level keys of a composed cell (train.yaml's groups and plain keys).
TOP_LEVEL = ("size", "model", "itt", "target", "target_lang", "freezing", "transfer", "trainer", "logger",
             "launcher", "paths", "experiment", "seed", "num_workers", "store_lock_timeout_s", "selection",
             "scored_model")  # the last: set by `evaluate.py ckpt=<target artifact> target=<retrieval task>`
TRANSFER_KEYS = ("mode", "train_lang", "k", "sample_seed", "hparams")
FREEZING_KEYS = ("mode", "k", "stages")
FREEZING_MODES = ("none", "embeddings", "bottom_k", "probe")
FREEZING_STAGES = ("itt", "target")
SELECTION_KEYS = ("itt", "target", "every_n_epochs", "patience")
SELECTION_MODES = ("best", "last")
# Names that become parts of folder names: a letter or digit first, then letters, digits
# and . _ + - (no `/`, so no name leaves the folder it is made in).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _fail(message: str) -> None:
    raise XittError(message)


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean `{close[0]}`? " if close else ""


def typed(value: Any, reader: Callable[[Any], Any]) -> Any:
    """`value` read as `reader`'s type, or None when it is not one: 1.7 is no int, True no
    number, 1 no flag, and inf, nan and numbers beyond a float's range (1e400) no float: no
    setting of xitt or of the libraries it calls is valid infinite."""
    if reader is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or value is None:
        return None
    if reader is str:  # names such as a precision; `trainer.precision=32` composes to an int
        return str(value) if isinstance(value, (str, int)) else None
    if reader is int:
        if isinstance(value, float) and not value.is_integer():
            return None
        try:
            return int(str(value)) if not isinstance(value, float) else int(value)
        except ValueError:
            return None
    try:
        read = reader(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if isinstance(read, float) and not math.isfinite(read) else read


def _shown(value: Any) -> str:
    """A value as an override writes it (true, null)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_value(setting: str, value: Any, rule: Rule) -> None:
    """One setting of its type and in its range; null where the setting may be (`NULLABLE`)."""
    reader, holds, words = rule
    if value is None and setting.rsplit(".", 1)[-1] in NULLABLE:
        return
    read = typed(value, reader)
    if read is None or not holds(read):
        _fail(f"`{setting}={_shown(value)}` is not valid: it must be {words}. Set it with `{setting}=<value>`.")


def check_hparams(hparams: Mapping[str, Any], where: str, task: Mapping[str, Any] | None = None) -> None:
    """Each hyper-parameter known, of its type and in its range; a setting of the task put
    among them (`target.hparams.doc_stride`) is named where it belongs."""
    for name, value in hparams.items():
        if name not in HPARAMS and task is not None and name in task:
            group = where.rsplit(".", 1)[0]
            _fail(f"`{where}.{name}` is a setting of the task, not a hyper-parameter, so it would be ignored "
                  f"there. Set `{group}.{name}={_shown(value)}` instead.")
        if name not in HPARAMS:
            _fail(f"`{where}.{name}` is not a hyper-parameter xitt knows; {_closest(name, list(HPARAMS))}"
                  f"The known ones are: {', '.join(HPARAMS)}. Fix the name (a misspelt key would "
                  f"otherwise be ignored and the default used).")
        check_value(f"{where}.{name}", value, HPARAMS[name])


def check_whole(value: Any, name: str, minimum: int, words: str, maximum: int | None = None) -> int:
    read = typed(value, int)
    if read is None or read < minimum or maximum is not None and read > maximum:
        _fail(f"`{name}={_shown(value)}` is not valid: it must be {words}. Set it with `{name}=<value>`.")
    return read


def _is_object(value: Any) -> bool:
    """A config node Hydra instantiates (`_target_: ...`), such as a strategy object."""
    return OmegaConf.is_dict(value) and "_target_" in value


def check_trainer(trainer: Any) -> None:
    """The `trainer` group: every key an argument of Lightning's Trainer or one of xitt's,
    each valid, so that no stage fails when it builds its Trainer."""
    for key in map(str, trainer.keys()):
        if key not in TRAINER_SETTINGS:
            _fail(f"`trainer.{key}` is neither an argument of Lightning's Trainer nor one of xitt's trainer "
                  f"settings ({', '.join(XITT_TRAINER_RULES)}); {_closest(key, list(TRAINER_SETTINGS))}Fix or "
                  f"remove the override.")
        kind, why = TRAINER_SETTINGS[key]
        if kind == SET_BY_STAGES:
            _fail(f"`trainer.{key}` is set by each stage itself, from {why}, so a value here would "
                  f"be overridden unseen. Remove `trainer.{key}` and set that instead.")
        if kind == REFUSED and trainer.get(key) not in (DEFAULTS[key], None):
            _fail(f"`trainer.{key}={_shown(trainer.get(key))}` cannot be honoured by a stored stage ({why}): xitt "
                  f"stores every trained model for reuse by later cells and runs. Remove it; to train less, "
                  f"shorten the task (`<group>.hparams.epochs`, `+<group>.train_sample={{n: 1000, seed: 1}}`) or "
                  f"limit it reproducibly (`+trainer.limit_train_batches=0.1`, `+trainer.max_steps=100`): those "
                  f"are part of the artifact keys.")
        rule = TRAINER_RULES.get(key) or XITT_TRAINER_RULES.get(key)
        if rule:
            check_value(f"trainer.{key}", trainer.get(key), rule)
    accelerator = trainer.get("accelerator", "auto")
    if not _is_object(accelerator) and _shown(accelerator) not in ACCELERATORS:
        _fail(f"`trainer.accelerator={_shown(accelerator)}` is not an accelerator Lightning knows: use one of "
              f"{', '.join(ACCELERATORS)} (or an accelerator object with `_target_`), e.g. `trainer=gpu` or "
              f"`trainer.accelerator=cpu`.")
    strategy = trainer.get("strategy", "auto")
    if not _is_object(strategy) and _shown(strategy) not in STRATEGIES:
        _fail(f"`trainer.strategy={_shown(strategy)}` is not a strategy Lightning knows; "
              f"{_closest(_shown(strategy), list(STRATEGIES))}Its registry has auto, ddp, ddp_spawn, fsdp, "
              f"deepspeed_stage_2, deepspeed_stage_3 and more; or give a strategy object (`_target_: ...`), as "
              f"conf/trainer/ddp.yaml and fsdp.yaml do (`trainer=ddp`, `trainer=fsdp`).")
    devices = trainer.get("devices", "auto")
    if OmegaConf.is_list(devices):
        if not devices or any(typed(index, int) is None or typed(index, int) < 0 for index in devices):
            _fail(f"`trainer.devices={_shown(list(devices))}` is not valid: a list of devices holds their "
                  f"indices (whole numbers >= 0, e.g. `trainer.devices=[0,1]`); or give a count.")
    elif devices != "auto":
        check_whole(devices, "trainer.devices", 1, "a whole number >= 1, a list of device indices, or auto")
    precision = _shown(trainer.get("precision"))
    if _shown(accelerator) == "cpu" and precision in ("16", "16-mixed"):
        _fail(f"`trainer.precision={precision}` (float16 mixed precision) needs a GPU; on CPU Lightning would "
              f"silently train in bfloat16 instead, under a key that says float16. Use "
              f"`trainer.precision=bf16-mixed` (or 32-true) on CPU, or `trainer=gpu` on a GPU machine.")


def check_sample(task: Mapping[str, Any], group: str) -> None:
    """A task's `train_sample`, `test_sample` and `dev_sample` draws: counts >= 1 and a seed
    numpy's generator takes (>= 0)."""
    for setting in ("train_sample", "test_sample", "dev_sample"):
        sample = task.get(setting)
        if not isinstance(sample, Mapping):
            continue
        for count in ("n", "per_class"):
            if sample.get(count) is not None:
                check_whole(sample[count], f"{group}.{setting}.{count}", 1, "a whole number >= 1")
        check_whole(sample.get("seed"), f"{group}.{setting}.seed", 0, "a whole number >= 0")


def check_name(value: Any, what: str, setting: str) -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        _fail(f"{what} '{value}' cannot name a folder: names start with a letter or digit and use only "
              f"letters, digits and . _ + - (no `/`, no `..`). Fix `{setting}`.")


def local_config(model: Mapping[str, Any], name: str = "config.json") -> dict[str, Any]:
    """A local checkpoint's config.json (or another of its JSON files), or {} when the model is
    not a folder on this machine."""
    config = Path(str(model.get("name_or_path", ""))) / name
    return json.loads(config.read_text()) if config.is_file() else {}


# Tokenizers that declare no limit say this (transformers' VERY_LARGE_INTEGER is 1e30).
NO_TOKENIZER_LIMIT = 10**9


def position_limit(model: Mapping[str, Any]) -> int | None:
    """The longest input (in tokens) the encoder takes, when its config is on this machine:
    the tiny models' built-in table, or a local checkpoint's own files: the tokenizer's
    `model_max_length` where it is below the position table (RoBERTa's table reserves its
    first pad_token_id + 1 rows: 514 rows, 512 inputs), else `max_position_embeddings`."""
    if model.get("source") == "scratch":
        return 512  # XLMRobertaConfig(max_position_embeddings=514), less RoBERTa's offset of 2
    positions = local_config(model).get("max_position_embeddings")
    if not positions:
        return None  # relative positions (T5): no hard limit
    declared = local_config(model, "tokenizer_config.json").get("model_max_length")
    if isinstance(declared, (int, float)) and 0 < declared < min(int(positions), NO_TOKENIZER_LIMIT):
        return int(declared)
    return int(positions)


def encoder_layers(model: Mapping[str, Any]) -> int | None:
    """The transformer layers of a local checkpoint (its config.json), when it is on this machine."""
    settings = local_config(model)
    layers = settings.get("num_hidden_layers") or settings.get("num_layers") or settings.get("n_layers")
    return int(layers) if layers else None


def check_selection(selection: Any) -> None:
    """The `selection` settings: known keys, modes best|last, a validation interval that
    best-model selection and early stopping can use."""
    for key in selection.keys():
        if key not in SELECTION_KEYS:
            _fail(f"`selection.{key}` is not a model-selection setting; {_closest(str(key), list(SELECTION_KEYS))}"
                  f"The settings are: {', '.join(SELECTION_KEYS)}.")
    for stage in ("itt", "target"):
        if selection.get(stage) not in SELECTION_MODES:
            _fail(f"`selection.{stage}={selection.get(stage)}` is not valid: a stage stores its `best` model on "
                  f"the development set or its `last` one. Set `selection.{stage}=best` or `=last`.")
    every = check_whole(selection.get("every_n_epochs"), "selection.every_n_epochs", 0,
                        "a whole number >= 0 (epochs between validations; 0: none)")
    patience = selection.get("patience")
    if patience is not None:
        check_whole(patience, "selection.patience", 1, "a whole number >= 1 (validations without improvement), "
                                                       "or null for no early stopping")
    if every == 0 and ("best" in (selection.get("itt"), selection.get("target")) or patience is not None):
        _fail("`selection.every_n_epochs=0` turns the validation loop off, so there is no development score to "
              "pick the best model by or to stop early on. Set `selection.itt=last selection.target=last "
              "selection.patience=null`, or validate every n epochs (`selection.every_n_epochs=1`).")


def check_cell(cfg: Any, model: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]],
               eval_langs: list[str]) -> None:
    """The checks of a composed cell that need no data. `tasks` maps each config group with a
    task (`itt`, `target`) to the task as resolved."""
    unknown = [key for key in cfg.keys() if key not in TOP_LEVEL]
    if unknown:
        _fail(f"`{unknown[0]}` is not a setting of a cell; {_closest(str(unknown[0]), list(TOP_LEVEL))}"
              f"The settings are: {', '.join(TOP_LEVEL)}. Remove or fix the override.")
    check_whole(cfg.seed, "seed", SEED_RANGE[0], f"a whole number in [{SEED_RANGE[0]}, {SEED_RANGE[1]}] (the "
                f"range of Lightning's `seed_everything`)", maximum=SEED_RANGE[1])
    check_whole(cfg.get("num_workers", 0), "num_workers", 0, "a whole number >= 0 (DataLoader workers)")
    check_value("store_lock_timeout_s", cfg.get("store_lock_timeout_s"), STORE_LOCK_TIMEOUT)
    check_trainer(cfg.trainer)
    check_name(model["family"], "The model family", "model.family")
    check_name(str(model["size"]), "The model size", "size")
    check_selection(cfg.selection)
    for group, task in tasks.items():
        check_name(task["name"], f"The {group} task name", f"{group}.name")
        ratio = typed(task.get("dev_ratio"), float) if task.get("dev_ratio") is not None else 0.5
        if ratio is None or not 0 < ratio < 1:
            _fail(f"`{group}.dev_ratio={task.get('dev_ratio')}` is not valid: it is the share of the training "
                  f"split held out for model selection and must lie strictly between 0 and 1 (e.g. 0.1).")
        check_hparams(task["hparams"], f"{group}.hparams", task)
        task_type(task).check(task, group)  # the type's own settings (a tagging metric, QA's windows)
        check_sample(task, group)
        limit = position_limit(model)
        if limit is not None and int(task["hparams"]["max_length"]) > limit:
            _fail(f"`{group}.hparams.max_length={task['hparams']['max_length']}` is longer than the encoder "
                  f"takes: {model['family']} {model['size']} has {limit} positions. Set "
                  f"`{group}.hparams.max_length` to at most {limit}.")
    for lang in eval_langs:
        check_name(lang, "The language", "target_lang.langs")
    if not eval_langs:
        _fail("`target_lang.langs=[]` names no language to evaluate, so the cell would train for nothing. "
              "Name some (`target_lang.langs=[de,fr]`) or evaluate all of the task's (`target_lang=all`).")
    transfer = cfg.transfer
    for key in transfer.keys():
        if key not in TRANSFER_KEYS:
            _fail(f"`transfer.{key}` is not a transfer setting; {_closest(str(key), list(TRANSFER_KEYS))}"
                  f"The settings are: {', '.join(TRANSFER_KEYS)}.")
    if transfer.get("hparams"):
        check_hparams(transfer.hparams, "transfer.hparams")
    if transfer.get("sample_seed") is not None:
        check_whole(transfer.sample_seed, "transfer.sample_seed", 0, "a whole number >= 0 (the few-shot draw's seed)")
    for key in cfg.freezing.keys():
        if key not in FREEZING_KEYS:
            _fail(f"`freezing.{key}` is not a freezing setting; {_closest(str(key), list(FREEZING_KEYS))}"
                  f"The settings are: {', '.join(FREEZING_KEYS)}.")
    check_whole(cfg.freezing.get("k", 0), "freezing.k", 0, "a whole number >= 0 (layers frozen)")
    if cfg.freezing.get("mode") not in FREEZING_MODES:
        _fail(f"`freezing.mode={_shown(cfg.freezing.get('mode'))}` is not a freezing mode: use one of "
              f"{', '.join(FREEZING_MODES)} (`freezing=none`, `freezing=embeddings`, `freezing=bottom_k freezing.k=4`, "
              f"`freezing=probe`).")
    stages = cfg.freezing.get("stages") or []
    if not OmegaConf.is_list(stages) or any(stage not in FREEZING_STAGES for stage in stages):
        _fail(f"`freezing.stages={_shown(stages)}` is not valid: it lists the training stages the freezing applies "
              f"to, some of {', '.join(FREEZING_STAGES)} (e.g. `freezing.stages=[itt,target]`).")
    if model.get("pooling") not in POOLINGS:
        _fail(f"`model.pooling={_shown(model.get('pooling'))}` is not a pooling a classification head knows: use "
              f"one of {', '.join(POOLINGS)} (`cls`: the first token, `mean`: the mean of the real tokens, `last`: the "
              f"last real token, for left-padding models such as XLNet).")
    if model.get("keep_layers") is not None:
        check_whole(model["keep_layers"], "model.keep_layers", 1, "a whole number >= 1 (bottom layers kept)")
        full = encoder_layers(model)
        if full is not None and int(model["keep_layers"]) > full:
            _fail(f"`model.keep_layers={model['keep_layers']}` but {model['name_or_path']} has {full} layers; "
                  f"pick 1..{full}.")
    layers = model.get("keep_layers") or model.get("num_hidden_layers") or encoder_layers(model)
    if cfg.freezing.get("mode") == "bottom_k" and layers is not None and int(cfg.freezing.k) > int(layers):
        _fail(f"`freezing.k={cfg.freezing.k}` but {model['family']} {model['size']} has {layers} layers; "
              f"pick 0..{layers}.")
