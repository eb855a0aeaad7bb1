"""One simulation run: a scenario played over a portfolio, with every choice made explicit.

``SimulationRun.prepare`` checks the scenario against the portfolio and fixes the clock;
``events()`` and ``timeline()`` are then pure and repeatable. The command line, the demo
and the tests all start here.

>>> run = SimulationRun.prepare(load_scenario(SCENARIOS / "short.toml"), start_ms=0)
>>> run.time_scale, run.duration_ms, len(run.portfolio), run.timeline()[0]["kind"]
(7200.0, 6000, 8, 'drift_abrupt')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from streams.portfolio import Portfolio
from streams.simulate.population import ModelProfile, profile_portfolio, synthetic_portfolio
from streams.simulate.scenario import SCENARIOS, Scenario, check_incidents, load_scenario
from streams.simulate.timeline import timeline_records
from streams.simulate.traffic import SimEvent, generate_traffic

__all__ = ["SCENARIOS", "SimulationRun", "load_scenario"]


@dataclasses.dataclass(frozen=True)
class SimulationRun:
    scenario: Scenario
    portfolio: Portfolio
    profiles: tuple[ModelProfile, ...]
    seed: int
    start_ms: int
    duration_ms: int
    rate: float
    time_scale: float

    @classmethod
    def prepare(
        cls,
        scenario: Scenario,
        *,
        start_ms: int,
        portfolio: Portfolio | None = None,
        models: int | None = None,
        seed: int | None = None,
        duration: timedelta | None = None,
        rate: float | None = None,
        time_scale: float | None = None,
    ) -> SimulationRun:
        """Fill what is not given from the scenario's ``[run]`` table and check the incidents.

        Without ``portfolio``, a synthetic one of ``models`` models is used.

        Raises
        ------
        ScenarioError
            When an incident does not fit the portfolio or the run's length.
        ValueError
            When a number is out of range.
        """
        defaults = scenario.run
        seed = defaults.seed if seed is None else seed
        duration = defaults.duration if duration is None else duration
        time_scale = defaults.time_scale if time_scale is None else time_scale
        rate = defaults.rate if rate is None else rate
        for name, value in (("time_scale", time_scale), ("rate", rate)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value}")
        if duration <= timedelta():
            raise ValueError(f"duration: expected a positive duration, got {duration}")
        if portfolio is None:
            portfolio = synthetic_portfolio(defaults.models if models is None else models)
        check_incidents(scenario.incidents, portfolio, duration * time_scale)
        return cls(
            scenario=scenario,
            portfolio=portfolio,
            profiles=profile_portfolio(portfolio, seed),
            seed=seed,
            start_ms=start_ms,
            duration_ms=round(duration.total_seconds() * 1000),
            rate=rate,
            time_scale=time_scale,
        )

    def events(self, *, drain: bool = False) -> Iterator[SimEvent]:
        return generate_traffic(
            self.profiles,
            self.scenario.incidents,
            seed=self.seed,
            start_ms=self.start_ms,
            duration_ms=self.duration_ms,
            rate=self.rate,
            time_scale=self.time_scale,
            drain=drain,
        )

    def timeline(self) -> list[dict[str, Any]]:
        return timeline_records(
            self.scenario.incidents, start_ms=self.start_ms, time_scale=self.time_scale
        )
