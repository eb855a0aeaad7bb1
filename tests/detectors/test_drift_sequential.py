"""Sequential detectors on scalar streams: pinned detections, silence, robustness, wrapper."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from river import drift

from detectors import BernoulliCUSUM, RobustCUSUM, ScalarStreamDrift
from tests.detectors.cases_drift import alarms


def normal(seed: int, n: int, mean: float = 0.0, sd: float = 1.0) -> list[float]:
    return np.random.default_rng(seed).normal(mean, sd, n).tolist()


@pytest.mark.parametrize(
    ("after", "index", "cause"),
    [
        (normal(2, 1000, mean=1.0), 2037, "mean_up"),
        (normal(2, 1000, mean=-1.0), 2054, "mean_down"),
        (normal(2, 1000, sd=2.0), 2049, "spread_up"),
    ],
    ids=["mean_up", "mean_down", "spread_up"],
)
def test_robust_cusum_pins_each_kind_of_change(after: list[float], index: int, cause: str) -> None:
    detector = RobustCUSUM()
    assert alarms(detector, [*normal(1, 2000), *after]) == [index]
    assert detector.cause == cause
    assert detector.n_detections == 1


def test_robust_cusum_is_silent_on_a_long_stationary_stream() -> None:
    detector = RobustCUSUM()
    assert alarms(detector, normal(3, 300_000, mean=50.0, sd=7.0)) == []
    assert detector.reference_location == pytest.approx(50.0, abs=0.5)
    assert detector.reference_scale == pytest.approx(7.0, rel=0.05)


def test_robust_cusum_pins_a_step_in_a_short_series_and_stays_silent_without() -> None:
    # 400 values, warm-up 100: a step of 0.75 standard deviations at 250.
    stream = [*normal(21, 250, mean=5.0, sd=2.0), *normal(22, 150, mean=6.5, sd=2.0)]
    assert alarms(RobustCUSUM(warm_up=100), stream) == [297]
    assert alarms(RobustCUSUM(warm_up=100), normal(22, 400, mean=5.0, sd=2.0)) == []


def test_robust_cusum_learns_its_reference_again_from_the_whole_segment() -> None:
    stream = np.array(normal(24, 4000))
    detector = RobustCUSUM()
    detector.update_many(stream[:1499])
    assert detector.reference_location == stream[:1000].mean()
    detector.update(stream[1499])
    assert detector.reference_location == pytest.approx(stream[:1500].mean(), abs=1e-12)
    for x in stream[1500:]:
        detector.update(x)
    assert detector.reference_location == pytest.approx(stream.mean(), abs=1e-12)
    assert detector.reference_scale == pytest.approx(stream.std(), abs=1e-12)


def test_robust_cusum_ignores_outliers_in_warm_up_and_after() -> None:
    stream = normal(4, 5000)
    for i in range(100, 5000, 400):
        stream[i] = 1e6
    detector = RobustCUSUM()
    assert alarms(detector, stream) == []
    assert detector.reference_scale == pytest.approx(1.0, rel=0.1)


def test_robust_cusum_relearns_the_reference_after_an_alarm() -> None:
    detector = RobustCUSUM(warm_up=200)
    stream = [*normal(5, 1000), *normal(6, 3000, mean=3.0)]
    assert alarms(detector, stream) == [1009]
    assert detector.reference_location == pytest.approx(3.0, abs=0.2)


def test_robust_cusum_handles_a_constant_warm_up() -> None:
    # A zero spread in warm-up makes the smallest step a large one.
    detector = RobustCUSUM(warm_up=100)
    assert alarms(detector, [5.0] * 500 + [5.1] * 10) == [508]
    assert detector.cause == "spread_up"


def test_robust_cusum_relearns_after_a_warm_up_that_overflows() -> None:
    detector = RobustCUSUM(warm_up=100)
    extreme = [1e308, -1e308] * 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = alarms(detector, [*extreme, *normal(12, 300), *normal(13, 100, mean=3.0)])
    assert found == [410]
    # A three-sigma step fills the spread CUSUM (1.8 a value, to 15) before the mean's
    # (2.85 a value, to 43).
    assert detector.cause == "spread_up"


def test_robust_cusum_skips_bad_values_without_counting_them() -> None:
    clean, dirty = RobustCUSUM(), RobustCUSUM()
    stream = [*normal(7, 2000), *normal(8, 500, mean=1.0)]
    noisy: list[Any] = []
    for x in stream:
        noisy.extend([x, None, float("nan"), float("inf"), "x"])
    assert alarms(clean, stream) == [2054]
    assert [i // 5 for i in alarms(dirty, noisy)] == [2054]


def errors(seed: int, n: int, rate: float) -> list[bool]:
    return (np.random.default_rng(seed).random(n) < rate).tolist()


def test_bernoulli_cusum_pins_an_error_rate_rise() -> None:
    detector = BernoulliCUSUM()
    assert alarms(detector, [*errors(1, 5000, 0.05), *errors(2, 3000, 0.10)]) == [5443]
    assert detector.n_detections == 1


def test_bernoulli_cusum_with_a_known_rate_needs_no_warm_up() -> None:
    detector = BernoulliCUSUM(reference_rate=0.01, threshold=6.0)
    assert alarms(detector, errors(3, 400, 0.08)) == [225, 359]
    assert detector.in_control_rate == 0.01


def test_bernoulli_cusum_is_silent_when_stationary_or_improving() -> None:
    stream = [*errors(4, 200_000, 0.05), *errors(5, 100_000, 0.01)]
    detector = BernoulliCUSUM()
    assert alarms(detector, stream) == []
    assert detector.in_control_rate == pytest.approx(0.05, abs=0.01)


def test_bernoulli_cusum_accepts_only_zero_one_inputs() -> None:
    detector = BernoulliCUSUM(reference_rate=0.5, threshold=2.0)
    invalid: list[Any] = [None, float("nan"), 0.5, 2, "1", float("inf")]
    for x in invalid:
        detector.update(x)
    assert detector.statistic == 0.0
    valid: list[Any] = [1, True, np.True_, 1.0]
    for x in valid:
        detector.update(x)
    assert detector.statistic > 0.0


def test_wrapper_keeps_adwin_clean_of_bad_values() -> None:
    stream = [*normal(6, 3000), *normal(7, 1000, mean=1.0)]
    noisy: list[Any] = []
    for x in stream:
        noisy.extend([x, float("nan"), None])
    plain = drift.ADWIN()
    wrapped = ScalarStreamDrift(drift.ADWIN())
    expected = alarms(plain, stream)
    assert expected == [3071]
    assert [i // 3 for i in alarms(wrapped, noisy)] == expected
    assert wrapped.n_skipped == 2 * len(stream)
    assert wrapped.n_detections == 1


def test_wrapper_feeds_binary_detectors_booleans_only() -> None:
    wrapped = ScalarStreamDrift(drift.binary.DDM(), warm_up=3000)
    stream = [*errors(8, 3000, 0.05), *errors(9, 2000, 0.3)]
    found = alarms(wrapped, [x for e in stream for x in (e, 0.5, None)])
    assert [i // 3 for i in found] == [3059, 3273]
    assert wrapped.n_skipped == 2 * len(stream)


def test_wrapper_holds_back_alarms_during_warm_up() -> None:
    stream = [*normal(10, 100), *normal(11, 200, mean=5.0)]
    assert alarms(ScalarStreamDrift(drift.ADWIN()), stream) != []
    assert alarms(ScalarStreamDrift(drift.ADWIN(), warm_up=300), stream) == []


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RobustCUSUM(warm_up=5), "warm_up"),
        (lambda: RobustCUSUM(allowance=0.0), "allowance"),
        (lambda: RobustCUSUM(spread_ratio=0.5), "spread_ratio"),
        (lambda: BernoulliCUSUM(odds_ratio=1.0), "odds_ratio"),
        (lambda: BernoulliCUSUM(reference_rate=1.0), "reference_rate"),
        (lambda: ScalarStreamDrift(RobustCUSUM, warm_up=1), "detector"),
        (lambda: ScalarStreamDrift(warm_up=-1), "warm_up"),
    ],
)
def test_invalid_configuration_names_the_field(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make()
