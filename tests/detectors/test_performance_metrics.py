"""Windowed metrics on labelled predictions, cross-checked against river and scipy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import metrics, utils
from scipy import stats

from detectors.drift._window import mean
from detectors.performance._window import auc_of, mid_ranks, ranked_counts
from detectors.performance.calibrated import _confusion_metrics, measured_metrics
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.drop import PerformanceDrop
from detectors.performance.ranking import PrecisionAtK
from detectors.performance.regression import RegressionPerformance


def _scored(rng: np.random.Generator, n: int, flip_after: int | None = None) -> list[Any]:
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.3 + np.where(y == 1, 0.3, -0.1) + rng.normal(0, 0.2, n), 0, 1)
    p = np.round(p, 2)  # ties, which AUC must count half
    if flip_after is not None:
        p[flip_after:] = 1 - p[flip_after:]
    return list(zip(y.tolist(), p.tolist(), strict=True))


def test_classification_metrics_match_river_and_scipy_on_the_window() -> None:
    rng = np.random.default_rng(30)
    pairs = _scored(rng, 2500)
    window = 700
    detector = ClassificationPerformance(window=window)
    accuracy: Any = utils.Rolling(metrics.Accuracy, window_size=window)
    log_loss: Any = utils.Rolling(metrics.LogLoss, window_size=window)
    for y, p in pairs:
        detector.update((y, p))
        accuracy.update(bool(y), p >= 0.5)
        log_loss.update(bool(y), {True: p, False: 1 - p})
    y_last = np.array([y for y, _ in pairs[-window:]])
    p_last = np.array([p for _, p in pairs[-window:]])
    u = stats.mannwhitneyu(p_last[y_last == 1], p_last[y_last == 0]).statistic
    assert detector.accuracy == pytest.approx(accuracy.get(), abs=1e-12)
    assert detector.log_loss == pytest.approx(log_loss.get(), rel=1e-9)
    assert detector.auc == pytest.approx(u / (y_last.sum() * (window - y_last.sum())), abs=1e-12)
    assert detector.n_labels == 2500


def test_classification_metrics_before_and_with_one_class() -> None:
    detector = ClassificationPerformance()
    assert math.isnan(detector.accuracy) and math.isnan(detector.log_loss)
    for _ in range(5):
        detector.update((True, 0.9))
    assert detector.accuracy == 1.0
    assert math.isnan(detector.auc)
    detector.update((0, 0.0))  # p = 0 is clipped, not log(0)
    assert math.isfinite(detector.log_loss)


def test_classification_drop_alarm_pinned_when_the_model_turns_wrong() -> None:
    rng = np.random.default_rng(31)
    pairs = _scored(rng, 6000, flip_after=4000)
    detector = ClassificationPerformance(window=500, drop=PerformanceDrop(alpha=1e-4))
    alarms = []
    for i, pair in enumerate(pairs):
        detector.update(pair)
        if detector.drift_detected:
            alarms.append(i)
    assert alarms[:3] == [4012, 4025, 4037]
    assert detector.accuracy < 0.2


def test_classification_is_silent_on_a_stationary_stream() -> None:
    rng = np.random.default_rng(32)
    detector = ClassificationPerformance(drop=PerformanceDrop(alpha=1e-4))
    for pair in _scored(rng, 40_000):
        detector.update(pair)
        assert not detector.drift_detected


def test_precision_at_k_exact_values_and_short_lists() -> None:
    metric = PrecisionAtK(k=4, window=3)
    metric.update((["a", "b", "c", "d", "e"], {"a", "d", "e"}))  # 2 of the first 4
    assert metric.precision_at_k == 0.5
    metric.update((["x"], ["x"]))  # 1 hit, 3 empty slots
    assert metric.precision_at_k == pytest.approx((0.5 + 0.25) / 2)
    metric.update(((1, 2, 3, 4), frozenset({1, 2, 3, 4})))
    metric.update(([9, 8, 7, 6], set()))  # pushes the first out of the window of 3
    assert metric.precision_at_k == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    metric.update(([[1], [2]], {1}))  # unhashable ids
    assert (metric.n_labels, metric.n_ignored) == (4, 1)


def test_precision_at_k_drop_pinned() -> None:
    rng = np.random.default_rng(33)
    metric = PrecisionAtK(k=5, drop=PerformanceDrop(alpha=1e-4))
    alarms = []
    for i in range(5000):
        relevance = 0.4 if i < 3000 else 0.25
        ranked = [int(v) for v in rng.choice(1000, size=10, replace=False)]
        metric.update((ranked, {v for v in ranked if rng.random() < relevance}))
        if metric.drift_detected:
            alarms.append(i)
    assert alarms[:2] == [3160, 3324]


def test_regression_matches_river_mae_on_the_window() -> None:
    rng = np.random.default_rng(34)
    window = 400
    detector = RegressionPerformance(error_cap=5.0, window=window)
    mae: Any = utils.Rolling(metrics.MAE, window_size=window)
    errors = []
    for _ in range(1000):
        y = float(rng.normal(20, 5))
        y_pred = y + float(rng.standard_t(3))
        detector.update((y, y_pred))
        mae.update(y, y_pred)
        errors.append(y_pred - y)
    assert detector.mae == pytest.approx(mae.get(), rel=1e-9)
    assert detector.bias == pytest.approx(np.mean(errors[-window:]), rel=1e-9)


def test_regression_drop_pinned_and_huge_values_ignored() -> None:
    rng = np.random.default_rng(35)
    detector = RegressionPerformance(error_cap=5.0, drop=PerformanceDrop(alpha=1e-4))
    detector.update((1e308, -1e308))  # the error overflows to -inf
    assert detector.n_ignored == 1
    alarms = []
    for i in range(4000):
        noise = 1.0 if i < 2500 else 2.0
        detector.update((0.0, float(rng.normal(0, noise))))
        if detector.drift_detected:
            alarms.append(i)
    assert alarms[:2] == [2532, 2564]


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: ClassificationPerformance(window=1), "window"),
        (lambda: ClassificationPerformance(threshold=1.0), "threshold"),
        (lambda: PrecisionAtK(k=0), "k"),
        (lambda: PrecisionAtK(window=0), "window"),
        (lambda: RegressionPerformance(error_cap=0.0), "error_cap"),
        (lambda: RegressionPerformance(error_cap=math.inf), "error_cap"),
        (lambda: ClassificationPerformance(threshold="0.5"), "threshold"),  # type: ignore[arg-type]
    ],
)
def test_constructors_name_the_invalid_argument(factory: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


def _auc_of_all_ranks(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC from every score's mid-rank, summed as floats."""
    positive = labels == 1
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    rank_sum = float(np.sum(mid_ranks(scores)[positive]))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def _cells(scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    predicted, positive = scores >= threshold, labels == 1
    cells = [predicted & positive, predicted & ~positive, ~predicted & positive]
    return np.array([float(np.sum(c)) for c in [*cells, ~predicted & ~positive]])


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, 2.0, -1.0, math.nan]),
            st.one_of(st.sampled_from([0.0, 0.5, 1.0, math.nan]), st.floats(0, 1)),
        ),
        max_size=300,
    ),
    threshold=st.sampled_from([0.0, 0.5, 0.7]),
)
def test_auc_and_measured_metrics_are_those_of_every_rank_and_cell(
    pairs: list[tuple[float, float]], threshold: float
) -> None:
    labels = np.array([y for y, _ in pairs], np.float64)
    scores = np.array([p for _, p in pairs], np.float64)
    expected = _auc_of_all_ranks(labels, scores)
    found = auc_of(len(labels), *ranked_counts(labels, scores, 0.0)[2:])
    assert found == expected or (math.isnan(found) and math.isnan(expected))
    tp, fp, fn, tn = _cells(scores, labels, threshold)
    metrics = measured_metrics(scores, labels, threshold)
    assert np.array_equal(metrics, _confusion_metrics(tp, fp, fn, tn, expected), equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3000),
    st.sampled_from(["float", "column", "bool", "integral"]),
    st.integers(0, 2**16),
)
def test_mean_is_numpy_s_to_the_bit(n: int, kind: str, seed: int) -> None:
    """``mean`` stands for ``np.mean`` in the metrics the reports read: the same float
    for a window's column (a strided view), a contiguous array, booleans and 0/1 floats."""
    rng = np.random.default_rng(seed)
    rows = rng.random((n, 2)) * rng.choice([1e-9, 1.0, 1e9], (n, 2))
    values = {
        "float": rows[:, 0].copy(),
        "column": rows[:, 1],
        "bool": rows[:, 0] < 0.5,
        "integral": (rows[:, 1] < 0.5).astype(np.float64),
    }[kind]
    assert mean(values) == float(np.mean(values))


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 1), st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1))),
        min_size=1,
        max_size=60,
    ),
    window=st.integers(2, 40),
    threshold=st.sampled_from([0.3, 0.5]),
)
def test_classification_metrics_are_the_window_s_own(
    pairs: list[tuple[int, float]], window: int, threshold: float
) -> None:
    """``accuracy`` and ``auc`` from one compiled pass are the numpy formulas' floats on
    the window, bit for bit; ``metrics`` names the three properties."""
    detector = ClassificationPerformance(window=window, threshold=threshold)
    for pair in pairs:
        detector.update(pair)
    y = np.array([y for y, _ in pairs[-window:]], np.float64)
    p = np.array([p for _, p in pairs[-window:]], np.float64)
    assert detector.accuracy == mean((p >= threshold) == (y == 1))
    auc, expected = detector.auc, _auc_of_all_ranks(y, p)
    assert auc == expected or (math.isnan(auc) and math.isnan(expected))
    names = tuple(name for name, _ in detector.metrics)
    assert names == ("accuracy", "log_loss", "auc")
    assert np.array_equal(
        [value for _, value in detector.metrics],
        [detector.accuracy, detector.log_loss, detector.auc],
        equal_nan=True,
    )
