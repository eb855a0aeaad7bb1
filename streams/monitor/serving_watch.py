"""A model's serving against its SLO: live latency, the nodes' breaker trips, and series.

Pure: predictions in, evidence, points and alerts out. Only a model whose portfolio sets
an ``slo`` table has one (``new_serving_watch``). For each batch of its predictions:

- **Latency.** Each live answer is slow or not against ``slo.latency_p99_ms``; a p99
  objective allows 1% slow answers, so a Bernoulli CUSUM with that in-control rate,
  tuned for a rise of the odds by ``LATENCY_ODDS_RATIO``, alarms when the share of slow
  answers rises (threshold ``ln(1 / LATENCY_ALPHA)``: at most that many false alarms per
  answer, Lorden's bound). A node's breaker that gave up on the model for its latency
  (``is_slow_trip``: a timeout, a saturated pool, or open for latency or timeouts) is a
  slow answer too: a call past the deadline is by definition slower than the SLO, and
  without them the detector would see only the few live answers before a trip. An alarm
  is evidence ``latency`` for the health policy, which confirms and falls back like any
  other: the fleet-wide answer to a model every node finds slow. At 100% slow answers it
  alarms at the 11th.
- **Trips.** A fallback answer whose ``fallback_reason`` is ``timeout``, ``saturated`` or
  ``breaker_open:...`` is a node's breaker giving up on the model. When the share of such
  answers among the model's latest ``TRIP_WINDOW`` predictions reaches ``slo.trip_share``
  the watch opens a fleet-wide ``breaker_trips`` alert; it closes below half that share.
  Predictions carry no node id, so the share of traffic served by tripped breakers stands
  in for the share of nodes (the two agree when the load is balanced across nodes).
- **Restore hold.** While the model serves a fallback the worker ordered, the health
  policy reads no errors from the fallback answers and would restore the model after
  ``clear_after`` quiet seconds, even when the nodes' breakers still give up on it: a
  restore into a model that still trips, then the next fallback (a flap). So while the
  trips alert is open and the model is on fallback, ``hold_restore`` gives the policy one
  ``restore_hold`` alarm per batch (its quiet time starts again; in ``probing`` the model
  goes back to ``fallback``), and an alert says why the restore waits. The hold ends
  when the alert closes (the share below half of ``slo.trip_share``).
- **Series.** One ``serving`` point per batch and ladder level (tags ``model``, ``tier``,
  ``level``): ``predictions``, ``slow`` (over the SLO), ``trips``, ``latency_mean_ms``,
  ``latency_max_ms``, at the batch's last prediction of that level.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from detectors import BernoulliCUSUM
from detectors.health.evidence import Evidence
from schemas.contracts import Prediction
from streams.monitor.effects import Alert, Point, detector_alert, point
from streams.portfolio import TRIP_WINDOW, Model, Slo

__all__ = [
    "LATENCY_ALPHA",
    "LATENCY_DETECTOR",
    "LATENCY_ODDS_RATIO",
    "RESTORE_HOLD_DETECTOR",
    "SLOW_SHARE",
    "TRIP_DETECTOR",
    "ServingFound",
    "ServingWatch",
    "hold_restore",
    "is_slow_trip",
    "is_trip",
    "new_serving_watch",
    "observe_many",
]

LATENCY_DETECTOR = "latency"
TRIP_DETECTOR = "breaker_trips"
RESTORE_HOLD_DETECTOR = "restore_hold"
SLOW_SHARE = 0.01
"""The share of answers a p99 objective allows above it."""
LATENCY_ODDS_RATIO = 4.0
LATENCY_ALPHA = 1e-6
_TRIP_REASONS = ("timeout", "saturated", "breaker_open:")
# Every trip but those on errors (``breaker_open:errors``, ``breaker_open:probe_error``).
_SLOW_TRIP_REASONS = frozenset(
    {
        "timeout",
        "saturated",
        "breaker_open:latency",
        "breaker_open:timeouts",
        "breaker_open:saturated",
        "breaker_open:probe_slow",
        "breaker_open:probe_timeout",
        "breaker_open:probe_saturated",
    }
)


def is_trip(prediction: Prediction) -> bool:
    """Whether a node's breaker (not a command, not a raising model) served this answer."""
    reason = prediction.fallback_reason
    return reason is not None and reason.startswith(_TRIP_REASONS)


def is_slow_trip(prediction: Prediction) -> bool:
    """Whether a node's breaker served this answer because the model is too slow: a
    timeout, a saturated pool (its threads held by slower calls), or open for either or
    for latency (not for errors)."""
    return prediction.fallback_reason in _SLOW_TRIP_REASONS


@dataclasses.dataclass
class ServingWatch:
    """What the watch keeps about one model; pickled with its monitor."""

    slo: Slo
    latency: BernoulliCUSUM
    recent_trips: collections.deque[bool] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=TRIP_WINDOW)
    )
    trips_in_window: int = 0
    tripping: bool = False
    alarms: int = 0
    # A class default as well: a checkpoint pickled before the hold existed reads False.
    holding: bool = False


@dataclasses.dataclass
class ServingFound:
    """What a batch caused: evidence for the policy (by the batch position of the
    prediction that raised it), points and alerts."""

    evidence: list[tuple[int, Evidence]] = dataclasses.field(default_factory=list)
    points: list[Point] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)


def new_serving_watch(model: Model) -> ServingWatch | None:
    """The model's watch, or None when its portfolio sets no ``slo``."""
    if model.slo is None:
        return None
    detector = BernoulliCUSUM(
        odds_ratio=LATENCY_ODDS_RATIO,
        threshold=math.log(1.0 / LATENCY_ALPHA),
        reference_rate=SLOW_SHARE,
    )
    return ServingWatch(model.slo, detector)


def observe_many(
    model: Model, watch: ServingWatch, predictions: Sequence[Prediction]
) -> ServingFound:
    """Feed a batch of the model's predictions in arrival order. Mutates ``watch``."""
    found = ServingFound()
    if not predictions:
        return found
    slo_ms = watch.slo.latency_p99_ms
    # The answers the latency detector reads, and whether each was slow: a live answer by
    # its latency, a breaker's slow trip always.
    answers: list[int] = []
    slow_answers: list[bool] = []
    for i, p in enumerate(predictions):
        if is_slow_trip(p):
            answers.append(i)
            slow_answers.append(True)
        elif p.role == "live" and p.fallback_reason is None:
            answers.append(i)
            slow_answers.append(p.latency_ms > slo_ms)
    if answers:
        slow = np.array(slow_answers)
        watch.latency.update_many(slow)
        for k in watch.latency.detections.tolist():
            watch.alarms += 1
            i = answers[k]
            start = max(k - TRIP_WINDOW + 1, 0)
            details = {
                "statistic": watch.latency.statistic,
                "slow_share": float(slow[start : k + 1].mean()),
                "slo_ms": slo_ms,
                "alarms": watch.alarms,
            }
            at = predictions[i].predicted_at / 1000.0
            found.evidence.append(
                (i, Evidence(detector=LATENCY_DETECTOR, at=at, alarm=True, details=details))
            )
    _trips(model, watch, predictions, found)
    _points(model, slo_ms, predictions, found)
    return found


def hold_restore(model: Model, watch: ServingWatch, on_fallback: bool, at: float) -> ServingFound:
    """After a batch: whether the model's restore waits for its breakers (see the module
    docstring). ``on_fallback``: the model serves a fallback the worker ordered; ``at``:
    the batch's last event time (seconds). The evidence's position is -1 (after the
    batch). Mutates ``watch``."""
    found = ServingFound()
    holding = on_fallback and watch.tripping
    share = watch.trips_in_window / TRIP_WINDOW
    limit = watch.slo.trip_share
    if holding:
        details: dict[str, float | int | str | bool] = {
            "trip_share": share,
            "trip_share_limit": limit,
            "holds": "restore",
        }
        found.evidence.append(
            (-1, Evidence(detector=RESTORE_HOLD_DETECTOR, at=at, alarm=True, details=details))
        )
    if holding == watch.holding:
        return found
    watch.holding = holding
    if holding:
        severity = "warning"
        text = (
            f"{model.model_id}: its restore waits: the nodes' breakers served {share:.0%} of "
            f"the last {TRIP_WINDOW} requests (it waits until that is below {limit / 2:.0%})"
        )
    else:
        severity = "normal"
        text = (
            f"{model.model_id}: its restore no longer waits for the breakers ({share:.0%} tripped)"
        )
    found.alerts.append(
        detector_alert(
            model.model_id, model.owner, RESTORE_HOLD_DETECTOR, severity, text, None, f"{share:.2f}"
        )
    )
    return found


def _trips(
    model: Model, watch: ServingWatch, predictions: Sequence[Prediction], found: ServingFound
) -> None:
    recent = watch.recent_trips
    for prediction in predictions:
        tripped = is_trip(prediction)
        if len(recent) == recent.maxlen:
            watch.trips_in_window -= recent[0]
        recent.append(tripped)
        watch.trips_in_window += tripped
    if len(recent) < TRIP_WINDOW:
        return
    share = watch.trips_in_window / TRIP_WINDOW
    threshold = watch.slo.trip_share
    if not watch.tripping and share >= threshold:
        watch.tripping = True
        text = (
            f"{model.model_id}: the nodes' breakers served {share:.0%} of the last "
            f"{TRIP_WINDOW} requests (alert at {threshold:.0%})"
        )
        found.alerts.append(
            detector_alert(
                model.model_id, model.owner, TRIP_DETECTOR, "major", text, None, f"{share:.2f}"
            )
        )
    elif watch.tripping and share < threshold / 2:
        watch.tripping = False
        text = f"{model.model_id}: the nodes' breakers are closed again ({share:.0%} tripped)"
        found.alerts.append(
            detector_alert(
                model.model_id, model.owner, TRIP_DETECTOR, "normal", text, None, f"{share:.2f}"
            )
        )


def _points(
    model: Model, slo_ms: float, predictions: Sequence[Prediction], found: ServingFound
) -> None:
    by_level: dict[int, list[Prediction]] = collections.defaultdict(list)
    for prediction in predictions:
        level = prediction.level
        if level is None:
            level = 0 if prediction.role != "fallback" else 1
        by_level[level].append(prediction)
    for level, served in sorted(by_level.items()):
        latencies = [p.latency_ms for p in served]
        tags = {"model": model.model_id, "tier": model.tier, "level": str(level)}
        fields: dict[str, float | int | bool | str] = {
            "predictions": len(served),
            "slow": sum(latency > slo_ms for latency in latencies),
            "trips": sum(map(is_trip, served)),
            "latency_mean_ms": sum(latencies) / len(latencies),
            "latency_max_ms": max(latencies),
        }
        found.points.append(point("serving", tags, fields, served[-1].predicted_at))
