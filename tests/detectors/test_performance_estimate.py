"""The estimate before labels: expectation, calibration checks, handover and both drop alarms."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest

from detectors.performance._window import Window
from detectors.performance.estimate import EstimatedAccuracy


def _model(rng: np.random.Generator, n: int, sharpen: float = 1.0) -> tuple[np.ndarray, ...]:
    """True P(y = 1) and the probability the model reports (sharpened: overconfident)."""
    truth = rng.beta(0.7, 0.7, n)
    logit = np.log(truth / (1 - truth)) * sharpen
    reported = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < truth).astype(int)
    return y, reported


def test_calibrated_estimate_matches_the_accuracy_measured_later() -> None:
    rng = np.random.default_rng(50)
    y, p = _model(rng, 4000)
    estimate = EstimatedAccuracy(window=4000, min_labels=4000)
    for p_i in p:
        estimate.update((None, float(p_i)))
    before = estimate.expected_accuracy
    for y_i, p_i in zip(y, p, strict=True):
        estimate.update((int(y_i), float(p_i)))
    assert estimate.source == "measured"
    assert round(before, 4) == 0.7882
    assert round(estimate.accuracy, 4) == 0.792
    assert abs(estimate.calibration_gap) < 0.01
    assert estimate.calibration_error < 0.03
    assert estimate.calibrated is True


def test_overconfidence_shows_in_the_gap_and_the_calibration_error() -> None:
    rng = np.random.default_rng(51)
    y, p = _model(rng, 3000, sharpen=3.0)
    estimate = EstimatedAccuracy(window=3000, min_labels=500)
    for y_i, p_i in zip(y, p, strict=True):
        estimate.update((int(y_i), float(p_i)))
    assert round(estimate.calibration_gap, 3) == -0.125
    assert round(estimate.calibration_error, 3) == 0.126
    assert estimate.calibrated is False


def test_hands_over_to_the_measured_value_at_min_labels() -> None:
    rng = np.random.default_rng(52)
    y, p = _model(rng, 300)
    estimate = EstimatedAccuracy(window=1000, min_labels=100)
    assert (estimate.source, math.isnan(estimate.accuracy)) == ("estimated", True)
    for p_i in p:
        estimate.update((None, float(p_i)))
    sources = []
    for y_i, p_i in zip(y[:150], p[:150], strict=True):
        estimate.update((int(y_i), float(p_i)))
        sources.append(estimate.source)
    assert sources.index("measured") == 99  # the 100th label
    assert estimate.calibrated is not None
    assert estimate.accuracy == estimate.observed_accuracy
    assert (estimate.n_predictions, estimate.n_labels) == (300, 150)


def _alarms(estimate: EstimatedAccuracy, records: list[Any]) -> list[tuple[int, str | None]]:
    found = []
    for i, record in enumerate(records):
        estimate.update(record)
        if estimate.drift_detected:
            found.append((i, estimate.alarm_source))
    return found


def test_estimated_drop_alarms_before_any_label_when_the_model_grows_unsure() -> None:
    rng = np.random.default_rng(53)
    _, confident = _model(rng, 3000)
    unsure = rng.uniform(0.3, 0.7, 2000)
    records = [(None, float(p)) for p in np.concatenate([confident, unsure])]
    alarms = _alarms(EstimatedAccuracy(alpha=1e-4), records)
    assert alarms[0] == (3042, "estimated")


def test_measured_drop_alarms_when_labels_contradict_a_confident_model() -> None:
    rng = np.random.default_rng(54)
    y, p = _model(rng, 5000)
    y[3000:] = np.where(rng.random(2000) < 0.3, 1 - y[3000:], y[3000:])  # labels shift
    records: list[Any] = []
    for y_i, p_i in zip(y, p, strict=True):
        records += [(None, float(p_i)), (int(y_i), float(p_i))]
    alarms = _alarms(EstimatedAccuracy(alpha=1e-4), records)
    assert alarms[0] == (6369, "measured")


def test_silent_on_a_stationary_calibrated_model() -> None:
    rng = np.random.default_rng(55)
    y, p = _model(rng, 30_000)
    records: list[Any] = []
    for y_i, p_i in zip(y, p, strict=True):
        records += [(None, float(p_i)), (int(y_i), float(p_i))]
    assert _alarms(EstimatedAccuracy(alpha=1e-4), records) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 1}, "window"),
        ({"min_labels": 0}, "min_labels"),
        ({"window": 100, "min_labels": 101}, "min_labels"),
        ({"n_bins": 0}, "n_bins"),
        ({"max_calibration_error": 0.0}, "max_calibration_error"),
        ({"alpha": 1.0}, "alpha"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"reference_size": 0}, "reference_size"),
        ({"max_calibration_error": "0.05"}, "max_calibration_error"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EstimatedAccuracy(**kwargs)


def test_multiclass_probabilities_estimate_and_measure() -> None:
    rng = np.random.default_rng(56)
    logits = rng.normal(0, 2.0, (3000, 4))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in probabilities])
    estimate = EstimatedAccuracy(window=3000, min_labels=3000)
    for row in probabilities:
        estimate.update((None, row.tolist()))
    expected = estimate.expected_accuracy
    for y_i, row in zip(y, probabilities, strict=True):
        estimate.update((int(y_i), tuple(row)))
    assert round(expected, 3) == 0.684
    assert round(estimate.accuracy, 3) == 0.687
    assert estimate.source == "measured"
    assert estimate.calibrated is True


@pytest.mark.parametrize(
    "record",
    [
        (None, [0.5, 0.4]),  # does not sum to 1
        (None, [1.2, -0.2]),
        (None, [1.0]),
        (None, "0.5"),
        (None, np.array(0.7)),  # an array without a length
        (None, np.array([[0.2, 0.8], [0.5, 0.5]])),
        (3, [0.2, 0.3, 0.5]),  # no class 3
        (1.5, [0.2, 0.3, 0.5]),
        (2, 0.7),  # a binary label is 0 or 1
    ],
)
def test_malformed_probabilities_and_labels_are_ignored(record: Any) -> None:
    estimate = EstimatedAccuracy()
    estimate.update(record)
    assert (estimate.n_ignored, estimate.n_predictions, estimate.n_labels) == (1, 0, 0)


def test_a_window_pickles_its_filled_rows_and_loads_a_full_size_checkpoint_too() -> None:
    window = Window(1000, 2)
    window.push(0.25, 1.0)
    assert len(pickle.dumps(window)) < 1000  # not the 16 KB of its zeros
    restored = pickle.loads(pickle.dumps(window))
    restored.push(0.5, 0.0)
    window.push(0.5, 0.0)
    assert vars(restored).keys() == vars(window).keys()
    assert np.array_equal(restored._rows, window._rows) and len(restored) == 2
    older = Window.__new__(Window)  # as a checkpoint holding every row loads it
    older.__setstate__({"_rows": window._rows.copy(), "_next": 2, "_filled": 2})
    assert np.array_equal(older._rows, window._rows) and len(older) == 2


def test_a_window_of_one_column_appends_numbers_and_gives_them_oldest_first() -> None:
    window = Window(3, 1)
    assert (len(window), window.ordered(0).tolist()) == (0, [])
    window.append(1.0)
    window.push(2.0)
    assert (len(window), window.ordered(0).tolist()) == (2, [1.0, 2.0])
    window.append(3.0)
    assert (len(window), window.ordered(0).tolist()) == (3, [1.0, 2.0, 3.0])
    for number in (4.0, 5.0, 6.0, 7.0):
        window.append(number)
    assert (len(window), window.ordered(0).tolist()) == (3, [5.0, 6.0, 7.0])
    # A new array: the window's rows stay as they were.
    window.ordered(0)[:] = 0.0
    assert window.ordered(0).tolist() == [5.0, 6.0, 7.0]
