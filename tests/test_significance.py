"""Calibration of the seed-level intervals and test on simulated ITT gains with known truth.

Each simulated gain is one model size on one language: three seeds of ITT and no-ITT
models scored on one test set, analysed by the functions ``analyse`` uses
(``bootstrap_macro_f1``, ``pool_seeds``, ``combine``).  As in ``test_analysis``, a model is
a classifier whose chance of being right is set exactly: it is right on an example when
a mix of the example's difficulty and its own noise falls below its accuracy, which
varies from seed to seed.  ITT also changes *which* examples are hard (its models see a
difficulty only partly correlated with that of the models without ITT), so the test
sample moves the gain even where ITT changes nothing on average.  With balanced classes
and errors spread evenly over the wrong classes, expected macro-F1 equals accuracy, so
the true gain is 100 x (accuracy with ITT - accuracy without), 0 under the null.

Two regimes: seed noise larger than test-set noise, and the reverse.  Each is shown to be
what it claims by defeating the test on the other source of noise alone; in both, the
marks' false-positive rate must be near the nominal 5% and never well above it, and the
intervals must cover the true gain about 95% of the time.  Measured (1000 simulated gains
per case; seed-dominated, then test-dominated): false-positive rates 0.039 and 0.027,
coverages 0.951 and 0.971.  For comparison: the test-set-only p-value has false-positive
rates 0.33 and 0.06, a t-test on the per-seed differences alone 0.04 and 0.17, and
adding each seed's whole bootstrap variance (counting its own test-set noise twice)
0.020 and 0.017.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from xitt.analysis import MIN_SEEDS_FOR_CLAIM, Estimate, combine, pool_seeds
from xitt.analysis.stats import ABOVE_ZERO, BELOW_ZERO, INCLUDES_ZERO, TOO_FEW_SEEDS, bootstrap_macro_f1
from xitt.metrics.classification import macro_f1

N_CLASSES = 3
SEEDS = (1, 2, 3)
N_SIMULATIONS = 1000  # per regime and truth: a rate of 0.05 is measured to +-0.007
N_BOOTSTRAP = 200
BASE_ACCURACY = 0.6
REAL_GAIN = 0.05  # accuracy, i.e. 5 F1 points


@dataclass(frozen=True)
class Regime:
    name: str
    seed_sd: float  # sd of a model's accuracy over training seeds
    difficulty_share: float  # share of an example's noise that is its difficulty
    itt_difficulty_correlation: float  # how far ITT keeps which examples are hard
    n_examples: int = 300


SEED_NOISE_DOMINATES = Regime("seed noise > test noise", seed_sd=0.04, difficulty_share=0.7,
                              itt_difficulty_correlation=0.95)
TEST_NOISE_DOMINATES = Regime("test noise > seed noise", seed_sd=0.005, difficulty_share=0.8,
                              itt_difficulty_correlation=0.3)
REGIMES = [pytest.param(SEED_NOISE_DOMINATES, id="seed_noise_dominates"),
           pytest.param(TEST_NOISE_DOMINATES, id="test_noise_dominates")]


@functools.cache
def simulated_gains(regime: Regime, true_gain: float) -> list[Estimate]:
    """N_SIMULATIONS gain estimates; the models of all simulations are drawn at once."""
    rng = np.random.default_rng([int(1000 * true_gain), int(1000 * regime.seed_sd)])
    shape = (N_SIMULATIONS, regime.n_examples)
    gold = rng.integers(0, N_CLASSES, shape)
    difficulty = rng.standard_normal(shape)
    rho = regime.itt_difficulty_correlation
    itt_difficulty = rho * difficulty + math.sqrt(1 - rho ** 2) * rng.standard_normal(shape)

    def predictions(example_difficulty: np.ndarray, accuracy: float) -> np.ndarray:
        share = regime.difficulty_share
        latent = (math.sqrt(share) * example_difficulty
                  + math.sqrt(1 - share) * rng.standard_normal(shape))
        seed_accuracy = accuracy + rng.normal(0.0, regime.seed_sd, (N_SIMULATIONS, 1))
        right = ndtr(latent) < seed_accuracy  # ndtr(latent) is uniform: P(right) = accuracy
        wrong_label = (gold + rng.integers(1, N_CLASSES, shape)) % N_CLASSES
        return np.where(right, gold, wrong_label)

    itt = [predictions(itt_difficulty, BASE_ACCURACY + true_gain) for _ in SEEDS]
    none = [predictions(difficulty, BASE_ACCURACY) for _ in SEEDS]
    gains = []
    for simulation in range(N_SIMULATIONS):
        models = np.stack([pred[simulation] for pred in itt + none])
        replicates = bootstrap_macro_f1(gold[simulation], models, N_CLASSES, N_BOOTSTRAP, rng)
        runs = [Estimate(macro_f1(gold[simulation], pred, N_CLASSES), reps)
                for pred, reps in zip(models, replicates)]
        with_itt = pool_seeds(dict(zip(SEEDS, runs[:len(SEEDS)])))
        without = pool_seeds(dict(zip(SEEDS, runs[len(SEEDS):])))
        gains.append(combine([with_itt, without], [1.0, -1.0]))
    return gains


def share_of(gains: list[Estimate], condition) -> float:
    return float(np.mean([condition(gain) for gain in gains]))


def test_each_regime_defeats_a_test_on_one_source_of_noise_alone():
    seed_dominated = simulated_gains(SEED_NOISE_DOMINATES, 0.0)
    # about 0.33: the paired bootstrap over test examples ignores the seed noise
    assert share_of(seed_dominated, lambda g: g.p_value_test_set() < 0.05) > 0.2
    test_dominated = simulated_gains(TEST_NOISE_DOMINATES, 0.0)
    # about 0.17: a t-test on the per-seed differences misses the luck the seeds share
    assert share_of(test_dominated, lambda g: stats.ttest_1samp(
        list(g.per_seed.values()), 0.0).pvalue < 0.05) > 0.1


@pytest.mark.parametrize("regime", REGIMES)
def test_the_estimated_variance_matches_the_spread_of_the_gains(regime):
    gains = simulated_gains(regime, 0.0)
    spread = np.var([gain.value for gain in gains])
    estimated = np.mean([gain.seed_noise()[0] + gain.test_variance for gain in gains])
    assert 0.8 < estimated / spread < 1.2  # with the whole bootstrap variance: 1.25


@pytest.mark.parametrize("regime", REGIMES)
def test_marks_have_the_nominal_false_positive_rate_under_no_gain(regime):
    gains = simulated_gains(regime, 0.0)
    false_positives = share_of(gains, lambda g: g.verdict(0.95) != INCLUDES_ZERO)
    assert 0.01 <= false_positives <= 0.08  # nominal 0.05; the quadrature errs low


@pytest.mark.parametrize("regime", REGIMES)
def test_intervals_cover_the_true_gain(regime):
    true_gain = 100 * REAL_GAIN
    gains = simulated_gains(regime, REAL_GAIN)
    intervals = [gain.interval(0.95) for gain in gains]
    coverage = np.mean([low <= true_gain <= high for low, high in intervals])
    assert 0.92 <= coverage <= 0.99


def test_a_mark_p_value_and_interval_always_agree():
    gains = [gain for regime in (SEED_NOISE_DOMINATES, TEST_NOISE_DOMINATES)
             for truth in (0.0, REAL_GAIN) for gain in simulated_gains(regime, truth)[:100]]
    for gain in gains:
        p_value = gain.p_value()
        for level in (0.9, 0.95, 0.99):
            low, high = gain.interval(level)
            excludes_zero = low > 0 or high < 0
            assert (p_value < 1 - level) == excludes_zero
            assert (gain.verdict(level) in (ABOVE_ZERO, BELOW_ZERO)) == excludes_zero
        # p is the level at which the interval just reaches 0
        low, high = gain.interval(1 - p_value)
        assert min(abs(low), abs(high)) == pytest.approx(0.0, abs=1e-6)


def test_fewer_than_three_seeds_give_no_seed_level_claim():
    replicates = np.random.default_rng(0).normal(0.0, 1.0, (2, 500))
    runs = {seed: Estimate(value, value + reps) for seed, value, reps
            in zip((1, 2), (4.0, 6.0), replicates)}
    two_seeds = pool_seeds(runs)
    assert MIN_SEEDS_FOR_CLAIM == 3
    assert two_seeds.verdict() == TOO_FEW_SEEDS and not two_seeds.supports_seed_claim
    # the seed part alone: t(0.975, 1 dof) = 12.7 standard errors
    low, high = two_seeds.interval()
    assert (high - low) / 2 >= 12.7 * 1.0
    test_low, test_high = two_seeds.test_set_interval()
    assert test_low < 5.0 < test_high and test_high - test_low < 5.0
