"""``[defaults] profile = "trial"``: minute-scale settings with nothing tuned by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams.demo.run import DEMO_DETECTOR_DEFAULTS
from streams.monitor import Batch, Monitor
from streams.portfolio import DEFAULT_MIN_STABLE_PERIOD, PortfolioError, parse_portfolio
from streams.simulate.population import portfolio_toml
from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario
from streams.simulate.scenario import parse_scenario

ONE_MODEL = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
label_delay = "2m"
shadow = "cand"
"""


@pytest.mark.parametrize("scenario", ["default.toml", "short.toml"])
def test_the_trial_profile_is_the_demos_tuning(scenario: str) -> None:
    # The demo's detections (tests/demo/test_demo_portfolio.py, the README's demo table)
    # are therefore what a trial gets, with no setting written by hand.
    run = SimulationRun.prepare(load_scenario(SCENARIOS / scenario), start_ms=0)
    models = portfolio_toml(run.portfolio, run.time_scale)
    demo = parse_portfolio(models + DEMO_DETECTOR_DEFAULTS)
    trial = parse_portfolio(models + '\n[defaults]\nprofile = "trial"\n')
    assert dict(trial.models) == dict(demo.models)


def test_trial_defaults_are_minutes_and_production_keeps_its_own() -> None:
    trial = parse_portfolio('[defaults]\nprofile = "trial"\n' + ONE_MODEL).get("ranker")
    production = parse_portfolio(ONE_MODEL).get("ranker")
    assert trial is not None and production is not None
    assert trial.escalation_limit == timedelta(minutes=10)
    assert production.escalation_limit == timedelta(days=3)
    assert trial.shadow is not None and production.shadow is not None
    assert trial.shadow.min_stable_period == timedelta(minutes=1)
    assert production.shadow.min_stable_period == DEFAULT_MIN_STABLE_PERIOD
    assert trial.detector_settings("health") == {
        "clear_after": 10.0,
        "confirm": 2,
        "min_dwell": 5.0,
    }
    assert production.detector_settings("health") == {}


def test_the_files_own_defaults_win_over_the_profile_key_by_key() -> None:
    text = '[defaults]\nprofile = "trial"\n[defaults.detectors.health]\nmin_dwell = "1m"\n'
    model = parse_portfolio(text + ONE_MODEL + "escalation_limit = '1h'\n").get("ranker")
    assert model is not None
    assert model.detector_settings("health") == {
        "clear_after": 10.0,
        "confirm": 2,
        "min_dwell": 60.0,
    }
    assert model.escalation_limit == timedelta(hours=1)


def test_an_unknown_profile_names_the_valid_ones() -> None:
    with pytest.raises(PortfolioError) as caught:
        parse_portfolio('[defaults]\nprofile = "quick"\n' + ONE_MODEL)
    assert str(caught.value) == (
        "portfolio: defaults.profile: expected one of production, trial, got 'quick'"
    )


# A first trial as a new user writes it: a model with quick labels and a shadow, no
# detector setting of its own. The simulator plays it in real time (time_scale 1, so the
# file's durations are the world's) for 80 seconds: its shadow is better and a
# trigger nulls a feature when a positive outcome happens.
TRIAL_MODEL = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
label_delay = "1s"
shadow = "ranker-v2"
[models.ranker.features]
"ranker.clicks_7d" = "numeric"
"""
TRIAL_RUN = """
[run]
seed = 5
time_scale = 1
duration = "80s"
rate = 20
[[incidents]]
kind = "label_leak"
model = "ranker"
feature = "ranker.clicks_7d"
at = "0s"
[[incidents]]
kind = "shadow_better"
model = "ranker"
at = "0s"
"""
START_MS = 1_800_000_000_000


def detections(profile: str) -> list[tuple[float, str, str, str]]:
    """The ranker's leak and shadow verdict alerts as (start of their batch in seconds into
    the run, event, severity, value), its monitor fed as the worker feeds it: half a
    second of records per batch."""
    portfolio = parse_portfolio(f'[defaults]\nprofile = "{profile}"\n' + TRIAL_MODEL)
    model = portfolio.get("ranker")
    assert model is not None
    run = SimulationRun.prepare(parse_scenario(TRIAL_RUN), start_ms=START_MS, portfolio=portfolio)
    monitor = Monitor(model)
    found: list[tuple[float, str, str, str]] = []

    def observe(records: list[Prediction | GroundTruth | FeatureWrite], at_ms: int) -> None:
        effects = monitor.observe(Batch.from_records("ranker", records, {"ranker.clicks_7d"}))
        found.extend(
            ((at_ms - START_MS) / 1000, a.event, a.severity, a.value)
            for a in effects.alerts
            if a.event in ("label_leak", "shadow_verdict")
        )

    records: list[Prediction | GroundTruth | FeatureWrite] = []
    batch_start = START_MS
    for event in run.events():
        if event.at - batch_start >= 500:
            observe(records, batch_start)
            records, batch_start = [], event.at
        records.append(event.record)
    observe(records, batch_start)
    return found


def test_a_trial_flags_the_leak_and_promotes_the_better_shadow_within_minutes() -> None:
    # The leak once its lag bins are judged (a second wide, judged 3 s after they close),
    # the shadow once its labelled pairs span the trial's minute of event time.
    assert detections("trial") == [
        (25.555, "label_leak", "major", ""),
        (60.953, "shadow_verdict", "informational", "promote"),
    ]


def test_production_defaults_decide_neither_within_the_same_run() -> None:
    # A lag bin of production is judged ten minutes after it closes, and a shadow after a
    # week: the same 80 seconds end with no verdict.
    assert detections("production") == []
