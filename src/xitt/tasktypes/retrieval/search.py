"""The scoring core of sentence retrieval as XTREME does it: bitext mining by ratio margin
(BUCC) and nearest-neighbour accuracy (Tatoeba), over sentence embeddings given as float32
numpy arrays of shape (sentences, dimensions).

Everything here is numpy only (no torch, no faiss), so that scoring the embeddings of a
finished model needs neither the model nor a GPU, and gives the same numbers on every
machine. The similarity of every query to every key is never held at once: BUCC's corpora
have some 10^5 sentences a side, and their full float32 similarity matrix (40 GB at 10^5 x
10^5) would not fit; `nearest` works through the queries `chunk_rows` at a time.

Determinism: neighbours are sorted by descending similarity with ties broken by the lower
key index, candidates by descending margin with ties broken by their place in the pooled
list (forward candidates first, in source order, then backward ones, in target order), so
that the same embeddings give the same pairs whatever the chunk size.
"""

from dataclasses import dataclass

import numpy as np

from xitt import XittError

# The most bytes of int64 indices that one `np.argpartition` call may return: it returns an
# index for every similarity it is given, twice the bytes of the float32 chunk itself, so
# the chunk is partitioned a block of rows at a time.
_PARTITION_BYTES = 64 << 20


def normalise(vectors: np.ndarray) -> np.ndarray:
    """`vectors` as float32 rows of unit L2 norm, so that inner products are cosines. A zero
    row (say, the embedding of an empty sentence) stays zero rather than becoming NaN: it
    is then equally dissimilar (cosine 0) to everything."""
    vectors = _matrix(vectors, "vectors")
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def nearest(queries: np.ndarray, keys: np.ndarray, k: int, chunk_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the `k` keys of highest inner product (cosine, for normalised
    rows): `(scores, indices)`, both (len(queries), k), float32 and int64, sorted by
    descending score with ties broken by the lower key index. `k` is clipped to len(keys).

    The queries are scored `chunk_rows` at a time, so that at most chunk_rows x len(keys)
    float32 similarities exist at once (4096 x 10^5 keys: 1.6 GB), plus at most 64 MiB of
    partition indices; each chunk's top k is found by partial partition (linear in
    len(keys)), not by sorting every row. faiss is not used even where installed: its order
    among tied keys is its own, and this order is the one the tests pin down."""
    queries, keys = _matrix(queries, "queries"), _matrix(keys, "keys")
    _check_pair(queries, keys, "queries", "keys")
    k = _clipped_k(k, len(keys))
    if chunk_rows < 1:
        raise XittError(f"nearest was given chunk_rows={chunk_rows}; it scores that many queries at a time, "
                        "so it must be at least 1. Pass a positive chunk_rows (4096 by default).")
    scores = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    block = max(1, _PARTITION_BYTES // (8 * len(keys)))
    # One buffer for every chunk: a new array per chunk would briefly coexist with the last
    # one (doubling the peak) and be paged in afresh each time.
    buffer = np.empty((min(chunk_rows, len(queries)), len(keys)), dtype=np.float32)
    for start in range(0, len(queries), chunk_rows):
        chunk = queries[start:start + chunk_rows]
        similarities = np.matmul(chunk, keys.T, out=buffer[:len(chunk)])
        for row in range(0, len(similarities), block):
            rows = slice(start + row, start + min(row + block, len(similarities)))
            scores[rows], indices[rows] = _top_k(similarities[row:row + block], k)
    return scores, indices


def _top_k(similarities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest similarities of each row and their column indices, in the order
    `nearest` promises. `np.argpartition` puts the k highest last, but picks arbitrarily
    among values tied with the k-th highest across that boundary; the rows where such a tie
    exists (duplicate keys, say), found by counting the values equal to the k-th highest,
    are redone to keep the lowest indices."""
    m = similarities.shape[1]
    if k == m:
        chosen = np.broadcast_to(np.arange(m), similarities.shape).copy()
    else:
        chosen = np.argpartition(similarities, m - k, axis=1)[:, m - k:]
        kth = np.take_along_axis(similarities, chosen[:, :1], axis=1)
        tied_in_top = (np.take_along_axis(similarities, chosen, axis=1) == kth).sum(axis=1)
        tied = (similarities == kth).sum(axis=1) > tied_in_top
        for row in np.flatnonzero(tied):
            chosen[row] = _lowest_index_top_k(similarities[row], kth[row, 0], k)
    values = np.take_along_axis(similarities, chosen, axis=1)
    order = np.lexsort((chosen, -values), axis=1)
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(chosen, order, axis=1)


def _lowest_index_top_k(row: np.ndarray, kth_value: np.float32, k: int) -> np.ndarray:
    """The k top columns of one row whose k-th highest value is tied with values outside the
    top k: all columns above that value, then the lowest-indexed of those equal to it."""
    above = np.flatnonzero(row > kth_value)
    return np.concatenate((above, np.flatnonzero(row == kth_value)[:k - len(above)]))


@dataclass(frozen=True)
class Mined:
    """Mined sentence pairs, one-to-one: `source[i]` and `target[i]` are the indices of the
    pair's sentences, `score[i]` its ratio margin; sorted by descending margin."""

    source: np.ndarray  # int64
    target: np.ndarray  # int64
    score: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.source)


def mine(x: np.ndarray, y: np.ndarray, k: int = 4, chunk_rows: int = 4096) -> Mined:
    """Mine pairs of sentences that translate each other from source embeddings `x` and
    target embeddings `y`, as LASER's `mine_bitexts.py --mode mine --retrieval max
    --margin ratio` does and XTREME's BUCC scoring uses (Artetxe & Schwenk, 2019).

    The rows are normalised first (cosine is what the margin is defined over). Then

        margin(x_i, y_j) = cos(x_i, y_j) / (fwd_i / 2 + bwd_j / 2),

    where fwd_i is the mean cosine of x_i to its k nearest neighbours in y, and bwd_j that
    of y_j to its k nearest neighbours in x (k clipped to the other side's size). Dividing
    by the neighbourhoods' density discounts "hubs", sentences close to everything, which
    plain cosine would pair with many sentences.

    Candidates: each x_i with the y_j of highest margin among x_i's k nearest neighbours by
    cosine (forward), and each y_j with the x_i of highest margin among y_j's k nearest
    neighbours (backward); a tie in margin goes to the nearer neighbour. All len(x) + len(y)
    candidates are pooled and sorted by descending margin (ties: forward before backward,
    each in index order), and a candidate is kept when neither its source nor its target
    sentence is in a pair kept before it. No threshold is applied: every kept pair is
    returned, and `best_threshold` / `prf` decide which count as mined.

    A pair whose denominator is not positive (a zero embedding, or a sentence whose nearest
    neighbours all point away from it) has no meaningful ratio and gets margin -inf: it can
    only be kept for sentences that have no other candidate, and ranks last."""
    x, y = normalise(x), normalise(y)
    _check_pair(x, y, "x (source)", "y (target)")
    if len(x) == 0 or len(y) == 0:
        raise XittError(f"mine was given {len(x)} source and {len(y)} target embeddings; mining pairs needs "
                        "sentences on both sides. Check that both corpora were read and embedded.")
    x2y_index = nearest(x, y, k, chunk_rows)[1]
    y2x_index = nearest(y, x, k, chunk_rows)[1]
    x2y_cos = _pair_cosines(x, y, np.arange(len(x))[:, None], x2y_index, chunk_rows)
    y2x_cos = _pair_cosines(x, y, y2x_index, np.arange(len(y))[:, None], chunk_rows)
    x2y_mean, y2x_mean = x2y_cos.mean(axis=1), y2x_cos.mean(axis=1)
    forward, forward_score = _best_candidates(x2y_cos, x2y_index, x2y_mean, y2x_mean)
    backward, backward_score = _best_candidates(y2x_cos, y2x_index, y2x_mean, x2y_mean)
    source = np.concatenate((np.arange(len(x)), backward))
    target = np.concatenate((forward, np.arange(len(y))))
    return _one_to_one(source, target, np.concatenate((forward_score, backward_score)))


def _pair_cosines(x: np.ndarray, y: np.ndarray, source: np.ndarray, target: np.ndarray,
                  chunk_rows: int) -> np.ndarray:
    """cos(x[source], y[target]) in float64 for index arrays that broadcast to (rows, k).
    The neighbours were found with float32 similarities, whose last bits depend on how the
    BLAS blocked the product; recomputing the candidates' cosines by one fixed expression
    gives a pair the same cosine whichever side found it, so its forward and backward
    margins are equal and real ties (mutual nearest neighbours have margin exactly 1 when
    k = 1) stay ties."""
    source, target = np.broadcast_arrays(source, target)
    cosines = np.empty(source.shape)
    for start in range(0, len(source), chunk_rows):
        rows = slice(start, start + chunk_rows)
        products = x[source[rows]].astype(np.float64) * y[target[rows]]
        cosines[rows] = products.sum(axis=-1)
    return cosines


def _best_candidates(cosines: np.ndarray, neighbours: np.ndarray, own_mean: np.ndarray,
                     other_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the neighbour of highest margin among its k nearest (the first, so the
    nearer, on ties) and that margin."""
    denominators = (own_mean[:, None] + other_mean[neighbours]) / 2
    margins = np.full(cosines.shape, -np.inf)
    np.divide(cosines, denominators, out=margins, where=denominators > 0)
    best = np.argmax(margins, axis=1)[:, None]
    return np.take_along_axis(neighbours, best, axis=1)[:, 0], np.take_along_axis(margins, best, axis=1)[:, 0]


def _one_to_one(source: np.ndarray, target: np.ndarray, score: np.ndarray) -> Mined:
    """The candidates kept greedily by descending score (a stable sort, so ties keep their
    pooled order) when neither of their sentences was taken by a better one."""
    order = np.argsort(-score, kind="stable")
    used_source, used_target, kept = set(), set(), []
    for candidate, s, t in zip(order.tolist(), source[order].tolist(), target[order].tolist()):
        if s not in used_source and t not in used_target:
            used_source.add(s)
            used_target.add(t)
            kept.append(candidate)
    return Mined(source[kept].astype(np.int64), target[kept].astype(np.int64), score[kept])


def prf(mined_source: np.ndarray, mined_target: np.ndarray, scores: np.ndarray, threshold: float,
        gold_pairs: set[tuple[int, int]]) -> dict[str, float]:
    """Precision, recall and F1 (0-100) of the pairs whose score is >= `threshold`, against
    `gold_pairs` ((source index, target index)), as BUCC scores mining; with `tp`, `mined`
    and `gold`, the counts behind them. F1 = 2 tp / (mined + gold), which equals the
    harmonic mean of precision and recall and is 0 (not undefined) when nothing is mined
    and nothing is gold."""
    pairs = _selected_pairs(mined_source, mined_target, scores, threshold)
    tp = sum(pair in gold_pairs for pair in pairs)
    mined, gold = len(pairs), len(gold_pairs)
    return {"precision": 100 * tp / mined if mined else 0.0, "recall": 100 * tp / gold if gold else 0.0,
            "f1": _f1(tp, mined, gold), "tp": tp, "mined": mined, "gold": gold}


def _f1(tp: int, mined: int, gold: int) -> float:
    return 100 * 2 * tp / (mined + gold) if mined + gold else 0.0


def _selected_pairs(source: np.ndarray, target: np.ndarray, scores: np.ndarray,
                    threshold: float) -> list[tuple[int, int]]:
    """The (source, target) pairs scoring >= threshold, checked to be distinct: a pair
    listed twice would count twice as mined and as correct, so its F1 would be wrong."""
    source, target, scores = np.asarray(source), np.asarray(target), np.asarray(scores)
    if not source.shape == target.shape == scores.shape or source.ndim != 1:
        raise XittError(f"The mined pairs have {source.shape} source indices, {target.shape} target indices and "
                        f"{scores.shape} scores; they must be three 1-D arrays of one length, one entry per pair. "
                        "Pass the `source`, `target` and `score` of one `mine` result.")
    keep = scores >= threshold
    pairs = list(zip(source[keep].tolist(), target[keep].tolist()))
    if len(set(pairs)) != len(pairs):
        raise XittError("The mined pairs list some (source, target) pair more than once, so it would be counted "
                        "twice as mined and as correct. Pass one-to-one pairs, as `mine` returns them.")
    return pairs


def best_threshold(scores: np.ndarray, is_gold: np.ndarray, n_gold: int) -> tuple[float, float]:
    """The margin threshold of highest F1 (0-100) over candidate pairs, and that F1, as
    XTREME's `bucc_optimize` chooses BUCC's threshold on the sample (training) pairs before
    it is applied to the test pairs. `is_gold[i]` says whether candidate i is a gold pair;
    `n_gold` is the number of gold pairs, found or not (recall's denominator).

    Rule: the candidates are sorted by descending score and every prefix that ends between
    two distinct scores (or at the last candidate) is a possible selection, with
    F1 = 2 tp / (prefix length + n_gold); a cut inside a run of equal scores cannot be made
    by any threshold, so it is not considered. The threshold of the best prefix is the
    midpoint between its last score and the next candidate's score (XTREME's choice: a cut
    halfway between the scores generalises to other pairs better than one on a score), or
    its last score itself when it ends at the last candidate (or when the two scores are so
    close that their midpoint rounds onto the lower one); either way `scores >= threshold`
    selects exactly the prefix. On equal F1 the shorter prefix, so the higher threshold,
    wins. When no prefix has F1 above 0 (no gold pair among the candidates, or no
    candidates), the threshold is +inf: nothing is mined, and the F1 is 0."""
    scores = np.asarray(scores, dtype=np.float64)
    is_gold = np.asarray(is_gold, dtype=bool)
    if scores.ndim != 1 or scores.shape != is_gold.shape or np.isnan(scores).any():
        raise XittError(f"best_threshold was given {scores.shape} scores and {is_gold.shape} gold flags; it needs "
                        "one score (not NaN) and one flag per candidate pair, as two 1-D arrays of one length.")
    if n_gold < is_gold.sum():
        raise XittError(f"best_threshold was told of {n_gold} gold pairs, but {is_gold.sum()} candidates are "
                        "flagged gold. Pass the number of gold pairs of the whole corpus as n_gold.")
    order = np.argsort(-scores, kind="stable")
    ranked, gold = scores[order], is_gold[order]
    f1 = 2 * np.cumsum(gold) / (np.arange(1, len(ranked) + 1) + n_gold)
    cuttable = np.append(ranked[:-1] > ranked[1:], True) if len(ranked) else np.zeros(0, bool)
    f1[~cuttable] = -1.0
    if not len(f1) or f1.max() <= 0:
        return float("inf"), 0.0
    last = int(np.argmax(f1))
    return _cut(ranked, last), 100 * float(f1[last])


def _cut(ranked: np.ndarray, last: int) -> float:
    """A threshold selecting exactly ranked[:last + 1] by `>=` (see `best_threshold`)."""
    if last + 1 == len(ranked):
        return float(ranked[last])
    midpoint = (ranked[last] + ranked[last + 1]) / 2
    return float(midpoint if ranked[last + 1] < midpoint <= ranked[last] else ranked[last])


def nearest_accuracy(x: np.ndarray, y: np.ndarray, gold_target: np.ndarray) -> tuple[float, np.ndarray]:
    """Tatoeba's score: for each x_i, the y of highest cosine (the rows are normalised
    first), and accuracy@1 (0-100) of those predictions against `gold_target[i]`; with the
    predicted indices, for per-sentence analyses."""
    x, y = normalise(x), normalise(y)
    _check_pair(x, y, "x (source)", "y (target)")
    gold_target = np.asarray(gold_target)
    if gold_target.shape != (len(x),):
        raise XittError(f"nearest_accuracy was given {len(x)} source embeddings but gold targets of shape "
                        f"{gold_target.shape}; it needs one gold target index per source sentence.")
    predicted = nearest(x, y, 1)[1][:, 0]
    return (100 * float(np.mean(predicted == gold_target)) if len(x) else 0.0), predicted


def mining_counts(n_source: int, mined_source: np.ndarray, mined_target: np.ndarray, scores: np.ndarray,
                  threshold: float, gold_pairs: set[tuple[int, int]]) -> np.ndarray:
    """(tp, mined, gold) per source sentence, shape (n_source, 3), int64: a pair mined at
    `threshold` counts towards its source sentence's `mined` (and `tp` when gold), a gold
    pair towards its source sentence's `gold`. Their column sums are `prf`'s counts, so
    2 * tp.sum() / (mined.sum() + gold.sum()) is its F1; with the threshold fixed, a
    bootstrap over source sentences resamples these rows and recomputes that ratio."""
    pairs = _selected_pairs(mined_source, mined_target, scores, threshold)
    counts = np.zeros((n_source, 3), dtype=np.int64)
    columns = {0: [s for s, t in pairs if (s, t) in gold_pairs], 1: [s for s, _ in pairs],
               2: [s for s, _ in gold_pairs]}
    for column, sources in columns.items():
        sources = np.asarray(sources, dtype=np.int64)
        if len(sources) and (sources.min() < 0 or sources.max() >= n_source):
            raise XittError(f"mining_counts was given n_source={n_source}, but a mined or gold pair has source "
                            f"index {sources.min() if sources.min() < 0 else sources.max()}. Pass the number of "
                            "source sentences of the corpus the pairs index.")
        counts[:, column] = np.bincount(sources, minlength=n_source)
    return counts


def _matrix(array: np.ndarray, name: str) -> np.ndarray:
    """`array` as a float32 (n, d) matrix of finite values, or a XittError saying why not."""
    matrix = np.asarray(array, dtype=np.float32)
    if matrix.ndim != 2:
        raise XittError(f"The {name} have shape {matrix.shape}; sentence embeddings must be a 2-D array of "
                        "shape (sentences, dimensions). Stack the sentence vectors into one array.")
    if not np.isfinite(matrix).all():
        raise XittError(f"The {name} contain NaN or infinite values, which have no similarity to anything. "
                        "Check the encoder's output (an overflow in half precision, say) and embed again.")
    return matrix


def _check_pair(first: np.ndarray, second: np.ndarray, first_name: str, second_name: str) -> None:
    if first.shape[1] != second.shape[1]:
        raise XittError(f"The {first_name} have {first.shape[1]} dimensions but the {second_name} "
                        f"{second.shape[1]}; they can only be compared in one embedding space. Embed both "
                        "sides with the same encoder (and pooling).")


def _clipped_k(k: int, n_keys: int) -> int:
    if k < 1 or n_keys == 0:
        raise XittError(f"A nearest-neighbour search was asked for k={k} neighbours among {n_keys} keys; it "
                        "needs k >= 1 and at least one key. Pass a positive k and non-empty embeddings.")
    return min(k, n_keys)
