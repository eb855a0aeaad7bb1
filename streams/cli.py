"""The ``failsoft`` command line.

Each command group lives in its own module, which exposes ``register(subparsers)`` and
sets ``handler(args, settings) -> int`` on its parsers; this module only assembles them,
so a group's imports (Faust, Kafka clients) load only when that group runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streams.settings import Settings

COMMAND_MODULES = (
    "streams.stack",
    "streams.topics",
    "streams.control",
    "streams.simulate.cli",
    "streams.worker.cli",
    "streams.demo.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="failsoft",
        description="Watch a portfolio of ML models on Kafka and make the fleet fail soft.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as error:
        print(f"failsoft: {error}", file=sys.stderr)
        return 2
    return int(args.handler(args, settings))


if __name__ == "__main__":
    sys.exit(main())
