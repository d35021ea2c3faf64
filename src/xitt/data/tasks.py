"""Reading a task's examples, whatever their source, into one shape per task type.

A task is declared once, in its config file (`conf/itt/*.yaml`, `conf/target/*.yaml`):
type, source, languages, splits, fields, label set, hyper-parameters, and one section per
source it can be read from (`hub:` for the Hugging Face hub, `local:` for files on disk).
Every reader returns a `datasets.Dataset` whose columns depend on the task's type
(`task_type`), so that an example means the same in every language and source:

- classification: `id`, the task's text fields, `label` (an index into the task's labels);
- tagging: `id`, `tokens` (the words), `tags` (one label name of the task per word);
- qa: `id`, `question`, `context`, `answers` (`{text: [...], answer_start: [...]}`).

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
from xitt.data.f1_formats import read_conllu, read_panx_tsv, read_squad_json
from xitt.data.readers import read_table

TASK_TYPES = ("classification", "tagging", "qa")
TAGGING_METRICS = ("entity_f1", "word_accuracy")
# Local formats of the tagging and QA tasks: each reader gives one dict per sentence or
# question (xitt.data.f1_formats).
EXAMPLE_READERS = {"panx": read_panx_tsv, "conllu": read_conllu, "squad": read_squad_json}


def task_type(task: Mapping[str, Any]) -> str:
    """The task's type, `task_type` in its config (classification when it says none);
    a tagging task must also name its metric."""
    kind = task.get("task_type") or "classification"
    if kind not in TASK_TYPES:
        raise XittError(f"Task '{task['name']}' has task_type '{kind}'; the task types are "
                        f"{', '.join(TASK_TYPES)}. Fix `task_type` in its config.")
    if kind == "tagging" and task.get("metric") not in TAGGING_METRICS:
        raise XittError(f"Tagging task '{task['name']}' has metric {task.get('metric')!r}; set `metric` in its "
                        f"config to entity_f1 (NER, IOB2 tags) or word_accuracy (POS).")
    return kind


def missing_data_assets(task: Mapping[str, Any], lang: str, split: str) -> list[str]:
    """What this machine lacks to read one language and split of a task (empty when all is
    there): local files that do not exist, or, offline, hub data sets not in the cache."""
    parts = data_parts(task, lang, split)
    missing = [part.describe() for part in parts if isinstance(part, FilePart) and not part.path.is_file()]
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
    unify = {"classification": _unify, "tagging": _unify_tagging, "qa": _unify_qa}[task_type(task)]
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


def _label_lookup(task: Mapping[str, Any], section: Mapping[str, Any], raw_values: list[Any],
                  class_names: list[str] | None, where: str) -> dict[Any, int]:
    """Each raw label value's index in the task's label list: a class name from the data's
    own class list (so integer codes are never read by position), else the value as text;
    then the source's `label_map`, then the task's (its label scheme)."""
    labels = [str(label) for label in task["labels"]]
    source_map = {str(key): str(value) for key, value in (section.get("label_map") or {}).items()}
    task_map = {str(key): str(value) for key, value in (task.get("label_map") or {}).items()}
    lookup, unknown = {}, []
    for value in raw_values:
        name = class_names[value] if class_names and isinstance(value, int) and 0 <= value < len(class_names) else value
        name = str(name).strip()  # " positive " (spaces a spreadsheet or hand edit left) is "positive"
        name = source_map.get(name, name)
        name = task_map.get(name, name)
        if name in labels:
            lookup[value] = labels.index(name)
        else:
            unknown.append(value)
    if unknown:
        shown = ", ".join(repr(value) for value in sorted(unknown, key=str)[:10])
        raise XittError(
            f"Task '{task['name']}': {where} has label values {shown} that are not among the task's "
            f"labels {labels}. Map them in the task config's `label_map` (source value: task label)"
            f"{' (a value of -1 marks an unlabelled test set: evaluate on another split)' if -1 in unknown else ''}."
        )
    return lookup


def _unify(raw: datasets.Dataset, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
           id_prefix: str) -> datasets.Dataset:
    """Rename the source's columns to the task's fields (`columns: {ours: theirs}`) and map
    its labels onto the task's label list; rows without an id get `<split>-<row number>`,
    the same in every language of a parallel data set."""
    columns = _source_columns(raw, task, section, [*task["text_fields"], "label"], where)
    label_column = columns["label"]
    feature = raw.features[label_column]
    class_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    lookup = _label_lookup(task, section, raw.unique(label_column), class_names, where)
    id_column = columns["id"]
    has_id = id_column in raw.column_names

    def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out = {field: batch[columns[field]] for field in task["text_fields"]}
        out["label"] = [lookup[value] for value in batch[label_column]]
        out["id"] = ([str(value) for value in batch[id_column]] if has_id
                     else [f"{id_prefix}-{index:07d}" for index in indices])
        return out

    unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
    return unified.select_columns(["id", *task["text_fields"], "label"])


def _source_columns(raw: datasets.Dataset, task: Mapping[str, Any], section: Mapping[str, Any],
                    wanted: list[str], where: str) -> dict[str, str]:
    """The source's columns that hold the task's fields (`columns: {ours: theirs}`); fails
    naming the missing ones and the setting that maps them."""
    mapping = dict(section.get("columns") or {})
    absent = [field for field in wanted if mapping.get(field, field) not in raw.column_names]
    if absent:
        raise XittError(
            f"Task '{task['name']}': {where} has no column "
            f"{', '.join(repr(mapping.get(field, field)) for field in absent)} (for the task's "
            f"{', '.join(absent)}); its columns are: {', '.join(raw.column_names)}. Map them in the "
            f"task config's `{section.get('declared_at', task['source'])}.columns` ({{task field: source column}})."
        )
    return {field: mapping.get(field, field) for field in [*wanted, "id"]}


def _unify_tagging(raw: datasets.Dataset, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
                   id_prefix: str) -> datasets.Dataset:
    """Words and their tags as label names of the task: a hub's class indices become the
    class names, then the label maps apply, as for classification labels."""
    columns = _source_columns(raw, task, section, ["tokens", "tags"], where)
    feature = raw.features[columns["tags"]]
    inner = getattr(feature, "feature", None)  # a sequence of class labels on the hub
    class_names = inner.names if isinstance(inner, datasets.ClassLabel) else None
    values = sorted({value for tags in raw[columns["tags"]] for value in tags}, key=str)
    lookup = _label_lookup(task, section, values, class_names, where)
    labels = list(task["labels"])
    has_id = columns["id"] in raw.column_names

    def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        return {"id": ([str(value) for value in batch[columns["id"]]] if has_id
                       else [f"{id_prefix}-{index:07d}" for index in indices]),
                "tokens": batch[columns["tokens"]],
                "tags": [[labels[lookup[tag]] for tag in tags] for tags in batch[columns["tags"]]]}

    unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
    return unified.select_columns(["id", "tokens", "tags"])


def _unify_qa(raw: datasets.Dataset, task: Mapping[str, Any], section: Mapping[str, Any], where: str,
              id_prefix: str) -> datasets.Dataset:
    """Questions with their context and gold answers (SQuAD's columns), and the column the
    task is carved by (`split_group`, e.g. XQuAD's article `title`) when it is another one."""
    unified_columns = ["id", "question", "context", "answers"]
    group = [task["split_group"]] if task.get("split_group") not in (None, *unified_columns) else []
    columns = _source_columns(raw, task, section, ["question", "context", "answers", *group], where)
    has_id = columns["id"] in raw.column_names

    def unify(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        return {"id": ([str(value) for value in batch[columns["id"]]] if has_id
                       else [f"{id_prefix}-{index:07d}" for index in indices]),
                **{field: batch[columns[field]] for field in ("question", "context", *group)},
                "answers": [{"text": list(a["text"]), "answer_start": [int(s) for s in a["answer_start"]]}
                            for a in batch[columns["answers"]]]}

    unified = raw.map(unify, batched=True, with_indices=True, remove_columns=raw.column_names, desc=None)
    return unified.select_columns([*unified_columns, *group])


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
    if sample.get("per_class") is None or task_type(task) != "classification":
        raise XittError(f"Task '{task['name']}' has `{setting}: {dict(sample)}`; give `n` (rows to keep) and "
                        f"`seed`{', or `per_class` and `seed`' if task_type(task) == 'classification' else ''}, "
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
