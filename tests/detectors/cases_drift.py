"""Shared-check cases for the drift detectors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from river import drift

from detectors import (
    BernoulliCUSUM,
    CategoricalPSIDrift,
    ChiSquareDrift,
    JensenShannonDrift,
    KSDrift,
    NullRateDrift,
    PSIDrift,
    ResidualCUSUM,
    RobustCUSUM,
    ScalarStreamDrift,
    WassersteinDrift,
)
from tests.detectors.cases import BAD_SCALARS, DetectorCase

WINDOW = 200
CATEGORIES = ["web", "ios", "android", "tv"]
_REFERENCE = np.random.default_rng(0).normal(0.0, 1.0, 1000).tolist()
_CATEGORY_COUNTS = {"web": 500, "ios": 300, "android": 150, "tv": 50}
# Beyond NaN and None: an int past the float range, and values that pass
# isinstance(x, Hashable) yet raise when hashed.
BAD_INPUTS = (*BAD_SCALARS, 10**400, ("web", ["ios"]), Decimal("sNaN"))


def alarms(detector: Any, stream: Iterable[Any]) -> list[int]:
    """Indices of the updates after which ``detector.drift_detected`` was True."""
    found = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


def normal(rng: np.random.Generator, n: int) -> Sequence[float]:
    return rng.normal(0.0, 1.0, n).tolist()


def shifted(rng: np.random.Generator, n: int) -> Sequence[float]:
    return rng.normal(3.0, 2.0, n).tolist()


def categories(rng: np.random.Generator, n: int) -> Sequence[str]:
    return rng.choice(CATEGORIES, n, p=[0.5, 0.3, 0.15, 0.05]).tolist()


def new_categories(rng: np.random.Generator, n: int) -> Sequence[str]:
    return rng.choice(["tv", "car", "watch"], n).tolist()


def rare_nulls(rng: np.random.Generator, n: int) -> Sequence[Any]:
    return [None if missing else 1.0 for missing in rng.random(n) < 0.01]


def many_nulls(rng: np.random.Generator, n: int) -> Sequence[Any]:
    return [None if missing else 1.0 for missing in rng.random(n) < 0.5]


def errors(rng: np.random.Generator, n: int) -> Sequence[bool]:
    return (rng.random(n) < 0.05).tolist()


def many_errors(rng: np.random.Generator, n: int) -> Sequence[bool]:
    return (rng.random(n) < 0.5).tolist()


def _windowed(make: Any, frozen: bool, stream: Any, changed: Any) -> DetectorCase:
    return DetectorCase(
        make=make,
        stream=stream,
        results=("drift_detected", "statistic", "n_windows"),
        alarm="drift_detected",
        # A frozen reference can alarm when the first window is full, a rolling one
        # when the second is.
        warm_up=WINDOW - 1 if frozen else 2 * WINDOW - 1,
        changed=changed,
        bad_inputs=BAD_INPUTS,
    )


CASES = [
    _windowed(lambda: KSDrift(_REFERENCE, WINDOW, alpha=0.001), True, normal, shifted),
    _windowed(lambda: WassersteinDrift(None, WINDOW), False, normal, shifted),
    _windowed(lambda: PSIDrift(_REFERENCE, WINDOW), True, normal, shifted),
    _windowed(lambda: JensenShannonDrift(None, WINDOW), False, normal, shifted),
    _windowed(
        lambda: ChiSquareDrift(_CATEGORY_COUNTS, WINDOW, alpha=0.001),
        True,
        categories,
        new_categories,
    ),
    _windowed(lambda: CategoricalPSIDrift(None, WINDOW), False, categories, new_categories),
    _windowed(lambda: NullRateDrift((10, 1000), WINDOW, alpha=0.001), True, rare_nulls, many_nulls),
    DetectorCase(
        make=lambda: RobustCUSUM(warm_up=100),
        stream=normal,
        results=("drift_detected", "statistic", "n_detections", "reference_location"),
        alarm="drift_detected",
        warm_up=100,
        changed=shifted,
        bad_inputs=BAD_INPUTS,
    ),
    DetectorCase(
        make=ResidualCUSUM,
        stream=normal,
        results=(
            "drift_detected",
            "statistic",
            "n_detections",
            "effect",
            "detections",
            "n_skipped",
        ),
        alarm="drift_detected",
        warm_up=50,
        changed=shifted,
        bad_inputs=BAD_INPUTS,
    ),
    DetectorCase(
        make=lambda: BernoulliCUSUM(warm_up=200),
        stream=errors,
        results=("drift_detected", "statistic", "n_detections", "in_control_rate"),
        alarm="drift_detected",
        warm_up=200,
        changed=many_errors,
        bad_inputs=BAD_INPUTS,
    ),
    DetectorCase(
        make=lambda: ScalarStreamDrift(drift.ADWIN(), warm_up=100),
        stream=normal,
        results=("drift_detected", "n_detections", "n_skipped"),
        alarm="drift_detected",
        warm_up=100,
        changed=shifted,
        bad_inputs=BAD_INPUTS,
    ),
]
