"""Signing and admitting control commands: HMAC-SHA256 over a canonical encoding, with key ids.

The workers sign with ``signed_command``; every serving node admits a command through a
``CommandGate``, which rejects it as unsigned, forged, expired or replayed.

The canonical encoding of a command is the JSON object of all its fields except
``signature`` (``key_id`` included, so a signature cannot be moved to another key), keys
sorted, no whitespace, UTF-8. For the field types of the control contract (strings,
integers, null) this is RFC 8785 (JCS), so a Java or Go node can verify with a JCS library.
The signature is the lower-case hex HMAC-SHA256 of those bytes under the secret of
``key_id``.

Keys are ``key_id=secret`` entries, separated by commas or new lines, from the
``FAILSOFT_CONTROL_KEYS`` variable and/or the file named by ``FAILSOFT_CONTROL_KEYS_FILE``
(``#`` starts a comment there). To rotate, add the new key everywhere, then make it the
signing key (``FAILSOFT_CONTROL_SIGNING_KEY_ID``), then drop the old one. There is no
built-in key: without one, nothing can be signed and every command is rejected as forged.

>>> ring = Keyring.parse("k1=correct-horse-battery-staple")
>>> command = signed_command(ring, model_id="recs", action="fallback", reason="drift",
...                          detector="psi", issued_at=1_700_000_000_000)
>>> command.key_id, command.seq
('k1', 1700000000000)
>>> gate = CommandGate(ring)
>>> gate.admit(command, now_ms=1_700_000_000_005) is None
True
>>> gate.admit(command, now_ms=1_700_000_000_006)
'replayed'
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol, TypeAlias

import msgspec

from schemas.contracts import SCHEMA_VERSION, Action, ControlCommand

RejectReason: TypeAlias = Literal["unsigned", "forged", "expired", "replayed"]
REJECT_REASONS: tuple[RejectReason, ...] = ("unsigned", "forged", "expired", "replayed")

MIN_SECRET_BYTES = 16

_canonical_encoder = msgspec.json.Encoder(order="sorted")


class MissingKeyError(RuntimeError):
    """Signing was asked for, but no signing key is configured."""


class KeySettings(Protocol):
    """The settings fields a keyring reads (``streams.settings.Settings`` has them)."""

    @property
    def control_keys(self) -> str: ...
    @property
    def control_keys_file(self) -> str: ...
    @property
    def control_signing_key_id(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Keyring:
    """The secrets a process knows, by key id, and which one it signs with.

    ``signing_key_id`` defaults to the first key given.
    """

    secrets: Mapping[str, bytes]
    signing_key_id: str | None = None

    def __post_init__(self) -> None:
        for key_id, secret in self.secrets.items():
            if not key_id or len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"control key {key_id!r}: needs a non-empty id and a secret of at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
        if self.signing_key_id is None and self.secrets:
            object.__setattr__(self, "signing_key_id", next(iter(self.secrets)))
        if self.signing_key_id is not None and self.signing_key_id not in self.secrets:
            raise ValueError(
                f"control signing key {self.signing_key_id!r} is not among the configured "
                f"keys {sorted(self.secrets)}"
            )

    @classmethod
    def parse(cls, text: str, signing_key_id: str | None = None, origin: str = "keys") -> Keyring:
        """Read ``key_id=secret`` entries separated by commas or new lines."""
        return cls(_parse_entries(text, origin), signing_key_id)

    @classmethod
    def from_settings(cls, settings: KeySettings) -> Keyring:
        """The keys from ``control_keys`` and the file ``control_keys_file``; may be empty."""
        secrets = _parse_entries(settings.control_keys, "FAILSOFT_CONTROL_KEYS")
        if settings.control_keys_file:
            path = Path(settings.control_keys_file).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"FAILSOFT_CONTROL_KEYS_FILE={path}: {error.strerror}") from None
            secrets.update(_parse_entries(text, str(path)))
        return cls(secrets, settings.control_signing_key_id or None)

    def require_signing_key(self) -> str:
        """The signing key id; raises ``MissingKeyError`` when there is none."""
        if self.signing_key_id is None:
            raise MissingKeyError(
                "no control signing key is configured: set FAILSOFT_CONTROL_KEYS or "
                "FAILSOFT_CONTROL_KEYS_FILE (`failsoft control keygen FILE` writes a key file)"
            )
        return self.signing_key_id

    def sign(self, command: ControlCommand) -> ControlCommand:
        """``command`` with ``key_id`` set to the signing key and its ``signature``."""
        key_id = self.require_signing_key()
        keyed = msgspec.structs.replace(command, key_id=key_id, signature=None)
        return msgspec.structs.replace(keyed, signature=self._mac(key_id, keyed))

    def verify(self, command: ControlCommand) -> bool:
        """Whether ``command`` carries a valid signature under one of the known keys."""
        if command.key_id is None or command.signature is None:
            return False
        if command.key_id not in self.secrets:
            return False
        return hmac.compare_digest(self._mac(command.key_id, command), command.signature)

    def _mac(self, key_id: str, command: ControlCommand) -> str:
        # hmac.digest is the one-shot C path: several times faster than hmac.new.
        return hmac.digest(self.secrets[key_id], canonical_bytes(command), "sha256").hex()


def canonical_bytes(command: ControlCommand) -> bytes:
    """The bytes a signature covers: every field but ``signature``, keys sorted, compact."""
    fields = msgspec.structs.asdict(command)
    del fields["signature"]
    return _canonical_encoder.encode(fields)


def next_seq(last_seq: int, now_ms: int) -> int:
    """The seq of a model's next command: above the last, and at least the issue time.

    Taking the time as a floor keeps seqs growing across issuers (the workers and an
    operator's ``failsoft control``) as long as their clocks agree to within the time
    between two commands for one model.
    """
    return max(last_seq + 1, now_ms)


def signed_command(
    keyring: Keyring,
    *,
    model_id: str,
    action: Action,
    reason: str,
    detector: str,
    issued_at: int,
    last_seq: int = 0,
    expires_at: int | None = None,
) -> ControlCommand:
    """A new signed command whose seq follows ``last_seq`` (see ``next_seq``).

    Raises
    ------
    MissingKeyError
        When the keyring has no signing key.
    """
    command = ControlCommand(
        schema_version=SCHEMA_VERSION,
        model_id=model_id,
        action=action,
        reason=reason,
        detector=detector,
        issued_at=issued_at,
        seq=next_seq(last_seq, issued_at),
        expires_at=expires_at,
    )
    return keyring.sign(command)


class CommandGate:
    """Admits control commands for one node: signed by a known key, unexpired, and new.

    Keeps the last admitted seq per model; not thread-safe (one consumer thread owns it).
    """

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._last_seq: dict[str, int] = {}

    def admit(self, command: ControlCommand, now_ms: int) -> RejectReason | None:
        """``None`` if the node should apply ``command`` (and remember its seq), else why not."""
        if command.signature is None or command.key_id is None:
            return "unsigned"
        if not self.keyring.verify(command):
            return "forged"
        if command.expires_at is not None and now_ms >= command.expires_at:
            return "expired"
        if command.seq <= self._last_seq.get(command.model_id, 0):
            return "replayed"
        self._last_seq[command.model_id] = command.seq
        return None

    def last_seq(self, model_id: str) -> int:
        """The seq of the last command admitted for ``model_id`` (0 if none)."""
        return self._last_seq.get(model_id, 0)


def _parse_entries(text: str, origin: str) -> dict[str, bytes]:
    secrets: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in line.split("#", 1)[0].split(","):
            entry = entry.strip()
            if not entry:
                continue
            key_id, sep, secret = entry.partition("=")
            if not sep:
                raise ValueError(f"{origin} line {number}: expected key_id=secret")
            secrets[key_id.strip()] = secret.strip().encode("utf-8")
    return secrets
