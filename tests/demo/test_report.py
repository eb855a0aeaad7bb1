"""The demo's report as a pure function: timeline, commands, switches and alerts in, rows out."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from streams.demo.report import (
    DETECTORS_BY_KIND,
    AlertEvent,
    EffectLatency,
    ObservedCommand,
    Report,
    Switch,
    WorkerLag,
    build_report,
    detects,
    parse_iso_ms,
)
from streams.simulate.scenario import INCIDENT_KINDS
from streams.simulate.timeline import iso_utc

T0 = parse_iso_ms("2026-11-28T12:00:00Z")
END = T0 + 180_000


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def incident(kind: str, model: str, start_s: float, until_s: float | None = None) -> dict[str, Any]:
    """A timeline record as the simulator writes it (only the fields the report reads)."""
    return {
        "kind": kind,
        "model": model,
        "feature": f"{model}.amount" if kind.startswith("drift") else None,
        "at_epoch": at(start_s) / 1000,
        "until_epoch": None if until_s is None else at(until_s) / 1000,
    }


def fallback(
    model: str,
    seconds: float,
    detector: str = "drift_psi",
    seq: int = 1,
    decided_s: float | None = None,
) -> ObservedCommand:
    """Sent at ``seconds``, decided at ``decided_s`` (default: the same time)."""
    decided = at(seconds if decided_s is None else decided_s)
    return ObservedCommand(model, "fallback", detector, at(seconds), seq, decided)


def restore(model: str, seconds: float, seq: int = 2) -> ObservedCommand:
    return ObservedCommand(model, "restore", "health", at(seconds), seq, at(seconds))


def alert(model: str, seconds: float, event: str = "ModelDegraded", **kw: Any) -> AlertEvent:
    """A health alert by default; a detector alert's detector is its event, as the tap reads it."""
    fields: dict[str, Any] = {"group": "health", "severity": "warning", "alert_id": f"a-{model}"}
    fields |= kw
    if fields["group"] == "detector":
        fields.setdefault("detector", event)
    return AlertEvent(model=model, event=event, at_ms=at(seconds), **fields)


def report(
    timeline: list[dict[str, Any]],
    commands: list[ObservedCommand] = [],  # noqa: B006 (never mutated)
    switches: list[Switch] = [],  # noqa: B006
    alerts: list[AlertEvent] = [],  # noqa: B006
    bounds: dict[str, float] | None = None,
) -> Report:
    return build_report(
        timeline,
        commands,
        switches,
        alerts,
        scenario="test",
        started_at=T0,
        ended_at=END,
        bounds_s=bounds or {"drift_abrupt": 40.0},
    )


def test_an_incident_is_detected_by_its_first_alert_and_switched_after_its_command() -> None:
    result = report(
        [incident("drift_abrupt", "fraud-001", 45, 100)],
        commands=[fallback("fraud-001", 66), restore("fraud-001", 130)],
        switches=[
            Switch("fraud-001", "fallback", at(66.004)),
            Switch("fraud-001", "live", at(130.1)),
        ],
        alerts=[
            alert("fraud-001", 56.5, detector="drift_psi"),
            alert("fraud-001", 66.2, "ModelFallback", severity="major", detector="drift_psi"),
        ],
    )
    [row] = result.incidents
    assert (row.detected_at, row.detector) == (at(56.5), "drift_psi")
    assert (row.command_at, row.switched_at) == (at(66), at(66.004))
    assert (row.alert_id, row.recovered) == ("a-fraud-001", True)
    assert result.false_fallbacks == () and result.missed == ()


def test_a_command_before_any_alert_is_the_detection() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10)],
        commands=[fallback("m", 20, detector="drift_ks")],
        alerts=[alert("m", 21, group="detector", event="drift_ks", alert_id="d-m")],
    )
    [row] = result.incidents
    assert (row.detected_at, row.detector, row.alert_id) == (at(20), "drift_ks", "d-m")
    assert (row.switched_at, row.recovered) == (None, False)


def test_the_health_alert_is_preferred_to_a_detector_alert_for_the_id() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10)],
        alerts=[
            alert("m", 12, group="detector", event="drift_psi", alert_id="det"),
            alert("m", 13, alert_id="health"),
        ],
    )
    [row] = result.incidents
    assert (row.detected_at, row.detector, row.alert_id) == (at(12), "drift_psi", "health")


def test_alarms_outside_the_bound_or_on_other_models_or_quiet_ones_do_not_detect() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10)],
        commands=[fallback("m", 51), fallback("other", 15)],
        alerts=[
            alert("m", 9.9),  # before the injection
            alert("m", 20, severity="normal", event="ModelHealthy"),  # not an alarm
            alert("m", 21, group="escalation", severity="critical"),  # not a detection group
            alert("other", 12),
        ],
    )
    [row] = result.incidents
    assert (row.detected_at, row.command_at, row.alert_id) == (None, None, None)
    assert [r.kind for r in result.missed] == ["drift_abrupt"]


def test_only_a_detector_that_fits_the_kind_detects_it() -> None:
    timeline = [
        incident("label_leak", "fraud-006", 5),
        incident("broken_model", "ctr-007", 10, 40),
        incident("drift_gradual", "ltv-003", 10, 50),
    ]
    result = report(
        timeline,
        commands=[
            # The score moved first, with the drifting feature: the fleet's answer, not
            # the drift's detection.
            fallback("ltv-003", 14, detector="score", seq=1),
            fallback("ctr-007", 12, detector="drift_psi", seq=1),
            fallback("ctr-007", 20, detector="score", seq=2),
        ],
        alerts=[
            alert("fraud-006", 8, group="detector", event="shadow_agreement", alert_id="s"),
            alert("ctr-007", 11, detector="drift_psi", alert_id="h"),
            alert("ltv-003", 13, detector="score", alert_id="h3"),
            alert("ltv-003", 18, group="detector", event="drift_psi", alert_id="d3"),
        ],
    )
    leak, broken, drift = result.incidents
    assert (leak.detected_at, leak.detector, leak.alert_id) == (None, None, None)
    assert (broken.detected_at, broken.detector) == (at(20), "score")
    assert (broken.command_at, broken.alert_id) == (at(12), "h")
    assert (drift.detected_at, drift.detector) == (at(18), "drift_psi")
    assert (drift.command_at, drift.alert_id) == (at(14), "h3")
    assert [row.model for row in result.missed] == ["fraud-006"]


def test_a_fitting_detector_alert_detects_and_names_the_alert_without_a_health_alert() -> None:
    result = report(
        [incident("label_leak", "fraud-006", 5)],
        alerts=[
            alert("fraud-006", 8, group="detector", event="shadow_agreement", alert_id="s"),
            alert("fraud-006", 9, group="detector", event="label_leak", alert_id="leak"),
        ],
    )
    [row] = result.incidents
    assert (row.detected_at, row.detector, row.alert_id) == (at(9), "label_leak", "leak")


def test_a_promotion_detects_a_better_shadow_though_it_is_informational() -> None:
    timeline = [incident("shadow_better", "ctr-002", 0), incident("shadow_worse", "churn-010", 0)]
    verdict = {"group": "detector", "event": "shadow_verdict"}
    result = report(
        timeline,
        alerts=[
            alert(
                "ctr-002",
                30,
                **verdict,
                severity="informational",
                detector="shadow_verdict:promote",
                alert_id="p",
            ),
            alert(
                "churn-010",
                20,
                **verdict,
                severity="informational",
                detector="shadow_verdict:promote",
                alert_id="wrong",
            ),
            alert(
                "churn-010",
                40,
                **verdict,
                severity="warning",
                detector="shadow_verdict:reject",
                alert_id="r",
            ),
        ],
    )
    better, worse = result.incidents
    assert (better.detected_at, better.detector, better.alert_id) == (
        at(30),
        "shadow_verdict:promote",
        "p",
    )
    assert (worse.detected_at, worse.detector, worse.alert_id) == (
        at(40),
        "shadow_verdict:reject",
        "r",
    )
    assert (better.command_at, worse.command_at) == (None, None)


@pytest.mark.parametrize(
    ("kind", "detector", "fits"),
    [
        ("drift_abrupt", "drift_psi", True),
        ("drift_gradual", "drift_wasserstein", True),
        ("drift_abrupt", "score", False),
        ("availability_gap", "availability_gap", True),
        ("availability_gap", "write_lag_sla", True),
        ("availability_gap", "write_lag", False),
        ("label_leak", "label_leak", True),
        ("label_leak", "future_values", True),
        ("label_leak", "shadow_agreement", False),
        ("broken_model", "score", True),
        ("broken_model", "error_rate", True),
        ("broken_model", "performance_drop", True),
        ("broken_model", "estimated_accuracy", True),
        ("broken_model", "drift_psi", False),
        ("shadow_better", "shadow_verdict:promote", True),
        ("shadow_better", "shadow_verdict:reject", False),
        ("shadow_worse", "shadow_verdict:reject", True),
        ("shadow_worse", "shadow_verdict:promote", False),
        ("shadow_worse", "shadow_agreement", False),
        ("broken_model", None, False),
        ("a_kind_nobody_knows", "score", False),
    ],
)
def test_detects_maps_kinds_to_detector_names_and_prefixes(
    kind: str, detector: str | None, fits: bool
) -> None:
    assert detects(kind, detector) is fits


def test_every_incident_kind_of_the_simulator_has_its_detectors() -> None:
    assert set(DETECTORS_BY_KIND) == set(INCIDENT_KINDS)


def test_each_kind_has_its_own_bound_and_others_the_default() -> None:
    timeline = [incident("drift_gradual", "a", 0), incident("label_leak", "b", 0)]
    commands = [fallback("a", 70), fallback("b", 70)]
    result = report(timeline, commands, bounds={"drift_gradual": 80.0})
    assert [row.command_at for row in result.incidents] == [at(70), None]
    # b's incident never ends, so its fallback is not false even though it came late.
    assert result.false_fallbacks == ()


def test_a_fallback_on_a_healthy_model_or_long_after_the_incident_is_false() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10, until_s=30)],
        commands=[fallback("m", 69.9), fallback("m", 71, seq=3), fallback("healthy", 90)],
        switches=[Switch("healthy", "fallback", at(90.003))],
    )
    assert [(f.model, f.command_at, f.switched_at) for f in result.false_fallbacks] == [
        ("m", at(71), None),
        ("healthy", at(90), at(90.003)),
    ]


def test_incidents_scheduled_after_an_interrupted_run_ended_are_left_out() -> None:
    result = build_report(
        [incident("drift_abrupt", "m1", 10), incident("broken_model", "m2", 60)],
        [],
        [],
        [alert("m1", 20, "drift_psi", group="detector")],
        scenario="test",
        started_at=T0,
        ended_at=at(59),
    )
    assert [(row.kind, row.model) for row in result.incidents] == [("drift_abrupt", "m1")]
    assert result.incidents[0].detected_at == at(20)


def test_an_incident_still_within_its_bound_when_the_run_ended_is_pending_not_missed() -> None:
    result = build_report(
        [incident("drift_abrupt", "m1", 10), incident("broken_model", "m2", 50)],
        [],
        [],
        [],
        scenario="test",
        started_at=T0,
        ended_at=at(75),
        bounds_s={"drift_abrupt": 60.0, "broken_model": 30.0},
    )
    # m1's bound ended at 70 s, before the run did; m2's would have at 80 s.
    assert [row.model for row in result.missed] == ["m1"]
    assert [row.model for row in result.pending] == ["m2"]
    text = result.to_markdown()
    assert "Detected 0 of 2 incidents." in text
    assert "Missed: drift_abrupt on m1." in text
    assert "Still within their bound when the run ended: broken_model on m2." in text
    assert Report.from_json(json.loads(result.dumps())) == result


def test_a_report_saved_without_detect_by_counts_every_undetected_incident_missed() -> None:
    document = json.loads(report([incident("drift_abrupt", "m", 170)]).dumps())
    del document["incidents"][0]["detect_by"]
    again = Report.from_json(document)
    assert [row.model for row in again.missed] == ["m"] and again.pending == ()


def test_a_command_decided_in_time_but_sent_late_counts_with_its_late_alert() -> None:
    # The worker was 50 s behind: it decided at 30 s (event time) and sent at 80 s.
    result = report(
        [incident("drift_abrupt", "m", 10, until_s=40)],
        commands=[fallback("m", 80, decided_s=30)],
        switches=[Switch("m", "fallback", at(80.006))],
        alerts=[alert("m", 80.1, "ModelFallback", severity="major")],
    )
    [row] = result.incidents
    assert (row.detected_at, row.command_at, row.switched_at) == (at(30), at(80), at(80.006))
    # The decision's event time beside its sending: 50 s of the worker's lag, not of the
    # policy's confirmation.
    assert row.decided_at == at(30)
    assert "| +20.0 s | drift_psi | +20.0 s | +70.0 s | - | 6 ms |" in result.to_markdown()
    assert row.alert_id == "a-m"
    assert result.false_fallbacks == ()


def test_a_switch_before_the_command_is_not_its_switch() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10)],
        commands=[fallback("m", 20)],
        switches=[Switch("m", "fallback", at(19)), Switch("m", "live", at(19.5))],
    )
    assert result.incidents[0].switched_at is None


def test_a_restore_before_the_fallback_is_no_recovery() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10)],
        commands=[restore("m", 15, seq=1), fallback("m", 20, seq=2)],
    )
    assert result.incidents[0].recovered is False


def test_json_has_the_fields_of_the_issue_in_iso_8601_and_reads_back() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10, 60), incident("label_leak", "n", 5)],
        commands=[fallback("m", 20), restore("m", 80), fallback("healthy", 90)],
        switches=[Switch("m", "fallback", at(20.002))],
        alerts=[alert("m", 18, detector="drift_psi")],
    )
    document = json.loads(result.dumps())
    assert set(document) >= {"incidents", "false_fallbacks"}
    first, second = document["incidents"]
    assert list(first) == [
        "kind",
        "model",
        "feature",
        "injected_at",
        "detected_at",
        "detector",
        "decided_at",
        "command_at",
        "switched_at",
        "alert_id",
        "recovered",
        "detect_by",
    ]
    assert first == {
        "kind": "drift_abrupt",
        "model": "m",
        "feature": "m.amount",
        "injected_at": "2026-11-28T12:00:10.000Z",
        "detected_at": "2026-11-28T12:00:18.000Z",
        "detector": "drift_psi",
        "decided_at": "2026-11-28T12:00:20.000Z",
        "command_at": "2026-11-28T12:00:20.000Z",
        "switched_at": "2026-11-28T12:00:20.002Z",
        "alert_id": "a-m",
        "recovered": True,
        "detect_by": "2026-11-28T12:00:50.000Z",  # its bound here: 40 s
    }
    assert second["feature"] is None and second["detected_at"] is None
    assert document["false_fallbacks"] == [
        {
            "model": "healthy",
            "command_at": iso_utc(at(90)),
            "detector": "drift_psi",
            "switched_at": None,
        }
    ]
    assert Report.from_json(document) == result


def test_markdown_has_one_row_per_incident_with_delays_and_the_switch_in_ms() -> None:
    result = report(
        [incident("drift_abrupt", "m", 10, 60), incident("label_leak", "n", 5)],
        commands=[fallback("m", 20), fallback("healthy", 90)],
        switches=[Switch("m", "fallback", at(20.007))],
        alerts=[alert("m", 18, detector="drift_psi")],
    )
    text = result.to_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows[0] == (
        "| 1 | drift_abrupt | m / m.amount | 12:00:10.000 | +8.0 s | drift_psi | +10.0 s "
        "| +10.0 s | - | 7 ms | a-m | no |"
    )
    assert rows[1].startswith(
        "| 2 | label_leak | n | 12:00:05.000 | - | - | - | - | - | - | - | no |"
    )
    assert "Detected 1 of 2 incidents." in text
    assert "Missed: label_leak on n." in text
    assert "- healthy at 12:01:30.000 by drift_psi" in text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"incidents": [], "false_fallbacks": []}, "missing field 'started_at'"),
        (
            {"started_at": "yesterday", "ended_at": "x", "incidents": [], "false_fallbacks": []},
            "expected an ISO 8601 time, got 'yesterday'",
        ),
    ],
)
def test_a_bad_saved_report_is_a_clear_error(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Report.from_json(document)


def test_alert_churn_counts_each_models_changes_and_its_flaps() -> None:
    toggling = [
        alert("ltv", seconds, event="score", group="detector", severity=severity, alert_id="s")
        for seconds, severity in [(10, "warning"), (15, "normal"), (20, "warning"), (25, "normal")]
    ]
    # A health alert that only escalates, then clears long after: no flap.
    health = [
        alert("ctr", 10, severity="warning"),
        alert("ctr", 12, event="ModelFallback", severity="major"),
        alert("ctr", 400, event="ModelHealthy", severity="normal"),
    ]
    result = report([incident("broken_model", "ctr", 5)], alerts=[*toggling, *health])
    assert [(c.model, c.changes, c.flaps) for c in result.alert_churn] == [
        ("ctr", 3, 0),
        ("ltv", 4, 2),
    ]
    text = result.to_markdown()
    assert "Alert changes: 7 on 2 models; flaps (a change that is not an escalation within " in text
    assert "previous one): ltv 2." in text
    assert Report.from_json(json.loads(result.dumps())) == result


def test_a_report_saved_before_alert_churn_reads_back_without_it() -> None:
    document = json.loads(report([incident("drift_abrupt", "m", 10)]).dumps())
    del document["alert_churn"]
    assert Report.from_json(document).alert_churn == ()


def test_the_workers_maximum_lag_is_in_the_markdown_and_reads_back() -> None:
    timeline = [incident("drift_abrupt", "m", 10)]
    result = dataclasses.replace(report(timeline), worker_max_lag=WorkerLag(1234, 2.46))
    assert "Worker's maximum lag: 2.5 s; 1,234 records at most." in result.to_markdown()
    document = json.loads(result.dumps())
    assert document["worker_max_lag"] == {"records": 1234, "seconds": 2.46, "at_ms": None}
    assert Report.from_json(document) == result
    # When it was read, against the run's start (before it: the worker's start-up).
    started = result.started_at
    for at_ms, said in ((started + 4_300, "+4.3 s"), (started - 3_000, "-3.0 s")):
        lag = WorkerLag(1234, 2.46, at_ms)
        read = dataclasses.replace(result, worker_max_lag=lag)
        assert (
            f"Worker's maximum lag: 2.5 s at {iso_utc(at_ms)[11:23]} ({said} from the run's "
            "start); 1,234 records at most." in read.to_markdown()
        )
        assert Report.from_json(json.loads(read.dumps())).worker_max_lag == lag
    # A report saved before it existed, or a run that could not measure it.
    del document["worker_max_lag"]
    assert Report.from_json(document).worker_max_lag is None
    assert "Worker's maximum lag: not measured." in report(timeline).to_markdown()


def test_the_workers_effect_latency_is_in_the_markdown_and_reads_back() -> None:
    timeline = [incident("drift_abrupt", "m", 10)]
    metrics = "\n".join(
        f'failsoft_effect_latency_seconds_bucket{{le="{bound}"}} {count}'
        for bound, count in (
            ("0.01", 0.0),
            ("0.025", 9000.0),
            ("0.05", 9850.0),
            ("0.075", 9990.0),
            ("0.1", 10000.0),
            ("+Inf", 10000.0),
        )
    )
    latency = EffectLatency.from_metrics(metrics)
    assert latency == EffectLatency(10_000, 0.025, 0.075)
    result = dataclasses.replace(report(timeline), effect_latency=latency)
    assert (
        "Worker's effects after a record's read: p50 at most 0.025 s, p99 at most 0.075 s "
        "(10,000 records)." in result.to_markdown()
    )
    document = json.loads(result.dumps())
    assert Report.from_json(document) == result
    del document["effect_latency"]
    assert Report.from_json(document).effect_latency is None
    assert "effects after a record's read: not measured." in report(timeline).to_markdown()
    # A worker that has timed nothing yet; one whose slowest 1% waited past the last bound.
    nothing = 'failsoft_effect_latency_seconds_bucket{le="+Inf"} 0.0'
    assert EffectLatency.from_metrics(nothing) is None
    late = metrics.replace('le="+Inf"} 10000.0', 'le="+Inf"} 10200.0')
    assert EffectLatency.from_metrics(late) == EffectLatency(10_200, 0.025, math.inf)


def level(
    model: str, seconds: float, level: int, seq: int, detector: str = "ladder"
) -> ObservedCommand:
    action = "restore" if level == 0 else "fallback"
    return ObservedCommand(model, action, detector, at(seconds), seq, at(seconds - 1), level)


def test_a_latency_jump_is_detected_by_the_breaker_trips_alert_before_its_fallback() -> None:
    result = report(
        [incident("latency_jump", "gpu", 50, 120)],
        commands=[level("gpu", 58, 1, 1, detector="error_rate"), level("gpu", 130, 0, 2)],
        alerts=[
            alert("gpu", 53, "breaker_trips", group="detector", alert_id="t", severity="major"),
            alert("gpu", 58.5, "ModelFallback", severity="major", detector="error_rate"),
        ],
        bounds={"latency_jump": 30.0},
    )
    [row] = result.incidents
    assert (row.detected_at, row.detector, row.command_at) == (at(53), "breaker_trips", at(58))
    assert (row.alert_id, row.recovered) == ("a-gpu", True)
    assert result.false_fallbacks == ()


def test_the_ladders_steps_are_listed_in_order_with_their_levels_and_read_back() -> None:
    steps = [
        level("gpu", 58, 1, 1, detector="error_rate"),
        level("gpu", 80, 2, 2),
        level("gpu", 110, 1, 3),
        level("gpu", 130, 0, 4),
    ]
    result = report(
        [incident("latency_jump", "gpu", 50, 120), incident("broken_model", "cpu", 75, 105)],
        # Out of order, as the taps may hand them over; commands without a level are no step.
        commands=[*reversed(steps), fallback("cpu", 79, detector="error_rate")],
        bounds={"latency_jump": 30.0, "broken_model": 30.0},
    )
    assert result.ladder_steps == tuple(steps)
    text = result.to_markdown()
    table = text.split("Ladder steps")[1].splitlines()
    assert table[4:8] == [
        "| gpu | 1 | fallback | 1 | error_rate | +57.0 s | 12:00:58.000 |",
        "| gpu | 2 | fallback | 2 | ladder | +79.0 s | 12:01:20.000 |",
        "| gpu | 1 | fallback | 3 | ladder | +109.0 s | 12:01:50.000 |",
        "| gpu | 0 | restore | 4 | ladder | +129.0 s | 12:02:10.000 |",
    ]
    document = json.loads(result.dumps())
    assert document["ladder_steps"][1] == {
        "model": "gpu",
        "action": "fallback",
        "detector": "ladder",
        "at": "2026-11-28T12:01:20.000Z",
        "seq": 2,
        "issued_at": "2026-11-28T12:01:19.000Z",
        "level": 2,
    }
    assert Report.from_json(document) == result
    # A report saved before ladders, or a run without one, has no section.
    del document["ladder_steps"]
    assert Report.from_json(document).ladder_steps == ()
    assert "Ladder steps" not in report([incident("drift_abrupt", "m", 10)]).to_markdown()


def test_each_models_first_serving_alarm_is_listed_and_reads_back() -> None:
    def serving(seconds: float, event: str, severity: str = "major") -> AlertEvent:
        return alert("gpu", seconds, event, group="detector", alert_id=event, severity=severity)

    result = report(
        [incident("latency_jump", "gpu", 50, 120)],
        alerts=[
            serving(53, "breaker_trips"),
            serving(54, "error_rate", "warning"),
            serving(60, "breaker_trips", "normal"),
            serving(61, "breaker_trips"),
            serving(70, "latency", "warning"),
            serving(80, "restore_hold", "warning"),
        ],
        bounds={"latency_jump": 30.0},
    )
    assert [(a.detector, a.at_ms) for a in result.serving_alarms] == [
        ("breaker_trips", at(53)),
        ("latency", at(70)),
        ("restore_hold", at(80)),
    ]
    assert (
        "Serving alarms (a model's latency against its SLO, its nodes' breakers, a restore "
        "waiting for them): gpu breaker_trips [major] at 12:00:53.000, gpu latency [warning] "
        "at 12:01:10.000, gpu restore_hold [warning] at 12:01:20.000."
    ) in result.to_markdown()
    document = json.loads(result.dumps())
    assert document["serving_alarms"][0] == {
        "alert_id": "breaker_trips",
        "model": "gpu",
        "group": "detector",
        "event": "breaker_trips",
        "severity": "major",
        "detector": "breaker_trips",
        "at": "2026-11-28T12:00:53.000Z",
    }
    assert Report.from_json(document) == result


def test_the_simulators_delay_is_in_the_markdown_by_decision_and_reads_back() -> None:
    timeline = [incident("drift_abrupt", "m", 10), incident("drift_abrupt", "n", 20)]
    # m's command was decided at 12.5 s, n's at 25 s: the simulator was 1.25 s behind
    # in the second of m's, never in n's.
    commands = [fallback("m", 15, decided_s=12.5), fallback("n", 26, decided_s=25)]
    plain = report(timeline, commands=commands)
    second = at(12)
    result = dataclasses.replace(plain, simulator_behind=((second, 1.25), (at(13), 2.5)))
    assert result.simulator_delay_s(at(12.5)) == 1.25
    assert result.simulator_delay_s(at(25)) == 0.0
    markdown = result.to_markdown()
    rows = [
        line for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")
    ]
    assert [row.split(" | ")[8] for row in rows] == ["1.2 s", "0.0 s"]
    assert "Simulator's delay: it sent records at most 2.5 s after their time." in markdown
    document = json.loads(result.dumps())
    assert Report.from_json(document) == result
    del document["simulator_behind"]
    assert Report.from_json(document).simulator_behind is None
    unmeasured = plain.to_markdown()
    assert "Simulator's delay: not measured." in unmeasured
    assert all(
        line.split(" | ")[8] == "-" for line in unmeasured.splitlines() if line.startswith("| 1 ")
    )
