"""The label join fed a batch at a time (``JoinBatch``) gives what ``observe`` gives one
record at a time: the same results (evidence with what each alarm read, points) at the
same records, and the same state after."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from schemas.contracts import ClassProbabilities, GroundTruth, Prediction
from streams.monitor.label_join import (
    JoinBatch,
    JoinResult,
    LabelJoin,
    holds,
    new_join,
    observe,
)
from streams.portfolio import parse_portfolio
from tests.detectors.batching import batches, cuts, same_state, state_difference
from tests.streams.test_label_join import Event, classifier_stream, label, prediction

# Small windows and a small reference, so that every detector alarms and every calibrated
# chunk closes within a few hundred records; three streams at most, so that one is evicted;
# 24 predictions held at most, so that the sample halves within a batch or across a cut.
PORTFOLIO = """
[models.churn]
owner = "team-retention"
tier = "cpu"
fallback = "base_rate"
label_delay = "10s"
[models.churn.detectors.performance]
window = 20
min_labels = 5
reference_size = 20
calibration_size = 30
labels_per_day = 20
max_streams = 3
max_held = 24
report_interval = 7
"""


def mixed_stream() -> list[Event]:
    """A live classifier whose error rate rises, with a shadow, a second version, class
    probabilities, bad labels, redeliveries and labels by entity among its records."""
    events: list[Event] = []
    rng = np.random.default_rng(5)
    for n, event in enumerate(classifier_stream(seed=3, n=400, shift_at=200, after=0.6)):
        events.append(event)
        if not isinstance(event, Prediction):
            continue
        at = event.predicted_at
        i = 10_000 + n
        if n % 3 == 0:
            events.append(prediction(i, float(rng.random()), role="shadow", at_ms=at))
            events.append(
                prediction(i, float(rng.random()), version="v2", entity=f"e{n}", at_ms=at)
            )
        if n % 37 == 0:
            probabilities = ClassProbabilities(probabilities={"a": 0.2, "b": 0.8})
            events.append(prediction(i + 1, probabilities, version="v3", at_ms=at))
        if n % 11 == 0:
            events.append(label(["x"] if n % 2 else float("nan"), at + 1, request=n))
            events.append(label(n % 2 == 0, at + 2, entity=f"e{n - 11}"))
            events.append(label("b", at + 3, request=i - 37 + 1))
        if n % 13 == 0:
            events.append(event)
    return events


EVENTS = mixed_stream()


def one_by_one() -> tuple[list[JoinResult], LabelJoin]:
    join = new_join(parse_portfolio(PORTFOLIO).models["churn"])
    return [observe(join, event) for event in EVENTS], join


EXPECTED, EXPECTED_JOIN = one_by_one()


def test_the_stream_makes_every_kind_of_alarm_evicts_and_samples() -> None:
    """Else the property below could not fail where batches and single records differ."""
    found = {e.detector for result in EXPECTED for e in result.evidence}
    assert found == {"performance_drop", "estimated_accuracy", "estimated_performance"}
    assert sum(bool(result.points) for result in EXPECTED) > 20
    assert EXPECTED_JOIN.evicted_streams > 0
    assert EXPECTED_JOIN.held.fraction == 0.5
    assert (EXPECTED_JOIN.held.unsampled, EXPECTED_JOIN.unsampled_labels) == (373, 275)


@settings(max_examples=40, deadline=None)
@given(cuts(len(EVENTS), max_batches=30))
def test_batches_give_what_single_records_give(at: list[int]) -> None:
    join = new_join(parse_portfolio(PORTFOLIO).models["churn"])
    found: list[JoinResult] = []
    for batch in batches(EVENTS, at):
        joined = JoinBatch(join)
        for event in batch:
            joined.observe(event)
        found.extend(joined.results())
    assert found == EXPECTED
    assert same_state(join, EXPECTED_JOIN), state_difference(join, EXPECTED_JOIN)


def test_one_batch_of_everything_too() -> None:
    join = new_join(parse_portfolio(PORTFOLIO).models["churn"])
    joined = JoinBatch(join)
    for event in EVENTS:
        joined.observe(event)
    assert joined.results() == EXPECTED
    assert same_state(join, EXPECTED_JOIN), state_difference(join, EXPECTED_JOIN)


def test_a_queue_that_closes_several_chunks_places_each_alarm_at_its_own() -> None:
    """Without a report inside the batch, the calibrated estimate's queue closes several
    chunks at once, some of them alarming: each alarm reads its own chunk's estimate."""
    model = parse_portfolio(PORTFOLIO.replace("report_interval = 7", "report_interval = 3600"))
    expected_join = new_join(model.models["churn"])
    expected = [observe(expected_join, event) for event in EVENTS]
    calibrated = [
        e for result in expected for e in result.evidence if e.detector == "estimated_performance"
    ]
    assert len({e.details["estimated_accuracy"] for e in calibrated}) > 1
    join = new_join(model.models["churn"])
    joined = JoinBatch(join)
    for event in EVENTS:
        joined.observe(event)
    assert joined.results() == expected
    assert same_state(join, expected_join), state_difference(join, expected_join)


def late_labels() -> list[Event]:
    """``EVENTS`` with, right after a few predictions, a label for each that comes later
    than its TTL (30 s): the join holds the prediction until that label moves the clock."""
    events: list[Event] = []
    for n, event in enumerate(EVENTS):
        events.append(event)
        if n % 150 == 0 and isinstance(event, Prediction):
            events.append(label(1, event.predicted_at + 30_004, request=int(event.request_id[1:])))
    return events


HELD_EVENTS = late_labels()


def held_one_by_one() -> tuple[list[JoinResult], LabelJoin]:
    """Labels observed only when ``holds`` says the join holds their prediction, as the
    monitor feeds them (the others wait)."""
    join = new_join(parse_portfolio(PORTFOLIO).models["churn"])
    return [
        observe(join, event)
        for event in HELD_EVENTS
        if not isinstance(event, GroundTruth) or holds(join, event)
    ], join


HELD_EXPECTED, HELD_EXPECTED_JOIN = held_one_by_one()


def test_some_labels_are_not_held() -> None:
    """Else the property below would not tell ``observe_held`` from ``observe``."""
    assert len(HELD_EXPECTED) < len(HELD_EVENTS)
    # The late labels: held when they came, expired by their own clock.
    assert sum(not r.joined for r in HELD_EXPECTED if round(r.at * 1000) % 1000 == 4) >= 3


@settings(max_examples=30, deadline=None)
@given(cuts(len(HELD_EVENTS), max_batches=30))
def test_observe_held_gives_what_holds_then_observe_gives(at: list[int]) -> None:
    join = new_join(parse_portfolio(PORTFOLIO).models["churn"])
    found: list[JoinResult] = []
    for batch in batches(HELD_EVENTS, at):
        joined = JoinBatch(join)
        for event in batch:
            if isinstance(event, GroundTruth):
                joined.observe_held(event)
            else:
                joined.observe(event)
        found.extend(joined.results())
    assert found == HELD_EXPECTED
    assert same_state(join, HELD_EXPECTED_JOIN), state_difference(join, HELD_EXPECTED_JOIN)
