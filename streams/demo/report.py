"""The demo's report: what was injected, and what failsoft and the serving node did about it.

``build_report`` is a pure function of four lists: the scenario's timeline (what was
injected, when), the control commands seen on the control topic, the serving node's mode
switches, and the Alerta alert history. All times are epoch milliseconds on the wall
clock, which the simulator's compressed clock follows when it plays in real time.

Matching rules, per incident of model M injected at ``t`` with a bound ``b`` for its kind:

- **detected**: by the first alarm for M in ``[t, t + b]`` from a detector that fits the
  incident's kind (``DETECTORS_BY_KIND``): an alert (health or detector group, severity
  above normal) at the time Alerta received it, or a fallback command at the time of its
  decision (its ``issued_at``: the event time of the prediction that settled it, on the
  same clock as ``t``), whichever came first. A detector alert's detector is its event; a
  health alert's and a command's is the one that caused the transition. An alarm of
  another detector (a shadow's disagreement during a label leak) detects nothing;
- **command**: the first fallback command for M decided in ``[t, t + b]``, whichever
  detector settled it (it is the fleet's answer while the incident is on); its time in
  the report is when the worker produced it;
- **decided**: that command's ``issued_at``, the event time of the decision. Decided
  minus detected is the health policy's confirmation (alarms at distinct times, then its
  dwell); command minus decided is how far the worker was behind its input when it
  decided. Detected alone cannot separate the two: an alert's arrival already carries the
  worker's lag, and when that lag is longer than the confirmation the decision comes
  first and is the detection;
- **switched**: the first switch of M to ``fallback`` at or after that command was
  produced, within the bound;
- **alert**: the id of the model's first health alarm in the window, else of the first
  fitting detector alarm; the window reaches to the bound after the command when there is
  one;
- **recovered**: a restore command for M came after the fallback command.

The **serving alarms** are each model's first alarm of the latency detector, of the
fleet-wide ``breaker_trips`` alert and of ``restore_hold`` (its restore waited for its
breakers), whichever detection came first. The **ladder steps**
are the commands that carried a level of a model's fallback ladder (0 the model, 1 its
first fallback, ...), in the order the worker produced them: a step down when the level
in use went bad, a climb one level at a time after the dwell.

Alert churn, per model: every change of an alert it has (its opening and each change of
severity), and the **flaps** among them: a change that is not an escalation and comes
within ``FLAP_WINDOW_S`` of the same alert's previous change. Each is a page that told
on-call nothing new; the worker's damping should leave none.

A fallback command for a model with no incident active at the time of its decision (from
its injection to its end plus its kind's bound, or to the end of the run when it never
ends) is a **false fallback**. Incidents scheduled after the run ended (it was stopped
early) were never injected and are not in the report; one injected but still within its
bound when the run ended is **pending**, not missed (``detect_by`` is its bound's end).

The report also gives the worker's maximum lag seen during the run (``WorkerLag``, from
its ``/metrics``): how far its reading was behind the input topics, in records and
seconds; a command can come no sooner than that after its decision's input arrived. And
how soon after a record's read the worker handed over its model's effects
(``EffectLatency``, from the worker's histogram): the median and the 99th percentile.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from detectors.health.damping import SEVERITY_RANKS
from streams.simulate.timeline import iso_utc

__all__ = [
    "DEFAULT_BOUND_S",
    "DETECTORS_BY_KIND",
    "FLAP_WINDOW_S",
    "AlertChurn",
    "AlertEvent",
    "EffectLatency",
    "FalseFallback",
    "IncidentRow",
    "InjectedIncident",
    "ObservedCommand",
    "Report",
    "Switch",
    "WorkerLag",
    "build_report",
    "detects",
    "parse_iso_ms",
    "simulator_behind_of",
]

# How long after its injection an incident may take to be detected, when its kind has no
# bound of its own (wall-clock seconds).
DEFAULT_BOUND_S = 60.0
# The detectors whose alarm counts as detecting each incident kind: a name, or a prefix
# ending in "*". A kind not listed is detected by nothing.
DETECTORS_BY_KIND: Mapping[str, tuple[str, ...]] = {
    "drift_abrupt": ("drift_*",),
    "drift_gradual": ("drift_*",),
    "availability_gap": ("availability_gap", "write_lag_*"),
    "label_leak": ("label_leak", "future_values"),
    "broken_model": ("score", "error_rate", "performance_drop", "estimated_accuracy"),
    "shadow_better": ("shadow_verdict:promote",),
    "shadow_worse": ("shadow_verdict:reject",),
    # A slow model: the latency CUSUM on its live answers, the nodes' breaker trips
    # (a fleet-wide alert), or the fallbacks its tripped breakers served (error rate).
    "latency_jump": ("latency", "breaker_trips", "error_rate"),
}
# The detectors of a model's serving against its SLO, which the report lists on their own.
SERVING_DETECTORS = frozenset({"latency", "breaker_trips", "restore_hold"})
# Alert severities that are not an alarm: a health alert back to healthy, a closed detector.
QUIET_SEVERITIES = frozenset({"normal", "ok", "informational", "cleared"})
# Alerts that are news whatever their severity: a shadow's verdict (a promotion is
# informational). The tap names their detector with the verdict, e.g. "shadow_verdict:promote".
VERDICT_EVENTS = frozenset({"shadow_verdict"})
ALARM_GROUPS = frozenset({"health", "detector"})
# A non-escalating change of an alert this soon after its previous one is a flap (seconds,
# wall clock): the worker's default damping period.
FLAP_WINDOW_S = 300.0

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class InjectedIncident:
    """One line of the simulator's timeline."""

    kind: str
    model: str
    feature: str | None
    at_ms: int
    until_ms: int | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> InjectedIncident:
        until = record.get("until_epoch")
        return cls(
            kind=str(record["kind"]),
            model=str(record["model"]),
            feature=record.get("feature"),
            at_ms=round(float(record["at_epoch"]) * 1000),
            until_ms=None if until is None else round(float(until) * 1000),
        )


@dataclasses.dataclass(frozen=True)
class ObservedCommand:
    """A control command as it appeared on the topic: ``at_ms`` is when it was produced,
    ``issued_at_ms`` the event time of the decision (the command's ``issued_at``)."""

    model: str
    action: str
    detector: str
    at_ms: int
    seq: int
    issued_at_ms: int
    level: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "action": self.action,
            "detector": self.detector,
            "at": _iso(self.at_ms),
            "seq": self.seq,
            "issued_at": _iso(self.issued_at_ms),
            "level": self.level,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ObservedCommand:
        return cls(
            model=entry["model"],
            action=entry["action"],
            detector=entry["detector"],
            at_ms=parse_iso_ms(entry["at"]),
            seq=int(entry["seq"]),
            issued_at_ms=parse_iso_ms(entry["issued_at"]),
            level=entry["level"],
        )


@dataclasses.dataclass(frozen=True)
class Switch:
    """The serving node's listener changed a model's mode to ``mode`` at ``at_ms``."""

    model: str
    mode: str
    at_ms: int


@dataclasses.dataclass(frozen=True)
class AlertEvent:
    """One entry of an Alerta alert's history (a new alert, or a change of its severity)."""

    alert_id: str
    model: str
    group: str
    event: str
    severity: str
    at_ms: int
    detector: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        del fields["at_ms"]
        return fields | {"at": _iso(self.at_ms)}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> AlertEvent:
        fields = {key: value for key, value in entry.items() if key != "at"}
        return cls(**fields, at_ms=parse_iso_ms(entry["at"]))

    @property
    def alarm(self) -> bool:
        return self.group in ALARM_GROUPS and (
            self.severity not in QUIET_SEVERITIES or self.event in VERDICT_EVENTS
        )


@dataclasses.dataclass(frozen=True)
class IncidentRow:
    kind: str
    model: str
    feature: str | None
    injected_at: int
    detected_at: int | None
    detector: str | None
    command_at: int | None
    switched_at: int | None
    alert_id: str | None
    recovered: bool
    # The end of the incident's bound: it was missed only if undetected by then. None in
    # reports saved before the field existed, which judged every incident.
    detect_by: int | None = None
    # The event time of the command's decision (its issued_at); None without a command,
    # and in reports saved before the field existed.
    decided_at: int | None = None

    @property
    def detected(self) -> bool:
        return self.detected_at is not None

    def missed_by(self, ended_at: int) -> bool:
        """Whether it went undetected for its whole bound, within a run that ended then."""
        return not self.detected and (self.detect_by is None or self.detect_by <= ended_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "feature": self.feature,
            "injected_at": _iso(self.injected_at),
            "detected_at": _iso(self.detected_at),
            "detector": self.detector,
            "decided_at": _iso(self.decided_at),
            "command_at": _iso(self.command_at),
            "switched_at": _iso(self.switched_at),
            "alert_id": self.alert_id,
            "recovered": self.recovered,
            "detect_by": _iso(self.detect_by),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> IncidentRow:
        return cls(
            kind=entry["kind"],
            model=entry["model"],
            feature=entry["feature"],
            injected_at=parse_iso_ms(entry["injected_at"]),
            detected_at=_parse_optional(entry["detected_at"]),
            detector=entry["detector"],
            command_at=_parse_optional(entry["command_at"]),
            switched_at=_parse_optional(entry["switched_at"]),
            alert_id=entry["alert_id"],
            recovered=bool(entry["recovered"]),
            detect_by=_parse_optional(entry.get("detect_by")),
            decided_at=_parse_optional(entry.get("decided_at")),
        )


@dataclasses.dataclass(frozen=True)
class FalseFallback:
    model: str
    command_at: int
    detector: str
    switched_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "command_at": _iso(self.command_at),
            "detector": self.detector,
            "switched_at": _iso(self.switched_at),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> FalseFallback:
        return cls(
            model=entry["model"],
            command_at=parse_iso_ms(entry["command_at"]),
            detector=entry["detector"],
            switched_at=_parse_optional(entry["switched_at"]),
        )


@dataclasses.dataclass(frozen=True)
class AlertChurn:
    """How often a model's alerts changed in a run, and how many of the changes flapped."""

    model: str
    changes: int
    flaps: int

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "changes": self.changes, "flaps": self.flaps}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> AlertChurn:
        return cls(model=entry["model"], changes=int(entry["changes"]), flaps=int(entry["flaps"]))


@dataclasses.dataclass(frozen=True)
class WorkerLag:
    """How far the worker's reading was behind its input topics: the records it had not
    read, and the age of the last record it read while more waited."""

    records: int
    seconds: float
    # When the lag in seconds was read (epoch ms; None: not known), so that a lag at the
    # worker's start can be told from one during the incidents.
    at_ms: int | None = None

    def worse(self, other: WorkerLag | None) -> WorkerLag:
        """The larger of each, of this lag and ``other``, and when the larger in seconds
        was read.

        >>> WorkerLag(10, 0.5, 1000).worse(WorkerLag(3, 2.0, 2000))
        WorkerLag(records=10, seconds=2.0, at_ms=2000)
        """
        if other is None:
            return self
        longer = other if other.seconds > self.seconds else self
        return WorkerLag(max(self.records, other.records), longer.seconds, longer.at_ms)


@dataclasses.dataclass(frozen=True)
class EffectLatency:
    """Seconds from a record's read by the worker to its model's effects handed over, from
    the worker's ``failsoft_effect_latency_seconds`` histogram: the upper bound of the
    bucket holding the median record, and the 99th percentile's (``inf`` above the last).
    """

    records: int
    p50_s: float
    p99_s: float

    @classmethod
    def from_metrics(cls, metrics: str) -> EffectLatency | None:
        """The latency in a worker's ``/metrics`` text; None before any record was timed.

        >>> EffectLatency.from_metrics(
        ...     'failsoft_effect_latency_seconds_bucket{le="0.05"} 60.0\\n'
        ...     'failsoft_effect_latency_seconds_bucket{le="0.1"} 99.0\\n'
        ...     'failsoft_effect_latency_seconds_bucket{le="0.25"} 100.0\\n'
        ...     'failsoft_effect_latency_seconds_bucket{le="+Inf"} 100.0')
        EffectLatency(records=100, p50_s=0.05, p99_s=0.1)
        """
        prefix = 'failsoft_effect_latency_seconds_bucket{le="'
        buckets: list[tuple[float, float]] = []
        for line in metrics.splitlines():
            if line.startswith(prefix):
                bound, _, count = line[len(prefix) :].partition('"} ')
                buckets.append((float(bound), float(count)))
        if not buckets or buckets[-1][1] == 0:
            return None
        total = buckets[-1][1]

        def quantile(q: float) -> float:
            return next(bound for bound, count in buckets if count >= q * total)

        return cls(int(total), quantile(0.5), quantile(0.99))


@dataclasses.dataclass(frozen=True)
class Report:
    """One row per injected incident, in timeline order, and the false fallbacks."""

    scenario: str
    started_at: int
    ended_at: int
    incidents: tuple[IncidentRow, ...]
    false_fallbacks: tuple[FalseFallback, ...]
    # Models whose alerts changed, by model id; empty in reports saved before it existed.
    alert_churn: tuple[AlertChurn, ...] = ()
    # The worker's maximum lag during the run; None when not measured (or saved before).
    worker_max_lag: WorkerLag | None = None
    # Commands that carried a fallback ladder's level, in the order produced.
    ladder_steps: tuple[ObservedCommand, ...] = ()
    # Each model's first alarm of each serving detector (SERVING_DETECTORS), by time.
    serving_alarms: tuple[AlertEvent, ...] = ()
    # Seconds from a record's read to its effects, at the run's end; None when not measured.
    effect_latency: EffectLatency | None = None
    # How far behind its clock the simulator sent records, at most, per second of event
    # time (its first ms; seconds it was never behind are left out): a delay in "command"
    # that is the stand-in fleet's, not the worker's. None when not measured.
    simulator_behind: tuple[tuple[int, float], ...] | None = None

    def simulator_delay_s(self, at_ms: int | None) -> float | None:
        """How far behind its clock the simulator sent records in the second of ``at_ms``;
        None when not measured."""
        if self.simulator_behind is None or at_ms is None:
            return None
        return dict(self.simulator_behind).get(at_ms - at_ms % 1000, 0.0)

    @property
    def missed(self) -> tuple[IncidentRow, ...]:
        return tuple(row for row in self.incidents if row.missed_by(self.ended_at))

    @property
    def pending(self) -> tuple[IncidentRow, ...]:
        """Undetected, but the run ended (stopped early) before their bound did."""
        return tuple(
            row for row in self.incidents if not row.detected and not row.missed_by(self.ended_at)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "incidents": [row.to_json() for row in self.incidents],
            "false_fallbacks": [entry.to_json() for entry in self.false_fallbacks],
            "alert_churn": [entry.to_json() for entry in self.alert_churn],
            "worker_max_lag": (
                None if self.worker_max_lag is None else dataclasses.asdict(self.worker_max_lag)
            ),
            "ladder_steps": [step.to_json() for step in self.ladder_steps],
            "serving_alarms": [alarm.to_json() for alarm in self.serving_alarms],
            "effect_latency": (
                None if self.effect_latency is None else dataclasses.asdict(self.effect_latency)
            ),
            "simulator_behind": (
                None if self.simulator_behind is None else [list(p) for p in self.simulator_behind]
            ),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def to_markdown(self) -> str:
        """A Markdown table, one row per incident: delays from the injection in seconds,
        the switch in milliseconds after the command; then the missed and false fallbacks."""
        lines = [
            f"## failsoft demo report: scenario {self.scenario or '?'}",
            "",
            f"Run from {_iso(self.started_at)} to {_iso(self.ended_at)}. Times are UTC. "
            "Detected: seconds from the injection to the first alarm (an alert's arrival, "
            "or the event time at which the worker decided to fall back); decided: to the "
            "event time of the worker's fallback decision (after detected: the health "
            "policy's confirmation); command: to when the worker sent it (after decided: "
            "the worker's lag, and the simulator's); simulator: how far behind its clock the "
            "simulator sent records in the second of the decision; switch: milliseconds from "
            "the command to the serving node's switch.",
            "",
            "| # | kind | model / feature | injected | detected | detector | decided | command "
            "| simulator | switch | alert id | recovered |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for number, row in enumerate(self.incidents, start=1):
            target = row.model + (f" / {row.feature}" if row.feature else "")
            switch = (
                "-"
                if row.switched_at is None or row.command_at is None
                else f"{row.switched_at - row.command_at} ms"
            )
            delay = self.simulator_delay_s(row.decided_at)
            cells = [
                str(number),
                row.kind,
                target,
                _clock(row.injected_at),
                _after(row.injected_at, row.detected_at),
                row.detector or "-",
                _after(row.injected_at, row.decided_at),
                _after(row.injected_at, row.command_at),
                "-" if delay is None else f"{delay:.1f} s",
                switch,
                row.alert_id or "-",
                "yes" if row.recovered else "no",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        detected = sum(row.detected for row in self.incidents)
        lines += ["", f"Detected {detected} of {len(self.incidents)} incidents."]
        if self.missed:
            lines.append(f"Missed: {_named(self.missed)}.")
        if self.pending:
            lines.append(f"Still within their bound when the run ended: {_named(self.pending)}.")
        if self.false_fallbacks:
            lines.append(f"False fallbacks ({len(self.false_fallbacks)}):")
            lines += [
                f"- {entry.model} at {_clock(entry.command_at)} by {entry.detector}"
                for entry in self.false_fallbacks
            ]
        else:
            lines.append("False fallbacks: none.")
        if self.alert_churn:
            flapping = [entry for entry in self.alert_churn if entry.flaps]
            changes = sum(entry.changes for entry in self.alert_churn)
            lines.append(
                f"Alert changes: {changes} on {len(self.alert_churn)} models; flaps (a change "
                f"that is not an escalation within {FLAP_WINDOW_S:.0f} s of the alert's "
                "previous one): "
                + (", ".join(f"{e.model} {e.flaps}" for e in flapping) if flapping else "none")
                + "."
            )
        if self.serving_alarms:
            lines.append(
                "Serving alarms (a model's latency against its SLO, its nodes' breakers, "
                "a restore waiting for them): "
                + ", ".join(
                    f"{a.model} {a.detector} [{a.severity}] at {_clock(a.at_ms)}"
                    for a in self.serving_alarms
                )
                + "."
            )
        if self.ladder_steps:
            lines += [
                "",
                "Ladder steps (commands carrying a level; 0 is the model itself):",
                "",
                "| model | level | action | seq | by | decided | sent |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {step.model} | {step.level} | {step.action} | {step.seq} | "
                f"{step.detector} | {_after(self.started_at, step.issued_at_ms)} | "
                f"{_clock(step.at_ms)} |"
                for step in self.ladder_steps
            ]
            lines.append("")
        lag = self.worker_max_lag
        lines.append(
            "Worker's maximum lag: not measured."
            if lag is None
            else f"Worker's maximum lag: {lag.seconds:.1f} s"
            + (
                ""
                if lag.at_ms is None
                else f" at {_clock(lag.at_ms)} "
                f"({(lag.at_ms - self.started_at) / 1000:+.1f} s from the run's start)"
            )
            + f"; {lag.records:,} records at most."
        )
        latency = self.effect_latency
        lines.append(
            "Worker's effects after a record's read: not measured."
            if latency is None
            else f"Worker's effects after a record's read: p50 at most {latency.p50_s:g} s, "
            f"p99 at most {latency.p99_s:g} s ({latency.records:,} records)."
        )
        behind = self.simulator_behind
        lines.append(
            "Simulator's delay: not measured."
            if behind is None
            else "Simulator's delay: it sent records at most "
            f"{max((s for _, s in behind), default=0.0):.1f} s after their time."
        )
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Report:
        """The report of ``to_json``.

        Raises
        ------
        ValueError
            When a field is missing or a time is not ISO 8601; the message names it.
        """
        try:
            return cls(
                scenario=str(document.get("scenario", "")),
                started_at=parse_iso_ms(document["started_at"]),
                ended_at=parse_iso_ms(document["ended_at"]),
                incidents=tuple(IncidentRow.from_json(e) for e in document["incidents"]),
                false_fallbacks=tuple(
                    FalseFallback.from_json(e) for e in document["false_fallbacks"]
                ),
                alert_churn=tuple(AlertChurn.from_json(e) for e in document.get("alert_churn", ())),
                worker_max_lag=(
                    None
                    if document.get("worker_max_lag") is None
                    else WorkerLag(
                        int(document["worker_max_lag"]["records"]),
                        float(document["worker_max_lag"]["seconds"]),
                        document["worker_max_lag"].get("at_ms"),
                    )
                ),
                ladder_steps=tuple(
                    ObservedCommand.from_json(e) for e in document.get("ladder_steps", ())
                ),
                serving_alarms=tuple(
                    AlertEvent.from_json(e) for e in document.get("serving_alarms", ())
                ),
                effect_latency=(
                    None
                    if document.get("effect_latency") is None
                    else EffectLatency(
                        int(document["effect_latency"]["records"]),
                        float(document["effect_latency"]["p50_s"]),
                        float(document["effect_latency"]["p99_s"]),
                    )
                ),
                simulator_behind=(
                    None
                    if document.get("simulator_behind") is None
                    else simulator_behind_of(document["simulator_behind"])
                ),
            )
        except KeyError as error:
            raise ValueError(f"report: missing field {error.args[0]!r}") from None
        except TypeError as error:
            raise ValueError(f"report: {error}") from None


def simulator_behind_of(pairs: Iterable[Sequence[Any]]) -> tuple[tuple[int, float], ...]:
    """``Report.simulator_behind`` from its JSON pairs, as the report and the simulator's
    ``--summary`` (its ``behind``) write them.

    Raises
    ------
    TypeError, ValueError
        When a pair is not a second and a number of seconds.
    """
    return tuple((int(at), float(seconds)) for at, seconds in pairs)


def build_report(
    timeline: Iterable[Mapping[str, Any]],
    commands: Iterable[ObservedCommand],
    switches: Iterable[Switch],
    alerts: Iterable[AlertEvent],
    *,
    scenario: str,
    started_at: int,
    ended_at: int,
    bounds_s: Mapping[str, float] | None = None,
    worker_max_lag: WorkerLag | None = None,
    effect_latency: EffectLatency | None = None,
    simulator_behind: tuple[tuple[int, float], ...] | None = None,
) -> Report:
    """The report of one run; see the module docstring for the matching rules."""
    bounds_s = bounds_s or {}
    # The simulator writes the whole schedule at its start: an incident due after the run
    # ended (a demo stopped with Ctrl-C) was never injected, so it was not missed either.
    scheduled = (InjectedIncident.from_record(record) for record in timeline)
    incidents = [incident for incident in scheduled if incident.at_ms <= ended_at]
    commands = sorted(commands, key=lambda c: (c.issued_at_ms, c.seq))
    switches = sorted(switches, key=lambda s: s.at_ms)
    alarms = sorted((a for a in alerts if a.alarm), key=lambda a: a.at_ms)

    def bound_ms(kind: str) -> int:
        return round(bounds_s.get(kind, DEFAULT_BOUND_S) * 1000)

    rows = [
        _row(incident, bound_ms(incident.kind), commands, switches, alarms)
        for incident in incidents
    ]
    false_fallbacks = []
    for command in commands:
        if command.action != "fallback":
            continue
        covered = any(
            incident.model == command.model
            and incident.at_ms
            <= command.issued_at_ms
            <= (ended_at if incident.until_ms is None else incident.until_ms)
            + bound_ms(incident.kind)
            for incident in incidents
        )
        if not covered:
            switch = _first_switch(switches, command.model, command.at_ms, ended_at)
            false_fallbacks.append(
                FalseFallback(
                    command.model,
                    command.at_ms,
                    command.detector,
                    None if switch is None else switch.at_ms,
                )
            )
    return Report(
        scenario,
        started_at,
        ended_at,
        tuple(rows),
        tuple(false_fallbacks),
        alert_churn(alerts),
        worker_max_lag,
        tuple(sorted((c for c in commands if c.level is not None), key=lambda c: (c.at_ms, c.seq))),
        _first_serving_alarms(alarms),
        effect_latency,
        simulator_behind,
    )


def _first_serving_alarms(alarms: Sequence[AlertEvent]) -> tuple[AlertEvent, ...]:
    firsts: dict[tuple[str, str], AlertEvent] = {}
    for alarm in alarms:
        if alarm.detector in SERVING_DETECTORS:
            firsts.setdefault((alarm.model, alarm.detector), alarm)
    return tuple(firsts.values())


def alert_churn(alerts: Iterable[AlertEvent]) -> tuple[AlertChurn, ...]:
    """Each model's alert changes and flaps (see the module docstring), by model id.

    >>> events = [AlertEvent("a1", "m", "detector", "score", s, t) for s, t in
    ...           [("warning", 0), ("normal", 5_000), ("warning", 10_000), ("normal", 400_000)]]
    >>> alert_churn(events)
    (AlertChurn(model='m', changes=4, flaps=1),)
    """
    by_alert: dict[str, list[AlertEvent]] = {}
    for event in sorted(alerts, key=lambda a: a.at_ms):
        by_alert.setdefault(event.alert_id, []).append(event)
    changes: dict[str, int] = {}
    flaps: dict[str, int] = {}
    for history in by_alert.values():
        model = history[0].model
        changes[model] = changes.get(model, 0) + len(history)
        flaps.setdefault(model, 0)
        for before, after in itertools.pairwise(history):
            escalation = SEVERITY_RANKS.get(after.severity, 0) > SEVERITY_RANKS.get(
                before.severity, 0
            )
            if not escalation and after.at_ms - before.at_ms < FLAP_WINDOW_S * 1000:
                flaps[model] += 1
    return tuple(AlertChurn(model, changes[model], flaps[model]) for model in sorted(changes))


def _row(
    incident: InjectedIncident,
    bound_ms: int,
    commands: Sequence[ObservedCommand],
    switches: Sequence[Switch],
    alarms: Sequence[AlertEvent],
) -> IncidentRow:
    start, end = incident.at_ms, incident.at_ms + bound_ms

    def in_window(at_ms: int) -> bool:
        return start <= at_ms <= end

    model, kind = incident.model, incident.kind
    fallbacks = [
        c
        for c in commands
        if c.model == model and c.action == "fallback" and in_window(c.issued_at_ms)
    ]
    command = fallbacks[0] if fallbacks else None
    # The alert of a fallback follows its command, however far behind the worker was.
    alert_end = end if command is None else max(end, command.at_ms + bound_ms)
    model_alarms = [a for a in alarms if a.model == model and start <= a.at_ms <= alert_end]
    fitting = [a for a in model_alarms if detects(kind, a.detector)]
    health = _first(model_alarms, lambda a: a.group == "health")
    first_alert = health or (fitting[0] if fitting else None)
    detections: list[tuple[int, str | None]] = [
        (c.issued_at_ms, c.detector) for c in fallbacks if detects(kind, c.detector)
    ]
    detections += [(a.at_ms, a.detector) for a in fitting if a.at_ms <= end]
    detected_at, detector = min(detections, key=lambda d: d[0], default=(None, None))
    switched_at = recovered = None
    if command is not None:
        at = command.at_ms
        switch = _first_switch(switches, model, at, at + bound_ms)
        switched_at = None if switch is None else switch.at_ms
        recovered = any(
            c.model == model and c.action == "restore" and c.at_ms > at for c in commands
        )
    return IncidentRow(
        kind=kind,
        model=model,
        feature=incident.feature,
        injected_at=incident.at_ms,
        detected_at=detected_at,
        detector=detector,
        command_at=None if command is None else command.at_ms,
        switched_at=switched_at,
        alert_id=None if first_alert is None else first_alert.alert_id,
        recovered=bool(recovered),
        detect_by=incident.at_ms + bound_ms,
        decided_at=None if command is None else command.issued_at_ms,
    )


def detects(kind: str, detector: str | None) -> bool:
    """Whether an alarm of ``detector`` counts as detecting an incident of ``kind``.

    >>> detects("drift_gradual", "drift_ks"), detects("label_leak", "shadow_agreement")
    (True, False)
    """
    if detector is None:
        return False
    return any(
        detector.startswith(pattern[:-1]) if pattern.endswith("*") else detector == pattern
        for pattern in DETECTORS_BY_KIND.get(kind, ())
    )


def _first(items: Iterable[T], predicate: Callable[[T], bool]) -> T | None:
    return next((item for item in items if predicate(item)), None)


def _first_switch(
    switches: Sequence[Switch], model: str, from_ms: int, to_ms: int
) -> Switch | None:
    """The node's first switch of ``model`` to its fallback within ``[from_ms, to_ms]``."""
    return _first(
        switches,
        lambda s: s.model == model and s.mode == "fallback" and from_ms <= s.at_ms <= to_ms,
    )


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (a ``Z`` or an offset; UTC when it has none).

    >>> parse_iso_ms("2026-11-28T12:00:00.250Z")
    1795867200250
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ValueError(f"expected an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _parse_optional(text: str | None) -> int | None:
    return None if text is None else parse_iso_ms(text)


def _iso(epoch_ms: int | None) -> str | None:
    return None if epoch_ms is None else iso_utc(epoch_ms)


def _named(rows: Iterable[IncidentRow]) -> str:
    return ", ".join(f"{row.kind} on {row.model}" for row in rows)


def _clock(epoch_ms: int) -> str:
    return iso_utc(epoch_ms)[11:23]


def _after(origin_ms: int, epoch_ms: int | None) -> str:
    return "-" if epoch_ms is None else f"+{(epoch_ms - origin_ms) / 1000:.1f} s"
