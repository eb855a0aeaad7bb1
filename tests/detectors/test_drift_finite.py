"""The drift detectors' conversion of a batch to floats, value by value or at once."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detectors.drift._window import finite_float, finite_floats

FLOATS = st.floats(allow_nan=True, allow_infinity=True)
ANY = st.one_of(FLOATS, st.none(), st.integers(-(2**1100), 2**1100), st.text(max_size=3))


def one_by_one(values: list[Any]) -> list[float]:
    return [math.nan if (x := finite_float(value)) is None else x for value in values]


@given(st.one_of(st.lists(FLOATS, max_size=40), st.lists(ANY, max_size=40)))
def test_a_list_converts_as_finite_float_converts_each_value(values: list[Any]) -> None:
    array = finite_floats(values)
    assert array.dtype == np.float64
    expected = np.array(one_by_one(values), dtype=np.float64)
    assert np.array_equal(array, expected, equal_nan=True)
    # Signs of zeros kept, infinities gone.
    assert np.signbit(array).tolist() == np.signbit(expected).tolist()


def test_plain_floats_lose_their_infinities_and_keep_their_numbers() -> None:
    values = [1.5, math.inf, -0.0, math.nan, -math.inf, -2.0]
    assert np.array_equal(
        finite_floats(values), [1.5, math.nan, -0.0, math.nan, math.nan, -2.0], equal_nan=True
    )
