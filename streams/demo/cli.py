"""``failsoft demo`` and ``failsoft report``.

    failsoft demo [--scenario FILE] [--duration 3m] [--report-json PATH] [--keep-stack]
    failsoft report PATH                      # print a saved report (JSON) again

The demo starts what it needs (the stack's servers that are down, topics of its own, a
control key when none is configured, one worker, the example serving node), plays the
scenario in compressed time with a live view, and prints the report. Its files (portfolio,
timeline, logs of the worker and the simulator, the report as Markdown and JSON) are kept
in ``<state dir>/demo/<run id>/``. Ctrl-C stops it cleanly, with a report of what was
seen so far; it leaves nothing running unless ``--keep-stack`` is given.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from streams.settings import Settings
from streams.simulate.scenario import SCENARIOS

if TYPE_CHECKING:
    from streams.demo.report import Report

__all__ = ["register"]

INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the whole loop on this machine: incidents, detection, fallback, report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--scenario", type=Path, default=SCENARIOS / "default.toml", help="scenario TOML file"
    )
    demo.add_argument("--models", type=int, help="synthetic portfolio size (scenario's default)")
    demo.add_argument("--seed", type=int, help="seed of traffic and models (scenario's default)")
    demo.add_argument("--duration", help="wall-clock length, e.g. 3m (scenario's default)")
    demo.add_argument("--time-scale", type=float, help="nominal seconds per wall-clock second")
    demo.add_argument("--rate", type=float, help="live requests per second, whole portfolio")
    demo.add_argument(
        "--batch-size",
        type=_records_per_message,
        default=1,
        help="records per message, as the fleet client batches them: up to this many "
        "records of one model (or feature writer); 1 (the default) sends single records",
    )
    demo.add_argument("--report-json", type=Path, help="also write the report (JSON) here")
    demo.add_argument("--report-md", type=Path, help="also write the report (Markdown) here")
    demo.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave the servers and the run's topics up afterwards",
    )
    demo.set_defaults(handler=_demo)

    report = subparsers.add_parser("report", help="print a saved demo report again")
    report.add_argument("path", type=Path, metavar="PATH", help="a report written as JSON")
    report.add_argument("--json", action="store_true", help="print it as JSON, not Markdown")
    report.set_defaults(handler=_report)


def _records_per_message(text: str) -> int:
    """``--batch-size``, checked before anything starts (the simulator would refuse it
    only once the stack is up)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.live import Live

    from streams.demo.run import HEALTH_POLL_S, DemoError, DemoOptions, DemoRun, default_run_id
    from streams.demo.view import DemoView
    from streams.portfolio import PortfolioError
    from streams.simulate.scenario import ScenarioError
    from streams.stack import StackError

    console = Console()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    run_id = default_run_id()
    options = DemoOptions(
        scenario=args.scenario,
        run_id=run_id,
        run_dir=settings.state_dir / "demo" / run_id,
        models=args.models,
        seed=args.seed,
        duration=args.duration,
        time_scale=args.time_scale,
        rate=args.rate,
        batch_size=args.batch_size,
        keep_stack=args.keep_stack,
    )
    # SIGTERM stops the demo as Ctrl-C does, so that it still cleans up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report: Report | None = None
    code = 0
    run: DemoRun | None = None
    try:
        run = DemoRun(settings, options, say)
        run.prepare()
        say(f"demo: starting a worker (log: {options.run_dir / 'worker.log'})")
        run.start_worker()
        run.wait_worker_ready()
        run.start_node()
        view = DemoView(
            console,
            f"failsoft demo: scenario {run.scenario.name}, {len(run.models)} models",
            run.models,
            [],
            time.time_ns() // 1_000_000,
            run.duration_ms,
        )
        run.switches.on_item = view.on_switch
        run.start_taps(view.on_command, view.on_alert)
        view.incidents = run.start_simulator()
        view.started_ms = time.time_ns() // 1_000_000
        last_poll = [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now - last_poll[0] >= HEALTH_POLL_S:
                last_poll[0] = now
                models = run.worker_models() if run is not None else None
                if models is not None:
                    view.set_health(models)
            view.announce_injections(time.time_ns() // 1_000_000)
            if run is not None:
                view.set_status(run.phase)
            live.update(view.render())

        try:
            with Live(view.render(), console=console, refresh_per_second=2) as live:
                try:
                    run.play(tick)
                except KeyboardInterrupt:
                    view.set_status("interrupted")
                    raise
        finally:
            if not console.is_terminal:
                console.line()  # off a terminal, Live's last frame ends without one
        report = run.finish()
    except KeyboardInterrupt:
        say("demo: interrupted; stopping what it started")
        code = INTERRUPTED
        if run is not None and run.started_ms:
            report = run.finish()
    except (DemoError, StackError, ScenarioError, PortfolioError, ValueError, OSError) as error:
        say(f"failsoft demo: {error}")
        code = 1
    finally:
        if run is not None:
            try:
                run.close()
            except KeyboardInterrupt:
                say("demo: interrupted again while stopping; some processes may be left")
    if report is not None:
        _write_report(report, options.run_dir, args.report_json, args.report_md, say)
        # Plain, so that the table's rows are not wrapped to the terminal's width.
        print("\n" + report.to_markdown(), flush=True)
    return code


def _write_report(
    report: Report,
    run_dir: Path,
    json_path: Path | None,
    md_path: Path | None,
    say: Callable[[str], None],
) -> None:
    for path, text in (
        (run_dir / "report.json", report.dumps()),
        (run_dir / "report.md", report.to_markdown()),
        (json_path, report.dumps()),
        (md_path, report.to_markdown()),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    say(f"demo: report written to {run_dir / 'report.md'} and {run_dir / 'report.json'}")


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo.report import Report

    try:
        report = Report.from_json(json.loads(args.path.read_text()))
    except (OSError, ValueError) as error:
        print(f"failsoft report: {args.path}: {error}", file=sys.stderr)
        return 1
    print(report.dumps() if args.json else report.to_markdown(), end="")
    return 0
