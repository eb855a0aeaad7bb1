"""The drift window follows the model's traffic: half a day of it, 100 to 1,000 values."""

from __future__ import annotations

import numpy as np

from streams.monitor.watch import drift_window_size, new_watch
from streams.portfolio import Model, parse_portfolio
from tests.streams.test_watch import run, stream

QUIET = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
label_delay = "1h"
features = { age = "numeric", country = "categorical" }
[models.ranker.detectors.output]
predictions_per_day = 500
"""


def quiet_model(extra: str = "") -> Model:
    model = parse_portfolio(QUIET + extra).get("ranker")
    assert model is not None
    return model


def test_the_window_is_half_a_day_of_traffic_within_its_bounds() -> None:
    assert [drift_window_size(n) for n in (50, 200, 201, 500, 2000, 1e6)] == [
        100,
        100,
        100,
        250,
        1000,
        1000,
    ]
    # A setting the output watch refuses by name leaves the default here.
    assert drift_window_size("many") == drift_window_size(None) == 1000
    watch = new_watch(quiet_model())
    assert {
        name: watch.drift.spec(name).settings["window_size"] for name in watch.drift.features
    } == {"age": 250, "country": 250}
    assert {spec.reference_size for spec in watch.drift.specs} == {250}
    set_by_hand = new_watch(quiet_model("[models.ranker.detectors.drift]\nwindow_size = 400\n"))
    assert {spec.settings["window_size"] for spec in set_by_hand.drift.specs} == {400}


def test_a_quiet_model_is_tested_within_a_day_and_finds_a_shift() -> None:
    rng = np.random.default_rng(3)
    # A day of normal traffic, then the age shifted by three standard deviations.
    predictions = stream(rng, 0, 500, 0.0) + stream(rng, 500, 500, 15.0)
    alarms = [
        (n, e.feature)
        for n, o in run(new_watch(quiet_model()), predictions)
        for e in o.evidence
        if e.alarm and e.detector.startswith("drift")
    ]
    # Windows of 250 after a reference of 250 end at 499, 749 and 999: the first two
    # shifted ones alarm.
    assert alarms == [(749, "age"), (999, "age")]


def test_a_quiet_model_on_stationary_traffic_raises_no_drift_alarm() -> None:
    predictions = stream(np.random.default_rng(4), 0, 5000, 0.0)
    evidence = [e for _, o in run(new_watch(quiet_model()), predictions) for e in o.evidence]
    assert [e for e in evidence if e.alarm and e.detector.startswith("drift")] == []
    # Ten days of windows were tested: 19 per feature after the reference.
    assert sum(1 for e in evidence if e.detector.startswith("drift")) == 2 * 19
