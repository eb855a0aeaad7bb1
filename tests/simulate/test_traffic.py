"""The traffic generator: determinism, ordering, and every incident visible in the data."""

from __future__ import annotations

import collections
import hashlib
import heapq
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from schemas.codec import encode
from schemas.contracts import FeatureWrite, GroundTruth, Prediction, Score
from streams.simulate.run import SCENARIOS, SimulationRun
from streams.simulate.scenario import Incident, load_scenario, parse_scenario
from streams.simulate.traffic import (
    FEATURE_WRITES,
    GROUND_TRUTH,
    PREDICTIONS,
    SimEvent,
    _Schedule,
    compressed_ms,
)

START_MS = 1_800_000_000_000
# Denser than the file's own rate, so that each model has enough events for statistics.
RATE = 2000.0
LABEL = GroundTruth(schema_version=1, model_id="m", label=1, label_at=0, entity_id="u1")


def _run(seed: int | None = None) -> SimulationRun:
    return SimulationRun.prepare(
        load_scenario(SCENARIOS / "short.toml"), start_ms=START_MS, rate=RATE, seed=seed
    )


@pytest.fixture(scope="module")
def run() -> SimulationRun:
    return _run()


@pytest.fixture(scope="module")
def events(run: SimulationRun) -> list[SimEvent]:
    return list(run.events(drain=True))


def _incident(run: SimulationRun, kind: str) -> Incident:
    return next(i for i in run.scenario.incidents if i.kind == kind)


def _at_ms(run: SimulationRun, offset: timedelta) -> float:
    return run.start_ms + compressed_ms(offset, run.time_scale)


def _predictions(events: list[SimEvent], model: str, role: str = "live") -> list[Prediction]:
    found = []
    for event in events:
        record = event.record
        if isinstance(record, Prediction) and record.model_id == model and record.role == role:
            found.append(record)
    return found


def _writes(events: list[SimEvent], feature: str) -> list[FeatureWrite]:
    return [
        e.record
        for e in events
        if isinstance(e.record, FeatureWrite) and e.record.feature == feature
    ]


def _labels(events: list[SimEvent], model: str) -> list[GroundTruth]:
    return [
        e.record for e in events if isinstance(e.record, GroundTruth) and e.record.model_id == model
    ]


def _numeric(prediction: Prediction, feature: str) -> float:
    value = prediction.features[feature].value
    assert isinstance(value, float)
    return value


def _score(prediction: Prediction) -> float:
    assert isinstance(prediction.output, Score)
    return prediction.output.score


def test_same_seed_gives_identical_events_and_another_seed_does_not(events: list[SimEvent]) -> None:
    again = list(_run().events(drain=True))
    assert [(e.at, e.topic, e.key, encode(e.record)) for e in again] == [
        (e.at, e.topic, e.key, encode(e.record)) for e in events
    ]
    other = [encode(e.record) for e, _ in zip(_run(seed=12).events(), range(1000), strict=False)]
    assert other != [encode(e.record) for e in events[:1000]]


def _digest(events: Iterable[SimEvent]) -> str:
    digest = hashlib.sha256()
    for event in events:
        digest.update(
            f"{event.topic} {event.key} {event.at} ".encode() + encode(event.record) + b"\n"
        )
    return digest.hexdigest()


def test_the_stream_is_the_one_it_was_before_its_cost_was_cut(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    # Computed at 6296e61, before the generator's cost was cut: a change that only makes
    # the simulator cheaper leaves every event's time, topic, key and bytes, and their
    # order. A change of the simulated world updates these with a reason.
    assert _digest(run.events()) == (
        "851bffb056053608c08f056d0e7fecaaae1b9fde74d9b8722f25b315a70241cf"
    )
    assert _digest(events) == "f59226d46dabb9dd93fc9877498544be9c1acbdebd3f2059e8595d23be89534a"


def test_events_come_in_publish_time_order_with_the_contract_keys(events: list[SimEvent]) -> None:
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    topics = {e.topic for e in events}
    assert topics == {PREDICTIONS, FEATURE_WRITES, GROUND_TRUTH}
    for event in events:
        record = event.record
        if isinstance(record, Prediction):
            assert (event.at, event.key) == (record.predicted_at, record.model_id)
        elif isinstance(record, FeatureWrite):
            assert (event.at, event.key) == (record.written_at, record.entity_id)
            assert record.written_at >= record.event_at
        else:
            assert (event.at, event.key) == (record.label_at, record.model_id)


def test_without_drain_nothing_after_the_end_is_emitted(run: SimulationRun) -> None:
    end = run.start_ms + run.duration_ms
    kept = list(run.events())
    assert kept and max(e.at for e in kept) < end
    assert len(kept) < len(list(run.events(drain=True)))


def test_a_prediction_never_uses_a_value_written_after_it(events: list[SimEvent]) -> None:
    for event in events:
        if isinstance(event.record, Prediction):
            assert all(
                seen.written_at <= event.record.predicted_at
                for seen in event.record.features.values()
            )


def test_abrupt_drift_moves_the_mean_by_the_configured_shift(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    incident = _incident(run, "drift_abrupt")
    assert incident.feature is not None
    profile = next(p for p in run.profiles if p.model_id == incident.model)
    feature = profile.features[profile.feature_index(incident.feature) or 0]
    at = _at_ms(run, incident.at)
    before = [
        _numeric(p, feature.name)
        for p in _predictions(events, incident.model)
        if p.predicted_at < at - 1
    ]
    after = [
        _numeric(p, feature.name)
        for p in _predictions(events, incident.model)
        if p.predicted_at > at + 1
    ]
    shift_in_std = (statistics.fmean(after) - statistics.fmean(before)) / feature.std
    assert len(before) > 300 and len(after) > 300
    assert shift_in_std == pytest.approx(incident.param("shift"), abs=0.3)
    # The model's other features do not move.
    other = next(f for f in profile.features if f.kind == "numeric" and f.name != incident.feature)
    values = [
        (p.predicted_at, _numeric(p, other.name)) for p in _predictions(events, incident.model)
    ]
    moved = (
        statistics.fmean(v for t, v in values if t > at)
        - statistics.fmean(v for t, v in values if t < at)
    ) / other.std
    assert abs(moved) < 0.3


def test_gradual_drift_ramps_up_over_its_ramp(run: SimulationRun, events: list[SimEvent]) -> None:
    incident = _incident(run, "drift_gradual")
    assert incident.feature is not None
    profile = next(p for p in run.profiles if p.model_id == incident.model)
    feature = profile.features[profile.feature_index(incident.feature) or 0]
    start = _at_ms(run, incident.at)
    ramp_end = _at_ms(run, incident.at + incident.param("ramp"))
    middle = (start + ramp_end) / 2

    def mean_between(low: float, high: float) -> float:
        return statistics.fmean(
            (_numeric(p, feature.name) - feature.mean) / feature.std
            for p in _predictions(events, incident.model)
            if low <= p.predicted_at < high
        )

    before = mean_between(run.start_ms, start)
    first_half = mean_between(start, middle)
    second_half = mean_between(middle, ramp_end)
    after = mean_between(ramp_end, math.inf)
    shift = incident.param("shift")
    assert before == pytest.approx(0.0, abs=0.25)
    assert first_half == pytest.approx(shift / 4, abs=0.3)
    assert second_half == pytest.approx(3 * shift / 4, abs=0.3)
    assert after == pytest.approx(shift, abs=0.3)


def test_availability_gap_makes_writes_late_and_predictions_see_older_values(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    incident = _incident(run, "availability_gap")
    assert incident.feature is not None
    at = _at_ms(run, incident.at)
    lags_before = [
        w.written_at - w.event_at for w in _writes(events, incident.feature) if w.event_at < at
    ]
    lags_after = [
        w.written_at - w.event_at for w in _writes(events, incident.feature) if w.event_at > at
    ]
    expected = compressed_ms(incident.param("write_lag"), run.time_scale)
    assert statistics.median(lags_after) > 50 * statistics.median(lags_before)
    # Half the writes after the onset are of the older values that requests fell back on,
    # which had to be written before the request; the fresh ones carry the new lag.
    assert 0.8 * expected < np.quantile(lags_after, 0.75) < 3 * expected

    writes_by_entity = defaultdict(list)
    for write in _writes(events, incident.feature):
        writes_by_entity[write.entity_id].append(write)

    def gap_rate(predictions: list[Prediction]) -> float:
        # The share of requests for which a value with event_at <= predicted_at was only
        # written after the request: what the leak detectors call an availability gap.
        return statistics.fmean(
            any(w.event_at <= p.predicted_at < w.written_at for w in writes_by_entity[p.entity_id])
            for p in predictions
        )

    predictions = _predictions(events, incident.model)
    assert gap_rate([p for p in predictions if p.predicted_at < at]) < 0.1
    assert gap_rate([p for p in predictions if p.predicted_at > at]) > 0.7


def test_label_leak_nulls_the_feature_at_label_time_for_positives_only(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    incident = _incident(run, "label_leak")
    assert incident.feature is not None
    nulls = [w for w in _writes(events, incident.feature) if w.value is None]
    labels = _labels(events, incident.model)
    by_moment = {(g.entity_id, g.label_at): g.label for g in labels}
    positives = [g for g in labels if g.label == 1 and g.label_at >= _at_ms(run, incident.at)]
    assert len(positives) > 100
    assert sorted((w.entity_id, w.event_at) for w in nulls) == sorted(
        (g.entity_id, g.label_at) for g in positives
    )
    assert {by_moment[(w.entity_id, w.event_at)] for w in nulls} == {1}
    # No other feature of any model is ever written as null.
    assert all(
        e.record.value is not None
        for e in events
        if isinstance(e.record, FeatureWrite) and e.record.feature != incident.feature
    )


def test_broken_models_output_a_constant_or_fail_over_to_the_fallback(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    constant = next(
        i
        for i in run.scenario.incidents
        if i.kind == "broken_model" and i.param("mode") == "constant"
    )
    at = _at_ms(run, constant.at)
    live = _predictions(events, constant.model)
    assert {_score(p) for p in live if p.predicted_at >= at} == {constant.param("output")}
    assert len({_score(p) for p in live if p.predicted_at < at}) > 100

    errors = next(
        i
        for i in run.scenario.incidents
        if i.kind == "broken_model" and i.param("mode") == "errors"
    )
    assert errors.until is not None
    start, end = _at_ms(run, errors.at), _at_ms(run, errors.until)
    served = _predictions(events, errors.model) + _predictions(events, errors.model, "fallback")
    inside = [p.role == "fallback" for p in served if start <= p.predicted_at < end]
    outside = [p.role == "fallback" for p in served if not start <= p.predicted_at < end]
    assert statistics.fmean(inside) == pytest.approx(errors.param("error_rate"), abs=0.06)
    assert not any(outside)


def _log_loss(events: list[SimEvent], model: str, role: str) -> float:
    labels = {g.request_id: g.label for g in _labels(events, model)}
    losses = []
    for prediction in _predictions(events, model, role):
        if prediction.request_id in labels:
            p = min(max(_score(prediction), 1e-9), 1 - 1e-9)
            losses.append(-math.log(p if labels[prediction.request_id] == 1 else 1 - p))
    assert len(losses) > 300
    return statistics.fmean(losses)


@pytest.mark.parametrize(("kind", "better"), [("shadow_better", True), ("shadow_worse", False)])
def test_shadow_loss_is_lower_or_higher_than_live(
    run: SimulationRun, events: list[SimEvent], kind: str, better: bool
) -> None:
    model = _incident(run, kind).model
    live, shadow = _log_loss(events, model, "live"), _log_loss(events, model, "shadow")
    assert (shadow < live - 0.05) if better else (shadow > live + 0.05)
    versions = {p.model_version for p in _predictions(events, model, "shadow")}
    assert versions == {next(p.shadow_version for p in run.profiles if p.model_id == model)}


def test_label_delays_follow_each_models_lognormal(
    run: SimulationRun, events: list[SimEvent]
) -> None:
    predicted_at: dict[str | None, int] = {
        e.record.request_id: e.record.predicted_at
        for e in events
        if isinstance(e.record, Prediction) and e.record.role != "shadow"
    }
    for profile in run.profiles:
        delays = np.array(
            [g.label_at - predicted_at[g.request_id] for g in _labels(events, profile.model_id)]
        )
        median = compressed_ms(profile.label_delay_median, run.time_scale)
        # Delays are whole milliseconds; compare on the log scale, where rounding is tiny.
        log_delays = np.log(np.maximum(delays, 1) / median)
        result = stats.kstest(log_delays, "norm", args=(0.0, profile.label_delay_sigma))
        assert result.pvalue > 1e-3, (profile.model_id, result)
        requests = len(_predictions(events, profile.model_id)) + len(
            _predictions(events, profile.model_id, "fallback")
        )
        coverage = len(delays) / requests
        assert coverage == pytest.approx(profile.label_coverage, abs=0.06)


def test_traffic_splits_across_models_by_weight(run: SimulationRun, events: list[SimEvent]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if isinstance(event.record, Prediction) and event.record.role != "shadow":
            counts[event.record.model_id] += 1
    total_weight = sum(p.traffic_weight for p in run.profiles)
    total = sum(counts.values())
    assert total == pytest.approx(RATE * run.duration_ms / 1000, rel=0.05)
    for profile in run.profiles:
        expected = total * profile.traffic_weight / total_weight
        assert abs(counts[profile.model_id] - expected) < 5 * math.sqrt(expected)


LATENCY_JUMP = """
[run]
models = 20
seed = 5
time_scale = 3600
duration = "40s"
[[incidents]]
kind = "latency_jump"
model = "ctr-017"
latency_ms = 400.0
at = "4h"
until = "20h"
"""


def _latency_run(scenario: str) -> SimulationRun:
    return SimulationRun.prepare(parse_scenario(scenario), start_ms=START_MS, rate=RATE)


def test_a_latency_jump_trips_the_nodes_breaker_and_probes_close_it_after() -> None:
    run = _latency_run(LATENCY_JUMP)
    jump = run.scenario.incidents[0]
    assert jump.until is not None
    start, end = _at_ms(run, jump.at), _at_ms(run, jump.until)
    served = [
        e.record
        for e in run.events()
        if isinstance(e.record, Prediction) and e.record.model_id == "ctr-017"
    ]
    before = [p for p in served if p.predicted_at < start]
    during = [p for p in served if start <= p.predicted_at < end]
    # The breaker's cool-down (5 s) and three good probes, one in ten calls, after the end.
    after = [p for p in served if p.predicted_at >= end + 8_000]
    assert len(before) > 200 and len(during) > 1000 and len(after) > 200
    for healthy in (before, after):
        assert {(p.role, p.fallback_reason, p.level) for p in healthy} == {("live", None, None)}
        assert max(p.latency_ms for p in healthy) < 80.0  # its SLO
    reasons = collections.Counter(p.fallback_reason for p in during)
    # Two calls past the SLO (a timed-out one counts at the 100 ms deadline) trip it; from
    # then on it serves the fallback, and each half-open probe times out and opens it again.
    assert {"timeout", "breaker_open:latency", "breaker_open:probe_timeout"} <= set(reasons)
    assert set(reasons) <= {None, "timeout", "breaker_open:latency", "breaker_open:probe_timeout"}
    assert reasons[None] < 20 and reasons["timeout"] < 20
    assert all(p.role == "fallback" and p.level == 1 for p in during if p.fallback_reason)
    # The model answers only the few calls under the deadline: before the trip and probes.
    answered = [p for p in during if p.fallback_reason is None]
    assert all(80.0 < p.latency_ms <= 100.0 for p in answered)
    assert {p.latency_ms for p in during if p.fallback_reason == "timeout"} == {100.0}


def test_a_latency_jump_leaves_every_other_models_traffic_unchanged() -> None:
    with_jump = _latency_run(LATENCY_JUMP).events()
    without = _latency_run(LATENCY_JUMP.split("[[incidents]]")[0]).events()
    others = [
        [e for e in events if not (e.topic == PREDICTIONS and e.key == "ctr-017")]
        for events in (with_jump, without)
    ]
    assert others[0] == others[1] and len(others[0]) > 10_000


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 300),  # how far the horizon moves
            st.lists(st.integers(0, 400), max_size=12),  # the events' times past it
        ),
        max_size=40,
    ),
    st.integers(-(2**40), 2**40),
)
def test_the_schedule_gives_events_in_the_order_a_heap_of_time_and_order_does(
    steps: list[tuple[int, list[int]]], start: int
) -> None:
    # As in generate_traffic: once the horizon passed a time, no event is added before it.
    schedule, heap, given_out = _Schedule(), [], []
    horizon = start
    for advance, offsets in steps:
        for offset in offsets:
            # Nothing leaves the heap before the end: its length is the order of the event.
            event = SimEvent(horizon + offset, GROUND_TRUTH, f"e{len(heap)}", LABEL)
            schedule.add(event)
            heapq.heappush(heap, (event.at, len(heap), event))
        horizon += advance
        given_out += schedule.due(horizon - 0.5)
        assert all(event.at < horizon for event in given_out)
    given_out += schedule.due(math.inf)
    assert given_out == [heapq.heappop(heap)[2] for _ in range(len(heap))]
