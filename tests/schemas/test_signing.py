"""Control-command signing: canonical bytes, keys and rotation, the HMAC migration, and the
admission gate."""

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
    KeyPair,
    Keyring,
    MissingKeyError,
    canonical_bytes,
    hmac_signature,
    next_seq,
    signed_command,
)
from tests.schemas.conftest import SCHEMA_FILES, examples

K1 = KeyPair.from_line("k1=" + "01" * 32)
K2 = KeyPair.from_line("k2=" + "02" * 32)
SIGNER = Keyring(signing_key=K1)
NODE = Keyring.parse(public_keys=f"{K1.public_line()},{K2.public_line()}")
NOW = 1_795_000_000_000
HMAC_SECRET = "legacy-secret-0123456789"


def _command(ring: Keyring = SIGNER, **overrides: object) -> ControlCommand:
    fields: dict[str, object] = {
        "model_id": "recs",
        "action": "fallback",
        "reason": "drift",
        "detector": "psi",
        "issued_at": NOW,
    }
    fields.update(overrides)
    return signed_command(ring, **fields)  # type: ignore[arg-type]


def _settings(**fields: object) -> SimpleNamespace:
    defaults: dict[str, object] = {
        "control_private_key": "",
        "control_private_key_file": "",
        "control_public_keys": "",
        "control_public_keys_file": "",
        "control_keys": "",
        "control_keys_file": "",
        "control_accept_hmac": False,
    }
    return SimpleNamespace(**{**defaults, **fields})


def _hmac_command(secret: str = HMAC_SECRET, key_id: str = "legacy") -> ControlCommand:
    unsigned = msgspec.structs.replace(_command(), key_id=key_id, signature=None)
    return msgspec.structs.replace(unsigned, signature=hmac_signature(secret.encode(), unsigned))


def test_the_example_command_verifies_under_the_example_public_key() -> None:
    vectors = json.loads((SCHEMA_FILES / "control_command.vectors.json").read_text())
    node = Keyring.parse(public_keys=f"example={vectors['node']['public_keys']['example']}")
    command = decode_control_command(examples("control_command")["control_command.example.json"])
    assert isinstance(command, ControlCommand)
    assert node.verify(command) and len(command.signature or "") == 128
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
    assert NODE.verify(decoded)


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
    assert not NODE.verify(tampered)
    assert CommandGate(NODE).admit(tampered, NOW) == "forged"


def test_rotation_accepts_every_public_key_and_the_signer_names_its_key() -> None:
    old, new = _command(Keyring(signing_key=K1)), _command(Keyring(signing_key=K2))
    assert (old.key_id, new.key_id) == ("k1", "k2")
    assert NODE.verify(old) and NODE.verify(new)
    retired = Keyring.parse(public_keys=K2.public_line())
    assert not retired.verify(old) and retired.verify(new)


def test_a_signer_accepts_its_own_commands_and_nothing_else_unconfigured() -> None:
    assert SIGNER.verify(_command()) and SIGNER.public_keys.keys() == {"k1"}
    assert not SIGNER.verify(_command(Keyring(signing_key=K2)))


def test_a_node_holding_only_public_keys_cannot_make_a_command_another_node_accepts() -> None:
    holder = Keyring.parse(public_keys=f"{K1.public_line()},{K2.public_line()}")
    with pytest.raises(MissingKeyError):
        _command(holder)
    # All it could make: a public key used as an HMAC secret or as a private seed.
    public = K1.public_key.public_bytes_raw()
    as_hmac = _hmac_command(public.hex(), key_id="k1")
    as_seed = _command(Keyring(signing_key=KeyPair.from_line(f"k1={public.hex()}")))
    other = CommandGate(NODE)
    assert other.admit(as_hmac, NOW) == "forged"
    assert other.admit(as_seed, NOW) == "forged"
    assert other.admit(_command(), NOW) is None  # while the worker's own command is applied


def test_signing_without_a_key_refuses() -> None:
    with pytest.raises(MissingKeyError, match="FAILSOFT_CONTROL_PRIVATE_KEY_FILE"):
        _command(Keyring())


def test_without_keys_every_signed_command_is_forged() -> None:
    assert not Keyring().can_verify
    assert CommandGate(Keyring()).admit(_command(), NOW) == "forged"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1", "expected key_id=value"),
        ("k1=abcd", "expected 64 lower-case hex digits"),
        ("k1=" + "AB" * 32, "expected 64 lower-case hex digits"),
        ("k1=" + "zz" * 32, "expected 64 lower-case hex digits"),
        ("=" + "ab" * 32, "non-empty key id"),
    ],
)
def test_bad_public_keys_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keyring.parse(public_keys=text)


def test_a_bad_private_key_is_refused_without_repeating_it() -> None:
    secret = "k1=" + "AB" * 32
    with pytest.raises(ValueError, match="private key, key 'k1'") as raised:
        Keyring.parse(private_key=secret)
    assert "AB" * 32 not in str(raised.value)
    with pytest.raises(ValueError, match="exactly one"):
        Keyring.parse(private_key=f"{K1.private_line()}\n{K2.private_line()}")


def test_a_public_key_that_is_not_the_private_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="is not the private key's"):
        Keyring(public_keys={"k1": K2.public_key}, signing_key=K1)


def test_no_repr_shows_a_private_key_or_secret() -> None:
    ring = Keyring(signing_key=K1, hmac_secrets={"legacy": HMAC_SECRET.encode()})
    for text in (repr(ring), repr(K1)):
        assert K1.private_line().split("=")[1] not in text and HMAC_SECRET not in text


def test_keys_come_from_the_settings_values_and_files(tmp_path: Path) -> None:
    public_file = tmp_path / "control.key.pub"
    public_file.write_text(f"# rotated 2026-12\n{K2.public_line()}\n")
    private_file = tmp_path / "control.key"
    private_file.write_text(f"# the signer's\n{K1.private_line()}\n")
    ring = Keyring.from_settings(
        _settings(
            control_public_keys=K1.public_line(),
            control_public_keys_file=str(public_file),
            control_private_key_file=str(private_file),
        )
    )
    assert ring.public_keys.keys() == {"k1", "k2"} and ring.signing_key_id == "k1"
    assert Keyring.from_settings(_settings(control_private_key=K2.private_line())).signing_key_id
    with pytest.raises(ValueError, match="not both"):
        Keyring.from_settings(
            _settings(
                control_private_key=K2.private_line(), control_private_key_file=str(private_file)
            )
        )
    missing = _settings(control_public_keys_file=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="FAILSOFT_CONTROL_PUBLIC_KEYS_FILE"):
        Keyring.from_settings(missing)


def test_hmac_secrets_are_refused_unless_the_migration_setting_is_on(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FAILSOFT_CONTROL_ACCEPT_HMAC=true") as raised:
        Keyring.from_settings(_settings(control_keys=f"legacy={HMAC_SECRET}"))
    assert HMAC_SECRET not in str(raised.value)
    key_file = tmp_path / "control.keys"
    key_file.write_text(f"legacy={HMAC_SECRET}\n")
    migrating = Keyring.from_settings(
        _settings(
            control_public_keys=K1.public_line(),
            control_keys_file=str(key_file),
            control_accept_hmac=True,
        )
    )
    gate = CommandGate(migrating)
    assert gate.admit(_hmac_command(), NOW) is None
    assert gate.admit(_command(last_seq=NOW), NOW) is None
    # Once it is off, the same HMAC command is forged: its key is not accepted.
    assert CommandGate(NODE).admit(_hmac_command(), NOW) == "forged"


def test_a_key_id_names_one_kind_of_key() -> None:
    with pytest.raises(ValueError, match="both a public key and an HMAC key"):
        Keyring(public_keys={"k1": K1.public_key}, hmac_secrets={"k1": HMAC_SECRET.encode()})
    # An HMAC-length signature under a public key's id is no signature at all.
    assert not NODE.verify(_hmac_command(key_id="k1"))


def test_gate_rejects_unsigned_expired_and_replayed_and_admits_newer() -> None:
    gate = CommandGate(NODE)
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
        assert not NODE.verify(decoded)
        assert CommandGate(NODE).admit(decoded, NOW) in {"forged", "unsigned"}
