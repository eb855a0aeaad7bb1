"""Control-command signing: canonical bytes, keys and rotation, and the admission gate."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode_control_command
from schemas.contracts import ControlCommand
from schemas.signing import (
    CommandGate,
    Keyring,
    MissingKeyError,
    canonical_bytes,
    next_seq,
    signed_command,
)
from tests.schemas.conftest import examples

RING = Keyring.parse("k1=first-secret-0123456789,k2=second-secret-0123456789")
NOW = 1_795_000_000_000


def _command(ring: Keyring = RING, **overrides: object) -> ControlCommand:
    fields: dict[str, object] = {
        "model_id": "recs",
        "action": "fallback",
        "reason": "drift",
        "detector": "psi",
        "issued_at": NOW,
    }
    fields.update(overrides)
    return signed_command(ring, **fields)  # type: ignore[arg-type]


def test_the_example_command_is_a_test_vector_for_other_languages() -> None:
    ring = Keyring.parse("example=example-secret-not-for-production")
    command = decode_control_command(examples("control_command")["control_command.example.json"])
    assert isinstance(command, ControlCommand)
    assert ring.verify(command)
    assert canonical_bytes(command) == (
        b'{"action":"fallback","detector":"psi","expires_at":null,"issued_at":1795000060000,'
        b'"key_id":"example","model_id":"home-recs","reason":"prediction drift: PSI 0.41 on '
        b'days_since_signup over 10 min","schema_version":1,"seq":1795000060000}'
    )


def test_canonical_bytes_ignore_field_order_and_whitespace_on_the_wire() -> None:
    command = _command()
    shuffled = json.dumps(dict(reversed(msgspec.structs.asdict(command).items())), indent=3)
    decoded = decode_control_command(shuffled.encode())
    assert isinstance(decoded, ControlCommand)
    assert canonical_bytes(decoded) == canonical_bytes(command)
    assert RING.verify(decoded)


@pytest.mark.parametrize(
    "change",
    [
        {"action": "restore"},
        {"model_id": "other"},
        {"seq": NOW + 1},
        {"expires_at": NOW + 10},
        {"reason": "drift!"},
        {"key_id": "k2"},
    ],
)
def test_any_change_to_a_signed_field_breaks_the_signature(change: dict[str, object]) -> None:
    tampered = msgspec.structs.replace(_command(), **change)
    assert not RING.verify(tampered)
    assert CommandGate(RING).admit(tampered, NOW) == "forged"


def test_rotation_accepts_every_configured_key_and_signs_with_the_chosen_one() -> None:
    old = Keyring.parse("k1=first-secret-0123456789")
    new = Keyring.parse("k2=second-secret-0123456789")
    assert RING.verify(_command(old)) and RING.verify(_command(new))
    assert not new.verify(_command(old))
    rotated = Keyring(RING.secrets, signing_key_id="k2")
    assert _command(rotated).key_id == "k2"


def test_signing_without_a_key_refuses() -> None:
    with pytest.raises(MissingKeyError, match="FAILSOFT_CONTROL_KEYS"):
        _command(Keyring({}))


def test_without_keys_every_signed_command_is_forged() -> None:
    assert CommandGate(Keyring({})).admit(_command(), NOW) == "forged"


@pytest.mark.parametrize(
    ("text", "message"),
    [("k1", "expected key_id=secret"), ("k1=short", "at least 16 bytes"), ("=x" * 9, "non-empty")],
)
def test_bad_keys_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keyring.parse(text)


def test_unknown_signing_key_id_is_refused() -> None:
    with pytest.raises(ValueError, match="'k9' is not among"):
        Keyring.parse("k1=first-secret-0123456789", signing_key_id="k9")


def test_keys_come_from_the_environment_value_and_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "control.keys"
    key_file.write_text("# rotated 2026-11\nk2 = second-secret-0123456789\n")
    settings = SimpleNamespace(
        control_keys="k1=first-secret-0123456789",
        control_keys_file=str(key_file),
        control_signing_key_id="k2",
    )
    ring = Keyring.from_settings(settings)
    assert ring.secrets == RING.secrets
    assert ring.signing_key_id == "k2"
    missing = SimpleNamespace(
        control_keys="", control_keys_file=str(tmp_path / "nope"), control_signing_key_id=""
    )
    with pytest.raises(ValueError, match="FAILSOFT_CONTROL_KEYS_FILE"):
        Keyring.from_settings(missing)


def test_gate_rejects_unsigned_expired_and_replayed_and_admits_newer() -> None:
    gate = CommandGate(RING)
    unsigned = msgspec.structs.replace(_command(), signature=None)
    assert gate.admit(unsigned, NOW) == "unsigned"
    assert gate.admit(msgspec.structs.replace(unsigned, key_id=None), NOW) == "unsigned"
    assert gate.admit(_command(expires_at=NOW + 5), NOW + 5) == "expired"
    first = _command()
    assert gate.admit(first, NOW) is None
    assert gate.last_seq("recs") == first.seq
    assert gate.admit(first, NOW) == "replayed"
    assert gate.admit(_command(issued_at=NOW - 1000), NOW) == "replayed"
    assert gate.admit(_command(last_seq=first.seq, expires_at=NOW + 5), NOW + 4) is None
    # Seqs are per model.
    assert gate.admit(_command(model_id="other"), NOW) is None


def test_next_seq_grows_past_the_last_and_the_clock() -> None:
    assert next_seq(0, NOW) == NOW
    assert next_seq(NOW + 7, NOW) == NOW + 8


@settings(deadline=None)
@given(
    field=st.sampled_from(
        ["model_id", "action", "reason", "detector", "issued_at", "seq", "expires_at", "key_id"]
    ),
    value=st.none()
    | st.integers(min_value=0)
    | st.text(max_size=20)
    | st.sampled_from(["restore", "promote_shadow", "k2", "recs ", "RECS"]),
)
def test_no_change_to_a_signed_command_keeps_a_valid_signature(field: str, value: object) -> None:
    original = _command()
    message = {**msgspec.structs.asdict(original), field: value}
    decoded = decode_control_command(json.dumps(message).encode())
    if isinstance(decoded, ControlCommand) and canonical_bytes(decoded) != canonical_bytes(
        original
    ):
        assert not RING.verify(decoded)
        assert CommandGate(RING).admit(decoded, NOW) in {"forged", "unsigned"}
