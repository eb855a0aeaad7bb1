"""``failsoft stack up|down|status [SERVER...]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import Settings
from streams.stack.control import SERVERS, compose_secrets, down, status, up
from streams.stack.process import StackError, log_tail

STATUS_UNHEALTHY = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the local Kafka, InfluxDB, PostgreSQL and Alerta servers",
        description="Start, stop or inspect the local servers. Ports, cache and state "
        "folders come from the FAILSOFT_* settings.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    for action, handler, help_text in (
        ("up", _up, "start the servers that are not running (idempotent)"),
        ("down", _down, "stop the servers and wait until none of their processes is left"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("servers", nargs="*", metavar="SERVER", help=f"of {', '.join(SERVERS)}")
        sub.set_defaults(handler=handler)
    actions.add_parser("status", help="show each server and whether it is healthy").set_defaults(
        handler=_status
    )
    actions.add_parser(
        "secrets",
        help="make the stack's secrets without starting it, and the variables of "
        "deploy/compose.secured.yaml (for docker compose --env-file)",
    ).set_defaults(handler=_secrets)
    actions.add_parser(
        "grant",
        help="create the SASL_SSL users and grant their ACLs for the settings' topic prefix "
        "and app id, through the plaintext (super user's) listener of FAILSOFT_KAFKA_BOOTSTRAP",
    ).set_defaults(handler=_grant)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    before = [entry.name for entry in status(settings) if entry.healthy]
    try:
        up(settings, args.servers or None, report=_say)
    except ValueError as error:
        print(f"failsoft stack: {error}", file=sys.stderr)
        return 2
    except StackError as error:
        tail = log_tail(error.log)
        # A log holding only the cause itself (a port taken before launch) adds nothing.
        if len(tail.splitlines()) > 1:
            print(f"--- last lines of {error.log}\n{tail}\n---", file=sys.stderr)
        print(f"failsoft stack: {error}", file=sys.stderr)
        return 1
    wanted = args.servers or list(SERVERS)
    if all(name in before for name in wanted):
        _say("stack: already up, nothing to do")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    try:
        for line in down(settings, args.servers or None):
            _say(line)
    except (ValueError, StackError) as error:
        print(f"failsoft stack: {error}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    entries = status(settings)
    for entry in entries:
        print(entry.describe())
    return 0 if all(entry.healthy for entry in entries) else STATUS_UNHEALTHY


def _secrets(args: argparse.Namespace, settings: Settings) -> int:
    try:
        path = compose_secrets(settings)
    except ValueError as error:
        print(f"failsoft stack: {error}", file=sys.stderr)
        return 1
    _say(f"stack: secrets in {settings.state_dir}; compose variables in {path}")
    return 0


def _grant(args: argparse.Namespace, settings: Settings) -> int:
    kafka = SERVERS["kafka"]
    if not kafka.healthy(settings):
        print(f"failsoft stack: no Kafka answers at {settings.kafka_bootstrap}", file=sys.stderr)
        return 1
    kafka.after_start(settings)
    prefix = settings.topic_prefix
    _say(f"stack: users and ACLs granted for prefix {prefix!r} at {settings.kafka_bootstrap}")
    return 0


def _say(line: str) -> None:
    # Flushed at once, so a CI log shows each server as it comes up.
    print(line, flush=True)
