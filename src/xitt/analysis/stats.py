"""Uncertainty of F1 scores and F1 differences from a few seeds and one finite test set.

An ITT gain is a difference of macro-F1 scores of models trained with a handful of random
seeds and evaluated on one test set.  Both are sources of noise, and they behave
differently, so this module treats them separately and adds them at the end:

* **Test examples.**  The test set is one sample of the language's examples.  Its noise is
  estimated by a bootstrap over examples, with macro-F1 recomputed from the predictions
  of each resample.  Every model scored on the same test set is resampled with the *same*
  index matrix, so differences between two models are paired (the same hard examples are
  drawn for both), and sums over sizes keep the correlation of a shared test set.  Each
  example's (gold, predicted) pair is one cell of the confusion matrix, so the confusion
  matrices of thousands of resamples come from one matrix product of draw counts.
* **Seeds.**  A grid affords 2-5 seeds.  A bootstrap over so few seeds understates the
  spread (the variance of its mean is (k-1)/k of the unbiased one and it takes only a few
  distinct values), so the seed part of an interval uses the between-seed variance with a
  Student-t quantile.  It is computed from the quantity of interest evaluated seed by
  seed (``Estimate.per_seed``), so averages over languages keep the correlation of one
  zero-shot model that scores all languages.
* The two parts are independent (seed noise given the test set, test-set noise given the
  models), so their half-widths add in quadrature.  Where a per-seed difference also
  carries example noise that is not shared between seeds, that noise is counted in both
  parts, which errs on the wide side.

The significance test is the paired bootstrap test on the same replicates: how often does
test-set noise alone move the difference as far as it is from zero?
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

# Bound on the size of the arrays of one chunk of resamples (entries).
_MAX_CHUNK_ELEMENTS = 4_000_000


def macro_f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 (0-100) of confusion matrices shaped (..., K, K): rows gold, columns predicted.

    Averages over the classes that occur as gold label or as prediction (scikit-learn's
    default), so a class that a small resample happens to miss is neither scored 0 nor
    divided by zero.
    """
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1)
    # 2 TP + FP + FN = (number of gold labels of the class) + (number of predictions of it)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    present = denominator > 0
    per_class = np.divide(
        2.0 * true_positives, denominator, out=np.zeros(denominator.shape), where=present
    )
    return 100.0 * per_class.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 (0-100) of one system on one test set."""
    cells = np.asarray(gold) * n_classes + np.asarray(pred)
    confusion = np.bincount(cells, minlength=n_classes * n_classes)
    return float(macro_f1_from_confusion(confusion.reshape(n_classes, n_classes)))


def resample_indices(n_examples: int, n_resamples: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of example positions, as consecutive (rows, n_examples) chunks.

    The chunk size depends only on ``n_examples``, so the same generator state always
    yields the same resamples.
    """
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // n_examples)
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        yield rng.integers(0, n_examples, size=(rows, n_examples))


def bootstrap_macro_f1(gold: np.ndarray, preds: np.ndarray, n_classes: int,
                       n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Macro-F1 of several systems on the same bootstrap resamples of one test set.

    ``gold`` has shape (n,) or (systems, n), ``preds`` (systems, n); returns
    (systems, n_resamples).  Resample r draws the same examples for every system, which
    is what makes differences between systems paired.  A resample is turned into how
    often it draws each example, so the confusion matrices of all systems and resamples
    of a chunk are one matrix product: (resamples x examples) @ (examples x confusion
    cells of every system).
    """
    cells = np.asarray(gold) * n_classes + np.atleast_2d(preds)
    n_systems, n_examples = cells.shape
    cells_per_matrix = n_classes * n_classes
    systems_per_block = max(1, _MAX_CHUNK_ELEMENTS // (n_examples * cells_per_matrix))
    scores = np.empty((n_systems, n_resamples))
    done = 0
    for chunk in resample_indices(n_examples, n_resamples, rng):
        rows = len(chunk)
        row_offsets = np.arange(rows)[:, None] * n_examples
        draws = np.bincount((chunk + row_offsets).ravel(), minlength=rows * n_examples)
        draws = draws.reshape(rows, n_examples).astype(np.float32)  # exact below 2**24
        for first in range(0, n_systems, systems_per_block):
            block = cells[first:first + systems_per_block]
            confusion = (draws @ _one_hot_cells(block, cells_per_matrix)).astype(np.float64)
            confusion = confusion.reshape(rows, len(block), n_classes, n_classes)
            scores[first:first + len(block), done:done + rows] = macro_f1_from_confusion(
                confusion).T
        done += rows
    return scores


def _one_hot_cells(cells: np.ndarray, cells_per_matrix: int) -> np.ndarray:
    """(examples, systems x cells_per_matrix): 1 where a system's example falls."""
    n_systems, n_examples = cells.shape
    one_hot = np.zeros((n_examples, n_systems * cells_per_matrix), dtype=np.float32)
    columns = cells.T + np.arange(n_systems) * cells_per_matrix
    one_hot[np.arange(n_examples)[:, None], columns] = 1.0
    return one_hot


def stable_rng(seed: int, *labels: str) -> np.random.Generator:
    """A generator determined by ``seed`` and the labels (not by Python's salted ``hash``)."""
    digest = hashlib.sha256("\x1f".join(labels).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


FULL, PARTIAL, NONE = "full", "partial", "none"  # how much of the seed noise is known


@dataclass(frozen=True, eq=False)
class Estimate:
    """A point estimate with the two sources of its uncertainty kept apart.

    ``example_replicates``: the estimate recomputed on each bootstrap resample of the test
    examples (models fixed).  ``per_seed``: the estimate computed from each seed's models
    alone, when the design is seed-matched; its spread gives the seed noise.  Where the
    seeds do not line up, ``seed_variance`` and ``seed_dof`` carry that noise instead, and
    ``seed_noise_complete`` is False when some input had a single seed, so that its seed
    noise is unknown and missing from ``seed_variance``.  ``examples_resampled`` is False
    when some input had no per-example predictions, so the replicates hold no test-set
    noise for it.
    """

    value: float
    example_replicates: np.ndarray
    per_seed: Mapping[int, float] = field(default_factory=dict)
    examples_resampled: bool = True
    seed_variance: float = math.nan
    seed_dof: float = math.nan
    seed_noise_complete: bool = True

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)

    def seed_noise(self) -> tuple[float, float]:
        """Variance of ``value`` due to seeds and its degrees of freedom (nan: unknown)."""
        if len(self.per_seed) >= 2:
            values = np.fromiter(self.per_seed.values(), dtype=float)
            return float(values.var(ddof=1) / len(values)), float(len(values) - 1)
        return self.seed_variance, self.seed_dof

    @property
    def seed_noise_known(self) -> str:
        """How much of the seed noise the interval holds: all of it, part of it (some
        inputs had a single seed), or none (a single seed)."""
        if math.isnan(self.seed_noise()[0]):
            return NONE
        return FULL if len(self.per_seed) >= 2 or self.seed_noise_complete else PARTIAL

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Confidence interval over test examples and seeds (examples only if one seed)."""
        tail = (1.0 - level) / 2.0
        low_q, high_q = np.quantile(self.example_replicates, [tail, 1.0 - tail])
        below = max(self.value - low_q, 0.0)
        above = max(high_q - self.value, 0.0)
        variance, dof = self.seed_noise()
        seed_half_width = 0.0
        if not math.isnan(variance) and variance > 0:
            seed_half_width = _t_quantile(1.0 - tail, dof) * math.sqrt(variance)
        return (self.value - math.hypot(below, seed_half_width),
                self.value + math.hypot(above, seed_half_width))

    def p_value(self) -> float:
        """Two-sided paired bootstrap test of ``value == 0`` on the test examples.

        The share of resamples whose deviation from the estimate is at least as large as
        the estimate itself (the shifted null distribution); nan without predictions.
        """
        if not self.examples_resampled:
            return math.nan
        deviations = np.abs(self.example_replicates - self.value)
        extreme = np.count_nonzero(deviations >= abs(self.value) - 1e-9)
        return (1 + extreme) / (len(self.example_replicates) + 1)


@functools.lru_cache(maxsize=256)
def _t_quantile(probability: float, dof: float) -> float:
    return float(scipy_stats.t.ppf(probability, dof))


def pool_seeds(per_seed: Mapping[int, Estimate]) -> Estimate:
    """The mean over seeds of per-seed estimates (e.g. the F1 of one cell's seeds)."""
    estimates = list(per_seed.values())
    return Estimate(
        value=float(np.mean([e.value for e in estimates])),
        example_replicates=np.mean([e.example_replicates for e in estimates], axis=0),
        per_seed={seed: e.value for seed, e in per_seed.items()},
        examples_resampled=all(e.examples_resampled for e in estimates),
    )


def combine(estimates: Sequence[Estimate], weights: Sequence[float]) -> Estimate:
    """The linear combination ``sum(w * e)``: a difference, a mean over languages, a slope.

    Seed noise comes from the combination evaluated seed by seed where at least two seeds
    are common to all inputs; otherwise the inputs' seed noises are taken as independent
    and added, with Welch-Satterthwaite degrees of freedom; inputs with an unknown seed
    noise (one seed) add nothing and make the result's seed noise "partial".
    """
    weights = np.asarray(weights, dtype=float)
    value = float(sum(w * e.value for w, e in zip(weights, estimates)))
    replicates = np.sum([w * e.example_replicates for w, e in zip(weights, estimates)], axis=0)
    examples_resampled = all(e.examples_resampled for e in estimates)
    common_seeds = set.intersection(*(set(e.per_seed) for e in estimates))
    if len(common_seeds) >= 2:
        per_seed = {seed: float(sum(w * e.per_seed[seed] for w, e in zip(weights, estimates)))
                    for seed in sorted(common_seeds)}
        return Estimate(value, replicates, per_seed, examples_resampled)
    noises = [(w * w * variance, dof)
              for w, (variance, dof) in zip(weights, (e.seed_noise() for e in estimates))]
    known = [(variance, dof) for variance, dof in noises if not math.isnan(variance)]
    variance, dof = _welch_satterthwaite(known) if known else (math.nan, math.nan)
    complete = all(e.seed_noise_known == FULL for e in estimates)
    return Estimate(value, replicates, {}, examples_resampled, variance, dof, complete)


def _welch_satterthwaite(terms: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Sum of independent variance terms and the approximate degrees of freedom of the sum."""
    variance = sum(v for v, _ in terms)
    spread_terms = [(v, d) for v, d in terms if v > 0]
    if not spread_terms:
        return 0.0, math.inf
    return variance, variance ** 2 / sum(v * v / d for v, d in spread_terms)


def slope_weights(x: Sequence[float]) -> np.ndarray:
    """Weights w with ``sum(w * y)`` = least-squares slope of y on x."""
    x = np.asarray(x, dtype=float)
    centred = x - x.mean()
    spread = float(centred @ centred)
    if spread == 0:
        raise ValueError("a slope needs at least two distinct x values")
    return centred / spread
