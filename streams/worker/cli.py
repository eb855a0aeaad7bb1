"""``failsoft worker``: run one Faust worker of the pipeline until interrupted.

Workers that share ``FAILSOFT_WORKER_APP_ID`` share the input partitions; two on one host
need their own ``FAILSOFT_WORKER_WEB_PORT`` and ``FAILSOFT_WORKER_DATA_DIR``. The worker
reads the portfolio (``FAILSOFT_PORTFOLIO_PATH``) once; its app creates or corrects the
topics of the catalogue, its internal topic and its tables' changelogs as it starts
(idempotent, like ``failsoft topics create``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from streams.settings import Settings

if TYPE_CHECKING:
    import faust


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker", help="run a Faust worker: ingest, detectors, control commands, alerts, metrics"
    )
    parser.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.signing import Keyring
    from streams.cli import EXTRA_OF_MODULE, installed
    from streams.kafka_security import probe
    from streams.monitor import check_models
    from streams.portfolio import PortfolioError, load_portfolio
    from streams.topics import KAFKA_PROBE_TIMEOUT_S

    # The settings first (the detectors' included, so a refused one is told without a
    # broker), then Kafka, then the app: Faust's import alone takes seconds, and a refused
    # password or an untrusted certificate must be told within a few. A missing extra is
    # told first, as importing the app would (streams.cli names the extra).
    for module, extra in EXTRA_OF_MODULE.items():
        if extra == "worker" and not installed(module):
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    try:
        portfolio = load_portfolio(settings.portfolio_path)
        check_models(portfolio)
        Keyring.from_settings(settings)
        # One line rather than the traceback of the app's start, which needs Kafka first,
        # or than Faust's endless retries with a refused password or certificate.
        unreachable = probe(settings, KAFKA_PROBE_TIMEOUT_S)
        if unreachable is not None:
            print(f"failsoft worker: {unreachable}", file=sys.stderr)
            return 1
        from streams.monitor.warm_up import warm_up
        from streams.worker.app import create_app

        # Before the first record: compiling on a batch would stall every model's records.
        warm_up(portfolio)
        app = create_app(settings, portfolio)
    except PortfolioError as error:
        print(f"failsoft worker: {settings.portfolio_path}: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # a key or secret file that cannot be read, a short key
        print(f"failsoft worker: {error}", file=sys.stderr)
        return 2
    print(
        f"failsoft worker: {len(app.portfolio)} models from {settings.portfolio_path}, "
        f"web on {settings.worker_web_host}:{settings.worker_web_port}"
    )
    if app.keyring.signing_key_id is None:
        print(
            "failsoft worker: no control signing key (FAILSOFT_CONTROL_PRIVATE_KEY_FILE): "
            "fallbacks and restores are alerted and counted as "
            "withheld, never sent to the fleet",
            file=sys.stderr,
        )
    # Worker runs the loop, handles SIGINT/SIGTERM and stops the app cleanly.
    faust_worker(app, args.loglevel).execute_from_commandline()
    return 0


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """Faust's worker for ``app``, logging at ``loglevel`` and nothing below it."""
    from faust import Worker

    worker = Worker(app, loglevel=loglevel)
    # At a level of warning or above, Faust's start-up spinner sets the root logger to
    # DEBUG for the rest of the run, so aiokafka and Faust build a record for every debug
    # line that the handler then drops: 6% of the worker's samples in the demo (py-spy).
    worker.spinner = None
    return worker
