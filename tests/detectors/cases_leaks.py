"""Shared-check cases for the leak detectors, and the seeded event streams they read."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from detectors import AvailabilityGap, FutureValues, LabelCoincidentWrites, WriteLag
from detectors.leaks import FeatureWrite, Label, ServedFeature
from tests.detectors.cases import BAD_SCALARS, DetectorCase

FEATURES = ("plan", "sessions_7d", "last_login_date")
NAN, INF = math.nan, math.inf

BAD_EVENTS: tuple[Any, ...] = (
    *BAD_SCALARS,
    "write",
    ("user", "plan", 1.0, 0.0, 0.0),
    FeatureWrite("user", "plan", 1.0, NAN, 0.0),
    FeatureWrite("user", "plan", 1.0, 0.0, INF),
    FeatureWrite(None, "plan", 1.0, 0.0, 0.0),  # type: ignore[arg-type]
    FeatureWrite("user", "", 1.0, 0.0, 0.0),
    FeatureWrite("user", None, 1.0, 0.0, 0.0),  # type: ignore[arg-type]
    FeatureWrite("user", "plan", 1.0, True, 0.0),
    Label("user", 2, 0.0),
    Label("user", None, 0.0),  # type: ignore[arg-type]
    Label("user", 1, NAN),
    Label(1.5, 1, 0.0),  # type: ignore[arg-type]
    ServedFeature("user", "plan", 1.0, NAN, 0.0),
    ServedFeature("user", "plan", 1.0, 0.0, -INF),
    ServedFeature("user", None, 1.0, 0.0, 0.0),  # type: ignore[arg-type]
    # Timestamps no float holds: the detectors' arithmetic on them would raise.
    FeatureWrite("user", "plan", 1.0, 0.0, 10**400),
    FeatureWrite("user", "plan", 1.0, 0.0, Fraction(10**400)),  # type: ignore[arg-type]
    Label("user", 1, 10**400),
)


def writes_and_labels(
    rng: np.random.Generator, n: int, leaking: str | None = None
) -> list[FeatureWrite | Label]:
    """Users write features at random times and get labels at random times.

    The value of ``plan`` tells the classes apart; write times never do, unless
    ``leaking`` names a feature that is nulled at the moment of every positive label.
    """
    start = float(rng.integers(0, 10**9))
    times = start + np.cumsum(rng.exponential(1_000.0, n))
    users = rng.integers(0, 2_000, n)
    draws = rng.random(n)
    features = rng.integers(0, len(FEATURES), n)
    events: list[FeatureWrite | Label] = []
    rows = zip(times.tolist(), users.tolist(), draws, features, strict=True)
    for at, user, draw, feature in rows:
        positive = user % 3 == 0
        if draw < 0.8:
            value = "free" if positive else "pro"
            events.append(FeatureWrite(user, FEATURES[feature], value, at, at))
            continue
        if leaking is not None and positive:
            events.append(FeatureWrite(user, leaking, None, at, at))
        events.append(Label(user, int(positive), at))
    return events[:n]


def writes_and_predictions(
    rng: np.random.Generator, n: int, lag: float = 50.0, skew: float = 0.0
) -> list[FeatureWrite | ServedFeature]:
    """Writes whose lag is exponential with mean ``lag``, and predictions reading them.

    Each prediction uses the value serving could read, written ``skew`` after the
    prediction when ``skew`` is positive (a value from the future).
    """
    start = float(rng.integers(0, 10**9))
    times = start + np.cumsum(rng.exponential(1_000.0, n))
    lags = rng.exponential(lag, n)
    users = rng.integers(0, 2_000, n)
    features = rng.integers(0, len(FEATURES), n)
    is_write = rng.random(n) < 0.5
    events: list[FeatureWrite | ServedFeature] = []
    rows = zip(times.tolist(), lags.tolist(), users.tolist(), features, is_write, strict=True)
    for at, write_lag, user, feature, write in rows:
        if write:
            events.append(FeatureWrite(user, FEATURES[feature], 1.0, at, at + write_lag))
        else:
            events.append(ServedFeature(user, FEATURES[feature], 1.0, at - 60_000.0 + skew, at))
    return events


# The label-coincidence detector's clock: a second of tolerance, lags up to 20 s.
COINCIDENCE = {"tolerance": 1_000.0, "max_lag": 20_000.0, "lateness": 2_000.0, "label_delay": 0.0}

CASES = [
    DetectorCase(
        make=lambda: LabelCoincidentWrites(**COINCIDENCE, min_labels=10, max_entities=256),
        stream=writes_and_labels,
        results=(
            "leak_detected",
            "leaking_features",
            "leak_score",
            "evidence",
            "open_labels",
            "entities",
            "rejected",
        ),
        alarm="leak_detected",
        # Ten labels of each class come before the first test.
        warm_up=19,
        changed=lambda rng, n: writes_and_labels(rng, n, leaking="last_login_date"),
        bad_inputs=BAD_EVENTS,
    ),
    DetectorCase(
        make=lambda: AvailabilityGap(max_keys=256, min_predictions=50),
        stream=writes_and_predictions,
        results=("gap_detected", "gapped_features", "evidence", "rejected"),
        alarm="gap_detected",
        # Fifty predictions of a feature come before its first test.
        warm_up=49,
        # Every write lands an hour after its event time: every prediction is in a gap.
        changed=lambda rng, n: writes_and_predictions(rng, n, lag=3_600_000.0),
        bad_inputs=BAD_EVENTS,
    ),
    DetectorCase(
        make=lambda: WriteLag(sla=1_000.0, window=100),
        stream=writes_and_predictions,
        results=("drift_detected", "drifting_features", "sla_breaches", "write_lag", "rejected"),
        alarm="drift_detected",
        # A feature needs its five reference windows and one more before a drift verdict.
        warm_up=599,
        changed=lambda rng, n: writes_and_predictions(rng, n, lag=500.0),
        bad_inputs=BAD_EVENTS,
    ),
    DetectorCase(
        make=FutureValues,
        stream=writes_and_predictions,
        results=("critical", "future_values", "max_skew", "last_future_value", "counts"),
        alarm="critical",
        # One value from the future is enough: there is no warm-up.
        warm_up=0,
        changed=lambda rng, n: writes_and_predictions(rng, n, skew=120_000.0),
        bad_inputs=BAD_EVENTS,
    ),
]
