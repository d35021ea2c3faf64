"""The F1-task scores against hand-computed values from their published definitions:
SQuAD v1.1 / MLQA token F1 and exact match, CoNLL-2000 (conlleval) entity F1, and word
accuracy for POS. Every expected number is worked out in the comment beside it."""

import pytest

from xitt import XittError
from xitt.metrics.qa import normalize_answer, normalized_tokens, qa_example_scores, qa_scores
from xitt.metrics.tagging import (accuracy_from_counts, entity_counts, entity_scores, f1_from_counts, iob2_spans,
                                  token_accuracy, token_counts)

# --- QA: SQuAD v1.1 (lang=None) --------------------------------------------------------


def test_partial_overlap_is_bag_of_tokens_f1():
    # pred -> [quick, brown, fox] ("the" is an article); gold -> [brown, fox, jumps].
    # overlap 2: P = 2/3, R = 2/3, F1 = 2/3; not an exact match.
    f1, em = qa_example_scores("the quick brown fox", ["brown fox jumps"])
    assert f1 == pytest.approx(2 / 3)
    assert em == 0.0


def test_repeated_tokens_count_as_a_multiset():
    # pred [paris, paris], gold [paris]: overlap min(2, 1) = 1, P = 1/2, R = 1, F1 = 2/3.
    f1, _ = qa_example_scores("Paris Paris", ["Paris"])
    assert f1 == pytest.approx(2 / 3)


def test_several_gold_answers_take_the_maximum():
    # vs "Broncos": P = 1/2, R = 1, F1 = 2/3; vs "Denver Broncos team": P = 1, R = 2/3,
    # F1 = 0.8; vs "Carolina": 0. Max F1 = 0.8, no exact match.
    f1, em = qa_example_scores("Denver Broncos", ["Broncos", "Denver Broncos team", "Carolina"])
    assert f1 == pytest.approx(0.8)
    assert em == 0.0
    # A gold that differs only in case and punctuation is an exact match (and F1 1).
    assert qa_example_scores("Denver Broncos", ["Carolina", "denver broncos."]) == (1.0, 1.0)


def test_english_articles_and_punctuation_are_removed():
    assert normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert qa_example_scores("An apple, a day", ["apple day"]) == (1.0, 1.0)
    # Articles go only as whole words: "theater" keeps its "the", and "a" inside
    # "Rome's" -> "romes" is not touched.
    assert normalize_answer("the theater in Rome's centre") == "theater in romes centre"
    assert qa_example_scores("a theater", ["theatre"]) == (0.0, 0.0)


def test_squad_punctuation_is_ascii_while_mlqa_uses_unicode_categories():
    # « and » are Unicode punctuation (Pi/Pf) but not in string.punctuation.
    assert normalize_answer("«Paris»") == "«paris»"
    assert qa_example_scores("«Paris»", ["Paris"]) == (0.0, 0.0)
    assert normalize_answer("«Paris»", "en") == "paris"
    assert qa_example_scores("«Paris»", ["Paris"], "en") == (1.0, 1.0)
    # string.punctuation's ASCII symbols ($ is category Sc, not P) still go under MLQA.
    assert normalize_answer("$100", "en") == "100"


def test_empty_prediction_scores_zero():
    assert qa_example_scores("", ["Paris"]) == (0.0, 0.0)


# --- QA: MLQA language-aware normalisation -----------------------------------------------


def test_chinese_is_scored_per_character():
    # pred [北, 京, 大, 学], gold [北, 京]: overlap 2, P = 2/4, R = 1, F1 = 2/3.
    f1, em = qa_example_scores("北京大学", ["北京"], "zh")
    assert f1 == pytest.approx(2 / 3)
    assert em == 0.0
    # Without character tokens the whole string is one token and nothing overlaps.
    assert qa_example_scores("北京大学", ["北京"])[0] == 0.0
    # Runs of non-CJK characters stay whole: [2008, 年, 北, 京, 奥, 运, 会] vs the gold's
    # 5 characters: overlap 5, P = 5/7, R = 1, F1 = 2 * (5/7) / (12/7) = 5/6.
    assert normalized_tokens("2008年北京奥运会", "zh") == ["2008", "年", "北", "京", "奥", "运", "会"]
    assert qa_example_scores("2008年北京奥运会", ["北京奥运会"], "zh")[0] == pytest.approx(5 / 6)
    assert normalized_tokens("iPhone 手机。", "zh") == ["iphone", "手", "机"]


def test_articles_per_language():
    assert qa_example_scores("la Casa Blanca", ["Casa Blanca"], "es") == (1.0, 1.0)
    assert qa_example_scores("die Deutsche Bank", ["Deutsche Bank"], "de") == (1.0, 1.0)
    assert normalize_answer("những con mèo", "vi") == "con mèo"
    # MLQA's released evaluation replaces every "ال" by a space (see xitt.metrics.qa).
    assert normalize_answer("الكتاب", "ar") == "كتاب"
    assert qa_example_scores("الكتاب", ["كتاب"], "ar") == (1.0, 1.0)
    # English articles mean nothing in German: "a" stays.
    assert normalize_answer("a Bank", "de") == "a bank"
    # Hindi has no article list: only lowercasing, punctuation and spacing change.
    assert normalize_answer("भारत  की राजधानी।", "hi") == "भारत की राजधानी"


def test_unknown_language_and_missing_golds_are_errors():
    with pytest.raises(XittError, match="does not know the language 'xx'"):
        qa_example_scores("a", ["a"], "xx")
    with pytest.raises(XittError, match="non-empty list of gold answers"):
        qa_example_scores("a", [])
    with pytest.raises(XittError, match="non-empty list of gold answers"):
        qa_example_scores("a", "a")


def test_qa_scores_average_over_questions_in_percent():
    # Question 1: F1 2/3, EM 0 (first test); question 2: F1 1, EM 1.
    # F1 = 100 * (2/3 + 1) / 2 = 83.33..., EM = 100 * 1 / 2 = 50.
    scores = qa_scores(["the quick brown fox", "Paris"], [["brown fox jumps"], ["paris", "Lyon"]])
    assert scores["f1"] == pytest.approx(250 / 3)
    assert scores["exact_match"] == pytest.approx(50.0)
    with pytest.raises(XittError, match="2 predictions but 1 questions"):
        qa_scores(["a", "b"], [["a"]])


# --- Tagging: IOB2 entities under the conlleval convention -----------------------------


def test_iob2_spans():
    assert iob2_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    # Two adjacent entities of one type are separated by B-.
    assert iob2_spans(["B-PER", "B-PER", "I-PER"]) == {("PER", 0, 1), ("PER", 1, 3)}
    assert iob2_spans(["O", "O"]) == set()
    assert iob2_spans([]) == set()


def test_a_stray_i_tag_starts_an_entity():
    # conlleval: an I-X after O (or at the start) begins an entity of type X.
    assert iob2_spans(["O", "I-ORG", "I-ORG", "O"]) == {("ORG", 1, 3)}
    assert iob2_spans(["I-LOC"]) == {("LOC", 0, 1)}
    # An I-X after a tag of another type ends that entity and begins one of type X.
    assert iob2_spans(["B-PER", "I-LOC", "I-LOC"]) == {("PER", 0, 1), ("LOC", 1, 3)}
    # So a stray I- in the prediction where gold has B- is still an exact match.
    assert entity_counts(["B-ORG", "I-ORG"], ["I-ORG", "I-ORG"]) == (1, 1, 1)


def test_boundary_errors_are_misses():
    # gold PER(0,2) LOC(3,4); pred PER(0,1) LOC(3,4): tp 1 of 2 predicted and 2 gold.
    # P = 50, R = 50, F1 = 50.
    gold, pred = ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "O", "O", "B-LOC"]
    assert entity_counts(gold, pred) == (1, 2, 2)
    scores = entity_scores([gold], [pred])
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((50.0, 50.0, 50.0))
    # A span that is too long is a miss too: pred PER(0,3).
    assert entity_counts(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "I-PER"]) == (0, 1, 1)


def test_entity_type_mismatch_is_a_miss():
    assert entity_counts(["B-ORG", "I-ORG", "O"], ["B-LOC", "I-LOC", "O"]) == (0, 1, 1)
    scores = entity_scores([["B-ORG", "I-ORG", "O"]], [["B-LOC", "I-LOC", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)


def test_entity_scores_are_micro_over_sentences():
    # Sentence 1: 2 gold, 2 predicted, both right. Sentence 2: 2 gold, 1 predicted, wrong
    # type. Summed: tp 2, predicted 3, gold 4: P = 200/3, R = 50,
    # F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = 4/7 = 57.142857...
    # (The mean of per-sentence F1s would be (100 + 0) / 2 = 50.)
    gold = [["B-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "B-PER"]]
    pred = [["B-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O", "O"]]
    scores = entity_scores(gold, pred)
    assert (scores["tp"], scores["n_pred"], scores["n_gold"]) == (2, 3, 4)
    assert scores["precision"] == pytest.approx(200 / 3)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(400 / 7)
    # Per-sentence counts summed over a resample give the same score as recomputing it:
    # the paired bootstrap relies on this. Resample (sentence 2, sentence 2, sentence 1).
    resample = [1, 1, 0]
    counts = [entity_counts(gold[i], pred[i]) for i in resample]
    summed = f1_from_counts(*(sum(column) for column in zip(*counts)))
    recomputed = entity_scores([gold[i] for i in resample], [pred[i] for i in resample])
    assert summed["f1"] == pytest.approx(recomputed["f1"])
    # tp 2, predicted 2 + 2 * 1 = 4, gold 2 * 2 + 2 = 6: P = 50, R = 100/3, F1 = 40.
    assert summed["f1"] == pytest.approx(40.0)


def test_no_predicted_entities_scores_zero():
    scores = entity_scores([["B-PER", "O"]], [["O", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)


def test_malformed_tag_input_is_an_error():
    with pytest.raises(XittError, match="'S-PER' is not an IOB2 tag"):
        iob2_spans(["S-PER"])
    with pytest.raises(XittError, match="Sentence 0 has 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(XittError, match="2 gold sentences but 1 predicted"):
        token_accuracy([["O"], ["O"]], [["O"]])


# --- POS: word accuracy -----------------------------------------------------------------


def test_pos_accuracy_is_micro_over_words():
    # Sentence 1: 2 of 3 right; sentence 2: 2 of 2 right. Micro: 4 / 5 = 80
    # (the mean of sentence accuracies would be (66.7 + 100) / 2 = 83.3).
    gold = [["NOUN", "VERB", "PUNCT"], ["DET", "NOUN"]]
    pred = [["NOUN", "NOUN", "PUNCT"], ["DET", "NOUN"]]
    assert token_accuracy(gold, pred) == pytest.approx(80.0)
    assert [token_counts(g, p) for g, p in zip(gold, pred)] == [(2, 3), (2, 2)]
    assert accuracy_from_counts(4, 5) == pytest.approx(80.0)
    assert accuracy_from_counts(0, 0) == 0.0
