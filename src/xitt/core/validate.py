"""Every setting of a composed cell checked before anything is loaded or trained: one
declaration of the rules, one paragraph per failure naming the value, the rule and the fix.

Called by `Cell.from_config`, so the pipeline, the planner and `xitt.prepare` refuse the
same configs. Rules that need the data (few-shot k against the smallest class, columns,
labels) are checked when the data is first read, still before training
(`CellRunner.check_data`).
"""

import difflib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xitt import XittError

# A training hyper-parameter: how to read it, the rule it must meet, the rule in words.
Rule = tuple[Callable[[Any], Any], Callable[[Any], bool], str]
HPARAMS: dict[str, Rule] = {
    "lr": (float, lambda v: v > 0, "a number > 0 (e.g. 2e-5)"),
    "epochs": (int, lambda v: v >= 1, "a whole number >= 1"),
    "batch_size": (int, lambda v: v >= 1, "a whole number >= 1"),
    "max_length": (int, lambda v: v >= 1, "a whole number >= 1 (tokens per example)"),
    "warmup_ratio": (float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "weight_decay": (float, lambda v: v >= 0, "a number >= 0"),
    "dropout": (float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "encoder_dropout": (float, lambda v: 0 <= v < 1, "a number in [0, 1), or null for the checkpoint's own"),
    "doc_stride": (int, lambda v: v >= 1, "a whole number >= 1 (tokens shared by two QA windows)"),
    "max_answer_length": (int, lambda v: v >= 1, "a whole number >= 1 (tokens)"),
    "n_best": (int, lambda v: v >= 1, "a whole number >= 1"),
}
# The top-level keys of a composed cell (train.yaml's groups and plain keys).
TOP_LEVEL = ("size", "model", "itt", "target", "target_lang", "freezing", "transfer", "trainer", "logger",
             "launcher", "paths", "experiment", "seed", "num_workers", "store_lock_timeout_s", "selection")
TRANSFER_KEYS = ("mode", "train_lang", "k", "sample_seed", "hparams")
FREEZING_KEYS = ("mode", "k", "stages")
SELECTION_KEYS = ("itt", "target", "every_n_epochs", "patience")
SELECTION_MODES = ("best", "last")
# Names that become parts of folder names: a letter or digit first, then letters, digits
# and . _ + - (no `/`, so no name leaves the folder it is made in).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# Encoders whose position table reserves its first pad_token_id + 1 rows (RoBERTa's
# offset): usable positions are max_position_embeddings - pad_token_id - 1.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")


def _fail(message: str) -> None:
    raise XittError(message)


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean `{close[0]}`? " if close else ""


def typed(value: Any, reader: Callable[[Any], Any]) -> Any:
    """`value` read as `reader`'s type, or None when it is not one (1.7 is no int, True no number)."""
    if isinstance(value, bool) or value is None:
        return None
    if reader is int:
        if isinstance(value, float) and not value.is_integer():
            return None
        try:
            return int(str(value)) if not isinstance(value, float) else int(value)
        except ValueError:
            return None
    try:
        return reader(value)
    except (TypeError, ValueError):
        return None


def check_hparams(hparams: Mapping[str, Any], where: str) -> None:
    """Each hyper-parameter known, of its type and in its range."""
    for name, value in hparams.items():
        if name not in HPARAMS:
            _fail(f"`{where}.{name}` is not a hyper-parameter xitt knows; {_closest(name, list(HPARAMS))}"
                  f"The known ones are: {', '.join(HPARAMS)}. Fix the name (a misspelt key would "
                  f"otherwise be ignored and the default used).")
        reader, rule, words = HPARAMS[name]
        if value is None and name == "encoder_dropout":
            continue
        read = typed(value, reader)
        if read is None or not rule(read):
            _fail(f"`{where}.{name}={value}` is not valid: it must be {words}. Set it with "
                  f"`{where}.{name}=<value>`.")


def check_whole(value: Any, name: str, minimum: int, words: str) -> int:
    read = typed(value, int)
    if read is None or read < minimum:
        _fail(f"`{name}={value}` is not valid: it must be {words}. Set it with `{name}=<value>`.")
    return read


def check_name(value: Any, what: str, setting: str) -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        _fail(f"{what} '{value}' cannot name a folder: names start with a letter or digit and use only "
              f"letters, digits and . _ + - (no `/`, no `..`). Fix `{setting}`.")


def local_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """A local checkpoint's config.json, or {} when the model is not a folder on this machine."""
    config = Path(str(model.get("name_or_path", ""))) / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def position_limit(model: Mapping[str, Any]) -> int | None:
    """The longest input (in tokens) the encoder takes, when its config is on this machine:
    the tiny models' built-in table, or a local checkpoint's config.json."""
    if model.get("source") == "scratch":
        return 512  # XLMRobertaConfig(max_position_embeddings=514), less RoBERTa's offset of 2
    settings = local_config(model)
    positions = settings.get("max_position_embeddings")
    if not positions:
        return None  # relative positions (T5): no hard limit
    offset = int(settings.get("pad_token_id") or 0) + 1 if settings.get("model_type") in OFFSET_POSITIONS else 0
    return int(positions) - offset


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
    check_whole(cfg.seed, "seed", 0, "a whole number >= 0")
    check_whole(cfg.get("num_workers", 0), "num_workers", 0, "a whole number >= 0 (DataLoader workers)")
    devices = cfg.trainer.get("devices", 1)
    if devices != "auto" and not OmegaConf.is_list(devices):
        check_whole(devices, "trainer.devices", 1, "a whole number >= 1, a list of device indices, or auto")
    check_name(model["family"], "The model family", "model.family")
    check_name(str(model["size"]), "The model size", "size")
    check_selection(cfg.selection)
    for group, task in tasks.items():
        check_name(task["name"], f"The {group} task name", f"{group}.name")
        ratio = typed(task.get("dev_ratio"), float) if task.get("dev_ratio") is not None else 0.5
        if ratio is None or not 0 < ratio < 1:
            _fail(f"`{group}.dev_ratio={task.get('dev_ratio')}` is not valid: it is the share of the training "
                  f"split held out for model selection and must lie strictly between 0 and 1 (e.g. 0.1).")
        check_hparams(task["hparams"], f"{group}.hparams")
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
    for key in cfg.freezing.keys():
        if key not in FREEZING_KEYS:
            _fail(f"`freezing.{key}` is not a freezing setting; {_closest(str(key), list(FREEZING_KEYS))}"
                  f"The settings are: {', '.join(FREEZING_KEYS)}.")
    check_whole(cfg.freezing.get("k", 0), "freezing.k", 0, "a whole number >= 0 (layers frozen)")
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
