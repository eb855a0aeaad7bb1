"""Batch updates of the label join's performance detectors: any split of a stream into
batches gives what ``update`` gives one by one (``tests/detectors/batching.py``): the same
alarms at the same indices, with what each read there, and the same state after."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.performance._inputs import label_pairs
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.delay import LabelDelay
from detectors.performance.drop import PerformanceDrop
from detectors.performance.estimate import EstimatedAccuracy
from detectors.performance.ranking import PrecisionAtK
from detectors.performance.regression import RegressionPerformance
from tests.detectors.batching import Event, cuts, detection_event, detections
from tests.detectors.cases_performance import BAD_PAIRS
from tests.detectors.test_batch_updates import assert_same_batched

PROPERTY = settings(max_examples=150, deadline=None)
BAD_LOSSES = [math.nan, None, math.inf, -math.inf, -0.25, 1.5, "0.5", 1 + 0j]


@st.composite
def runs(draw: st.DrawFn, item: Callable[[np.random.Generator, float], Any], bad: Any) -> list[Any]:
    """Runs of items at a low and a high error rate, with bad inputs among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 5))):
        rate = draw(st.sampled_from([0.1, 0.8]))
        values.extend(item(rng, rate) for _ in range(draw(st.integers(1, 60))))
    for _ in range(draw(st.integers(0, 10))):
        values.insert(draw(st.integers(0, len(values))), draw(st.sampled_from(bad)))
    return values


def loss(rng: np.random.Generator, rate: float) -> Any:
    kind = rng.integers(4)
    error = bool(rng.random() < rate)
    return [float(error), int(error), error, float(rng.random() * rate * 1.2)][kind]


@PROPERTY
@given(st.sampled_from([None, 0.1, 0.99]), st.integers(1, 30), st.data())
def test_performance_drop_batched_as_one_by_one(
    baseline: float | None, reference_size: int, data: st.DataObject
) -> None:
    values = data.draw(runs(loss, BAD_LOSSES))
    at = data.draw(cuts(len(values)))
    assert_same_batched(
        lambda: PerformanceDrop(
            alpha=0.05, tolerance=0.05, baseline=baseline, reference_size=reference_size
        ),
        values,
        at,
        detection_event,
        detections,
    )


@PROPERTY
@given(st.data())
def test_performance_drop_takes_float_arrays(data: st.DataObject) -> None:
    values = data.draw(runs(loss, [math.nan, math.inf, -1.0, 2.0]))
    array = np.array([float(x) for x in values])
    assert_same_batched(
        lambda: PerformanceDrop(alpha=0.05, tolerance=0.05, reference_size=7),
        array,
        data.draw(cuts(len(values))),
        detection_event,
        detections,
    )


def alarm_event(detector: Any) -> Event | None:
    """The one-by-one counterpart of ``alarm_events``: what an alarm read, if one fired."""
    return tuple(detector.alarms[0][1:]) if detector.alarms else None


def alarm_events(detector: Any) -> list[tuple[int, Event]]:
    return [(position, tuple(rest)) for position, *rest in detector.alarms]


def classified(rng: np.random.Generator, rate: float) -> Any:
    p = float(rng.random())
    right = rng.random() >= rate
    return (int((p >= 0.5) == right), p)


def regressed(rng: np.random.Generator, rate: float) -> Any:
    return (float(rng.normal()), float(rng.normal(0.0, 4.0 * rate)))


def ranked(rng: np.random.Generator, rate: float) -> Any:
    items = [int(i) for i in rng.permutation(8)[:4]]
    return (items, {i for i in items if rng.random() >= rate})


METRICS: dict[str, tuple[Callable[[PerformanceDrop], Any], Any]] = {
    "classification": (lambda drop: ClassificationPerformance(3, 0.5, drop), classified),
    "regression": (lambda drop: RegressionPerformance(1.0, 3, drop), regressed),
    "ranking": (lambda drop: PrecisionAtK(2, 3, drop), ranked),
}


@PROPERTY
@given(st.sampled_from(sorted(METRICS)), st.data())
def test_labelled_metrics_batched_as_one_by_one(name: str, data: st.DataObject) -> None:
    make, item = METRICS[name]
    values = data.draw(runs(item, [*BAD_PAIRS, ([1, [2]], {1}), (None, {1})]))
    drop = PerformanceDrop(alpha=0.05, tolerance=0.05, reference_size=5)
    assert_same_batched(
        lambda: make(drop), values, data.draw(cuts(len(values))), alarm_event, alarm_events
    )


# Pairs of an int and a float (the label join's, which the columns' path takes) that the
# detectors ignore or that sit on an edge: a label of no class, an int beyond 64 bits, a
# probability outside [0, 1] or NaN, and 0, 1, 0.5 and -0.0.
BINARY_ODD = [(2, 0.7), (-1, 0.2), (2**70, 0.5), (1, 1.5), (0, -0.5), (1, math.nan)]
BINARY_EDGES = [(0, 0.5), (1, 0.5), (1, 0.0), (0, -0.0), (1, 1.0), (0, 1.0)]


@PROPERTY
@given(st.data())
def test_classification_of_int_and_float_pairs_batched_as_one_by_one(
    data: st.DataObject,
) -> None:
    """Only pairs of an int and a float, odd ones among them; or one pair of another shape
    (a bool, an int probability, a list, no label: what the estimate's columns take),
    which sends its batches the general way."""
    values = data.draw(runs(classified, [*BINARY_ODD, *BINARY_EDGES]))
    other = data.draw(
        st.sampled_from([None, (True, 0.5), (0, 1), [0, 0.5], (1.0, 0.5), (None, 0.5)])
    )
    if other is not None:
        values.insert(data.draw(st.integers(0, len(values))), other)
    drop = PerformanceDrop(alpha=0.05, tolerance=0.05, reference_size=5)
    assert_same_batched(
        lambda: ClassificationPerformance(3, 0.5, drop),
        values,
        data.draw(cuts(len(values))),
        alarm_event,
        alarm_events,
    )


def predicted_or_labelled(rng: np.random.Generator, rate: float) -> Any:
    """A new prediction, or a label that is wrong at ``rate``, of a binary or 3-class model."""
    if rng.random() < 0.5:
        p: Any = float(rng.uniform(0.5 - rate / 2, 0.5 + rate / 2))
        predicted = int(p >= 0.5)
    else:
        p = rng.dirichlet([1.0, 1.0, 1.0]).tolist()
        predicted = int(np.argmax(p))
    if rng.random() < 0.5:
        return (None, p)
    return (predicted if rng.random() >= rate else predicted - 1, p)


@PROPERTY
@given(st.data())
def test_estimated_accuracy_batched_as_one_by_one(data: st.DataObject) -> None:
    values = data.draw(runs(predicted_or_labelled, [*BAD_PAIRS, (0, [0.5, 0.6])]))
    estimate_batched(values, data)


def estimate_batched(values: list[Any], data: st.DataObject) -> None:
    assert_same_batched(
        lambda: EstimatedAccuracy(
            window=4, min_labels=2, alpha=0.1, tolerance=0.05, reference_size=5
        ),
        values,
        data.draw(cuts(len(values))),
        alarm_event,
        alarm_events,
    )


def binary(rng: np.random.Generator, rate: float) -> Any:
    """A binary classifier's new prediction or label, as the label join feeds them."""
    p = float(rng.uniform(0.5 - rate / 2, 0.5 + rate / 2))
    if rng.random() < 0.5:
        return (None, p)
    return (int((p >= 0.5) == (rng.random() >= rate)), p)


@PROPERTY
@given(st.data())
def test_estimated_accuracy_of_binary_pairs_batched_as_one_by_one(data: st.DataObject) -> None:
    """Pairs of None or an int and a float only (the columns' path), bad ones of that
    shape among them: probabilities outside [0, 1] or NaN, labels of no class, an int
    beyond 64 bits; and one of another shape sends the batch the general way."""
    odd = [*BINARY_ODD, *BINARY_EDGES, (None, -0.5), (None, math.nan), (None, 0.5), (None, 1.0)]
    values = data.draw(runs(binary, odd))
    other = data.draw(
        st.sampled_from([None, (True, 0.5), (0, 1), (0, [0.5, 0.5]), [0, 0.5], (1,), (0, 0.5, 1)])
    )
    if other is not None:
        values.insert(data.draw(st.integers(0, len(values))), other)
    estimate_batched(values, data)


def test_label_pairs_reads_only_pairs_as_columns() -> None:
    """Tuples of two as columns; tuples all of another length, or of mixed lengths, are
    not pairs (the unpacking and ``strict`` reject them), nor is an int beyond 64 bits."""
    labels, labelled, scores = label_pairs([(1, 0.25), (None, 0.5), (0, 0.75)]) or ((), (), ())
    assert (list(labels), list(labelled), list(scores)) == (
        [1, 0, 0],
        [True, False, True],
        [0.25, 0.5, 0.75],
    )
    assert label_pairs([(1, 0.25, 0.5), (0, 0.5, 0.5)]) is None
    assert label_pairs([(1,), (0,)]) is None
    assert label_pairs([(1, 0.25), (0, 0.5, 0.5)]) is None
    assert label_pairs([(2**64, 0.25), (0, 0.5)]) is None
    # Without a prediction, or without a label, each column converts at once.
    assert label_pairs([(2**64, 0.25), (3, 0.5)]) is None
    labels, labelled, scores = label_pairs([(3, 0.25), (-1, 0.5)]) or ((), (), ())
    assert (list(labels), list(labelled), list(scores)) == ([3, -1], [True, True], [0.25, 0.5])
    labels, labelled, scores = label_pairs([(None, 0.25), (None, 0.5)]) or ((), (), ())
    assert (list(labels), list(labelled), list(scores)) == ([0, 0], [False, False], [0.25, 0.5])


def delay(rng: np.random.Generator, rate: float) -> Any:
    return float(rng.lognormal(math.log(60.0), 3.0 * rate)) - (rng.random() < rate / 10)


@PROPERTY
@given(st.integers(1, 9), st.data())
def test_label_delay_batched_as_one_by_one(window: int, data: st.DataObject) -> None:
    values = data.draw(runs(delay, [*BAD_LOSSES, 0.0, 1e-4, 1e12, -5.0, True]))
    assert_same_batched(
        lambda: LabelDelay(window=window),
        values,
        data.draw(cuts(len(values))),
        lambda _: None,
        lambda _: [],
    )


def test_a_batch_reports_every_alarm_with_what_it_read() -> None:
    """Not only the last: each alarm inside one batch (past ``SMALL_BATCH``) reads its own
    accuracy and label count, as one by one."""
    values = [(1, 0.9)] * 20 + [(0, 0.9)] * 3
    drop = PerformanceDrop(alpha=0.3, tolerance=0.05, reference_size=5)
    one = ClassificationPerformance(4, 0.5, drop)
    expected = []
    for i, x in enumerate(values):
        one.update(x)
        expected.extend((i, *alarm[1:]) for alarm in one.alarms)
    batched = ClassificationPerformance(4, 0.5, drop)
    batched.update_many(values)
    assert expected == [(20, 21, 0.75), (21, 22, 0.5), (22, 23, 0.25)]
    assert batched.alarms == expected
