"""The serving watch: live latency against the SLO, the nodes' breaker trips, the series."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from schemas.contracts import Prediction
from streams.monitor import Batch, Monitor
from streams.monitor.serving_watch import new_serving_watch, observe_many
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
