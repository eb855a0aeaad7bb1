"""The InfluxDB sink's line protocol is what influxdb-client writes for the same points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point as ClientPoint

from streams.sinks.influx import Point, line_protocol

# Names with every character the protocol escapes, and some it does not.
_TEXT = st.text(alphabet=st.sampled_from('ab ,=\\"\n\t\r#é_1'), max_size=6)
_FIELD_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**31), 2**31).map(np.int64),
    st.booleans(),
    _TEXT,
    st.none(),
)
_POINTS = st.builds(
    Point,
    st.text(alphabet=st.sampled_from("ab ,=\n_"), min_size=1, max_size=6),
    st.dictionaries(_TEXT, st.one_of(_TEXT, st.none()), max_size=4),
    st.dictionaries(_TEXT, _FIELD_VALUES, max_size=5),
    st.integers(0, 2**53 - 1),
)


def _client_lines(points: list[Point]) -> bytes:
    """influxdb-client's own: each point as a dictionary, nanoseconds, blank lines left out."""
    lines = [
        ClientPoint.from_dict(
            {
                "measurement": p.measurement,
                "tags": p.tags,
                "fields": p.fields,
                "time": p.time_ms * 1_000_000,
            }
        ).to_line_protocol()
        for p in points
    ]
    return "\n".join(line for line in lines if line).encode()


@settings(max_examples=400, deadline=None)
@given(st.lists(_POINTS, max_size=5))
def test_line_protocol_is_the_clients(points: list[Point]) -> None:
    assert line_protocol(points) == _client_lines(points)


def test_whole_floats_and_skipped_fields() -> None:
    kept = Point("drift", {"model": "m", "feature": ""}, {"a": 2.0, "b": -0.0, "c": 1e20}, 5)
    dropped = Point("drift", {"model": "m"}, {"a": math.inf, "b": None}, 6)  # type: ignore[dict-item]
    assert line_protocol([kept, dropped]) == b"drift,model=m a=2,b=-0,c=1e+20 5000000"
    assert line_protocol([kept, dropped]) == _client_lines([kept, dropped])


def test_a_value_that_is_no_field_value_is_a_bug() -> None:
    with pytest.raises(ValueError, match="'a': a list is not a field value"):
        line_protocol([Point("drift", {"model": "m"}, {"a": [1]}, 0)])  # type: ignore[dict-item]


def test_tags_that_are_equal_keys_but_other_text_are_each_written_as_the_client_does() -> None:
    # 1, 1.0 and True are one dictionary key, written "1", "1.0" and "True"; a series kept
    # for one of them must not be written for another, nor a tag of no key fail.
    points = [
        Point("drift", {"model": value}, {"x": 1.0}, 1)  # type: ignore[dict-item]
        for value in (1, 1.0, True, np.float64(1.0), "1", ["m"])
    ]
    for ordered in (points, points[::-1]):
        assert line_protocol(ordered) == _client_lines(ordered)
