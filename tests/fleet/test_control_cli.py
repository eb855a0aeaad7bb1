"""``failsoft control keygen`` and the refusal to sign without a key (no broker needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from schemas.signing import KeyPair, Keyring
from streams.cli import main
from streams.settings import Settings


def test_keygen_writes_a_key_pair_once_with_a_private_file_of_mode_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "control.key"
    assert main(["control", "keygen", str(path), "--key-id", "k2026"]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public_path = tmp_path / "control.key.pub"
    public_line = public_path.read_text().strip()
    assert "wrote key k2026" in out and out.strip().endswith(public_line)
    assert public_line.startswith("k2026=") and len(public_line) == len("k2026=") + 64
    written = path.read_text()
    assert written.split("=")[-1].strip() not in out  # the private key is never printed
    signer = Keyring.from_settings(Settings(control_private_key_file=str(path)))
    node = Keyring.from_settings(Settings(control_public_keys_file=str(public_path)))
    assert signer.signing_key_id == "k2026" and node.signing_key is None
    assert node.public_keys_text() == signer.public_keys_text() == public_line

    # Never overwritten, whichever of the two files exists.
    assert main(["control", "keygen", str(path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_text() == written
    path.unlink()
    assert main(["control", "keygen", str(path)]) == 1
    assert not path.exists() and public_path.read_text().strip() == public_line


def test_control_refuses_to_sign_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("FAILSOFT_CONTROL_PRIVATE_KEY", "FAILSOFT_CONTROL_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    # A broker address nobody listens on: the key check must come first.
    monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["control", "fallback", "recs", "--reason", "test"]) == 1
    assert "no control signing key is configured" in capsys.readouterr().err


def test_each_key_setting_has_its_variable_and_no_repr_shows_the_private_key() -> None:
    signer, other = KeyPair.generate("k1"), KeyPair.generate("k2")
    settings = Settings.from_env(
        {
            "FAILSOFT_CONTROL_PRIVATE_KEY": signer.private_line(),
            "FAILSOFT_CONTROL_PUBLIC_KEYS": other.public_line(),
            "FAILSOFT_CONTROL_ACCEPT_HMAC": "false",
        }
    )
    ring = Keyring.from_settings(settings)
    assert ring.signing_key_id == "k1" and ring.public_keys.keys() == {"k1", "k2"}
    secret = signer.private_line().partition("=")[2]
    assert secret not in repr(settings) and secret not in repr(ring)
