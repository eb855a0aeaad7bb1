"""LabelCoincidentWrites: flags write times that follow one class's outcomes, at any lag,
and nothing else."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import LabelCoincidentWrites
from detectors.leaks import FeatureWrite, Label, _coincide, label_coincidence
from detectors.leaks._anytime import AnytimePValues
from detectors.leaks.events import is_null
from detectors.leaks.label_coincidence import _ANY
from tests.detectors.batching import (
    batches,
    cuts,
    detections,
    events_batched,
    events_one_by_one,
    same_state,
    state_difference,
)
from tests.detectors.cases_leaks import BAD_EVENTS, writes_and_labels

MINUTE = 60_000.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# Lags up to 20 s, for streams whose events are a second apart.
SMALL = {"tolerance": 1_000.0, "max_lag": 20_000.0, "lateness": 2_000.0, "label_delay": 0.0}


def _first_alarm(detector: LabelCoincidentWrites, events: list) -> int | None:
    for i, event in enumerate(events):
        detector.update(event)
        if detector.leak_detected:
            return i
    return None


def _activity_stream(
    rng: np.random.Generator,
    users: int,
    n: int,
    *,
    leak: str | None = None,
    leak_delay: float = 0.0,
    leak_share: float = 1.0,
    backdated: bool = True,
    tied_to_every_label: str | None = None,
    sentinel: str | None = None,
) -> list[FeatureWrite | Label]:
    """Churners (every third user) log in a third as often as others; labels come at random.

    ``sessions_7d`` is written at every login, so churners have fewer writes anywhere, not
    only near their label. ``leak`` is set to ``sentinel`` after ``leak_share`` of the
    churners' outcomes, its write arriving ``leak_delay`` after the label message; its event
    time is the outcome's if ``backdated``, else the write's own. ``tied_to_every_label`` is
    written at every label, whatever the class.
    """
    events: list[tuple[float, int, FeatureWrite | Label]] = []
    now = 0.0
    for _ in range(n):
        now += rng.exponential(20_000.0)
        user = int(rng.integers(users))
        churner = user % 3 == 0
        if rng.random() < 0.85:
            if churner and rng.random() < 2 / 3:
                continue
            events.append(
                (now, 0, FeatureWrite(user, "sessions_7d", float(rng.poisson(5)), now, now))
            )
            events.append((now, 0, FeatureWrite(user, "last_login_date", now, now, now)))
            continue
        label = Label(user, int(churner), now)
        events.append((now, 1, label))
        if leak is not None and churner and rng.random() < leak_share:
            event_at = now if backdated else now + leak_delay
            write = FeatureWrite(user, leak, sentinel, event_at, now + leak_delay)
            events.append((now + leak_delay, 0 if leak_delay < 0 else 2, write))
        if tied_to_every_label is not None:
            write = FeatureWrite(user, tied_to_every_label, "closed", now, now)
            events.append((now, 0, write))
    events.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in events]


def test_flags_a_feature_nulled_when_the_label_happens_at_a_pinned_index() -> None:
    events = writes_and_labels(np.random.default_rng(1), 3_000, leaking="last_login_date")
    detector = LabelCoincidentWrites(**SMALL)
    assert _first_alarm(detector, events) == 323
    assert detector.leaking_features == ("last_login_date",)
    evidence = detector.evidence["last_login_date"]
    assert evidence.lag == (-1_000.0, 1_000.0)
    assert evidence.labels == (28, 20)
    assert evidence.near_writes == (0, 20)
    assert evidence.control_writes == (0, 0)
    assert evidence.leak_class == 1
    assert evidence.score == 1.0
    assert evidence.p_value <= 0.01
    assert detector.leak_score == 1.0
    assert not detector.evidence["plan"].leaking


def _writes_read_behind(events: list, behind: float) -> list:
    """``events`` as a worker reads them ``behind`` milliseconds further behind on the
    feature writes' topic than on the labels'."""

    def read_at(event: FeatureWrite | Label) -> float:
        return event.written_at + behind if isinstance(event, FeatureWrite) else event.label_at

    order = sorted(range(len(events)), key=lambda i: (read_at(events[i]), i))
    return [events[i] for i in order]


def test_labels_read_ahead_of_their_writes_wait_for_them() -> None:
    # Read 20 s (ten times the lateness) behind, every write near a label comes after it:
    # judged by the labels' time, the label's bins closed before them and no leak was seen.
    events = writes_and_labels(np.random.default_rng(1), 3_000, leaking="last_login_date")
    skewed = _writes_read_behind(events, 20_000.0)
    detector = LabelCoincidentWrites(**SMALL)
    assert _first_alarm(detector, skewed) == 318
    assert detector.leaking_features == ("last_login_date",)
    evidence = detector.evidence["last_login_date"]
    assert (evidence.labels, evidence.near_writes) == ((28, 18), (0, 18))
    batched = LabelCoincidentWrites(**SMALL)
    batched.update_many(skewed[:319])
    assert batched.leaking_features == ("last_login_date",)


@pytest.mark.parametrize("seed", range(3))
def test_silent_on_honest_writes_read_behind_the_labels(seed: int) -> None:
    events = _writes_read_behind(_activity_stream(np.random.default_rng(seed), 60, 4_000), 20_000.0)
    detector = LabelCoincidentWrites(**SMALL)
    assert _first_alarm(detector, events) is None
    assert sum(detector.evidence["sessions_7d"].labels) > 100


@pytest.mark.parametrize("seed", range(5))
def test_silent_on_honest_writes_whose_values_depend_on_the_class(seed: int) -> None:
    events = writes_and_labels(np.random.default_rng(seed), 30_000)
    detector = LabelCoincidentWrites(**SMALL)
    assert _first_alarm(detector, events) is None
    # The test did look: enough labels of both classes were judged.
    assert min(detector.evidence["plan"].labels) > 1_000


@pytest.mark.parametrize("seed", range(3))
def test_silent_when_one_class_simply_writes_less_often(seed: int) -> None:
    events = _activity_stream(np.random.default_rng(seed), 300, 60_000)
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) is None
    counts = detector._counts[detector._columns["sessions_7d"], 0, :, 0, 0]
    labels = detector._labels[detector._columns["sessions_7d"], :, 0]
    # Churners do have fewer writes near their labels: the rates differ, the timing does not.
    assert counts[1] / labels[1] < counts[0] / labels[0]


def test_silent_on_a_feature_written_at_every_label_whatever_the_class() -> None:
    events = _activity_stream(np.random.default_rng(4), 300, 20_000, tied_to_every_label="status")
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) is None
    column = detector._columns["status"]
    # Every judged label had its write at the outcome, in both classes.
    near = detector._counts[column, _ANY, :, 0, 0]
    assert (near == detector._labels[column, :, 0]).all() and near.min() > 100


@pytest.mark.parametrize(
    ("delay", "share", "index", "lag"),
    [
        (30_000.0, 1.0, 820, (-MINUTE, MINUTE)),
        (HOUR, 1.0, 1_165, (16 * MINUTE, 64 * MINUTE)),
        (HOUR, 0.3, 2_508, (16 * MINUTE, 64 * MINUTE)),
        (DAY, 1.0, 42_382, (1_024 * MINUTE, 4_096 * MINUTE)),
    ],
)
def test_flags_a_leak_written_long_after_the_outcome_and_only_after_some(
    delay: float, share: float, index: int, lag: tuple[float, float]
) -> None:
    # The write carries its own event time: nothing in it points back at the outcome.
    events = _activity_stream(
        np.random.default_rng(5),
        3_000,
        60_000,
        leak="account_state",
        leak_delay=delay,
        leak_share=share,
        backdated=False,
    )
    detector = LabelCoincidentWrites()
    assert _first_alarm(detector, events) == index
    assert detector.leaking_features == ("account_state",)
    assert detector.evidence["account_state"].lag == lag


def test_flags_a_field_never_written_before_the_outcomes() -> None:
    # closure_reason exists only for cancelled accounts, typed in three hours later; its
    # first write comes after many labels.
    events = _activity_stream(
        np.random.default_rng(7), 3_000, 60_000, leak="closure_reason", leak_delay=3 * HOUR
    )
    detector = LabelCoincidentWrites()
    first_write = next(
        i for i, e in enumerate(events) if getattr(e, "feature", "") == "closure_reason"
    )
    labels_before = sum(isinstance(e, Label) for e in events[:first_write])
    assert labels_before > 50
    assert _first_alarm(detector, events) == 3_194
    evidence = detector.evidence["closure_reason"]
    assert evidence.lag == (64 * MINUTE, 256 * MINUTE)
    assert evidence.near_writes == (0, evidence.labels[1])


def test_finds_a_sentinel_among_frequent_writes() -> None:
    # last_login_date is written at every login, and set to the epoch when a user cancels.
    events = _activity_stream(
        np.random.default_rng(6), 300, 20_000, leak="last_login_date", sentinel="1970-01-01"
    )
    detector = LabelCoincidentWrites(sentinels=("1970-01-01",))
    assert _first_alarm(detector, events) == 825
    assert detector.leaking_features == ("last_login_date",)
    evidence = detector.evidence["last_login_date"]
    assert (evidence.lag, evidence.leak_class) == ((-MINUTE, MINUTE), 1)


def test_a_full_table_keeps_a_hash_sample_of_whole_entities_and_flags_no_honest_feature() -> None:
    # A third of the users fit: the sample halves twice, to a quarter of the key range.
    honest = _activity_stream(np.random.default_rng(0), 300, 60_000)
    detector = LabelCoincidentWrites(max_entities=100)
    assert _first_alarm(detector, honest) is None
    assert (detector.entities, detector.sample_bits, detector.sample_fraction) == (71, 2, 0.25)
    # Labels of users outside the sample are counted, not judged; the users kept lose
    # only the bins open when the sample halved, not the writes of users forgotten and
    # met again (45,920 unjudged bins when the user seen longest ago was forgotten).
    assert detector.unsampled == 6_956
    assert detector.evidence["sessions_7d"].unjudged == 7_215
    assert detector.evidence["sessions_7d"].labels == (1_508, 574)
    leaking = _activity_stream(
        np.random.default_rng(6), 300, 20_000, leak="last_login_date", sentinel="1970-01-01"
    )
    detector = LabelCoincidentWrites(max_entities=100, sentinels=("1970-01-01",))
    # A quarter of the labels: found later than with room for every user (index 825 in
    # the test above), but found.
    assert _first_alarm(detector, leaking) == 2_090
    assert (detector.leaking_features, detector.sample_bits) == (("last_login_date",), 2)


def test_the_sample_is_state_a_pickle_keeps() -> None:
    events = writes_and_labels(np.random.default_rng(4), 3_000, leaking="last_login_date")
    straight = LabelCoincidentWrites(**SMALL, max_entities=16)
    straight.update_many(events)
    resumed = LabelCoincidentWrites(**SMALL, max_entities=16)
    # Halved at events 16 and 42, then at 68.
    resumed.update_many(events[:50])
    resumed = pickle.loads(pickle.dumps(resumed))
    assert resumed.sample_bits == 2
    resumed.update_many(events[50:])
    assert (straight.sample_bits, straight.leaking_features) == (3, ("last_login_date",))
    assert state_difference(straight, resumed) is None


def test_state_at_the_cap_is_bounded_by_bytes_per_entity() -> None:
    detector = LabelCoincidentWrites(max_entities=200, max_features=20)
    features = [f"f{c}" for c in range(20)]
    for i in range(5_000):
        for name in features:
            detector.update(FeatureWrite(i, name, 1.0, i * 100.0, i * 100.0))
        if i % 10 == 0:
            detector.update(Label(i, i % 3 == 0, i * 100.0 + 50.0))
    assert detector.entities <= 200 and detector.sample_bits == 5
    per_feature = detector._counts.nbytes + detector._labels.nbytes
    bound = 200 * LabelCoincidentWrites.bytes_per_entity(20) + per_feature + 4_096
    assert detector.state_bytes <= bound
    assert detector.state_bytes == 187_916
    assert len(pickle.dumps(detector, pickle.HIGHEST_PROTOCOL)) <= 60_000


def test_entities_expire_and_the_state_stops_growing_at_its_cap() -> None:
    detector = LabelCoincidentWrites(max_lag=HOUR, label_delay=HOUR, max_entities=1_000)
    sizes = []
    for i in range(20_000):
        # A new user every second, each written to once.
        detector.update(FeatureWrite(i, "plan", "pro", i * 1_000.0, i * 1_000.0))
        if i in (5_000, 19_999):
            sizes.append((detector.entities, detector.state_bytes, len(pickle.dumps(detector))))
    # Kept for label_delay + 2 * max_lag + lateness = 3 h 10 min, i.e. 11,400 users, and
    # never more than the cap: a sixteenth of the users by then, in arrays of the cap.
    assert [size[0] for size in sizes] == [643, 988] and detector.sample_bits == 4
    assert sizes[0][1] == sizes[1][1] == 241_052
    assert [size[2] for size in sizes] == [24_192, 38_886]
    short = LabelCoincidentWrites(max_lag=4 * MINUTE, label_delay=0.0, lateness=0.0)
    for i in range(1_000):
        short.update(FeatureWrite(i, "plan", "pro", i * 1_000.0, i * 1_000.0))
    # Kept for 8 minutes, 480 users: rows of expired users are reused once the table, grown
    # by doubling, is full.
    assert short.entities <= 512 and len(short._in_use) == 512


@settings(max_examples=30, deadline=None)
@given(at=cuts(600))
def test_a_batch_update_is_exactly_updates_one_by_one_through_halvings(at: list[int]) -> None:
    events: list = writes_and_labels(np.random.default_rng(5), 600, leaking="last_login_date")
    for i in (0, 200, 450):
        events[i:i] = [BAD_EVENTS[i % len(BAD_EVENTS)]]

    def make() -> LabelCoincidentWrites:
        return LabelCoincidentWrites(**SMALL, min_labels=3, max_entities=8)

    one_by_one = make()
    halvings: list[tuple[int, int]] = []
    for i, x in enumerate(events):
        one_by_one.update(x)
        halvings += [(i, bits) for _, bits in one_by_one.halvings]
    batched = make()
    found = []
    offset = 0
    for batch in batches(events, at):
        batched.update_many(batch)
        found += [(offset + i, bits) for i, bits in batched.halvings]
        offset += len(batch)
    assert found == halvings and len(halvings) >= 2
    assert batched.unsampled == one_by_one.unsampled > 0
    assert state_difference(one_by_one, batched) is None


@settings(max_examples=30, deadline=None)
@given(at=cuts(600))
def test_a_batch_update_is_exactly_updates_one_by_one(at: list[int]) -> None:
    rng = np.random.default_rng(12)
    events: list = writes_and_labels(rng, 600, leaking="last_login_date")
    for i in (0, 100, 350):
        events[i:i] = [BAD_EVENTS[i % len(BAD_EVENTS)]]
    events = events[:600]

    def make() -> LabelCoincidentWrites:
        return LabelCoincidentWrites(**SMALL, min_labels=3, max_entities=64)

    one_by_one = make()
    expected = []
    for i, x in enumerate(events):
        one_by_one.update(x)
        expected += [(i, ())] * len(one_by_one.detections)
    batched = make()
    found = []
    offset = 0
    for batch in batches(events, at):
        batched.update_many(batch)
        found += [(offset + i, seen) for i, seen in detections(batched)]
        offset += len(batch)
    assert expected and found == expected
    one_by_one._batch_events = batched._batch_events
    assert state_difference(one_by_one, batched) is None


def _few_entities(rng: np.random.Generator, n: int) -> list[FeatureWrite | Label]:
    """Six users written often, some writes late (event_at before written_at) and some of
    null, labels that close the user's open one, and gaps from nothing to a few lag bins
    of ``SMALL``: in a run, one user's writes move its control grid by 0 to 4 windows, a
    label opens on windows written before it, and one user's bins are judged several at
    once. Positive users (even ones) null ``last_login_date`` at their label."""
    events: list[FeatureWrite | Label] = []
    at = 0.0
    for _ in range(n):
        at += float(rng.choice([10.0, 300.0, 1_500.0, 6_000.0])) * float(rng.random())
        user = int(rng.integers(6))
        if rng.random() < 0.15:
            events.append(Label(user, int(user % 2 == 0), at))
            if user % 2 == 0:
                events.append(FeatureWrite(user, "last_login_date", None, at, at))
            continue
        event_at = at - float(rng.choice([0.0, 0.0, 500.0, 5_000.0]))
        value = None if rng.random() < 0.2 else 1.0
        feature = ("plan", "sessions_7d", "last_login_date")[int(rng.integers(3))]
        events.append(FeatureWrite(user, feature, value, event_at, at))
    return events[:n]


def _late_and_far(rng: np.random.Generator, n: int) -> list[FeatureWrite | Label]:
    """``_few_entities``, with labels that arrive late (after writes of their user some
    control windows on, whose bins are then lost) or twice (delivered again: the label
    closed, and opened again due at the same times), and events of times too far out for
    integer tiles: a write's event time, then its write time, and a label, each of
    1e300 (whose user's later events read them back) or -1e300."""
    events: list[FeatureWrite | Label] = []
    for event in _few_entities(rng, n):
        if isinstance(event, Label) and rng.random() < 0.5:
            late = float(rng.choice([3_000.0, 12_000.0, 40_000.0]))
            event = Label(event.entity_id, event.label, event.label_at - late)
        events.append(event)
        if isinstance(event, Label) and rng.random() < 0.3:
            events.append(event)
    events = events[:n]
    at = [float(e.written_at if isinstance(e, FeatureWrite) else e.label_at) for e in events]
    far = [
        (n // 5, FeatureWrite(1, "plan", 1.0, 1e300, at[n // 5])),
        (n // 4, Label(3, 1, -1e300)),
        (n // 3, FeatureWrite(2, "plan", None, -1e300, at[n // 3])),
        (n - n // 8, Label(4, 0, 1e300)),
        (n - n // 10, FeatureWrite(5, "plan", 1.0, at[-1], 1e300)),
    ]
    for i, event in reversed(far):
        events.insert(i, event)
    return events


@pytest.mark.parametrize("stream", [_few_entities, _late_and_far])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), at=cuts(300))
def test_runs_of_a_few_entities_written_often_are_exactly_updates_one_by_one(
    stream: Callable[[np.random.Generator, int], list[FeatureWrite | Label]],
    seed: int,
    at: list[int],
) -> None:
    events = stream(np.random.default_rng(seed), 300)
    one_by_one = LabelCoincidentWrites(**SMALL, min_labels=2)
    batched = LabelCoincidentWrites(**SMALL, min_labels=2)
    expected = events_one_by_one(one_by_one, events, _flagged)
    found = events_batched(batched, events, at, _flagged_by_position)
    assert found == expected
    assert same_state(one_by_one, batched), state_difference(one_by_one, batched)


def _flagged(detector: LabelCoincidentWrites) -> tuple | None:
    """The evidence of the features the last update flagged, None if none."""
    return tuple(evidence for _, evidence in detector.flags) or None


def _flagged_by_position(detector: LabelCoincidentWrites) -> list[tuple[int, tuple]]:
    """Per position of the last batch with flags, the evidence of the features flagged."""
    positions = sorted({i for i, _ in detector.flags})
    return [(i, tuple(e for j, e in detector.flags if j == i)) for i in positions]


def _backlog(
    rng: np.random.Generator, users: int, instants: int | None = None
) -> list[FeatureWrite | Label]:
    """Users write for a minute; each gets a label in the next second (at one of
    ``instants`` times, if given), the positive ones (every third) with ``last_login_date``
    nulled then. A write a minute later makes every lag bin of every label due at once, as
    a worker meets a week's backlog."""
    events: list[tuple[float, FeatureWrite | Label]] = []
    for user in range(users):
        for at in rng.uniform(0.0, 61_000.0, 4).tolist():
            feature = ("plan", "sessions_7d", "last_login_date")[int(rng.integers(3))]
            events.append((at, FeatureWrite(user, feature, 1.0, at, at)))
        label_at = float(rng.uniform(60_000.0, 61_000.0))
        if instants is not None:
            label_at = 60_000.0 + 100.0 * int(rng.integers(instants))
        events.append((label_at, Label(user, int(user % 3 == 0), label_at)))
        if user % 3 == 0:
            events.append(
                (label_at, FeatureWrite(user, "last_login_date", None, label_at, label_at))
            )
    events.sort(key=lambda item: item[0])
    return [event for _, event in events] + [FeatureWrite(0, "plan", 1.0, 120_000.0, 120_000.0)]


def test_a_backlog_due_at_once_is_judged_as_one_label_at_a_time() -> None:
    events = _backlog(np.random.default_rng(5), 400)

    def run(batched: bool, few_labels: int, chunk_cells: int) -> tuple[LabelCoincidentWrites, list]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(label_coincidence, "_FEW_LABELS", few_labels)
            patch.setattr(label_coincidence, "_CHUNK_CELLS", chunk_cells)
            detector = LabelCoincidentWrites(**SMALL)
            if batched:
                detector.update_many(events)
                return detector, detector.flags
            flags = []
            for i, event in enumerate(events):
                detector.update(event)
                flags += [(i, found) for _, found in detector.flags]
            return detector, flags

    # The reference judges every label's bins one at a time, pass after pass.
    reference, expected = run(False, 10**9, 1 << 16)
    assert [(i, found.feature) for i, found in expected] == [(len(events) - 1, "last_login_date")]
    before = LabelCoincidentWrites(**SMALL)
    before.update_many(events[:-1])
    assert before.open_labels == 400 and reference.open_labels == 0
    assert int(reference._next_bin.sum()) - int(before._next_bin.sum()) == 400 * 4
    # At once in numpy, in one chunk or in chunks of a few judgments, one by one or batched.
    for batched, chunk_cells in [(False, 1 << 16), (True, 1 << 16), (True, 7), (False, 1)]:
        detector, found = run(batched, 4, chunk_cells)
        assert found == expected, (batched, chunk_cells)
        assert same_state(detector, reference), state_difference(detector, reference)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tolerance": 0.0}, "tolerance"),
        ({"tolerance": 10.0, "max_lag": 30.0}, "max_lag"),
        ({"tolerance": 1.0, "max_lag": 1e12}, "max_lag"),
        ({"max_lag": "1w"}, "max_lag"),
        ({"lateness": -1.0}, "lateness"),
        ({"label_delay": float("inf")}, "label_delay"),
        ({"sentinels": ["x"]}, "sentinels"),
        ({"alpha": 1.0}, "alpha"),
        ({"min_labels": 0}, "min_labels"),
        ({"max_entities": 0}, "max_entities"),
        ({"max_features": 0}, "max_features"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LabelCoincidentWrites(**kwargs)


def test_counts_rejected_inputs() -> None:
    detector = LabelCoincidentWrites()
    for bad in (None, Label("u", 3, 0.0), FeatureWrite("u", "f", 1, float("nan"), 0.0)):
        detector.update(bad)
    assert detector.rejected == 3


@pytest.mark.parametrize("at", [[], [1_000], [300, 900, 1_500]])
def test_labels_due_at_equal_times_are_judged_by_row_as_one_by_one(at: list[int]) -> None:
    # Many labels share each due time: a pass judges them by row, looks in between.
    events = _backlog(np.random.default_rng(7), 400, instants=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(label_coincidence, "_FEW_LABELS", 10**9)
        reference = LabelCoincidentWrites(**SMALL, min_labels=3)
        expected = events_one_by_one(reference, events, _flagged)
    batched = LabelCoincidentWrites(**SMALL, min_labels=3)
    assert events_batched(batched, events, at, _flagged_by_position) == expected
    assert expected and int(reference._looks.looks.sum()) > 20
    assert same_state(batched, reference), state_difference(batched, reference)


def _next_look_in_python(size: int, growth: float) -> int:
    """``AnytimePValues.record``'s next look after a look at ``size``."""
    looks = AnytimePValues(first_look=1, growth=growth)
    looks.record(looks.add(), size, 0.5)
    return int(looks.next_look[0])


@pytest.mark.parametrize("growth", [1.1, 1.25, 1.3, 2.0])
def test_the_compiled_next_look_is_the_anytime_correction_s(growth: float) -> None:
    for size in range(1, 10_000):
        assert _coincide.next_look_compiled(size, growth) == _next_look_in_python(size, growth)


def test_a_next_look_the_decimal_rounding_decides_is_left_to_python() -> None:
    # Products just around 30 + 5e-10, which rounds to 9 decimals either way: left to
    # Python (-1); nearer 30 or farther, the compiled loop's answer is Python's.
    for off in np.linspace(3e-10, 7e-10, 41).tolist():
        growth = (30.0 + off) / 20
        found = _coincide.next_look_compiled(20, growth)
        assert (found == -1) == (4e-10 <= 20 * growth - 30.0 <= 6e-10)
        assert found in (-1, _next_look_in_python(20, growth))
    assert {_next_look_in_python(20, (30.0 + off) / 20) for off in (4.5e-10, 5.5e-10)} == {
        30,
        31,
    }


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), at=cuts(300))
def test_looks_whose_next_size_python_rounds_are_exactly_updates_one_by_one(
    seed: int, at: list[int]
) -> None:
    # The first look, at 4 labels, finds 6.0000000005 to round: the compiled loop hands
    # its test to Python's, and takes the later ones (9.00000000075) itself.
    events = _few_entities(np.random.default_rng(seed), 300)
    one_by_one = LabelCoincidentWrites(**SMALL, min_labels=2)
    batched = LabelCoincidentWrites(**SMALL, min_labels=2)
    for detector in (one_by_one, batched):
        detector._looks.growth = 1.500000000125
    expected = events_one_by_one(one_by_one, events, _flagged)
    found = events_batched(batched, events, at, _flagged_by_position)
    assert found == expected
    assert same_state(one_by_one, batched), state_difference(one_by_one, batched)
    # The stream reached the looks (the first of them Python's to round).
    assert int(batched._looks.looks.sum()) > 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 600))
def test_scores_are_each_features_evidence_as_a_round_of_points_reads_it(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    detector = LabelCoincidentWrites(**SMALL, min_labels=3, max_entities=16)
    detector.update_many(writes_and_labels(rng, n, leaking="last_login_date"))
    expected = {
        name: (e.score, e.p_value, e.leaking, sum(e.labels), e.unjudged)
        for name, e in detector.evidence.items()
    }
    found = detector.scores
    assert found == expected
    assert [list(map(type, v)) for v in found.values()] == [
        list(map(type, v)) for v in expected.values()
    ]


@settings(max_examples=20, deadline=None)
@given(
    features=st.integers(1, 40),
    cap=st.integers(1, 30),
    at=cuts(300, max_batches=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_batch_of_new_features_makes_the_room_they_make_one_by_one(
    features: int, cap: int, at: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    events: list = [
        FeatureWrite(int(user), f"f{feature}", 1.0, 1_000.0 * k, 1_000.0 * k)
        if k % 4
        else Label(int(user), int(user) % 2, 1_000.0 * k)
        for k, (user, feature) in enumerate(
            zip(rng.integers(0, 30, 300), rng.integers(0, features, 300), strict=True)
        )
    ]

    def make() -> LabelCoincidentWrites:
        return LabelCoincidentWrites(**SMALL, min_labels=3, max_features=cap)

    one_by_one, batched = make(), make()
    for x in events:
        one_by_one.update(x)
    for batch in batches(events, at):
        batched.update_many(batch)
    assert batched._windows.shape == one_by_one._windows.shape
    assert pickle.dumps(batched) == pickle.dumps(one_by_one)


@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True),
            st.text(max_size=3),
            st.integers(),
            st.booleans(),
            st.none(),
            st.floats(allow_nan=True).map(np.float64),
        ),
        max_size=30,
    )
)
def test_the_nulls_of_a_batch_s_values_are_each_value_s(values: list) -> None:
    # Values of plain types go through one C-level pass (NaN alone is unequal to itself),
    # the others one by one: both find what ``is_null`` finds.
    found = LabelCoincidentWrites()._nulls(values)
    assert found.dtype == np.bool_
    assert found.tolist() == [is_null(value, ()) for value in values]


def _telling_in_numpy(
    best: np.ndarray, labels: np.ndarray, counts: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, ...]:
    """``_coincide.telling`` as numpy's gathers found it."""
    kind, label, b = best[columns].T
    judged = labels[columns, :, b]
    cells = counts[columns, kind, :, b]
    excess = (cells[..., _coincide._NEAR] - cells[..., _coincide._CONTROL]) / np.maximum(judged, 1)
    rows = np.arange(len(columns))
    return kind, label, b, judged, cells, excess[rows, label] - excess[rows, 1 - label]


@settings(max_examples=200, deadline=None)
@given(features=st.integers(1, 6), bins=st.integers(1, 8), data=st.data())
def test_the_compiled_telling_cells_are_numpy_s(
    features: int, bins: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    best = np.stack(
        [
            rng.integers(0, 2, features),
            rng.integers(0, 2, features),
            rng.integers(0, bins, features),
        ],
        axis=1,
    ).astype(np.int64)
    # Labels judged, none in some cells; near and control writes among them.
    labels = rng.integers(0, 4, (features, 2, bins)).astype(np.int64)
    counts = rng.integers(0, 5, (features, 2, 2, bins, 4)).astype(np.int64)
    columns = np.array(
        data.draw(st.lists(st.integers(0, features - 1), max_size=2 * features)), np.intp
    )
    found = _coincide.telling(best, labels, counts, columns)
    expected = _telling_in_numpy(best, labels, counts, columns)
    for a, b in zip(found, expected, strict=True):
        assert a.shape == b.shape and a.tolist() == b.tolist()
