"""``failsoft control``: an operator issues a signed command by hand, or reads the fleet's state.

    failsoft control fallback MODEL --reason "bad deploy"   # serve MODEL's fallback
    failsoft control restore MODEL --reason "fixed"         # serve the live model again
    failsoft control promote_shadow MODEL --reason "..."    # serve the shadow
    failsoft control status                                 # every model's last command
    failsoft control keygen FILE                            # write a new key pair

Commands are signed with the Ed25519 private key of ``FAILSOFT_CONTROL_PRIVATE_KEY`` /
``_FILE``; the seq follows the last seq on the topic for that model. ``keygen`` writes the
private key to FILE (mode 0600) and the public key line, which the fleet's nodes are
given, to FILE.pub; it never overwrites either.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from schemas.contracts import Action, ControlCommand
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from schemas.signing import KeyPair, Keyring


def publish_command(
    settings: Settings,
    command: ControlCommand,
    producer: Producer | None = None,
    timeout: float = 10.0,
) -> None:
    """Send ``command`` to the control topic, keyed by model_id, and wait for the broker.

    Raises
    ------
    confluent_kafka.KafkaException
        When the broker did not take it within ``timeout`` seconds.
    """
    from confluent_kafka import KafkaException, Producer

    from schemas.codec import encode
    from streams.fleet.kafka_config import command_producer_config
    from streams.topics import CONTROL

    producer = producer or Producer(command_producer_config(settings))
    outcome: list[object] = []
    producer.produce(
        CONTROL.name(settings),
        encode(command),
        command.model_id.encode("utf-8"),
        on_delivery=lambda error, message: outcome.append(error),
    )
    producer.flush(timeout)
    if not outcome:
        raise KafkaException(f"no delivery report within {timeout} s")
    if outcome[0] is not None:
        raise KafkaException(outcome[0])


def current_commands(
    settings: Settings, keyring: Keyring, timeout: float = 10.0
) -> dict[str, ControlCommand]:
    """Each model's last valid command on the control topic, read as a node would."""
    from streams.fleet.listener import ControlListener

    with ControlListener(settings, keyring=keyring) as listener:
        if not listener.wait_bootstrapped(timeout):
            cause = listener.stats().last_kafka_error
            raise TimeoutError(
                f"could not read {listener.topic} at {settings.kafka_bootstrap} within "
                f"{timeout} s (last error: {cause}; does `failsoft topics create` help?)"
            )
        return {model: cmd for model in listener.modes if (cmd := listener.command(model))}


def issue(
    settings: Settings,
    keyring: Keyring,
    *,
    model_id: str,
    action: Action,
    reason: str,
    detector: str = "operator",
    ttl_s: float | None = None,
    timeout: float = 10.0,
    level: int | None = None,
) -> ControlCommand:
    """Sign and publish a command whose seq follows the last one on the topic; ``level``
    is the fallback ladder's level to serve (nodes that predate ladders reject a command
    that sets one as forged: see schemas/README.md)."""
    from schemas.signing import signed_command

    keyring.require_signing_key()  # before reading the topic, which takes a while
    last = current_commands(settings, keyring, timeout).get(model_id)
    issued_at = time.time_ns() // 1_000_000
    command = signed_command(
        keyring,
        model_id=model_id,
        action=action,
        reason=reason,
        detector=detector,
        issued_at=issued_at,
        last_seq=last.seq if last else 0,
        expires_at=None if ttl_s is None else issued_at + int(ttl_s * 1000),
        level=level,
    )
    publish_command(settings, command, timeout=timeout)
    return command


def public_key_path(private_key_path: Path) -> Path:
    """Where ``keygen`` writes the public key of the private key at ``private_key_path``."""
    return private_key_path.with_name(private_key_path.name + ".pub")


def write_key_pair(path: Path, key_id: str) -> KeyPair | None:
    """Write a new Ed25519 key pair: the private key to ``path`` (mode 0600), its public key
    line to ``public_key_path(path)``; ``None``, writing nothing, if either exists.
    """
    from schemas.signing import KeyPair

    public_path = public_key_path(path)
    if public_path.exists():
        return None
    pair = KeyPair.generate(key_id)
    try:
        # O_EXCL: never replace a key, even one that appeared since the check above.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(
            f"# failsoft control signing key {key_id} (Ed25519 private key): whoever reads "
            f"this file can command the fleet; give nodes {public_path.name} instead.\n"
            f"{pair.private_line()}\n"
        )
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(f"{pair.public_line()}\n")
    return pair


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("control", help="issue signed control commands by hand")
    actions = parser.add_subparsers(dest="control_command", required=True)
    for action in get_args(Action):
        command = actions.add_parser(action, help=f"sign and send a {action} command")
        command.add_argument("model_id", metavar="MODEL")
        command.add_argument("--reason", required=True, help="why, for the humans reading it")
        command.add_argument(
            "--detector", default="operator", help="who decided (default: operator)"
        )
        command.add_argument(
            "--ttl",
            type=float,
            default=None,
            metavar="SECONDS",
            help="nodes must not apply the command after this long (default: no limit)",
        )
        if action == "fallback":
            command.add_argument(
                "--level",
                type=int,
                choices=range(1, 256),
                default=None,
                metavar="N",
                help="the level of the model's fallback ladder to serve, 1 to 255 "
                "(default: none, which nodes serve as the first)",
            )
        command.set_defaults(handler=_issue, action=action, level=None)
    status = actions.add_parser("status", help="every model's last valid command")
    status.set_defaults(handler=_status)
    keygen = actions.add_parser(
        "keygen", help="write a new key pair: FILE (private, 0600) and FILE.pub (public)"
    )
    keygen.add_argument("path", type=Path, metavar="FILE")
    keygen.add_argument("--key-id", default=time.strftime("k%Y%m%d"), help="default: kYYYYMMDD")
    keygen.set_defaults(handler=_keygen)


def _keyring(settings: Settings) -> Keyring:
    from schemas.signing import Keyring

    return Keyring.from_settings(settings)


def _issue(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import KafkaException

    from schemas.signing import MissingKeyError

    try:
        command = issue(
            settings,
            _keyring(settings),
            model_id=args.model_id,
            action=args.action,
            reason=args.reason,
            detector=args.detector,
            ttl_s=args.ttl,
            level=args.level,
        )
    except (MissingKeyError, ValueError, TimeoutError, KafkaException) as error:
        print(f"failsoft control: {error}", file=sys.stderr)
        return 1
    level = "" if command.level is None else f" level {command.level}"
    print(
        f"sent {command.action}{level} for {command.model_id}: seq {command.seq}, "
        f"key {command.key_id}"
    )
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    try:
        commands = current_commands(settings, _keyring(settings))
    except (ValueError, TimeoutError) as error:
        print(f"failsoft control: {error}", file=sys.stderr)
        return 1
    for model_id, command in sorted(commands.items()):
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(command.issued_at / 1000))
        print(
            f"{model_id}  {command.action}  seq={command.seq}  at={issued}  "
            f"by={command.detector}  reason={command.reason}"
        )
    return 0


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    try:
        pair = write_key_pair(args.path, args.key_id)
    except (OSError, ValueError) as error:
        print(f"failsoft control keygen: {error}", file=sys.stderr)
        return 1
    if pair is None:
        print(
            f"failsoft control keygen: {args.path} or {public_key_path(args.path)} exists; "
            "refusing to overwrite a key",
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote key {pair.key_id}: the private key to {args.path} (mode 0600; signers set "
        f"FAILSOFT_CONTROL_PRIVATE_KEY_FILE to it), the public key to "
        f"{public_key_path(args.path)}\n"
        f"give the fleet's nodes this line (FAILSOFT_CONTROL_PUBLIC_KEYS, or the .pub file as "
        f"FAILSOFT_CONTROL_PUBLIC_KEYS_FILE):\n{pair.public_line()}"
    )
    return 0
