"""AvailabilityGap: a prediction whose training value was written after it was made."""

from __future__ import annotations

import gc
import pickle

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from detectors import AvailabilityGap
from detectors.leaks import FeatureWrite, ServedFeature
from detectors.leaks.availability_gap import ServedValues, _oldest_first
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
