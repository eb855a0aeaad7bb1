"""Scenario files: the incidents a simulation injects, and when.

A scenario is a TOML file. ``[run]`` gives defaults for the command line (models, seed,
time scale, duration, rate), and each ``[[incidents]]`` table schedules one incident.
Times inside a scenario are *nominal*: they describe the simulated world ("the upstream
pipeline starts writing late at 18h", "labels arrive after about a day"). The simulator
divides every nominal duration by the time scale when it stamps messages, so a scenario of
three nominal days plays in three minutes at ``time_scale = 1440``. ``run.duration`` is the
exception: it is the compressed (wall-clock) length of the run, what a person waits.

Incident kinds and their keys (``model`` and ``at`` are always required; ``until`` is the
optional nominal end, absent meaning "until the run ends"):

``drift_abrupt``
    ``feature`` (numeric), ``shift``: the feature's mean moves by ``shift`` of its standard
    deviations at ``at``.
``drift_gradual``
    ``feature`` (numeric), ``shift``, ``ramp``: the mean moves linearly from 0 to ``shift``
    standard deviations over ``ramp`` after ``at``.
``availability_gap``
    ``feature``, ``write_lag``: the upstream pipeline that writes the feature starts writing
    late; the median of ``written_at - event_at`` becomes ``write_lag``.
``label_leak``
    ``feature``: a trigger writes null into the feature at the moment a positive outcome
    happens (``event_at = label_at``), for the positive class only.
``broken_model``
    ``mode`` ``"constant"`` (with ``output``, default 0.5) or ``"errors"`` (with
    ``error_rate``, default 0.5: that share of requests fails and the node serves its
    fallback, logged with role ``fallback``). Without ``until`` the model stays broken,
    which exercises escalation.
``latency_jump``
    ``latency_ms``: the live model's median latency becomes ``latency_ms`` (lognormal, as
    before the jump). The model must have an ``slo``: a simulated serving node calls it
    through a breaker with the fleet's defaults and the SLO's ``latency_p99_ms``, so
    calls past the deadline are served by the fallback (``fallback_reason`` ``timeout``),
    a tripped breaker serves it too (``breaker_open:<why>``), and half-open probes find
    the model well again once the incident ends.
``shadow_better`` / ``shadow_worse``
    The model's shadow (the portfolio must pair one) predicts with ``noise_factor`` times
    the live model's noise (defaults 0.25 and 3.0), so its loss is lower or higher.

>>> scenario = parse_scenario('''
... [run]
... time_scale = 1440
... [[incidents]]
... kind = "drift_abrupt"
... model = "churn-000"
... feature = "churn-000.sessions_7d"
... at = "6h"
... shift = 3
... ''')
>>> incident = scenario.incidents[0]
>>> incident.kind, incident.at, incident.until, incident.params
('drift_abrupt', datetime.timedelta(seconds=21600), None, (('shift', 3.0),))
>>> try:
...     parse_scenario('[[incidents]]\\nkind = "meteor"\\nmodel = "m"\\nat = "1h"')
... except ScenarioError as error:
...     print(error)
scenario: incident 1, key 'kind': expected one of availability_gap, broken_model, \
drift_abrupt, drift_gradual, label_leak, latency_jump, shadow_better, shadow_worse, got \
'meteor'
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from streams.portfolio import Portfolio, parse_duration

__all__ = [
    "FEATURE_KINDS_NEEDED",
    "INCIDENT_KINDS",
    "SCENARIOS",
    "Incident",
    "RunDefaults",
    "Scenario",
    "ScenarioError",
    "check_incidents",
    "load_scenario",
    "parse_scenario",
]

SCHEMA_VERSION = 1
SCENARIOS = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"
"""The folder of the scenario files that ship with failsoft (default.toml, short.toml)."""

# kind -> {parameter: default}; None marks a required parameter.
_PARAMS: dict[str, dict[str, float | str | timedelta | None]] = {
    "drift_abrupt": {"shift": None},
    "drift_gradual": {"shift": None, "ramp": None},
    "availability_gap": {"write_lag": None},
    "label_leak": {},
    "broken_model": {"mode": "constant", "output": 0.5, "error_rate": 0.5},
    "latency_jump": {"latency_ms": None},
    "shadow_better": {"noise_factor": 0.25},
    "shadow_worse": {"noise_factor": 3.0},
}
INCIDENT_KINDS = tuple(sorted(_PARAMS))
_WITH_FEATURE = {"drift_abrupt", "drift_gradual", "availability_gap", "label_leak"}
FEATURE_KINDS_NEEDED = {"drift_abrupt": "numeric", "drift_gradual": "numeric"}
"""Incident kinds that only apply to one kind of feature."""
_BROKEN_MODES = ("constant", "errors")
_COMMON_KEYS = {"kind", "model", "feature", "at", "until"}
_RUN_KEYS = {"models", "seed", "time_scale", "duration", "rate"}


class ScenarioError(ValueError):
    """A scenario that cannot be used; names the incident (1-based), the key and the reason."""

    def __init__(self, incident: int | None, key: str, reason: str) -> None:
        self.incident = incident
        self.key = key
        self.reason = reason
        where = f"incident {incident}, key {key!r}" if incident is not None else f"key {key!r}"
        super().__init__(f"scenario: {where}: {reason}")


@dataclasses.dataclass(frozen=True)
class Incident:
    """One scheduled incident. ``at`` and ``until`` are nominal offsets from the run's start.

    ``params`` holds the kind's parameters, sorted by name, with defaults filled in.
    """

    kind: str
    model: str
    at: timedelta
    feature: str | None = None
    until: timedelta | None = None
    params: tuple[tuple[str, float | str | timedelta], ...] = ()

    def param(self, name: str) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        raise KeyError(f"{self.kind} has no parameter {name!r}")

    @property
    def recovers(self) -> bool:
        """False for an incident that lasts until the run ends (e.g. a model that stays broken)."""
        return self.until is not None


@dataclasses.dataclass(frozen=True)
class RunDefaults:
    """Defaults for the command line; each may be overridden there."""

    models: int = 20
    seed: int = 7
    time_scale: float = 1440.0
    duration: timedelta = timedelta(minutes=3)
    rate: float = 200.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    run: RunDefaults
    incidents: tuple[Incident, ...]


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ``ScenarioError`` naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(None, str(path), f"cannot be read: {error.strerror}") from None
    return parse_scenario(text, name=path.stem)


def parse_scenario(text: str, *, name: str = "scenario") -> Scenario:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(None, "(file)", f"not valid TOML: {error}") from None
    _reject_unknown(
        None, "", document, {"schema_version", "name", "description", "run", "incidents"}
    )
    version = document.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ScenarioError(None, "schema_version", f"expected {SCHEMA_VERSION}, got {version!r}")
    incidents = document.get("incidents", [])
    if not isinstance(incidents, list):
        raise ScenarioError(None, "incidents", "expected an array of tables ([[incidents]])")
    return Scenario(
        name=str(document.get("name", name)),
        run=_run(document.get("run", {})),
        incidents=tuple(_incident(index, raw) for index, raw in enumerate(incidents, start=1)),
    )


def check_incidents(
    incidents: Sequence[Incident], portfolio: Portfolio, nominal_span: timedelta
) -> None:
    """Check that each incident names a model, feature and shadow of the portfolio, and
    starts before the run ends (``nominal_span`` is the run's length in nominal time).

    Raises
    ------
    ScenarioError
        Naming the first incident that does not fit, the key and the reason.
    """
    for index, incident in enumerate(incidents, start=1):
        model = portfolio.get(incident.model)
        if model is None:
            ids = [m.model_id for m in portfolio]
            raise ScenarioError(
                index,
                "model",
                f"{incident.model!r} is not in the portfolio ({len(ids)} models: "
                f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})",
            )
        if incident.feature is not None:
            feature = model.feature(incident.feature)
            if feature is None:
                names = ", ".join(f.name for f in model.features) or "none"
                raise ScenarioError(
                    index,
                    "feature",
                    f"{incident.feature!r} is not a feature of {model.model_id} ({names})",
                )
            needed = FEATURE_KINDS_NEEDED.get(incident.kind)
            if needed is not None and feature.kind != needed:
                raise ScenarioError(
                    index,
                    "feature",
                    f"{incident.kind} needs a {needed} feature, not {feature.kind}",
                )
        if incident.kind.startswith("shadow_") and model.shadow is None:
            raise ScenarioError(
                index, "model", f"{model.model_id} runs no shadow; the portfolio pairs none"
            )
        if incident.kind == "latency_jump" and model.slo is None:
            raise ScenarioError(
                index,
                "model",
                f"{model.model_id} has no slo; a latency jump trips a breaker set by "
                "its slo.latency_p99_ms",
            )
        if incident.at >= nominal_span:
            raise ScenarioError(
                index,
                "at",
                f"{incident.at} is not before the run's end ({nominal_span} nominal: "
                "duration times time scale)",
            )


def _run(raw: object) -> RunDefaults:
    if not isinstance(raw, dict):
        raise ScenarioError(None, "run", f"expected a table, got {raw!r}")
    _reject_unknown(None, "run.", raw, _RUN_KEYS)
    defaults = RunDefaults()
    models = raw.get("models", defaults.models)
    if not isinstance(models, int) or isinstance(models, bool) or not 1 <= models <= 10_000:
        raise ScenarioError(None, "run.models", f"expected an integer in 1..10000, got {models!r}")
    seed = raw.get("seed", defaults.seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScenarioError(None, "run.seed", f"expected a non-negative integer, got {seed!r}")
    return RunDefaults(
        models=models,
        seed=seed,
        time_scale=_positive(None, "run.time_scale", raw.get("time_scale", defaults.time_scale)),
        duration=_duration(None, "run.duration", raw.get("duration", defaults.duration)),
        rate=_positive(None, "run.rate", raw.get("rate", defaults.rate)),
    )


def _incident(index: int, raw: object) -> Incident:
    if not isinstance(raw, dict):
        raise ScenarioError(index, "(table)", f"expected a table, got {raw!r}")
    kind = raw.get("kind")
    if kind not in _PARAMS:
        raise ScenarioError(
            index, "kind", f"expected one of {', '.join(INCIDENT_KINDS)}, got {kind!r}"
        )
    defaults = _PARAMS[kind]
    _reject_unknown(index, "", raw, _COMMON_KEYS | set(defaults))
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ScenarioError(index, "model", f"expected a model_id, got {model!r}")
    feature = raw.get("feature")
    if kind in _WITH_FEATURE:
        if not isinstance(feature, str) or not feature:
            raise ScenarioError(index, "feature", f"required for {kind}: the feature's name")
    elif feature is not None:
        raise ScenarioError(index, "feature", f"{kind} applies to a whole model, not a feature")
    if "at" not in raw:
        raise ScenarioError(index, "at", "required: the nominal time from the run's start")
    at = _offset(index, "at", raw["at"])
    until = _offset(index, "until", raw["until"]) if "until" in raw else None
    if until is not None and until <= at:
        raise ScenarioError(index, "until", f"must be after 'at' ({raw['at']!r})")
    params = tuple(
        (key, _param(index, kind, key, raw.get(key, default)))
        for key, default in sorted(defaults.items())
    )
    return Incident(kind=kind, model=model, at=at, feature=feature, until=until, params=params)


def _param(index: int, kind: str, key: str, value: object) -> float | str | timedelta:
    if value is None:
        raise ScenarioError(index, key, f"required for {kind}")
    if key in {"ramp", "write_lag"}:
        return _duration(index, key, value)
    if key == "mode":
        if value not in _BROKEN_MODES:
            raise ScenarioError(
                index, key, f"expected one of {', '.join(_BROKEN_MODES)}, got {value!r}"
            )
        return str(value)
    number = _number(index, key, value)
    if key in {"output", "error_rate"} and not 0.0 <= number <= 1.0:
        raise ScenarioError(index, key, f"expected a probability in [0, 1], got {value!r}")
    if key in {"noise_factor", "latency_ms"} and number <= 0:
        raise ScenarioError(index, key, f"expected a positive number, got {value!r}")
    return number


def _number(incident: int | None, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(incident, key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        # TOML has nan and inf, which would pass every comparison-based range check.
        raise ScenarioError(incident, key, f"expected a finite number, got {value!r}")
    return float(value)


def _positive(incident: int | None, key: str, value: object) -> float:
    number = _number(incident, key, value)
    if number <= 0:
        raise ScenarioError(incident, key, f"expected a positive number, got {value!r}")
    return number


def _duration(incident: int | None, key: str, value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as error:
        raise ScenarioError(incident, key, str(error)) from None


def _offset(incident: int, key: str, value: object) -> timedelta:
    # An offset of zero is allowed (an incident present from the start), unlike a duration.
    if value in (0, "0", "0s"):
        return timedelta()
    return _duration(incident, key, value)


def _reject_unknown(
    incident: int | None, prefix: str, table: Mapping[str, object], valid: set[str]
) -> None:
    # A typo such as "shfit" would otherwise silently fall back to a default.
    for key in table:
        if key not in valid:
            raise ScenarioError(
                incident, prefix + key, f"unknown key; valid: {', '.join(sorted(valid))}"
            )
