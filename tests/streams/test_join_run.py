"""Predictions and labels joined a run at a time (``JoinBatch.observe_run``, whose common
records go through the held table's compiled loop) give what ``observe`` gives one record
at a time: the same results at the same records and the same state after, with
redeliveries, predictions out of order and late, labels by request or by entity only,
expiry by TTL, the cap of held predictions (the sample halves, the oldest goes), reports
and evicted streams."""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contracts import ClassProbabilities, GroundTruth, Prediction
from streams.monitor import held, label_join
from streams.monitor.held import HeldTable
from streams.monitor.label_join import (
    JoinBatch,
    JoinResult,
    LabelJoin,
    join_run,
    new_join,
    observe,
)
from streams.portfolio import parse_portfolio
from tests.detectors.batching import attributes, batches, cuts, same_state, state_difference
from tests.streams.test_label_join import START_MS, Event, label, prediction
from tests.streams.test_label_join_batches import EVENTS as ALARMING
from tests.streams.test_label_join_batches import EXPECTED as ALARMING_EXPECTED
from tests.streams.test_label_join_batches import EXPECTED_JOIN as ALARMING_JOIN
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
                    draw(st.sampled_from([0, 1, 0, 1, "b"])),
                    at + draw(st.sampled_from([0, 500, 5000, 35_000])),
                    request=None if named == "entity" else request,
                    entity=None if named == "request" else entity,
                )
            )
    return events


def in_runs(
    join: LabelJoin, events: list[Event], at: list[int], clock: float = -math.inf
) -> list[JoinResult]:
    """Batches cut at ``at``; in each, the records as runs up to each label the join does
    not hold and the run does not join (``clock``: the label wait's prediction clock),
    which goes alone (where the monitor makes it wait, or releases it at once)."""
    found: list[JoinResult] = []
    for batch in batches(events, at):
        joined = JoinBatch(join)
        requests = [
            label_join.request_hash(e.request_id) if isinstance(e, Prediction) else None
            for e in batch
        ]
        run = join_run(batch, requests)
        k = 0
        while k < len(batch):
            k = joined.observe_run(batch, requests, k, run, clock)
            if k < len(batch):
                assert isinstance(batch[k], GroundTruth) and not label_join.holds(join, batch[k])
                joined.observe(batch[k])
                k += 1
        found.extend(joined.results())
    return found


def held_state(join: LabelJoin) -> dict[str, Any]:
    """The join's state with its held table as it pickles: the table's row numbers,
    capacity and index layout are its own business."""
    return {**attributes(join), "held": join.held.__getstate__()}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_runs_give_what_single_records_give(data: st.DataObject) -> None:
    events = data.draw(records())
    at = data.draw(cuts(len(events), max_batches=6))
    fewest = data.draw(st.sampled_from([0, 1, label_join.FEWEST_AT_ONCE]))
    # Labels not held join nothing in the loop once the prediction clock reached them:
    # those before the run's predictions' times, or (a clock far ahead) every one.
    clock = data.draw(st.sampled_from([-math.inf, START_MS, 2**62]))
    expected_join = fresh()
    expected = [observe(expected_join, event) for event in events]
    join = fresh()
    # 0: every record through the loop; else after a short call of it, some alone.
    with mock.patch.object(label_join, "FEWEST_AT_ONCE", fewest):
        found = in_runs(join, events, at, clock)
    assert found == expected
    mine, theirs = held_state(join), held_state(expected_join)
    assert same_state(mine, theirs), state_difference(mine, theirs)
    entities = {e.entity_id for e in events if e.entity_id is not None}
    for entity in sorted(entities):
        assert join.held.of_entity(entity) == expected_join.held.of_entity(entity)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_columns_that_start_small_give_what_the_first_capacity_gives(data: st.DataObject) -> None:
    """A table far from its cap (24 held) whose columns start at a row or a few: the loop
    stops each time they fill, the Python compacts them into columns twice the size, and
    the join gives what one record at a time gives at the first capacity of 256 rows,
    and holds the same: a compaction numbers the held versions again, so tables
    compacted at other times may number them otherwise (``by_version``)."""
    events = data.draw(records())
    at = data.draw(cuts(len(events), max_batches=6))
    model = parse_portfolio(BATCH_PORTFOLIO).models["churn"]
    expected_join = new_join(model)
    expected = [observe(expected_join, event) for event in events]
    with (
        mock.patch.object(held, "_FIRST_CAPACITY", data.draw(st.sampled_from([1, 2, 8]))),
        mock.patch.object(label_join, "FEWEST_AT_ONCE", 0),
    ):
        # Made here: a table's first columns are allocated as it is made.
        join = new_join(model)
        assert len(join.held._at) <= 8
        found = in_runs(join, events, at)
    assert found == expected
    mine, theirs = by_version(held_state(join)), by_version(held_state(expected_join))
    assert same_state(mine, theirs), state_difference(mine, theirs)


def by_version(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each held row's version code replaced by the version it stands for."""
    held = dict(state["held"])
    versions = held.pop("versions")
    held["version"] = [versions[code] for code in held["version"].tolist()]
    return {**state, "held": held}


def test_a_run_goes_through_the_loop_with_expiry_reports_and_the_cap_in_it() -> None:
    """Predictions 5 s apart, so that the TTL (30 s) drops the oldest within a run and
    one lands on each report time (every 20 s), then 0.5 s apart, so that the cap (6)
    halves the sample, with a label by request after every third. Pinned counts, and the
    loop stops where the Python goes on."""
    events: list[Event] = []
    for i in range(60):
        at = START_MS + (5000 * i if i < 30 else 150_000 + 500 * (i - 30))
        events.append(prediction(i, 0.25 + (i % 2) / 2, entity=f"u{i}", at_ms=at))
        if i % 3 == 2:
            events.append(label(i % 2, at + 100, request=i - 1))
    expected_join = fresh()
    expected = [observe(expected_join, event) for event in events]
    join = fresh()
    stops: list[int] = []
    loop = HeldTable.join_run

    def counted(self: HeldTable, *args: Any) -> tuple[int, int, int]:
        stop, why, released = loop(self, *args)
        stops.append(why)
        return stop, why, released

    with (
        mock.patch.object(HeldTable, "join_run", counted),
        mock.patch.object(label_join, "FEWEST_AT_ONCE", 0),
    ):
        assert in_runs(join, events, []) == expected
    mine, theirs = held_state(join), held_state(expected_join)
    assert same_state(mine, theirs), state_difference(mine, theirs)
    assert (join.expired, join.held.unsampled, join.joined, len(join.held)) == (
        expected_join.expired,
        expected_join.held.unsampled,
        expected_join.joined,
        len(expected_join.held),
    )
    assert (join.joined, join.expired, join.held.unsampled, join.held.fraction) == (
        12,
        18,
        26,
        0.125,
    )
    # Each report, the labels of predictions let go of (the Python counts them), and the
    # predictions that find the table (6 rows, 7 in the columns) full.
    assert [stops.count(why) for why in range(5)] == [0, 13, 8, 0, 6]


@settings(max_examples=30, deadline=None)
@given(cuts(len(ALARMING), max_batches=30))
def test_runs_of_a_stream_that_makes_every_alarm(at: list[int]) -> None:
    """The batch tests' stream, whose detectors all alarm: each alarm at its record, with
    what its detector read there, and each label's delay."""
    join = new_join(parse_portfolio(BATCH_PORTFOLIO).models["churn"])
    assert in_runs(join, ALARMING, at) == ALARMING_EXPECTED
    mine, theirs = held_state(join), held_state(ALARMING_JOIN)
    assert same_state(mine, theirs), state_difference(mine, theirs)


def test_a_call_stopped_by_the_report_time_sends_no_record_alone() -> None:
    """A report that stops the loop a few records after it started is no sign of records
    the loop cannot take: the records after it stay in the loop (only the first record,
    before the join's clock is set, goes alone)."""
    model = parse_portfolio(BATCH_PORTFOLIO).models["churn"]
    join = new_join(model)
    # Reports every 7 s: the fourth record reaches the first report time; 24 held at most.
    times = [START_MS, START_MS + 1000, START_MS + 2000, START_MS + 8000]
    times += [START_MS + 8100 + 100 * n for n in range(15)]
    events: list[Event] = [prediction(n, 0.5, at_ms=at) for n, at in enumerate(times)]
    requests = [label_join.request_hash(e.request_id) for e in events]
    batch = JoinBatch(join)
    with mock.patch.object(
        JoinBatch, "_prediction", autospec=True, side_effect=JoinBatch._prediction
    ) as alone:
        assert batch.observe_run(events, requests, 0, join_run(events, requests)) == len(events)
    assert alone.call_count == 1
    assert batch.results() == [
        observe(expected, e) for expected in [new_join(model)] for e in events
    ]
