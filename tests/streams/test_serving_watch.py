"""The serving watch: live latency against the SLO, the nodes' breaker trips, the series."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from schemas.contracts import Prediction
from streams.monitor import Batch, Monitor
from streams.monitor.serving_watch import hold_restore, new_serving_watch, observe_many
from streams.portfolio import Model, PortfolioError, Slo, parse_portfolio
from tests.streams.test_watch import SMALL, prediction, small_model

SLO = "slo = { latency_p99_ms = 50, trip_share = 0.5 }\n"


def served(
    n: int,
    latency_ms: float,
    role: str = "live",
    reason: str | None = None,
    level: int | None = None,
) -> Prediction:
    return msgspec.structs.replace(
        prediction(n, 40.0, "de", role),
        latency_ms=latency_ms,
        fallback_reason=reason,
        level=level,
    )


def slo_model(slo: str = SLO) -> Model:
    """test_watch's small model (one prediction a second, min_dwell 60 s) with ``slo``."""
    text = SMALL.replace('fallback = "top_n_popular"\n', 'fallback = "top_n_popular"\n' + slo)
    model = parse_portfolio(text).get("ranker")
    assert model is not None
    return model


def test_the_portfolio_reads_the_slo() -> None:
    assert slo_model().slo == Slo(latency_p99_ms=50.0, error_rate=None, trip_share=0.5)
    assert small_model().slo is None and new_serving_watch(small_model()) is None
    with pytest.raises(PortfolioError, match=r"models\.ranker\.slo\.latency_p99_ms: expected ms"):
        slo_model("slo = { latency_p99_ms = 0 }\n")
    with pytest.raises(PortfolioError, match=r"slo\.error_rate: expected a share in \(0, 1\)"):
        slo_model("slo = { latency_p99_ms = 50, error_rate = 1 }\n")


def test_a_latency_jump_alarms_at_the_eleventh_slow_answer_and_steady_traffic_never() -> None:
    model = slo_model()
    watch = new_serving_watch(model)
    assert watch is not None
    rng = np.random.default_rng(5)
    # 20,000 answers with 1% over the SLO, as a p99 objective allows: no alarm.
    steady = [served(i, 80.0 if rng.random() < 0.01 else 20.0) for i in range(20_000)]
    assert observe_many(model, watch, steady).evidence == []
    jump = [served(20_000 + i, 800.0) for i in range(30)]
    found = observe_many(model, watch, jump)
    assert [(i, e.detector, e.alarm) for i, e in found.evidence] == [
        (10, "latency", True),
        (21, "latency", True),
    ]
    assert found.evidence[0][1].details["slo_ms"] == 50.0


def test_a_slow_model_falls_back_by_command_through_its_policy() -> None:
    monitor = Monitor(slo_model())
    records = [served(i, 20.0) for i in range(1000)] + [served(1000 + i, 800.0) for i in range(200)]
    effects = monitor.observe(Batch.from_records("ranker", records))
    # Alarms at answers 1010 and 1021 (one a second) confirm; the policy's 60 s dwell in
    # degraded ends at answer 1070.
    assert [(c.action, c.detector, c.issued_at) for c in effects.commands] == [
        ("fallback", "latency", (1_000 + 1070) * 1000)
    ]
    assert {a.event for a in effects.alerts} >= {"latency", "ModelDegraded", "ModelFallback"}


def test_the_breakers_timeouts_are_slow_answers_and_their_error_trips_are_not() -> None:
    model = slo_model()
    watch = new_serving_watch(model)
    assert watch is not None
    assert observe_many(model, watch, [served(i, 20.0) for i in range(1000)]).evidence == []
    # Past the deadline a node's breaker serves no live answer: five timeouts trip it, then
    # it serves the fallback at once. Each is an answer slower than the SLO.
    reasons = ["timeout"] * 5 + ["breaker_open:timeouts"] * 20 + ["breaker_open:probe_timeout"]
    slow = [served(1000 + i, 0.3, "fallback", why, 1) for i, why in enumerate(reasons)]
    found = observe_many(model, watch, slow)
    assert [(i, e.detector, e.details["slow_share"]) for i, e in found.evidence] == [
        (10, "latency", 1.0),
        (21, "latency", 1.0),
    ]
    # A breaker open on errors, a command's fallback and a raising model say nothing of latency.
    other = ["breaker_open:errors", "breaker_open:probe_error", "control", "error"]
    unrelated = [served(1026 + i, 0.3, "fallback", other[i % 4], 1) for i in range(400)]
    assert observe_many(model, watch, unrelated).evidence == []


def test_the_restore_waits_while_the_breakers_still_trip() -> None:
    """A model whose breakers open on errors for 3000 s: the policy falls back by the error
    rate, then reads no errors from the fallback answers. Without the hold it restored
    after 2 * clear_after (1200 s) and fell back again twice (restores at 2279 and 3618 s,
    fallbacks at 2418 and 3757 s); with it, one fallback and one restore once the trips
    are below half the share (4150 s, a batch after the last trip) and quiet since."""
    monitor = Monitor(
        slo_model("slo = { latency_p99_ms = 50, error_rate = 0.01, trip_share = 0.5 }\n")
    )
    records = [served(i, 20.0) for i in range(1000)]
    records += [served(1000 + i, 0.3, "fallback", "breaker_open:errors", 1) for i in range(3000)]
    records += [served(4000 + i, 20.0) for i in range(2000)]
    commands, holds = [], []
    for k in range(0, len(records), 50):
        effects = monitor.observe(Batch.from_records("ranker", records[k : k + 50]))
        commands += [(c.action, c.detector, c.issued_at // 1000 - 1000) for c in effects.commands]
        holds += [(a.severity, a.text) for a in effects.alerts if a.event == "restore_hold"]
        # The hold recurs with every batch: not an alarm that forces a checkpoint.
        assert not [e for e in effects.alarms if e.detector == "restore_hold"]
    assert commands == [("fallback", "error_rate", 1079), ("restore", "health", 5349)]
    assert holds == [
        (
            "warning",
            "ranker: its restore waits: the nodes' breakers served 50% of the last 200 "
            "requests (it waits until that is below 25%)",
        ),
        ("normal", "ranker: its restore no longer waits for the breakers (0% tripped)"),
    ]


def test_a_fallback_without_trips_is_not_held() -> None:
    model = slo_model()
    watch = new_serving_watch(model)
    assert watch is not None
    observe_many(model, watch, [served(i, 0.3, "fallback", "timeout", 1) for i in range(200)])
    assert watch.tripping
    held = hold_restore(model, watch, True, 200.0)
    [(position, evidence)] = held.evidence
    assert (position, evidence.detector, evidence.alarm) == (-1, "restore_hold", True)
    assert evidence.details == {"trip_share": 1.0, "trip_share_limit": 0.5, "holds": "restore"}
    # Serving live (say, its breakers trip on a model the policy has not judged yet), or
    # on a fallback with the trips gone, nothing waits.
    ended = hold_restore(model, watch, False, 201.0)
    assert ended.evidence == [] and [a.severity for a in ended.alerts] == ["normal"]
    observe_many(model, watch, [served(200 + i, 20.0) for i in range(200)])
    assert not watch.tripping and hold_restore(model, watch, True, 400.0).evidence == []


def test_trips_over_the_share_open_a_fleet_wide_alert_and_close_below_half() -> None:
    model = slo_model()
    watch = new_serving_watch(model)
    assert watch is not None
    calm = [served(i, 20.0) for i in range(200)]
    assert observe_many(model, watch, calm).alerts == []
    tripped = [
        served(200 + i, 0.3, "fallback", "breaker_open:latency" if i % 5 else "timeout", 1)
        for i in range(100)
    ]
    opened = observe_many(model, watch, tripped).alerts
    assert [(a.event, a.severity, a.value) for a in opened] == [("breaker_trips", "major", "0.50")]
    # The trips leave the window after 100 more calm answers; 50 of 200 is not below half.
    assert observe_many(model, watch, [served(300 + i, 20.0) for i in range(150)]).alerts == []
    closed = observe_many(model, watch, [served(450, 20.0)]).alerts
    assert [(a.event, a.severity, a.value) for a in closed] == [("breaker_trips", "normal", "0.24")]


def test_serving_points_per_level_count_predictions_slow_answers_and_trips() -> None:
    model = slo_model()
    watch = new_serving_watch(model)
    assert watch is not None
    batch = [
        served(0, 20.0),
        served(1, 70.0),
        served(2, 100.2, "fallback", "timeout", 1),
        served(3, 0.4, "fallback", "control", 2),
        served(4, 0.2, "fallback", "error"),  # no level said: the first fallback
    ]
    points = observe_many(model, watch, batch).points
    assert [(p.tags["level"], dict(p.fields), p.time_ms) for p in points] == [
        (
            "0",
            {
                "predictions": 2,
                "slow": 1,
                "trips": 0,
                "latency_mean_ms": 45.0,
                "latency_max_ms": 70.0,
            },
            1_001_000,
        ),
        (
            "1",
            {
                "predictions": 2,
                "slow": 1,
                "trips": 1,
                "latency_mean_ms": 50.2,
                "latency_max_ms": 100.2,
            },
            1_004_000,
        ),
        (
            "2",
            {
                "predictions": 1,
                "slow": 0,
                "trips": 0,
                "latency_mean_ms": 0.4,
                "latency_max_ms": 0.4,
            },
            1_003_000,
        ),
    ]
    assert {p.measurement for p in points} == {"serving"}
    assert {p.tags["tier"] for p in points} == {"cpu"}
