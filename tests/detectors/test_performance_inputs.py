"""The performance detectors read their common inputs (a tuple of a plain int label and a
plain float score) on a short path of their own: it must read them exactly as the general
path reads the same values in another form (a list, subclasses of int and float)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.performance.calibrated import CalibratedEstimate
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.drop import PerformanceDrop
from detectors.performance.estimate import EstimatedAccuracy

PROPERTY = settings(max_examples=100, deadline=None)


class _Int(int):
    """An int the short paths leave to the general one."""


class _Float(float):
    """A float the short paths leave to the general one."""


LABELS = st.one_of(
    st.integers(-3, 4),
    st.sampled_from([2**70, -(2**70), True, False, 0.0, 1.0, 0.5, math.nan, math.inf, None]),
)
SCORES = st.one_of(
    st.floats(-0.5, 1.5), st.sampled_from([0.0, 0.5, 1.0, math.nan, math.inf, -math.inf])
)


def _general(value: Any) -> Any:
    """The same value in a type no short path takes."""
    if type(value) is int:
        return _Int(value)
    if type(value) is float:
        return _Float(value)
    return value


def _fed(make: Any, pairs: list[tuple[Any, Any]]) -> bytes:
    detector = make()
    detector.update_many(pairs)
    for pair in pairs:
        detector.update(pair)
    return pickle.dumps(detector)


@PROPERTY
@given(st.lists(st.tuples(LABELS, SCORES), max_size=40))
def test_a_classification_pair_reads_as_its_general_form(pairs: list[tuple[Any, Any]]) -> None:
    def make() -> ClassificationPerformance:
        return ClassificationPerformance(5, 0.5, PerformanceDrop(alpha=0.1, reference_size=3))

    general = [[_general(y), _general(p)] for y, p in pairs]
    assert _fed(make, pairs) == _fed(make, general)  # type: ignore[arg-type]


@PROPERTY
@given(st.lists(st.tuples(st.one_of(st.none(), LABELS), SCORES), max_size=40))
def test_an_estimate_pair_reads_as_its_general_form(pairs: list[tuple[Any, Any]]) -> None:
    def make() -> EstimatedAccuracy:
        return EstimatedAccuracy(window=5, min_labels=2, alpha=0.1, reference_size=3)

    general = [[_general(y), _general(p)] for y, p in pairs]
    assert _fed(make, pairs) == _fed(make, general)  # type: ignore[arg-type]


@PROPERTY
@given(st.lists(st.tuples(st.one_of(st.none(), LABELS), st.floats(0.0, 1.0)), min_size=17))
def test_a_calibrated_label_reads_as_its_general_form(pairs: list[tuple[Any, float]]) -> None:
    def fed(labels: list[Any]) -> bytes:
        detector = CalibratedEstimate(chunk_size=4, calibration_size=8, min_labels=2)
        detector.update_many([p for _, p in pairs], labels)
        return pickle.dumps(detector)

    labels = [y for y, _ in pairs]
    assert fed(labels) == fed([_general(y) for y in labels])


def test_a_fresh_drop_is_its_clone() -> None:
    drop = PerformanceDrop(alpha=0.01, tolerance=0.05, baseline=0.2, reference_size=7)
    drop.update_many(np.array([0.0, 1.0] * 20))
    assert pickle.dumps(drop.fresh()) == pickle.dumps(drop.clone())
