"""AvailabilityGap: a prediction whose training value was written after it was made."""

from __future__ import annotations

import gc
import math
import pickle

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from detectors import AvailabilityGap
from detectors._exact import binomial_sf
from detectors.leaks import FeatureWrite, ServedFeature
from detectors.leaks.availability_gap import (
    _BLOCKS,
    _RING,
    ServedValues,
    _oldest_first,
    _windows_compiled,
)
from tests.detectors.batching import (
    cuts,
    events_batched,
    events_one_by_one,
    same_state,
    state_difference,
)
from tests.detectors.cases_leaks import writes_and_predictions


def _first_alarm(detector: AvailabilityGap, events: list) -> int | None:
    for i, event in enumerate(events):
        detector.update(event)
        if detector.gap_detected:
            return i
    return None


def test_late_write_after_the_prediction_is_a_gap() -> None:
    detector = AvailabilityGap()
    detector.update(FeatureWrite("u", "f", 1.0, 0.0, 10.0))
    detector.update(ServedFeature("u", "f", 1.0, 10.0, 100.0))
    # Training joins this write (event time 50 <= 100); serving could read it only at 200.
    detector.update(FeatureWrite("u", "f", 2.0, 50.0, 200.0))
    assert detector.evidence["f"].gaps == 1


def test_late_write_before_the_prediction_message_is_a_gap() -> None:
    detector = AvailabilityGap()
    detector.update(FeatureWrite("u", "f", 2.0, 50.0, 200.0))
    detector.update(ServedFeature("u", "f", 1.0, 10.0, 100.0))
    assert detector.evidence["f"].gaps == 1


def test_no_gap_when_a_newer_value_was_available() -> None:
    detector = AvailabilityGap()
    detector.update(ServedFeature("u", "f", 1.0, 90.0, 100.0))
    # A late write of an older event: training takes the newer one, written at 90.
    detector.update(FeatureWrite("u", "f", 2.0, 80.0, 90.0))
    detector.update(FeatureWrite("u", "f", 1.0, 50.0, 500.0))
    # Event time after the prediction: training does not join it.
    detector.update(FeatureWrite("u", "f", 3.0, 150.0, 600.0))
    assert detector.evidence["f"].gaps == 0


def test_each_prediction_counts_once() -> None:
    detector = AvailabilityGap()
    detector.update(ServedFeature("u", "f", 1.0, 0.0, 100.0))
    detector.update(FeatureWrite("u", "f", 2.0, 50.0, 200.0))
    detector.update(FeatureWrite("u", "f", 3.0, 60.0, 300.0))
    assert (detector.evidence["f"].predictions, detector.evidence["f"].gaps) == (1, 1)


def test_flags_lagging_writes_at_a_pinned_index() -> None:
    events = writes_and_predictions(np.random.default_rng(3), 20_000, lag=600_000.0)
    detector = AvailabilityGap(max_keys=1_000)
    assert _first_alarm(detector, events) == 1_457
    evidence = detector.evidence["last_login_date"]
    assert detector.gapped_features == ("last_login_date",)
    assert (evidence.predictions, evidence.gaps, evidence.gapped) == (250, 12, True)
    assert evidence.p_value <= 0.01


@pytest.mark.parametrize("seed", range(3))
def test_silent_when_writes_land_in_milliseconds(seed: int) -> None:
    events = writes_and_predictions(np.random.default_rng(seed), 100_000, lag=50.0)
    detector = AvailabilityGap()
    assert _first_alarm(detector, events) is None
    assert sum(e.predictions for e in detector.evidence.values()) > 40_000


def test_forgets_the_least_recently_seen_keys() -> None:
    detector = AvailabilityGap(max_keys=2)
    detector.update(ServedFeature("a", "f", 1.0, 0.0, 100.0))
    detector.update(ServedFeature("b", "f", 1.0, 0.0, 100.0))
    detector.update(ServedFeature("c", "f", 1.0, 0.0, 100.0))
    # "a" is forgotten, so its late write cannot be matched any more.
    detector.update(FeatureWrite("a", "f", 2.0, 50.0, 200.0))
    assert detector.evidence["f"].gaps == 0


def test_a_forgotten_newer_write_is_not_mistaken_for_a_gap() -> None:
    detector = AvailabilityGap(max_keys=1)
    detector.update(FeatureWrite("a", "f", 1.0, 90.0, 95.0))
    detector.update(ServedFeature("b", "f", 1.0, 0.0, 100.0))  # forgets "a"
    detector.update(ServedFeature("a", "f", 1.0, 95.0, 100.0))
    # Training would join the forgotten write of event time 90, not this backfill of 50.
    detector.update(FeatureWrite("a", "f", 0.5, 50.0, 500.0))
    assert detector.evidence["f"].gaps == 0
    # A write newer than anything forgotten is judged as usual.
    detector.update(FeatureWrite("a", "f", 2.0, 99.0, 600.0))
    assert detector.evidence["f"].gaps == 1


def test_features_at_the_caps_hold_no_object_each_that_the_garbage_collector_walks() -> None:
    # 25 features served together, 20 followed, and more (entity, feature) pairs than kept.
    rng = np.random.default_rng(5)
    names = tuple(f"f{n}" for n in range(25))
    detector = AvailabilityGap(min_predictions=5, window=16, max_keys=400, max_features=20)
    events: list[FeatureWrite | ServedValues] = []
    for n in range(600):
        user, at = int(rng.integers(0, 300)), n * 1_000.0
        lags = rng.exponential(2_000.0, len(names)).tolist()
        events += [
            FeatureWrite(user, f, 1.0, at - 500.0, at - 500.0 + lag)
            for f, lag in zip(names, lags, strict=True)
        ]
        events.append(ServedValues(user, at, names, (at - 1_000.0,) * len(names)))
    for start in range(0, len(events), 500):
        detector.update_many(events[start : start + 500])
    restored = pickle.loads(pickle.dumps(detector))
    gc.collect()
    assert (restored.keys, restored.evicted, len(restored.evidence)) == (384, 10_793, 20)
    # The features are columns of arrays of machine numbers (whose collection visits only
    # their type), not an object each with its arrays; the key table, the p-values and the
    # dict of names to columns are in slots, so the collector stops tracking the rest.
    assert not gc.is_tracked(vars(restored))
    walked = sorted(type(item).__name__ for item in gc.get_referents(restored))
    assert walked == ["AnytimePValues", "KeyTable", "dict", "dict", "type"]
    evidence = restored.evidence
    assert evidence == detector.evidence
    assert (evidence["f0"].predictions, evidence["f0"].gaps, evidence["f0"].gapped) == (
        600,
        462,
        True,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_gap_rate": 1.0}, "max_gap_rate"),
        ({"alpha": 0.0}, "alpha"),
        ({"min_predictions": 0}, "min_predictions"),
        ({"pending": 0}, "pending"),
        ({"max_keys": 1.5}, "max_keys"),
        ({"max_gap_rate": "1%"}, "max_gap_rate"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AvailabilityGap(**kwargs)


@pytest.mark.parametrize(("seed", "n"), [(0, 0), (1, 40), (3, 3_000)])
def test_rates_are_the_evidence_of_each_feature_predictions_used(seed: int, n: int) -> None:
    detector = AvailabilityGap(max_keys=1_000, min_predictions=5)
    detector.update_many(writes_and_predictions(np.random.default_rng(seed), n, lag=600_000.0))
    expected = {
        name: (e.predictions, e.gap_rate, e.p_value, e.gapped)
        for name, e in detector.evidence.items()
        if e.predictions
    }
    found = detector.rates
    assert found == expected and (n < 3_000 or any(gapped for *_, gapped in found.values()))
    assert [list(map(type, v)) for v in found.values()] == [
        list(map(type, v)) for v in expected.values()
    ]


@hypothesis.given(
    size=st.integers(1, 6),
    added=st.lists(st.integers(0, 20), max_size=8),
    kept=st.data(),
)
def test_a_checkpoint_reads_each_kept_ring_oldest_first(
    size: int, added: list[int], kept: st.DataObject
) -> None:
    # Each ring's slot holds the number of the value last written there (value v went to
    # slot v % size), as a time: the float64 rings the worker checkpoints, whose compiled
    # loop the warm-up has cached.
    rings = np.array(
        [[v - 1 - (v - 1 - s) % size for s in range(size)] for v in added], np.float64
    ).reshape(len(added), size)
    rows = np.array(
        sorted(kept.draw(st.sets(st.sampled_from(range(len(added))))) if added else []), np.intp
    )
    counts = np.array([added[r] for r in rows], np.int64)
    expected = [float(v) for r in rows for v in range(max(0, added[r] - size), added[r])]
    assert _oldest_first(rings, rows, counts).tolist() == expected


def _windows_in_numpy(
    ring: tuple[np.ndarray, np.ndarray], number: int, cuts: np.ndarray, block: int, rate: float
) -> tuple[float, int, int]:
    """The windows' test as numpy's gathers and Python's loop over the windows found it,
    before ``_windows_compiled``."""
    block_end, block_gaps = ring
    oldest = max(0, number - _RING + 1)
    slots = np.arange(oldest, number + 1) % _RING
    ends, gaps = block_end[slots], block_gaps[slots]
    newest = np.searchsorted(ends, ends[-1] - cuts, side="right") - 1
    best = (math.inf, 0, 0)
    block_gap_list = gaps.tolist()
    for last in sorted(set(newest[newest >= 0].tolist()), reverse=True):
        first = max(0, last - _BLOCKS + 1)
        size, found = (last - first + 1) * block, sum(block_gap_list[first : last + 1])
        best = min(best, (binomial_sf(found, size, rate), -size, found))
    return best[0] * len(cuts), -best[1], best[2]


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    number=st.integers(0, 3 * _RING),
    block=st.integers(1, 6),
    max_delay=st.sampled_from([1.0, 40.0, 600_000.0]),
    max_gap_rate=st.sampled_from([0.0, 0.01, 0.3]),
    data=st.data(),
)
def test_the_compiled_windows_test_is_numpy_s(
    number: int, block: int, max_delay: float, max_gap_rate: float, data: st.DataObject
) -> None:
    # The ring of the blocks up to ``number``: ends that only grow, often alike (the cuts
    # then find the same block), and gaps of up to a block each.
    held = min(number + 1, _RING)
    steps = data.draw(
        st.lists(st.sampled_from([0.0, 1.0, 5.0, 20.0, 1e5]), min_size=held, max_size=held)
    )
    gaps = data.draw(st.lists(st.integers(0, block), min_size=held, max_size=held))
    block_end = np.full(_RING, -math.inf)
    block_gaps = np.zeros(_RING, np.int64)
    end = float(data.draw(st.integers(0, 10**12)))
    for k, b in enumerate(range(number + 1 - held, number + 1)):
        end += steps[k]
        block_end[b % _RING], block_gaps[b % _RING] = end, gaps[k]
    cut_times = AvailabilityGap(max_delay=max_delay)._cuts
    found = _windows_compiled(block_end, block_gaps, number, cut_times, block, max_gap_rate)
    expected = _windows_in_numpy((block_end, block_gaps), number, cut_times, block, max_gap_rate)
    assert found == expected


def _gap_flags(detector: AvailabilityGap) -> tuple | None:
    return tuple(found for _, found in detector.flags) or None


def _gap_flags_by_position(detector: AvailabilityGap) -> list:
    grouped: dict[int, list] = {}
    for position, found in detector.flags:
        grouped.setdefault(position, []).append(found)
    return [(position, tuple(found)) for position, found in grouped.items()]


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**32 - 1), at=cuts(400))
def test_looks_whose_next_look_python_rounds_are_batched_as_one_by_one(
    seed: int, at: list[int]
) -> None:
    # A look at 4 predictions finds 6.0000000005 to round: the compiled loop hands the
    # look to Python's, and takes the later ones (9.00000000075 at 6...) itself.
    events = writes_and_predictions(np.random.default_rng(seed), 400, lag=3_000.0)
    one_by_one = AvailabilityGap(max_gap_rate=0.05, min_predictions=4, window=8)
    batched = AvailabilityGap(max_gap_rate=0.05, min_predictions=4, window=8)
    for detector in (one_by_one, batched):
        detector._looks.growth = 1.500000000125
    expected = events_one_by_one(one_by_one, events, _gap_flags)
    assert events_batched(batched, events, at, _gap_flags_by_position) == expected
    assert same_state(one_by_one, batched), state_difference(one_by_one, batched)
    assert int(batched._looks.looks.sum()) > 0


def test_a_last_look_whose_next_look_python_rounds_is_python_s() -> None:
    # Each feature's fourth prediction, the batch's last, is a look whose next look (4 *
    # 1.500000000125, rounded to 9 decimals, then its ceiling) is Python's to work out:
    # the compiled loop must hand the look over rather than leave it with no next look.
    events = [ServedFeature("u", f, 1.0, 0.0, float(t)) for t in range(4) for f in "abc"]
    one_by_one = AvailabilityGap(min_predictions=4, window=8)
    batched = AvailabilityGap(min_predictions=4, window=8)
    for detector in (one_by_one, batched):
        detector._looks.growth = 1.500000000125
    for event in events:
        one_by_one.update(event)
    batched.update_many(events)
    assert batched._looks.next_look.tolist() == [7, 7, 7]
    assert same_state(one_by_one, batched), state_difference(one_by_one, batched)
