"""The ``failsoft`` command line.

Each command group lives in its own module, which exposes ``register(subparsers)`` and
sets ``handler(args, settings) -> int`` on its parsers; this module only assembles them,
so a group's imports (Faust, Kafka clients) load only when that group runs.

A plain ``pip install failsoft`` (a serving node's) has the fleet client and the
``control`` and ``topics`` commands; a command that needs an extra it lacks says which,
in one line, instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Final

from streams.settings import Settings

COMMAND_MODULES = (
    "streams.stack",
    "streams.topics",
    "streams.control",
    "streams.simulate.cli",
    "streams.worker.cli",
    "streams.demo.cli",
)

# Third-party modules that a plain install lacks, by the extra that brings them
# (tests/streams/test_cli_extras.py keeps this in step with the code's imports and pyproject).
EXTRA_OF_MODULE: Final = {
    "aiohttp": "worker",
    "aiokafka": "worker",
    "faust": "worker",
    "influxdb_client": "worker",
    "numba": "worker",
    "numpy": "worker",
    "prometheus_client": "worker",
    "rich": "worker",
    "river": "worker",
    "psycopg2": "stack",
}


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
    try:
        code = int(args.handler(args, settings))
        # Inside the try: a pipe's reader that left shows here, not at the exit's flush.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # ``failsoft topics list | head``: the reader has what it wanted. Python would
        # flush stdout again on exit and fail once more, so stdout goes to nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as error:
        extra = missing_extra(error)
        if extra is None:
            raise
        print(
            f"failsoft {args.command}: needs the {extra} extra ({error.name} is not installed): "
            f"pip install 'failsoft[{extra}]'",
            file=sys.stderr,
        )
        return 2


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra to install when ``error`` is a module of one that is not installed."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    # An installed module that lacks a submodule is a bug or a broken install, not an extra.
    return extra if extra is not None and not installed(module) else None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported, but without a spec: Faust replaces itself by a lazy module
        return True


if __name__ == "__main__":
    sys.exit(main())
