"""The contracts' JSON Schema files and their examples, shared by the schema tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from schemas.contracts import CONTRACTS

SCHEMA_FILES = resources.files("schemas")


def json_schema(contract: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_FILES / f"{contract}.schema.json").read_text())
    return schema


def _registry() -> Registry:
    """Every contract's schema under its ``$id``: a batch's schema refers to its record's."""
    schemas = [json_schema(contract) for contract in CONTRACTS]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )


def validator(contract: str) -> jsonschema.protocols.Validator:
    schema = json_schema(contract)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


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
