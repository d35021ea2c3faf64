"""Uncertainty of F1 scores and F1 differences from a few seeds and one finite test set.

The question a gain answers is whether ITT changes F1 for a model size *over training
randomness* (other seeds train other models) *and the test sample* (the test set is one
sample of the language's examples).  Both are sources of noise; this module estimates
them separately and adds them at the end:

* **Test examples.**  The task's F1 is recomputed on bootstrap resamples of its examples
  (texts, sentences or questions: the units the test set samples, never the tokens in
  them).  Every model scored on the same test set is resampled with the *same* index
  matrix, so differences between two models are paired (the same hard examples are drawn
  for both), and sums over sizes keep the correlation of a shared test set.  A resample
  is turned into how often it draws each example, so thousands of resamples are a few
  matrix products: for macro-F1 (classification) each example's (gold, predicted) pair
  is one cell of the confusion matrix; the other F1s are ratios of sums over examples
  (entity F1 = 2 TP / (predicted + gold entities), word accuracy = correct / words, QA F1
  = mean over questions), so a resample's sums are draw counts times per-example counts.
* **Seeds.**  A grid affords 2-5 seeds.  A bootstrap over so few seeds understates the
  spread (the variance of its mean is (k-1)/k of the unbiased one and it takes only a few
  distinct values), so the seed part uses the between-seed variance of the estimate
  computed seed by seed (``Estimate.per_seed``: for a gain, the per-seed paired
  differences) with a Student-t quantile.  Computing it seed by seed keeps the
  correlation of one zero-shot model that scores all languages.
* **Adding them without counting twice.**  A per-seed estimate misses the truth by a part
  that all seeds share (which examples happen to be in the test set) and a part of its
  own (its seed's models, including their idiosyncratic errors on these very examples).
  The between-seed spread already holds every part of the second kind, so the test-set
  part added to it is the shared one only: the covariance, between seeds, of their
  replicates on the same resamples.  (Adding each seed's whole bootstrap variance counts
  the idiosyncratic errors twice: in simulation it overstated the variance by a quarter.)
* **Interval and test.**  The half-widths of the two parts (t quantile for seeds, normal
  quantile for the test set) add in quadrature.  The p-value is the dual of that interval:
  the 1 - level at which it just reaches 0, so p < 1 - level exactly where the interval
  excludes 0, and a gain is never marked while its interval crosses 0.  In simulation
  (``tests/test_significance.py``) the false-positive rate at 0.05 is 0.039 where seed
  noise dominates and 0.027 where test-set noise does (quadrature errs on the safe side);
  a test on one part alone reaches 0.33 (test set) or 0.17 (seeds) where the other
  dominates.
* **Power.**  The smallest true value the test detects with 80% power
  (``Estimate.minimum_detectable_effect``) comes from the same interval: the test rejects
  where |estimate| exceeds the half-width, so the chance of that is computed from the
  normal distribution of the estimate (variance: seed part + test-set part) and the
  distribution of its own seed variance (a scaled chi-square with the seed degrees of
  freedom; the test-set part is taken as measured), integrated over the second.  With
  no test-set part this is the two-sided noncentral-t power.  The textbook shortcut
  (t(1 - alpha/2) + t(power)) x SE assumes the interval's width is fixed, which three
  seeds (two degrees of freedom) are far from: at the effect it gives, the test rejects
  0.77 of the time, not 0.80.  ``Estimate.seeds_to_detect`` asks how many seeds would
  detect a given effect, scaling the seed part as 1/seeds (its degrees of freedom
  seeds - 1) with the test-set part as measured, which more seeds do not shrink.
* **Fewer than three seeds.**  The between-seed variance of two seeds has one degree of
  freedom (t quantile 12.7), so no seed-level claim is made (``Estimate.verdict``); what
  remains is the test-set interval and the paired bootstrap test over test examples
  (``test_set_interval``, ``p_value_test_set``), which speak of these trained models only.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

from xitt.metrics.classification import macro_f1_from_confusion

# Bound on the size of the arrays of one chunk of resamples (entries).
_MAX_CHUNK_ELEMENTS = 4_000_000


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
        draws = _draw_counts(chunk).astype(np.float32)  # exact below 2**24
        for first in range(0, n_systems, systems_per_block):
            block = cells[first:first + systems_per_block]
            confusion = (draws @ _one_hot_cells(block, cells_per_matrix)).astype(np.float64)
            confusion = confusion.reshape(rows, len(block), n_classes, n_classes)
            scores[first:first + len(block), done:done + rows] = macro_f1_from_confusion(
                confusion).T
        done += rows
    return scores


def bootstrap_ratio(numerators: np.ndarray, denominators: np.ndarray, n_resamples: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``ratio_score`` of several systems on the same bootstrap resamples of one test set.

    ``numerators`` and ``denominators`` hold each example's part of the two sums, shaped
    (n,) or (systems, n); returns (systems, n_resamples).  The resamples are those that
    ``bootstrap_macro_f1`` draws from the same generator, the same for every system (so
    differences are paired), and a chunk's sums are one matrix product of draw counts.
    """
    numerators = np.atleast_2d(numerators).astype(np.float64)
    denominators = np.atleast_2d(denominators).astype(np.float64)
    n_systems, n_examples = numerators.shape
    scores = np.empty((n_systems, n_resamples))
    done = 0
    for chunk in resample_indices(n_examples, n_resamples, rng):
        draws = _draw_counts(chunk).astype(np.float64)  # QA numerators are fractions
        scores[:, done:done + len(chunk)] = ratio_score(draws @ numerators.T,
                                                        draws @ denominators.T).T
        done += len(chunk)
    return scores


def ratio_score(numerator_sums: np.ndarray, denominator_sums: np.ndarray) -> np.ndarray:
    """100 x numerator / denominator, and 0 where the denominator is 0 (as the metrics
    score a set without entities or words)."""
    numerator_sums = np.asarray(numerator_sums, dtype=np.float64)
    denominator_sums = np.asarray(denominator_sums, dtype=np.float64)
    return 100.0 * np.divide(numerator_sums, denominator_sums,
                             out=np.zeros(np.broadcast(numerator_sums, denominator_sums).shape),
                             where=denominator_sums > 0)


def _draw_counts(chunk: np.ndarray) -> np.ndarray:
    """(rows, n_examples): how often each resample (row of ``chunk``) draws each example."""
    rows, n_examples = chunk.shape
    row_offsets = np.arange(rows)[:, None] * n_examples
    draws = np.bincount((chunk + row_offsets).ravel(), minlength=rows * n_examples)
    return draws.reshape(rows, n_examples)


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
# A between-seed variance from two seeds has one degree of freedom: not a basis for a claim.
MIN_SEEDS_FOR_CLAIM = 3
# What an estimate says about zero (``Estimate.verdict``).
ABOVE_ZERO, BELOW_ZERO, INCLUDES_ZERO = "above_zero", "below_zero", "includes_zero"
TOO_FEW_SEEDS = "too_few_seeds"
# p-values are found by root finding on the level; smaller ones are reported as this bound.
SMALLEST_P_VALUE = 1e-12
# The power at which a minimum detectable effect is stated, and the most seeds
# ``seeds_to_detect`` considers (beyond it: inf, "more than MAX_SEEDS").
POWER = 0.8
MAX_SEEDS = 100


@dataclass(frozen=True, eq=False)
class Estimate:
    """A point estimate with the two sources of its uncertainty kept apart.

    ``example_replicates``: the estimate recomputed on each bootstrap resample of the test
    examples (models fixed).  ``per_seed`` and ``seed_replicates`` (same seeds): the
    estimate and its replicates computed from each seed's models alone, when the design is
    seed-matched; their spread gives the seed noise and their covariance between seeds the
    shared test-set noise.
    Where the seeds do not line up (``combine`` of inputs without two common seeds) these
    are empty and ``seed_variance``, ``seed_dof``, ``test_variance_unmatched`` and
    ``fewest_seeds`` carry the noise instead; ``seed_noise_complete`` is False when some
    input had a single seed, so that its seed noise is unknown and missing.
    ``examples_resampled`` is False when some input had no per-example predictions, so
    the replicates hold no test-set noise for it.
    """

    value: float
    example_replicates: np.ndarray
    per_seed: Mapping[int, float] = field(default_factory=dict)
    seed_replicates: Mapping[int, np.ndarray] = field(default_factory=dict)
    examples_resampled: bool = True
    seed_variance: float = math.nan
    seed_dof: float = math.nan
    seed_noise_complete: bool = True
    test_variance_unmatched: float = math.nan
    fewest_seeds: int = 1

    @property
    def n_seeds(self) -> int:
        """Seeds behind the estimate (unmatched inputs: the fewest behind any of them)."""
        return len(self.per_seed) or self.fewest_seeds

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

    @functools.cached_property
    def test_variance(self) -> float:
        """Variance of ``value`` due to the test sample that the seed noise does not hold.

        With per-seed replicates: their mean covariance between two different seeds, the
        part of the test-set noise that all seeds share.  Without a known seed noise: the
        whole bootstrap variance (nothing of it is counted elsewhere).
        """
        if not math.isnan(self.test_variance_unmatched):
            return self.test_variance_unmatched
        if self.seed_noise_known == NONE or len(self.seed_replicates) < 2:
            return float(np.var(self.example_replicates, ddof=1))
        covariance = np.cov(np.stack(list(self.seed_replicates.values())))
        k = len(covariance)
        between_seeds = (covariance.sum() - np.trace(covariance)) / (k * (k - 1))
        return max(float(between_seeds), 0.0)  # a shared variance cannot be negative

    @property
    def own_test_variance(self) -> float:
        """The part of the bootstrap variance that the seed noise already holds."""
        if self.seed_noise_known == NONE:
            return 0.0
        return max(float(np.var(self.example_replicates, ddof=1)) - self.test_variance, 0.0)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Confidence interval over seeds and test examples (nan if the seed noise is unknown)."""
        variance, dof = self.seed_noise()
        if math.isnan(variance):
            return math.nan, math.nan
        half_width = _half_width(1.0 - level, math.sqrt(variance), dof,
                                 math.sqrt(self.test_variance))
        return self.value - half_width, self.value + half_width

    def p_value(self) -> float:
        """Two-sided test of ``value == 0`` over seeds and test examples, dual to ``interval``.

        The 1 - level at which the interval just reaches 0: p < 1 - level exactly where
        ``interval(level)`` excludes 0.  nan where the seed noise is unknown.
        """
        variance, dof = self.seed_noise()
        if math.isnan(variance):
            return math.nan
        if self.value == 0:
            return 1.0
        seed_sd, test_sd = math.sqrt(variance), math.sqrt(self.test_variance)

        def reach(alpha: float) -> float:  # > 0 while the (1 - alpha) interval holds 0
            return _half_width(alpha, seed_sd, dof, test_sd) - abs(self.value)

        if reach(SMALLEST_P_VALUE) <= 0:
            return SMALLEST_P_VALUE
        return float(optimize.brentq(reach, SMALLEST_P_VALUE, 1.0))

    @property
    def supports_seed_claim(self) -> bool:
        """Whether the seed noise is known from enough seeds to claim anything beyond
        these trained models."""
        return self.n_seeds >= MIN_SEEDS_FOR_CLAIM and self.seed_noise_known == FULL

    def verdict(self, level: float = 0.95) -> str:
        """Where 0 lies relative to ``interval(level)``, or ``too_few_seeds``."""
        if not self.supports_seed_claim:
            return TOO_FEW_SEEDS
        low, high = self.interval(level)
        return ABOVE_ZERO if low > 0 else BELOW_ZERO if high < 0 else INCLUDES_ZERO

    def test_set_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Interval over test examples only, for these trained models; dual to
        ``p_value_test_set`` (symmetric about the estimate).  nan without predictions."""
        if not self.examples_resampled:
            return math.nan, math.nan
        half_width = float(np.quantile(np.abs(self.example_replicates - self.value), level))
        return self.value - half_width, self.value + half_width

    def p_value_test_set(self) -> float:
        """Two-sided paired bootstrap test of ``value == 0`` on the test examples.

        It asks whether test-set noise alone explains the difference between *these*
        trained models: the share of resamples whose deviation from the estimate is at
        least as large as the estimate itself (the shifted null distribution).  nan
        without predictions.
        """
        if not self.examples_resampled:
            return math.nan
        deviations = np.abs(self.example_replicates - self.value)
        extreme = np.count_nonzero(deviations >= abs(self.value) - 1e-9)
        return (1 + extreme) / (len(self.example_replicates) + 1)

    def minimum_detectable_effect(self, level: float = 0.95, power: float = POWER) -> float:
        """The smallest true value that the seed-level test at ``level`` detects with
        ``power``, for a design of these seeds and test set with the variances measured
        here (see ``minimum_detectable_effect``).  nan where the seed noise is unknown."""
        variance, dof = self.seed_noise()
        return minimum_detectable_effect(variance, dof, self.test_variance, level, power)

    def seeds_to_detect(self, effect: float, level: float = 0.95, power: float = POWER) -> float:
        """How many seeds the seed-level test at ``level`` needs to detect a true value of
        ``effect`` with ``power``: the seed variance measured here scaled to that many
        seeds, the test-set part as measured (see ``seeds_to_detect``).  Unmatched inputs
        count as their fewest seeds.  nan where the seed noise is unknown."""
        variance, _ = self.seed_noise()
        return seeds_to_detect(effect, variance * self.n_seeds, self.test_variance, level, power)


def _half_width(alpha: float, seed_sd: float, seed_dof: float, test_sd: float) -> float:
    """Half-width of the (1 - alpha) interval: each part's quantile times its standard
    deviation, added in quadrature."""
    seed_part = _t_upper_quantile(alpha / 2, seed_dof) * seed_sd if seed_sd > 0 else 0.0
    test_part = _t_upper_quantile(alpha / 2, math.inf) * test_sd if test_sd > 0 else 0.0
    return math.hypot(seed_part, test_part)


@functools.lru_cache(maxsize=256)
def _t_upper_quantile(tail: float, dof: float) -> float:
    """The t quantile with ``tail`` above it (normal for infinite dof); isf keeps tiny
    tails exact."""
    return float(scipy_stats.t.isf(tail, dof))


def rejection_rate(effect: float, seed_variance: float, seed_dof: float, test_variance: float,
                   level: float = 0.95) -> float:
    """How often the seed-level test at ``level`` rejects 0 when the true value is ``effect``.

    The design: the estimate is normal about ``effect`` with variance ``seed_variance +
    test_variance``; the test compares it with the half-width of its interval, whose seed
    part comes from a seed variance estimated with ``seed_dof`` degrees of freedom (a
    scaled chi-square, independent of the estimate) and whose test-set part is taken as
    measured.  The rejection chance given the estimated seed variance is integrated over
    that chi-square (``_chi_square_quadrature``).  At ``effect`` 0 it is the test's size:
    ``1 - level`` without a test-set part, less with one (the quadrature errs low).
    """
    alpha = 1.0 - level
    spread = math.sqrt(seed_variance + test_variance)
    if spread == 0:
        return 1.0 if effect != 0 else 0.0
    # _half_width for each quadrature point's estimated seed variance
    seed_quantile = _t_upper_quantile(alpha / 2, seed_dof)
    test_quantile = _t_upper_quantile(alpha / 2, math.inf)
    scales, weights = _chi_square_quadrature(seed_dof)
    half_widths = np.sqrt(seed_quantile ** 2 * seed_variance * scales
                          + test_quantile ** 2 * test_variance)
    rejected = (scipy_stats.norm.sf((half_widths - effect) / spread)
                + scipy_stats.norm.cdf((-half_widths - effect) / spread))
    return float(weights @ rejected)


def minimum_detectable_effect(seed_variance: float, seed_dof: float, test_variance: float,
                              level: float = 0.95, power: float = POWER) -> float:
    """The smallest true value that the seed-level test at ``level`` detects with ``power``
    (``rejection_rate`` = ``power``), for a design with these variances of the estimate;
    nan where the seed variance is unknown."""
    if math.isnan(seed_variance) or math.isnan(seed_dof):
        return math.nan
    spread = math.sqrt(seed_variance + test_variance)
    if spread == 0:
        return 0.0

    def shortfall(effect: float) -> float:
        return rejection_rate(effect, seed_variance, seed_dof, test_variance, level) - power

    upper = spread
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-6 * spread))


def seeds_to_detect(effect: float, seed_variance_one_seed: float, test_variance: float,
                    level: float = 0.95, power: float = POWER) -> float:
    """The fewest seeds (at least ``MIN_SEEDS_FOR_CLAIM``) with which the seed-level test at
    ``level`` detects a true value of ``effect`` (either sign) with ``power``, or inf where
    more than ``MAX_SEEDS`` would be needed (or none would: the test-set part alone is too
    wide).  ``seed_variance_one_seed`` is the seed variance of a single seed's estimate; n
    seeds have 1/n of it, with n - 1 degrees of freedom.  nan where it is unknown."""
    if math.isnan(seed_variance_one_seed) or math.isnan(effect):
        return math.nan

    def detects(n_seeds: int) -> bool:
        return rejection_rate(abs(effect), seed_variance_one_seed / n_seeds, n_seeds - 1,
                              test_variance, level) >= power

    if not detects(MAX_SEEDS):
        return math.inf
    fewest, most = MIN_SEEDS_FOR_CLAIM, MAX_SEEDS  # the rate grows with the seeds
    while fewest < most:
        middle = (fewest + most) // 2
        fewest, most = (fewest, middle) if detects(middle) else (middle + 1, most)
    return float(fewest)


# Beyond this many degrees of freedom the estimated seed variance is taken as exact.
_EXACT_SEED_VARIANCE_DOF = 1000
_QUADRATURE_POINTS = 1024


@functools.lru_cache(maxsize=256)
def _chi_square_quadrature(dof: float) -> tuple[np.ndarray, np.ndarray]:
    """Points u and weights w with sum(w f(u)) = E f(W / dof), W chi-square with ``dof``
    degrees of freedom: the midpoint rule on its quantiles.  (Gauss-Laguerre, exact for
    polynomials, is not for the square root in a half-width: with one degree of freedom it
    put the size of a 0.05 test at 0.017; this is within 1e-5 of adaptive integration.)"""
    if dof > _EXACT_SEED_VARIANCE_DOF:
        return np.ones(1), np.ones(1)
    probabilities = (np.arange(_QUADRATURE_POINTS) + 0.5) / _QUADRATURE_POINTS
    return (scipy_stats.chi2.ppf(probabilities, dof) / dof,
            np.full(_QUADRATURE_POINTS, 1.0 / _QUADRATURE_POINTS))


def pool_seeds(per_seed: Mapping[int, Estimate]) -> Estimate:
    """The mean over seeds of per-seed estimates (e.g. the F1 of one cell's seeds)."""
    estimates = list(per_seed.values())
    return Estimate(
        value=float(np.mean([e.value for e in estimates])),
        example_replicates=np.mean([e.example_replicates for e in estimates], axis=0),
        per_seed={seed: e.value for seed, e in per_seed.items()},
        seed_replicates={seed: e.example_replicates for seed, e in per_seed.items()},
        examples_resampled=all(e.examples_resampled for e in estimates),
    )


def combine(estimates: Sequence[Estimate], weights: Sequence[float]) -> Estimate:
    """The linear combination ``sum(w * e)``: a difference, a mean over languages, a slope.

    Where at least two seeds are common to all inputs, the combination is computed seed
    by seed (values and replicates), which keeps every correlation between the inputs.
    Otherwise the inputs' seed noises are taken as independent and added, with
    Welch-Satterthwaite degrees of freedom (inputs with an unknown seed noise, one seed,
    add nothing and make the result's seed noise "partial"); and the test-set noise is
    the bootstrap variance of the combination less the inputs' own parts, which their
    (now added) seed variances hold.
    """
    weights = np.asarray(weights, dtype=float)
    value = float(sum(w * e.value for w, e in zip(weights, estimates)))
    replicates = np.sum([w * e.example_replicates for w, e in zip(weights, estimates)], axis=0)
    examples_resampled = all(e.examples_resampled for e in estimates)
    common_seeds = sorted(set.intersection(*(set(e.per_seed) for e in estimates)))
    if len(common_seeds) >= 2:
        per_seed = {seed: float(sum(w * e.per_seed[seed] for w, e in zip(weights, estimates)))
                    for seed in common_seeds}
        seed_replicates = {
            seed: np.sum([w * e.seed_replicates[seed] for w, e in zip(weights, estimates)], axis=0)
            for seed in common_seeds}
        return Estimate(value, replicates, per_seed, seed_replicates, examples_resampled)
    noises = [(w * w * variance, dof)
              for w, (variance, dof) in zip(weights, (e.seed_noise() for e in estimates))]
    known = [(variance, dof) for variance, dof in noises if not math.isnan(variance)]
    variance, dof = _welch_satterthwaite(known) if known else (math.nan, math.nan)
    own = sum(w * w * e.own_test_variance for w, e in zip(weights, estimates))
    test_variance = max(float(np.var(replicates, ddof=1)) - own, 0.0)
    return Estimate(value, replicates, {}, {}, examples_resampled, variance, dof,
                    seed_noise_complete=all(e.seed_noise_known == FULL for e in estimates),
                    test_variance_unmatched=test_variance,
                    fewest_seeds=min(e.n_seeds for e in estimates))


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
