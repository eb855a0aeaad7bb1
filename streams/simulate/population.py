"""How each model of a portfolio behaves in simulation: traffic, features, labels, noise.

The portfolio (``streams.portfolio``) declares what failsoft watches: model ids, features,
expected label delays, shadow pairing. This module is the one place where the simulator
turns a ``Portfolio`` into ``ModelProfile`` values, adding the behaviour a declaration does
not say (feature distributions, write lags, how noisy the model is), drawn from a seed.
``synthetic_portfolio`` builds a plausible portfolio from a model count, and
``portfolio_toml`` writes it as a portfolio file for the workers, with its durations
compressed by the time scale so that the workers see the same clock as the messages.

All durations in profiles are nominal seconds (uncompressed).

>>> portfolio = synthetic_portfolio(6)
>>> [model.model_id for model in portfolio][:3]
['churn-000', 'fraud-001', 'ctr-002']
>>> [model.model_id for model in portfolio if model.shadow is not None]
['ctr-002']
>>> profile = profile_portfolio(portfolio, seed=3)[2]
>>> profile.model_id, profile.shadow_version, [f.kind for f in profile.features]
('ctr-002', 'ctr-002-candidate', ['numeric', 'numeric', 'numeric', 'categorical'])
"""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import numpy as np

from streams.portfolio import Fallback, Feature, Model, Portfolio, Shadow, Slo

__all__ = [
    "FeatureProfile",
    "ModelProfile",
    "portfolio_toml",
    "profile_portfolio",
    "synthetic_portfolio",
]

# (use case, tier, numeric features, categorical feature, label delay choices)
_USE_CASES: tuple[tuple[str, str, tuple[str, ...], str, tuple[timedelta, ...]], ...] = (
    (
        "churn",
        "cpu",
        ("sessions_7d", "days_since_login", "tickets_30d"),
        "plan",
        (timedelta(hours=12), timedelta(days=3)),
    ),
    (
        "fraud",
        "cpu",
        ("amount", "merchant_risk", "account_age_days"),
        "country",
        (timedelta(hours=6), timedelta(hours=18)),
    ),
    (
        "ctr",
        "gpu",
        ("impressions_1h", "dwell_time_s", "position"),
        "device",
        (timedelta(minutes=5), timedelta(minutes=30)),
    ),
    (
        "ltv",
        "cpu",
        ("orders_90d", "basket_value", "tenure_days"),
        "segment",
        (timedelta(hours=2), timedelta(hours=8)),
    ),
    (
        "credit",
        "cpu",
        ("income", "utilization", "delinquencies_1y"),
        "region",
        (timedelta(hours=1), timedelta(hours=4)),
    ),
)
# Every fourth model, starting with the third, runs a shadow candidate.
_SHADOW_EVERY = 4
_SHADOW_OFFSET = 2
_ESCALATION_LIMIT = timedelta(days=1)
_MIN_STABLE_PERIOD = timedelta(days=1)
_DEFAULT_WRITE_LAG = timedelta(seconds=5)
# From this index on, a gpu model falls back to a ladder: the cpu model two before it (the
# churn model of its cycle), then the popular items; it has a latency SLO that its own
# latencies (medians drawn in 3 to 30 ms, sigma 0.3: a p99 of at most 61 ms) keep.
_LADDER_FROM = 15
_LADDER_BELOW = 2
_STATIC_FALLBACK = "top_n_popular"
_SLO_P99_MS = 80.0


@dataclasses.dataclass(frozen=True)
class FeatureProfile:
    """A feature's values and writes. Numeric: ``mean``/``std``, logit ``weight`` per std.

    Categorical: ``categories`` with ``cumulative`` probabilities and a logit ``effects``
    per category. ``freshness_mean`` is how long before a request the upstream event that
    produced the value happened, on average; ``write_lag_median`` and ``write_lag_sigma``
    give the lognormal of ``written_at - event_at``.
    """

    name: str
    kind: str
    write_lag_median: float
    write_lag_sigma: float
    freshness_mean: float
    mean: float = 0.0
    std: float = 1.0
    weight: float = 0.0
    categories: tuple[str, ...] = ()
    cumulative: tuple[float, ...] = ()
    effects: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """A model's traffic share, its features, its labels and its (live) noise on the logit."""

    model_id: str
    version: str
    shadow_version: str | None
    features: tuple[FeatureProfile, ...]
    traffic_weight: float
    label_delay_median: float
    label_delay_sigma: float
    label_coverage: float
    intercept: float
    noise: float
    latency_median_ms: float
    slo_p99_ms: float | None = None

    def feature_index(self, name: str) -> int | None:
        for index, feature in enumerate(self.features):
            if feature.name == name:
                return index
        return None


def synthetic_portfolio(n_models: int) -> Portfolio:
    """A portfolio of ``n_models`` models cycling through five use cases.

    A model's id, features and label delay depend only on its index, so the same scenario
    names the same models whatever the portfolio size. Feature names carry the model id,
    so that no two models share a feature and a write routes to one model.
    """
    if n_models < 1:
        raise ValueError(f"n_models: expected at least 1, got {n_models}")
    models: dict[str, Model] = {}
    for index in range(n_models):
        use_case, tier, numeric, categorical, delays = _USE_CASES[index % len(_USE_CASES)]
        model_id = f"{use_case}-{index:03d}"
        features = tuple(Feature(f"{model_id}.{name}", "numeric") for name in numeric)
        laddered = tier == "gpu" and index >= _LADDER_FROM
        below = list(models)[index - _LADDER_BELOW] if laddered else None
        models[model_id] = Model(
            model_id=model_id,
            owner=f"team-{use_case}",
            tier=tier,
            fallback=Fallback(below, below=(_STATIC_FALLBACK,))
            if below is not None
            else Fallback(_STATIC_FALLBACK),
            features=(*features, Feature(f"{model_id}.{categorical}", "categorical")),
            label_delay=delays[(index // len(_USE_CASES)) % len(delays)],
            escalation_limit=_ESCALATION_LIMIT,
            shadow=Shadow(f"{model_id}-candidate", _MIN_STABLE_PERIOD)
            if index % _SHADOW_EVERY == _SHADOW_OFFSET
            else None,
            slo=Slo(_SLO_P99_MS) if laddered else None,
        )
    return Portfolio(models)


def profile_portfolio(portfolio: Portfolio, seed: int) -> tuple[ModelProfile, ...]:
    """The simulated behaviour of each declared model, in the portfolio's order.

    Each model draws from its own generator (seed, index), so adding models to the end of
    a portfolio leaves the earlier ones unchanged.
    """
    return tuple(
        _profile(model, np.random.default_rng([seed, index]))
        for index, model in enumerate(portfolio)
    )


def _profile(model: Model, rng: np.random.Generator) -> ModelProfile:
    return ModelProfile(
        model_id=model.model_id,
        version=f"{model.model_id}-v1",
        shadow_version=model.shadow.version if model.shadow is not None else None,
        features=tuple(_feature_profile(feature, rng) for feature in model.features),
        traffic_weight=float(rng.lognormal(0.0, 0.5)),
        label_delay_median=model.label_delay.total_seconds(),
        label_delay_sigma=float(rng.uniform(0.3, 0.8)),
        label_coverage=float(rng.uniform(0.85, 1.0)),
        intercept=float(rng.uniform(-1.5, 0.0)),
        noise=float(rng.uniform(0.8, 1.2)),
        latency_median_ms=float(rng.uniform(3.0, 30.0)),
        slo_p99_ms=model.slo.latency_p99_ms if model.slo is not None else None,
    )


def _feature_profile(feature: Feature, rng: np.random.Generator) -> FeatureProfile:
    if feature.write_lag_sla is not None:
        # An upstream that honours its SLA writes well inside it almost always.
        lag_median = feature.write_lag_sla.total_seconds() / 10
    else:
        lag_median = _DEFAULT_WRITE_LAG.total_seconds() * float(rng.uniform(0.2, 3.0))
    common = FeatureProfile(
        name=feature.name,
        kind=feature.kind,
        write_lag_median=lag_median,
        write_lag_sigma=float(rng.uniform(0.4, 0.9)),
        freshness_mean=float(rng.uniform(10 * 60, 60 * 60)),
    )
    if feature.kind == "numeric":
        return dataclasses.replace(
            common,
            mean=float(rng.uniform(-50.0, 200.0)),
            std=float(rng.uniform(1.0, 40.0)),
            weight=float(rng.normal(0.0, 0.8)),
        )
    short_name = feature.name.rsplit(".", 1)[-1]
    n_categories = int(rng.integers(3, 7))
    probabilities = rng.dirichlet(np.full(n_categories, 2.0))
    cumulative = np.cumsum(probabilities)
    cumulative[-1] = 1.0
    return dataclasses.replace(
        common,
        categories=tuple(f"{short_name}-{k}" for k in range(n_categories)),
        cumulative=tuple(float(c) for c in cumulative),
        effects=tuple(float(e) for e in rng.normal(0.0, 0.5, n_categories)),
    )


def portfolio_toml(portfolio: Portfolio, time_scale: float) -> str:
    """The portfolio as a portfolio file, with every duration divided by ``time_scale``.

    Workers that read it expect labels, escalation and shadow stability on the same
    compressed clock as the simulated messages.

    >>> text = portfolio_toml(synthetic_portfolio(3), time_scale=1440)
    >>> from streams.portfolio import parse_portfolio
    >>> model = parse_portfolio(text).get("ctr-002")
    >>> model.label_delay, model.escalation_limit, model.shadow.min_stable_period
    (datetime.timedelta(microseconds=208000), datetime.timedelta(seconds=60), \
datetime.timedelta(seconds=60))
    """
    lines = [
        "# Written by `failsoft simulate --write-portfolio`: a synthetic portfolio whose",
        f"# durations are compressed {time_scale:g} times, like the simulated messages.",
        "schema_version = 1",
    ]
    for model in portfolio:
        table = f"models.{_toml_key(model.model_id)}"
        lines += [
            "",
            f"[{table}]",
            f"owner = {_toml_string(model.owner)}",
            f"tier = {_toml_string(model.tier)}",
            f"fallback = {{ strategy = {_toml_strategy(model.fallback.ladder)}, "
            f"mode = {_toml_string(model.fallback.mode)} }}",
            f"label_delay = {_compressed(model.label_delay, time_scale)}",
            f"escalation_limit = {_compressed(model.escalation_limit, time_scale)}",
        ]
        if model.shadow is not None:
            lines.append(
                f"shadow = {{ version = {_toml_string(model.shadow.version)}, "
                f"min_stable_period = {_compressed(model.shadow.min_stable_period, time_scale)} }}"
            )
        if model.slo is not None:
            lines.append(
                f"slo = {{ latency_p99_ms = {model.slo.latency_p99_ms!r}, "
                f"trip_share = {model.slo.trip_share!r} }}"
            )
        lines += ["", f"[{table}.features]"]
        for feature in model.features:
            sla = (
                f", write_lag_sla = {_compressed(feature.write_lag_sla, time_scale)}"
                if feature.write_lag_sla is not None
                else ""
            )
            lines.append(
                f"{_toml_key(feature.name)} = {{ kind = {_toml_string(feature.kind)}{sla} }}"
            )
    return "\n".join(lines) + "\n"


def _compressed(duration: timedelta, time_scale: float) -> str:
    # Whole milliseconds, at least one: the portfolio requires positive durations.
    millis = max(1, math.floor(duration.total_seconds() * 1000 / time_scale))
    return f'"{millis}ms"'


def _toml_key(name: str) -> str:
    return _toml_string(name) if not name.replace("-", "").replace("_", "").isalnum() else name


def _toml_strategy(ladder: tuple[str, ...]) -> str:
    if len(ladder) == 1:
        return _toml_string(ladder[0])
    return "[" + ", ".join(map(_toml_string, ladder)) + "]"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
