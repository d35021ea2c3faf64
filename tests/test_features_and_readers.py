"""Readers and model features of the F1 tasks: PAN-X, CoNLL-U and SQuAD JSON readers
(on the real files where the shared assets are present, on small written files
otherwise), first-sub-word tag labels with a sentencepiece tokenizer (multilingual-e5,
"▁" marker) and a locally trained WordPiece one ("##" marker), and QA windows, their
answer labels and the way from logits back to the exact context characters."""

import functools
import json

import numpy as np
import pytest

from xitt import XittError
from xitt.tasktypes.qa.features import best_spans, qa_features
from xitt.tasktypes.tagging.features import IGNORE_INDEX, tag_features, word_tags
from xitt.data.f1_formats import read_conllu, read_panx_tsv, read_squad_json
from xitt.metrics.qa import qa_scores
from xitt.metrics.tagging import iob2_spans

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
SENTENCE = {"id": "0", "tokens": ["Anton", "Wilhelm", "von", "Zuccalmaglio", "."],
            "tags": ["B-PER", "I-PER", "I-PER", "I-PER", "O"]}


@functools.cache
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture
def e5(shared):
    """The real multilingual-e5-small tokenizer (sentencepiece, "▁" marks a word start),
    loaded once per test session."""
    path = shared / "models" / "multilingual-e5-small"
    if not path.is_dir():
        pytest.skip(f"the shared tokenizer is not at {path} (real tokenizer tests need it)")
    return _load_tokenizer(str(path))


@pytest.fixture(scope="module")
def wordpiece():
    """A BERT WordPiece tokenizer trained here on a few sentences (no network): its
    continuation sub-words carry "##" and its words no leading-space marker."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import BertProcessing
    from transformers import BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=True)
    corpus = ["Anton Wilhelm von Zuccalmaglio lived in Paris .", "The quick brown fox jumps over the lazy dog ."]
    trainer.train_from_iterator(corpus * 3, vocab_size=80, min_frequency=1, show_progress=False)
    trainer._tokenizer.post_processor = BertProcessing(("[SEP]", trainer.token_to_id("[SEP]")),
                                                       ("[CLS]", trainer.token_to_id("[CLS]")))
    return BertTokenizerFast(tokenizer_object=trainer._tokenizer)


# --- tagging features ---------------------------------------------------------------------


def _check_first_subword_labels(tokenizer, starts_word):
    features = tag_features(tokenizer, [SENTENCE], NER_LABELS, max_length=64)
    pieces = tokenizer.convert_ids_to_tokens(features["input_ids"][0])
    labels = features["labels"][0]
    special = set(tokenizer.all_special_tokens)
    # Labelled positions are exactly the word-initial pieces, as the tokenizer's own marker
    # says (word_ids() is what the code uses; the marker is an independent check).
    # A bare "▁" piece carries no part of its word: the piece after it starts the word.
    labelled = [piece for piece, label in zip(pieces, labels) if label != IGNORE_INDEX]
    assert labelled == [piece for before, piece in zip(["<none>", *pieces], pieces) if piece not in special
                        and (before == "▁" or (starts_word(piece) and piece != "▁"))]
    assert [NER_LABELS[label] for label in labels if label != IGNORE_INDEX] == SENTENCE["tags"]
    assert all(label == IGNORE_INDEX for piece, label in zip(pieces, labels) if piece in special)
    # "Zuccalmaglio" is split into several pieces, of which only the first is labelled.
    zucc = features["word_positions"][0][3]
    assert features["word_positions"][0][4] - zucc > 1
    assert labels[zucc] == NER_LABELS.index("I-PER")
    assert all(label == IGNORE_INDEX for label in labels[zucc + 1:features["word_positions"][0][4]])
    assert features["n_words"] == [5]
    # Predictions read back at the first pieces give one tag per word.
    assert word_tags(features["word_positions"][0], labels, NER_LABELS, fill="O") == SENTENCE["tags"]
    return features


def test_subword_labels_sentencepiece(e5):
    features = _check_first_subword_labels(e5, lambda piece: piece.startswith("▁"))
    assert e5.convert_ids_to_tokens(features["input_ids"][0])[1] == "▁Anton"


def test_a_bare_space_marker_is_not_a_words_first_subword(e5):
    # XLM-R's sentencepiece writes most Chinese words as a bare "▁" and then the word's pieces.
    words = {"tokens": ["我們", "是", "學生", "。"], "tags": ["B-PER", "O", "B-LOC", "O"]}
    features = tag_features(e5, [words], NER_LABELS, max_length=32)
    pieces = e5.convert_ids_to_tokens(features["input_ids"][0])
    assert pieces[2:5] == ["▁", "是", "▁"]
    assert [pieces[position] for position in features["word_positions"][0]] == ["▁我們", "是", "學", "。"]
    labels = features["labels"][0]
    assert [NER_LABELS[labels[position]] for position in features["word_positions"][0]] == words["tags"]
    assert sum(label != IGNORE_INDEX for label in labels) == 4


def test_subword_labels_wordpiece(wordpiece):
    features = _check_first_subword_labels(wordpiece, lambda piece: not piece.startswith("##"))
    assert wordpiece.convert_ids_to_tokens(features["input_ids"][0])[0] == "[CLS]"


def test_truncated_words_are_counted_and_filled(wordpiece):
    # 8 positions leave 6 pieces for the words: the first word or two fit, the rest is cut.
    features = tag_features(wordpiece, [SENTENCE], NER_LABELS, max_length=8)
    positions = features["word_positions"][0]
    n_words = features["n_words"][0]
    assert 0 < n_words < len(SENTENCE["tokens"])
    assert all(position >= 0 for position in positions[:n_words])
    assert all(position == -1 for position in positions[n_words:])
    # Cut words get the fill tag, so an entity running into the cut is scored as a miss.
    predicted = word_tags(positions, features["labels"][0], NER_LABELS, fill="O")
    assert predicted[n_words:] == ["O"] * (len(SENTENCE["tokens"]) - n_words)
    assert iob2_spans(predicted) != iob2_spans(SENTENCE["tags"])


def test_unlabelled_examples_and_unknown_tags(wordpiece):
    features = tag_features(wordpiece, [{"tokens": ["Paris"]}], NER_LABELS, max_length=16)
    assert set(features["labels"][0]) == {IGNORE_INDEX}
    assert features["word_positions"] == [[1]]
    with pytest.raises(XittError, match="'B-MISC' of example 'x' is not in the task's label list"):
        tag_features(wordpiece, [{"id": "x", "tokens": ["Paris"], "tags": ["B-MISC"]}], NER_LABELS, max_length=16)


# --- readers ------------------------------------------------------------------------------


def test_panx_reader_on_real_german_dev(shared):
    sentences = read_panx_tsv(shared / "data" / "panx" / "dev-de.tsv")
    # Counts from PROVENANCE-F1.md: 10000 sentences, 97805 tokens, 4569 / 4281 / 4968
    # PER / ORG / LOC entities.
    assert len(sentences) == 10000
    assert sum(len(s["tokens"]) for s in sentences) == 97805
    assert all(len(s["tokens"]) == len(s["tags"]) for s in sentences)
    assert len({s["id"] for s in sentences}) == 10000
    types = [span[0] for s in sentences for span in iob2_spans(s["tags"])]
    assert (types.count("PER"), types.count("ORG"), types.count("LOC")) == (4569, 4281, 4968)
    assert sentences[0] == {"id": "0", "tokens": ["Anton", "Wilhelm", "von", "Zuccalmaglio", "."],
                            "tags": ["B-PER", "I-PER", "I-PER", "I-PER", "O"]}
    # "1:0" (a match score) is text, not a language prefix, and is kept.
    assert any("1:0" in s["tokens"] for s in sentences)


def test_panx_language_prefix_is_stripped_only_when_every_token_has_it(tmp_path):
    prefixed = tmp_path / "raw.tsv"
    prefixed.write_text("en:Paris\tB-LOC\nen:1:0\tO\n\nen:Bob\tB-PER\n", encoding="utf-8")
    assert [s["tokens"] for s in read_panx_tsv(prefixed)] == [["Paris", "1:0"], ["Bob"]]
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text("de:Paris\tB-LOC\nParis\tB-LOC\n", encoding="utf-8")
    assert read_panx_tsv(mixed)[0]["tokens"] == ["de:Paris", "Paris"]


def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    path = tmp_path / "tiny.conllu"
    rows = [
        "# sent_id = es-1",
        "# text = Vamos al mar.",
        "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_",
        "2-3\tal\t_\t_\t_\t_\t_\t_\t_\t_",
        "2\ta\ta\tADP\t_\t_\t4\tcase\t_\t_",
        "3\tel\tel\tDET\t_\t_\t4\tdet\t_\t_",
        "4\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_",
        "4.1\tva\tir\tVERB\t_\t_\t_\t_\t1:conj\t_",
        "5\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_",
        "",
        "# sent_id = es-2",
        "1\tSí\tsí\tINTJ\t_\t_\t0\troot\t_\t_",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    sentences = read_conllu(path)
    assert sentences == [
        {"id": "es-1", "source_id": "es-1", "tokens": ["Vamos", "a", "el", "mar", "."],
         "tags": ["VERB", "ADP", "DET", "NOUN", "PUNCT"]},
        {"id": "es-2", "source_id": "es-2", "tokens": ["Sí"], "tags": ["INTJ"]},
    ]
    # Without (distinct) sent_ids, every sentence is keyed by its position.
    path.write_text("\n".join(row for row in rows if "sent_id" not in row), encoding="utf-8")
    assert [(s["id"], s["source_id"]) for s in read_conllu(path)] == [("0", None), ("1", None)]


def test_conllu_reader_on_real_english_dev(shared):
    # PROVENANCE-F1.md: 2001 sentences, 25147 words (ID lines), 359 ranges and 4 empty nodes.
    sentences = read_conllu(shared / "data" / "udpos" / "UD_English-EWT" / "en_ewt-ud-dev.conllu")
    assert len(sentences) == 2001
    assert sum(len(s["tokens"]) for s in sentences) == 25147
    assert "_" not in {tag for s in sentences for tag in s["tags"]}


def test_squad_reader_rekeys_duplicate_ids(shared):
    xquad = read_squad_json(shared / "data" / "xquad" / "xquad.en.json")
    assert len(xquad) == 1190
    assert all(e["id"] == e["source_id"] for e in xquad)
    first = xquad[0]
    assert first["context"][first["answers"]["answer_start"][0]:].startswith(first["answers"]["text"][0])

    # TyDiQA-GoldP (XTREME split): 3696 questions with only 89 distinct ids.
    tydiqa = read_squad_json(shared / "data" / "tydiqa" / "tydiqa.goldp.en.train.json")
    assert len(tydiqa) == 3696
    assert len({e["source_id"] for e in tydiqa}) == 89
    assert [e["id"] for e in tydiqa] == [str(position) for position in range(3696)]
    assert tydiqa[0]["source_id"] == "12"


def test_squad_reader_on_a_small_file(tmp_path):
    document = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "0", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "0", "question": "What?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    examples = read_squad_json(path)
    assert [(e["id"], e["source_id"]) for e in examples] == [("0", "0"), ("1", "0")]
    assert examples[1]["answers"] == {"text": ["Paris"], "answer_start": [0]}


def test_readers_name_the_file_and_line_of_malformed_input(tmp_path):
    bad_columns = tmp_path / "cols.tsv"
    bad_columns.write_text("Paris\tB-LOC\n\nBerlin B-LOC\n", encoding="utf-8")
    with pytest.raises(XittError, match=r"Line 3 of .*cols\.tsv has 1 tab-separated columns"):
        read_panx_tsv(bad_columns)

    bad_bytes = tmp_path / "latin1.tsv"
    bad_bytes.write_bytes("Paris\tB-LOC\nM\u00fcnchen\tB-LOC\n".encode("latin-1"))
    with pytest.raises(XittError, match=r"Line 2 of .*latin1\.tsv is not valid UTF-8"):
        read_panx_tsv(bad_bytes)

    empty = tmp_path / "empty.conllu"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(XittError, match=r"empty\.conllu is empty"):
        read_conllu(empty)

    nine = tmp_path / "nine.conllu"
    nine.write_text("# sent_id = a\n1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\n", encoding="utf-8")
    with pytest.raises(XittError, match=r"Line 2 of .*nine\.conllu has 9 tab-separated columns"):
        read_conllu(nine)

    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n  {"paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(XittError, match=r"Line 2 \(column 19\) of .*broken\.json is not valid JSON"):
        read_squad_json(broken)

    no_context = tmp_path / "nocontext.json"
    no_context.write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}), encoding="utf-8")
    with pytest.raises(XittError, match=r"data\[0\]\.paragraphs\[0\] should have a key 'context'"):
        read_squad_json(no_context)


# --- QA windows -------------------------------------------------------------------------------


def _window_example():
    filler = " ".join(f"word{i}" for i in range(12))
    context = f"{filler} The treaty was signed in Wilhelmshaven on 3 May 1890 by both parties. {filler}"
    answer = "Wilhelmshaven on 3 May 1890"
    return {"id": "w", "question": "Where and when was the treaty signed?", "context": context,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def test_answer_across_windows_is_found_and_mapped_to_exact_characters(e5):
    example = _window_example()
    answer, start_char = example["answers"]["text"][0], example["answers"]["answer_start"][0]
    end_char = start_char + len(answer)
    features = qa_features(e5, [example], max_length=40, doc_stride=16, max_query_length=16)
    n_windows = len(features["input_ids"])
    assert n_windows > 2 and features["example_index"] == [0] * n_windows
    assert all(len(ids) == 40 for ids in features["input_ids"])

    def covers(window):  # the window's context characters
        offsets = [offset for offset in features["offset_mapping"][window] if offset is not None]
        return offsets[0][0], offsets[-1][1]

    holding = [w for w in range(n_windows) if features["start_positions"][w] != 0]
    cut = [w for w in range(n_windows) if features["start_positions"][w] == 0
           and covers(w)[0] < end_char and covers(w)[1] > start_char]
    # The overlap puts the whole answer in two windows, and a third holds only its end.
    assert len(holding) == 2 and len(cut) == 1
    for w in holding:
        offsets = features["offset_mapping"][w]
        s, e = features["start_positions"][w], features["end_positions"][w]
        assert example["context"][offsets[s][0]:offsets[e][1]] == answer
        # Question and special tokens have no offsets: a span cannot be read from them.
        assert offsets[0] is None and features["input_ids"][w][0] == e5.cls_token_id
    for w in cut:
        assert features["end_positions"][w] == 0

    # Logits that favour the gold span in the second holding window, and a partial span
    # ("on 3 May 1890") slightly less in the window that cuts the answer: the full answer
    # wins, read back as the exact context characters.
    start_logits = np.zeros((n_windows, 40))
    end_logits = np.zeros((n_windows, 40))
    w = holding[1]
    start_logits[w, features["start_positions"][w]] = end_logits[w, features["end_positions"][w]] = 10.0
    partial = cut[0]
    context_positions = [p for p, o in enumerate(features["offset_mapping"][partial]) if o is not None]
    partial_end = [p for p in context_positions if features["offset_mapping"][partial][p][1] == end_char][0]
    start_logits[partial, context_positions[0]] = end_logits[partial, partial_end] = 9.0
    assert best_spans(features, start_logits, end_logits, [example]) == [answer]
    # With the partial span scored higher it wins instead, as its own characters.
    start_logits[partial, context_positions[0]] = 12.0
    partial_text = best_spans(features, start_logits, end_logits, [example])[0]
    assert partial_text == "on 3 May 1890"
    # With no valid span at all (max_answer_length=0) the answer is "".
    assert best_spans(features, start_logits, end_logits, [example], max_answer_length=0) == [""]
    with pytest.raises(XittError, match="one row of logits per window"):
        best_spans(features, np.zeros((1, 40)), np.zeros((1, 40)), [example])


def test_best_span_respects_order_length_and_context(wordpiece):
    example = {"id": "p", "question": "who lived in paris?", "context": "Anton lived in Paris.",
               "answers": {"text": ["Anton"], "answer_start": [0]}}
    features = qa_features(wordpiece, [example], max_length=64, doc_stride=8, max_query_length=32)
    assert len(features["input_ids"]) == 1
    offsets = features["offset_mapping"][0]
    context = [p for p, o in enumerate(offsets) if o is not None]
    start, end = features["start_positions"][0], features["end_positions"][0]
    assert example["context"][offsets[start][0]:offsets[end][1]] == "Anton"
    # The tiny vocabulary splits "Paris" into several pieces (which ones depends on the
    # training run, so they are found by their characters).
    paris_start = example["context"].index("Paris")
    paris = [p for p in context if paris_start <= offsets[p][0] < paris_start + 5]
    assert len(paris) >= 2
    start_logits, end_logits = np.zeros((1, 64)), np.zeros((1, 64))
    # The highest logits sit on question tokens (outside the context): not allowed. The
    # next ones pair the last context token as start with the first as end (end before
    # start): not allowed either. So the best valid span is "Paris" (30 + 30 = 60), ahead
    # of the last token "." alone (50 + 0) and the first piece of "Anton" alone (0 + 40).
    start_logits[0, 1] = end_logits[0, 2] = 100.0
    start_logits[0, context[-1]] = 50.0
    end_logits[0, context[0]] = 40.0
    start_logits[0, paris[0]] = end_logits[0, paris[-1]] = 30.0
    assert best_spans(features, start_logits, end_logits, [example]) == ["Paris"]
    # Limited to fewer tokens than "Paris" has, it is out and "." (50) is the best left.
    assert best_spans(features, start_logits, end_logits, [example], max_answer_length=len(paris) - 1) == ["."]


def test_stride_too_large_is_a_clear_error(wordpiece):
    example = {"id": "s", "question": "who lived?", "context": "Anton lived in Paris.",
               "answers": {"text": ["Anton"], "answer_start": [0]}}
    with pytest.raises(XittError, match="doc_stride=12"):
        qa_features(wordpiece, [example], max_length=16, doc_stride=12, max_query_length=8)


def test_long_questions_are_cut_to_max_query_length(e5):
    example = {"id": "q", "question": "   " + " ".join(["why"] * 50) + "?", "context": "Because.",
               "answers": {"text": ["Because"], "answer_start": [0]}}
    features = qa_features(e5, [example], max_length=32, doc_stride=4, max_query_length=8)
    question_tokens = [p for p, o in enumerate(features["offset_mapping"][0]) if o is None
                       and features["input_ids"][0][p] not in e5.all_special_ids]
    assert len(question_tokens) == 8
    assert best_spans(features, _one_hot(features, "start_positions"), _one_hot(features, "end_positions"),
                      [example]) == ["Because"]


def _one_hot(features, key):
    logits = np.zeros((len(features["input_ids"]), len(features["input_ids"][0])))
    for window, position in enumerate(features[key]):
        if position != 0:
            logits[window, position] = 10.0
    return logits


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_oracle_logits_recover_real_xquad_answers(e5, shared, lang):
    """Logits that peak at each window's gold start and end tokens give back the gold
    answer for real XQuAD questions (all 1190 in English, 400 in Chinese): exactly where the
    answer's edges fall on token edges, and as the covering span of whole tokens (which
    contains the gold text) where a token crosses an edge, e.g. "(118)" for "118"."""
    examples = read_squad_json(shared / "data" / "xquad" / f"xquad.{lang}.json")
    examples = examples if lang == "en" else examples[:400]
    features = qa_features(e5, examples, max_length=384, doc_stride=128, max_query_length=64)
    golds = [e["answers"]["text"][0] for e in examples]
    predictions = best_spans(features, _one_hot(features, "start_positions"), _one_hot(features, "end_positions"),
                             examples, max_answer_length=512)
    assert all(gold in prediction for gold, prediction in zip(golds, predictions))
    exact = sum(gold == prediction for gold, prediction in zip(golds, predictions)) / len(golds)
    assert exact > 0.97
    assert qa_scores(predictions, [[gold] for gold in golds], lang)["f1"] > 99.0
    # Where the gold span's edges are token edges in a window that holds it, recovery is exact.
    for window, example_index in enumerate(features["example_index"]):
        start, end = features["start_positions"][window], features["end_positions"][window]
        if start == 0:
            continue
        offsets = features["offset_mapping"][window]
        example = examples[example_index]
        start_char = example["answers"]["answer_start"][0]
        if offsets[start][0] == start_char and offsets[end][1] == start_char + len(golds[example_index]):
            assert predictions[example_index] == golds[example_index]


def test_answers_not_where_their_offsets_say_are_counted_and_refused_above_a_small_share(caplog):
    from xitt import XittError
    from xitt.tasktypes.qa import MAX_MISPLACED_SHARE, QA, check_answer_offsets

    task = {"name": "qa_task"}
    contexts = ["Paris is the capital of France."] * 200
    right = {"text": ["Paris"], "answer_start": [0]}
    wrong = {"text": ["France"], "answer_start": [3]}
    ids = [f"q{i}" for i in range(200)]
    # one misplaced answer in 200 (0.5%): kept, and said
    check_answer_offsets(task, "local file x.json", ids, contexts, [wrong] + [right] * 199)
    assert "1 of its 200 gold answers are not at their offset" in caplog.text and "'q0'" in caplog.text
    # ... and named in the split note of the records scored on such a test set
    note = QA().data_note({}, {"id": ids, "context": contexts, "answers": [wrong] + [right] * 199})
    assert note.startswith("1 of the 200 gold answers of the test set are not at their offset") and "'q0'" in note
    assert QA().data_note({}, {"id": ids, "context": contexts, "answers": [right] * 200}) is None
    # five (2.5%): refused, naming the file, the first question and what to check
    assert 5 > MAX_MISPLACED_SHARE * 200
    with pytest.raises(XittError) as refused:
        check_answer_offsets(task, "local file x.json", ids, contexts, [right] * 195 + [wrong] * 5)
    message = str(refused.value)
    assert "x.json" in message and "'q195'" in message and "'France' at character 3" in message
    assert "answer_start" in message and "\n" not in message
