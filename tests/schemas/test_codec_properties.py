"""Property-based: no bytes make a decoder raise, and every error names a field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import WHOLE_MESSAGE, DecodeError, decode
from schemas.contracts import CONTRACTS
from tests.schemas.conftest import ALL_EXAMPLES, examples

CONTRACT_TYPES = st.sampled_from(sorted(CONTRACTS))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def _assert_decodes_or_names_field(contract: str, raw: bytes) -> DecodeError | msgspec.Struct:
    result = decode(CONTRACTS[contract], raw)
    if isinstance(result, DecodeError):
        assert result.field, result
        assert result.reason, result
        fields = {field.name for field in msgspec.structs.fields(CONTRACTS[contract])}
        # The first step of the path is a top-level field of the contract, or the message.
        head = result.field.split(".", 1)[0].split("[", 1)[0]
        assert head in fields | {WHOLE_MESSAGE}, result
    return result


# No deadline: the machine running the suite may be busy; the properties are what matter.
@settings(deadline=None)
@given(contract=CONTRACT_TYPES, raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(contract: str, raw: bytes) -> None:
    result = _assert_decodes_or_names_field(contract, raw)
    assert isinstance(result, DecodeError)


@settings(deadline=None)
@given(contract=CONTRACT_TYPES, value=JSON_VALUES)
def test_arbitrary_json_never_raises(contract: str, value: Any) -> None:
    _assert_decodes_or_names_field(contract, json.dumps(value).encode())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if new is _DELETE and not rest:
            del copy[head]
        else:
            copy[head] = _replaced(value[head], rest, new)
        return copy
    copy_list = list(value)
    copy_list[head] = _replaced(value[head], rest, new)
    return copy_list


_DELETE = object()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), example=st.sampled_from(ALL_EXAMPLES))
def test_mutated_valid_messages_decode_or_name_the_field(data: st.DataObject, example: Any) -> None:
    contract, file = example
    message = json.loads(examples(contract)[file])
    path = data.draw(st.sampled_from(_paths(message)))
    new = data.draw(JSON_VALUES | st.just(_DELETE))
    if new is _DELETE and isinstance(path[-1], int):
        new = None
    raw = json.dumps(_replaced(message, path, new)).encode()
    result = _assert_decodes_or_names_field(contract, raw)
    if isinstance(result, DecodeError) and result.field != WHOLE_MESSAGE:
        # The error points at the mutated field or the object that contains it, or (for a
        # rule across fields, like ground truth's request_id-or-entity_id) names it.
        top = path[0]
        named = result.field.split(".", 1)[0].split("[", 1)[0]
        assert named == top or top in result.reason, (path, result)


@settings(deadline=None)
@given(contract=CONTRACT_TYPES, cut=st.integers(min_value=0, max_value=400), data=st.data())
def test_truncated_and_bit_flipped_examples_never_raise(
    contract: str, cut: int, data: st.DataObject
) -> None:
    raw = bytearray(data.draw(st.sampled_from(sorted(examples(contract).values()))))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    _assert_decodes_or_names_field(contract, bytes(raw[:cut]))
    _assert_decodes_or_names_field(contract, bytes(raw))


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
@pytest.mark.parametrize("nesting", [b'{"extra":', b"["], ids=["objects", "arrays"])
def test_deeply_nested_json_is_a_decode_error(contract: str, nesting: bytes) -> None:
    # An unknown field holding 2,000 levels (a few kB) passes the interpreter's recursion
    # limit inside msgspec, which skips unknown fields by descending into them.
    raw = b'{"extra":' + nesting * 2_000
    result = decode(CONTRACTS[contract], raw)
    assert result == DecodeError(WHOLE_MESSAGE, "JSON is nested too deeply")
