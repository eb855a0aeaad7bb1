"""Batch updates: any split of a stream into batches gives what ``update`` gives one by one.

Each property feeds one stream (NaN, None, infinities and other bad inputs included) one
by one and in batches cut at arbitrary points, and requires the same events at the same
indices and the same running state after (``tests/detectors/batching.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import (
    AvailabilityGap,
    BernoulliCUSUM,
    CategoricalPSIDrift,
    ChiSquareDrift,
    FutureValues,
    JensenShannonDrift,
    KSDrift,
    LabelCoincidentWrites,
    NullRateDrift,
    PSIDrift,
    RobustCUSUM,
    WassersteinDrift,
    _batch,
)
from detectors.leaks import FeatureWrite, Label, ServedFeature, label_coincidence
from detectors.leaks.availability_gap import ServedValues
from tests.detectors.batching import (
    Event,
    batches,
    cuts,
    detection_event,
    detections,
    events_batched,
    events_one_by_one,
    same_state,
    state_difference,
    window_event,
    window_events,
)
from tests.detectors.cases_drift import alarms
from tests.detectors.cases_leaks import (
    BAD_EVENTS,
    FEATURES,
    writes_and_labels,
    writes_and_predictions,
)

BAD = [math.nan, None, math.inf, -math.inf, "x", float("nan")]
PROPERTY = settings(max_examples=150, deadline=None)


def numbers_with_gaps(shift: float = 2.0) -> st.SearchStrategy[list[Any]]:
    """Values that move between two levels, with bad inputs among them."""
    value = st.one_of(
        st.floats(-1.0, 1.0),
        st.floats(-1.0, 1.0).map(lambda x: x + shift),
        st.integers(-2, 3),
        st.sampled_from(BAD),
    )
    return st.lists(value, max_size=120)


def assert_same_batched(
    make: Callable[[], Any],
    values: Any,
    at: Sequence[int],
    one: Callable[[Any], Any],
    many: Callable[[Any], Any],
    update_many: Callable[[Any, Sequence[Any]], None] | None = None,
) -> None:
    """Events and state alike one by one and batched; batched twice: with small batches
    going through ``update`` as in production, and with every batch on the numpy path."""
    single = make()
    expected = events_one_by_one(single, values, one)
    for small_batch in (_batch.SMALL_BATCH, -1):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_batch, "SMALL_BATCH", small_batch)
            batched = make()
            found = events_batched(batched, values, at, many, update_many)
        assert found == expected, small_batch
        assert same_state(batched, single), state_difference(batched, single)


def _reference() -> list[float]:
    return list(np.random.default_rng(0).normal(0.0, 1.0, 40))


NUMERIC = {
    "ks": lambda reference: KSDrift(reference, window_size=7, alpha=0.2),
    "wasserstein": lambda reference: WassersteinDrift(reference, window_size=7, threshold=0.5),
    "psi": lambda reference: PSIDrift(reference, window_size=7, n_bins=3, threshold=0.3),
    "jensen_shannon": lambda reference: JensenShannonDrift(
        reference, window_size=7, n_bins=3, threshold=0.1
    ),
}


@PROPERTY
@given(
    st.sampled_from(sorted(NUMERIC)),
    st.booleans(),
    numbers_with_gaps(),
    st.data(),
)
def test_numeric_window_tests_batched_as_one_by_one(
    name: str, frozen: bool, values: list[Any], data: st.DataObject
) -> None:
    at = data.draw(cuts(len(values)))
    reference = _reference() if frozen else None
    assert_same_batched(lambda: NUMERIC[name](reference), values, at, window_event, window_events)


@PROPERTY
@given(
    st.sampled_from(sorted(NUMERIC)),
    st.lists(st.sampled_from([0.1, -0.5, 2.5, 3.0, math.nan, math.inf, -math.inf]), max_size=90),
    st.data(),
)
def test_numeric_window_tests_take_float_arrays(
    name: str, values: list[float], data: st.DataObject
) -> None:
    at = data.draw(cuts(len(values)))
    assert_same_batched(
        lambda: NUMERIC[name](None),
        values,
        at,
        window_event,
        window_events,
        lambda detector, batch: detector.update_many(np.asarray(batch, dtype=np.float64)),
    )


@PROPERTY
@given(
    st.sampled_from(sorted(NUMERIC)),
    st.booleans(),
    numbers_with_gaps(),
    st.booleans(),
    st.data(),
)
def test_numeric_window_tests_small_batches_as_each_update(
    name: str, frozen: bool, values: list[Any], arrays: bool, data: st.DataObject
) -> None:
    # Many small batches, empty ones among them: those that complete no window go into it
    # at once, the others through ``update`` each (``_update_each``, the plain path);
    # batch by batch, what the plain path leaves, to the pickled byte (``drift_detected``
    # kept by an empty batch) and the windows found.
    at = data.draw(cuts(len(values), max_batches=60))
    reference = _reference() if frozen else None
    fast, plain = NUMERIC[name](reference), NUMERIC[name](reference)
    for batch in batches(values, at):
        if arrays and all(isinstance(x, float) for x in batch):
            batch = np.asarray(batch, dtype=np.float64)
        fast.update_many(batch)
        plain._update_each(batch)
        assert fast.drift_detected == plain.drift_detected
        assert window_events(fast) == window_events(plain)
        assert pickle.dumps(fast) == pickle.dumps(plain), state_difference(fast, plain)


CATEGORICAL = {
    "psi": lambda reference: CategoricalPSIDrift(
        reference, window_size=6, threshold=0.3, max_categories=2
    ),
    "chi_square": lambda reference: ChiSquareDrift(
        reference, window_size=6, alpha=0.2, max_categories=2
    ),
}
CATEGORIES = ["a", "b", "c", "d", "__other__", 1, 1.0, True, math.nan, None, [1], ("t", [2])]


@PROPERTY
@given(
    st.sampled_from(sorted(CATEGORICAL)),
    st.booleans(),
    st.lists(st.sampled_from(CATEGORIES), max_size=100),
    st.data(),
)
def test_categorical_window_tests_batched_as_one_by_one(
    name: str, frozen: bool, values: list[Any], data: st.DataObject
) -> None:
    at = data.draw(cuts(len(values)))
    reference = {"a": 50, "b": 30, "c": 5, "e": 1} if frozen else None
    assert_same_batched(
        lambda: CATEGORICAL[name](reference), values, at, window_event, window_events
    )


@PROPERTY
@given(
    st.booleans(),
    st.sampled_from([None, (-1, "")]),
    st.lists(st.sampled_from([1.0, 2, -1, "", "a", math.nan, None, math.inf]), max_size=100),
    st.data(),
)
def test_null_rate_batched_as_one_by_one(
    frozen: bool, sentinels: tuple[Any, ...] | None, values: list[Any], data: st.DataObject
) -> None:
    at = data.draw(cuts(len(values)))
    reference = (1, 50) if frozen else None
    assert_same_batched(
        lambda: NullRateDrift(reference, window_size=6, alpha=0.3, sentinels=sentinels),
        values,
        at,
        window_event,
        window_events,
    )


@PROPERTY
@given(st.lists(st.sampled_from([0.5, 1.0, math.nan, -math.inf]), max_size=60), st.data())
def test_null_rate_takes_float_arrays(values: list[float], data: st.DataObject) -> None:
    at = data.draw(cuts(len(values)))
    assert_same_batched(
        lambda: NullRateDrift(None, window_size=5, alpha=0.3),
        values,
        at,
        window_event,
        window_events,
        lambda detector, batch: detector.update_many(np.asarray(batch, dtype=np.float64)),
    )


def test_a_batch_reports_each_window_and_the_last_input_alone() -> None:
    rng = np.random.default_rng(5)
    detector = KSDrift(rng.normal(0.0, 1.0, 1000), window_size=100, alpha=0.001)
    stream = np.concatenate([rng.normal(0.0, 1.0, 200), rng.normal(1.0, 1.0, 250)])
    stream[3] = np.nan
    detector.update_many(stream)
    assert detector.window_ends.tolist() == [100, 200, 300, 400]
    assert detector.window_drifts.tolist() == [False, False, True, True]
    assert detector.n_skipped == 1
    # The batch's last input completed no window, as update() would have said of it.
    assert not detector.drift_detected
    # 49 values wait in the window: the 51st valid value of the next batch completes it.
    detector.update_many(stream[-51:])
    assert detector.window_ends.tolist() == [50]
    assert detector.window_drifts.tolist() == [True]
    assert detector.drift_detected


def alarm_cause(detector: RobustCUSUM) -> tuple[Any, ...] | None:
    return (detector.cause,) if detector.drift_detected else None


def alarm_causes(detector: RobustCUSUM) -> list[tuple[int, tuple[Any, ...]]]:
    return [
        (int(i), (cause,))
        for i, cause in zip(detector.detections, detector.detection_causes, strict=True)
    ]


def levels(draw: st.DrawFn) -> list[Any]:
    """Runs at a few levels and spreads, with bad inputs among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 6))):
        run = rng.normal(draw(st.sampled_from([0.0, 1.5, -1.5])), draw(st.sampled_from([1, 3])), 40)
        values.extend(run.tolist())
    for _ in range(draw(st.integers(0, 10))):
        values.insert(draw(st.integers(0, len(values))), draw(st.sampled_from(BAD)))
    return values


@PROPERTY
@given(st.sampled_from([2.0, None]), st.sampled_from([3, 17, 4096]), st.data())
def test_robust_cusum_batched_as_one_by_one(
    spread_ratio: float | None, rebase_every: int, data: st.DataObject
) -> None:
    values = data.draw(st.composite(lambda draw: levels(draw))())
    at = data.draw(cuts(len(values)))
    with pytest.MonkeyPatch.context() as patch:
        # A short period makes the rebase happen inside short streams and batches.
        patch.setattr("detectors.drift.robust_cusum.REBASE_EVERY", rebase_every)
        # The batch loop they share (_cusum.SegmentedBatches) reads its own.
        patch.setattr("detectors.drift._cusum.REBASE_EVERY", rebase_every)
        assert_same_batched(
            lambda: RobustCUSUM(
                warm_up=10, threshold=4.0, spread_ratio=spread_ratio, spread_threshold=3.0
            ),
            values,
            at,
            alarm_cause,
            alarm_causes,
        )


@settings(max_examples=20, deadline=None)
@given(cuts(30_000))
def test_robust_cusum_rebases_alike_over_a_long_stream(at: list[int]) -> None:
    # Heavy tails, fed as float arrays: the rebase every 4,096 values falls inside batches.
    values = np.random.default_rng(4).standard_t(4, 30_000)
    assert_same_batched(lambda: RobustCUSUM(warm_up=50), values, at, alarm_cause, alarm_causes)


def test_robust_cusum_warms_up_again_inside_a_batch() -> None:
    rng = np.random.default_rng(6)
    stream = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(3.0, 1.0, 300)])
    assert alarms(RobustCUSUM(warm_up=100), stream) == [311]
    detector = RobustCUSUM(warm_up=100)
    detector.update_many(stream)
    # The step is caught once; the warm-up after the alarm learns the new level, quietly.
    assert detector.detections.tolist() == [311]
    # A three-sigma step fills the spread CUSUM (1.8 a value) before the mean's (2.85 a
    # value, against a higher threshold).
    assert detector.detection_causes == ("spread_up",)
    assert detector.reference_location == pytest.approx(3.0, abs=0.3)


def test_robust_cusum_counts_every_input_it_skips() -> None:
    detector = RobustCUSUM(warm_up=10)
    for x in [1.0, None, math.nan, math.inf, "x", 2]:
        detector.update(x)
    assert detector.n_skipped == 4
    detector.update_many(np.array([0.0, np.nan, -np.inf] * 10))
    assert detector.n_skipped == 24


def binary(draw: st.DrawFn, bad: Sequence[Any]) -> list[Any]:
    """Runs of events at a low and a high rate, with inputs that are not 0/1 among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 5))):
        rate = draw(st.sampled_from([0.1, 0.6]))
        values.extend(rng.random(draw(st.integers(5, 60))) < rate)
    kinds = [bool, int, float, np.bool_]
    values = [kinds[i % 4](x) for i, x in enumerate(values)]
    for _ in range(draw(st.integers(0, 10))):
        values.insert(draw(st.integers(0, len(values))), draw(st.sampled_from(bad)))
    return values


BINARY_BAD = [math.nan, None, math.inf, 2, -1, 0.5, "1", 1 + 0j]


@PROPERTY
@given(st.sampled_from([None, 0.2]), st.sampled_from([3, 17, 4096]), st.data())
def test_bernoulli_cusum_batched_as_one_by_one(
    reference_rate: float | None, rebase_every: int, data: st.DataObject
) -> None:
    values = data.draw(st.composite(lambda draw: binary(draw, BINARY_BAD))())
    at = data.draw(cuts(len(values)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("detectors.drift.bernoulli_cusum.REBASE_EVERY", rebase_every)
        # The batch loop they share (_cusum.SegmentedBatches) reads its own.
        patch.setattr("detectors.drift._cusum.REBASE_EVERY", rebase_every)
        assert_same_batched(
            lambda: BernoulliCUSUM(warm_up=10, threshold=2.0, reference_rate=reference_rate),
            values,
            at,
            detection_event,
            detections,
        )


# What each dtype can hold besides 0 and 1 (a bool array holds nothing else).
NUMERIC_BAD: dict[type, list[float]] = {
    np.bool_: [0],
    np.int64: [2, -1],
    np.float64: [math.nan, 2, -1, 0.5, math.inf],
}


@PROPERTY
@given(st.sampled_from([np.bool_, np.int64, np.float64, np.float32]), st.data())
def test_bernoulli_cusum_takes_numeric_arrays(dtype: type, data: st.DataObject) -> None:
    bad = NUMERIC_BAD.get(dtype, NUMERIC_BAD[np.float64])
    values = data.draw(st.composite(lambda draw: binary(draw, bad))())
    # One by one the detector gets the array's own elements (numpy scalars).
    array: Any = np.asarray([float(x) for x in values]).astype(dtype)
    at = data.draw(cuts(len(values)))
    assert_same_batched(
        lambda: BernoulliCUSUM(warm_up=10, threshold=2.0), array, at, detection_event, detections
    )


def test_bernoulli_cusum_counts_every_input_it_skips() -> None:
    detector = BernoulliCUSUM(warm_up=10)
    for x in [1, 0, None, math.nan, 2, "1", True, 0.5]:
        detector.update(x)
    assert detector.n_skipped == 5
    detector.update_many(np.array([0.0, np.nan, 1.0, 3.0]))
    assert detector.n_skipped == 7


def future_event(detector: FutureValues) -> tuple[Any, ...] | None:
    return () if len(detector.future_indices) else None


def future_events(detector: FutureValues) -> list[tuple[int, tuple[Any, ...]]]:
    return [(int(i), ()) for i in detector.future_indices]


TIMES = st.one_of(
    st.integers(0, 50).map(float), st.sampled_from([math.nan, math.inf, -math.inf, 1e308])
)


@st.composite
def served_rows(draw: st.DrawFn, as_text: bool, dtype: Any) -> list[ServedFeature]:
    """Served values as update gets them from columns: the columns' own elements."""
    n = draw(st.integers(0, 60))
    ids: list[Any] = ["u1", "u2", 7] if not as_text else ["u1", "u2"]
    names: list[Any] = ["a", "b", "c", ""] if as_text else ["a", "b", "c", "", 3, None]
    if not as_text:
        ids += [True, None, 1.5]
    columns = [
        np.array(draw(st.lists(st.sampled_from(ids), min_size=n, max_size=n)), dtype=object),
        np.array(draw(st.lists(st.sampled_from(names), min_size=n, max_size=n)), dtype=object),
    ]
    if as_text:
        columns = [column.astype(str) for column in columns]
    times = [draw(st.lists(TIMES, min_size=n, max_size=n)) for _ in range(2)]
    if dtype is not None and np.dtype(dtype).kind == "i":
        times = [[t if math.isfinite(t) and abs(t) < 1e6 else 0.0 for t in ts] for ts in times]
    stamps = [np.array(ts, dtype=dtype) if dtype is not None else ts for ts in times]
    return [
        ServedFeature(columns[0][i], columns[1][i], i, stamps[0][i], stamps[1][i]) for i in range(n)
    ]


def columns_of(rows: Sequence[ServedFeature], as_text: bool, dtype: Any) -> list[Any]:
    """The rows as the columns update_many takes: arrays where ``served_rows`` cut arrays."""
    columns: list[Any] = [
        [getattr(row, f.name) for row in rows] for f in dataclasses.fields(ServedFeature)
    ]
    ids, names, values, written, predicted = columns
    if as_text:
        ids, names = np.array(ids, dtype=str), np.array(names, dtype=str)
    if dtype is not None:
        written, predicted = np.array(written, dtype=dtype), np.array(predicted, dtype=dtype)
    return [ids, names, values, written, predicted]


@PROPERTY
@given(
    st.sampled_from([(False, None), (False, np.float64), (True, np.float64), (True, np.int64)]),
    st.sampled_from([0.0, 5.0]),
    st.data(),
)
def test_future_values_batched_as_one_by_one(
    mode: tuple[bool, Any], skew_tolerance: float, data: st.DataObject
) -> None:
    rows = data.draw(served_rows(*mode))
    at = data.draw(cuts(len(rows)))
    assert_same_batched(
        lambda: FutureValues(skew_tolerance=skew_tolerance, max_features=2),
        rows,
        at,
        future_event,
        future_events,
        lambda detector, batch: detector.update_many(*columns_of(batch, *mode)),
    )


def test_future_values_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        FutureValues().update_many(["u"], ["a"], [1], np.array([1.0, 2.0]), np.array([1.0]))


@pytest.mark.parametrize(
    ("module", "make", "stream"),
    [
        (
            "robust_cusum",
            lambda: RobustCUSUM(warm_up=100),
            # Heavy tails, and a step after some rebases.
            np.random.default_rng(8).standard_t(5, 30_000) + np.repeat([0.0, 1.0], 15_000),
        ),
        (
            "bernoulli_cusum",
            lambda: BernoulliCUSUM(warm_up=300),
            np.random.default_rng(8).random(30_000) < np.repeat([0.05, 0.12, 0.05], 10_000),
        ),
    ],
)
def test_the_rebase_keeps_the_cusum_and_its_alarms(module: str, make: Any, stream: Any) -> None:
    # Against sums never rebased: the same alarms, and statistics apart by rounding only.
    def run() -> tuple[list[int], list[float]]:
        detector = make()
        found, statistics = [], []
        for i, x in enumerate(stream):
            detector.update(x)
            found.extend([i] if detector.drift_detected else [])
            statistics.append(detector.statistic)
        return found, statistics

    rebased, rebased_statistics = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(f"detectors.drift.{module}.REBASE_EVERY", 10**9)
        patch.setattr("detectors.drift._cusum.REBASE_EVERY", 10**9)
        never, never_statistics = run()
    assert rebased == never
    assert len(rebased) > 0
    assert np.allclose(rebased_statistics, never_statistics, rtol=0.0, atol=1e-9)


def flag_event(detector: Any) -> Event | None:
    """The features a leak detector flagged in the last update, with their evidence."""
    return tuple(found for _, found in detector.flags) or None


def flag_events(detector: Any) -> list[tuple[int, Event]]:
    """The batched counterpart of ``flag_event``: per position, the features flagged there."""
    grouped: dict[int, list[Any]] = {}
    for position, found in detector.flags:
        grouped.setdefault(position, []).append(found)
    return [(position, tuple(found)) for position, found in grouped.items()]


FEW_ENTITIES = st.sampled_from(["u1", "u2", 3, 4, "u5", 6])
MANY_ENTITIES = st.sampled_from([*range(20), *(f"u{k}" for k in range(20))])
# Timestamps of a few entities' writes and labels, seconds apart around lag bins of 1 to
# 20 s, with writes late, early, out of order, or too far out for float tiles.
STEPS = st.one_of(st.floats(0.0, 4_000.0), st.sampled_from([0.0, 500.0, 30_000.0]))
OFFSETS = st.one_of(st.floats(-25_000.0, 25_000.0), st.sampled_from([0.0, 1e300, -1e300]))


@st.composite
def writes_and_labels_drawn(
    draw: st.DrawFn, start: st.SearchStrategy[float] | None = None, whole: bool = False
) -> list[Any]:
    """Writes (of values, None, NaN and the sentinel -1) and labels of up to six entities
    (or of forty, whose events come in long runs), to three features, with malformed events
    among them; from ``start`` on (0.0 if None), in whole milliseconds if ``whole``."""
    n = draw(st.integers(0, 150))
    entities = draw(st.sampled_from([FEW_ENTITIES, MANY_ENTITIES]))
    now, events = 0.0 if start is None else draw(start), []
    for _ in range(n):
        now += math.floor(draw(STEPS)) if whole else draw(STEPS)
        kind = draw(st.integers(0, 9))
        entity = draw(entities)
        if kind < 7:
            feature = draw(st.sampled_from(FEATURES))
            value = draw(st.sampled_from([1.0, "x", None, math.nan, -1, True]))
            offset = draw(OFFSETS)
            event_at = now + (math.floor(offset) if whole else offset) if kind < 3 else now
            events.append(FeatureWrite(entity, feature, value, event_at, now))
        elif kind < 9:
            events.append(Label(entity, draw(st.sampled_from([0, 1, True])), now))
        else:
            events.append(draw(st.sampled_from(BAD_EVENTS)))
    return events


def drawn_or_seeded(
    drawn: st.SearchStrategy[list[Any]], seeded: Callable[[np.random.Generator], list[Any]]
) -> st.SearchStrategy[list[Any]]:
    """A drawn stream, or one of four seeded streams of the shared leak cases."""
    return st.one_of(drawn, st.integers(0, 3).map(lambda s: seeded(np.random.default_rng(s))))


def small_coincidence(max_entities: int) -> LabelCoincidentWrites:
    """The detector the drawn streams are for: lag bins of 1 to 20 s, two features."""
    return LabelCoincidentWrites(
        tolerance=1_000.0,
        max_lag=20_000.0,
        lateness=2_000.0,
        label_delay=0.0,
        sentinels=(-1,),
        min_labels=2,
        max_entities=max_entities,
        max_features=2,
    )


# How LabelCoincidentWrites judges lag bins due: (_FEW_LABELS, _CHUNK_CELLS). As shipped;
# in numpy from one label due on; and in chunks of two judgments (two features).
JUDGING = [(4, 1 << 16), (1, 1 << 16), (1, 5)]
# The batches update_many reads one by one rather than in its compiled loop (_FEW_EVENTS):
# as shipped, and none.
FEW_EVENTS = [2, 0]


@PROPERTY
@given(
    drawn_or_seeded(
        writes_and_labels_drawn(), lambda rng: writes_and_labels(rng, 500, "last_login_date")
    ),
    st.sampled_from([2, 64]),
    st.sampled_from(JUDGING),
    st.sampled_from(FEW_EVENTS),
    st.data(),
)
def test_label_coincidence_batched_as_one_by_one(
    events: list[Any],
    max_entities: int,
    judging: tuple[int, int],
    few_events: int,
    data: st.DataObject,
) -> None:
    at = data.draw(cuts(len(events)))

    def make() -> LabelCoincidentWrites:
        return small_coincidence(max_entities)

    # The reference judges every label's lag bins one at a time.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(label_coincidence, "_FEW_LABELS", 10**9)
        reference = make()
        expected = events_one_by_one(reference, events, flag_event)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(label_coincidence, "_FEW_LABELS", judging[0])
        patch.setattr(label_coincidence, "_CHUNK_CELLS", judging[1])
        patch.setattr(label_coincidence, "_FEW_EVENTS", few_events)
        single = make()
        assert events_one_by_one(single, events, flag_event) == expected
        assert same_state(single, reference), state_difference(single, reference)
        assert_same_batched(make, events, at, flag_event, flag_events)


# Where checkpoints keep times as integer offsets (below 2**51 in size) and where not: a
# start at the edge, streams crossing it, and fractions of a millisecond.
CHECKPOINT_STARTS = st.sampled_from(
    [0.0, 1.7e12, 2.0**51 - 30_000.0, -(2.0**51) - 1.0, 2.0**51, 2.0**60, 0.5]
)


@PROPERTY
@given(
    st.booleans().flatmap(lambda whole: writes_and_labels_drawn(CHECKPOINT_STARTS, whole)),
    st.data(),
)
def test_label_coincidence_checkpoints_restore_its_state(
    events: list[Any], data: st.DataObject
) -> None:
    # Pickled and restored before any event: the same state as never pickled, and the same
    # flags after, whatever the times (a time a checkpoint cannot narrow stays a float).
    at = set(data.draw(cuts(len(events))))

    kept, restored = small_coincidence(3), small_coincidence(3)
    for i, x in enumerate(events):
        if i in at:
            restored = pickle.loads(pickle.dumps(restored))
            assert same_state(restored, kept), state_difference(restored, kept)
        kept.update(x)
        restored.update(x)
        assert flag_event(restored) == flag_event(kept)
    restored = pickle.loads(pickle.dumps(restored))
    assert same_state(restored, kept), state_difference(restored, kept)


def test_label_coincidence_pickles_a_few_bytes_per_entity_and_feature() -> None:
    # At its cap, times in whole milliseconds: per entity and feature 3 control windows of
    # 2 * 8 bins (2 bytes each) and the latest write (4 bytes), a few bytes for writes of
    # null (none here); per entity its key, table slot and a few times.
    detector = LabelCoincidentWrites(max_entities=1_000)
    features = [f"f{k}" for k in range(20)]
    # Filled to its cap, not past it: past it, the sample of entities halves.
    for i in range(1_000):
        at = 1.7e12 + i * 1_000.0
        detector.update_many([FeatureWrite(i, name, 1.0, at, at) for name in features])
    assert detector.entities == 1_000
    restored = pickle.loads(pickle.dumps(detector))
    assert same_state(restored, detector), state_difference(restored, detector)
    assert len(pickle.dumps(detector)) < 1_000 * (20 * (3 * 2 + 4 + 1) + 40) + 10_000


def test_label_coincidence_batches_flag_at_the_same_positions() -> None:
    # The seeded leak of the property above, cut in batches of 500: the flags it finds.
    events = writes_and_labels(np.random.default_rng(1), 3_000, "last_login_date")

    def make() -> LabelCoincidentWrites:
        return LabelCoincidentWrites(
            tolerance=1_000.0, max_lag=20_000.0, lateness=2_000.0, label_delay=0.0
        )

    single, batched = make(), make()
    expected = events_one_by_one(single, events, flag_event)
    found = events_batched(batched, events, list(range(500, 3_000, 500)), flag_events)
    assert [(i, [e.feature for e in flags]) for i, flags in found] == [
        (i, [e.feature for e in flags]) for i, flags in expected
    ]
    assert found == expected and len(found) == 1
    assert same_state(batched, single), state_difference(batched, single)


# A served value's write time, and a feature name, that make only that value malformed.
BAD_WRITTEN_AT = st.sampled_from([math.nan, math.inf, None, "0", True, 10**400])
BAD_FEATURES = st.sampled_from(["", None, 3, ("plan",), ["plan"]])


@st.composite
def served_values_drawn(draw: st.DrawFn, entity: Any, now: float) -> ServedValues:
    """The values of one prediction: some of the three features, a few malformed."""
    features = draw(st.lists(st.sampled_from(FEATURES), max_size=4))
    written_at = [now - draw(STEPS) for _ in features]
    names: list[Any] = list(features)
    for i in range(len(names)):
        if draw(st.integers(0, 9)) == 0:
            names[i] = draw(BAD_FEATURES)
        elif draw(st.integers(0, 9)) == 0:
            written_at[i] = draw(BAD_WRITTEN_AT)
    if draw(st.integers(0, 19)) == 0:
        entity, now = draw(st.sampled_from([(None, now), (True, now), (entity, math.nan)]))
    return ServedValues(entity, now, tuple(names), tuple(written_at))


@st.composite
def writes_and_served_drawn(draw: st.DrawFn) -> list[Any]:
    """Writes and served values (one a time, or a prediction's at once) of a few entities
    and three features, late writes among them, with malformed events."""
    n = draw(st.integers(0, 150))
    now, events = 0.0, []
    for _ in range(n):
        now += draw(st.floats(0.0, 100.0))
        entity = draw(st.sampled_from(["u1", "u2", 3]))
        feature = draw(st.sampled_from(FEATURES))
        kind = draw(st.integers(0, 11))
        if kind < 5:
            events.append(FeatureWrite(entity, feature, 1.0, now - draw(STEPS), now))
        elif kind < 9:
            events.append(ServedFeature(entity, feature, 1.0, now - draw(STEPS), now))
        elif kind < 11:
            events.append(draw(served_values_drawn(entity, now)))
        else:
            events.append(draw(st.sampled_from(BAD_EVENTS)))
    return events


@PROPERTY
@given(
    drawn_or_seeded(
        writes_and_served_drawn(), lambda rng: writes_and_predictions(rng, 400, lag=3_600_000.0)
    ),
    # max_features below the three features: a prediction's list of features is not all
    # followed, and a batch's predictions share their lists.
    st.sampled_from([(2, 2, 4, 1_000), (1, 3, 1, 2), (3, 1, 64, 1)]),
    # Windows of one-prediction blocks (a look at each) and of longer ones; pairs that
    # expire between two events, within a few, or not within the stream.
    st.sampled_from([8, 24]),
    st.sampled_from([0.0, 2_000.0, 600_000.0]),
    st.data(),
)
def test_availability_gap_batched_as_one_by_one(
    events: list[Any],
    sizes: tuple[int, int, int, int],
    window: int,
    max_delay: float,
    data: st.DataObject,
) -> None:
    at = data.draw(cuts(len(events)))
    history, pending, max_keys, max_features = sizes
    assert_same_batched(
        lambda: AvailabilityGap(
            min_predictions=5,
            window=window,
            max_delay=max_delay,
            history=history,
            pending=pending,
            max_keys=max_keys,
            max_features=max_features,
        ),
        events,
        at,
        flag_event,
        flag_events,
    )


def _one_value_each(events: list[Any]) -> tuple[list[Any], list[int]]:
    """``events`` with each ``ServedValues`` as one ``ServedFeature`` per value, and the
    position in ``events`` each event comes from."""
    single: list[Any] = []
    origin: list[int] = []
    for i, x in enumerate(events):
        if isinstance(x, ServedValues):
            for feature, written_at in zip(x.features, x.written_at, strict=True):
                single.append(ServedFeature(x.entity_id, feature, None, written_at, x.predicted_at))
                origin.append(i)
        else:
            single.append(x)
            origin.append(i)
    return single, origin


@PROPERTY
@given(writes_and_served_drawn(), st.data())
def test_served_values_read_as_one_served_feature_each(
    events: list[Any], data: st.DataObject
) -> None:
    # A prediction's values at once: the state, flags (at the prediction) and rejections
    # of its values one at a time.
    def make() -> AvailabilityGap:
        return AvailabilityGap(min_predictions=5, history=2, pending=2, max_keys=4)

    single, origin = _one_value_each(events)
    one_each = make()
    expected = [(origin[i], found) for i, found in events_one_by_one(one_each, single, flag_event)]
    together = make()
    found = events_batched(together, events, data.draw(cuts(len(events))), flag_events)
    assert [(i, f) for i, flags in found for f in flags] == [
        (i, f) for i, flags in expected for f in flags
    ]
    assert same_state(together, one_each), state_difference(together, one_each)


def test_availability_gap_pickles_its_kept_keys_only() -> None:
    # At its cap: the pickle holds each key's writes and predictions, not empty ring
    # slots, and the restored detector goes on as the original.
    events = writes_and_predictions(np.random.default_rng(2), 3_000, lag=3_600_000.0)
    detector = AvailabilityGap(min_predictions=5, max_keys=300)
    detector.update_many(events[:2_000])
    restored = pickle.loads(pickle.dumps(detector))
    # Full, it forgets the sixteenth of its keys seen longest ago at once.
    assert restored.keys == detector.keys == 294
    # A key: its hash, two times and two counts; a write 16 bytes, a prediction 13.
    assert len(pickle.dumps(detector)) < 294 * (8 + 8 + 8 + 2) + 8 * 16 * 294
    restored.update_many(events[2_000:])
    detector.update_many(events[2_000:])
    assert (restored.evidence, restored.flags) == (detector.evidence, detector.flags)


def test_late_writes_count_their_gaps_after_the_predictions_before_them() -> None:
    # Predictions of other keys, queued before writes that find gaps, look (blocks of one
    # prediction each) without those gaps, as one by one: the writes do not overtake them.
    def make() -> AvailabilityGap:
        return AvailabilityGap(max_gap_rate=0.1, min_predictions=5, window=8)

    earlier = [ServedFeature(f"u{k}", "plan", 1.0, 0.0, float(k)) for k in range(6)]
    later = [ServedFeature(f"u{k}", "plan", 1.0, 0.0, float(k)) for k in range(6, 9)]
    writes = [FeatureWrite(f"u{k}", "plan", 2.0, 0.0, 100.0) for k in range(6)]
    single, batched = make(), make()
    for x in [*earlier, *later, *writes]:
        single.update(x)
    batched.update_many(earlier)
    batched.update_many([*later, *writes])
    assert same_state(batched, single), state_difference(batched, single)
    evidence = batched.evidence["plan"]
    assert (evidence.predictions, evidence.gaps, evidence.gapped) == (9, 6, False)


def test_late_writes_count_gaps_in_the_blocks_kept_only() -> None:
    # Blocks of one prediction (window 8), the last 32 kept: late writes find the gaps of
    # "a"'s prediction, of a block just gone (its slot holds the newest block), and of
    # "b"'s, of the oldest block kept; the writes of "c" tie on event time, and the one
    # written first is the one training joins (on time: no gap).
    def make() -> AvailabilityGap:
        return AvailabilityGap(max_gap_rate=0.5, min_predictions=40, window=8)

    events: list[Any] = [
        ServedFeature("a", "f", 1.0, 0.0, 10.0),
        ServedFeature("b", "f", 1.0, 0.0, 11.0),
        FeatureWrite("c", "f", 1.0, 5.0, 200.0),
        FeatureWrite("c", "f", 1.0, 5.0, 6.0),
        ServedFeature("c", "f", 1.0, 0.0, 12.0),
    ]
    events += [ServedFeature(f"u{k}", "f", 1.0, 0.0, 13.0 + k) for k in range(30)]
    events += [FeatureWrite(e, "f", 2.0, 5.0, 100.0) for e in ("a", "b")]
    assert_same_batched(make, events, [], flag_event, flag_events)
    detector = make()
    detector.update_many(events)
    assert detector.evidence["f"].gaps == 2


def _predictions_and_writes(seed: int, n: int) -> list[Any]:
    """Predictions of two or three features (one event each) and writes, of more entities
    than 20 keys hold, late writes among them: writes that meet earlier predictions, repeat
    a key, or count gaps."""
    rng = np.random.default_rng(seed)
    now, events = 0.0, []
    for _ in range(n):
        now += float(rng.exponential(50.0))
        if rng.random() < 0.4:
            features = tuple(FEATURES[: int(rng.integers(2, 4))])
            written = tuple(now - float(rng.exponential(300.0)) for _ in features)
            events.append(ServedValues(f"u{rng.integers(12)}", now, features, written))
        else:
            feature = FEATURES[int(rng.integers(len(FEATURES)))]
            event_at = now - float(rng.exponential(200.0))
            entity = f"u{rng.integers(24)}"
            events.append(FeatureWrite(entity, feature, 1.0, event_at, now))
    return events


@pytest.mark.parametrize("max_keys", [20, 100_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_availability_gap_batch_makes_room_and_rings_writes_as_one_by_one(
    max_keys: int, seed: int
) -> None:
    # Batches of 150 events: with 20 keys at most, room is made inside a batch, at a
    # prediction or a write; rings of two writes, so that a write drops one.
    events = _predictions_and_writes(seed, 900)
    make = functools.partial(AvailabilityGap, 0.05, min_predictions=5, window=16, history=2)
    assert_same_batched(
        lambda: make(max_delay=2_000.0, max_keys=max_keys),
        events,
        list(range(150, 900, 150)),
        flag_event,
        flag_events,
    )


@st.composite
def wide_predictions_drawn(draw: st.DrawFn) -> list[Any]:
    """Predictions of many features at once (more keys than the rows freed at a time),
    mostly of new entities, and writes of their keys between them: on time, late, out of
    order (an older event time written after a newer one), a few values without a valid
    write time."""
    names = [f"f{k}" for k in range(draw(st.integers(2, 12)))]
    now, events = 0.0, []
    for n in range(draw(st.integers(0, 60))):
        now += draw(st.sampled_from([0.0, 1.0, 250.0]))
        entity = draw(st.sampled_from([f"u{n}", "u0", 7]))
        if draw(st.integers(0, 3)):
            features = names[: draw(st.integers(1, len(names)))]
            written: list[Any] = [now - draw(STEPS) for _ in features]
            if draw(st.integers(0, 4)) == 0:
                written[draw(st.integers(0, len(written) - 1))] = draw(BAD_WRITTEN_AT)
            events.append(ServedValues(entity, now, tuple(features), tuple(written)))
        else:
            feature = draw(st.sampled_from(names))
            event_at = now - draw(st.sampled_from([0.0, 100.0, 3_000.0, -50.0]))
            events.append(FeatureWrite(entity, feature, 1.0, event_at, now + draw(STEPS)))
    return events


@PROPERTY
@given(
    wide_predictions_drawn(),
    st.sampled_from([1, 3, 17, 40]),
    st.sampled_from([500.0, 600_000.0]),
    st.data(),
)
def test_availability_gap_batches_of_wide_predictions_at_the_cap_as_one_by_one(
    events: list[Any], max_keys: int, max_delay: float, data: st.DataObject
) -> None:
    # Room is made many times inside a prediction's values (a sixteenth of a few dozen keys
    # at a time), the predictions after it queued at once, their keys found a few at a
    # time; pairs expire (a short max_delay) or are evicted.
    assert_same_batched(
        lambda: AvailabilityGap(
            min_predictions=5,
            window=8,
            max_delay=max_delay,
            history=2,
            pending=2,
            max_keys=max_keys,
        ),
        events,
        data.draw(cuts(len(events), max_batches=3)),
        flag_event,
        flag_events,
    )
