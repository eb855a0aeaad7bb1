"""Batch messages: one outcome per record, a bad record alone, and never an exception."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import (
    BATCHES,
    WHOLE_MESSAGE,
    DecodeError,
    dead_letters,
    decode,
    decode_batch,
    encode,
    encode_batch,
)
from schemas.contracts import FeatureWrite, GroundTruth, Prediction, Record
from tests.schemas.conftest import examples
from tests.schemas.test_codec_properties import JSON_VALUES

RECORD_NAMES: dict[str, type[Record]] = {
    "prediction": Prediction,
    "ground_truth": GroundTruth,
    "feature_write": FeatureWrite,
}
RECORD_CONTRACTS = st.sampled_from(sorted(RECORD_NAMES))
STAMP = {"prediction": "predicted_at", "ground_truth": "label_at", "feature_write": "written_at"}


def _records(contract: str, n: int, owner: str = "owner-1") -> list[dict[str, Any]]:
    """``n`` valid records of one owner, from the contract's examples, told apart by time."""
    found = [json.loads(raw) for raw in examples(contract).values()]
    field = BATCHES[RECORD_NAMES[contract]].owner
    return [
        {**found[i % len(found)], field: owner, STAMP[contract]: 1_795_000_000_000 + i}
        for i in range(n)
    ]


def _decoded_records(contract: str, n: int) -> list[Any]:
    records = [
        decode(RECORD_NAMES[contract], json.dumps(r).encode()) for r in _records(contract, n)
    ]
    assert not any(isinstance(record, DecodeError) for record in records)
    return records


def _batch(contract: str, records: list[dict[str, Any]], owner: str = "owner-1") -> bytes:
    """``records`` as one batch message: a column per field, an optional one left out
    when every record's value is null (as ``encode_batch`` does)."""
    spec = BATCHES[RECORD_NAMES[contract]]
    columns = {name: [record.get(name) for record in records] for name in spec.columns}
    for name in spec.optional:
        if all(value is None for value in columns[name]):
            del columns[name]
    return json.dumps({"schema_version": 1, spec.owner: owner, **columns}).encode()


def _break(contract: str, record: dict[str, Any], how: int) -> dict[str, Any]:
    """``record`` with one value that makes it unusable, in a different way for each ``how``:
    a wrong type, a value out of range, a nested value missing a field, a rule across
    fields (ground truth) or a value that is not a scalar (feature write)."""
    first = BATCHES[RECORD_NAMES[contract]].columns[0]
    if how == 0:
        return {**record, STAMP[contract]: "late"}
    if how == 1:
        return {**record, STAMP[contract]: -1}
    if how == 2:
        return {**record, first: {"not": "this"}}
    if contract == "prediction":
        return {**record, "features": {"f": {"value": 1}}}
    if contract == "ground_truth":
        return {**record, "request_id": None, "entity_id": None}
    return {**record, "value": [1]}


BREAKS = 4


@settings(max_examples=200, deadline=None)
@given(contract=RECORD_CONTRACTS, n=st.integers(min_value=1, max_value=40), data=st.data())
def test_a_batch_of_n_with_k_bad_records_yields_n_minus_k_records_and_k_errors_in_place(
    contract: str, n: int, data: st.DataObject
) -> None:
    kind = RECORD_NAMES[contract]
    records = _records(contract, n)
    bad = data.draw(st.sets(st.integers(min_value=0, max_value=n - 1)))
    sent = [
        _break(contract, record, data.draw(st.integers(0, BREAKS - 1))) if i in bad else record
        for i, record in enumerate(records)
    ]
    outcomes = decode_batch(kind, _batch(contract, sent))
    assert len(outcomes) == n
    assert {i for i, o in enumerate(outcomes) if isinstance(o, DecodeError)} == bad
    for i, outcome in enumerate(outcomes):
        alone = decode(kind, json.dumps(sent[i]).encode())
        if i in bad:
            # The field and the reason the record would have alone, and its index.
            assert isinstance(alone, DecodeError)
            assert outcome == DecodeError(alone.field, alone.reason, i)
        else:
            assert outcome == alone


def _checked(contract: str, raw: bytes | None) -> list[Record | DecodeError]:
    """``decode_batch``'s outcomes, after checking the shape every outcome list has."""
    kind = RECORD_NAMES[contract]
    outcomes = decode_batch(kind, raw)
    assert outcomes
    errors = [o for o in outcomes if isinstance(o, DecodeError)]
    for record in outcomes:
        if not isinstance(record, DecodeError):
            # A record is only ever a valid one: it survives a round trip as a single.
            assert decode(kind, encode(record)) == record
    assert all(e.field and e.reason for e in errors)
    if any(e.index is None for e in errors):
        # The message itself is at fault: it is one outcome.
        assert len(outcomes) == 1
    else:
        assert [e.index for e in errors] == [
            i for i, o in enumerate(outcomes) if isinstance(o, DecodeError)
        ]
    return outcomes


@settings(deadline=None)
@given(contract=RECORD_CONTRACTS, raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(contract: str, raw: bytes) -> None:
    assert all(isinstance(outcome, DecodeError) for outcome in _checked(contract, raw))


@settings(max_examples=300, deadline=None)
@given(contract=RECORD_CONTRACTS, data=st.data())
def test_arbitrary_json_and_batches_of_anything_never_raise(
    contract: str, data: st.DataObject
) -> None:
    spec = BATCHES[RECORD_NAMES[contract]]
    names = st.sampled_from(["schema_version", spec.owner, *spec.columns])
    message = data.draw(
        st.dictionaries(names, JSON_VALUES | st.lists(JSON_VALUES, max_size=4))
        | st.dictionaries(names, st.lists(JSON_VALUES, min_size=2, max_size=2))
        | JSON_VALUES
    )
    _checked(contract, json.dumps(message).encode())


@settings(deadline=None)
@given(
    contract=RECORD_CONTRACTS,
    n=st.integers(min_value=1, max_value=5),
    cut=st.integers(min_value=0, max_value=3000),
    flip=st.integers(min_value=1, max_value=255),
    data=st.data(),
)
def test_truncated_and_bit_flipped_batches_never_raise(
    contract: str, n: int, cut: int, flip: int, data: st.DataObject
) -> None:
    raw = bytearray(_batch(contract, _records(contract, n)))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] ^= flip
    _checked(contract, bytes(raw[:cut]))
    _checked(contract, bytes(raw))


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_a_single_record_message_is_a_batch_of_one(contract: str) -> None:
    kind = RECORD_NAMES[contract]
    for raw in examples(contract).values():
        assert decode_batch(kind, raw) == [decode(kind, raw)]
        for how in range(BREAKS):
            broken = json.dumps(_break(contract, json.loads(raw), how)).encode()
            (error,) = decode_batch(kind, broken)
            assert error == decode(kind, broken) and isinstance(error, DecodeError)
            assert error.index is None
    assert decode_batch(kind, None) == [DecodeError(WHOLE_MESSAGE, "no value (a tombstone)")]


def test_a_single_record_ending_in_an_unknown_array_is_not_taken_for_a_batch() -> None:
    message = {**json.loads(examples("prediction")["prediction.example.json"]), "tags": [1]}
    raw = json.dumps(message, separators=(",", ":")).encode()
    assert raw.endswith(b"]}")
    assert decode_batch(Prediction, raw) == [decode(Prediction, raw)]
    assert isinstance(decode(Prediction, raw), Prediction)


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_the_batch_example_decodes_to_its_records(contract: str) -> None:
    kind, spec = RECORD_NAMES[contract], BATCHES[RECORD_NAMES[contract]]
    for raw in examples(f"{contract}_batch").values():
        records = decode_batch(kind, raw)
        assert len(records) > 1 and all(isinstance(record, kind) for record in records)
        batch = json.loads(raw)
        for i, record in enumerate(records):
            alone = {name: batch[name][i] for name in spec.columns if batch.get(name) is not None}
            shared = {"schema_version": 1, spec.owner: batch[spec.owner]}
            assert record == decode(kind, json.dumps({**shared, **alone}).encode())


def test_an_optional_column_sent_as_null_is_null_for_every_record() -> None:
    message = {"schema_version": 1, "model_id": "m", "label": [1, 0], "label_at": [5, "x"]}
    raw = json.dumps({**message, "request_id": None, "entity_id": ["u", "v"]}).encode()
    first, second = decode_batch(GroundTruth, raw)
    assert isinstance(first, GroundTruth) and (first.request_id, first.entity_id) == (None, "u")
    assert second == DecodeError("label_at", "Expected `int`, got `str`", 1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"model_id": ""}, "model_id"),
        ({"label": []}, "label"),
        # Not every column is an array: not a batch, so the error is the single record's.
        ({"label": 1}, "label_at"),
        ({"label_at": [5, 6, 7]}, "label_at"),
        ({"entity_id": ["u"]}, "entity_id"),
        ({"label_at": None}, "label_at"),
    ],
)
def test_an_unusable_envelope_is_one_error_without_an_index(
    change: dict[str, Any], field: str
) -> None:
    message = {"schema_version": 1, "model_id": "m", "label": [1, 0], "label_at": [5, 6]}
    message["entity_id"] = ["u", "v"]
    (error,) = decode_batch(GroundTruth, json.dumps({**message, **change}).encode())
    assert isinstance(error, DecodeError)
    assert (error.field, error.index) == (field, None)


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
@pytest.mark.parametrize("layout", ["reversed", "indented", "trailing newline"])
def test_a_batch_reads_the_same_in_any_field_order_and_whitespace(
    contract: str, layout: str
) -> None:
    kind = RECORD_NAMES[contract]
    sent = _records(contract, 4)
    sent[2] = _break(contract, sent[2], 0)
    message = json.loads(_batch(contract, sent))
    compact = json.dumps(message, separators=(",", ":")).encode()
    if layout == "reversed":
        other = json.dumps(dict(reversed(message.items()))).encode()
    elif layout == "indented":
        other = json.dumps(message, indent=2).encode()
    else:
        other = compact + b"\n"
    expected = decode_batch(kind, compact)
    assert [isinstance(o, DecodeError) for o in expected] == [False, False, True, False]
    assert decode_batch(kind, other) == expected


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_encode_batch_gives_a_batch_of_the_same_records(contract: str) -> None:
    kind = RECORD_NAMES[contract]
    records = _decoded_records(contract, 5)
    raw = encode_batch(kind, "owner-1", records)
    assert decode_batch(kind, raw) == records
    assert decode(BATCHES[kind].batch, raw) == decode(
        BATCHES[kind].batch, _batch(contract, _records(contract, 5))
    )
    with pytest.raises(ValueError, match="every record of a batch must have"):
        encode_batch(kind, "owner-2", records)


def test_a_column_every_record_leaves_null_is_left_out() -> None:
    records = _decoded_records("ground_truth", 4)
    by_entity = [msgspec.structs.replace(r, request_id=None, entity_id="u") for r in records]
    raw = encode_batch(GroundTruth, "owner-1", by_entity)
    assert b"request_id" not in raw
    assert decode_batch(GroundTruth, raw) == by_entity


def test_dead_letters_of_a_batch_carry_each_bad_record_alone_and_its_index() -> None:
    sent = _records("prediction", 6, "recs")
    sent[1], sent[4] = _break("prediction", sent[1], 0), _break("prediction", sent[4], 3)
    raw = _batch("prediction", sent, "recs")
    errors = [o for o in decode_batch(Prediction, raw) if isinstance(o, DecodeError)]
    letters = dead_letters(
        errors, raw=raw, source_topic="t", partition=3, offset=9, seen_at=1, key=b"recs"
    )
    assert [letter.error for letter in letters] == errors
    # A record that left out an optional field the batch has a column for was sent as null.
    nulls = {name: None for name in BATCHES[Prediction].optional if name in json.loads(raw)}
    assert [json.loads(letter.raw or b"") for letter in letters] == [
        {**nulls, **sent[1]},
        {**nulls, **sent[4]},
    ]
    for letter in letters:
        # The record, decoded alone, fails for the same reason.
        alone = decode(Prediction, letter.raw)
        assert isinstance(alone, DecodeError)
        assert (alone.field, alone.reason) == (letter.error.field, letter.error.reason)
    # Outside a batch the letter carries the message, and its JSON is as it was before
    # batches: no index.
    (single,) = dead_letters(
        [DecodeError(WHOLE_MESSAGE, "bad")],
        raw=b"{",
        source_topic="t",
        partition=0,
        offset=1,
        seen_at=1,
    )
    assert single.raw == b"{" and b"index" not in encode(single)


@settings(max_examples=300, deadline=None)
@given(
    contract=RECORD_CONTRACTS,
    n=st.integers(min_value=1, max_value=4),
    value=JSON_VALUES | st.lists(JSON_VALUES, max_size=5),
    data=st.data(),
)
def test_a_batch_with_any_field_replaced_or_dropped_never_raises_nor_yields_a_bad_record(
    contract: str, n: int, value: Any, data: st.DataObject
) -> None:
    message = json.loads(_batch(contract, _records(contract, n)))
    field = data.draw(st.sampled_from(sorted(message)))
    if data.draw(st.booleans()):
        del message[field]
    else:
        message[field] = value
    _checked(contract, json.dumps(message).encode())
