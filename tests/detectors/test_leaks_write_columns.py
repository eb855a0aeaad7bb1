"""The leak detectors' column entries (``update_writes`` of ``WriteColumns``) give exactly
what ``update`` one by one gives: the same events at the same places and the same state,
for malformed writes, non-finite and missing values and times, features past
``max_features``, samples that halve and tables that fill inside a batch."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import AvailabilityGap, LabelCoincidentWrites, WriteLag
from detectors.leaks import FeatureWrite, Label, ServedFeature
from detectors.leaks.availability_gap import ServedValues
from detectors.leaks.events import WriteColumns, entity_hash, write_columns
from tests.detectors.batching import same_state, state_difference
from tests.detectors.cases_leaks import COINCIDENCE

FEATURES = ("plan", "sessions_7d", "last_login_date", "balance")
# Well-formed times of a stream, then what a malformed write may hold instead.
BAD_TIMES = (math.nan, math.inf, True, "1", None, 10**400, Fraction(10**400), 2**60 + 1)
BAD_IDS = (None, True, 1.5, "")
BAD_FEATURES = (None, True, 1.5, "")
VALUES = (None, math.nan, 1.0, -1, "free", True, 10**400)


@st.composite
def streams(draw: st.DrawFn, others: str) -> tuple[list[Any], str]:
    """Writes (and labels or served values, per ``others``) on a few entities, in time
    order; the writes' times all ints, all floats or mixed, now and then malformed."""
    kind = draw(st.sampled_from(["int", "float", "mixed"]))
    count = draw(st.integers(0, 90))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bad = draw(st.floats(0, 0.2))
    now = 1_000_000
    events: list[Any] = []
    for _ in range(count):
        now += int(rng.integers(0, 4_000))
        entity: Any = int(rng.integers(12)) if rng.random() < 0.3 else f"u{rng.integers(12)}"
        draw_kind = rng.random()
        if draw_kind < 0.7:
            lag = int(rng.integers(-50, 30_000))
            first: Any = now if kind != "float" else float(now) + 0.5
            second: Any = now + lag if kind == "int" else float(now + lag)
            feature: Any = FEATURES[int(rng.integers(len(FEATURES)))]
            value = VALUES[int(rng.integers(len(VALUES)))]
            if rng.random() < bad:
                slot = int(rng.integers(4))
                odd = [BAD_TIMES[int(rng.integers(len(BAD_TIMES)))]]
                if slot == 0:
                    first = odd[0]
                elif slot == 1:
                    second = odd[0]
                elif slot == 2:
                    entity = BAD_IDS[int(rng.integers(len(BAD_IDS)))]
                else:
                    feature = BAD_FEATURES[int(rng.integers(len(BAD_FEATURES)))]
            events.append(FeatureWrite(entity, feature, value, first, second))
        elif others == "labels":
            label = int(rng.integers(2)) if rng.random() > bad else 2
            events.append(Label(entity, label, float(now)))
        elif rng.random() < 0.5:
            seen = float(now - int(rng.integers(-3_000, 60_000)))
            events.append(ServedFeature(entity, FEATURES[int(rng.integers(4))], 1.0, seen, now))
        else:
            names = FEATURES[: int(rng.integers(1, 5))]
            written = tuple(float(now - int(rng.integers(-3_000, 60_000))) for _ in names)
            events.append(ServedValues(entity, float(now), names, written))
    return events, kind


def split(events: list[Any]) -> tuple[WriteColumns, list[Any], np.ndarray]:
    """A batch as a column entry takes it: the writes' columns, the other events and
    their places."""
    at = [i for i, x in enumerate(events) if isinstance(x, FeatureWrite)]
    writes = write_columns([events[i] for i in at], at)
    places = np.array([i for i, x in enumerate(events) if not isinstance(x, FeatureWrite)])
    return writes, [events[i] for i in places.tolist()], places.astype(np.intp)


def one_by_one(detector: Any, events: list[Any], read: Any) -> list[Any]:
    found = []
    for i, x in enumerate(events):
        detector.update(x)
        found += [(i, *event[1:]) for event in read(detector)]
    return found


def batched(detector: Any, events: list[Any], cuts: list[int], feed: Any, read: Any) -> list[Any]:
    found = []
    for start, stop in zip([0, *cuts], [*cuts, len(events)], strict=True):
        feed(detector, events[start:stop])
        found += [(start + event[0], *event[1:]) for event in read(detector)]
    return found


def assert_same(batch: Any, single: Any) -> None:
    state = {k: v for k, v in vars(batch).items() if k not in ("_batch_events", "_halvings")}
    other = {k: v for k, v in vars(single).items() if k not in ("_batch_events", "_halvings")}
    assert same_state(state, other), state_difference(state, other)


def assert_columns_as_one_by_one(
    make: Callable[[], Any],
    events: list[Any],
    cuts: list[int],
    read: Callable[[Any], list[Any]],
    arranged: Callable[[list[Any]], list[Any]],
) -> tuple[Any, Any]:
    """Two detectors of ``make``: one fed ``events`` one by one through ``update``, one
    cut at ``cuts`` into batches each given to ``update_writes`` as columns; the same events
    (``read`` after each, ``arranged`` for comparing) and the same state. Both detectors."""
    cuts = [c for c in cuts if c <= len(events)]
    single, batch = make(), make()
    expected = one_by_one(single, events, read)

    def feed(detector: Any, part: list[Any]) -> None:
        detector.update_writes(*split(part))

    assert arranged(batched(batch, events, cuts, feed, read)) == arranged(expected)
    assert_same(batch, single)
    return batch, single


CUTS = st.lists(st.integers(0, 90), max_size=5).map(sorted)


@settings(max_examples=150, deadline=None)
@given(streams("labels"), CUTS, st.sampled_from([None, (-1,)]), st.integers(1, 5))
def test_label_coincidence_reads_write_columns_as_one_by_one(
    stream: tuple[list[Any], str], cuts: list[int], sentinels: Any, max_features: int
) -> None:
    def make() -> LabelCoincidentWrites:
        # Room for 4 of the 24 entities: the sample halves inside batches.
        return LabelCoincidentWrites(
            **COINCIDENCE,
            min_labels=2,
            max_entities=4,
            max_features=max_features,
            sentinels=sentinels,
        )

    def read(detector: LabelCoincidentWrites) -> list[Any]:
        return [*detector.flags, *((i, "halved", bits) for i, bits in detector.halvings)]

    assert_columns_as_one_by_one(make, stream[0], cuts, read, lambda found: sorted(found, key=repr))


@settings(max_examples=150, deadline=None)
@given(streams("served"), CUTS, st.integers(1, 5))
def test_availability_gap_reads_write_columns_as_one_by_one(
    stream: tuple[list[Any], str], cuts: list[int], max_features: int
) -> None:
    def make() -> AvailabilityGap:
        # Room for 16 pairs, made and forgotten inside batches; tests every 8 predictions.
        return AvailabilityGap(
            max_gap_rate=0.05,
            min_predictions=8,
            window=8,
            max_delay=20_000.0,
            max_keys=16,
            max_features=max_features,
        )

    batch, single = assert_columns_as_one_by_one(make, stream[0], cuts, lambda d: d.flags, list)
    assert pickle.dumps(batch) == pickle.dumps(single)


@settings(max_examples=150, deadline=None)
@given(streams("served"), CUTS, st.integers(1, 4), st.booleans())
def test_write_lag_reads_write_columns_as_one_by_one(
    stream: tuple[list[Any], str], cuts: list[int], max_features: int, some: bool
) -> None:
    events, _ = stream
    writes = [x for x in events if isinstance(x, FeatureWrite)]
    cuts = [c for c in cuts if c <= len(writes)]

    def make() -> WriteLag:
        return WriteLag(sla=1_000.0, window=10, reference_windows=2, max_features=max_features)

    def feed(detector: WriteLag, batch: list[Any]) -> None:
        columns = write_columns(batch)
        # Some rows of the columns: those of the batch's first write's feature, then the
        # others, each as the leak watch feeds a feature's writes.
        if some and len(batch):
            first = columns.codes == columns.codes[0]
            found = []
            for rows in (np.flatnonzero(first), np.flatnonzero(~first)):
                detector.update_writes(columns, rows)
                found += detector.windows_closed
            detector._batch_events = tuple(found)
        else:
            detector.update_writes(columns)

    single, batch = make(), make()
    reordered = writes
    if some:
        # What the batched detector reads, in its order: each batch's first feature first.
        reordered = []
        for start, stop in zip([0, *cuts], [*cuts, len(writes)], strict=True):
            part = writes[start:stop]
            if part:
                first = [w for w in part if w.feature == part[0].feature]
                reordered += first + [w for w in part if w.feature != part[0].feature]
    one_by_one(single, reordered, lambda d: d.windows_closed)
    batched(batch, writes, cuts, feed, lambda d: d.windows_closed)
    assert_same(batch, single)
    assert batch.rejected == single.rejected


def test_write_columns_of_malformed_writes_and_times() -> None:
    writes = [
        FeatureWrite("u", "plan", None, 1, 2**53 + 3),
        FeatureWrite(True, "plan", 1.0, 1, 2),
        FeatureWrite("u", "", 1.0, 1, 2),
        FeatureWrite("u", "plan", 1.0, 1.5, math.inf),
        FeatureWrite("u", "plan", 1.0, 2**60, 2**60 + 5),
        FeatureWrite(7, "balance", 1.0, Fraction(1, 2), 2),
        FeatureWrite("u", None, 1.0, 1, 2),
    ]
    columns = write_columns(writes, [3, 4, 5, 9, 10, 12, 13])
    assert columns.ok.tolist() == [True, False, False, False, True, True, False]
    assert columns.entities.tolist() == [entity_hash(w.entity_id) for w in writes]
    assert columns.features == ("plan", "", "balance", None)
    assert columns.codes.tolist() == [0, 0, 1, 0, 0, 2, 3]
    # Each lag is the float of the difference, as the detectors take it.
    assert columns.lags[[0, 4, 5]].tolist() == [float(2**53 + 2), 5.0, 1.5]
    assert math.isinf(columns.written_at[3]) and columns.positions.tolist()[-1] == 13
    assert columns.event(0) == FeatureWrite("u", "plan", None, 1.0, float(2**53 + 3))
    assert columns.event(1) is None


@pytest.mark.parametrize("events", [[], [Label("u", 1, 5.0)]])
def test_a_column_entry_of_no_writes_reads_its_other_events(events: list[Any]) -> None:
    single, batch = LabelCoincidentWrites(), LabelCoincidentWrites()
    for x in events:
        single.update(x)
    batch.update_writes(*split(events))
    assert_same(batch, single)
