"""Windowed reference-vs-current tests: pinned detections, silence, references, validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import (
    CategoricalPSIDrift,
    ChiSquareDrift,
    JensenShannonDrift,
    KSDrift,
    NullRateDrift,
    PSIDrift,
    WassersteinDrift,
)
from tests.detectors.cases_drift import alarms


def mean_shift(seed: int, before: int, after: int, shift: float) -> list[float]:
    rng = np.random.default_rng(seed)
    return [*rng.normal(0.0, 1.0, before), *rng.normal(shift, 1.0, after)]


NUMERIC = [
    lambda reference: KSDrift(reference, window_size=500, alpha=0.001),
    lambda reference: WassersteinDrift(reference, window_size=500),
    lambda reference: PSIDrift(reference, window_size=500),
    lambda reference: JensenShannonDrift(reference, window_size=500),
]
NUMERIC_IDS = ["ks", "wasserstein", "psi", "jensen_shannon"]


@pytest.mark.parametrize("make", NUMERIC, ids=NUMERIC_IDS)
def test_frozen_reference_flags_every_window_after_a_shift(make: Any) -> None:
    reference = np.random.default_rng(1).normal(0.0, 1.0, 2000)
    detector = make(reference)
    assert alarms(detector, mean_shift(2, 2500, 1000, 0.5)) == [2999, 3499]
    assert detector.n_windows == 7


@pytest.mark.parametrize("make", NUMERIC, ids=NUMERIC_IDS)
def test_rolling_reference_flags_the_step_once(make: Any) -> None:
    detector = make(None)
    # The reference follows the stream: only the first window after the step differs.
    assert alarms(detector, mean_shift(2, 2500, 1500, 0.5)) == [2999]
    assert detector.n_windows == 7


@pytest.mark.parametrize("make", NUMERIC, ids=NUMERIC_IDS)
def test_silent_on_a_long_stationary_stream(make: Any) -> None:
    rng = np.random.default_rng(3)
    detector = make(rng.normal(0.0, 1.0, 2000))
    assert alarms(detector, rng.normal(0.0, 1.0, 100_000)) == []
    assert detector.n_windows == 200


def test_ks_false_alarm_rate_is_alpha_per_window() -> None:
    rng = np.random.default_rng(4)
    detector = KSDrift(None, window_size=100, alpha=0.05)
    found = alarms(detector, rng.normal(0.0, 1.0, 200_100))
    assert detector.n_windows == 2000
    # 5% of 2,000 tests is 100; the binomial spread is about 10.
    assert len(found) == 106


def test_psi_of_small_windows_alarms_at_about_alpha_and_on_a_shift() -> None:
    rng = np.random.default_rng(7)
    stationary = rng.lognormal(0.0, 1.5, 50_000)
    detector = PSIDrift(None, window_size=50)
    # 999 windows: alpha's 1% is about 10, with a binomial spread of about 3.
    assert len(alarms(detector, stationary)) == 4
    # Chance alone passes the threshold of 0.2 in three windows of four at this size.
    assert len(alarms(PSIDrift(None, window_size=50, alpha=0.999), stationary)) == 762
    # Values an order of magnitude larger are found in their first window.
    shifted = [*stationary[:5000], *(10.0 * stationary[5000:5100])]
    assert alarms(PSIDrift(None, window_size=50), shifted) == [5049]


def test_categorical_psi_of_small_windows_alarms_at_about_alpha_and_on_a_shift() -> None:
    rng = np.random.default_rng(8)
    channels = ["web", "ios", "android", "tv"]
    mix = rng.choice(channels, 40_000, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    assert len(alarms(CategoricalPSIDrift(None, window_size=40), mix)) == 8
    assert len(alarms(CategoricalPSIDrift(None, window_size=40, alpha=0.999), mix)) == 232
    shifted = rng.choice(channels, 80, p=[0.05, 0.05, 0.1, 0.8]).tolist()
    assert alarms(CategoricalPSIDrift(None, window_size=40), mix[:4000] + shifted) == [
        839,
        3159,
        4039,
    ]


def test_categorical_psi_against_a_hundred_times_larger_reference_alarms_at_about_alpha() -> None:
    # The unseen and "other" cells are empty in both: their half counts, which differ
    # between 4,000 and 40 values, are not chance's to explain (54 alarms when they were).
    rng = np.random.default_rng(9)
    channels, shares = ["web", "ios", "android", "tv"], [0.4, 0.3, 0.2, 0.1]
    reference = dict(zip(channels, rng.multinomial(4000, shares).tolist(), strict=True))
    mix = rng.choice(channels, 40_000, p=shares).tolist()
    assert len(alarms(CategoricalPSIDrift(reference, window_size=40), mix)) == 8
    assert len(alarms(CategoricalPSIDrift(reference, window_size=40, alpha=0.999), mix)) == 252


def test_p_values_are_nan_before_the_first_window_and_skips_are_counted() -> None:
    detector = KSDrift(np.arange(10.0), window_size=3)
    for x in [1.0, None, float("nan"), float("inf"), "7", 2.0]:
        detector.update(x)
    assert np.isnan(detector.p_value) and np.isnan(detector.statistic)
    assert detector.n_skipped == 4
    detector.update(3.0)
    assert detector.n_windows == 1
    assert 0.0 < detector.p_value <= 1.0


def categories(seed: int, n: int, shares: dict[str, float]) -> list[str]:
    rng = np.random.default_rng(seed)
    return rng.choice(list(shares), n, p=list(shares.values())).tolist()


CATEGORICAL = [
    lambda reference: ChiSquareDrift(reference, window_size=500, alpha=0.001),
    lambda reference: CategoricalPSIDrift(reference, window_size=500),
]
REFERENCE_COUNTS = {"web": 5000, "ios": 3000, "android": 1900, "tv": 100}
SHARES = {"web": 0.5, "ios": 0.3, "android": 0.19, "tv": 0.01}


@pytest.mark.parametrize("make", CATEGORICAL, ids=["chi_square", "psi"])
def test_categorical_tests_flag_a_mix_shift_and_stay_quiet_before(make: Any) -> None:
    shifted = {"web": 0.3, "ios": 0.3, "android": 0.3, "tv": 0.1}
    stream = [*categories(1, 20_000, SHARES), *categories(2, 1000, shifted)]
    detector = make(REFERENCE_COUNTS)
    assert alarms(detector, stream) == [20_499, 20_999]
    assert detector.unseen_rate == 0.0


@pytest.mark.parametrize("make", CATEGORICAL, ids=["chi_square", "psi"])
def test_unseen_categories_are_drift(make: Any) -> None:
    stream = categories(3, 500, SHARES)
    stream[::25] = ["smart_fridge"] * 20
    detector = make(REFERENCE_COUNTS)
    assert alarms(detector, stream) == [499]
    assert detector.unseen_rate == pytest.approx(0.04)


def test_reference_tail_is_pooled_not_unseen() -> None:
    reference = {f"c{i}": 1000 - i for i in range(10)}
    detector = ChiSquareDrift(reference, window_size=100, max_categories=3)
    rng = np.random.default_rng(5)
    shares = np.array(list(reference.values()), dtype=float)
    stream = rng.choice(list(reference), 100, p=shares / shares.sum()).tolist()
    assert alarms(detector, stream) == []
    assert detector.unseen_rate == 0.0


def test_category_memory_is_bounded_by_max_categories() -> None:
    detector = ChiSquareDrift(None, window_size=100_000, max_categories=5)
    for i in range(99_999):
        detector.update(f"user-{i}")
    assert len(detector._window) <= 2 * 5 + 1


def test_null_rate_fisher_test_with_sentinels_and_a_rolling_reference() -> None:
    rng = np.random.default_rng(6)
    present = rng.normal(size=3000).tolist()
    stream: list[Any] = [-1 if i >= 2000 and i % 50 == 0 else x for i, x in enumerate(present)]
    detector = NullRateDrift(None, window_size=500, alpha=0.01, sentinels=(-1,))
    assert alarms(detector, stream) == [2499]
    assert detector.null_rate == pytest.approx(0.02)
    assert detector.n_windows == 5


def test_null_rate_is_quiet_on_rare_stationary_nulls() -> None:
    rng = np.random.default_rng(7)
    stream = [None if missing else 0.0 for missing in rng.random(200_000) < 0.002]
    detector = NullRateDrift((20, 10_000), window_size=1000, alpha=0.001)
    assert alarms(detector, stream) == []


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: KSDrift(window_size=1), "window_size"),
        (lambda: KSDrift(alpha=1.5), "alpha"),
        (lambda: KSDrift(reference=[1.0, float("nan")]), "reference"),
        (lambda: WassersteinDrift(threshold=0.0), "threshold"),
        (lambda: PSIDrift(n_bins=1), "n_bins"),
        (lambda: PSIDrift(alpha=0.0), "alpha"),
        (lambda: CategoricalPSIDrift(alpha=1.0), "alpha"),
        (lambda: JensenShannonDrift(threshold=0.0), "threshold"),
        (lambda: ChiSquareDrift(reference={"a": -1}), "reference"),
        (lambda: ChiSquareDrift(max_categories=0), "max_categories"),
        (lambda: CategoricalPSIDrift(threshold=-1.0), "threshold"),
        (lambda: NullRateDrift(reference=(5, 2)), "reference"),
        (lambda: NullRateDrift(reference=0.002), "reference"),
        (lambda: NullRateDrift(reference=(2, 1000, 5)), "reference"),
        (lambda: NullRateDrift(reference=(0.5, 10.0)), "reference"),
    ],
)
def test_invalid_configuration_names_the_field(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()
