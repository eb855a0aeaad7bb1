"""Shared-check cases for the performance detectors.

Each stream is a healthy model's labelled traffic; each ``changed`` stream is the same
model gone bad (wrong, unsure, slow to be labelled), so that an alarm able to fire during
warm-up would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.performance.calibrated import CalibratedEstimate
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.delay import LabelDelay
from detectors.performance.drop import PerformanceDrop
from detectors.performance.estimate import EstimatedAccuracy
from detectors.performance.ranking import PrecisionAtK
from detectors.performance.regression import RegressionPerformance
from tests.detectors.cases import BAD_SCALARS, DetectorCase

# Malformed records of the (a, b) shape most of these detectors take.
BAD_PAIRS: tuple[Any, ...] = (
    *BAD_SCALARS,
    "1,0.5",
    (1,),
    (1, 0.5, 0.5),
    (None, None),
    (float("nan"), 0.5),
    (1, float("inf")),
    (2, 0.5),
    (1, 1.5),
    ([1], 0.5),
    {"y_true": 1, "p": 0.5},
)


def losses(rng: np.random.Generator, n: int, rate: float) -> Sequence[Any]:
    """Error indicators with the given error rate."""
    return [float(e) for e in rng.random(n) < rate]


def labelled(rng: np.random.Generator, n: int, inverted: bool = False) -> Sequence[Any]:
    """(y_true, p) with calibrated p; ``inverted`` swaps the labels, making the model wrong."""
    p = rng.beta(0.5, 0.5, n)
    y = (rng.random(n) < p).astype(int)
    if inverted:
        y = 1 - y
    return list(zip(y.tolist(), p.tolist(), strict=True))


def predictions_and_labels(rng: np.random.Generator, n: int, unsure: bool = False) -> Sequence[Any]:
    """(None, p) for predictions and (y_true, p) for labels, about 60% predictions."""
    p = rng.uniform(0.4, 0.6, n) if unsure else rng.beta(0.5, 0.5, n)
    y = (rng.random(n) < p).astype(int)
    if unsure:
        y = 1 - y
    is_label = rng.random(n) < 0.4
    return [
        (int(y_i) if label else None, float(p_i))
        for y_i, p_i, label in zip(y, p, is_label, strict=True)
    ]


def ranked(rng: np.random.Generator, n: int, relevance: float) -> Sequence[Any]:
    """(ranked ids, relevant ids): 10 distinct ids, each relevant with ``relevance``."""
    items = np.argsort(rng.random((n, 100)), axis=1)[:, :10]
    relevant = rng.random((n, 10)) < relevance
    return [
        (row.tolist(), set(row[hits].tolist())) for row, hits in zip(items, relevant, strict=True)
    ]


def regression(rng: np.random.Generator, n: int, noise: float) -> Sequence[Any]:
    y = rng.normal(10.0, 3.0, n)
    return list(zip(y.tolist(), (y + rng.normal(0.0, noise, n)).tolist(), strict=True))


CASES = [
    DetectorCase(
        make=lambda: PerformanceDrop(alpha=1e-3, tolerance=0.02, reference_size=200),
        stream=lambda rng, n: losses(rng, n, 0.1),
        results=("drift_detected", "baseline_loss", "statistic", "n"),
        alarm="drift_detected",
        warm_up=200,
        changed=lambda rng, n: losses(rng, n, 0.9),
        bad_inputs=(*BAD_SCALARS, -0.1, 1.5, "0.5", (0.5,)),
    ),
    DetectorCase(
        make=lambda: ClassificationPerformance(
            window=300, drop=PerformanceDrop(alpha=1e-3, reference_size=200)
        ),
        stream=lambda rng, n: labelled(rng, n),
        results=("accuracy", "log_loss", "auc", "n_labels", "n_ignored", "drift_detected"),
        alarm="drift_detected",
        warm_up=200,
        changed=lambda rng, n: labelled(rng, n, inverted=True),
        bad_inputs=BAD_PAIRS,
    ),
    DetectorCase(
        make=lambda: PrecisionAtK(
            k=5, window=300, drop=PerformanceDrop(alpha=1e-3, reference_size=200)
        ),
        stream=lambda rng, n: ranked(rng, n, 0.5),
        results=("precision_at_k", "n_labels", "n_ignored", "drift_detected"),
        alarm="drift_detected",
        warm_up=200,
        changed=lambda rng, n: ranked(rng, n, 0.0),
        bad_inputs=(*BAD_PAIRS, ("abc", {"a"}), ([1, 2], "12"), ([[1]], {1}), ([1], [[1]])),
    ),
    DetectorCase(
        make=lambda: RegressionPerformance(
            error_cap=10.0, window=300, drop=PerformanceDrop(alpha=1e-3, reference_size=200)
        ),
        stream=lambda rng, n: regression(rng, n, 1.0),
        results=("mae", "bias", "n_labels", "n_ignored", "drift_detected"),
        alarm="drift_detected",
        warm_up=200,
        changed=lambda rng, n: regression(rng, n, 20.0),
        bad_inputs=(*BAD_PAIRS, (1e308, -1e308)),
    ),
    DetectorCase(
        make=lambda: LabelDelay(window=2000, max_delay=86_400.0, min_count=100),
        stream=lambda rng, n: rng.lognormal(np.log(3600.0), 1.0, n).tolist(),
        results=("p50", "p90", "p99", "n", "n_recent", "n_negative", "n_ignored", "sla_breached"),
        alarm="sla_breached",
        # The SLA can be judged on the 100th delay, so it must stay quiet for 99.
        warm_up=99,
        changed=lambda rng, n: rng.lognormal(np.log(30 * 86_400.0), 1.0, n).tolist(),
        bad_inputs=(*BAD_SCALARS, -5.0, "3600", (3600.0,), 1e300),
    ),
    DetectorCase(
        make=lambda: EstimatedAccuracy(window=500, min_labels=100, reference_size=200),
        stream=lambda rng, n: predictions_and_labels(rng, n),
        results=(
            "accuracy",
            "source",
            "expected_accuracy",
            "observed_accuracy",
            "calibration_gap",
            "calibration_error",
            "calibrated",
            "n_predictions",
            "n_labels",
            "n_ignored",
            "drift_detected",
            "alarm_source",
        ),
        alarm="drift_detected",
        warm_up=200,
        changed=lambda rng, n: predictions_and_labels(rng, n, unsure=True),
        bad_inputs=(
            *BAD_PAIRS,
            (None, [0.5, 0.4]),
            (3, [0.2, 0.3, 0.5]),
            (None, [[0.5], [0.5]]),
            (None, np.array([0.5, float("nan")])),
            (None, np.array(0.5)),
        ),
    ),
    DetectorCase(
        make=lambda: CalibratedEstimate(chunk_size=200, calibration_size=1000, min_labels=100),
        stream=lambda rng, n: predictions_and_labels(rng, n),
        results=(
            "estimated_accuracy",
            "estimated_precision",
            "estimated_recall",
            "estimated_f1",
            "estimated_auc",
            "measured_accuracy",
            "measured_precision",
            "measured_recall",
            "measured_f1",
            "measured_auc",
            "reference_accuracy",
            "calibration_gap",
            "n_predictions",
            "n_labels",
            "n_ignored",
            "n_chunks",
            "drift_detected",
        ),
        alarm="drift_detected",
        # A chunk is judged when its 200th prediction arrives, the 200th update at the earliest.
        warm_up=199,
        changed=lambda rng, n: predictions_and_labels(rng, n, unsure=True),
        bad_inputs=(*BAD_PAIRS, (None, [0.5, 0.5]), (None, np.array(0.5)), (True, "0.5")),
    ),
]
