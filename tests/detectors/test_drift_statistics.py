"""The two-sample statistics and distribution functions, cross-checked against scipy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import spatial, stats

from detectors import KSDrift, WassersteinDrift
from detectors.drift._statistics import (
    chi_square_sf,
    contingency_chi_square,
    jensen_shannon,
    kolmogorov_sf,
    ks_statistic,
    population_stability_index,
    psi_p_value,
    wasserstein_1,
)
from detectors.drift._window import bin_counts, reference_bins


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, int(rng.integers(5, 800)))
    b = rng.standard_t(3, int(rng.integers(5, 800))) * rng.uniform(0.5, 2.0) + rng.normal()
    if seed % 3 == 0:
        # Rounded values tie within and across samples.
        a, b = np.round(a, 1), np.round(b, 1)
    return np.sort(a), np.sort(b)


@pytest.mark.parametrize("seed", range(30))
def test_ks_statistic_matches_scipy(seed: int) -> None:
    a, b = _samples(seed)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_wasserstein_matches_scipy(seed: int) -> None:
    a, b = _samples(seed)
    assert wasserstein_1(a, b) == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-9)


def test_detectors_report_scipy_statistics_on_their_windows() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0.0, 1.0, 700)
    stream = rng.normal(0.2, 1.3, 300)
    ks, w1 = KSDrift(reference, window_size=300), WassersteinDrift(reference, window_size=300)
    for x in stream:
        ks.update(x)
        w1.update(x)
    assert ks.n_windows == w1.n_windows == 1
    assert ks.statistic == pytest.approx(stats.ks_2samp(reference, stream).statistic, abs=1e-9)
    assert w1.statistic == pytest.approx(stats.wasserstein_distance(reference, stream), abs=1e-9)
    assert w1.reference_scale == pytest.approx(np.std(reference), abs=1e-12)


@pytest.mark.parametrize("lam", [0.05, 0.3, 0.6, 0.9, 1.1, 1.17, 1.19, 1.5, 2.0, 3.0, 5.0])
def test_kolmogorov_sf_matches_scipy(lam: float) -> None:
    # n = m = 50 gives sqrt(n_eff) = 5; undo Stephens' correction to hit lam exactly.
    statistic = lam / (5.0 + 0.12 + 0.11 / 5.0)
    assert kolmogorov_sf(statistic, 50, 50) == pytest.approx(stats.kstwobign.sf(lam), abs=1e-9)


def test_ks_p_value_is_close_to_scipys_asymptotic_one() -> None:
    for seed in range(20):
        a, b = _samples(seed)
        ours = kolmogorov_sf(ks_statistic(a, b), a.size, b.size)
        theirs = stats.ks_2samp(a, b, method="asymp").pvalue
        assert ours == pytest.approx(theirs, abs=0.02)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 9, 20, 60, 200])
def test_chi_square_sf_matches_scipy(dof: int) -> None:
    for x in [0.01, 0.5, 1.0, dof * 0.5, dof, dof + 1.0, dof * 2.0, dof * 4.0 + 30.0]:
        expected = stats.chi2.sf(x, dof)
        assert chi_square_sf(x, dof) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("n_reference", "n_current", "below_5", "below_1"),
    [(50, 50, 38, 7), (200, 50, 77, 8), (1000, 100, 92, 27)],
)
def test_psi_p_values_of_samples_of_one_distribution_are_at_most_about_their_level(
    n_reference: int, n_current: int, below_5: int, below_1: int
) -> None:
    rng = np.random.default_rng(n_reference + n_current)
    p_values = []
    for _ in range(2000):
        reference = np.sort(rng.lognormal(0.0, 1.5, n_reference))
        inner, reference_counts = reference_bins(reference, 10)
        current_counts = bin_counts(inner, rng.lognormal(0.0, 1.5, n_current))
        statistic = population_stability_index(reference_counts, current_counts)
        p_value = psi_p_value(reference_counts, current_counts)
        scale = 1.0 / n_reference + 1.0 / n_current
        assert p_value == pytest.approx(stats.chi2.sf(statistic / scale, 9), rel=1e-9)
        p_values.append(p_value)
    # Of 2,000 pairs, 5% is 100 (binomial spread about 10) and 1% is 20 (about 4.5). The
    # half counts make the PSI of small samples smaller than the chi-square's: at 5 values
    # a bin chance alarms less often than the level says, at 10 to 100 about as often.
    assert (sum(p < 0.05 for p in p_values), sum(p < 0.01 for p in p_values)) == (
        below_5,
        below_1,
    )


def test_contingency_chi_square_matches_scipy_when_no_cell_is_pooled() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        table = rng.integers(10, 400, size=(2, int(rng.integers(2, 12)))).astype(np.float64)
        statistic, dof = contingency_chi_square(table[0], table[1])
        expected = stats.chi2_contingency(table, correction=False)
        assert statistic == pytest.approx(expected.statistic, rel=1e-9)
        assert dof == expected.dof


def test_contingency_chi_square_pools_small_cells() -> None:
    reference = np.array([5000.0, 3000.0, 10.0, 0.0])
    current = np.array([250.0, 150.0, 0.0, 3.0])
    statistic, dof = contingency_chi_square(reference, current)
    pooled = np.array([[5000.0, 3000.0, 10.0], [250.0, 150.0, 3.0]])
    assert dof == 2
    assert statistic == pytest.approx(stats.chi2_contingency(pooled, correction=False).statistic)


def test_divergences_match_their_definitions() -> None:
    reference = np.array([30.0, 50.0, 0.0, 20.0])
    current = np.array([10.0, 40.0, 25.0, 25.0])
    js = spatial.distance.jensenshannon(reference, current, base=2) ** 2
    assert jensen_shannon(reference, current) == pytest.approx(js, abs=1e-12)
    p = (reference + 0.5) / (reference + 0.5).sum()
    q = (current + 0.5) / (current + 0.5).sum()
    psi = float(np.sum((q - p) * np.log(q / p)))
    assert population_stability_index(reference, current) == pytest.approx(psi, abs=1e-12)
    assert math.isclose(population_stability_index(reference, reference), 0.0, abs_tol=1e-15)


def _searchsorted_ks(reference: Any, current: Any) -> float:
    # The former definition, one binary search per value: ks_statistic must equal it exactly.
    points = np.concatenate([reference, current])
    cdf_reference = np.searchsorted(reference, points, side="right") / reference.size
    cdf_current = np.searchsorted(current, points, side="right") / current.size
    return float(np.max(np.abs(cdf_reference - cdf_current)))


def _searchsorted_wasserstein(reference: Any, current: Any) -> float:
    points = np.sort(np.concatenate([reference, current]))
    widths = np.diff(points)
    cdf_reference = np.searchsorted(reference, points[:-1], side="right") / reference.size
    cdf_current = np.searchsorted(current, points[:-1], side="right") / current.size
    return float(np.sum(np.abs(cdf_reference - cdf_current) * widths))


SAMPLE = st.lists(
    st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6), st.just(-0.0)),
    min_size=2,
    max_size=60,
).map(lambda values: np.sort(np.array(values, dtype=np.float64)))


@settings(max_examples=500, deadline=None)
@given(SAMPLE, SAMPLE)
def test_merged_cdfs_give_the_binary_search_statistics_exactly(
    reference: Any, current: Any
) -> None:
    # Ties within and across the samples, and both zeros, included.
    assert ks_statistic(reference, current) == _searchsorted_ks(reference, current)
    assert wasserstein_1(reference, current) == _searchsorted_wasserstein(reference, current)
