"""Readers for the local file formats a task can come in: TSV, CSV and JSON lines, and
the decoding of every data file (`read_text`, also used by `xitt.data.f1_formats`).

One reader per format. Each returns the file's columns as a dict of equal-length lists of
raw values (strings for TSV/CSV, whatever JSON holds for JSON lines): mapping columns to a
task's fields and labels to its label list is the task registry's job
(`xitt.data.tasks`), so that it is done the same way for every format and for the hub.
"""

import codecs
import csv
import io
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xitt import XittError

Columns = dict[str, list[Any]]

# Reviews and premises can be long; the csv module's default cap (128 kB) is a guard
# against runaway quoting, not a limit of the data.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


# Byte-order marks of the encodings a data file is refused in, UTF-32's first (its
# little-endian mark begins with UTF-16's), with the encoding in words and its `iconv` name.
FOREIGN_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 (little-endian, with a byte-order mark)", "UTF-32"),
                (codecs.BOM_UTF32_BE, "UTF-32 (big-endian, with a byte-order mark)", "UTF-32"),
                (codecs.BOM_UTF16_LE, "UTF-16 (little-endian, with a byte-order mark)", "UTF-16"),
                (codecs.BOM_UTF16_BE, "UTF-16 (big-endian, with a byte-order mark)", "UTF-16"))


def _convert(path: Path, encoding: str) -> str:
    """The command that writes a UTF-8 copy of `path` beside it."""
    return f"`iconv -f {encoding} -t UTF-8 {path} > {path.with_name(f'{path.stem}.utf8{path.suffix}')}`"


def _wide_encoding(data: bytes) -> tuple[str, str] | None:
    """UTF-16 or UTF-32 (in words, and its `iconv` name) when the bytes look like it: a
    byte-order mark, or, without one, NUL bytes at every second position (the high bytes of
    Latin characters). None for text without NUL bytes."""
    for bom, words, name in FOREIGN_BOMS:
        if data.startswith(bom):
            return words, name
    if b"\x00" not in data:
        return None
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > 2 * even:
        return "UTF-16 (little-endian, without a byte-order mark)", "UTF-16LE"
    if even > 2 * odd:
        return "UTF-16 (big-endian, without a byte-order mark)", "UTF-16BE"
    return "binary (it holds NUL bytes, which no text file has)", ""


def read_text(path: Path) -> str:
    """A data file's text. Data files are UTF-8, with or without the byte-order
    mark that spreadsheet programs write (dropped here, so that a header reads `text`, not
    `\\ufefftext`). Anything else is refused naming what the file appears to be: UTF-16 or
    UTF-32 (a byte-order mark, NUL-byte patterns), or, for bytes that are not UTF-8,
    Latin-1 / cp1252 with the line read that way and the `iconv` command that converts it
    (or, when earlier lines are UTF-8 beyond ASCII, a file of mixed encodings)."""
    path = Path(path)
    data = path.read_bytes()
    wide = _wide_encoding(data)
    if wide is not None:
        words, name = wide
        fix = (f"Data files are read as UTF-8: convert it with {_convert(path, name)}, or save it again as "
               f"UTF-8 (\"CSV UTF-8\" in spreadsheet programs)." if name else
               "Point the task at its text file (TSV, CSV, JSON lines, CoNLL-U, SQuAD JSON).")
        raise XittError(f"The file {path} is {words}, not UTF-8. {fix}")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        start = data.rfind(b"\n", 0, error.start) + 1
        end = data.find(b"\n", error.start)
        number = data.count(b"\n", 0, start) + 1
        # Bytes 0x80-0x9f are C1 controls in Latin-1 and characters (quotes, dashes, the euro
        # sign) in cp1252, its Windows form: reading as cp1252 covers both.
        line = data[start:end if end >= 0 else len(data)].decode("cp1252", errors="replace").strip()
        where = f"Line {number} of {path} is not valid UTF-8 (byte {data[error.start]:#04x} at offset {error.start})"
        if re.search(rb"[\x80-\xff]", data[:start]):  # the lines before it hold UTF-8 beyond ASCII
            raise XittError(f"{where}, though the lines before it are: the file mixes encodings. In cp1252 the "
                            f"line reads {line[:80]!r}; re-type its accented characters in UTF-8.") from None
        raise XittError(f"{where}: the file looks like Latin-1 or its Windows form cp1252, in which the line "
                        f"reads {line[:80]!r}. Data files are read as UTF-8: convert it with "
                        f"{_convert(path, 'CP1252')} (if the line reads wrong, `file -i` may name the "
                        f"encoding).") from None


def _numbered_rows(path: Path, reader: Any) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a csv reader, each with the line it starts on. Blank lines,
    lines of spaces and a file's trailing empty lines are no rows; CRLF line ends read as
    LF (the reader takes both)."""
    rows, line = [], 1
    try:
        for row in reader:
            if any(value.strip() for value in row):
                rows.append((line, row))
            line = reader.line_num + 1
    except csv.Error as error:
        raise XittError(f"Line {reader.line_num} of {path} cannot be read ({error}). Repair the line.") from None
    return rows


def _rows_to_columns(path: Path, rows: list[tuple[int, list[str]]], fields: Sequence[str] | None) -> Columns:
    """Name the columns (by `fields`, or by the first row when `fields` is None) and check
    that every row has one value per column, naming the first line that does not. Spaces
    around a header's names are dropped (`text, label` names `label`)."""
    if fields is None:
        if not rows:
            raise XittError(f"The file {path} is empty, but its first line should name its columns. "
                            f"Check the file, or give the column names in the task's `fields`.")
        (header_line, header), rows = rows[0], rows[1:]
        header = [name.strip() for name in header]
        twice = [name for name in header if header.count(name) > 1]
        if twice:
            raise XittError(f"Line {header_line} of {path} names the column '{twice[0]}' twice ({header}), so "
                            f"one of them would be dropped unseen. Rename one of them in the file's header.")
    else:
        header = list(fields)
    if not rows:
        raise XittError(f"The file {path} has no data rows{' (only its header line)' if fields is None else ''}. "
                        f"Check that it is the right file and that it was written completely.")
    for number, row in rows:
        if len(row) != len(header):
            raise XittError(
                f"Line {number} of {path} has {len(row)} columns, but the file's columns are "
                f"{header}. If the file has no header line, list its columns in the task's `fields`; "
                f"if it has one, set `fields: null`; otherwise repair the line."
            )
    return {name: [row[index] for _, row in rows] for index, name in enumerate(header)}


def read_tsv(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """Tab-separated values with quoting off: the XTREME / GLUE files hold stray double
    quotes inside sentences, which a quoting-aware reader would join across lines."""
    lines = io.StringIO(read_text(path), newline="")
    return _rows_to_columns(path, _numbered_rows(path, csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)),
                            fields)


def read_csv(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """Comma-separated values with standard (RFC 4180) quoting: texts with commas,
    quotes and line breaks are quoted in these files."""
    lines = io.StringIO(read_text(path), newline="")
    return _rows_to_columns(path, _numbered_rows(path, csv.reader(lines)), fields)


def read_jsonl(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """JSON lines: one object per line; the columns are the keys of the first object
    (`fields`, when given, picks and orders them). Lines are split on "\\n" only (a CRLF's
    "\\r" dropped): JSON strings may hold U+2028 and other characters `str.splitlines`
    would split on."""
    records = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
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


def read_lines(path: Path, fields: Sequence[str] | None = None) -> Columns:
    """One sentence per line (parallel files aligned line by line), in one column named by
    `fields` (default `text`). Blank lines are kept, so that a check of the rows can name
    the line; the newline that ends the file starts no line."""
    name = fields[0] if fields else "text"
    lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise XittError(f"The file {path} is empty. Check that it is the right file and that it was written "
                        f"completely.")
    return {name: lines}


READERS: dict[str, Callable[[Path, Sequence[str] | None], Columns]] = {
    "txt": read_lines,
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
