"""The retrieval scoring core (xitt.tasktypes.retrieval.search) against independent
computations: a full-matrix sort for `nearest`, a plain-Python double loop for the ratio
margin mining of LASER / XTREME, planted translations for the mining end to end, and
hand-made candidate lists for the threshold and F1.

Exact comparisons of neighbours use integer-valued vectors: their inner products are exact
in float32 whatever order a BLAS sums them in, so ties are real ties and tie-breaking can
be checked exactly; random real vectors are compared with a tolerance on scores."""

import math

import numpy as np
import pytest

from xitt import XittError
from xitt.tasktypes.retrieval.search import (best_threshold, mine, mining_counts, nearest, nearest_accuracy,
                                             normalise, prf)


def brute_force(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by a stable sort of the whole similarity matrix (ties: lower key index)."""
    similarities = queries.astype(np.float64) @ keys.astype(np.float64).T
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarities, order, axis=1), order


# -- normalise and nearest -------------------------------------------------------------------

def test_normalise_unit_rows_and_zero_rows_stay_zero():
    vectors = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32) * 7
    vectors[2] = 0
    unit = normalise(vectors)
    assert unit.dtype == np.float32
    norms = np.linalg.norm(unit, axis=1)
    assert np.allclose(np.delete(norms, 2), 1, atol=1e-6)
    assert not unit[2].any() and not np.isnan(unit).any()
    assert np.allclose(unit[0], vectors[0] / np.linalg.norm(vectors[0]), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 10, 500])
@pytest.mark.parametrize("chunk_rows", [1, 37, 64, 4096])
def test_nearest_matches_full_sort_with_duplicate_keys(k, chunk_rows):
    rng = np.random.default_rng(1)
    keys = rng.integers(-3, 4, size=(300, 8)).astype(np.float32)
    keys[[10, 50, 51, 299]] = keys[5]  # duplicate keys: exact ties to break by index
    queries = rng.integers(-3, 4, size=(256, 8)).astype(np.float32)
    queries[:20] = keys[5]  # these queries' best keys are the tied duplicates
    scores, indices = nearest(queries, keys, k, chunk_rows=chunk_rows)
    expected_scores, expected = brute_force(queries, keys, min(k, len(keys)))
    assert indices.shape == (256, min(k, 300)) and indices.dtype == np.int64 and scores.dtype == np.float32
    assert np.array_equal(indices, expected)
    assert np.array_equal(scores, expected_scores)
    if k >= 5:
        assert indices[0, :5].tolist() == [5, 10, 50, 51, 299]


@pytest.mark.parametrize("chunk_rows", [7, 100, 1000])
def test_nearest_matches_full_sort_on_random_unit_vectors(chunk_rows):
    rng = np.random.default_rng(2)
    keys = normalise(rng.normal(size=(400, 32)))
    queries = normalise(rng.normal(size=(250, 32)))
    for k in (1, 4, 17):
        scores, indices = nearest(queries, keys, k, chunk_rows=chunk_rows)
        expected_scores, expected = brute_force(queries, keys, k)
        assert np.array_equal(indices, expected)
        assert np.allclose(scores, expected_scores, atol=1e-6)


def test_nearest_large_in_bounded_chunks():
    # 20,000 x 20,000 similarities would be 1.6 GB at once; with chunk_rows=1000 one chunk is
    # 80 MB, partitioned in blocks of rows. A sample of rows is recomputed with other chunks.
    rng = np.random.default_rng(3)
    keys = rng.integers(-255, 256, size=(20_000, 64)).astype(np.float32)
    queries = rng.integers(-255, 256, size=(20_000, 64)).astype(np.float32)
    scores, indices = nearest(queries, keys, 5, chunk_rows=1000)
    sample = np.sort(rng.choice(len(queries), size=200, replace=False))
    again_scores, again = nearest(queries[sample], keys, 5, chunk_rows=13)
    assert np.array_equal(indices[sample], again) and np.array_equal(scores[sample], again_scores)
    expected_scores, expected = brute_force(queries[sample[:50]], keys, 5)
    assert np.array_equal(indices[sample[:50]], expected) and np.array_equal(scores[sample[:50]], expected_scores)


def test_bad_input_is_a_xitt_error():
    with pytest.raises(XittError, match="dimensions"):
        nearest(np.ones((3, 4)), np.ones((5, 6)), 1)
    with pytest.raises(XittError, match="2-D"):
        normalise(np.ones(4))
    with pytest.raises(XittError, match="NaN"):
        mine(np.full((2, 3), np.nan), np.ones((2, 3)))
    with pytest.raises(XittError, match="k=0"):
        nearest(np.ones((3, 4)), np.ones((5, 4)), 0)
    with pytest.raises(XittError, match="gold target"):
        nearest_accuracy(np.ones((3, 4)), np.ones((3, 4)), np.arange(2))


# -- mining against a plain-Python implementation ----------------------------------------------

def loop_mine(x: np.ndarray, y: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """LASER's max-retrieval ratio-margin mining written out with loops: (source, target,
    margin) kept greedily one-to-one, by descending margin."""
    def cos(a, b):
        return sum(float(p) * float(q) for p, q in zip(a, b))

    similarity = [[cos(a, b) for b in y] for a in x]
    k_x, k_y = min(k, len(y)), min(k, len(x))
    fwd_mean = [sum(sorted(row, reverse=True)[:k_x]) / k_x for row in similarity]
    bwd_mean = [sum(sorted((similarity[i][j] for i in range(len(x))), reverse=True)[:k_y]) / k_y
                for j in range(len(y))]

    def margin(i, j):
        return similarity[i][j] / ((fwd_mean[i] + bwd_mean[j]) / 2)

    candidates = []
    for i in range(len(x)):
        neighbours = sorted(range(len(y)), key=lambda j: (-similarity[i][j], j))[:k_x]
        best = max(neighbours, key=lambda j: margin(i, j))
        candidates.append((margin(i, best), i, best))
    for j in range(len(y)):
        neighbours = sorted(range(len(x)), key=lambda i: (-similarity[i][j], i))[:k_y]
        best = max(neighbours, key=lambda i: margin(i, j))
        candidates.append((margin(best, j), best, j))
    kept, used_source, used_target = [], set(), set()
    for score, i, j in sorted(candidates, key=lambda c: -c[0]):
        if i not in used_source and j not in used_target:
            used_source.add(i)
            used_target.add(j)
            kept.append((i, j, score))
    return kept


def test_mine_matches_loop_implementation():
    rng = np.random.default_rng(4)
    x = normalise(rng.normal(size=(200, 12)))
    y = normalise(rng.normal(size=(250, 12)))
    y[:150] = normalise(x[:150] + 0.6 * rng.normal(size=(150, 12)))  # some real translations
    for k in (4, 1):
        mined = mine(x, y, k=k, chunk_rows=64)
        expected = loop_mine(x, y, k)
        assert list(zip(mined.source.tolist(), mined.target.tolist())) == [(i, j) for i, j, _ in expected]
        assert np.allclose(mined.score, [s for _, _, s in expected], rtol=1e-5)
        assert np.all(np.diff(mined.score) <= 0)
        gold = {(i, i) for i in range(150)}
        threshold = float(np.median(mined.score))
        loop_tp = sum((i, j) in gold for i, j, s in expected if s >= threshold)
        loop_mined = sum(s >= threshold for _, _, s in expected)
        result = prf(mined.source, mined.target, mined.score, threshold, gold)
        assert (result["tp"], result["mined"], result["gold"]) == (loop_tp, loop_mined, 150)
        assert result["f1"] == pytest.approx(100 * 2 * loop_tp / (loop_mined + 150))


def test_mining_recovers_planted_translations():
    rng = np.random.default_rng(5)
    source = rng.normal(size=(300, 64))
    planted = rng.permutation(300)[:200]  # 100 source sentences have no translation
    translations = source[planted] + 0.8 * rng.normal(size=(200, 64))
    targets = np.concatenate((translations, rng.normal(size=(300, 64))))  # 300 distractors
    shuffle = rng.permutation(500)
    targets = targets[shuffle]
    position = np.argsort(shuffle)  # where target row r of the unshuffled list went
    gold = {(int(s), int(position[r])) for r, s in enumerate(planted)}
    distractors = set(position[200:].tolist())

    mined = mine(source.astype(np.float32), targets.astype(np.float32))
    is_gold = [(s, t) in gold for s, t in zip(mined.source.tolist(), mined.target.tolist())]
    threshold, f1 = best_threshold(mined.score, is_gold, len(gold))
    result = prf(mined.source, mined.target, mined.score, threshold, gold)
    assert f1 > 95 and result["f1"] == pytest.approx(f1)
    selected = mined.score >= threshold
    assert not distractors & set(mined.target[selected].tolist())
    assert not set(mined.source[selected].tolist()) - set(planted.tolist())


# -- threshold, F1 and per-sentence counts ------------------------------------------------------

@pytest.mark.parametrize("scores, is_gold, n_gold, threshold, f1", [
    # prefixes: 2/5, (tie: no cut after 0.8 alone), 4/7, 6/8, 6/9, 6/10 -> after 0.7
    ([0.9, 0.8, 0.8, 0.7, 0.5, 0.4], [1, 1, 0, 1, 0, 0], 4, 0.6, 75.0),
    # cutting between the tied 0.8s would give F1 100, but no threshold can
    ([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0], 2, 0.45, 80.0),
    # 2/3 after 0.9 and again after 0.6: the higher threshold wins
    ([0.9, 0.8, 0.7, 0.6], [1, 0, 0, 1], 2, 0.85, 200 / 3),
    # the best prefix is everything: the threshold is the last score
    ([0.8, 0.9], [1, 1], 2, 0.8, 100.0),
    # no gold among the candidates: nothing is mined
    ([0.9, 0.8], [0, 0], 3, math.inf, 0.0),
    ([], [], 3, math.inf, 0.0),
])
def test_best_threshold_on_hand_made_candidates(scores, is_gold, n_gold, threshold, f1):
    found_threshold, found_f1 = best_threshold(np.array(scores), np.array(is_gold, bool), n_gold)
    assert found_threshold == pytest.approx(threshold) and found_f1 == pytest.approx(f1)
    source = np.arange(len(scores))
    target = source + 100
    gold = {(i, i + 100) for i, flag in enumerate(is_gold) if flag}
    gold |= {(1000 + i, 2000 + i) for i in range(n_gold - len(gold))}  # gold pairs never mined
    assert prf(source, target, np.array(scores), found_threshold, gold)["f1"] == pytest.approx(found_f1)


def test_best_threshold_cut_between_adjacent_floats():
    low = 0.5
    high = float(np.nextafter(low, 1))
    threshold, f1 = best_threshold(np.array([high, low]), np.array([True, False]), 1)
    assert f1 == 100.0 and threshold == high  # the midpoint rounds onto a score: the upper one


def test_prf_counts_and_errors():
    source, target = np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8])
    scores = np.array([3.0, 2.0, 1.5, 1.0])
    result = prf(source, target, scores, 1.5, {(0, 5), (2, 9), (3, 8), (4, 4)})
    assert result == {"precision": 100 / 3, "recall": 25.0, "f1": 100 * 2 / 7, "tp": 1, "mined": 3, "gold": 4}
    assert prf(source, target, scores, 10.0, set())["f1"] == 0.0
    with pytest.raises(XittError, match="more than once"):
        prf(np.array([0, 0]), np.array([1, 1]), np.array([1.0, 1.0]), 0.0, set())


def test_mining_counts_sum_to_prf():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 16)).astype(np.float32)
    y = np.concatenate((x[:80] + 0.7 * rng.normal(size=(80, 16)), rng.normal(size=(60, 16)))).astype(np.float32)
    gold = {(i, i) for i in range(80)} | {(100, 139)}
    mined = mine(x, y)
    threshold = float(np.quantile(mined.score, 0.4))
    counts = mining_counts(len(x), mined.source, mined.target, mined.score, threshold, gold)
    result = prf(mined.source, mined.target, mined.score, threshold, gold)
    tp, n_mined, n_gold = counts.sum(axis=0).tolist()
    assert counts.shape == (120, 3) and (tp, n_mined, n_gold) == (result["tp"], result["mined"], result["gold"])
    assert 100 * 2 * tp / (n_mined + n_gold) == result["f1"]
    assert counts[100].tolist() == [int((100, 139) in set(zip(mined.source[mined.score >= threshold].tolist(),
                                                               mined.target[mined.score >= threshold].tolist()))),
                                    int(100 in mined.source[mined.score >= threshold]), 1]
    with pytest.raises(XittError, match="n_source"):
        mining_counts(50, mined.source, mined.target, mined.score, threshold, gold)


def test_nearest_accuracy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 32)).astype(np.float32)
    accuracy, predicted = nearest_accuracy(x, x * 3, np.arange(400))
    assert accuracy == 100.0 and np.array_equal(predicted, np.arange(400))
    accuracy, _ = nearest_accuracy(x, rng.normal(size=(400, 32)), np.arange(400))
    assert accuracy < 3  # chance is 1/400 = 0.25%
