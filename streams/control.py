"""``failsoft control``: an operator issues a signed command by hand, or reads the fleet's state.

    failsoft control fallback MODEL --reason "bad deploy"   # serve MODEL's fallback
    failsoft control restore MODEL --reason "fixed"         # serve the live model again
    failsoft control promote_shadow MODEL --reason "..."    # serve the shadow
    failsoft control status                                 # every model's last command
    failsoft control keygen FILE                            # write a new signing key

Commands are signed with the keys in ``FAILSOFT_CONTROL_KEYS`` / ``_KEYS_FILE``; the seq
follows the last seq on the topic for that model.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from schemas.contracts import Action, ControlCommand
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Producer

    from schemas.signing import Keyring


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
) -> ControlCommand:
    """Sign and publish a command whose seq follows the last one on the topic."""
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
    )
    publish_command(settings, command, timeout=timeout)
    return command


def write_key_file(path: Path, key_id: str) -> bool:
    """Write a new random key to ``path`` (mode 0600) unless it exists; ``True`` if written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(f"{key_id}={secrets.token_hex(32)}\n")
    return True


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
        command.set_defaults(handler=_issue, action=action)
    status = actions.add_parser("status", help="every model's last valid command")
    status.set_defaults(handler=_status)
    keygen = actions.add_parser("keygen", help="write a new random signing key file (0600)")
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
        )
    except (MissingKeyError, ValueError, TimeoutError, KafkaException) as error:
        print(f"failsoft control: {error}", file=sys.stderr)
        return 1
    print(f"sent {command.action} for {command.model_id}: seq {command.seq}, key {command.key_id}")
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
    if write_key_file(args.path, args.key_id):
        print(f"wrote key {args.key_id} to {args.path}; set FAILSOFT_CONTROL_KEYS_FILE to it")
    else:
        print(f"{args.path} exists; left as it is")
    return 0
