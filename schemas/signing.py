"""Signing and admitting control commands: Ed25519 over a canonical encoding, with key ids.

The workers (and operators) sign with a private key; every serving node admits a command
through a ``CommandGate``, which holds only public keys and rejects a command as
unsigned, forged, expired or replayed. A node can therefore check commands but never make
one that another node accepts.

The canonical encoding of a command is the JSON object of all its fields except
``signature`` (``key_id`` included, so a signature cannot be moved to another key), and
except ``level`` when it is null, keys sorted, no whitespace, UTF-8. ``level`` came after
the first signed commands: leaving it out when null keeps every command without a level
signed exactly as before, so nodes that predate it still verify those. For the field
types of the control contract (strings, integers, null) this is RFC 8785 (JCS), so a Java
or Go node can verify with a JCS library.
The signature is the lower-case hex of the 64-byte Ed25519 signature (RFC 8032) of those
bytes by the private key of ``key_id``: 128 hex digits.

Keys are ``key_id=<64 lower-case hex digits>`` entries: the 32 bytes of an Ed25519 public
key, or of a private key's seed. ``failsoft control keygen FILE`` writes a private key to
``FILE`` (mode 0600) and its public key line to ``FILE.pub``. A signer holds one private
key (``FAILSOFT_CONTROL_PRIVATE_KEY`` or the file ``FAILSOFT_CONTROL_PRIVATE_KEY_FILE``);
a node holds the public keys it accepts (``FAILSOFT_CONTROL_PUBLIC_KEYS`` and/or the file
``FAILSOFT_CONTROL_PUBLIC_KEYS_FILE``, separated by commas or new lines; ``#`` starts a
comment). To rotate, add the new public key to every node, give the signers the new
private key, then drop the old public key. A signer also accepts its own key's commands.

HMAC-SHA256 commands (64 hex digits, under a shared secret of ``FAILSOFT_CONTROL_KEYS``)
are the earlier scheme: failsoft no longer signs with it, and a node verifies it only with
``FAILSOFT_CONTROL_ACCEPT_HMAC=true``, for the migration described in the README.

>>> pair = KeyPair.from_line("k1=" + "17" * 32)
>>> pair.public_line()
'k1=31debe55d37c722768b137131caa6087080b2e0b60b94bd785d14575cfa498bc'
>>> signer = Keyring(signing_key=pair)
>>> command = signed_command(signer, model_id="recs", action="fallback", reason="drift",
...                          detector="psi", issued_at=1_700_000_000_000)
>>> command.key_id, command.seq, len(command.signature)
('k1', 1700000000000, 128)
>>> gate = CommandGate(Keyring.parse(public_keys=pair.public_line()))
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.contracts import SCHEMA_VERSION, Action, ControlCommand

RejectReason: TypeAlias = Literal["unsigned", "forged", "expired", "replayed"]
REJECT_REASONS: tuple[RejectReason, ...] = ("unsigned", "forged", "expired", "replayed")

MIN_SECRET_BYTES = 16
"""The shortest HMAC secret a node accepts (the earlier scheme)."""
KEY_BYTES = 32
"""An Ed25519 public key, and a private key's seed."""

_canonical_encoder = msgspec.json.Encoder(order="sorted")


class MissingKeyError(RuntimeError):
    """Signing was asked for, but no private key is configured."""


class KeySettings(Protocol):
    """The settings fields a keyring reads (``streams.settings.Settings`` has them)."""

    @property
    def control_private_key(self) -> str: ...
    @property
    def control_private_key_file(self) -> str: ...
    @property
    def control_public_keys(self) -> str: ...
    @property
    def control_public_keys_file(self) -> str: ...
    @property
    def control_keys(self) -> str: ...
    @property
    def control_keys_file(self) -> str: ...
    @property
    def control_accept_hmac(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """An Ed25519 private key and the id that signers put in ``key_id``."""

    key_id: str
    private_key: Ed25519PrivateKey = dataclasses.field(repr=False)

    @classmethod
    def generate(cls, key_id: str) -> KeyPair:
        _check_key_id(key_id, "key pair")
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_line(cls, text: str, origin: str = "private key") -> KeyPair:
        """The one ``key_id=<seed hex>`` entry of ``text`` (comments and blank lines aside)."""
        entries = _parse_entries(text, origin)
        if len(entries) != 1:
            raise ValueError(
                f"{origin}: expected exactly one key_id=<hex> entry, not {len(entries)}"
            )
        ((key_id, value),) = entries.items()
        seed = _key_bytes(value, f"{origin}, key {key_id!r}")
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_line(self) -> str:
        """``key_id=<public key hex>``: what the fleet's nodes are given."""
        return f"{self.key_id}={self.public_key.public_bytes_raw().hex()}"

    def private_line(self) -> str:
        """``key_id=<seed hex>``: the secret; only signers may hold it."""
        return f"{self.key_id}={self.private_key.private_bytes_raw().hex()}"


@dataclasses.dataclass(frozen=True)
class Keyring:
    """What a process may do with commands: the public keys it accepts, by key id, the
    private key it signs with (signers only), and HMAC secrets (only while migrating).

    A key id names one key of one kind, so the id alone tells a verifier which check
    applies. The signing key's public key is accepted too.
    """

    public_keys: Mapping[str, Ed25519PublicKey] = dataclasses.field(default_factory=dict)
    signing_key: KeyPair | None = None
    hmac_secrets: Mapping[str, bytes] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key_id in self.public_keys:
            _check_key_id(key_id, "control public key")
        for key_id, secret in self.hmac_secrets.items():
            _check_key_id(key_id, "control HMAC key")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"control HMAC key {key_id!r}: needs a secret of at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
        if both := sorted(self.public_keys.keys() & self.hmac_secrets.keys()):
            raise ValueError(f"control key ids {both} name both a public key and an HMAC key")
        if self.signing_key is not None:
            own = self.signing_key.public_key
            known = self.public_keys.get(self.signing_key.key_id)
            if known is not None and known.public_bytes_raw() != own.public_bytes_raw():
                raise ValueError(
                    f"control key id {self.signing_key.key_id!r}: the configured public key "
                    "is not the private key's"
                )
            if self.signing_key.key_id in self.hmac_secrets:
                raise ValueError(
                    f"control key id {self.signing_key.key_id!r} names both the private key "
                    "and an HMAC key"
                )
            object.__setattr__(
                self, "public_keys", {**self.public_keys, self.signing_key.key_id: own}
            )

    @classmethod
    def parse(cls, *, public_keys: str = "", private_key: str = "") -> Keyring:
        """A keyring from the text forms of its keys (see the module docstring)."""
        return cls(
            _public_keys(_parse_entries(public_keys, "public keys")),
            KeyPair.from_line(private_key) if private_key.strip() else None,
        )

    @classmethod
    def from_settings(cls, settings: KeySettings) -> Keyring:
        """The keys the settings name; may be empty.

        Raises
        ------
        ValueError
            A key or key file is unreadable or malformed (the message names the setting,
            never a secret), both ``control_private_key`` and its file are set, or HMAC
            secrets are configured while ``control_accept_hmac`` is off.
        """
        public = _parse_entries(settings.control_public_keys, "FAILSOFT_CONTROL_PUBLIC_KEYS")
        if settings.control_public_keys_file:
            name, path = "FAILSOFT_CONTROL_PUBLIC_KEYS_FILE", settings.control_public_keys_file
            public.update(_parse_entries(_read(path, name), path))
        if settings.control_private_key and settings.control_private_key_file:
            raise ValueError(
                "set FAILSOFT_CONTROL_PRIVATE_KEY or FAILSOFT_CONTROL_PRIVATE_KEY_FILE, not both"
            )
        signing_key = None
        if settings.control_private_key:
            signing_key = KeyPair.from_line(
                settings.control_private_key, "FAILSOFT_CONTROL_PRIVATE_KEY"
            )
        elif settings.control_private_key_file:
            path = settings.control_private_key_file
            text = _read(path, "FAILSOFT_CONTROL_PRIVATE_KEY_FILE")
            signing_key = KeyPair.from_line(text, path)
        secrets = _parse_entries(settings.control_keys, "FAILSOFT_CONTROL_KEYS")
        if settings.control_keys_file:
            path = settings.control_keys_file
            secrets.update(_parse_entries(_read(path, "FAILSOFT_CONTROL_KEYS_FILE"), path))
        if secrets and not settings.control_accept_hmac:
            # An HMAC secret lets its holder forge commands: it should not sit unused on a
            # node, and must not be silently ignored where the operator meant to accept it.
            raise ValueError(
                "FAILSOFT_CONTROL_KEYS/_FILE hold HMAC secrets, which failsoft no longer signs "
                "with and accepts only with FAILSOFT_CONTROL_ACCEPT_HMAC=true (the migration "
                "in the README's Security section); remove them or turn that on"
            )
        return cls(_public_keys(public), signing_key, _hmac_secrets(secrets))

    @property
    def signing_key_id(self) -> str | None:
        return None if self.signing_key is None else self.signing_key.key_id

    @property
    def can_verify(self) -> bool:
        """Whether any command could pass: some public key or HMAC secret is known."""
        return bool(self.public_keys or self.hmac_secrets)

    def public_keys_text(self) -> str:
        """The accepted public keys as a ``FAILSOFT_CONTROL_PUBLIC_KEYS`` value."""
        return ",".join(
            f"{key_id}={key.public_bytes_raw().hex()}" for key_id, key in self.public_keys.items()
        )

    def require_signing_key(self) -> KeyPair:
        """The private key; raises ``MissingKeyError`` when there is none."""
        if self.signing_key is None:
            raise MissingKeyError(
                "no control signing key is configured: set FAILSOFT_CONTROL_PRIVATE_KEY_FILE "
                "(`failsoft control keygen FILE` writes a key pair)"
            )
        return self.signing_key

    def sign(self, command: ControlCommand) -> ControlCommand:
        """``command`` with ``key_id`` set to the signing key's and its Ed25519 ``signature``."""
        pair = self.require_signing_key()
        keyed = msgspec.structs.replace(command, key_id=pair.key_id, signature=None)
        signature = pair.private_key.sign(canonical_bytes(keyed))
        return msgspec.structs.replace(keyed, signature=signature.hex())

    def verify(self, command: ControlCommand) -> bool:
        """Whether ``command`` carries a valid signature by one of the accepted keys."""
        key_id, signature = command.key_id, command.signature
        if key_id is None or signature is None:
            return False
        public_key = self.public_keys.get(key_id)
        if public_key is not None:
            try:
                public_key.verify(bytes.fromhex(signature), canonical_bytes(command))
            except (InvalidSignature, ValueError):
                return False
            return True
        secret = self.hmac_secrets.get(key_id)
        return secret is not None and hmac.compare_digest(
            hmac_signature(secret, command), signature
        )


def hmac_signature(secret: bytes, command: ControlCommand) -> str:
    """The earlier scheme's signature: lower-case hex HMAC-SHA256 of the canonical bytes."""
    return hmac.digest(secret, canonical_bytes(command), "sha256").hex()


def canonical_bytes(command: ControlCommand) -> bytes:
    """The bytes a signature covers: every field but ``signature`` (and ``level`` when
    null), keys sorted, compact."""
    fields = msgspec.structs.asdict(command)
    del fields["signature"]
    if fields["level"] is None:
        del fields["level"]
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
    level: int | None = None,
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
        level=level,
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


def _check_key_id(key_id: str, what: str) -> None:
    if not key_id:
        raise ValueError(f"{what}: needs a non-empty key id")


def _key_bytes(value: str, origin: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES or value != value.lower():
        # The value may be a secret: say what is wrong with it, never what it is.
        raise ValueError(f"{origin}: expected {2 * KEY_BYTES} lower-case hex digits")
    return raw


def _public_keys(entries: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    return {
        key_id: Ed25519PublicKey.from_public_bytes(
            _key_bytes(value, f"control public key {key_id!r}")
        )
        for key_id, value in entries.items()
    }


def _hmac_secrets(entries: Mapping[str, str]) -> dict[str, bytes]:
    return {key_id: secret.encode("utf-8") for key_id, secret in entries.items()}


def _read(path: str, setting: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{setting}={path}: {error.strerror}") from None


def _parse_entries(text: str, origin: str) -> dict[str, str]:
    """``key_id=value`` entries separated by commas or new lines; ``#`` starts a comment."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for entry in line.split("#", 1)[0].split(","):
            entry = entry.strip()
            if not entry:
                continue
            key_id, sep, value = entry.partition("=")
            if not sep:
                raise ValueError(f"{origin} line {number}: expected key_id=value")
            entries[key_id.strip()] = value.strip()
    return entries
