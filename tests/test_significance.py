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

Power: each regime's variances are measured as the report measures them (the mean, over
many simulated gains, of each gain's seed and test-set variance, in grids whose true gain
is the MDE itself), the minimum detectable effect is computed from them, and 2000 gains
are simulated with that true effect: the test must detect 0.80 +- 0.05 of them (a rate of
0.8 is measured to +-0.009).  Measured (seed-dominated, then test-dominated; the regimes
are noisy on purpose, so the MDEs are large): MDE 20.6 and 11.0 F1 points, detected 0.816
and 0.806 of the time; without effect the test rejects 0.039 and 0.027 where the power
function says 0.045 and 0.024.  The seeds said to detect 0.6 MDE (five) detect it 0.89
of the time, as stated.
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
from xitt.analysis.stats import (ABOVE_ZERO, BELOW_ZERO, INCLUDES_ZERO, MAX_SEEDS, POWER,
                                 TOO_FEW_SEEDS, bootstrap_macro_f1, minimum_detectable_effect,
                                 rejection_rate, seeds_to_detect)
from xitt.metrics.classification import macro_f1

N_CLASSES = 3
SEEDS = (1, 2, 3)
N_SIMULATIONS = 1000  # per regime and truth: a rate of 0.05 is measured to +-0.007
N_POWER_SIMULATIONS = 2000  # a rate of 0.8 is measured to +-0.009
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
def simulated_gains(regime: Regime, true_gain: float, n_simulations: int = N_SIMULATIONS,
                    seeds: tuple[int, ...] = SEEDS) -> list[Estimate]:
    """``n_simulations`` gain estimates; the models of all simulations are drawn at once."""
    rng = np.random.default_rng([int(1000 * true_gain), int(1000 * regime.seed_sd)])
    shape = (n_simulations, regime.n_examples)
    gold = rng.integers(0, N_CLASSES, shape)
    difficulty = rng.standard_normal(shape)
    rho = regime.itt_difficulty_correlation
    itt_difficulty = rho * difficulty + math.sqrt(1 - rho ** 2) * rng.standard_normal(shape)

    def predictions(example_difficulty: np.ndarray, accuracy: float) -> np.ndarray:
        share = regime.difficulty_share
        latent = (math.sqrt(share) * example_difficulty
                  + math.sqrt(1 - share) * rng.standard_normal(shape))
        seed_accuracy = accuracy + rng.normal(0.0, regime.seed_sd, (n_simulations, 1))
        right = ndtr(latent) < seed_accuracy  # ndtr(latent) is uniform: P(right) = accuracy
        wrong_label = (gold + rng.integers(1, N_CLASSES, shape)) % N_CLASSES
        return np.where(right, gold, wrong_label)

    itt = [predictions(itt_difficulty, BASE_ACCURACY + true_gain) for _ in seeds]
    none = [predictions(difficulty, BASE_ACCURACY) for _ in seeds]
    gains = []
    for simulation in range(n_simulations):
        models = np.stack([pred[simulation] for pred in itt + none])
        replicates = bootstrap_macro_f1(gold[simulation], models, N_CLASSES, N_BOOTSTRAP, rng)
        runs = [Estimate(macro_f1(gold[simulation], pred, N_CLASSES), reps)
                for pred, reps in zip(models, replicates)]
        with_itt = pool_seeds(dict(zip(seeds, runs[:len(seeds)])))
        without = pool_seeds(dict(zip(seeds, runs[len(seeds):])))
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


# --- power ----------------------------------------------------------------------------


def measured_mde(gains: list[Estimate]) -> float:
    """The minimum detectable effect of a design whose variances are the mean over its
    simulated gains of the variances each measures (three seeds: two degrees of freedom)."""
    seed_variance = np.mean([gain.seed_noise()[0] for gain in gains])
    test_variance = np.mean([gain.test_variance for gain in gains])
    return minimum_detectable_effect(seed_variance, len(SEEDS) - 1, test_variance)


def design_mde(regime: Regime) -> float:
    """The regime's MDE, with its variances measured in grids whose true gain is that MDE:
    a first value from grids without effect, then measured again at it (a classifier's
    variance depends on its accuracy, so the grids without effect are a few % off)."""
    first = measured_mde(simulated_gains(regime, 0.0))
    return measured_mde(simulated_gains(regime, round(first / 100, 4), N_POWER_SIMULATIONS))


@pytest.mark.parametrize("regime", REGIMES)
def test_at_its_minimum_detectable_effect_the_test_rejects_80_percent(regime):
    mde = design_mde(regime)
    gains = simulated_gains(regime, round(mde / 100, 4), N_POWER_SIMULATIONS)
    detected = share_of(gains, lambda g: g.verdict(0.95) == ABOVE_ZERO)
    assert POWER - 0.05 <= detected <= POWER + 0.05, (mde, detected)


@pytest.mark.parametrize("regime", REGIMES)
def test_at_no_gain_the_test_rejects_as_often_as_the_power_function_says(regime):
    gains = simulated_gains(regime, 0.0)
    seed_variance = np.mean([gain.seed_noise()[0] for gain in gains])
    test_variance = np.mean([gain.test_variance for gain in gains])
    stated = rejection_rate(0.0, seed_variance, len(SEEDS) - 1, test_variance)
    rejected = share_of(gains, lambda g: g.verdict(0.95) != INCLUDES_ZERO)
    assert stated <= 0.05 + 1e-9  # the size of the test: 0.05 at most, less with a test-set part
    assert abs(rejected - stated) <= 0.02, (stated, rejected)


def test_the_seeds_that_would_detect_an_effect_do_so():
    regime = SEED_NOISE_DOMINATES
    null = simulated_gains(regime, 0.0)
    one_seed_variance = len(SEEDS) * np.mean([gain.seed_noise()[0] for gain in null])
    test_variance = np.mean([gain.test_variance for gain in null])
    effect = 0.6 * design_mde(regime)  # below what three seeds detect
    n_seeds = int(seeds_to_detect(effect, one_seed_variance, test_variance))
    assert len(SEEDS) < n_seeds < MAX_SEEDS
    # the fewest: n seeds detect the effect, n - 1 do not
    assert minimum_detectable_effect(one_seed_variance / n_seeds, n_seeds - 1,
                                     test_variance) <= effect
    assert minimum_detectable_effect(one_seed_variance / (n_seeds - 1), n_seeds - 2,
                                     test_variance) > effect
    # a grid of that many seeds detects it as often as stated, and at least 75% of the time
    gains = simulated_gains(regime, round(effect / 100, 4), N_POWER_SIMULATIONS,
                            tuple(range(1, n_seeds + 1)))
    stated = rejection_rate(effect, one_seed_variance / n_seeds, n_seeds - 1, test_variance)
    detected = share_of(gains, lambda g: g.verdict(0.95) == ABOVE_ZERO)
    assert detected >= POWER - 0.05 and abs(detected - stated) <= 0.05, (stated, detected)


def test_where_the_test_set_limits_no_number_of_seeds_detects_the_effect():
    null = simulated_gains(TEST_NOISE_DOMINATES, 0.0)
    test_variance = np.mean([gain.test_variance for gain in null])
    one_seed_variance = len(SEEDS) * np.mean([gain.seed_noise()[0] for gain in null])
    # infinitely many seeds leave the test-set part: (z(0.975) + z(0.8)) x its sd
    floor = (stats.norm.isf(0.025) + stats.norm.isf(1 - POWER)) * math.sqrt(test_variance)
    assert minimum_detectable_effect(0.0, math.inf, test_variance) == pytest.approx(floor, rel=1e-5)
    assert seeds_to_detect(0.95 * floor, one_seed_variance, test_variance) == math.inf
    assert seeds_to_detect(1.5 * floor, one_seed_variance, test_variance) < MAX_SEEDS


def test_the_minimum_detectable_effect_allows_for_an_interval_estimated_from_few_seeds():
    # many seeds: the normal-theory (z(0.975) + z(0.8)) standard errors
    assert minimum_detectable_effect(1.0, math.inf, 0.0) == pytest.approx(2.8016, abs=1e-4)
    assert minimum_detectable_effect(1.0, 1e6, 0.0) == pytest.approx(2.8016, abs=1e-3)
    # three seeds: the shortcut (t(0.975) + t(0.8)) standard errors ignores that the
    # interval's width is itself estimated, and falls short of 80% power
    shortcut = stats.t.isf(0.025, 2) + stats.t.isf(0.2, 2)
    assert rejection_rate(shortcut, 1.0, 2, 0.0) == pytest.approx(0.766, abs=0.005)
    assert minimum_detectable_effect(1.0, 2, 0.0) > shortcut
    # the power function against a direct simulation of the test on per-seed values
    rng = np.random.default_rng(0)
    n_seeds, test_sd, effect = 3, 1.2, 5.0
    per_seed = rng.normal(effect, math.sqrt(n_seeds), (200_000, n_seeds))  # mean: sd 1
    shared = rng.normal(0.0, test_sd, (200_000, 1))
    estimate = (per_seed + shared).mean(axis=1)
    half_width = np.hypot(stats.t.isf(0.025, n_seeds - 1)
                          * per_seed.std(axis=1, ddof=1) / math.sqrt(n_seeds),
                          stats.norm.isf(0.025) * test_sd)
    simulated = np.mean(np.abs(estimate) > half_width)
    assert rejection_rate(effect, 1.0, n_seeds - 1, test_sd ** 2) == pytest.approx(simulated,
                                                                                   abs=0.005)
