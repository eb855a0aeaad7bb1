"""Effect sizes: the share of the population a change moved, less the in-control noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import (
    ChiSquareDrift,
    JensenShannonDrift,
    KSDrift,
    PSIDrift,
    WassersteinDrift,
)
from detectors.drift._effect import (
    _SAMPLING,
    BLOCKS,
    MIN_BLOCK,
    QUARTILES,
    _positions,
    _quartiles,
    quantile_effect,
    share_effect,
    slow_variance,
)

FLOOR = 0.15  # the watch's default for features (streams.monitor.watch.DEFAULT_MIN_EFFECT)


def zero_inflated(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.6, 0.0, rng.beta(2.0, 5.0, n))


def test_a_sample_from_the_reference_has_no_effect_even_on_an_atom() -> None:
    rng = np.random.default_rng(5)
    reference = zero_inflated(rng, 2000)
    slow = slow_variance(reference)
    ordered = np.sort(reference)
    # The sample's first quartile and median are the atom at 0, which covers 0 to 0.6.
    effects = [quantile_effect(ordered, slow, zero_inflated(rng, 200)) for _ in range(20)]
    assert max(effects) < 0.01
    # A score stuck at the reference's 99th percentile moved nearly everything.
    stuck = np.full(50, np.quantile(reference, 0.99))
    assert round(quantile_effect(ordered, slow, stuck), 3) == 0.616


def test_a_shift_below_the_floor_is_small_and_one_above_is_large() -> None:
    rng = np.random.default_rng(8)
    reference = rng.normal(0.0, 1.0, 2000)
    slow, ordered = slow_variance(reference), np.sort(reference)
    small = [quantile_effect(ordered, slow, rng.normal(0.25, 1.0, 500)) for _ in range(20)]
    large = [quantile_effect(ordered, slow, rng.normal(1.0, 1.0, 500)) for _ in range(20)]
    assert max(small) < FLOOR < min(large)


def test_the_slow_variation_of_the_reference_widens_the_noise() -> None:
    rng = np.random.default_rng(2)
    # A level that wanders (a batch job's aggregate) under independent noise.
    level = np.repeat(np.cumsum(rng.normal(0.0, 0.25, 20)), 100)
    reference = level + rng.normal(0.0, 1.0, 2000)
    independent = rng.permutation(reference)
    # The level moves the quartiles, not the middle half's share.
    assert slow_variance(independent).max() == 0.0 < slow_variance(reference)[:3].min()
    # Later traffic at a level the reference itself visited: as large as a real change
    # against single values, within the noise against blocks.
    ordered = np.sort(reference)
    sample = level.min() + rng.normal(0.0, 1.0, 500)
    assert quantile_effect(ordered, slow_variance(independent), sample) > FLOOR
    assert quantile_effect(ordered, slow_variance(reference), sample) < FLOOR


def test_share_effect_is_the_largest_cell_change_less_its_noise() -> None:
    reference = np.array([500.0, 300.0, 150.0, 50.0, 0.0])
    assert share_effect(reference, reference / 4) == 0.0
    # 100 of 550 in a category never seen: all of that share counts.
    change = share_effect(reference, np.array([200.0, 150.0, 75.0, 25.0, 100.0]))
    assert round(change, 3) == 0.182
    assert share_effect(reference, np.zeros(5)) == 0.0


def test_windowed_tests_report_each_windows_effect() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0.0, 1.0, 1000)
    test = PSIDrift(reference=reference, window_size=500)
    test.update_many(np.concatenate([rng.normal(0.0, 1.0, 500), rng.normal(1.5, 1.0, 500)]))
    effects = test.window_effects.tolist()
    assert test.window_drifts.tolist() == [False, True]
    assert effects[0] < FLOOR < effects[1] == test.effect
    categories = ChiSquareDrift(reference={"a": 600, "b": 400}, window_size=200, alpha=0.001)
    categories.update_many(["a"] * 60 + ["b"] * 140)
    assert categories.drift_detected
    assert round(categories.effect, 3) == 0.224


def test_a_doubled_spread_moves_the_middle_half() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(0.0, 1.0, 2000)
    effect = quantile_effect(np.sort(reference), slow_variance(reference), rng.normal(0, 2, 500))
    assert round(effect, 3) == 0.257 > FLOOR


def walking_and_stepping(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """12,000 values: a level that wanders (a random walk moving every 100 values by 0.12
    standard deviations) under independent noise, and independent values whose mean steps
    by one standard deviation at 8,000."""
    rng = np.random.default_rng(seed)
    level = np.repeat(np.cumsum(rng.normal(0.0, 0.12, 120)), 100)
    walk = level + rng.normal(0.0, 1.0, 12_000)
    step = rng.normal(0.0, 1.0, 12_000) + (np.arange(12_000) >= 8_000)
    return walk, step


@pytest.mark.parametrize("test_class", [PSIDrift, KSDrift, WassersteinDrift, JensenShannonDrift])
def test_a_slow_walk_is_not_material_and_a_step_stays_material(test_class: type) -> None:
    walk, step = walking_and_stepping(5)
    # The walk leaves its reference's range: every test alarms on it, and against the
    # reference's blocks alone 18 of its 22 windows were material. The windows below the
    # floor widen the noise as the walk goes, so none is.
    wandering = test_class(reference=walk[:1000], window_size=500)
    wandering.update_many(walk[1000:])
    assert wandering.window_drifts.sum() >= 10
    assert wandering.window_effects.max() < FLOOR
    # A step's windows are material from the first, and stay so: they never join the noise.
    stepping = test_class(reference=step[:1000], window_size=500)
    stepping.update_many(step[1000:])
    material = stepping.window_ends[stepping.window_effects >= FLOOR] + 1000
    assert material.tolist() == list(range(8499, 12_000, 500))
    assert stepping.window_effects[: material.size].max() < FLOOR


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0, math.inf, math.nan]) | st.floats(-10.0, 10.0),
        min_size=1,
        max_size=70,
    )
)
def test_the_quartiles_are_numpys_inverted_cdf_quantiles(values: list[float]) -> None:
    # Ties, signed zeros, infinities and NaN, at every size up to past a few blocks.
    sample = np.array(values)
    expected = np.quantile(sample, QUARTILES, method="inverted_cdf")
    found = _quartiles(sample)
    assert np.array_equal(found, expected, equal_nan=True)
    assert np.array_equal(np.signbit(found), np.signbit(expected))
    assert np.array_equal(sample, np.array(values), equal_nan=True)  # left as it was


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0]) | st.floats(-10.0, 10.0),
        min_size=10 * BLOCKS,
        max_size=40 * BLOCKS,
    )
)
def test_the_slow_variance_is_the_variance_of_the_blocks_positions(values: list[float]) -> None:
    # The blocks' quartiles are read at once; each block's, one at a time, give the same.
    reference = np.array(values)
    size = reference.size // BLOCKS
    found = slow_variance(reference)
    if size < MIN_BLOCK:
        assert found.tolist() == [0.0] * 4
        return
    ordered = np.sort(reference)
    blocks = [_positions(ordered, reference[i * size : (i + 1) * size]) for i in range(BLOCKS)]
    expected = np.maximum(np.var(blocks, axis=0, ddof=1) - _SAMPLING / size, 0.0)
    assert np.array_equal(found, expected)
