"""What a full garbage collection keeps walking of a detector's state.

Every feature's test of every model is one object; a collection visits each attribute of
one whose attributes are inline (built by its constructor) or held in a dict the collector
tracks. An attribute dict of numbers, arrays and tuples of them stops being tracked at the
first full collection, and the detector then costs two visits (its dict and its type).
"""

from __future__ import annotations

import gc
import pickle
from typing import Any

import numpy as np
import pytest

from detectors import (
    KSDrift,
    NullRateDrift,
    PerformanceDrop,
    PSIDrift,
    ResidualCUSUM,
)


def _walked(detector: Any) -> list[Any]:
    """What a full collection visits from the detector itself, after one collection.

    (A categorical test's counts are dicts, which keep its attribute dict tracked.)"""
    gc.collect()
    return [r for r in gc.get_referents(detector) if not isinstance(r, type)]


def _windowed() -> list[tuple[Any, list[Any]]]:
    rng = np.random.default_rng(7)
    reference = rng.normal(0.0, 1.0, 200)
    numbers = [float(x) for x in rng.normal(0.5, 1.0, 120)]
    return [
        (PSIDrift(reference, window_size=40), numbers),
        (KSDrift(reference, window_size=40), numbers),
        (NullRateDrift(window_size=40), numbers),
    ]


@pytest.mark.parametrize("small", [False, True])
def test_a_windowed_test_with_events_is_untracked_after_one_collection(small: bool) -> None:
    for detector, values in _windowed():
        if small:
            # Batches of a few values go through update() one by one (``_update_each``).
            for start in range(0, len(values), 5):
                detector.update_many(values[start : start + 5])
        else:
            detector.update_many(values)
        assert len(detector.window_ends), type(detector).__name__
        for held in (detector, pickle.loads(pickle.dumps(detector))):
            walked = _walked(held)
            # Its attributes in one dict, which the collector no longer tracks.
            assert [type(r) for r in walked] == [dict], type(held).__name__
            assert not gc.is_tracked(walked[0]), type(held).__name__


def test_a_detector_built_by_its_constructor_keeps_its_attributes_in_a_dict() -> None:
    built = [detector for detector, _ in _windowed()] + [PerformanceDrop()]
    for detector in built:
        walked = _walked(detector)
        assert [type(r) for r in walked] == [dict], type(detector).__name__
        assert not gc.is_tracked(walked[0]), type(detector).__name__


def test_residual_cusum_keeps_its_sums_in_tuples() -> None:
    detector = ResidualCUSUM()
    detector.update_many(np.random.default_rng(3).normal(0.0, 1.0, 3000))
    gc.collect()
    assert not [
        name
        for name, value in vars(detector).items()
        if gc.is_tracked(value) and name != "_model" and not isinstance(value, tuple)
    ]
