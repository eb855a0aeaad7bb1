"""The e-CUSUM drop alarm: pinned detections, silence and its false-alarm level under the null."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.performance.drop import PerformanceDrop


def _alarms(detector: PerformanceDrop, losses: np.ndarray) -> list[int]:
    found = []
    for i, loss in enumerate(losses):
        detector.update(float(loss))
        if detector.drift_detected:
            found.append(i)
    return found


def test_pinned_detection_of_an_error_rate_rise() -> None:
    rng = np.random.default_rng(20)
    errors = np.concatenate([rng.random(5000) < 0.10, rng.random(3000) < 0.20])
    alarms = _alarms(PerformanceDrop(alpha=1e-4, tolerance=0.02), errors)
    assert alarms[0] == 5288
    assert all(i >= 5000 for i in alarms)


def test_a_known_baseline_skips_the_reference() -> None:
    rng = np.random.default_rng(21)
    errors = rng.random(3000) < 0.30
    detector = PerformanceDrop(alpha=1e-4, tolerance=0.02, baseline=0.10)
    assert detector.baseline_loss == 0.10
    assert _alarms(detector, errors)[0] == 59


def test_continuous_losses_in_the_unit_interval() -> None:
    rng = np.random.default_rng(22)
    losses = np.concatenate([rng.beta(2, 8, 4000), rng.beta(3, 7, 2000)])  # mean 0.2 -> 0.3
    alarms = _alarms(PerformanceDrop(alpha=1e-4, tolerance=0.02, reference_size=1000), losses)
    assert alarms[0] == 4064


def test_silent_on_a_long_stationary_stream() -> None:
    rng = np.random.default_rng(23)
    errors = rng.random(100_000) < 0.10
    assert _alarms(PerformanceDrop(alpha=1e-4, tolerance=0.02, baseline=0.10), errors) == []


def test_an_improvement_never_alarms() -> None:
    rng = np.random.default_rng(24)
    errors = np.concatenate([rng.random(2000) < 0.2, rng.random(20_000) < 0.05])
    assert _alarms(PerformanceDrop(alpha=1e-3), errors) == []


@pytest.mark.parametrize(("alpha", "at_null", "above_null"), [(1e-2, 49, 134), (1e-3, 4, 43)])
def test_false_alarms_per_update_stay_below_alpha_at_the_null_boundary(
    alpha: float, at_null: int, above_null: int
) -> None:
    # The hardest null: the mean loss sits exactly at baseline + tolerance. The e-CUSUM
    # promises a mean run length of at least 1 / alpha, i.e. at most about alpha alarms
    # per update: at most 100,000 * alpha here.
    rng = np.random.default_rng(25)
    n = 100_000
    errors = rng.random(n) < 0.12
    worse = errors | (rng.random(n) < 0.0228)  # 0.14: one tolerance above the null
    alarms = _alarms(PerformanceDrop(alpha=alpha, tolerance=0.02, baseline=0.10), errors)
    assert len(alarms) == at_null
    assert len(alarms) <= n * alpha
    # A rise of one tolerance beyond the null alarms several times as often.
    worse_alarms = _alarms(PerformanceDrop(alpha=alpha, tolerance=0.02, baseline=0.10), worse)
    assert len(worse_alarms) == above_null


def test_the_alarm_lasts_one_update_and_invalid_input_clears_it() -> None:
    detector = PerformanceDrop(alpha=0.01, tolerance=0.05, baseline=0.0)
    for _ in range(100):
        detector.update(1.0)
        if detector.drift_detected:
            break
    assert detector.drift_detected
    detector.update(float("nan"))
    assert not detector.drift_detected
    assert detector.statistic == 0.0


def test_a_baseline_too_high_to_be_exceeded_never_alarms() -> None:
    detector = PerformanceDrop(alpha=0.01, tolerance=0.5, baseline=0.6)
    for _ in range(1000):
        detector.update(1.0)
        assert not detector.drift_detected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"baseline": 1.0}, "baseline"),
        ({"baseline": -0.1}, "baseline"),
        ({"reference_size": 0}, "reference_size"),
        ({"reference_size": 2.5}, "reference_size"),
        ({"alpha": "0.01"}, "alpha"),
        ({"tolerance": None}, "tolerance"),
        ({"baseline": "0.1"}, "baseline"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PerformanceDrop(**kwargs)
