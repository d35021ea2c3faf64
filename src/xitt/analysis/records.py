"""Finding and reading the result records that a grid leaves behind.

The report has to work on whatever folder a user points it at: a results root, a Hydra
sweep folder (each job directory lists its records in ``records.txt``), or several of
them.  So records are recognised by content, not by location: any ``*.json`` file with
the record fields is one, wherever it lies, and other JSON files (Hydra, W&B, model
configs) are passed over.  Nothing is lost silently: a listed record that is missing, a
broken record, a missing predictions file and a record superseded by a later evaluation
of the same run are all kept in ``Results.problems`` / ``Results.superseded`` for the
report to show.

Each record's ``score`` is its task type's primary score (the field its ``metric`` names:
``f1``, or ``accuracy`` for a type scored by accuracy); gains, trends and power read it.
Per-example predictions are reduced to what that score is computed from, example by
example (``Predictions``), and sorted by example id, so position i is the same example in
every record of one test set; each test set gets an identifier (target task plus a hash
of its ids) that the bootstrap uses to resample paired records together.

A record's ``warnings`` (one text, sentences joined by ``WARNINGS_SEPARATOR``) are those it
was written with (degenerate predictions on the development or test set,
``xitt.tasktypes.degenerate_predictions``) plus what the same check finds in its predictions file, so
that records written before the check existed are flagged too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xitt import XittError
from xitt.core.keys import training_label
from xitt.core.records import PREDICTIONS_SUFFIX, Record, primary_score
from xitt.tasktypes import DEFAULT, TYPES, degenerate_predictions, predictions_type

NO_ITT = "none"
RECORDS_LIST = "records.txt"
# A record is a few kilobytes; larger JSON files (tokenizers, datasets) are not parsed.
MAX_RECORD_BYTES = 2_000_000

# The record schema is `xitt.core.records.Record`: the fields a file needs to count as a
# record, and the others with what stands in for them when a record lacks them.
REQUIRED_FIELDS = Record.REQUIRED
OPTIONAL_FIELDS = {name: float("nan") if name in Record.NUMBERS else ""
                   for name in Record.columns() if name not in REQUIRED_FIELDS}
_NUMBER_FIELDS = Record.NUMBERS

# The columns that say which comparison a record belongs to.  A *setting* is one curve
# of gain against size; a *cell* adds the size and the intermediate task; a *run* is one
# trained model evaluated on one language.
# Model selection (best / last epoch) is part of a setting: the same cells selected two ways
# are two curves, not one cell evaluated twice; so are the trainer settings that shaped the
# models (`training`: `precision=bf16-mixed`, ...), so models trained two ways are never mixed;
# and so is the stored target model whose encoder a retrieval target scored (`scored_model`:
# `target:demo`; '' for the cell's own ITT or pretrained encoder). The score (`metric`) is one
# too: a retrieval target run in both modes (`target.retrieval.mode=mining`) gives accuracy and
# F1 records of one cell, two scores that are never one run evaluated twice nor averaged.
SETTING_KEYS = ("model", "target", "metric", "transfer", "freezing", "train_lang", "selection", "training",
                "scored_model")
CELL_KEYS = (*SETTING_KEYS, "size", "params", "itt")
RUN_KEYS = (*CELL_KEYS, "lang", "seed")
WARNINGS_SEPARATOR = "; "


class ReportError(XittError, ValueError):
    """A report cannot be built from the given sources (the message says what to do)."""


@dataclass(frozen=True, eq=False)
class Predictions:
    """One record's predictions, sorted by example id, as the per-example statistics that
    its F1 is computed from.  An example is what the bootstrap resamples: a text, a
    sentence or a question, never a token, because the test set samples those units.

    Macro-F1 needs the whole confusion matrix, so classification keeps the ``gold`` and
    ``pred`` class indices.  The other F1s are ratios of sums over examples, so ``counts``
    keeps one row of counts per example: (true positive, predicted, gold) entities of a
    sentence for NER, (correct, all) words of a sentence for POS, and (F1, exact match) of
    a question, in 0-1, for QA.
    """

    test_set: str
    metric: str
    task_type: str = DEFAULT
    gold: np.ndarray | None = None
    pred: np.ndarray | None = None
    n_classes: int = 0
    counts: np.ndarray | None = None

    def ratio_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """Each example's part of the numerator and of the denominator of the score (0-1),
        so that the score of any resample is the ratio of its sums (``stats.ratio_score``);
        how is the task type's (``TaskType.ratio_terms``)."""
        return TYPES[self.task_type].ratio_terms(self.metric, self.counts)


@dataclass
class Results:
    """The records of one or more results folders, deduplicated, with their predictions.

    ``records`` has one row per (cell, language, seed); its index is the record id used
    as key of ``predictions``.
    """

    records: pd.DataFrame
    predictions: dict[int, Predictions]
    superseded: pd.DataFrame
    sources: list[Path]
    problems: list[str] = field(default_factory=list)


def find_record_candidates(source: Path) -> tuple[list[Path], list[str]]:
    """JSON files under ``source`` that may be records, and the listed ones that are missing.

    ``source`` is a folder (searched recursively, following each ``records.txt`` found),
    a ``records.txt`` file or a single record file.
    """
    if source.is_file():
        return _listed_records(source) if source.name == RECORDS_LIST else ([source], [])
    candidates = [path for path in sorted(source.rglob("*.json"))
                  if not path.name.endswith(PREDICTIONS_SUFFIX)]
    problems: list[str] = []
    for listing in sorted(source.rglob(RECORDS_LIST)):
        listed, missing = _listed_records(listing)
        candidates += listed
        problems += missing
    return candidates, problems


def _listed_records(listing: Path) -> tuple[list[Path], list[str]]:
    paths, missing = [], []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        path = listing.parent / line.strip()  # absolute lines stay absolute
        if path.is_file():
            paths.append(path)
        else:
            missing.append(f"{listing} lists {path}, which does not exist")
    return paths, missing


def read_record(path: Path) -> dict | None:
    """The record stored at ``path``, or None if the file is not a record."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and set(REQUIRED_FIELDS) <= data.keys() and primary_score(data) is not None:
        return data
    return None


def read_predictions(path: Path, target: str) -> Predictions:
    """A record's per-example statistics (``Predictions``), sorted by example id.

    The file has the format of its ``task_type`` (see ``xitt.tasktypes``), and
    each example is scored by the metric functions the evaluation used, so that summing
    them gives the record's F1 again.  Classification examples with a negative gold label
    are unlabelled and left out.
    """
    return parse_predictions(json.loads(path.read_text(encoding="utf-8")), target, path)


def parse_predictions(data: dict, target: str, path: Path) -> Predictions:
    """``read_predictions`` of a predictions file's content (``path`` names it in errors)."""
    ids = np.asarray([str(i) for i in data["ids"]])
    if not len(ids) == len(data["gold"]) == len(data["pred"]):
        raise ValueError(f"ids, gold and pred have different lengths in {path}")
    unit = predictions_type(data)
    metric, counts = unit.example_terms(data, path)
    if counts is not None:  # a score that is a ratio of sums over examples
        if len(ids) == 0:
            raise ValueError(f"no examples in {path}")
        test_set, order = _test_set(target, ids)
        return Predictions(test_set, metric, unit.name, counts=counts[order])
    gold = np.asarray(data["gold"], dtype=np.int64)
    pred = np.asarray(data["pred"], dtype=np.int64)
    labelled = gold >= 0
    ids, gold, pred = ids[labelled], gold[labelled], pred[labelled]
    if len(gold) == 0:
        raise ValueError(f"no labelled examples in {path}")
    if pred.min() < 0:
        raise ValueError(f"negative predicted labels in {path}")
    n_classes = int(max(len(data.get("labels") or ()), gold.max() + 1, pred.max() + 1))
    test_set, order = _test_set(target, ids)
    return Predictions(test_set, metric, unit.name, gold=gold[order], pred=pred[order], n_classes=n_classes)


def _test_set(target: str, ids: np.ndarray) -> tuple[str, np.ndarray]:
    """The identifier of the target's test set with these example ids, and the order that
    sorts the examples by id."""
    order = np.argsort(ids, kind="stable")
    ids_digest = hashlib.sha256("\n".join(ids[order]).encode()).hexdigest()[:16]
    return f"{target}:{ids_digest}", order


def load_results(sources: Iterable[str | Path]) -> Results:
    """Read every record under the sources (folders, sweep folders or record files).

    Raises ReportError when a source does not exist or holds no records.  Records found
    twice (through two sources or a ``records.txt``) count once; of several records of
    the same run the latest (by ``created``) is kept and the others are returned in
    ``Results.superseded``.
    """
    sources = [Path(source) for source in sources]
    if not sources:
        raise ReportError("No results folder given: pass report=<results or sweep folder>.")
    found: dict[Path, dict] = {}  # resolved path -> row, so a record found twice counts once
    problems: list[str] = []
    for source in sources:
        if not source.exists():
            raise ReportError(f"The results folder '{source}' does not exist. "
                              "Pass the folder a grid wrote its records to.")
        candidates, missing = find_record_candidates(source)
        problems += missing
        rows = {path: row for path in dict.fromkeys(p.resolve() for p in candidates)
                if (row := _read_row_or_note(path, problems)) is not None}
        if not rows:
            raise ReportError(_no_records_message(source, len(candidates)))
        found.update(rows)

    table = pd.DataFrame(list(found.values()))
    table = table.sort_values(["created", "record_path"], kind="stable")
    is_superseded = table.duplicated(subset=list(RUN_KEYS), keep="last")
    records = table[~is_superseded].reset_index(drop=True)
    predictions = {}
    warnings = records["warnings"].tolist()
    for row in records.itertuples():
        predictions_path = _predictions_path(row)
        if predictions_path is None:
            problems.append(f"{row.record_path} has no predictions file: its interval covers "
                            "seeds only and it gets no paired test")
            continue
        try:
            data = json.loads(predictions_path.read_text(encoding="utf-8"))
            predictions[row.Index] = parse_predictions(data, row.target, predictions_path)
            seen = degenerate_predictions(data, "test", row.lang)
        except (OSError, ValueError, KeyError, TypeError, XittError) as error:
            # XittError: a tag outside IOB2 or a question without gold answers
            problems.append(f"unreadable predictions {predictions_path}: {error}")
            continue
        known = warnings[row.Index].split(WARNINGS_SEPARATOR) if warnings[row.Index] else []
        if seen and seen not in known:  # a record written before the check existed
            warnings[row.Index] = WARNINGS_SEPARATOR.join([*known, seen])
    records["warnings"] = warnings
    return Results(records, predictions, table[is_superseded].reset_index(drop=True),
                   sources, problems)


def _read_row_or_note(path: Path, problems: list[str]) -> dict | None:
    """The record at ``path`` as a table row; a broken record is noted, other JSON skipped."""
    record = read_record(path)
    if record is None:
        if path.with_name(path.stem + PREDICTIONS_SUFFIX).exists():
            problems.append(f"{path} sits next to a predictions file but is not a readable record")
        return None
    try:
        return _record_row(path, record)
    except (TypeError, ValueError) as error:
        problems.append(f"{path} is not a valid record: {error}")
        return None


def _record_row(path: Path, record: dict) -> dict:
    """The record's fields as one table row: numbers as numbers, everything else as text."""
    row = {}
    if "training" not in record and isinstance((record.get("config") or {}).get("trainer"), dict):
        # a record written before the field: its resolved config says how it was trained
        record = {**record, "training": training_label(record["config"]["trainer"])}
    for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
        value = record.get(name)
        if value is None:
            value = OPTIONAL_FIELDS.get(name, "")
        elif name == "warnings" and not isinstance(value, str):  # a list of sentences
            value = WARNINGS_SEPARATOR.join(value)
        row[name] = _NUMBER_FIELDS.get(name, str)(value)
    row["itt"] = row["itt"] or NO_ITT
    row["seed_independent"] = record.get("seed_independent") is True
    # the score the gains, trends and power read: the task type's primary (`metric`)
    row["metric"] = row["metric"] or "f1"
    row["score"] = float(primary_score(record))
    row["record_path"] = str(path)
    return row


def _predictions_path(row) -> Path | None:
    folder = Path(row.record_path).parent
    named = row.predictions or Path(row.record_path).stem + PREDICTIONS_SUFFIX
    path = folder / named
    return path if path.is_file() else None


def _no_records_message(source: Path, n_json_files: int) -> str:
    other = (f"; its {n_json_files} JSON file(s) are not result records" if n_json_files
             else "")
    return (
        f"No result records found in '{source}'{other}. A results folder holds one "
        "'<lang>.json' record per evaluated cell and language (with '<lang>.predictions.json' "
        "next to it), found recursively or through a sweep's 'records.txt'. Run a grid "
        "first, e.g. `python train.py -m model=tiny size=s,m,l itt=none,demo seed=1,2`, "
        "then pass its results or sweep folder: `python evaluate.py report=<folder>`."
    )
