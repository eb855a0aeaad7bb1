"""The event records and the checks that turn untrusted inputs into records or None."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.leaks import FeatureWrite, Label, ServedFeature
from detectors.leaks.events import (
    _entity_hash,
    all_finite,
    checked_label,
    checked_served,
    checked_write,
    entity_hash,
    entity_hashes,
    finite,
    is_null,
    label_columns,
    request_hash,
    request_hashes,
    write_columns,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (1.5, True),
        (np.float64(2.0), True),
        (np.int64(3), True),
        (math.nan, False),
        (math.inf, False),
        (True, False),
        (10**400, False),  # beyond the largest float
        (-(10**400), False),
        (Fraction(10**400), False),
        (Fraction(3, 2), True),
        ("1", False),
        (None, False),
    ],
)
def test_finite(value: object, expected: bool) -> None:
    assert finite(value) is expected


@pytest.mark.parametrize(
    ("value", "sentinels", "expected"),
    [
        (None, (), True),
        (math.nan, (), True),
        (0.0, (), False),
        (-1, (-1,), True),
        (-1.0, (-1,), True),
        ("1970-01-01", ("1970-01-01",), True),
        (1, (True,), False),
        (True, (1,), False),
        (False, (False,), True),
    ],
)
def test_is_null(value: object, sentinels: tuple, expected: bool) -> None:
    assert is_null(value, sentinels) is expected


def test_checks_return_well_formed_records_and_none_for_the_rest() -> None:
    write = FeatureWrite("u", "f", None, 1.0, 2.0)
    label = Label(7, True, 3)
    served = ServedFeature("u", "f", 1.0, 1.0, 2.0)
    assert checked_write(write) is write
    assert checked_label(label) is label
    assert checked_served(served) is served
    assert checked_write(label) is None
    assert checked_label(served) is None
    assert checked_served(write) is None
    assert checked_label(Label("u", 0.5, 1.0)) is None  # type: ignore[arg-type]
    assert checked_write(FeatureWrite(True, "f", 1.0, 1.0, 2.0)) is None
    assert checked_served(ServedFeature("u", "", 1.0, 1.0, 2.0)) is None
    assert checked_write(FeatureWrite("u", None, 1.0, 1.0, 2.0)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        ("u", "f", None, 1.0, 2.0),
        (7, "f", 1.0, 1, 2),
        (True, "f", 1.0, 1.0, 2.0),
        ("u", "", 1.0, 1.0, 2.0),
        ("u", None, 1.0, 1.0, 2.0),
        ("u", "f", 1.0, math.nan, 2.0),
        ("u", "f", 1.0, 1.0, math.inf),
        ("u", "f", 1.0, 1.0, "2"),
        ("u", "f", 1.0, 1, 10**400),
    ],
)
@pytest.mark.parametrize("n", [1, 2])
def test_a_write_is_well_formed_in_columns_as_checked_write_finds_it(fields: tuple, n: int) -> None:
    plain = FeatureWrite(*fields)
    columns = write_columns([plain] * n, [7] * n)
    assert columns.ok.tolist() == [checked_write(plain) is plain] * n
    assert (columns.event(n - 1) is None) is (checked_write(plain) is None)
    # One write alone, and among others: the same columns.
    alone, among = write_columns([plain], [7]), write_columns([plain, plain], [7, 7]).take(slice(1))
    for field in ("positions", "entities", "codes", "event_at", "written_at", "ok"):
        np.testing.assert_array_equal(getattr(alone, field), getattr(among, field), field)
        assert getattr(alone, field).dtype == getattr(among, field).dtype, field
    assert alone.entity_ids == among.entity_ids and alone.values == among.values
    assert alone.features == among.features
    if alone.ok[0]:
        assert alone.lags.tolist() == among.lags.tolist()


def test_entity_hashes_are_kept_apart_by_type_and_stable_across_processes() -> None:
    for _ in range(2):  # the second time from the kept hashes
        assert entity_hash("u1") == 4951862600420806941
        assert entity_hash(1) == 778860755400141486
        assert entity_hash(True) == 6485534553297259567


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70)), max_size=30),
    st.integers(0, 30),
)
def test_a_batch_of_entity_ids_hashes_as_each_one_does(
    entity_ids: list[str | int], kept: int
) -> None:
    # Some of them hashed before (kept), the others not; "1" and 1 apart.
    for entity_id in entity_ids[:kept]:
        entity_hash(entity_id)
    assert entity_hashes(entity_ids) == [_entity_hash(e) for e in entity_ids]


def test_request_hashes_are_stable_across_processes() -> None:
    # A lone surrogate too: ids are hashed as they were decoded, never refused.
    assert request_hashes(["r1", "\udc80x", ""]) == [
        6704545374999847652,
        877201223813390650,
        17427904159651085003,
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=30))
def test_a_batch_of_request_ids_hashes_as_each_one_does(request_ids: list[str]) -> None:
    assert request_hashes(iter(request_ids)) == [request_hash(r) for r in request_ids]


# Write times as they come: floats (infinite, NaN, and large enough that a sum overflows),
# ints up to beyond the floats, and what is not a time.
TIMES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.7e308, -1.7e308]),
    st.integers(-(2**1030), 2**1030),
    st.sampled_from([True, None, "0", Fraction(1, 3), np.float64(2.0), np.int64(3)]),
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.lists(st.floats()), st.lists(st.integers()), st.lists(TIMES)))
def test_all_finite_is_finite_of_each(values: list[object]) -> None:
    assert all_finite(values) is all(map(finite, values))
    assert all_finite(tuple(values)) is all(map(finite, values))


def _label_columns_one_by_one(others: list) -> list[tuple[int, float, int]]:
    """Each event's key, ``label_at`` and class as ``checked_label`` takes them one by one."""
    found = []
    for x in others:
        label = checked_label(x)
        if label is None:
            found.append((0, 0.0, -1))
        else:
            found.append((entity_hash(label.entity_id), float(label.label_at), int(label.label)))
    return found


# Mostly well-formed, so that a batch is often all labels of plain types but one part.
LABEL_PARTS = {
    "entity_id": st.sampled_from(["u1", "u2", 3, 2**70, "u5", 6, True, None, 1.5]),
    "label": st.sampled_from([0, 1, True, False, 0, 1, 1.0, 2, -1, 0.5, None]),
    "label_at": st.sampled_from(
        [0.0, 1.5, 7, 2**60 + 1, 1e300, 3.25, math.nan, math.inf, None, "7", 10**400]
    ),
}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(Label, **LABEL_PARTS),
            st.sampled_from([None, "label", FeatureWrite("u1", "f", 1.0, 0.0, 1.0)]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_batch_s_labels_read_at_once_are_read_one_by_one(others: list) -> None:
    keys, label_at, classes = label_columns(others)
    assert (keys.dtype, label_at.dtype, classes.dtype) == (np.uint64, np.float64, np.int8)
    found = list(zip(keys.tolist(), label_at.tolist(), classes.tolist(), strict=True))
    assert found == _label_columns_one_by_one(others)
