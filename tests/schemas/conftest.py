"""The contracts' JSON Schema files and their examples, shared by the schema tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from schemas.contracts import CONTRACTS

SCHEMA_FILES = resources.files("schemas")


def json_schema(contract: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_FILES / f"{contract}.schema.json").read_text())
    return schema


def validator(contract: str) -> jsonschema.protocols.Validator:
    schema = json_schema(contract)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def examples(contract: str) -> dict[str, bytes]:
    """The example files of ``contract``, by file name, as raw bytes."""
    found = {
        entry.name: entry.read_bytes()
        for entry in SCHEMA_FILES.iterdir()
        if entry.name.startswith(f"{contract}.example") and entry.name.endswith(".json")
    }
    assert found, f"no example for {contract}"
    return found


ALL_EXAMPLES = [(name, file) for name in CONTRACTS for file in sorted(examples(name))]
