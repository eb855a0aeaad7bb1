"""Each contract's JSON Schema, its examples and its msgspec type agree."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from schemas.codec import DecodeError, decode, encode
from schemas.contracts import CONTRACTS, SCHEMA_VERSION
from tests.schemas.conftest import ALL_EXAMPLES, SCHEMA_FILES, examples, json_schema, validator


@pytest.mark.parametrize(("contract", "file"), ALL_EXAMPLES)
def test_example_validates_against_json_schema_and_decodes(contract: str, file: str) -> None:
    raw = examples(contract)[file]
    validator(contract).validate(json.loads(raw))
    record = decode(CONTRACTS[contract], raw)
    assert not isinstance(record, DecodeError), record
    assert record.schema_version == SCHEMA_VERSION
    # Re-encoding loses nothing the contract defines.
    assert decode(CONTRACTS[contract], encode(record)) == record


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_json_schema_and_type_name_the_same_fields(contract: str) -> None:
    schema = json_schema(contract)
    info = msgspec.inspect.type_info(CONTRACTS[contract])
    assert isinstance(info, msgspec.inspect.StructType)
    assert set(schema["properties"]) == {field.name for field in info.fields}
    assert set(schema["required"]) == {field.name for field in info.fields if field.required}
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert schema["title"] == CONTRACTS[contract].__name__


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_json_schema_id_names_its_file(contract: str) -> None:
    assert json_schema(contract)["$id"].endswith(f"/{contract}.schema.json")


def test_every_json_file_belongs_to_a_contract() -> None:
    names = [entry.name for entry in SCHEMA_FILES.iterdir() if entry.name.endswith(".json")]
    assert sorted(names) == sorted(
        [f"{contract}.schema.json" for contract in CONTRACTS]
        + [file for _, file in ALL_EXAMPLES]
        + ["control_command.vectors.json"]  # tests/schemas/test_signing_vectors.py
    )


MUTANT_VALUES: list[Any] = [None, "", "x", -1, 0, 1.5, True, [], {}, "A" * 300, 10**20]


def _mutants(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each top-level field dropped, and each replaced by each value of MUTANT_VALUES."""
    found = []
    for field in message:
        dropped = {key: value for key, value in message.items() if key != field}
        found.append((f"drop {field}", dropped))
        for value in MUTANT_VALUES:
            found.append((f"{field}={value!r:.20}", {**message, field: value}))
    return found


@pytest.mark.parametrize(("contract", "file"), ALL_EXAMPLES)
def test_json_schema_and_codec_agree_on_mutants(contract: str, file: str) -> None:
    """Differential check: the JSON Schema accepts a mutant iff the codec decodes it."""
    check = validator(contract)
    message = json.loads(examples(contract)[file])
    disagreements = []
    for label, mutant in _mutants(message):
        schema_ok = check.is_valid(mutant)
        decoded = decode(CONTRACTS[contract], json.dumps(mutant).encode())
        if schema_ok == isinstance(decoded, DecodeError):
            disagreements.append((label, schema_ok, decoded))
    assert disagreements == []
