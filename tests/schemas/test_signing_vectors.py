"""The control-command test vectors for other languages, checked by failsoft's own verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.codec import DecodeError, decode_control_command
from schemas.contracts import ControlCommand
from schemas.signing import REJECT_REASONS, CommandGate, Keyring, canonical_bytes
from tests.schemas.conftest import SCHEMA_FILES, validator

VECTORS: dict[str, Any] = json.loads(
    (SCHEMA_FILES / "control_command.vectors.json").read_text(encoding="utf-8")
)
STEPS: list[dict[str, Any]] = VECTORS["steps"]
NODE: dict[str, Any] = VECTORS["node"]
SIGNED = [s for s in STEPS if "canonical" in s]


def node_keyring() -> Keyring:
    """The vectors' node: their public keys only, HMAC off."""
    assert NODE["accept_hmac"] is False
    lines = [f"{key_id}={key}" for key_id, key in NODE["public_keys"].items()]
    return Keyring.parse(public_keys="\n".join(lines))


def node_verdicts() -> list[str]:
    """What one node does with each step's message, in order: decode, then admit."""
    gate = CommandGate(node_keyring())
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


def test_the_example_command_is_the_first_vector() -> None:
    example = json.loads((SCHEMA_FILES / "control_command.example.json").read_text())
    assert example == STEPS[0]["message"] and STEPS[0]["verdict"] == "applied"


@pytest.mark.parametrize("step", SIGNED, ids=lambda s: s["name"])
def test_canonical_text_is_what_failsoft_signs(step: dict[str, Any]) -> None:
    command = decode_control_command(json.dumps(step["message"]).encode())
    assert isinstance(command, ControlCommand)
    assert canonical_bytes(command) == step["canonical"].encode("utf-8")


def _ed25519_verifies(public_hex: str | None, signature: str, canonical: bytes) -> bool:
    if public_hex is None or len(signature) != 128:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(signature), canonical
        )
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("step", SIGNED, ids=lambda s: s["name"])
def test_a_signature_verifies_under_the_nodes_public_key_unless_forged(
    step: dict[str, Any],
) -> None:
    """The vectors hold together with nothing but an Ed25519 library, as in another language."""
    message, canonical = step["message"], step["canonical"].encode()
    public = NODE["public_keys"].get(message["key_id"])
    assert _ed25519_verifies(public, message["signature"], canonical) == (
        step["verdict"] != "forged"
    )


@pytest.mark.parametrize(
    "step", [s for s in SIGNED if s["verdict"] != "forged"], ids=lambda s: s["name"]
)
def test_ed25519_signatures_are_deterministic_so_a_signer_can_check_its_own(
    step: dict[str, Any],
) -> None:
    """A port of the signing side reproduces each accepted signature from its seed."""
    message = step["message"]
    seed = bytes.fromhex(VECTORS["signers"][message["key_id"]])
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(step["canonical"].encode())
    assert signature.hex() == message["signature"]


def test_the_hmac_step_is_the_earlier_schemes_signature_by_a_key_the_node_lacks() -> None:
    (step,) = [s for s in STEPS if s["message"]["key_id"] in VECTORS["hmac_keys"]]
    secret = VECTORS["hmac_keys"][step["message"]["key_id"]].encode()
    mac = hmac.new(secret, step["canonical"].encode(), hashlib.sha256).hexdigest()
    assert step["message"]["signature"] == mac and step["verdict"] == "forged"


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s["name"])
def test_the_json_schema_rejects_exactly_the_malformed_messages(step: dict[str, Any]) -> None:
    valid = validator("control_command").is_valid(step["message"])
    assert valid == (step["verdict"] != "malformed")
