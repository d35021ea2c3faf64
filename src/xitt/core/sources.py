"""Where a task's rows come from: the hub data sets or local files of one language and
split, worked out from the task's declaration alone (no data is read, and neither torch
nor `datasets` is imported). Used by the reader (`xitt.data.tasks`), the offline asset
check, `python -m xitt.prepare` and the artifact keys (a local file's content is part of
the key of every stage that reads it), so none of them can disagree on the files.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xitt import XittError
from xitt.core.taskspec import (HELD_OUT_DEV, TRANSLATE_TRAIN, check_language, split_source,
                                translate_train_section, translate_train_source_lang)


@dataclass(frozen=True)
class HubPart:
    """One split of one configuration of a data set on the Hugging Face hub."""

    path: str
    name: str | None
    split: str | None  # None: the data set configuration as a whole
    revision: str | None = None
    data_dir: str | None = None

    @property
    def dataset(self) -> str:
        """The data set as `prepare` downloads it and the offline check names it."""
        extras = [value for value in (self.name, self.data_dir and f"data_dir={self.data_dir}",
                                      self.revision and f"revision={self.revision}") if value]
        return f"data set {self.path}" + (f" ({', '.join(extras)})" if extras else "")

    def describe(self) -> str:
        return f"{self.dataset} split {self.split}"


@dataclass(frozen=True)
class FilePart:
    """One local file, or the rows of one split in it when a column names the split."""

    path: Path
    file_format: str
    split: str | None = None  # the source's name for the split (file name part or column value)
    fields: tuple[str, ...] | None = None
    split_column: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the part reads: its own, and for BUCC's the two sides its gold pairs name."""
        return (self.path, *bucc_sides(self.path)) if self.file_format == "bucc" else (self.path,)

    def describe(self) -> str:
        where = f" (rows with {self.split_column} = {self.split})" if self.split_column else ""
        return f"local file {self.path}{where}"


def bucc_sides(gold: Path) -> tuple[Path, Path]:
    """The two sentence files of a BUCC gold file (`de-en.training.gold`: `de-en.training.de`
    and `de-en.training.en`, `id<TAB>sentence` lines)."""
    own, pivot = gold.name.split(".")[0].split("-")[:2]
    stem = gold.name.removesuffix(".gold")
    return gold.with_name(f"{stem}.{own}"), gold.with_name(f"{stem}.{pivot}")


def _section(task: Mapping[str, Any]) -> dict[str, Any]:
    """The declaration of the task's current source (`hub:` or `local:`)."""
    source = task["source"]
    section = task.get(source)
    if not section:
        raise XittError(
            f"Task '{task['name']}' is set to source '{source}' but declares no `{source}:` section "
            f"saying where its data is. Add one to its config (see docs/tasks.md) or pick another "
            f"source with `<group>.source=...`."
        )
    return dict(section)


class Placeholders(dict):
    """The values a file pattern, config name or split name may use: {lang}, {lang_name}
    (the language's folder or config name, from the source section's `lang_names`, else
    the task's), {split}, {round}."""

    def __init__(self, task: Mapping[str, Any], lang: str, section: Mapping[str, Any], **values: Any):
        super().__init__(lang=lang, **values)
        self.task, self.section = task, section

    def __missing__(self, key: str) -> str:
        if key == "lang_name":
            names = self.section.get("lang_names") or self.task.get("lang_names") or {}
            if self["lang"] in names:
                return names[self["lang"]]
            raise XittError(
                f"Task '{self.task['name']}' names its files or configs by language name, but its "
                f"`lang_names` has no entry for '{self['lang']}' (it has: {', '.join(names) or 'none'}). "
                f"Add `{self['lang']}: <folder or config name>` to `lang_names` in the task config."
            )
        raise XittError(f"Task '{self.task['name']}' uses the placeholder {{{key}}}, which is not one of "
                        f"{{lang}}, {{lang_name}}, {{split}}, {{round}}. Fix the pattern in its config.")


def fill(template: Any, values: Placeholders) -> str | None:
    return None if template is None else str(template).format_map(values)





def carves_split(task: Mapping[str, Any], split: str) -> bool:
    """Whether `split` is one of the two halves cut out of `split_from` (see `split_note`)."""
    return task.get("split_ratio") is not None and split in (task["train_split"], task["test_split"])


def _source_split(task: Mapping[str, Any], lang: str, split: str) -> tuple[dict[str, Any], str | None]:
    """The source section to read (with the task's translate-train declaration applied, or
    the split's own section where it is read from a data set of its own) and the source's
    own name for the split."""
    section = _section(task)
    if split == TRANSLATE_TRAIN:
        if lang == translate_train_source_lang(task):
            # nothing to translate: the source language trains on the original training set
            return _source_split(task, lang, task[TRANSLATE_TRAIN].get("original_split", "train"))
        section.update(translate_train_section(task))
        return section, section.get("split")
    splits = section.get("splits") or {}
    if split not in splits:
        raise XittError(
            f"Task '{task['name']}' ({task['source']} source) has no '{split}' split; it has: "
            f"{', '.join(splits) or 'none'}. Use one of them (`<group>.train_split=...`, "
            f"`<group>.test_split=...`), carve a train and a test split out of one with "
            f"`<group>.split_ratio=0.7 <group>.split_from=<split>`, or read it from another data "
            f"set with `+<group>.{task['source']}.splits.{split}={{...}}` (docs/tasks.md)."
        )
    own = split_source(task, split)
    if own is None:
        return section, str(splits[split])
    source_split = str(own.pop("split", split))
    return _own_section(task, lang, split, own), source_split


def _own_section(task: Mapping[str, Any], lang: str, split: str, own: dict[str, Any]) -> dict[str, Any]:
    """The section of a split read from a data set of its own (its entry in `splits`: that
    data set's section, complete, plus `split` and `languages`), for one language: refused
    for a language the data set does not have (XQuAD trains on English SQuAD only). It
    carries `declared_at`, where the config declares it, for messages."""
    own["declared_at"] = f"{task['source']}.splits.{split}"
    setting = f"<group>.{own['declared_at']}"
    languages = own.pop("languages", None)
    if languages is not None and lang not in languages:
        raise XittError(
            f"Task '{task['name']}' reads its {split} split from {own.get('path') or 'its own files'}, which "
            f"has {', '.join(map(str, languages))} only, not '{lang}' (`{setting}.languages`). Train in one of "
            f"those languages (`transfer=zero_shot` trains in English), or point `{setting}` at a data set "
            f"that has '{lang}'."
        )
    if task["source"] == "hub" and not own.get("path"):
        raise XittError(
            f"Task '{task['name']}' reads its {split} split from a data set of its own, but `{setting}` names "
            f"no `path` (the data set's hub id, e.g. rajpurkar/squad). Add `{setting}.path=<hub id>`."
        )
    return own


def data_parts(task: Mapping[str, Any], lang: str, split: str) -> list[HubPart | FilePart]:
    """Where the rows of one language and split of a task come from (several parts when
    the split is a concatenation, e.g. ANLI's rounds). Carved splits point at the split they
    are carved from; demo tasks need no data and have no parts."""
    check_language(task, lang)
    if task["source"] == "demo":
        return []
    return locate(task, lang, split)[1]


def locate(task: Mapping[str, Any], lang: str, split: str) -> tuple[dict[str, Any], list[HubPart | FilePart]]:
    """The source section that describes the rows (columns, label map) and their parts."""
    if split == HELD_OUT_DEV:
        split = task["train_split"]
    if carves_split(task, split):
        split = task["split_from"]
    section, source_split = _source_split(task, lang, split)
    templates = [source_split, section.get("name"), section.get("pattern"), section.get("data_dir")]
    rounds = task.get("rounds") if any("{round}" in str(t) for t in templates if t) else [None]
    if not rounds:
        raise XittError(f"Task '{task['name']}' reads one split per round but `rounds` is empty; "
                        f"set e.g. `itt.rounds=[1,2,3]`.")
    parts: list[HubPart | FilePart] = []
    for round_ in rounds:
        values = Placeholders(task, lang, section, round=round_)
        split_name = fill(source_split, values)
        values["split"] = split_name
        if task["source"] == "hub":
            parts.append(HubPart(path=section["path"], name=fill(section.get("name"), values), split=split_name,
                                 revision=section.get("revision"), data_dir=fill(section.get("data_dir"), values)))
            continue
        folder = section.get("path") or task.get("path")  # a split's own section may name its folder
        if not folder:
            raise XittError(
                f"Task '{task['name']}' reads local files but has no `path`: set it to the folder "
                f"that holds them, e.g. `target.path=/data/{task['name']}` (or `itt.path=...`)."
            )
        pattern = fill(section["pattern"], values)
        file_format = section.get("format") or Path(pattern).suffix.lstrip(".")
        fields = section.get("fields")
        parts.append(FilePart(path=Path(folder) / pattern, file_format=file_format, split=split_name,
                              fields=tuple(fields) if fields is not None else None,
                              split_column=section.get("split_column")))
    return section, parts
