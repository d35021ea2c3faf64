"""The task types xitt trains and scores, one unit each (`xitt/tasktypes/<type>/`): what a
task of the type reads, how it is checked, trained, predicted and scored. A task names its
type in its config (`task_type`, classification when it names none); a predictions file
names it too. Adding a type is adding a unit here (see `base.TaskType`).
"""

from collections.abc import Mapping
from typing import Any

from xitt import XittError
from xitt.tasktypes.base import TaskType
from xitt.tasktypes.classification import Classification
from xitt.tasktypes.qa import QA
from xitt.tasktypes.retrieval import Retrieval
from xitt.tasktypes.tagging import Tagging

TYPES: dict[str, TaskType] = {unit.name: unit for unit in (Classification(), Tagging(), QA(), Retrieval())}
DEFAULT = "classification"


def _unit(name: str, what: str, fix: str) -> TaskType:
    if name not in TYPES:
        raise XittError(f"{what} has task_type {name!r}; the task types are {', '.join(TYPES)}. {fix}")
    return TYPES[name]


def task_type(task: Mapping[str, Any]) -> TaskType:
    """A task's type (its unit); `xitt.core.validate` checks the type's own settings of every
    task of a cell with `TaskType.check` before anything runs."""
    return _unit(task.get("task_type") or DEFAULT, f"Task '{task['name']}'", "Fix `task_type` in its config.")


def predictions_type(predictions: Mapping[str, Any]) -> TaskType:
    """The type of a predictions file (files without `task_type` are classification's)."""
    return _unit(predictions.get("task_type", DEFAULT), "A predictions file", "It was not written by xitt.")


def prediction_scores(predictions: Mapping[str, Any]) -> dict[str, float]:
    """The scores a record carries (0-100), from its predictions file: the type's primary
    score and companions, and `n` (examples: texts, sentences or questions). The evaluation
    scores exactly the file it wrote; a report recomputes the same numbers from it."""
    return predictions_type(predictions).scores(predictions)


def degenerate_predictions(predictions: Mapping[str, Any], split: str, lang: str) -> str | None:
    """One sentence naming what was seen when the predictions of `split` ("test",
    "development") in `lang` give every example the same output (one class for every text,
    one tag for every word, an empty answer to every question), else None. Such a model has
    learnt nothing of its input, whatever its F1 says (a constant class scores 16.7
    macro-F1 on three balanced classes, which reads like a weak model, not a broken one): it
    is kept but flagged wherever its numbers appear."""
    return predictions_type(predictions).degenerate(predictions, split, lang)
