"""The traffic generator: a pure, seeded stream of predictions, feature writes and labels.

No Kafka and no clock here: ``generate_traffic`` yields ``SimEvent`` values in the order of
their publish time (``at``, epoch milliseconds on the compressed clock), and the same
arguments always yield the same events.

How the world works
-------------------
Requests arrive as one Poisson process at ``rate`` per (compressed) second; each picks a
model by its traffic weight in O(1) (an alias table), so the cost of an event does not
depend on the number of models. For each request and each feature of the model:

- the upstream event that produced the feature's current value happened a little earlier
  (``event_at``), and the value was written to the feature store after a lognormal write
  lag (``written_at``); that write is emitted;
- if the write landed after the request (an availability gap), the model saw the value
  before it, whose write is emitted too, and the prediction records what it saw.

The label follows the feature values the world really had, through the model's logistic
link; the model and its shadow see the values they were served and add their own noise on
the logit. A label is emitted at ``label_at``, after a lognormal label delay. Events wait
until no later request can emit one before them (labels, late writes and leaked nulls for
long), in a ``_Schedule`` whose size depends on the rate and the delays, not on the number
of models.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import msgspec
import numpy as np

from schemas.contracts import (
    SCHEMA_VERSION,
    FeatureSeen,
    FeatureWrite,
    GroundTruth,
    Prediction,
    Role,
    Scalar,
    Score,
)
from streams import topics
from streams.fleet.breaker import BreakerCore, BreakerSettings, Outcome
from streams.simulate.population import FeatureProfile, ModelProfile
from streams.simulate.scenario import Incident

__all__ = [
    "FEATURE_WRITES",
    "GROUND_TRUTH",
    "PREDICTIONS",
    "SimEvent",
    "compressed_ms",
    "generate_traffic",
]

# The topics' catalogue suffixes; the publisher adds the deployment's prefix.
PREDICTIONS = topics.PREDICTIONS.suffix
FEATURE_WRITES = topics.FEATURE_WRITES.suffix
GROUND_TRUTH = topics.GROUND_TRUTH.suffix

_FEATURE_SOURCE = "simulator"
_ENTITY_POOL = 100_000
# Values older than this many mean freshness are refreshed anyway; bounds the look-back.
_FRESHNESS_CAP = 4.0
_LOGIT_LIMIT = 30.0
_NEVER = 2**62
# A bucket of the schedule is 64 ms wide: a few hundred events at the default rate, a few
# thousand at 10 times that.
_BUCKET_BITS = 6


# Not a NamedTuple: a tuple subclass is always tracked by the cycle collector, and a run at
# ten times the demo's rate holds a million events waiting (labels wait minutes), which
# every full collection walked: half of the simulator's CPU. Its records are untracked too.
class SimEvent(msgspec.Struct, frozen=True, gc=False):
    """One message to publish: when (epoch ms, compressed clock), where, its key and record."""

    at: int
    topic: str
    key: str
    record: Prediction | FeatureWrite | GroundTruth


_time = operator.attrgetter("at")


def compressed_ms(nominal: timedelta | float, time_scale: float) -> float:
    """Milliseconds on the compressed clock for a nominal duration (or nominal seconds)."""
    seconds = nominal.total_seconds() if isinstance(nominal, timedelta) else nominal
    return seconds * 1000.0 / time_scale


@dataclasses.dataclass(frozen=True)
class _Window:
    """An incident compiled to absolute compressed milliseconds.

    ``span`` is the incident's own duration parameter, compressed: a gradual drift's ramp,
    or an availability gap's median write lag (0 for other kinds).
    """

    incident: Incident
    start: float
    end: float
    span: float

    def covers(self, at: float) -> bool:
        return self.start <= at < self.end


@dataclasses.dataclass
class _FeatureState:
    profile: FeatureProfile
    lag_median: float
    freshness_mean: float
    drifts: list[_Window]
    gaps: list[_Window]
    leaks: list[_Window]


@dataclasses.dataclass
class _ModelState:
    profile: ModelProfile
    features: list[_FeatureState]
    label_delay_median: float
    broken: list[_Window]
    shadow: list[_Window]
    slow: list[_Window]
    # The serving node's breaker of a model with an SLO, on the compressed clock.
    breaker: BreakerCore | None


class _Draws:
    """Standard normals and uniforms drawn from one seeded generator in blocks."""

    def __init__(self, rng: np.random.Generator, block: int = 8192) -> None:
        self._rng = rng
        self._block = block
        self._normals: list[float] = []
        self._uniforms: list[float] = []

    def normal(self) -> float:
        if not self._normals:
            self._normals = self._rng.standard_normal(self._block).tolist()
        return self._normals.pop()

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.normal())

    def uniform(self) -> float:
        """A uniform draw in (0, 1]: safe for ``-log``."""
        if not self._uniforms:
            self._uniforms = (1.0 - self._rng.random(self._block)).tolist()
        return self._uniforms.pop()


def _alias_table(weights: Sequence[float]) -> tuple[list[float], list[int]]:
    """Vose's alias method: O(n) set-up, then an O(1) weighted draw."""
    n = len(weights)
    total = sum(weights)
    scaled = [w * n / total for w in weights]
    probability = [1.0] * n
    alias = list(range(n))
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        low, high = small.pop(), large.pop()
        probability[low] = scaled[low]
        alias[low] = high
        scaled[high] -= 1.0 - scaled[low]
        (small if scaled[high] < 1.0 else large).append(high)
    return probability, alias


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-_LOGIT_LIMIT, min(_LOGIT_LIMIT, logit))))


def generate_traffic(
    profiles: Sequence[ModelProfile],
    incidents: Sequence[Incident],
    *,
    seed: int,
    start_ms: int,
    duration_ms: int,
    rate: float,
    time_scale: float,
    run_id: str | None = None,
    drain: bool = False,
) -> Iterator[SimEvent]:
    """Yield the run's events in publish-time order.

    ``rate`` is live requests per second of the compressed clock, across the portfolio.
    Incidents must have been checked against the profiles (``check_incidents``). Events
    that would happen after the run's end are dropped, unless ``drain`` is set.
    """
    if not profiles:
        raise ValueError("profiles: expected at least one model")
    if rate <= 0 or time_scale <= 0 or duration_ms <= 0:
        raise ValueError("rate, time_scale and duration_ms: expected positive values")
    models = _compile(profiles, incidents, start_ms, time_scale)
    end_ms = start_ms + duration_ms
    run = run_id if run_id is not None else f"{seed:x}-{start_ms:x}"
    draws = _Draws(np.random.default_rng(seed))
    probability, alias = _alias_table([p.traffic_weight for p in profiles])
    n_models = len(models)
    # Writes of a request's features happen at most this long before it.
    lookback = 2 * max(
        (f.freshness_mean * _FRESHNESS_CAP for m in models for f in m.features), default=0.0
    )
    schedule = _Schedule()
    arrival = float(start_ms)
    mean_gap_ms = 1000.0 / rate
    for request in itertools.count():
        arrival += -math.log(draws.uniform()) * mean_gap_ms
        if arrival >= end_ms:
            break
        slot = int(draws.uniform() * n_models) % n_models
        model = models[slot if draws.uniform() <= probability[slot] else alias[slot]]
        _request(model, int(arrival), f"{run}-{request:x}", draws, schedule.add)
        # Every event of a later request is at or after this, so what is before it is final.
        yield from schedule.due(int(arrival) - lookback)
    for event in schedule.due(math.inf):
        if not drain and event.at >= end_ms:
            break
        yield event


class _Schedule:
    """Events waiting for their time: they come out by time, and those of the same time
    in the order they were added.

    An event is appended to the bucket of its time (``2**_BUCKET_BITS`` ms wide); a bucket
    is sorted once, when it is due. A heap of (time, order, event) gives the same order,
    but its pop cost about 5 us once a million events waited (labels wait minutes).
    """

    def __init__(self) -> None:
        self._buckets: dict[int, list[SimEvent]] = {}
        # The numbers of the buckets, a heap.
        self._numbers: list[int] = []

    def add(self, event: SimEvent) -> None:
        number = event.at >> _BUCKET_BITS
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = []
            heapq.heappush(self._numbers, number)
        bucket.append(event)

    def due(self, horizon: float) -> list[SimEvent]:
        """The events of the buckets that end at or before ``horizon``, in order.

        No event added later may be earlier than ``horizon``: it would come out of order.
        """
        due: list[SimEvent] = []
        numbers = self._numbers
        while numbers and (numbers[0] + 1) << _BUCKET_BITS <= horizon:
            bucket = self._buckets.pop(heapq.heappop(numbers))
            # Stable: events of the same time keep the order they were added in.
            bucket.sort(key=_time)
            due += bucket
        return due


def _compile(
    profiles: Sequence[ModelProfile],
    incidents: Sequence[Incident],
    start_ms: int,
    time_scale: float,
) -> list[_ModelState]:
    by_model = {profile.model_id: index for index, profile in enumerate(profiles)}
    models = [
        _ModelState(
            profile=profile,
            features=[
                _FeatureState(
                    profile=feature,
                    lag_median=compressed_ms(feature.write_lag_median, time_scale),
                    freshness_mean=compressed_ms(feature.freshness_mean, time_scale),
                    drifts=[],
                    gaps=[],
                    leaks=[],
                )
                for feature in profile.features
            ],
            label_delay_median=compressed_ms(profile.label_delay_median, time_scale),
            broken=[],
            shadow=[],
            slow=[],
            breaker=None
            if profile.slo_p99_ms is None
            else BreakerCore(BreakerSettings(slo_p99_ms=profile.slo_p99_ms)),
        )
        for profile in profiles
    ]
    for incident in incidents:
        model = models[by_model[incident.model]]
        span = next((v for _, v in incident.params if isinstance(v, timedelta)), None)
        window = _Window(
            incident,
            start_ms + compressed_ms(incident.at, time_scale),
            _NEVER
            if incident.until is None
            else start_ms + compressed_ms(incident.until, time_scale),
            0.0 if span is None else compressed_ms(span, time_scale),
        )
        if incident.kind == "broken_model":
            model.broken.append(window)
        elif incident.kind in {"shadow_better", "shadow_worse"}:
            model.shadow.append(window)
        elif incident.kind == "latency_jump":
            model.slow.append(window)
        else:
            assert incident.feature is not None
            index = model.profile.feature_index(incident.feature)
            assert index is not None, "incidents are checked against the portfolio first"
            feature = model.features[index]
            if incident.kind == "availability_gap":
                feature.gaps.append(window)
            elif incident.kind == "label_leak":
                feature.leaks.append(window)
            else:
                feature.drifts.append(window)
    return models


def _request(
    model: _ModelState,
    now: int,
    request_id: str,
    draws: _Draws,
    emit: Callable[[SimEvent], None],
) -> None:
    profile = model.profile
    entity_id = f"u{int(draws.uniform() * _ENTITY_POOL)}"
    true_logit = seen_logit = profile.intercept
    seen: dict[str, FeatureSeen] = {}
    for feature in model.features:
        value, contribution = _value(feature, now, draws)
        lag_median = _active_lag_median(feature, now)
        event_at = now - _freshness(feature, draws)
        written_at = event_at + int(draws.lognormal(lag_median, feature.profile.write_lag_sigma))
        emit(_write(entity_id, feature.profile.name, value, event_at, written_at))
        true_logit += contribution
        if written_at <= now:
            seen[feature.profile.name] = FeatureSeen(value, written_at)
            seen_logit += contribution
            continue
        # The newest value was not yet written: the model saw the one before it.
        old_value, old_contribution = _value(feature, now, draws)
        old_event_at = event_at - _freshness(feature, draws)
        old_lag = draws.lognormal(lag_median, feature.profile.write_lag_sigma)
        old_written_at = max(old_event_at, min(old_event_at + int(old_lag), now - 1))
        emit(_write(entity_id, feature.profile.name, old_value, old_event_at, old_written_at))
        seen[feature.profile.name] = FeatureSeen(old_value, old_written_at)
        seen_logit += old_contribution

    role: Role = "live"
    score = _sigmoid(seen_logit + profile.noise * draws.normal())
    for window in model.broken:
        if window.covers(now):
            if window.incident.param("mode") == "constant":
                score = window.incident.param("output")
            elif draws.uniform() <= window.incident.param("error_rate"):
                # The model raised; the node served its fallback, a base-rate guess.
                role, score = "fallback", _sigmoid(profile.intercept)
    latency_median = profile.latency_median_ms
    for window in model.slow:
        if window.covers(now):
            latency_median = window.incident.param("latency_ms")
    latency = draws.lognormal(latency_median, 0.3)
    reason, level = None, None
    if model.breaker is not None:
        reason, latency = _through_breaker(model.breaker, role, latency, now / 1000.0)
        if reason is not None:
            role, score, level = "fallback", _sigmoid(profile.intercept), 1
    emit(
        _prediction(
            profile,
            profile.version,
            role,
            request_id,
            entity_id,
            now,
            score,
            seen,
            latency,
            reason,
            level,
        )
    )
    if profile.shadow_version is not None:
        noise = profile.noise
        for window in model.shadow:
            if window.covers(now):
                noise *= window.incident.param("noise_factor")
        shadow_score = _sigmoid(seen_logit + noise * draws.normal())
        shadow_latency = draws.lognormal(latency, 0.2)
        emit(
            _prediction(
                profile,
                profile.shadow_version,
                "shadow",
                request_id,
                entity_id,
                now,
                shadow_score,
                seen,
                shadow_latency,
            )
        )
    if draws.uniform() > profile.label_coverage:
        return
    label = 1 if draws.uniform() <= _sigmoid(true_logit) else 0
    label_at = now + int(draws.lognormal(model.label_delay_median, profile.label_delay_sigma))
    emit(
        SimEvent(
            label_at,
            GROUND_TRUTH,
            profile.model_id,
            GroundTruth(
                schema_version=SCHEMA_VERSION,
                model_id=profile.model_id,
                label=label,
                label_at=label_at,
                request_id=request_id,
                entity_id=entity_id,
            ),
        )
    )
    if label != 1:
        return
    for feature in model.features:
        if any(window.covers(label_at) for window in feature.leaks):
            # The trigger nulls the field when the outcome happens.
            written_at = label_at + int(
                draws.lognormal(
                    _active_lag_median(feature, label_at), feature.profile.write_lag_sigma
                )
            )
            emit(_write(entity_id, feature.profile.name, None, label_at, written_at))


def _through_breaker(
    breaker: BreakerCore, role: Role, latency: float, now_s: float
) -> tuple[str | None, float]:
    """The call as the fleet's router makes it through the model's breaker: why a fallback
    served it (None when the model answered), and the latency the node logs."""
    admission = breaker.admit(now_s)
    if admission == "fallback":
        # The fallback answers at once; the model is not called.
        return f"breaker_open:{breaker.reason}", 0.0
    deadline = breaker.settings.deadline_ms
    if deadline is not None and latency > deadline:
        breaker.record("timeout", deadline, now_s, probe=admission == "probe")
        return "timeout", deadline
    outcome: Outcome = "error" if role == "fallback" else "ok"
    breaker.record(outcome, latency, now_s, probe=admission == "probe")
    return ("error" if outcome == "error" else None), latency


def _value(feature: _FeatureState, now: int, draws: _Draws) -> tuple[Scalar, float]:
    """A value of the feature at ``now`` and its contribution to the true logit."""
    profile = feature.profile
    if profile.kind == "categorical":
        index = bisect.bisect_left(profile.cumulative, draws.uniform())
        index = min(index, len(profile.categories) - 1)
        return profile.categories[index], profile.effects[index]
    z = draws.normal() + _drift_shift(feature.drifts, now)
    return round(profile.mean + profile.std * z, 4), profile.weight * z


def _drift_shift(drifts: list[_Window], now: int) -> float:
    """The mean shift in standard deviations; a gradual drift ramps up over its span."""
    shift = 0.0
    for window in drifts:
        if window.covers(now):
            size: float = window.incident.param("shift")
            if window.span > 0:
                size *= min(1.0, (now - window.start) / window.span)
            shift += size
    return shift


def _active_lag_median(feature: _FeatureState, now: int) -> float:
    for window in feature.gaps:
        if window.covers(now):
            return window.span
    return feature.lag_median


def _freshness(feature: _FeatureState, draws: _Draws) -> int:
    mean = feature.freshness_mean
    return int(min(-math.log(draws.uniform()) * mean, _FRESHNESS_CAP * mean))


def _write(entity_id: str, feature: str, value: Scalar, event_at: int, written_at: int) -> SimEvent:
    return SimEvent(
        written_at,
        FEATURE_WRITES,
        entity_id,
        FeatureWrite(
            schema_version=SCHEMA_VERSION,
            entity_id=entity_id,
            feature=feature,
            value=value,
            event_at=event_at,
            written_at=written_at,
            source=_FEATURE_SOURCE,
        ),
    )


def _prediction(
    profile: ModelProfile,
    version: str,
    role: Role,
    request_id: str,
    entity_id: str,
    now: int,
    score: float,
    seen: dict[str, FeatureSeen],
    latency: float,
    fallback_reason: str | None = None,
    level: int | None = None,
) -> SimEvent:
    return SimEvent(
        now,
        PREDICTIONS,
        profile.model_id,
        Prediction(
            schema_version=SCHEMA_VERSION,
            request_id=request_id,
            model_id=profile.model_id,
            model_version=version,
            role=role,
            entity_id=entity_id,
            predicted_at=now,
            output=Score(round(score, 6)),
            features=seen,
            latency_ms=round(latency, 3),
            fallback_reason=fallback_reason,
            level=level,
        ),
    )
