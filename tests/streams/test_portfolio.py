"""The portfolio file: parsing, inheritance from [defaults], and errors that name the model,
the key and the reason."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import pytest

from streams.portfolio import (
    DEFAULT_ESCALATION_LIMIT,
    DEFAULT_MIN_STABLE_PERIOD,
    DETECTOR_DURATIONS,
    Fallback,
    Feature,
    PortfolioError,
    Shadow,
    load_portfolio,
    parse_duration,
    parse_portfolio,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "portfolio.example.toml"

MINIMAL = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
label_delay = "2h"
"""


def test_example_file_loads_with_inheritance_and_overrides() -> None:
    portfolio = load_portfolio(EXAMPLE)
    assert [model.model_id for model in portfolio] == ["home-recommender", "card-fraud"]

    recs = portfolio.get("home-recommender")
    assert recs is not None
    assert recs.owner == "team-recs"
    assert recs.tier == "gpu"
    assert recs.fallback == Fallback(strategy="top_n_popular", mode="automatic")
    assert recs.label_delay == timedelta(minutes=30)
    assert recs.label_ttl == timedelta(minutes=90)
    assert recs.escalation_limit == timedelta(days=2)
    assert recs.shadow == Shadow(version="2026-11-20", min_stable_period=timedelta(days=7))
    assert recs.feature("sessions_7d") == Feature("sessions_7d", "numeric", timedelta(minutes=5))
    assert recs.feature("country") == Feature("country", "categorical", None)
    assert recs.feature("absent") is None
    # Per-key merge: the model's threshold is added to the inherited window.
    assert recs.detector_settings("drift") == {"threshold": 0.2, "window_size": 1000}
    assert recs.detector_settings("leaks") == {}
    assert recs.detector_settings("health") == {"clear_after": 3600, "confirm": 2, "min_dwell": 900}

    fraud = portfolio.get("card-fraud")
    assert fraud is not None
    assert fraud.tier == "cpu"  # inherited
    assert fraud.escalation_limit == timedelta(days=3)  # inherited
    assert fraud.label_delay == timedelta(days=21)
    assert not fraud.fallback.automatic
    assert fraud.shadow is None
    assert fraud.detector_settings("drift") == {"window_size": 1000}


def test_lookup_of_undeclared_model_and_feature_routing() -> None:
    portfolio = load_portfolio(EXAMPLE)
    assert portfolio.get("not-declared") is None
    assert "not-declared" not in portfolio
    assert "card-fraud" in portfolio
    assert len(portfolio) == 2
    assert portfolio.models_monitoring("amount") == ("card-fraud",)
    assert portfolio.models_monitoring("nobody_reads_this") == ()


def test_defaults_when_optional_keys_are_absent() -> None:
    model = parse_portfolio(MINIMAL).get("ranker")
    assert model is not None
    assert model.escalation_limit == DEFAULT_ESCALATION_LIMIT
    assert model.features == ()
    assert model.detectors == ()
    assert model.shadow is None
    assert model.fallback.automatic
    shadowed = parse_portfolio(MINIMAL + 'shadow = "v9"\n').get("ranker")
    assert shadowed is not None
    assert shadowed.shadow == Shadow("v9", DEFAULT_MIN_STABLE_PERIOD)


def test_models_are_frozen_and_pickle() -> None:
    # Models travel into detector-building code and may be pickled with worker state.
    model = load_portfolio(EXAMPLE).get("home-recommender")
    assert model is not None
    with pytest.raises(AttributeError):
        model.owner = "someone else"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(model)) == model
    assert hash(model) == hash(pickle.loads(pickle.dumps(model)))


@pytest.mark.parametrize(
    ("text", "model", "key", "reason"),
    [
        (MINIMAL.replace('tier = "cpu"', 'tier = "tpu"'), "ranker", "tier", "expected one of"),
        (MINIMAL.replace('owner = "team-search"\n', ""), "ranker", "owner", "required"),
        (MINIMAL.replace('owner = "team-search"', 'owner = " "'), "ranker", "owner", "expected"),
        (MINIMAL.replace("label_delay", "lable_delay"), "ranker", "lable_delay", "unknown key"),
        (MINIMAL.replace('"2h"', '"2 fortnights"'), "ranker", "label_delay", "duration"),
        (MINIMAL.replace('"2h"', "-5"), "ranker", "label_delay", "positive"),
        (MINIMAL.replace('"2h"', "true"), "ranker", "label_delay", "duration"),
        (MINIMAL + "escalation_limit = 0\n", "ranker", "escalation_limit", "positive"),
        (MINIMAL + 'features = { age = "number" }\n', "ranker", "features.age.kind", "numeric"),
        (MINIMAL + "features = { age = {} }\n", "ranker", "features.age.kind", "required"),
        (
            MINIMAL + 'features = { age = { kind = "numeric", sla = "1m" } }\n',
            "ranker",
            "features.age.sla",
            "unknown key",
        ),
        (
            MINIMAL + 'features = { age = { kind = "numeric", write_lag_sla = "soon" } }\n',
            "ranker",
            "features.age.write_lag_sla",
            "duration",
        ),
        (MINIMAL + 'features = ["age"]\n', "ranker", "features", "expected a table"),
        (MINIMAL + "[models.ranker.detectors.dirft]\n", "ranker", "detectors.dirft", "unknown"),
        (
            MINIMAL + "[models.ranker.detectors.drift]\nwindow = { a = 1 }\n",
            "ranker",
            "detectors.drift.window",
            "expected a string, number",
        ),
        (MINIMAL + "shadow = { }\n", "ranker", "shadow.version", "model_version"),
        (
            MINIMAL + 'shadow = { version = "v2", min_stable_period = "a week" }\n',
            "ranker",
            "shadow.min_stable_period",
            "duration",
        ),
        (
            MINIMAL.replace('fallback = "top_n_popular"', 'fallback = { mode = "automatic" }'),
            "ranker",
            "fallback.strategy",
            "fallback the fleet registers",
        ),
        (
            MINIMAL.replace('"top_n_popular"', '{ strategy = "x", mode = "maybe" }'),
            "ranker",
            "fallback.mode",
            "automatic, alert_only",
        ),
        (MINIMAL.replace("models.ranker", 'models."bad name"'), "bad name", "(name)", "valid"),
    ],
)
def test_errors_name_model_key_and_reason(text: str, model: str, key: str, reason: str) -> None:
    with pytest.raises(PortfolioError) as caught:
        parse_portfolio(text)
    assert (caught.value.model, caught.value.key) == (model, key)
    assert reason in caught.value.reason
    path = 'models."bad name"' if key == "(name)" else f"models.{model}.{key}"
    assert str(caught.value) == f"portfolio: {path}: {caught.value.reason}"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("schema_version = 2\n" + MINIMAL, "schema_version", "expected 1"),
        ("", "models", "at least one"),
        ("colour = 1\n" + MINIMAL, "colour", "unknown key"),
        ("[models\n", "(file)", "not valid TOML"),
        ('[defaults]\ntier = "tpu"\n' + MINIMAL, "defaults.tier", "expected one of"),
        ("[defaults]\nowner = 'x'\n" + MINIMAL, "defaults.owner", "unknown key"),
        ("[defaults.detectors.typo]\n" + MINIMAL, "defaults.detectors.typo", "unknown"),
        ("[defaults]\nlabel_delay = 'never'\n" + MINIMAL, "defaults.label_delay", "duration"),
    ],
)
def test_file_level_errors_name_the_key(text: str, key: str, reason: str) -> None:
    with pytest.raises(PortfolioError) as caught:
        parse_portfolio(text)
    assert caught.value.model is None
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_missing_file_is_a_portfolio_error(tmp_path: Path) -> None:
    with pytest.raises(PortfolioError, match="cannot be read"):
        load_portfolio(tmp_path / "absent.toml")


def test_model_inherits_required_keys_from_defaults() -> None:
    portfolio = parse_portfolio(
        '[defaults]\ntier = "gpu"\nfallback = "constant"\nlabel_delay = 600\n'
        '[models.a]\nowner = "x"\n[models.b]\nowner = "y"\ntier = "cpu"\n'
    )
    a, b = portfolio.get("a"), portfolio.get("b")
    assert a is not None and b is not None
    assert (a.tier, b.tier) == ("gpu", "cpu")
    assert a.label_delay == b.label_delay == timedelta(minutes=10)
    assert a.fallback == Fallback("constant")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5d", timedelta(hours=36)),
        ("2w", timedelta(days=14)),
        (45, timedelta(seconds=45)),
        (0.5, timedelta(milliseconds=500)),
    ],
)
def test_parse_duration(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m", "0s", "-1s", "1h-", None, [1]])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("group", "key", "value", "expected"),
    [
        ("leaks", "coincidence_lateness", '"5s"', 5_000.0),
        ("leaks", "coincidence_lateness", "5000", 5_000),
        ("leaks", "coincidence_max_lag", '"8d"', 8 * 86_400_000.0),
        ("leaks", "skew_tolerance", '"500ms"', 500.0),
        ("leaks", "report_every", '"1m"', 60.0),
        ("health", "min_dwell", '"15m"', 900.0),
        ("health", "clear_after", "3600", 3600),
        ("output", "restore_grace", '"500ms"', 0.5),
        ("performance", "report_interval", '"1m"', 60.0),
        ("shadow", "pair_ttl", '"1h"', 3600.0),
        ("shadow", "promotion_max_trial_period", '"3d"', 259_200.0),
    ],
)
def test_detector_durations_take_strings_and_keep_the_unit_of_numbers(
    group: str, key: str, value: str, expected: float
) -> None:
    # "5s" was refused ("lateness must be a finite number >= 0, got '5s'"); a number keeps
    # the unit its detector counts in (DETECTOR_DURATIONS).
    model = parse_portfolio(MINIMAL + f"[models.ranker.detectors.{group}]\n{key} = {value}\n")
    assert model.get("ranker").detector_settings(group)[key] == expected  # type: ignore[union-attr]
    assert key in DETECTOR_DURATIONS[group]


def test_a_bad_duration_names_the_full_key_the_value_and_an_example() -> None:
    with pytest.raises(PortfolioError) as caught:
        parse_portfolio(MINIMAL + '[models.ranker.detectors.leaks]\ncoincidence_lateness = "5x"\n')
    assert str(caught.value) == (
        'portfolio: models.ranker.detectors.leaks.coincidence_lateness: "5x" is not a '
        'duration; write e.g. "5s" or "15m"'
    )
    with pytest.raises(PortfolioError) as caught:
        parse_portfolio('[defaults.detectors.health]\nmin_dwell = "-1m"\n' + MINIMAL)
    assert str(caught.value) == (
        'portfolio: defaults.detectors.health.min_dwell: "-1m" is not a duration; '
        'write e.g. "5s" or "15m"'
    )
