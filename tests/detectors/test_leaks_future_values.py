"""FutureValues: a served value written after the prediction is critical at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import FutureValues
from detectors.leaks import ServedFeature
from tests.detectors.batching import same_state, state_difference
from tests.detectors.cases_leaks import writes_and_predictions


def test_silent_on_values_written_before_the_prediction() -> None:
    detector = FutureValues()
    for event in writes_and_predictions(np.random.default_rng(0), 10_000):
        detector.update(event)
    assert not detector.critical
    assert detector.future_values == 0
    assert sum(c.served for c in detector.counts.values()) > 4_000
    # Feature writes are not served values: the detector counts them as rejected.
    assert detector.rejected > 4_000


def test_the_first_future_value_is_critical_and_stays_so() -> None:
    events = [
        ServedFeature("u", "plan", 1.0, 100.0, 200.0),
        ServedFeature("u", "plan", 1.0, 200.0, 200.0),
        ServedFeature("u", "age", 30, 250.0, 200.0),
        ServedFeature("u", "plan", 1.0, 100.0, 300.0),
    ]
    detector = FutureValues()
    critical = []
    for event in events:
        detector.update(event)
        critical.append(detector.critical)
    assert critical == [False, False, True, True]
    assert detector.max_skew == 50.0
    assert detector.last_future_value == events[2]
    assert detector.counts["plan"].future == 0


def test_skew_within_tolerance_is_not_counted() -> None:
    detector = FutureValues(skew_tolerance=100.0)
    detector.update(ServedFeature("u", "plan", 1.0, 300.0, 200.0))
    detector.update(ServedFeature("u", "plan", 1.0, 301.0, 200.0))
    assert detector.future_values == 1


def test_features_beyond_the_limit_still_count_in_the_total() -> None:
    detector = FutureValues(max_features=1)
    detector.update(ServedFeature("u", "a", 1.0, 100.0, 200.0))
    detector.update(ServedFeature("u", "b", 1.0, 300.0, 200.0))
    assert detector.future_values == 1
    assert list(detector.counts) == ["a"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"skew_tolerance": -1.0}, "skew_tolerance"), ({"max_features": 0}, "max_features")],
)
def test_constructor_names_the_bad_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FutureValues(**kwargs)


@pytest.mark.parametrize(
    ("entities", "features", "rejected"),
    [
        # Equal ids of other types are checked each: 1.0 and True are no entity ids, 1 is.
        ([1, 1, 1.0, True, "u"], ["a", "a", "a", "a", "a"], 2),
        (["u", "u", "u", "u", "u"], ["a", "b", "", None, 3], 3),
        # Unhashable ids go row by row.
        (["u", ["u"], "u", "u", "u"], ["a", "a", "a", "a", "a"], 1),
        ([7, 8, 9, "u", "u"], ["a", "b", "a", "b", "a"], 0),
    ],
)
def test_a_batch_of_columns_checks_ids_as_one_by_one(
    entities: list[object], features: list[object], rejected: int
) -> None:
    # Columns of 20 rows (past the small batches that go one by one): the ids above, four
    # times over, each row from the future.
    entities, features = entities * 4, features * 4
    written, made = np.full(20, 2_000, np.int64), np.full(20, 1_000, np.int64)
    batched, single = FutureValues(), FutureValues()
    batched.update_many(entities, features, list(range(20)), written, made)
    for row in zip(entities, features, range(20), written.tolist(), made.tolist(), strict=True):
        single.update(ServedFeature(*row))  # type: ignore[arg-type]
    assert batched.rejected == single.rejected == 4 * rejected
    assert batched.future_values == single.future_values == 20 - 4 * rejected
    assert batched.counts == single.counts


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.sampled_from(["a", "b", "", "c", "d"]), min_size=1, max_size=4, unique=True),
    st.sampled_from([0.0, 50.0]),
    st.sampled_from([1, 2, 1_000]),
    st.booleans(),
    st.data(),
)
def test_a_grid_counts_as_its_rows_in_update_many(
    n: int,
    features: list[str],
    tolerance: float,
    max_features: int,
    in_ms: bool,
    data: st.DataObject,
) -> None:
    # Entities, features and timestamps that are well-formed or not, from the future or
    # not; a few features beyond max_features; grids below and above SMALL_BATCH rows;
    # timestamps as floats or as the int64 milliseconds the watch passes (an int tolerance
    # then too).
    entities = data.draw(
        st.lists(st.sampled_from(["u1", "u2", 7, 1.0, True]), min_size=n, max_size=n)
    )
    stamps = st.sampled_from([0.0, 40.0, 60.0, 100.0, math.inf, math.nan])
    written = np.array(
        data.draw(st.lists(stamps, min_size=n * len(features), max_size=n * len(features)))
    )
    written = written.reshape(n, len(features))
    made = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 10.0, math.nan]), min_size=n, max_size=n))
    )
    if in_ms:
        written = np.where(np.isfinite(written), written, -1.0).astype(np.int64)
        made = np.where(np.isfinite(made), made, 70.0).astype(np.int64)
        tolerance = int(tolerance)
    values = np.arange(n * len(features)).reshape(n, len(features)).tolist()
    grid = FutureValues(skew_tolerance=tolerance, max_features=max_features)
    rows = FutureValues(skew_tolerance=tolerance, max_features=max_features)
    for detector in (grid, rows):
        # A batch before: counts and a last value from the future to carry on from.
        detector.update_many(
            ["u0"] * 20, ["z"] * 20, list(range(20)), np.full(20, 99.0), np.zeros(20)
        )
    grid.update_grid(entities, features, written, made, lambda i, j: values[i][j])
    rows.update_many(
        [e for e in entities for _ in features],
        features * n,
        [v for row in values for v in row],
        written.ravel(),
        made.repeat(len(features)),
    )
    assert grid.future_indices.tolist() == rows.future_indices.tolist()
    assert same_state(grid, rows), state_difference(grid, rows)


def test_a_grid_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="2 x 1 written_at"):
        FutureValues().update_grid(["u", "v"], ["a"], np.zeros((1, 2)), np.zeros(2), print)


def test_a_grid_gives_the_last_slot_to_the_feature_served_first() -> None:
    # Feature "a" is first in the grid but its first rows are not finite, so "b", valid
    # from the first row, is the first counted and takes the only slot, as row by row.
    written = np.zeros((9, 2))
    written[:3, 0] = math.nan
    made = np.ones(9)
    grid = FutureValues(max_features=1)
    grid.update_grid(["u"] * 9, ["a", "b"], written, made, print)
    rows = FutureValues(max_features=1)
    rows.update_many(["u"] * 18, ["a", "b"] * 9, [0] * 18, written.ravel(), made.repeat(2))
    assert list(grid.counts) == list(rows.counts) == ["b"]
