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
    if lang not in task_languages(task):
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


def split_note(task: Mapping[str, Any]) -> str | None:
    """How the task's train and test splits were made when one was carved from another
    (kept in every result record); None when both are the source's own."""
    ratio = task.get("split_ratio")
    if ratio is None:
        return None
    ratio = float(ratio)
    return (f"{task['train_split']} = {ratio:.0%} and {task['test_split']} = {1 - ratio:.0%} of the "
            f"'{task['split_from']}' split of the {task['source']} data, by a fixed shuffle "
            f"(seed {SPLIT_SHUFFLE_SEED}) of its "
            + (f"groups of rows with one {task['split_group']}" if task.get("split_group") else "rows"))
