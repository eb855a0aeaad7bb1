"""The live view: models with what the node serves and the worker's state, and the events."""

from __future__ import annotations

import io

from rich.console import Console

from streams.demo.report import AlertEvent, InjectedIncident, ObservedCommand, Switch
from streams.demo.view import DemoView
from tests.demo.test_report import T0, at


def view(console: Console) -> DemoView:
    incidents = [
        InjectedIncident("drift_abrupt", "fraud-001", "fraud-001.amount", at(10), at(40)),
        InjectedIncident("broken_model", "ctr-012", None, at(50), None),
    ]
    return DemoView(console, "demo", ["fraud-001", "ctr-012"], incidents, T0, 180_000)


def test_off_a_terminal_each_event_is_one_printed_line_in_time_order_of_arrival() -> None:
    out = io.StringIO()
    demo = view(Console(file=out, width=200, force_terminal=False))
    demo.set_status("playing the scenario")
    demo.set_status("playing the scenario")  # printed once
    demo.announce_injections(at(20))
    demo.announce_injections(at(21))  # announced once
    demo.on_alert(AlertEvent("a1", "fraud-001", "health", "ModelDegraded", "warning", at(22)))
    demo.on_command(ObservedCommand("fraud-001", "fallback", "drift_psi", at(25), 1, at(24)))
    demo.on_switch(Switch("fraud-001", "fallback", at(25.004)))
    assert out.getvalue().splitlines() == [
        "demo: playing the scenario",
        "12:00:10.000  inject   drift_abrupt on fraud-001 / fraud-001.amount",
        "12:00:22.000  alert    ModelDegraded fraud-001 [warning] a1",
        "12:00:25.000  command  fallback fraud-001 by drift_psi (seq 1)",
        "12:00:25.004  node     fraud-001 now serves fallback",
    ]


def test_the_screen_shows_each_model_state_and_the_incident_under_way() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    demo = view(console)
    demo.on_switch(Switch("fraud-001", "fallback", at(25)))
    demo.set_health([{"model_id": "fraud-001", "state": "fallback", "why": "2 alarms confirmed"}])
    out.truncate(0)
    out.seek(0)
    console.print(demo.render(now_ms=at(30)))
    lines = out.getvalue().splitlines()
    fraud = next(line for line in lines if line.startswith("fraud-001"))
    ctr = next(line for line in lines if line.startswith("ctr-012"))
    assert fraud.split()[:5] == ["fraud-001", "fallback", "fallback", "2", "alarms"]
    assert fraud.split()[-1] == "drift_abrupt"
    assert ctr.split() == ["ctr-012", "live", "unknown"]  # its incident starts at 50 s
    assert "30 s of 180 s" in lines[0]
