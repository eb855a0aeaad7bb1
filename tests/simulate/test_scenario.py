"""Scenario files, their checks against the portfolio, the timeline, and the written portfolio."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.contracts import Prediction
from streams.portfolio import Slo, load_portfolio
from streams.simulate.population import portfolio_toml, synthetic_portfolio
from streams.simulate.run import SCENARIOS, SimulationRun
from streams.simulate.scenario import (
    INCIDENT_KINDS,
    ScenarioError,
    check_incidents,
    load_scenario,
    parse_scenario,
)
from streams.simulate.timeline import write_timeline

VALID = """
[[incidents]]
kind = "drift_gradual"
model = "ltv-003"
feature = "ltv-003.basket_value"
at = "2h"
ramp = "4h"
shift = 2
"""


# The short scenario's 8 models have no SLO (the synthetic portfolio gives one to gpu
# models from index 15 on), so it cannot slow one down.
@pytest.mark.parametrize(("name", "without"), [("default", set()), ("short", {"latency_jump"})])
def test_shipped_scenarios_fit_their_own_run_and_cover_every_kind(
    name: str, without: set[str]
) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    run = SimulationRun.prepare(scenario, start_ms=0)
    assert {incident.kind for incident in scenario.incidents} == set(INCIDENT_KINDS) - without
    assert any(not incident.recovers for incident in scenario.incidents)
    assert len(run.portfolio) == scenario.run.models


@pytest.mark.parametrize(
    ("replace", "by", "incident", "key", "reason"),
    [
        ("shift = 2", 'shift = "big"', 1, "shift", "expected a number, got 'big'"),
        ("shift = 2", "shift = nan", 1, "shift", "expected a finite number, got nan"),
        ("shift = 2", "", 1, "shift", "required for drift_gradual"),
        ('ramp = "4h"', 'ramp = "soon"', 1, "ramp", "is not a duration"),
        ('at = "2h"', 'at = "2h"\nuntil = "1h"', 1, "until", "must be after 'at'"),
        ('at = "2h"', 'at = "2h"\nshfit = 1', 1, "shfit", "unknown key"),
        ('feature = "ltv-003.basket_value"', "", 1, "feature", "required for drift_gradual"),
        ('at = "2h"', "", 1, "at", "required"),
    ],
)
def test_a_bad_incident_is_named_with_its_key_and_reason(
    replace: str, by: str, incident: int, key: str, reason: str
) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(VALID.replace(replace, by))
    assert (raised.value.incident, raised.value.key) == (incident, key)
    assert reason in raised.value.reason


def test_a_model_level_incident_refuses_a_feature_and_broken_modes_are_checked() -> None:
    with pytest.raises(ScenarioError, match="applies to a whole model"):
        parse_scenario('[[incidents]]\nkind="shadow_better"\nmodel="a"\nfeature="x"\nat="0s"')
    with pytest.raises(ScenarioError, match="expected one of constant, errors"):
        parse_scenario('[[incidents]]\nkind="broken_model"\nmodel="a"\nmode="on fire"\nat="1h"')
    with pytest.raises(ScenarioError, match="probability"):
        parse_scenario('[[incidents]]\nkind="broken_model"\nmodel="a"\nerror_rate=2\nat="1h"')
    with pytest.raises(ScenarioError, match="required for latency_jump"):
        parse_scenario('[[incidents]]\nkind="latency_jump"\nmodel="a"\nat="1h"')
    with pytest.raises(ScenarioError, match="expected a positive number, got -5"):
        parse_scenario('[[incidents]]\nkind="latency_jump"\nmodel="a"\nlatency_ms=-5\nat="1h"')
    with pytest.raises(ScenarioError, match=r"run\.rate"):
        parse_scenario("[run]\nrate = -1")
    with pytest.raises(ScenarioError, match=r"run\.time_scale"):
        parse_scenario("[run]\ntime_scale = inf")


@pytest.mark.parametrize(
    ("incident", "reason"),
    [
        ('kind="label_leak"\nmodel="nope-999"\nfeature="x"', "'nope-999' is not in the portfolio"),
        ('kind="label_leak"\nmodel="ctr-002"\nfeature="ctr-002.x"', "is not a feature of ctr-002"),
        (
            'kind="drift_abrupt"\nmodel="ctr-002"\nfeature="ctr-002.device"\nshift=1',
            "needs a numeric feature, not categorical",
        ),
        ('kind="shadow_worse"\nmodel="ctr-007"', "ctr-007 runs no shadow"),
        (
            'kind="latency_jump"\nmodel="ctr-007"\nlatency_ms=400',
            "ctr-007 has no slo; a latency jump trips a breaker set by its slo.latency_p99_ms",
        ),
    ],
)
def test_incidents_are_checked_against_the_portfolio(incident: str, reason: str) -> None:
    scenario = parse_scenario(f'[[incidents]]\n{incident}\nat = "1h"')
    with pytest.raises(ScenarioError, match=reason):
        check_incidents(scenario.incidents, synthetic_portfolio(8), timedelta(days=1))


def test_an_incident_after_the_run_ends_is_refused() -> None:
    scenario = load_scenario(SCENARIOS / "default.toml")
    with pytest.raises(ScenarioError) as raised:
        SimulationRun.prepare(scenario, start_ms=0, duration=timedelta(seconds=30))
    assert raised.value.key == "at"
    assert "not before the run's end" in raised.value.reason


def test_timeline_has_one_line_per_incident_on_the_compressed_clock(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "short.toml")
    run = SimulationRun.prepare(scenario, start_ms=1_800_000_000_000)
    path = tmp_path / "timeline.jsonl"
    write_timeline(path, run.timeline())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == [i.kind for i in scenario.incidents]
    for line, incident in zip(lines, scenario.incidents, strict=True):
        assert line["model"] == incident.model
        assert line["feature"] == incident.feature
        expected = 1_800_000_000 + incident.at.total_seconds() / run.time_scale
        assert line["at_epoch"] == pytest.approx(expected, abs=1e-3)
        assert line["at"].startswith("2027-01-15T08:00:0") and line["at"].endswith("Z")
        assert line["recovers"] is (incident.until is not None)
        assert (line["until_epoch"] is None) is (incident.until is None)
    gradual = next(line for line in lines if line["kind"] == "drift_gradual")
    assert gradual["params"] == {"ramp": 4 * 3600.0, "shift": 2.0}


def test_written_portfolio_loads_with_the_same_models_and_compressed_durations(
    tmp_path: Path,
) -> None:
    portfolio = synthetic_portfolio(20)
    path = tmp_path / "portfolio.toml"
    path.write_text(portfolio_toml(portfolio, time_scale=1440))
    loaded = load_portfolio(path)
    assert [m.model_id for m in loaded] == [m.model_id for m in portfolio]
    for original, written in zip(portfolio, loaded, strict=True):
        assert written.features == original.features
        assert written.label_delay == pytest.approx(
            original.label_delay / 1440, abs=timedelta(milliseconds=1)
        )
        assert (written.shadow is None) is (original.shadow is None)
        assert (written.fallback, written.slo) == (original.fallback, original.slo)
    # From index 15, a gpu model falls back to the cpu model two before it, then the
    # popular items, and keeps an SLO.
    laddered = [(m.model_id, m.fallback.ladder, m.slo) for m in loaded if m.slo is not None]
    assert laddered == [("ctr-017", ("churn-015", "top_n_popular"), Slo(80.0))]
    assert (loaded.get("ctr-017").tier, loaded.get("churn-015").tier) == ("gpu", "cpu")


def test_a_declared_portfolio_file_is_simulated_with_its_own_models_and_features() -> None:
    portfolio = load_portfolio(
        Path(__file__).resolve().parents[2] / "deploy" / "portfolio.example.toml"
    )
    scenario = parse_scenario(
        """
        [[incidents]]
        kind = "shadow_better"
        model = "home-recommender"
        at = "0s"
        [[incidents]]
        kind = "availability_gap"
        model = "card-fraud"
        feature = "account_age_days"
        write_lag = "2d"
        at = "1h"
        """
    )
    run = SimulationRun.prepare(
        scenario, start_ms=0, portfolio=portfolio, time_scale=3600, duration=timedelta(seconds=10)
    )
    seen: dict[str, set[str]] = {}
    roles: set[tuple[str, str]] = set()
    for event in run.events():
        record = event.record
        if isinstance(record, Prediction):
            seen.setdefault(record.model_id, set()).update(record.features)
            roles.add((record.model_id, record.role))
    for model in portfolio:
        assert seen[model.model_id] == {feature.name for feature in model.features}
    assert roles == {
        ("home-recommender", "live"),
        ("home-recommender", "shadow"),
        ("card-fraud", "live"),
    }
