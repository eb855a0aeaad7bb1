"""Batch messages: a record per outcome, a bad record alone, and never an exception."""

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
from schemas.contracts import CONTRACTS, FeatureWrite, GroundTruth, Prediction, Record
from tests.schemas.conftest import examples
from tests.schemas.test_codec_properties import JSON_VALUES

RECORD_NAMES: dict[str, type[Record]] = {
    "prediction": Prediction,
    "ground_truth": GroundTruth,
    "feature_write": FeatureWrite,
}
RECORD_CONTRACTS = st.sampled_from(sorted(RECORD_NAMES))


def _examples(contract: str) -> list[dict[str, Any]]:
    """The single-record examples of ``contract``, as dicts."""
    return [json.loads(raw) for raw in examples(contract).values()]


def _records(contract: str, n: int, owner: str) -> list[dict[str, Any]]:
    """``n`` valid records of one owner, told apart by a timestamp."""
    field = BATCHES[RECORD_NAMES[contract]].owner
    stamp = {"prediction": "predicted_at", "ground_truth": "label_at"}.get(contract, "written_at")
    found = _examples(contract)
    return [{**found[i % len(found)], field: owner, stamp: 1_795_000_000_000 + i} for i in range(n)]


def _batch(contract: str, owner: str, records: list[Any]) -> bytes:
    field = BATCHES[RECORD_NAMES[contract]].owner
    return json.dumps({"schema_version": 1, field: owner, "records": records}).encode()


# Each makes any record unusable, in a different part of the decoder: the record is not an
# object, its version is unknown, a required field is missing, a value has the wrong type,
# it belongs to another model or writer, or it breaks a rule across fields.
def _break(contract: str, record: dict[str, Any], how: int) -> Any:
    owner = BATCHES[RECORD_NAMES[contract]].owner
    required = [f.name for f in msgspec.structs.fields(RECORD_NAMES[contract]) if f.required]
    if how == 0:
        return [record]
    if how == 1:
        return {**record, "schema_version": 2}
    if how == 2:
        return {k: v for k, v in record.items() if k != required[-1]}
    if how == 3:
        return {**record, required[-1]: {"not": "this"}}
    if how == 4:
        return {**record, owner: record[owner] + "-other"}
    return {**record, "request_id": None, "entity_id": None} if contract == "ground_truth" else 7


BREAKS = 6


@settings(max_examples=200, deadline=None)
@given(
    contract=RECORD_CONTRACTS,
    n=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_a_batch_of_n_with_k_bad_records_yields_n_minus_k_records_and_k_errors_in_place(
    contract: str, n: int, data: st.DataObject
) -> None:
    records = _records(contract, n, "owner-1")
    bad = data.draw(st.sets(st.integers(min_value=0, max_value=n - 1)))
    sent = [
        _break(contract, record, data.draw(st.integers(0, BREAKS - 1))) if i in bad else record
        for i, record in enumerate(records)
    ]
    outcomes = decode_batch(RECORD_NAMES[contract], _batch(contract, "owner-1", sent))
    assert len(outcomes) == n
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, DecodeError)}
    assert set(errors) == bad
    assert all(error.index == i and error.field and error.reason for i, error in errors.items())
    for i, outcome in enumerate(outcomes):
        if i not in bad:
            assert outcome == decode(RECORD_NAMES[contract], json.dumps(records[i]).encode())


@settings(deadline=None)
@given(contract=RECORD_CONTRACTS, raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(contract: str, raw: bytes) -> None:
    assert all(isinstance(outcome, DecodeError) for outcome in _checked(contract, raw))


@settings(max_examples=300, deadline=None)
@given(
    contract=RECORD_CONTRACTS,
    header=st.dictionaries(
        st.sampled_from(["schema_version", "model_id", "source", "records"]), JSON_VALUES
    ),
    records=st.lists(JSON_VALUES, max_size=5),
    as_batch=st.booleans(),
)
def test_arbitrary_json_and_batches_of_anything_never_raise(
    contract: str, header: dict[str, Any], records: list[Any], as_batch: bool
) -> None:
    message = {**header, "records": records} if as_batch else header
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
    raw = bytearray(_batch(contract, "owner-1", _records(contract, n, "owner-1")))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] ^= flip
    _checked(contract, bytes(raw[:cut]))
    _checked(contract, bytes(raw))


def _checked(contract: str, raw: bytes | None) -> list[Record | DecodeError]:
    """``decode_batch``'s outcomes, after checking the shape every outcome list has."""
    outcomes = decode_batch(RECORD_NAMES[contract], raw)
    assert outcomes
    errors = [o for o in outcomes if isinstance(o, DecodeError)]
    assert all(e.field and e.reason for e in errors)
    if any(e.index is None for e in errors):
        # The message itself is at fault: it is one outcome.
        assert len(outcomes) == 1
    else:
        assert [e.index for e in errors] == [
            i for i, o in enumerate(outcomes) if isinstance(o, DecodeError)
        ]
    return outcomes


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_a_single_record_message_is_a_batch_of_one(contract: str) -> None:
    kind = RECORD_NAMES[contract]
    for raw in examples(contract).values():
        assert decode_batch(kind, raw) == [decode(kind, raw)]
        broken = json.dumps(_break(contract, json.loads(raw), 3)).encode()
        (error,) = decode_batch(kind, broken)
        assert error == decode(kind, broken) and isinstance(error, DecodeError)
        assert error.index is None
    assert decode_batch(kind, None) == [DecodeError(WHOLE_MESSAGE, "no value (a tombstone)")]


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_the_batch_example_decodes_to_its_records(contract: str) -> None:
    kind, batch = RECORD_NAMES[contract], BATCHES[RECORD_NAMES[contract]].batch
    (raw,) = examples(f"{contract}_batch").values()
    decoded = decode(batch, raw)
    assert not isinstance(decoded, DecodeError)
    assert decode_batch(kind, raw) == decoded.records
    assert len(decoded.records) > 1


def test_a_single_record_that_mentions_records_is_not_taken_for_a_batch() -> None:
    message = json.loads(examples("prediction")["prediction.example.json"])
    message["features"]["records"] = {"value": "records", "written_at": 1}
    raw = json.dumps(message).encode()
    assert b'"records"' in raw
    (record,) = decode_batch(Prediction, raw)
    assert isinstance(record, Prediction) and record.features["records"].value == "records"


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"model_id": ""}, "model_id"),
        ({"records": []}, "records"),
        ({"records": {"0": {}}}, "records"),
    ],
)
def test_an_unusable_envelope_is_one_error_without_an_index(
    envelope: dict[str, Any], field: str
) -> None:
    message = {"schema_version": 1, "model_id": "m", "records": [{}], **envelope}
    (error,) = decode_batch(GroundTruth, json.dumps(message).encode())
    assert isinstance(error, DecodeError)
    assert (error.field, error.index) == (field, None)


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
def test_encode_batch_joins_encoded_records_into_a_batch_that_validates(contract: str) -> None:
    kind = RECORD_NAMES[contract]
    owner = BATCHES[kind].owner
    records = [decode(kind, json.dumps(r).encode()) for r in _records(contract, 3, "owner-1")]
    raw = encode_batch(kind, "owner-1", [encode(r) for r in records])
    assert decode_batch(kind, raw) == records
    assert json.loads(raw)[owner] == "owner-1"
    assert isinstance(decode(BATCHES[kind].batch, raw), CONTRACTS[f"{contract}_batch"])


def test_dead_letters_of_a_batch_carry_each_bad_record_and_its_index() -> None:
    records = _records("prediction", 6, "recs")
    sent = [_break("prediction", r, i) if i in (1, 4) else r for i, r in enumerate(records)]
    raw = _batch("prediction", "recs", sent)
    errors = [o for o in decode_batch(Prediction, raw) if isinstance(o, DecodeError)]
    letters = dead_letters(
        errors, raw=raw, source_topic="t", partition=3, offset=9, seen_at=1, key=b"recs"
    )
    assert [letter.error for letter in letters] == errors
    assert [json.loads(letter.raw or b"") for letter in letters] == [sent[1], sent[4]]
    # A record's own bytes, decoded alone, fail for the same reason.
    again = decode(Prediction, letters[0].raw)
    assert isinstance(again, DecodeError)
    assert (again.field, again.reason) == (errors[0].field, errors[0].reason)
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


@pytest.mark.parametrize("contract", sorted(RECORD_NAMES))
@pytest.mark.parametrize("layout", ["records first", "indented", "trailing newline"])
def test_a_batch_reads_the_same_in_any_field_order_and_whitespace(
    contract: str, layout: str
) -> None:
    kind = RECORD_NAMES[contract]
    (raw,) = examples(f"{contract}_batch").values()
    message = json.loads(raw)
    message["records"][-1] = _break(contract, message["records"][-1], 3)
    compact = json.dumps(message, separators=(",", ":")).encode()
    if layout == "records first":
        other = json.dumps(dict(reversed(message.items()))).encode()
    elif layout == "indented":
        other = json.dumps(message, indent=2).encode()
    else:
        other = compact + b"\n"
    expected = decode_batch(kind, compact)
    assert isinstance(expected[-1], DecodeError) and expected[-1].index == len(expected) - 1
    assert decode_batch(kind, other) == expected
