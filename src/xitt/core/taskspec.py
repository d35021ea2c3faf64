"""A task as a cell declares it: its config resolved to a plain dict, the languages it has,
its machine-translated training sets, and how its splits were made. Only the declaration:
reading the rows is `xitt.data.tasks`' job."""

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xitt import XittError

SOURCES = ("demo", "hub", "local")
TRANSLATE_TRAIN = "translate_train"
# The shuffle that carves a train/test split out of one split is fixed, not the run's
# seed: every cell, seed and language must see the same split (XNLI's languages are the
# same pairs translated, so one permutation of row numbers keeps them parallel).
SPLIT_SHUFFLE_SEED = 0
# The development split that model selection scores, when the task has no usable one of its
# own: a share (`dev_ratio`, default 10%) of the training split held out by another fixed
# shuffle (by `split_group` where the task has one), and then not trained on.
HELD_OUT_DEV = "held_out_dev"
DEV_SHUFFLE_SEED = 1
DEFAULT_DEV_RATIO = 0.1
# Set on a task by a cell that validates nothing (`selection.every_n_epochs=0`): train on the
# whole training split.
NO_HELD_OUT_DEV = "no_held_out_dev"


def resolve_task(node: DictConfig) -> dict[str, Any]:
    """A task's config as a plain dict, with its label scheme applied; a scheme the task
    does not declare fails here, listing the ones it does, before anything is read."""
    schemes = node.get("label_schemes")
    if schemes is not None and node.get("label_scheme") not in schemes:
        raise XittError(
            f"Task '{node.name}' has no label scheme '{node.get('label_scheme')}'. Its schemes are: "
            f"{', '.join(schemes)}; choose one with `<group>.label_scheme=<name>` (e.g. `target.label_scheme=stars`)."
        )
    task = OmegaConf.to_container(node, resolve=True)
    if task.get("source", "demo") not in SOURCES:
        raise XittError(f"Task '{task['name']}' has source '{task['source']}'; the sources are "
                        f"{', '.join(SOURCES)} (e.g. `target.source=local target.path=/data/{task['name']}`).")
    return task


def task_languages(task: Mapping[str, Any]) -> list[str]:
    return list(task["languages"])


def check_language(task: Mapping[str, Any], lang: str) -> None:
    """A language the task has (or its `pivot_lang`, read as the other side of every pair)."""
    if lang not in task_languages(task) and lang != task.get("pivot_lang"):
        raise XittError(
            f"Task '{task['name']}' has no language '{lang}'. Its languages are: "
            f"{', '.join(task_languages(task))}. Pick some of them with `target_lang.langs=[...]`."
        )


def translate_train_source_lang(task: Mapping[str, Any]) -> str:
    """The language the translations were made from (it trains on the original data)."""
    return (task.get(TRANSLATE_TRAIN) or {}).get("from_lang", "en")


def with_translated_training(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as translate-train trains on it: its training split is the machine-
    translated one of each language (the original one for the language translated from)."""
    translate_train_section(task)
    declared = {**task[TRANSLATE_TRAIN], "original_split": task["train_split"]}
    return {**task, "train_split": TRANSLATE_TRAIN, TRANSLATE_TRAIN: declared}


def translate_train_section(task: Mapping[str, Any]) -> dict[str, Any]:
    """Where the task's machine-translated training sets are for its current source (the
    overrides of its source section); fails, saying what to do, for a task without them."""
    declared = task.get(TRANSLATE_TRAIN) or {}
    if task.get("source") not in declared:
        offered = [source for source in SOURCES if source in declared]
        raise XittError(
            f"Task '{task['name']}' has no machine-translated training sets for source "
            f"'{task['source']}' ({'it declares them for: ' + ', '.join(offered) if offered else 'it declares none'}), "
            f"so `transfer=translate_train` cannot run on it. Use `transfer=zero_shot` or "
            f"`transfer=target_finetune`, or declare where the translations are under "
            f"`{TRANSLATE_TRAIN}.{task['source']}` in the task config (see docs/tasks.md)."
        )
    return dict(declared[task["source"]])


def split_source(task: Mapping[str, Any], split: str) -> dict[str, Any] | None:
    """The source section of a split that is read from a data set of its own, where the
    entry of `split` in the current source's `splits` is a mapping rather than the source's
    name for the split (XQuAD and MLQA train on SQuAD v1.1: `hub.splits.train: {path:
    rajpurkar/squad, ...}`); None for a split of the task's own data set."""
    section = task.get(task.get("source")) or {}
    entry = (section.get("splits") or {}).get(split)
    return dict(entry) if isinstance(entry, Mapping) else None


def carves_dev(task: Mapping[str, Any]) -> bool:
    """Whether the development split is held out of the training split: the task declares
    none (`dev_split: null`), or the one it declares is read for training or testing (a
    dev split that is also the test split, or the split train and test are carved from,
    would select the model on test examples or their translations)."""
    if task.get(NO_HELD_OUT_DEV):
        return False
    declared = task.get("dev_split")
    used = {task.get("train_split"), task.get("test_split")}
    if task.get("split_ratio") is not None:
        used.add(task.get("split_from"))
    return declared is None or declared in used


def without_held_out_dev(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as a stage that validates nothing trains on it: the whole training split,
    no development rows held out (the mark is part of the task, so of the artifact keys)."""
    return {**task, NO_HELD_OUT_DEV: True} if carves_dev(task) else dict(task)


def dev_split(task: Mapping[str, Any]) -> str:
    """The split model selection scores: the task's own, or the held-out share of training."""
    return HELD_OUT_DEV if carves_dev(task) else str(task["dev_split"])


def dev_ratio(task: Mapping[str, Any]) -> float:
    return float(task.get("dev_ratio") or DEFAULT_DEV_RATIO)


def split_note(task: Mapping[str, Any]) -> str | None:
    """How the task's splits were made where one was carved from another or is read from
    another data set (kept in every result record); None when train and test are the
    source's own and the development split is the task's own too."""
    notes = []
    grouping = (f"groups of rows with one {task['split_group']}" if task.get("split_group") else "rows")
    ratio = task.get("split_ratio")
    read = [task.get("train_split"), task.get("test_split"), task.get("split_from") if ratio is not None else None]
    for split in dict.fromkeys(filter(None, read)):
        own = split_source(task, split)
        if own is not None:
            where = (f"{own.get('path')}{' (' + own['name'] + ')' if own.get('name') else ''}, split "
                     f"{own.get('split', split)}" if task["source"] == "hub"
                     else f"{own.get('pattern')} under {own.get('path') or task.get('path')}")
            notes.append(f"{split} is read from {where}")
    if ratio is not None:
        ratio = float(ratio)
        notes.append(f"{task['train_split']} = {ratio:.0%} and {task['test_split']} = {1 - ratio:.0%} of the "
                     f"'{task['split_from']}' split of the {task['source']} data, by a fixed shuffle "
                     f"(seed {SPLIT_SHUFFLE_SEED}) of its {grouping}")
    if carves_dev(task) and task.get("train_split"):  # (a retrieval task trains nothing: no selection)
        notes.append(f"the development split (model selection) = {dev_ratio(task):.0%} of "
                     f"{task['train_split']}, held out of training by a fixed shuffle (seed {DEV_SHUFFLE_SEED}) "
                     f"of its {grouping}")
    return "; ".join(notes) if notes else None
