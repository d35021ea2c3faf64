"""xitt's own scorers against maintained reference implementations on many random inputs:
macro-F1 against scikit-learn (and torchmetrics, which scores the development set), entity
F1 against seqeval's default (conlleval) mode, SQuAD F1 and exact match against
torchmetrics' SQuAD. Every known difference is tested on its own and accounted for
exactly; everything else must agree to 1e-6 (scores on the 0-100 scale).

The inputs are drawn with fixed seeds, so a failure reproduces."""

import string
import unicodedata

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.metrics import precision_score as seqeval_precision
from seqeval.metrics import recall_score as seqeval_recall
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score
from torchmetrics.text import SQuAD

from xitt.metrics.classification import classification_scores
from xitt.metrics.qa import normalized_tokens, qa_scores
from xitt.metrics.tagging import entity_scores
from xitt.tasktypes.classification.training import dev_metrics

TOLERANCE = 1e-6
# torchmetrics' classification metrics divide in float32 whatever the input: 1e-4 points on
# the 0-100 scale is float32's rounding of a mean of a few ratios, far below any real gap.
FLOAT32_TOLERANCE = 1e-4


# --- classification: macro-F1 ---------------------------------------------------------


def classification_cases(count: int, seed: int):
    """(gold, pred, number of classes): uniform labels, labels from a random subset of the
    classes (so some are absent from gold, from predictions, or from both), one class
    predicted for everything, one gold class, and near-perfect predictions."""
    rng = np.random.default_rng(seed)
    for case in range(count):
        n_classes, n = int(rng.integers(2, 8)), int(rng.integers(1, 60))
        kind = case % 5
        gold = rng.integers(0, n_classes, n)
        if kind == 0:
            pred = rng.integers(0, n_classes, n)
        elif kind == 1:
            gold = rng.choice(rng.choice(n_classes, int(rng.integers(1, n_classes + 1)), replace=False), n)
            pred = rng.choice(rng.choice(n_classes, int(rng.integers(1, n_classes + 1)), replace=False), n)
        elif kind == 2:
            pred = np.full(n, rng.integers(0, n_classes))
        elif kind == 3:
            gold = np.full(n, rng.integers(0, n_classes))
            pred = rng.integers(0, n_classes, n)
        else:
            pred = np.where(rng.random(n) < 0.8, gold, rng.integers(0, n_classes, n))
        yield gold, pred, n_classes


def test_macro_f1_and_accuracy_equal_scikit_learn_on_random_predictions():
    largest = 0.0
    for gold, pred, n_classes in classification_cases(2000, seed=0):
        ours = classification_scores(gold, pred, n_classes)
        # scikit-learn's default labels are those seen in gold or predictions: xitt's definition
        theirs = 100 * f1_score(gold, pred, average="macro", zero_division=0)
        largest = max(largest, abs(ours["f1"] - theirs), abs(ours["accuracy"] - 100 * accuracy_score(gold, pred)))
    assert largest < TOLERANCE


def test_the_development_metrics_equal_xitts_macro_f1_on_random_predictions():
    """The torchmetrics objects a classifier validates with, fed in batches as
    validation_step feeds them, give the test records' macro-F1 and accuracy."""
    largest = 0.0
    for gold, pred, n_classes in classification_cases(1000, seed=1):
        metrics = dev_metrics(n_classes)
        for start in range(0, len(gold), 16):
            metrics.update(torch.from_numpy(pred[start:start + 16]), torch.from_numpy(gold[start:start + 16]))
        theirs = {name: 100 * float(value) for name, value in metrics.compute().items()}
        ours = classification_scores(gold, pred, n_classes)
        largest = max(largest, abs(ours["f1"] - theirs["f1"]), abs(ours["accuracy"] - theirs["accuracy"]))
    assert largest < FLOAT32_TOLERANCE


def test_a_class_absent_from_gold_and_predictions_is_left_out_of_the_mean():
    # classes 0 and 1 predicted perfectly, class 2 never seen: 100, not (100 + 100 + 0) / 3
    gold = pred = np.array([0, 1, 1, 0])
    assert classification_scores(gold, pred, 3)["f1"] == 100.0
    assert 100 * float(dev_metrics(3)["f1"](torch.from_numpy(pred), torch.from_numpy(gold))) == 100.0
    # scikit-learn with every class named scores the absent one 0: the definition xitt does not use
    assert 100 * f1_score(gold, pred, labels=[0, 1, 2], average="macro", zero_division=0) == pytest.approx(200 / 3)


# --- tagging: entity F1 ---------------------------------------------------------------

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def tag_sentences(rng: np.random.Generator, n_sentences: int) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted IOB2 tags: runs of entities, stray `I-` tags, type changes inside
    a run, and predictions that copy the gold with some tags replaced (boundary and type
    errors), or are random."""
    gold, pred = [], []
    for _ in range(n_sentences):
        length = int(rng.integers(0, 14))
        sentence = [TAGS[i] for i in rng.choice(len(TAGS), length, p=[0.4, 0.1, 0.15, 0.1, 0.1, 0.05, 0.1])]
        if rng.random() < 0.3:
            guess = [TAGS[i] for i in rng.integers(0, len(TAGS), length)]
        else:
            guess = [TAGS[int(rng.integers(0, len(TAGS)))] if rng.random() < 0.2 else tag for tag in sentence]
        gold.append(sentence)
        pred.append(guess)
    return gold, pred


def test_entity_f1_equals_seqevals_default_conlleval_mode_on_random_tags():
    rng = np.random.default_rng(2)
    largest = 0.0
    for _ in range(3000):
        gold, pred = tag_sentences(rng, int(rng.integers(1, 8)))
        ours = entity_scores(gold, pred)
        theirs = {"f1": seqeval_f1(gold, pred, zero_division=0),
                  "precision": seqeval_precision(gold, pred, zero_division=0),
                  "recall": seqeval_recall(gold, pred, zero_division=0)}
        largest = max(largest, *(abs(ours[name] - 100 * value) for name, value in theirs.items()))
    assert largest < TOLERANCE


def test_a_stray_inside_tag_starts_an_entity_as_conlleval_reads_it_not_as_strict_iob2_does():
    # "I-PER" after "O" is read as a one-word PER entity by conlleval (and xitt, and
    # seqeval's default mode); seqeval's strict IOB2 mode drops it.
    gold, pred = [["O", "I-PER", "O", "B-LOC"]], [["O", "I-PER", "O", "B-LOC"]]
    assert entity_scores(gold, pred)["n_gold"] == 2 and entity_scores(gold, pred)["f1"] == 100.0
    assert seqeval_f1(gold, pred) == 1.0
    gold, pred = [["O", "I-PER", "O", "B-LOC"]], [["O", "B-PER", "O", "B-LOC"]]
    assert entity_scores(gold, pred)["f1"] == 100 * seqeval_f1(gold, pred) == 100.0
    # strict mode sees only the LOC entity in the gold and both in the prediction
    assert seqeval_f1(gold, pred, mode="strict", scheme=IOB2) == pytest.approx(2 / 3)


# --- QA: SQuAD F1 and exact match -------------------------------------------------------

# Words with the cases the normalisation is about: articles in every case and inside other
# words, ASCII punctuation inside and around words, Unicode punctuation (not SQuAD's, but
# MLQA's), non-ASCII letters, repeated tokens.
WORDS = ["the", "The", "THE", "a", "A", "an", "An", "theater", "another", "and", "banana", "Paris", "paris",
         "PARIS", "New", "York", "new", "1,000", "3.5", "U.S.", "dog's", "(1990)", "co-op", "end.", "\"quoted\"",
         "$5", "50%", "--", "...", "!", "?", "Über", "naïve", "Ünïcödé", "«Paris»", "—", "word—word", "“smart”",
         "¿qué?", "中文", "x", "X", "y"]
SEPARATORS = [" ", "  ", "\t", "\n", " , "]


def random_answer(rng: np.random.Generator) -> str:
    """A random answer string; now and then empty, or only articles and punctuation (which
    normalises to no tokens at all)."""
    roll = rng.random()
    if roll < 0.05:
        return ""
    if roll < 0.12:
        return " ".join(rng.choice(["the", "A", "an", "...", "!", "--", "?"], int(rng.integers(1, 4))))
    words = rng.choice(WORDS, int(rng.integers(1, 7)))
    return "".join(word + str(rng.choice(SEPARATORS)) for word in words).strip(" ")


def random_question(rng: np.random.Generator) -> tuple[str, list[str]]:
    """A prediction and 1-3 gold answers: the prediction is random, a gold answer with
    words dropped, added or recased, or a gold answer itself."""
    golds = [random_answer(rng) for _ in range(int(rng.integers(1, 4)))]
    roll = rng.random()
    if roll < 0.3:
        return random_answer(rng), golds
    base = golds[int(rng.integers(0, len(golds)))]
    if roll < 0.45:
        return base, golds
    words = base.split()
    if words and rng.random() < 0.5:
        words.pop(int(rng.integers(0, len(words))))
    if rng.random() < 0.5:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(WORDS)))
    if rng.random() < 0.3:
        words = [word.upper() for word in words]
    return " ".join(words), golds


@pytest.fixture
def float64():
    """torchmetrics' SQuAD sums per-question scores in the default float type: float64
    here, so that the comparison sees the logic and not float32's rounding of the sum."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def torchmetrics_squad(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    metric = SQuAD()
    metric.set_dtype(torch.float64)
    metric.update([{"prediction_text": pred, "id": str(i)} for i, pred in enumerate(predictions)],
                  [{"answers": {"text": list(answers), "answer_start": [0] * len(answers)}, "id": str(i)}
                   for i, answers in enumerate(golds)])
    return {name: float(value) for name, value in metric.compute().items()}


def both_empty(pred: str, golds: list[str], lang: str | None) -> bool:
    """The one case where the two definitions differ: the prediction and a gold answer
    both normalise to no tokens. SQuAD v1.1's script (and MLQA's, and xitt) scores F1 0
    there (no overlap); SQuAD v2.0's script, which torchmetrics follows, scores F1 1."""
    return not normalized_tokens(pred, lang) and any(not normalized_tokens(gold, lang) for gold in golds)


def without_unicode_punctuation(text: str) -> str:
    return "".join(char for char in text if not unicodedata.category(char).startswith("P")
                   or char in string.punctuation)


@pytest.mark.parametrize("lang", [None, "en"])
def test_squad_f1_and_exact_match_equal_torchmetrics_on_random_answers(float64, lang):
    """lang=None is SQuAD v1.1's normalisation. lang="en" is MLQA's, which also deletes
    Unicode punctuation (SQuAD deletes ASCII punctuation only): it equals SQuAD's on the
    answers with that punctuation deleted first."""
    rng = np.random.default_rng(3)
    largest, empty_cases = 0.0, 0
    for _ in range(300):  # 300 data sets of 1-20 questions: 3,201 questions
        questions = [random_question(rng) for _ in range(int(rng.integers(1, 21)))]
        predictions, golds = [pred for pred, _ in questions], [answers for _, answers in questions]
        ours = qa_scores(predictions, golds, lang)
        if lang == "en":
            predictions = [without_unicode_punctuation(pred) for pred in predictions]
            golds = [[without_unicode_punctuation(gold) for gold in answers] for answers in golds]
        theirs = torchmetrics_squad(predictions, golds)
        empty = sum(both_empty(pred, answers, lang) for pred, answers in questions)
        empty_cases += empty
        expected_f1 = ours["f1"] + 100 * empty / len(questions)  # the known difference, exactly
        largest = max(largest, abs(expected_f1 - theirs["f1"]), abs(ours["exact_match"] - theirs["exact_match"]))
    assert largest < TOLERANCE
    assert empty_cases > 0  # the known difference occurred and was accounted for


def test_answers_that_both_normalise_to_nothing_have_f1_0_as_in_squad_v1_1(float64):
    # "The" and "a" both normalise to no tokens: an exact match, but no token overlap
    assert qa_scores(["The"], [["a"]]) == {"f1": 0.0, "exact_match": 100.0}
    assert torchmetrics_squad(["The"], [["a"]]) == {"f1": 100.0, "exact_match": 100.0}
    # any other empty prediction scores 0 under both
    assert qa_scores([""], [["Paris"]]) == {"f1": 0.0, "exact_match": 0.0} == torchmetrics_squad([""], [["Paris"]])


def _rank_dev_scores(rank: int, world_size: int, port: int, gold: np.ndarray, pred: np.ndarray, out) -> None:
    """One rank of a gloo process group: its share of the examples (every other one, as the
    development loaders shard them) counted into the development metrics, then computed."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)
    metrics = dev_metrics(4)
    metrics.update(torch.from_numpy(pred[rank::world_size]), torch.from_numpy(gold[rank::world_size]))
    out.put((rank, {name: 100 * float(value) for name, value in metrics.compute().items()}))
    torch.distributed.destroy_process_group()


def test_the_development_metrics_of_every_rank_score_the_whole_development_set():
    """Under DDP each rank validates a share of the development set; torchmetrics sums the
    counts over the ranks, so every rank gets the whole set's score, which model selection
    (the same on every rank) needs. Two forked processes in a gloo group."""
    import multiprocessing
    import socket

    rng = np.random.default_rng(4)
    gold, pred = rng.integers(0, 4, 101), rng.integers(0, 4, 101)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")  # no re-import of this module in the ranks
    out = context.Queue()
    ranks = [context.Process(target=_rank_dev_scores, args=(rank, 2, port, gold, pred, out)) for rank in (0, 1)]
    for process in ranks:
        process.start()
    by_rank = dict(out.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
        assert process.exitcode == 0
    whole = classification_scores(gold, pred, 4)
    for rank in (0, 1):
        assert by_rank[rank]["f1"] == pytest.approx(whole["f1"], abs=FLOAT32_TOLERANCE)
        assert by_rank[rank]["accuracy"] == pytest.approx(whole["accuracy"], abs=FLOAT32_TOLERANCE)
    # one rank's share alone scores differently: the agreement above is the summing
    assert abs(classification_scores(gold[::2], pred[::2], 4)["f1"] - whole["f1"]) > FLOAT32_TOLERANCE
