"""The portfolio file: the one place where a model that failsoft watches is declared.

A portfolio is a TOML file read once when a worker starts. Each ``[models.<model_id>]``
table declares one model: who owns it, where it runs, what the fleet falls back to, which
features are monitored, how late its labels arrive, how its detectors are tuned, how long
it may stay on fallback before on-call is escalated, and which shadow version it is
compared against. ``[defaults]`` holds values that models inherit unless they set their
own, and may name a ``profile`` (``PROFILES``: "production", the default, or "trial", with
minute-scale settings). See ``deploy/portfolio.example.toml`` for a commented example, and
``streams.portfolio_reference`` (the README's "Portfolio reference") for every key.

Durations are strings ("500ms", "15m", "1h30m") or plain numbers in the key's unit:
seconds, except the detector settings in ``DETECTOR_DURATIONS`` that count milliseconds.
An error names the key's full path (``models.ranker.detectors.health.min_dwell``), the
value and a valid example.

Models in traffic but not in the file
-------------------------------------
A message about a model that the file does not declare is dead-lettered with the reason
``"unknown model"`` (``UNKNOWN_MODEL_REASON``); it is never tracked with defaults. For a
platform team running a hundred models this is the safe choice:

- failsoft only issues fallback commands for a model whose owner has said what the fleet
  falls back to, and only pages a team that is named in the file;
- the accounting stays exact (every consumed message is processed or dead-lettered), and
  the undeclared model is visible in the dead-letter counters by reason;
- the dead letter keeps the raw bytes, so once the model is declared its traffic can be
  replayed instead of being lost.

Adding a model is therefore: add its table, validate the file (``load_portfolio``), and
restart the workers one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from streams.durations import parse_duration, shown

__all__ = [
    "DETECTOR_DURATIONS",
    "DETECTOR_GROUPS",
    "FEATURE_KINDS",
    "PROFILES",
    "TIERS",
    "UNKNOWN_MODEL_REASON",
    "Fallback",
    "Feature",
    "Model",
    "Portfolio",
    "PortfolioError",
    "Profile",
    "Shadow",
    "Slo",
    "load_portfolio",
    "parse_duration",
    "parse_portfolio",
]

SCHEMA_VERSION = 1
TIERS = ("cpu", "gpu")
FEATURE_KINDS = ("numeric", "categorical")
DETECTOR_GROUPS = ("drift", "output", "performance", "leaks", "shadow", "health")
FALLBACK_MODES = ("automatic", "alert_only")
# A control command's level is an integer up to 255 (schemas/contracts.py, Level).
MAX_LADDER = 255
UNKNOWN_MODEL_REASON = "unknown model"

DEFAULT_ESCALATION_LIMIT = timedelta(days=3)
DEFAULT_MIN_STABLE_PERIOD = timedelta(days=7)
DEFAULT_TRIP_SHARE = 0.5
TRIP_WINDOW = 200
"""Predictions of a model over which the share served by tripped breakers is taken."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """Defaults under ``[defaults]``: ``defaults`` is shaped like that table (the file's
    own values win, detector settings key by key), and ``min_stable_period`` is a shadow's
    when the model does not set it."""

    defaults: Mapping[str, Any]
    min_stable_period: timedelta = DEFAULT_MIN_STABLE_PERIOD


# ``[defaults] profile = "trial"``: settings for a first try of a few minutes, where the
# production defaults (a 15-minute dwell, an hour's quiet, a week's shadow trial) would
# detect nothing. They are the demo's (streams.demo.run.DEMO_DETECTOR_DEFAULTS, checked
# on the default scenario by tests/demo/test_demo_portfolio.py): drift windows of 300
# predictions, a health policy that confirms in seconds, output references of 400
# predictions, a leak watch that judges lags up to 8 minutes with the caps of hours of
# entities rather than its memory budget's, and a shadow compared for a minute. A trial
# still detects only what reaches it within its minutes: a model whose labels come later
# gets no leak or shadow verdict in it, whatever the settings
# (tests/benchmarks/bench_trial_profile.py, the README's "Trial profile" benchmark).
PROFILES: Mapping[str, Profile] = {
    "production": Profile({}),
    "trial": Profile(
        {
            "escalation_limit": "10m",
            "detectors": {
                "drift": {"window_size": 300, "reference_size": 600},
                "health": {"confirm": 2, "min_dwell": "5s", "clear_after": "10s"},
                "output": {
                    "predictions_per_day": 1200,
                    "score_warm_up": 400,
                    "error_warm_up": 400,
                    "restore_grace": "5s",
                },
                "leaks": {
                    "coincidence_tolerance": "1s",
                    "coincidence_max_lag": "8m",
                    "coincidence_lateness": "3s",
                    "gap_max_gap_rate": 0.05,
                    "report_every": "5s",
                    "coincidence_max_entities": 10_000,
                    "gap_max_keys": 50_000,
                },
            },
        },
        min_stable_period=timedelta(minutes=1),
    ),
}
# Labels later than this many expected delays are treated as never arriving: the
# prediction waiting for them expires from the label join and is counted.
LABEL_TTL_FACTOR = 3

# Identifiers become Kafka keys, Alerta resources and InfluxDB tag values.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML's: any other key is quoted
_SECOND = timedelta(seconds=1)
_MILLISECOND = timedelta(milliseconds=1)

# Detector settings that are durations, with what a plain number of each means (the unit
# its detector counts in). A string such as "5s" is converted to that number.
DETECTOR_DURATIONS: Mapping[str, Mapping[str, timedelta]] = {
    "health": {"min_dwell": _SECOND, "clear_after": _SECOND},
    "output": {"restore_grace": _SECOND},
    "performance": {"report_interval": _SECOND},
    "leaks": {
        "skew_tolerance": _MILLISECOND,
        "report_every": _SECOND,
        "coincidence_tolerance": _MILLISECOND,
        "coincidence_max_lag": _MILLISECOND,
        "coincidence_lateness": _MILLISECOND,
        "coincidence_label_delay": _MILLISECOND,
        "gap_max_delay": _MILLISECOND,
    },
    "shadow": {
        "pair_ttl": _SECOND,
        "label_ttl": _SECOND,
        "report_every": _SECOND,
        "promotion_max_trial_period": _SECOND,
    },
}

DetectorParam = str | int | float | bool | tuple[str | int | float | bool, ...]


class PortfolioError(ValueError):
    """A portfolio file that cannot be used; names the model, the key and the reason.

    ``model`` is None for a problem outside any model table (the file itself,
    ``schema_version`` or ``[defaults]``).
    """

    def __init__(self, model: str | None, key: str, reason: str) -> None:
        self.model = model
        self.key = key
        self.reason = reason
        super().__init__(f"portfolio: {self.path}: {reason}")

    @property
    def path(self) -> str:
        """The key's full path in the file, e.g. ``models.ranker.detectors.health.min_dwell``."""
        if self.model is None:
            return self.key
        bare = _BARE_KEY.fullmatch(self.model)
        table = "models." + (self.model if bare else json.dumps(self.model))
        return table if self.key == "(name)" else f"{table}.{self.key}"


@dataclasses.dataclass(frozen=True)
class Fallback:
    """What the fleet serves instead of the model, and whether failsoft may switch alone.

    ``strategy`` names a fallback that the serving fleet has registered (for example
    ``"top_n_popular"``): level 1 of the model's fallback ladder. ``below`` names the
    levels under it, best first (``fallback = ["ranker-cpu", "top_n_popular"]``: strategy
    ``ranker-cpu``, below ``("top_n_popular",)``). A level that is a declared model is
    monitored like any other, and the worker steps down past it when it goes bad; any other
    is a static strategy. With ``mode="alert_only"`` failsoft alerts the owner but never
    issues the fallback command itself.
    """

    strategy: str
    mode: str = "automatic"
    below: tuple[str, ...] = ()

    @property
    def automatic(self) -> bool:
        return self.mode == "automatic"

    @property
    def ladder(self) -> tuple[str, ...]:
        """Every level, best first: level ``i`` is ``ladder[i - 1]``."""
        return (self.strategy, *self.below)


@dataclasses.dataclass(frozen=True)
class Feature:
    """A monitored input of a model; ``write_lag_sla`` is the promised freshness, if any."""

    name: str
    kind: str
    write_lag_sla: timedelta | None = None


@dataclasses.dataclass(frozen=True)
class Shadow:
    """The candidate version that runs beside the live one (predictions with role shadow)."""

    version: str
    min_stable_period: timedelta = DEFAULT_MIN_STABLE_PERIOD


@dataclasses.dataclass(frozen=True)
class Slo:
    """The model's service objectives; the worker watches its predictions against them.

    ``latency_p99_ms``: at most 1% of the live model's answers may take longer (the
    prediction's ``latency_ms``). ``error_rate``: the share of requests it may fail (served
    a fallback by the node, not by command); None learns the rate from the traffic.
    ``trip_share``: the share of the latest ``TRIP_WINDOW`` predictions served by the
    nodes' tripped breakers that raises a fleet-wide alert.
    """

    latency_p99_ms: float
    error_rate: float | None = None
    trip_share: float = DEFAULT_TRIP_SHARE


@dataclasses.dataclass(frozen=True)
class Model:
    """One declared model. Detector settings are keyword arguments for that group's detectors."""

    model_id: str
    owner: str
    tier: str
    fallback: Fallback
    features: tuple[Feature, ...]
    label_delay: timedelta
    escalation_limit: timedelta
    detectors: tuple[tuple[str, tuple[tuple[str, DetectorParam], ...]], ...] = ()
    shadow: Shadow | None = None
    slo: Slo | None = None

    @property
    def label_ttl(self) -> timedelta:
        """How long a prediction waits for its label in the label join."""
        return self.label_delay * LABEL_TTL_FACTOR

    def detector_settings(self, group: str) -> dict[str, DetectorParam]:
        """A fresh dict of the settings for one detector group (empty when none are set)."""
        if group not in DETECTOR_GROUPS:
            raise KeyError(f"unknown detector group {group!r}; valid: {', '.join(DETECTOR_GROUPS)}")
        for name, settings in self.detectors:
            if name == group:
                return dict(settings)
        return {}

    def feature(self, name: str) -> Feature | None:
        for feature in self.features:
            if feature.name == name:
                return feature
        return None


@dataclasses.dataclass(frozen=True)
class Portfolio:
    """All declared models, looked up by model_id in O(1)."""

    models: Mapping[str, Model]
    _by_feature: Mapping[str, tuple[str, ...]] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_feature: dict[str, list[str]] = {}
        for model in self.models.values():
            for feature in model.features:
                by_feature.setdefault(feature.name, []).append(model.model_id)
        object.__setattr__(self, "_by_feature", {k: tuple(v) for k, v in by_feature.items()})

    def get(self, model_id: str) -> Model | None:
        """The declared model, or None: the caller dead-letters with ``UNKNOWN_MODEL_REASON``."""
        return self.models.get(model_id)

    def ladders_through(self, model_id: str) -> tuple[str, ...]:
        """The models whose fallback ladder has ``model_id`` as a level, in file order."""
        return tuple(
            model.model_id for model in self.models.values() if model_id in model.fallback.ladder
        )

    def models_monitoring(self, feature: str) -> tuple[str, ...]:
        """The model_ids that monitor ``feature``, for routing feature writes.

        Feature names are global across the portfolio: a write reaches every model that
        declares its name. Models that must not share one declare namespaced names such
        as ``ranker.country`` (the README's worker section).
        """
        return self._by_feature.get(feature, ())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.models

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def load_portfolio(path: str | Path) -> Portfolio:
    """Read and validate a portfolio file.

    Raises
    ------
    PortfolioError
        When the file is missing, is not valid TOML, or a value is invalid; the message
        names the model, the key and the reason.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PortfolioError(None, str(path), f"cannot be read: {error.strerror}") from None
    return parse_portfolio(text)


def parse_portfolio(text: str) -> Portfolio:
    """Validate the text of a portfolio file.

    Examples
    --------
    >>> portfolio = parse_portfolio('''
    ... schema_version = 1
    ... [defaults]
    ... fallback = { strategy = "top_n_popular" }
    ... [models.ranker]
    ... owner = "team-search"
    ... tier = "gpu"
    ... label_delay = "2h"
    ... features = { query_length = "numeric", country = "categorical" }
    ... ''')
    >>> model = portfolio.get("ranker")
    >>> model.owner, model.tier, model.label_delay, model.escalation_limit.days
    ('team-search', 'gpu', datetime.timedelta(seconds=7200), 3)
    >>> portfolio.get("unknown") is None
    True
    >>> try:
    ...     parse_portfolio('[models.ranker]\\nowner = "a"\\ntier = "tpu"')
    ... except PortfolioError as error:
    ...     print(error.model, error.key, error.reason, sep=" | ")
    ranker | tier | expected one of cpu, gpu, got 'tpu'
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PortfolioError(None, "(file)", f"not valid TOML: {error}") from None
    _reject_unknown_keys(None, "", document, {"schema_version", "defaults", "models"})
    version = document.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise PortfolioError(None, "schema_version", f"expected {SCHEMA_VERSION}, got {version!r}")
    defaults = _table(None, "defaults", document.get("defaults", {}))
    _reject_unknown_keys(None, "defaults.", defaults, {*_INHERITED, "profile"})
    profile = PROFILES[
        _choice(None, "defaults.profile", defaults.get("profile", "production"), tuple(PROFILES))
    ]
    _validate_defaults(defaults)
    defaults = _with_profile(profile, defaults)
    models_table = _table(None, "models", document.get("models", {}))
    if not models_table:
        raise PortfolioError(None, "models", "declare at least one [models.<model_id>] table")
    models = {
        model_id: _model(model_id, _table(model_id, "", raw), defaults, profile)
        for model_id, raw in models_table.items()
    }
    return Portfolio(models)


def _with_profile(profile: Profile, defaults: dict[str, Any]) -> dict[str, Any]:
    """The file's ``[defaults]`` over the profile's: detector settings merge key by key."""
    own = {key: value for key, value in defaults.items() if key != "profile"}
    merged = {**profile.defaults, **own}
    groups = _detector_tables(None, own.get("detectors", {}))
    base = profile.defaults.get("detectors", {})
    if base or groups:
        merged["detectors"] = {
            group: {**base.get(group, {}), **groups.get(group, {})}
            for group in base.keys() | groups.keys()
        }
    return merged


# Keys that a model inherits from [defaults] when it does not set them itself.
_INHERITED = ("tier", "fallback", "label_delay", "escalation_limit", "detectors", "slo")
_MODEL_KEYS = {"owner", "features", "shadow", *_INHERITED}


def _validate_defaults(defaults: dict[str, Any]) -> None:
    # Checked once here so that a bad default is reported as such, not as every model's error.
    try:
        if "tier" in defaults:
            _choice(None, "tier", defaults["tier"], TIERS)
        if "fallback" in defaults:
            _fallback(None, defaults["fallback"])
        if "slo" in defaults:
            _slo(None, defaults["slo"])
        for key in ("label_delay", "escalation_limit"):
            if key in defaults:
                _duration(None, key, defaults[key])
        _detectors(None, _detector_tables(None, defaults.get("detectors", {})), {})
    except PortfolioError as error:
        raise PortfolioError(None, f"defaults.{error.key}", error.reason) from None


def _model(model_id: str, raw: dict[str, Any], defaults: dict[str, Any], profile: Profile) -> Model:
    if not _IDENTIFIER.fullmatch(model_id):
        raise PortfolioError(model_id, "(name)", _identifier_reason(model_id))
    _reject_unknown_keys(model_id, "", raw, _MODEL_KEYS)
    merged = {key: defaults[key] for key in _INHERITED if key in defaults} | raw

    def require(key: str) -> Any:
        if key not in merged:
            raise PortfolioError(model_id, key, "required (set it in the model or in [defaults])")
        return merged[key]

    owner = require("owner")
    if not isinstance(owner, str) or not owner.strip():
        raise PortfolioError(model_id, "owner", f"expected a team or person, got {owner!r}")
    return Model(
        model_id=model_id,
        owner=owner,
        tier=_choice(model_id, "tier", require("tier"), TIERS),
        fallback=_fallback(model_id, require("fallback")),
        features=_features(model_id, merged.get("features", {})),
        label_delay=_duration(model_id, "label_delay", require("label_delay")),
        escalation_limit=_duration(model_id, "escalation_limit", merged["escalation_limit"])
        if "escalation_limit" in merged
        else DEFAULT_ESCALATION_LIMIT,
        detectors=_detectors(
            model_id,
            _detector_tables(None, defaults.get("detectors", {})),
            _detector_tables(model_id, raw.get("detectors", {})),
        ),
        shadow=_shadow(model_id, merged["shadow"], profile.min_stable_period)
        if "shadow" in merged
        else None,
        slo=_slo(model_id, merged["slo"]) if "slo" in merged else None,
    )


def _fallback(model_id: str | None, raw: object) -> Fallback:
    if isinstance(raw, str | list):
        raw = {"strategy": raw}
    table = _table(model_id, "fallback", raw)
    _reject_unknown_keys(model_id, "fallback.", table, {"strategy", "mode"})
    strategy = table.get("strategy")
    ladder: list[Any] = strategy if isinstance(strategy, list) else [strategy]
    if (
        not ladder
        or len(ladder) > MAX_LADDER
        or not all(isinstance(level, str) and _IDENTIFIER.fullmatch(level) for level in ladder)
    ):
        raise PortfolioError(
            model_id,
            "fallback.strategy",
            "expected the name of a fallback the fleet registers, or an array of 1 to "
            f"{MAX_LADDER} of them (a ladder, best first), got {strategy!r}",
        )
    if len(set(ladder)) != len(ladder) or model_id in ladder:
        raise PortfolioError(
            model_id,
            "fallback.strategy",
            f"a ladder names each level once and never the model itself, got {strategy!r}",
        )
    mode = _choice(model_id, "fallback.mode", table.get("mode", "automatic"), FALLBACK_MODES)
    return Fallback(strategy=ladder[0], mode=mode, below=tuple(ladder[1:]))


def _slo(model_id: str | None, raw: object) -> Slo:
    table = _table(model_id, "slo", raw)
    _reject_unknown_keys(model_id, "slo.", table, {"latency_p99_ms", "error_rate", "trip_share"})
    latency: Any = table.get("latency_p99_ms")
    if not _is_number(latency) or not latency > 0:
        raise PortfolioError(model_id, "slo.latency_p99_ms", f"expected ms > 0, got {latency!r}")
    error_rate = table.get("error_rate")
    if error_rate is not None and not (_is_number(error_rate) and 0 < error_rate < 1):
        raise PortfolioError(
            model_id, "slo.error_rate", f"expected a share in (0, 1), got {error_rate!r}"
        )
    share = table.get("trip_share", DEFAULT_TRIP_SHARE)
    if not (_is_number(share) and 0 < share <= 1):
        raise PortfolioError(
            model_id, "slo.trip_share", f"expected a share in (0, 1], got {share!r}"
        )
    return Slo(float(latency), None if error_rate is None else float(error_rate), float(share))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _features(model_id: str, raw: object) -> tuple[Feature, ...]:
    features = []
    for name, spec in _table(model_id, "features", raw).items():
        key = f"features.{name}"
        if not _IDENTIFIER.fullmatch(name):
            raise PortfolioError(model_id, key, _identifier_reason(name))
        if isinstance(spec, str):
            spec = {"kind": spec}
        table = _table(model_id, key, spec)
        _reject_unknown_keys(model_id, f"{key}.", table, {"kind", "write_lag_sla"})
        if "kind" not in table:
            raise PortfolioError(model_id, f"{key}.kind", "required")
        sla = table.get("write_lag_sla")
        features.append(
            Feature(
                name=name,
                kind=_choice(model_id, f"{key}.kind", table["kind"], FEATURE_KINDS),
                write_lag_sla=None
                if sla is None
                else _duration(model_id, f"{key}.write_lag_sla", sla),
            )
        )
    return tuple(features)


def _shadow(model_id: str, raw: object, min_stable_period: timedelta) -> Shadow:
    if isinstance(raw, str):
        raw = {"version": raw}
    table = _table(model_id, "shadow", raw)
    _reject_unknown_keys(model_id, "shadow.", table, {"version", "min_stable_period"})
    version = table.get("version")
    if not isinstance(version, str) or not version:
        raise PortfolioError(model_id, "shadow.version", "expected the shadow's model_version")
    if "min_stable_period" not in table:
        return Shadow(version=version, min_stable_period=min_stable_period)
    period = _duration(model_id, "shadow.min_stable_period", table["min_stable_period"])
    return Shadow(version=version, min_stable_period=period)


def _detector_tables(model_id: str | None, raw: object) -> dict[str, dict[str, Any]]:
    tables = {}
    for group, settings in _table(model_id, "detectors", raw).items():
        key = f"detectors.{group}"
        if group not in DETECTOR_GROUPS:
            raise PortfolioError(
                model_id, key, f"unknown detector group; valid: {', '.join(DETECTOR_GROUPS)}"
            )
        tables[group] = _table(model_id, key, settings)
    return tables


def _detectors(
    model_id: str | None, defaults: dict[str, dict[str, Any]], own: dict[str, dict[str, Any]]
) -> tuple[tuple[str, tuple[tuple[str, DetectorParam], ...]], ...]:
    groups = []
    for group in sorted(defaults.keys() | own.keys()):
        settings = defaults.get(group, {}) | own.get(group, {})
        durations = DETECTOR_DURATIONS.get(group, {})
        params = tuple(
            (name, _detector_param(model_id, f"detectors.{group}.{name}", value))
            if name not in durations
            else (name, _in_unit(model_id, f"detectors.{group}.{name}", value, durations[name]))
            for name, value in sorted(settings.items())
        )
        groups.append((group, params))
    return tuple(groups)


def _detector_param(model_id: str | None, key: str, value: object) -> DetectorParam:
    scalar = (str, int, float, bool)
    if isinstance(value, scalar):
        return value
    if isinstance(value, list) and all(isinstance(item, scalar) for item in value):
        return tuple(value)
    raise PortfolioError(
        model_id, key, f"expected a string, number, boolean or list of them, got {value!r}"
    )


def _duration(model_id: str | None, key: str, value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise PortfolioError(model_id, key, str(error)) from None


def _in_unit(model_id: str | None, key: str, value: object, unit: timedelta) -> float:
    """A detector's duration as the number of ``unit`` its detector takes; a plain number
    is one already. Zero passes here: each detector says whether it takes it."""
    try:
        return parse_duration(value, unit, allow_zero=True) / unit
    except ValueError as error:
        raise PortfolioError(model_id, key, str(error)) from None


def _choice(model_id: str | None, key: str, value: object, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise PortfolioError(model_id, key, f"expected one of {', '.join(valid)}, got {value!r}")
    return str(value)


def _table(model_id: str | None, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PortfolioError(model_id, key or "(table)", f"expected a table, got {value!r}")
    return value


def _reject_unknown_keys(
    model_id: str | None, prefix: str, table: dict[str, Any], valid: set[str]
) -> None:
    # A typo such as "lable_delay" would otherwise silently fall back to a default.
    for key in table:
        if key not in valid:
            raise PortfolioError(
                model_id, prefix + key, f"unknown key; valid: {', '.join(sorted(valid))}"
            )


def _identifier_reason(name: str) -> str:
    return (
        f"{shown(name)} is not a valid name: use 1 to 128 letters, digits, '.', '_', ':' or '-', "
        "starting with a letter or digit"
    )
