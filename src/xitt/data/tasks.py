"""Reading a task's examples, whatever their source, into one shape per task type.

A task is declared once, in its config file (`conf/itt/*.yaml`, `conf/target/*.yaml`):
type, source, languages, splits, fields, label set, hyper-parameters, and one section per
source it can be read from (`hub:` for the Hugging Face hub, `local:` for files on disk).
Every reader returns a `datasets.Dataset` in the columns of the task's type (its unit's
`unify`: `xitt.tasktypes`), so that an example means the same in every language and source.

docs/tasks.md describes the declaration field by field.

Where the rows of one (language, split) come from is worked out once, by
`xitt.core.sources.data_parts`, and used by the reader, by the offline asset check, by
`python -m xitt.prepare` and by the artifact keys, so none of them can disagree.
"""

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np

from xitt import XittError
from xitt.core.sources import FilePart, HubPart, Placeholders, carves_split, data_parts, fill, locate
from xitt.core.taskspec import DEV_SHUFFLE_SEED, HELD_OUT_DEV, SPLIT_SHUFFLE_SEED, carves_dev, check_language, dev_ratio, dev_split
from xitt.data import demo
from xitt.data.f1_formats import read_bucc, read_conllu, read_panx_tsv, read_squad_json
from xitt.data.readers import read_table
from xitt.tasktypes import task_type

# Local formats of the tagging and QA tasks: each reader gives one dict per sentence or
# question (xitt.data.f1_formats).
EXAMPLE_READERS = {"panx": read_panx_tsv, "conllu": read_conllu, "squad": read_squad_json, "bucc": read_bucc}


def missing_data_assets(task: Mapping[str, Any], lang: str, split: str) -> list[str]:
    """What this machine lacks to read one language and split of a task (empty when all is
    there): local files that do not exist, or, offline, hub data sets not in the cache."""
    parts = data_parts(task, lang, split)
    missing = [part.describe() if path == part.path else f"local file {path}" for part in parts
               if isinstance(part, FilePart) for path in part.files if not path.is_file()]
    hub_parts = [part for part in parts if isinstance(part, HubPart)]
    if hub_parts:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE or datasets.config.HF_DATASETS_OFFLINE:
            for part in hub_parts:
                try:
                    datasets.load_dataset_builder(part.path, part.name, revision=part.revision, data_dir=part.data_dir)
                except Exception:  # any failure here means: not usable offline
                    missing.append(part.dataset)
    return list(dict.fromkeys(missing))


# -- reading -----------------------------------------------------------------------------


def load_split(task: Mapping[str, Any], lang: str, split: str) -> datasets.Dataset:
    """One split of one language of a task, with unified columns and labels; carved out of
    another split when the task has a `split_ratio`, without the held-out development rows
    when it has no development split of its own (`HELD_OUT_DEV` reads those), and reduced to
    a sample when it has a `train_sample`, `test_sample` or `dev_sample`."""
    check_language(task, lang)
    if split == HELD_OUT_DEV or (split == task["train_split"] and carves_dev(task)):
        training = _source_rows(task, lang, task["train_split"])
        rows = _cut(task, training, dev_ratio(task), DEV_SHUFFLE_SEED, first=split == HELD_OUT_DEV)
    else:
        rows = _source_rows(task, lang, split)
    for sampled_split, setting in ((task.get("train_split"), "train_sample"), (task.get("test_split"), "test_sample"),
                                   (dev_split(task), "dev_sample")):
        if split == sampled_split and task.get(setting):
            rows = _sample(task, rows, lang, setting)
    return rows


def _source_rows(task: Mapping[str, Any], lang: str, split: str) -> datasets.Dataset:
    """A split's rows as the source has them, or its share of the split it is carved from."""
    unify = task_type(task).unify
    if task["source"] == "demo":
        demo_split = task["split_from"] if carves_split(task, split) else split
        whole = datasets.Dataset.from_dict(demo.demo_rows(task["corpus"], lang, demo_split))
    else:
        section, parts = locate(task, lang, split)
        tables = [unify(_read_hub(task, part) if isinstance(part, HubPart) else _read_file(task, part, section),
                        task, section, where=part.describe(), id_prefix=part.split or part.path.stem)
                  for part in parts]
        whole = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
        if section.get("id_prefix"):  # one data set holds every language (TyDiQA on the hub): keep this one's
            prefix = fill(section["id_prefix"], Placeholders(task, lang, section))
            whole = whole.filter(lambda row: row["id"].startswith(prefix))
    if not carves_split(task, split):
        return whole
    ratio = float(task["split_ratio"])
    if not 0 < ratio < 1:
        raise XittError(f"Task '{task['name']}' has split_ratio={ratio}; it is the training share "
                        f"of the carved split and must lie strictly between 0 and 1 (e.g. 0.7).")
    return _cut(task, whole, ratio, SPLIT_SHUFFLE_SEED, first=split == task["train_split"])


def _read_hub(task: Mapping[str, Any], part: HubPart) -> datasets.Dataset:
    """A split from the Hugging Face hub (or its local cache when offline)."""
    try:
        return datasets.load_dataset(part.path, part.name, split=part.split, revision=part.revision,
                                     data_dir=part.data_dir)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as error:
        raise XittError(
            f"Could not load {part.describe()} for task '{task['name']}': {error}. When offline, fill "
            f"the cache first with `python -m xitt.prepare <the same overrides>` on a machine with "
            f"network, or read the task from local files (`<group>.source=local <group>.path=...`)."
        ) from None


def _read_file(task: Mapping[str, Any], part: FilePart, section: Mapping[str, Any]) -> datasets.Dataset:
    """A local file through the reader of its format; the rows of one split when a column
    names the split."""
    if not part.path.is_file():
        folder = part.path.parent
        where = (f"there is no file {part.path.name} in {folder}" if folder.is_dir()
                 else f"the folder {folder} does not exist")
        declared_at = section.get("declared_at", "local")
        folder_setting = (f"`<group>.{declared_at}.path=...`" if "declared_at" in section
                          else "`target.path=...` or `itt.path=...`")
        raise XittError(
            f"Task '{task['name']}' cannot read its local data: {where}. It reads "
            f"'{section['pattern']}' under {section.get('path') or task.get('path')}. Point {folder_setting} at "
            f"the folder that holds these files, or change the file-name pattern with "
            f"`<group>.{declared_at}.pattern=...`."
        )
    if part.file_format in EXAMPLE_READERS:
        return datasets.Dataset.from_list(EXAMPLE_READERS[part.file_format](part.path))
    columns = read_table(part.path, part.file_format, part.fields)
    if part.split_column:
        if part.split_column not in columns:
            raise XittError(f"Task '{task['name']}' picks its splits by the column '{part.split_column}', "
                            f"which {part.path} lacks (its columns: {', '.join(columns)}). "
                            f"Fix `local.split_column` in the task config.")
        keep = [index for index, value in enumerate(columns[part.split_column]) if str(value) == part.split]
        columns = {name: [values[index] for index in keep] for name, values in columns.items()}
    return datasets.Dataset.from_dict(columns)


# -- carving and sampling ----------------------------------------------------------------



def _cut(task: Mapping[str, Any], whole: datasets.Dataset, ratio: float, seed: int, first: bool) -> datasets.Dataset:
    """One side of a fixed cut of `whole`: the first `ratio` of its shuffled groups (`first`),
    or the rest. Rows of one group (`split_group`: consecutive rows with the same value of
    that field, e.g. XNLI's three hypotheses of a premise) stay on one side, so that no test
    or development pair shares its premise, or in another language its translation, with a
    training pair."""
    group_field = task.get("split_group")
    if group_field:
        values = whole[group_field]
        groups = np.cumsum([0] + [int(a != b) for a, b in zip(values, values[1:])])
    else:
        groups = np.arange(len(whole))
    order = np.random.default_rng(seed).permutation(int(groups[-1]) + 1 if len(whole) else 0)
    cut = int(round(ratio * len(order)))
    kept = set((order[:cut] if first else order[cut:]).tolist())
    return whole.select([row for row, group in enumerate(groups) if group in kept])


def _sample(task: Mapping[str, Any], rows: datasets.Dataset, lang: str, setting: str) -> datasets.Dataset:
    """The rows that `train_sample` / `test_sample` keep: `{n: k, seed: s}` keeps k rows
    (sentences, questions) drawn with seed s; `{per_class: k, seed: s}` (classification)
    keeps k of each class. A draw of k is a prefix of the draw of a larger k with the same
    seed, so growing k adds examples rather than replacing them."""
    sample = task[setting]
    rng = np.random.default_rng(int(sample["seed"]))
    if sample.get("n") is not None:
        return rows.select(sorted(rng.permutation(len(rows))[:int(sample["n"])].tolist()))
    has_classes = task_type(task).has_classes
    if sample.get("per_class") is None or not has_classes:
        raise XittError(f"Task '{task['name']}' has `{setting}: {dict(sample)}`; give `n` (rows to keep) and "
                        f"`seed`{', or `per_class` and `seed`' if has_classes else ''}, "
                        f"e.g. `+target.{setting}={{n: 2000, seed: 1}}`.")
    per_class = int(sample["per_class"])
    labels = np.asarray(rows["label"])
    chosen = []
    for index, name in enumerate(task["labels"]):
        candidates = np.flatnonzero(labels == index)
        if len(candidates) < per_class:
            raise XittError(
                f"Task '{task['name']}' ({lang}) has {len(candidates)} training examples of class "
                f"'{name}', fewer than the {per_class} per class asked for; lower `transfer.k`."
            )
        chosen.extend(rng.permutation(candidates)[:per_class].tolist())
    return rows.select(sorted(chosen))
