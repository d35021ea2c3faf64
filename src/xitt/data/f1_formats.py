"""Readers for the file formats of the F1 tasks: PAN-X NER (XTREME token TSV), UD POS
(CoNLL-U), extractive QA (SQuAD v1.1 JSON) and BUCC 2018 bitext mining (sentence files and
gold pairs).

Each reader returns a list of plain dicts, one per example (sentence or question), each
with a string "id" that is unique within the file and stable across runs (the same file
gives the same ids), so that saved predictions can be joined back to their gold examples.
Malformed input (an empty file, a file that is not UTF-8, a line with the wrong number of
columns, JSON that does not parse or lacks a key) raises `XittError` naming the file and
the line or record.
"""

import json
import re
from pathlib import Path
from typing import Any

from xitt import XittError
from xitt.core.sources import bucc_sides
from xitt.data.readers import read_text

# Raw WikiANN files (Rahimi et al. 2019) prefix every token with its language, `en:Paris`;
# XTREME's download script strips it. A token such as `1:0` or `http:` is text, so the
# prefix is stripped only when every token of the file carries the same one.
_LANG_PREFIX = re.compile(r"^([a-z]{2,3}):")


def _read_lines(path: str | Path) -> list[str]:
    """The file's lines (without line ends), decoded as every data file is (UTF-8, a
    byte-order mark dropped, other encodings refused by name: `xitt.data.readers.read_text`).

    Lines are split on "\\n" only (with a trailing "\\r" dropped): `str.splitlines` would
    also split on characters such as U+2028 or U+0085 that occur inside real text."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise XittError(f"The file {path} is empty. Check that the download or copy completed, or point the "
                        f"task at the right file.")
    return [line.removesuffix("\r") for line in text.split("\n")]


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Groups of consecutive non-blank lines, each line with its 1-based number. The last
    group need not be followed by a blank line (the PAN-X files end without one)."""
    blocks, current = [], []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def read_panx_tsv(path: str | Path) -> list[dict[str, Any]]:
    """XTREME PAN-X: one `token<TAB>tag` line per word, a blank line between sentences.

    Returns [{"id": "<sentence number from 0>", "tokens": [...], "tags": [...]}]. A language
    prefix (`en:Paris`) is stripped when every token of the file carries the same one."""
    path = Path(path)
    sentences = []
    for block in _blocks(_read_lines(path)):
        tokens, tags = [], []
        for number, line in block:
            columns = line.split("\t")
            if len(columns) != 2:
                hint = (" XTREME's test-<lang>.tsv files have no tag column (their labels are hidden); use the "
                        "dev files for scoring." if len(columns) == 1 else "")
                raise XittError(f"Line {number} of {path} has {len(columns)} tab-separated columns, but PAN-X lines "
                                f"are `token<TAB>tag`: {line[:80]!r}.{hint} Repair the line or use an intact copy.")
            tokens.append(columns[0])
            tags.append(columns[1])
        sentences.append({"id": str(len(sentences)), "tokens": tokens, "tags": tags})

    prefixes = {match.group(0) if (match := _LANG_PREFIX.match(token)) else None
                for sentence in sentences for token in sentence["tokens"]}
    if len(prefixes) == 1 and None not in prefixes:
        (prefix,) = prefixes
        for sentence in sentences:
            sentence["tokens"] = [token[len(prefix):] for token in sentence["tokens"]]
    return sentences


def _is_word_id(value: str) -> bool:
    return value.isdigit() and int(value) > 0


def _is_skipped_id(value: str) -> bool:
    """Multiword-token ranges (`1-2`) and empty nodes (`8.1`): they carry no UPOS of their
    own (their words follow as ordinary lines), so a POS reader skips them."""
    return re.fullmatch(r"\d+-\d+|\d+\.\d+", value) is not None


def _unique_ids(examples: list[dict[str, Any]]) -> None:
    """Set each example's "id": its "source_id" when every example has one and they are
    all distinct; otherwise the example's position ("0", "1", ...) for every example, so
    that ids never collide and are all of one kind. "source_id" keeps the original."""
    source_ids = [example["source_id"] for example in examples]
    unique = None not in source_ids and len(set(source_ids)) == len(source_ids)
    for position, example in enumerate(examples):
        example["id"] = str(example["source_id"]) if unique else str(position)


def read_conllu(path: str | Path) -> list[dict[str, Any]]:
    """CoNLL-U (Universal Dependencies): one 10-column line per word, `#` comment lines,
    a blank line after each sentence.

    Returns [{"id", "source_id", "tokens": FORMs, "tags": UPOS tags}] over syntactic words
    only: multiword-token ranges (`1-2`) and empty nodes (`8.1`) are skipped. "id" is the
    `# sent_id` when every sentence has a distinct one, else the sentence's position;
    "source_id" is the `# sent_id` (None without one)."""
    path = Path(path)
    sentences = []
    for block in _blocks(_read_lines(path)):
        sent_id, tokens, tags = None, [], []
        for number, line in block:
            if line.startswith("#"):
                key, equals, value = line[1:].partition("=")
                if equals and key.strip() == "sent_id":
                    sent_id = value.strip()
                continue
            columns = line.split("\t")
            if len(columns) != 10:
                raise XittError(f"Line {number} of {path} has {len(columns)} tab-separated columns, but CoNLL-U word "
                                f"lines have 10 (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC): "
                                f"{line[:80]!r}. Repair the line (spaces instead of tabs are a common cause).")
            if _is_skipped_id(columns[0]):
                continue
            if not _is_word_id(columns[0]):
                raise XittError(f"Line {number} of {path} has the ID {columns[0]!r}, but a CoNLL-U ID is a word "
                                f"number (1, 2, ...), a range (1-2) or an empty node (8.1). Repair the line.")
            tokens.append(columns[1])
            tags.append(columns[3])
        if tokens:  # a block of comments alone is not a sentence
            sentences.append({"source_id": sent_id, "tokens": tokens, "tags": tags})
    if not sentences:
        raise XittError(f"The file {path} holds no CoNLL-U word lines. Check that it is a CoNLL-U file.")
    _unique_ids(sentences)
    return [{"id": s["id"], "source_id": s["source_id"], "tokens": s["tokens"], "tags": s["tags"]}
            for s in sentences]


def _field(record: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(record, dict) or key not in record or not isinstance(record[key], kind):
        found = type(record[key]).__name__ if isinstance(record, dict) and key in record else "nothing"
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise XittError(f"In {path}, {where} should have a key '{key}' holding a {names}, but it holds {found}. "
                        f"SQuAD v1.1 JSON is {{\"data\": [{{\"paragraphs\": [{{\"context\", \"qas\": [{{\"id\", "
                        f"\"question\", \"answers\": [{{\"text\", \"answer_start\"}}]}}]}}]}}]}}; repair the record.")
    return record[key]


def read_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """SQuAD v1.1 JSON (also XQuAD, MLQA, TyDiQA-GoldP in XTREME's layout).

    Returns one dict per question: {"id", "source_id", "title", "context", "question",
    "answers": {"text": [...], "answer_start": [...]}}, in file order.

    Ids: "source_id" is the file's question id. When the file's ids are all distinct, "id"
    equals it. When they are not (TyDiQA-GoldP as split by XTREME keeps only the last `-`
    field of each id, so "0" occurs over a thousand times), "id" is the question's position
    in the file ("0", "1", ...) for every question, so that ids stay unique and stable for
    the same file."""
    path = Path(path)
    text = "\n".join(_read_lines(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise XittError(f"Line {error.lineno} (column {error.colno}) of {path} is not valid JSON ({error.msg}). "
                        f"Repair the file or replace it with an intact copy.") from None
    examples = []
    for a, article in enumerate(_field(document, "data", list, "the top level", path)):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_field(article, "paragraphs", list, f"data[{a}]", path)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where, path)
            for q, qa in enumerate(_field(paragraph, "qas", list, where, path)):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                question = _field(qa, "question", str, where, path)
                source_id = _field(qa, "id", (str, int), where, path)
                texts, starts = [], []
                for n, answer in enumerate(_field(qa, "answers", list, where, path)):
                    texts.append(_field(answer, "text", str, f"{where}.answers[{n}]", path))
                    starts.append(_field(answer, "answer_start", int, f"{where}.answers[{n}]", path))
                examples.append({"source_id": str(source_id), "title": title, "context": context,
                                 "question": question, "answers": {"text": texts, "answer_start": starts}})
    if not examples:
        raise XittError(f"The file {path} holds no questions. Check that it is a SQuAD v1.1 JSON file with "
                        f"data[].paragraphs[].qas[].")
    _unique_ids(examples)
    return [{"id": e["id"], **{k: v for k, v in e.items() if k != "id"}} for e in examples]


def _bucc_sentences(path: Path) -> dict[str, str]:
    """A BUCC sentence file: `id<TAB>sentence` per line, ids unique."""
    sentences: dict[str, str] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        id_, tab, text = line.partition("\t")
        if not tab or not id_.strip():
            raise XittError(f"Line {number} of {path} is not `id<TAB>sentence`, as BUCC's sentence files are. "
                            f"Repair the line.")
        if id_ in sentences:
            raise XittError(f"Line {number} of {path} repeats the id {id_!r}; every sentence of a BUCC file has "
                            f"its own. Repair the file.")
        sentences[id_] = text
    return sentences


def read_bucc(gold_path: str | Path) -> list[dict[str, Any]]:
    """BUCC 2018: `<xx>-en.<split>.gold` (`xx id<TAB>en id` per line, one-to-one) beside its
    sentence files `<xx>-en.<split>.<xx>` and `.en`. Returns one row per sentence,
    {"id", "text", "side"} (side `own` for xx, `pivot` for English): a gold pair's two
    sentences share the xx id; every other sentence keeps its own id, a distractor that
    mining must reject. A gold pair naming an id that its file lacks is refused."""
    gold_path = Path(gold_path)
    own_path, pivot_path = bucc_sides(gold_path)
    for path in (own_path, pivot_path):
        if not path.is_file():
            raise XittError(f"The BUCC gold file {gold_path} has no sentence file {path.name} beside it (BUCC's "
                            f"layout: <xx>-en.<split>.gold, .<xx> and .en in one folder). Copy it there.")
    own, pivot = _bucc_sentences(own_path), _bucc_sentences(pivot_path)
    paired: dict[str, str] = {}  # English id: the xx id of its pair
    seen_own: set[str] = set()
    for number, line in enumerate(_read_lines(gold_path), start=1):
        if not line.strip():
            continue
        own_id, tab, pivot_id = line.partition("\t")
        pivot_id = pivot_id.strip()
        if not tab or not pivot_id:
            raise XittError(f"Line {number} of {gold_path} is not `xx id<TAB>en id`, as BUCC's gold pairs are. "
                            f"Repair the line.")
        for id_, sentences, path in ((own_id, own, own_path), (pivot_id, pivot, pivot_path)):
            if id_ not in sentences:
                raise XittError(f"Line {number} of {gold_path} pairs {own_id!r} with {pivot_id!r}, but {path} has "
                                f"no sentence {id_!r}: the gold pairs and the sentence files do not belong "
                                f"together. Use the files of one BUCC release and split.")
        if own_id in seen_own or pivot_id in paired:
            raise XittError(f"Line {number} of {gold_path} pairs {own_id!r} or {pivot_id!r} a second time; BUCC's "
                            f"gold pairs are one-to-one. Remove the repeated pair.")
        seen_own.add(own_id)
        paired[pivot_id] = own_id
    clash = sorted(set(own) & (set(pivot) - set(paired)))
    if clash:
        raise XittError(f"{own_path} and {pivot_path} both use the id {clash[0]!r} for sentences that are no gold "
                        f"pair, so they would be scored as translations. Give each side's ids their own prefix, "
                        f"as BUCC's files do (de-000001, en-000001).")
    return ([{"id": id_, "text": text, "side": "own"} for id_, text in own.items()]
            + [{"id": paired.get(id_, id_), "text": text, "side": "pivot"} for id_, text in pivot.items()])
