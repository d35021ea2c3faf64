"""Reading a task's examples, whatever their source, into one shape.

A task is declared once, in its config file (`conf/itt/*.yaml`, `conf/target/*.yaml`):
source, languages, splits, text fields, label set, hyper-parameters. Every reader returns a
`datasets.Dataset` with the columns `id`, the task's text fields, and `label` as an index
into the task's label list, so that a class means the same in every language and source.
"""

from collections.abc import Mapping
from typing import Any

import datasets

from xitt import XittError
from xitt.data import demo


def task_languages(task: Mapping[str, Any]) -> list[str]:
    return list(task["languages"])


def missing_data_assets(task: Mapping[str, Any]) -> list[str]:
    """What an offline machine lacks to read this task (empty when all is there)."""
    if task["source"] != "hub":
        return []
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        return []
    hub = task["hub"]
    names = [str(hub["name"]).format(lang=lang) for lang in task_languages(task)] if hub.get("name") else [None]
    missing = []
    for name in names:
        try:
            datasets.load_dataset_builder(hub["path"], name)
        except Exception:  # any failure here means: not usable offline
            missing.append(f"data set {hub['path']}" + (f" ({name})" if name else ""))
    return missing


def load_split(task: Mapping[str, Any], lang: str, split: str) -> datasets.Dataset:
    """One split of one language of a task, with unified columns and labels."""
    if lang not in task_languages(task):
        raise XittError(
            f"Task '{task['name']}' has no language '{lang}'. Its languages are: "
            f"{', '.join(task_languages(task))}. Pick some of them with `target_lang.langs=[...]`."
        )
    source = task["source"]
    if source == "demo":
        return datasets.Dataset.from_dict(demo.demo_rows(task["corpus"], lang, split))
    if source == "hub":
        return _read_hub(task, lang, split)
    raise XittError(f"Task '{task['name']}' has source '{source}'; known sources are demo and hub.")


def _read_hub(task: Mapping[str, Any], lang: str, split: str) -> datasets.Dataset:
    """A split from the Hugging Face hub (or its local cache when offline)."""
    hub = task["hub"]
    config_name = hub.get("name")
    if config_name:
        config_name = str(config_name).format(lang=lang)
    try:
        raw = datasets.load_dataset(hub["path"], config_name, split=split)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as error:
        raise XittError(
            f"Could not load data set '{hub['path']}'{f' ({config_name})' if config_name else ''} "
            f"split '{split}' for task '{task['name']}': {error}. When offline, fill the cache "
            f"first with `python -m xitt.prepare <the same overrides>` on a machine with network."
        ) from None
    return _unify(raw, task)


def _unify(raw: datasets.Dataset, task: Mapping[str, Any]) -> datasets.Dataset:
    """Rename text columns to the task's fields and map labels onto the task's label list
    (by name where the source has class names, so that integer codes cannot be misread)."""
    columns = dict(task.get("columns") or {})
    for ours, theirs in columns.items():
        if theirs != ours:
            raw = raw.rename_column(theirs, ours)
    labels = list(task["labels"])
    feature = raw.features["label"]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    if names is not None:
        unknown = [name for name in names if name not in labels]
        if unknown:
            raise XittError(
                f"Task '{task['name']}' declares labels {labels} but its data has {names}; "
                f"fix `labels` in the task config."
            )
        order = [labels.index(name) for name in names]
        raw = raw.map(lambda row: {"label": order[row["label"]]})
    if "id" not in raw.column_names:
        raw = raw.add_column("id", [str(i) for i in range(len(raw))])
    return raw.select_columns(["id", *task["text_fields"], "label"])
