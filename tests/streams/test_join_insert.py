"""Predictions joined a run at a time (``JoinBatch.observe_predictions``, which holds the
common ones of a run with one insert into the held table) give what ``observe`` gives one
record at a time: the same results at the same records and the same state after, with
redeliveries, predictions out of order and late, labels by request or by entity only,
expiry by TTL, the cap of held predictions (the sample halves, the oldest goes) and
evicted streams."""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contracts import ClassProbabilities, GroundTruth, Prediction
from streams.monitor import label_join
from streams.monitor.label_join import JoinBatch, JoinResult, LabelJoin, new_join, observe
from streams.portfolio import parse_portfolio
from tests.detectors.batching import batches, cuts, same_state, state_difference
from tests.streams.test_label_join import START_MS, Event, label, prediction
from tests.streams.test_label_join_batches import PORTFOLIO as BATCH_PORTFOLIO

# The batch tests' model (TTL 30 s, three streams at most, so that one is evicted) with at
# most 6 predictions held, so that the cap is reached within a run, and a report every 20 s.
PORTFOLIO = BATCH_PORTFOLIO.replace("max_held = 24", "max_held = 6").replace(
    "report_interval = 7", "report_interval = 20"
)
assert PORTFOLIO.count("= 6\n") == 1 and "report_interval = 20" in PORTFOLIO


def fresh() -> LabelJoin:
    return new_join(parse_portfolio(PORTFOLIO).models["churn"])


@st.composite
def records(draw: st.DrawFn) -> list[Event]:
    """Mostly predictions, a few labels; steps in time of up to 4 s, some back (out of
    order), some past the TTL; few requests and entities, so redeliveries and several
    predictions of an entity are common."""
    events: list[Event] = []
    at = START_MS
    for _ in range(draw(st.integers(1, 80))):
        at += draw(st.sampled_from([0, 700, 1000, 1000, 4000, -2500, -40_000, 31_000]))
        request = draw(st.integers(0, 30))
        entity = f"u{draw(st.integers(0, 8))}"
        if draw(st.integers(0, 4)):
            output: Any = draw(st.floats(0.0, 1.0))
            if draw(st.integers(0, 9)) == 0:
                output = ClassProbabilities(probabilities={"a": 1.0 - output, "b": output})
            role = draw(st.sampled_from(["live"] * 4 + ["shadow", "fallback"]))
            version = draw(st.sampled_from(["v1"] * 6 + ["v2"]))
            events.append(
                prediction(request, output, role=role, version=version, entity=entity, at_ms=at)
            )
        else:
            named = draw(st.sampled_from(["request", "entity", "both"]))
            events.append(
                label(
                    draw(st.integers(0, 1)),
                    at + draw(st.sampled_from([0, 500, 5000, 35_000])),
                    request=None if named == "entity" else request,
                    entity=None if named == "request" else entity,
                )
            )
    return events


def in_runs(join: LabelJoin, events: list[Event], at: list[int]) -> list[JoinResult]:
    """Batches cut at ``at``; in each, the predictions in a row as one run."""
    found: list[JoinResult] = []
    for batch in batches(events, at):
        joined = JoinBatch(join)
        run: list[Prediction] = []
        for event in [*batch, None]:
            if isinstance(event, Prediction):
                run.append(event)
                continue
            if run:
                requests = [label_join.request_hash(p.request_id) for p in run]
                joined.observe_predictions(run, requests)
                run = []
            if isinstance(event, GroundTruth):
                joined.observe(event)
        found.extend(joined.results())
    return found


def held_state(join: LabelJoin) -> dict[str, Any]:
    """The join's state with its held table as it pickles: the table's row numbers,
    capacity and index layout are its own business."""
    return {**vars(join), "held": join.held.__getstate__()}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_runs_give_what_single_records_give(data: st.DataObject) -> None:
    events = data.draw(records())
    at = data.draw(cuts(len(events), max_batches=6))
    most = data.draw(st.integers(1, 9))
    expected_join = fresh()
    expected = [observe(expected_join, event) for event in events]
    join = fresh()
    # Every run long enough to go at once, in pieces of at most ``most``.
    with (
        mock.patch.object(label_join, "_FEWEST_AT_ONCE", 1),
        mock.patch.object(label_join, "_MOST_AT_ONCE", most),
    ):
        found = in_runs(join, events, at)
    assert found == expected
    mine, theirs = held_state(join), held_state(expected_join)
    assert same_state(mine, theirs), state_difference(mine, theirs)
    entities = {e.entity_id for e in events if e.entity_id is not None}
    for entity in sorted(entities):
        assert join.held.of_entity(entity) == expected_join.held.of_entity(entity)


def test_a_run_is_held_at_once_with_expiry_and_the_cap_in_it() -> None:
    """Predictions 5 s apart, so that the TTL (30 s) drops the oldest within a run and
    one lands on each report time (every 20 s), then 0.5 s apart, so that the cap (6)
    halves the sample. Pinned counts, and the run goes
    in a few inserts, the uncommon predictions (a report due, the cap reached) one by one."""
    events: list[Event] = [
        prediction(i, 0.25, entity=f"u{i}", at_ms=START_MS + 5000 * i) for i in range(30)
    ]
    events += [
        prediction(i, 0.75, entity=f"u{i}", at_ms=START_MS + 150_000 + 500 * (i - 30))
        for i in range(30, 60)
    ]
    expected_join = fresh()
    expected = [observe(expected_join, event) for event in events]
    join = fresh()
    calls: list[int] = []
    insert = JoinBatch._insert

    def counted(self: JoinBatch, *args: Any) -> int:
        calls.append(joined := insert(self, *args))
        return joined

    with (
        mock.patch.object(JoinBatch, "_insert", counted),
        mock.patch.object(label_join, "_FEWEST_AT_ONCE", 1),
    ):
        assert in_runs(join, events, []) == expected
    mine, theirs = held_state(join), held_state(expected_join)
    assert same_state(mine, theirs), state_difference(mine, theirs)
    assert (join.expired, join.held.unsampled, len(join.held), join.held.fraction) == (
        14,
        41,
        5,
        0.125,
    )
    # Three predictions between reports, the fourth (on the report time) alone, as are
    # those that find the table full (the first halvings, then within the fast part).
    assert calls == [3, 1, 1, 1, 1, 1] + [3, 1] * 5 + [7, 1, 12, 1, 1, 9]
