"""``failsoft control keygen`` and the refusal to sign without a key (no broker needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from schemas.signing import Keyring
from streams.cli import main
from streams.settings import Settings


def test_keygen_writes_a_private_key_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "control.keys"
    assert main(["control", "keygen", str(path), "--key-id", "k2026"]) == 0
    assert "wrote key k2026" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    ring = Keyring.from_settings(Settings(control_keys_file=str(path)))
    assert ring.signing_key_id == "k2026" and len(ring.secrets["k2026"]) == 64

    assert main(["control", "keygen", str(path)]) == 0
    assert "exists; left as it is" in capsys.readouterr().out
    assert path.read_text() == written


def test_control_refuses_to_sign_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("FAILSOFT_CONTROL_KEYS", "FAILSOFT_CONTROL_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    # A broker address nobody listens on: the key check must come first.
    monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["control", "fallback", "recs", "--reason", "test"]) == 1
    assert "no control signing key is configured" in capsys.readouterr().err
