"""What a monitor asks the worker to do, as plain data: points, alerts, commands to sign.

Pure: no sink, no I/O. The worker's shell (``streams.worker``) hands points to the
InfluxDB sink, alerts to the Alerta sink, and signs commands with its keyring. The
measurement and alert schemas are described in ``streams.sinks.influx`` and
``streams.sinks.alerta``, which send them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta

from detectors.health.evidence import Evidence
from detectors.health.transition import Transition
from schemas.contracts import SCHEMA_VERSION, Action, ControlCommand
from schemas.signing import Keyring, next_seq
from streams.durations import format_duration

__all__ = [
    "ALERT_SEVERITIES",
    "ESCALATION_EVENTS",
    "HEALTH_EVENTS",
    "HEALTH_SEVERITIES",
    "MEASUREMENTS",
    "SERVICE",
    "Alert",
    "CommandToSign",
    "Effects",
    "FieldValue",
    "Point",
    "detector_alert",
    "escalation_alert",
    "escalation_cleared",
    "health_alert",
    "point",
]

SERVICE = "failsoft"
HEALTH_EVENTS = {
    "healthy": "ModelHealthy",
    "degraded": "ModelDegraded",
    "fallback": "ModelFallback",
    "probing": "ModelProbing",
}
HEALTH_SEVERITIES = {
    "healthy": "normal",
    "degraded": "warning",
    "fallback": "major",
    "probing": "minor",
}
ESCALATION_EVENTS = ("FallbackEscalated", "EscalationCleared")
ALERT_SEVERITIES = frozenset(
    {"security", "critical", "major", "minor", "warning", "informational", "normal", "ok"}
)


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alert to send; the environment is the sink's."""

    resource: str
    event: str
    severity: str
    group: str
    text: str
    value: str = ""
    correlate: tuple[str, ...] = ()
    service: tuple[str, ...] = (SERVICE,)
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in ALERT_SEVERITIES:
            raise ValueError(
                f"Alert.severity: {self.severity!r} is not one of {sorted(ALERT_SEVERITIES)}"
            )


def health_alert(model_id: str, owner: str, state: str, detector: str, reason: str) -> Alert:
    """The model's health alert for ``state`` (a ``detectors.health.HealthState`` value).

    >>> alert = health_alert("ranker", "team-search", "fallback", "drift", "psi 0.4 on age")
    >>> alert.event, alert.severity, alert.correlate[:2]
    ('ModelFallback', 'major', ('ModelHealthy', 'ModelDegraded'))
    """
    if state not in HEALTH_EVENTS:
        raise ValueError(f"health_alert: state {state!r} is not one of {sorted(HEALTH_EVENTS)}")
    return Alert(
        resource=model_id,
        event=HEALTH_EVENTS[state],
        severity=HEALTH_SEVERITIES[state],
        group="health",
        value=state,
        text=f"{model_id} is {state} ({detector}): {reason}",
        correlate=tuple(HEALTH_EVENTS.values()),
        attributes={"owner": owner, "detector": detector},
    )


def detector_alert(
    model_id: str,
    owner: str,
    detector: str,
    severity: str,
    text: str,
    feature: str | None = None,
    value: str = "",
) -> Alert:
    """One detector's alert for one model; severity normal closes it."""
    attributes = {"owner": owner, "detector": detector}
    if feature is not None:
        attributes["feature"] = feature
    return Alert(
        resource=model_id,
        event=detector,
        severity=severity,
        group="detector",
        value=value,
        text=text,
        attributes=attributes,
    )


def escalation_alert(model_id: str, owner: str, on_fallback_for: timedelta) -> Alert:
    """The critical alert for a model that has stayed on fallback past its limit."""
    served = format_duration(on_fallback_for)
    return Alert(
        resource=model_id,
        event=ESCALATION_EVENTS[0],
        severity="critical",
        group="escalation",
        value=served,
        text=f"{model_id} has served its fallback for {served}; {owner} must look",
        correlate=ESCALATION_EVENTS,
        attributes={"owner": owner},
    )


def escalation_cleared(model_id: str, owner: str) -> Alert:
    """Closes the escalation alert once the model is restored."""
    return Alert(
        resource=model_id,
        event=ESCALATION_EVENTS[1],
        severity="normal",
        group="escalation",
        text=f"{model_id} is restored",
        correlate=ESCALATION_EVENTS,
        attributes={"owner": owner},
    )


_MODEL_TAGS = frozenset({"model", "version", "role", "feature", "detector"})
MEASUREMENTS: Mapping[str, frozenset[str]] = {
    "drift": _MODEL_TAGS,
    "performance": _MODEL_TAGS,
    "write_lag": _MODEL_TAGS,
    "leak": _MODEL_TAGS,
    "shadow": _MODEL_TAGS,
    "health": _MODEL_TAGS,
    "serving": frozenset({"model", "tier", "level"}),
    "pipeline": frozenset({"agent", "topic", "reason", "sink"}),
}

FieldValue = float | int | bool | str


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One point; build it with ``point`` so that its names are checked."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ms: int


def point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], time_ms: int
) -> Point:
    """A checked point of the schema above.

    >>> point("drift", {"model": "ranker", "feature": "age"}, {"statistic": 0.3}, 0).measurement
    'drift'
    >>> point("drift", {"modle": "ranker"}, {"statistic": 0.3}, 0)
    Traceback (most recent call last):
    ...
    ValueError: point: tag 'modle' is not one of detector, feature, model, role, version for drift
    """
    allowed = MEASUREMENTS.get(measurement)
    if allowed is None:
        raise ValueError(f"point: measurement {measurement!r} is not one of {sorted(MEASUREMENTS)}")
    # One C-level pass over the tags (a report builds several points, each of few tags).
    if not allowed.issuperset(tags):
        tag = next(tag for tag in tags if tag not in allowed)
        raise ValueError(
            f"point: tag {tag!r} is not one of {', '.join(sorted(allowed))} for {measurement}"
        )
    if not fields:
        raise ValueError("point: a point needs at least one field")
    return Point(measurement, tags, fields, time_ms)


@dataclasses.dataclass(frozen=True)
class CommandToSign:
    """A control command the monitor decided on; the shell signs it with its keyring.

    ``seq`` is the monitor's (``schemas.signing.next_seq`` of the model's last one), kept
    in the monitor's state with the transition that made it: a monitor restored from a
    checkpoint taken before the transition makes the very same command again (same seq,
    same signature), which serving nodes drop as a replay. ``level`` is the fallback
    ladder's level to serve, for a model whose ladder has two or more levels (None
    otherwise, so that its command is signed as before ladders existed).
    """

    model_id: str
    action: Action
    reason: str
    detector: str
    issued_at: int
    seq: int
    level: int | None = None

    @classmethod
    def after(
        cls,
        last_seq: int,
        *,
        model_id: str,
        action: Action,
        reason: str,
        detector: str,
        issued_at: int,
        level: int | None = None,
    ) -> CommandToSign:
        """The command that follows a model's ``last_seq``."""
        seq = next_seq(last_seq, issued_at)
        return cls(model_id, action, reason, detector, issued_at, seq, level)

    def signed(self, keyring: Keyring) -> ControlCommand:
        """The command, signed (raises ``MissingKeyError`` without a signing key)."""
        return keyring.sign(
            ControlCommand(
                schema_version=SCHEMA_VERSION,
                model_id=self.model_id,
                action=self.action,
                reason=self.reason,
                detector=self.detector,
                issued_at=self.issued_at,
                seq=self.seq,
                level=self.level,
            )
        )


@dataclasses.dataclass
class Effects:
    """What one batch of a model's records asks the worker to do.

    ``points`` go to InfluxDB, ``alerts`` to Alerta, ``commands`` are signed and sent on
    the control topic (one per health transition's action, and promotions of a shadow);
    ``withheld`` names the actions of an alert-only model, counted and not sent.
    ``alarms`` (alarming evidence) and ``transitions`` say what was detected, for views and
    tests. ``checkpoint`` is true when the monitor's state must be written now: something
    happened that must survive a crash (a transition, an action, an alarm, an alert), or
    enough records went by since the last checkpoint.
    """

    points: list[Point] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    commands: list[CommandToSign] = dataclasses.field(default_factory=list)
    withheld: list[str] = dataclasses.field(default_factory=list)
    alarms: list[Evidence] = dataclasses.field(default_factory=list)
    transitions: list[Transition] = dataclasses.field(default_factory=list)
    checkpoint: bool = False
