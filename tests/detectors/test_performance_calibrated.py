"""The calibrated estimate: isotonic calibration, expected metrics, alarms, batches."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.performance.calibrated import (
    CalibratedEstimate,
    expected_metrics,
    isotonic_fit,
    measured_metrics,
)
from tests.detectors.batching import (
    cuts,
    detection_event,
    detections,
    events_batched,
    events_one_by_one,
    state_difference,
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _traffic(
    rng: np.random.Generator, n: int, confidence: float = 0.5, spread: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(y = 1), the model's score (``confidence`` < 1: under-confident) and labels;
    a smaller ``spread`` of the true logit puts more inputs where the model is unsure."""
    z = rng.normal(-1.0, spread, n)
    truth = _sigmoid(z)
    return truth, _sigmoid(confidence * z), (rng.random(n) < truth).astype(int)


def _isotonic_by_definition(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fit at each distinct x: max over lower ends of min over upper ends of block means."""
    distinct = np.unique(x)
    sums = np.array([y[x == v].sum() for v in distinct])
    counts = np.array([np.sum(x == v) for v in distinct])
    n = len(distinct)
    return np.array(
        [
            max(
                min(sums[lo : hi + 1].sum() / counts[lo : hi + 1].sum() for hi in range(i, n))
                for lo in range(i + 1)
            )
            for i in range(n)
        ]
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 1)), min_size=1, max_size=40),
)
def test_isotonic_fit_is_the_min_max_formula(pairs: list[tuple[int, int]]) -> None:
    x = np.array([p[0] / 12 for p in pairs])
    y = np.array([float(p[1]) for p in pairs])
    distinct, fitted = isotonic_fit(x, y)
    assert distinct.tolist() == np.unique(x).tolist()
    np.testing.assert_allclose(fitted, _isotonic_by_definition(x, y), rtol=1e-12)


def test_expected_metrics_are_the_mean_of_measured_ones_over_label_draws() -> None:
    rng = np.random.default_rng(60)
    truth, scores, _ = _traffic(rng, 2000)
    expected = expected_metrics(scores, truth, 0.5)
    draws = np.array(
        [measured_metrics(scores, (rng.random(2000) < truth).astype(int), 0.5) for _ in range(400)]
    )
    # Accuracy and the confusion counts are exact expectations; ratios differ by O(1 / n).
    np.testing.assert_allclose(expected, draws.mean(axis=0), atol=0.002)
    assert np.round(expected, 4).tolist() == [0.7936, 0.7323, 0.657, 0.6926, 0.8631]


def test_under_confident_scores_are_estimated_from_their_calibration() -> None:
    rng = np.random.default_rng(61)
    truth, scores, labels = _traffic(rng, 25_000)
    estimate = CalibratedEstimate(chunk_size=5000, calibration_size=20_000)
    estimate.update_many(scores[:20_000], labels[:20_000])
    estimate.update_many(scores[20_000:])
    oracle = expected_metrics(scores[20_000:], truth[20_000:], 0.5)
    estimated = [
        estimate.estimated_accuracy,
        estimate.estimated_precision,
        estimate.estimated_recall,
        estimate.estimated_f1,
        estimate.estimated_auc,
    ]
    assert np.round(estimated, 4).tolist() == [0.798, 0.7397, 0.6409, 0.6868, 0.8654]
    np.testing.assert_allclose(estimated, oracle, atol=0.01)
    # Measured: the last 5,000 labels, which are the reference's, not the new chunk's.
    assert round(estimate.measured_accuracy, 4) == 0.801
    estimate.update_many(scores[20_000:], labels[20_000:])
    measured = [
        estimate.measured_accuracy,
        estimate.measured_precision,
        estimate.measured_recall,
        estimate.measured_f1,
        estimate.measured_auc,
    ]
    assert np.round(measured, 4).tolist() == [0.7922, 0.7208, 0.6347, 0.675, 0.8571]
    # The estimate stays the chunk's: labels do not replace it.
    assert estimate.estimated_accuracy == estimated[0]


def test_the_threshold_is_the_models_own() -> None:
    rng = np.random.default_rng(62)
    _, scores, labels = _traffic(rng, 12_000)
    at = {}
    for threshold in (0.3, 0.5):
        estimate = CalibratedEstimate(threshold=threshold, chunk_size=2000)
        estimate.update_many(scores[:10_000], labels[:10_000])
        estimate.update_many(scores[10_000:])
        at[threshold] = (round(estimate.estimated_accuracy, 4), round(estimate.estimated_auc, 4))
    assert at == {0.3: (0.6708, 0.8627), 0.5: (0.7967, 0.8629)}


def test_nothing_is_estimated_before_min_labels_or_measured_before_labels() -> None:
    rng = np.random.default_rng(63)
    _, scores, labels = _traffic(rng, 3000)
    estimate = CalibratedEstimate(chunk_size=1000, min_labels=500)
    assert math.isnan(estimate.measured_accuracy)
    estimate.update_many(scores[:499], labels[:499])
    estimate.update_many(scores[:1000])
    assert (estimate.n_chunks, math.isnan(estimate.estimated_accuracy)) == (1, True)
    assert math.isnan(estimate.reference_accuracy)
    estimate.update_many(scores[499:500], labels[499:500])
    estimate.update_many(scores[1000:2000])
    assert (estimate.n_chunks, round(estimate.estimated_accuracy, 4)) == (2, 0.7933)
    assert (estimate.n_predictions, estimate.n_labels) == (2000, 500)


def test_silent_on_a_stationary_model() -> None:
    rng = np.random.default_rng(64)
    estimate = CalibratedEstimate(chunk_size=1000)
    found = []
    for _ in range(100):
        _, scores, labels = _traffic(rng, 1000)
        estimate.update_many(scores)
        found.extend(estimate.detections.tolist())
        estimate.update_many(scores, labels)
    assert (found, estimate.n_chunks) == ([], 100)


def test_alarms_before_labels_when_inputs_move_where_the_model_is_unsure() -> None:
    rng = np.random.default_rng(65)
    estimate = CalibratedEstimate(chunk_size=1000)
    _, scores, labels = _traffic(rng, 20_000)
    estimate.update_many(scores, labels)
    alarms: list[tuple[int, int]] = []
    for chunk, spread in enumerate([2.0, 2.0, 1.6, 1.2, 0.8]):
        _, scores, _ = _traffic(rng, 1000, spread=spread)
        estimate.update_many(scores)  # no labels for these yet
        alarms.extend((chunk, int(i)) for i in estimate.detections)
    assert alarms == [(3, 999), (4, 999)]
    assert round(estimate.estimated_accuracy, 4) == 0.7378
    assert round(estimate.reference_accuracy, 4) == 0.799


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
        ({"chunk_size": 1}, "chunk_size"),
        ({"calibration_size": 1}, "calibration_size"),
        ({"min_labels": 0}, "min_labels"),
        ({"calibration_size": 100, "min_labels": 101}, "min_labels"),
        ({"tolerance": 1.0}, "tolerance"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CalibratedEstimate(**kwargs)


@pytest.mark.parametrize(
    "record",
    [(None, 1.5), (None, "0.5"), (2, 0.5), (float("nan"), 0.5), (1, None), (None, [0.2, 0.8])],
)
def test_malformed_records_are_ignored(record: Any) -> None:
    estimate = CalibratedEstimate()
    estimate.update(record)
    assert (estimate.n_ignored, estimate.n_predictions, estimate.n_labels) == (1, 0, 0)


def test_labels_must_match_their_scores() -> None:
    with pytest.raises(ValueError, match="labels"):
        CalibratedEstimate().update_many([0.5, 0.6], [1])
    scores = [0.5] * 20
    for labels in ([None] * 19, [None] * 21, [None] * 20 + [1]):
        with pytest.raises(ValueError, match="labels"):
            CalibratedEstimate().update_many(scores, labels)


def _mixed_stream(seed: int, n: int, concept_change: bool = False) -> list[tuple[Any, Any]]:
    """Predictions, labels and bad records, interleaved; half-way, inputs move to where the
    model is unsure, or (``concept_change``) its labels flip for the same scores."""
    rng = np.random.default_rng(seed)
    _, before, y_before = _traffic(rng, n // 2)
    if concept_change:
        _, after, flipped = _traffic(rng, n - n // 2)
        y_after = 1 - flipped
    else:
        _, after, y_after = _traffic(rng, n - n // 2, spread=0.8)
    scores, labels = np.concatenate([before, after]), np.concatenate([y_before, y_after])
    kind = rng.random(n)
    records: list[tuple[Any, Any]] = []
    for i in range(n):
        if kind[i] < 0.02:
            records.append((2, float(scores[i])))  # not a binary label
        elif kind[i] < 0.04:
            records.append((None, 1.5))  # not a probability
        elif kind[i] < 0.5:
            records.append((int(labels[i]), float(scores[i])))
        else:
            records.append((None, float(scores[i])))
    return records


def _as_batch(detector: CalibratedEstimate, records: Any) -> None:
    detector.update_many(
        [score for _, score in records],
        [math.nan if label is None else label for label, _ in records],
    )


STREAM = _mixed_stream(66, 1500)
CONCEPT_CHANGE = _mixed_stream(66, 1500, concept_change=True)


def _clear_events(*estimates: CalibratedEstimate) -> None:
    """An empty batch: ``detections`` index the last batch, which differs by construction."""
    for estimate in estimates:
        estimate.update_many([])


def _make() -> CalibratedEstimate:
    return CalibratedEstimate(chunk_size=100, calibration_size=300, min_labels=50, tolerance=0.01)


def test_the_mixed_streams_alarm_and_restart_one_by_one() -> None:
    one_by_one = events_one_by_one(estimate := _make(), STREAM, detection_event)
    assert ([i for i, _ in one_by_one], estimate.n_restarts) == ([959, 1154], 0)
    events_one_by_one(estimate := _make(), CONCEPT_CHANGE, detection_event)
    assert estimate.n_restarts == 2


@settings(max_examples=60, deadline=None)
@given(cuts(len(STREAM)), st.sampled_from([STREAM, CONCEPT_CHANGE]))
def test_update_many_is_update_one_by_one(at: list[int], stream: list[Any]) -> None:
    one, batched = _make(), _make()
    expected = events_one_by_one(one, stream, detection_event)
    found = events_batched(batched, stream, at, detections, _as_batch)
    assert found == expected
    _clear_events(one, batched)
    assert state_difference(one, batched) is None


def test_predictions_only_batches_equal_one_by_one() -> None:
    rng = np.random.default_rng(67)
    _, scores, labels = _traffic(rng, 3000)
    one, batched = _make(), _make()
    for s, y in zip(scores[:1000].tolist(), labels[:1000].tolist(), strict=True):
        one.update((y, s))
    for s in scores[1000:].tolist():
        one.update((None, s))
    batched.update_many(scores[:1000], labels[:1000])
    batched.update_many(scores[1000:1500])
    # Predictions as the label join queues them: a list of None labels.
    batched.update_many(scores[1500:].tolist(), [None] * 1500)
    _clear_events(one, batched)
    assert state_difference(one, batched) is None


def test_pickle_keeps_the_calibration_and_the_open_chunk() -> None:
    rng = np.random.default_rng(68)
    _, scores, labels = _traffic(rng, 3000)
    original = _make()
    original.update_many(scores[:2000], labels[:2000])
    original.update_many(scores[2000:2050])
    restored = pickle.loads(pickle.dumps(original))
    original.update_many(scores[2050:])
    restored.update_many(scores[2050:])
    assert state_difference(original, restored) is None


def test_a_concept_change_shows_in_the_gap_and_restarts_the_calibration() -> None:
    rng = np.random.default_rng(69)
    estimate = CalibratedEstimate(chunk_size=1000, calibration_size=10_000)
    gaps, estimated, restarts = [], [], []
    for chunk in range(14):
        truth, scores, labels = _traffic(rng, 1000)
        if chunk >= 10:  # same scores, noisier labels: P(y | score) changed
            labels = (rng.random(1000) < _sigmoid(np.log(truth / (1 - truth)) / 3)).astype(int)
        estimate.update_many(scores)
        gaps.append(round(estimate.calibration_gap, 3))
        estimated.append(round(estimate.estimated_accuracy, 3))
        restarts.append(estimate.n_restarts)
        estimate.update_many(scores, labels)
    assert math.isnan(gaps[0])  # fewer than min_labels labels
    assert max(abs(g) for g in gaps[1:11]) < 0.02
    assert restarts[10:] == [0, 1, 1, 1]  # silent while stationary
    # Chunk 10 is estimated from the old labels only; its labels then show the change,
    # the calibration restarts from them, and the next chunks are estimated anew.
    assert gaps[10:] == [0.002, -0.129, -0.009, 0.005]
    assert estimated[10:] == [0.785, 0.66, 0.637, 0.639]
    assert round(estimate.measured_accuracy, 3) == 0.637


def test_only_the_bins_labels_reached_pickle() -> None:
    rng = np.random.default_rng(69)
    _, scores, labels = _traffic(rng, 400)
    fresh = CalibratedEstimate()
    assert len(pickle.dumps(fresh)) < 10_000  # the counts' 11.5 KB are still zeros
    original = _make()  # calibration_size 300: full after the second batch
    for start in (0, 200):
        original.update_many(scores[start : start + 200], labels[start : start + 200])
        restored = pickle.loads(pickle.dumps(original))
        assert state_difference(original, restored) is None
