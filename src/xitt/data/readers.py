"""Readers for the local file formats a task can come in: TSV, CSV and JSON lines.

One reader per format. Each returns the file's columns as a dict of equal-length lists of
raw values (strings for TSV/CSV, whatever JSON holds for JSON lines): mapping columns to a
task's fields and labels to its label list is the task registry's job
(`xitt.data.tasks`), so that it is done the same way for every format and for the hub.
"""

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xitt import XittError

Columns = dict[str, list[Any]]

# Reviews and premises can be long; the csv module's default cap (128 kB) is a guard
# against runaway quoting, not a limit of the data.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _rows_to_columns(path: Path, rows: list[list[str]], fields: Sequence[str] | None) -> Columns:
    """Name the columns (by `fields`, or by the first row when `fields` is None) and check
    that every row has one value per column, naming the first line that does not."""
    if fields is None:
        if not rows:
            raise XittError(f"The file {path} is empty, but its first line should name its columns. "
                            f"Check the file, or give the column names in the task's `fields`.")
        header, rows = rows[0], rows[1:]
        first_line = 2
    else:
        header, first_line = list(fields), 1
    if not rows:
        raise XittError(f"The file {path} has no data rows{' (only its header line)' if fields is None else ''}. "
                        f"Check that it is the right file and that it was written completely.")
    for number, row in enumerate(rows, start=first_line):
        if len(row) != len(header):
            raise XittError(
                f"Line {number} of {path} has {len(row)} columns, but the file's columns are "
                f"{header}. If the file has no header line, list its columns in the task's `fields`; "
                f"if it has one, set `fields: null`; otherwise repair the line."
            )
    return {name: [row[index] for row in rows] for index, name in enumerate(header)}


def read_text(path: Path) -> str:
    """A data file's text, which must be UTF-8; otherwise the error names the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise XittError(
            f"Line {line} of {path} is not UTF-8 (byte {data[error.start]:#04x} at offset {error.start}). "
            f"Data files are read as UTF-8: convert the file (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None


def read_tsv(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """Tab-separated values with quoting off: the XTREME / GLUE files hold stray double
    quotes inside sentences, which a quoting-aware reader would join across lines."""
    lines = io.StringIO(read_text(path), newline="")
    rows = [row for row in csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    return _rows_to_columns(path, rows, fields)


def read_csv(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """Comma-separated values with standard (RFC 4180) quoting: texts with commas,
    quotes and line breaks are quoted in these files."""
    rows = [row for row in csv.reader(io.StringIO(read_text(path), newline="")) if row]
    return _rows_to_columns(path, rows, fields)


def read_jsonl(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """JSON lines: one object per line; the columns are the keys of the first object
    (`fields`, when given, picks and orders them)."""
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise XittError(f"Line {number} of {path} is not valid JSON ({error}). "
                            f"JSON-lines files hold one JSON object per line; repair the line.") from None
    names = list(fields) if fields is not None else list(records[0]) if records else []
    missing = [(number, name) for number, record in enumerate(records, start=1) for name in names
               if name not in record]
    if missing:
        number, name = missing[0]
        raise XittError(f"Record {number} of {path} has no key '{name}' (its keys: {sorted(records[number - 1])}). "
                        f"Fix the task's column mapping or the file.")
    return {name: [record[name] for record in records] for name in names}


READERS: dict[str, Callable[[Path, Sequence[str] | None], Columns]] = {
    "tsv": read_tsv,
    "csv": read_csv,
    "jsonl": read_jsonl,
}


def read_table(path: Path, file_format: str, fields: Sequence[str] | None = None) -> Columns:
    """Read one local file with the reader of its format."""
    if file_format not in READERS:
        raise XittError(f"Unknown local file format '{file_format}' for {path}; the readers are "
                        f"{', '.join(READERS)}. Set the task's `local.format` to one of them.")
    return READERS[file_format](Path(path), fields)
