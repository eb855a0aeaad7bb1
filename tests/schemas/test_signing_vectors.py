"""The control-command test vectors for other languages, checked by failsoft's own verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from schemas.codec import DecodeError, decode_control_command
from schemas.contracts import ControlCommand
from schemas.signing import REJECT_REASONS, CommandGate, Keyring, canonical_bytes
from tests.schemas.conftest import SCHEMA_FILES, validator

VECTORS: dict[str, Any] = json.loads(
    (SCHEMA_FILES / "control_command.vectors.json").read_text(encoding="utf-8")
)
STEPS: list[dict[str, Any]] = VECTORS["steps"]
KEYS = {key_id: secret.encode() for key_id, secret in VECTORS["keys"].items()}


def node_verdicts() -> list[str]:
    """What one node does with each step's message, in order: decode, then admit."""
    gate = CommandGate(Keyring(KEYS))
    verdicts = []
    for step in STEPS:
        command = decode_control_command(json.dumps(step["message"]).encode())
        if isinstance(command, DecodeError):
            verdicts.append("malformed")
        else:
            verdicts.append(gate.admit(command, now_ms=step["now_ms"]) or "applied")
    return verdicts


def test_the_node_reaches_every_verdict_of_the_vectors() -> None:
    assert node_verdicts() == [step["verdict"] for step in STEPS]


def test_the_vectors_cover_every_verdict() -> None:
    verdicts = {step["verdict"] for step in STEPS}
    assert verdicts == {"applied", "malformed", *REJECT_REASONS}


@pytest.mark.parametrize("step", [s for s in STEPS if "canonical" in s], ids=lambda s: s["name"])
def test_canonical_text_is_what_failsoft_signs(step: dict[str, Any]) -> None:
    command = decode_control_command(json.dumps(step["message"]).encode())
    assert isinstance(command, ControlCommand)
    assert canonical_bytes(command) == step["canonical"].encode("utf-8")


@pytest.mark.parametrize("step", [s for s in STEPS if "canonical" in s], ids=lambda s: s["name"])
def test_a_signature_is_the_hmac_of_the_canonical_text_unless_forged(step: dict[str, Any]) -> None:
    """The vectors hold together with nothing but an HMAC library, as in another language."""
    message = step["message"]
    secret = KEYS.get(message["key_id"])
    matches = secret is not None and hmac.compare_digest(
        hmac.new(secret, step["canonical"].encode(), hashlib.sha256).hexdigest(),
        message["signature"],
    )
    assert matches == (step["verdict"] != "forged")


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s["name"])
def test_the_json_schema_rejects_exactly_the_malformed_messages(step: dict[str, Any]) -> None:
    valid = validator("control_command").is_valid(step["message"])
    assert valid == (step["verdict"] != "malformed")
