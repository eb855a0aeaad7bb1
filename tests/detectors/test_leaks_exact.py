"""The exact tails the leak detectors test with, against scipy, and the anytime p-value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.leaks._exact import AnytimePValue, binomial_sf, hypergeom_sf


@pytest.mark.parametrize("seed", range(20))
def test_binomial_sf_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3_000))
    p = float(rng.uniform(0.001, 0.999))
    for k in rng.integers(0, n + 2, 10).tolist():
        assert binomial_sf(k, n, p) == pytest.approx(
            stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-300
        )


@pytest.mark.parametrize("seed", range(20))
def test_hypergeom_sf_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    total = int(rng.integers(2, 3_000))
    successes = int(rng.integers(0, total + 1))
    draws = int(rng.integers(0, total + 1))
    for k in rng.integers(0, draws + 2, 10).tolist():
        expected = stats.hypergeom.sf(k - 1, total, successes, draws)
        assert hypergeom_sf(k, total, successes, draws) == pytest.approx(
            expected, rel=1e-9, abs=1e-300
        )


def test_edges() -> None:
    assert binomial_sf(0, 10, 0.3) == 1.0
    assert binomial_sf(11, 10, 0.3) == 0.0
    assert binomial_sf(3, 10, 0.0) == 0.0
    assert binomial_sf(3, 10, 1.0) == 1.0
    assert binomial_sf(1, 0, 0.5) == 0.0


def test_anytime_p_value_charges_each_look_and_spaces_them_geometrically() -> None:
    looks = AnytimePValue(first_look=20)
    assert not looks.due(19)
    assert looks.due(20)
    looks.record(20, 0.01)
    assert looks.p_value == pytest.approx(0.02)
    assert (looks.next_look, looks.due(21)) == (22, False)
    looks.record(22, 0.001)
    assert looks.p_value == pytest.approx(0.006)
    looks.record(100, 0.5)
    # A later, weaker test does not undo an earlier, stronger one.
    assert looks.p_value == pytest.approx(0.006)
    assert looks.next_look == 110


def test_anytime_p_value_keeps_its_level_under_the_null() -> None:
    # Sign tests on fair coins, looked at as often as allowed for 2,000 flips: the
    # fraction of streams that ever reach alpha stays below alpha.
    rng = np.random.default_rng(0)
    alpha, streams, ever = 0.05, 400, 0
    for _ in range(streams):
        heads = np.cumsum(rng.random(2_000) < 0.5)
        looks = AnytimePValue(first_look=10)
        for size in range(1, 2_001):
            if looks.due(size):
                looks.record(size, binomial_sf(int(heads[size - 1]), size, 0.5))
        ever += looks.p_value <= alpha
    assert ever / streams <= alpha
