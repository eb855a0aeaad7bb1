"""``[defaults] profile = "trial"``: minute-scale settings with nothing tuned by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.demo.run import DEMO_DETECTOR_DEFAULTS
from streams.portfolio import DEFAULT_MIN_STABLE_PERIOD, PortfolioError, parse_portfolio
from streams.simulate.population import portfolio_toml
from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario

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
