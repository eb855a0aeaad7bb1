"""The exact tails and Fisher's exact test the detectors share, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors._exact import binomial_sf, fisher_exact_two_sided, hypergeom_sf


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


@pytest.mark.parametrize("seed", range(10))
def test_fisher_exact_two_sided_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(10):
        n_reference = int(rng.integers(1, 5000))
        n_current = int(rng.integers(1, 1000))
        hits_reference = int(rng.binomial(n_reference, rng.uniform(0.0, 0.5)))
        hits_current = int(rng.binomial(n_current, rng.uniform(0.0, 0.5)))
        table = [
            [hits_reference, n_reference - hits_reference],
            [hits_current, n_current - hits_current],
        ]
        ours = fisher_exact_two_sided(hits_reference, n_reference, hits_current, n_current)
        assert ours == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9, abs=1e-300)


def test_fisher_exact_two_sided_is_one_when_only_one_table_is_possible() -> None:
    assert fisher_exact_two_sided(0, 10, 0, 20) == 1.0
    assert fisher_exact_two_sided(10, 10, 20, 20) == 1.0
