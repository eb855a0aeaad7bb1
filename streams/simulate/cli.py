"""``failsoft simulate``: play a scenario over a portfolio onto the real topics.

    failsoft simulate --models 20 --seed 7 --scenario deploy/scenarios/default.toml \\
        --time-scale 1440 --duration 3m --timeline timeline.jsonl [--rate 400] [--fast] \\
        [--batch-size 500 [--linger-ms 50]] [--summary summary.json]

Options not given come from the scenario's ``[run]`` table. ``--duration`` is wall-clock
(compressed) time; everything nominal in the scenario is divided by ``--time-scale``.
The timeline is written before the first message, so a watcher can read it at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.settings import Settings
from streams.simulate.publish import LINGER_MS
from streams.simulate.scenario import SCENARIOS

if TYPE_CHECKING:
    from streams.simulate.publish import PublishStats
    from streams.simulate.run import SimulationRun
    from streams.simulate.traffic import SimEvent

__all__ = ["register"]

_PROGRESS_EVERY_S = 10.0

DEFAULT_SCENARIO = SCENARIOS / "default.toml"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish seeded traffic for a portfolio, with scheduled incidents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario TOML file"
    )
    parser.add_argument("--models", type=int, help="synthetic portfolio size (1 to 10000)")
    parser.add_argument(
        "--portfolio", type=Path, help="a portfolio file to simulate instead of a synthetic one"
    )
    parser.add_argument("--seed", type=int, help="seed of the traffic and of the models")
    parser.add_argument("--time-scale", type=float, help="nominal seconds per wall-clock second")
    parser.add_argument("--duration", help="wall-clock length of the run, e.g. 3m or 90s")
    parser.add_argument("--rate", type=float, help="live requests per second, whole portfolio")
    parser.add_argument("--timeline", type=Path, help="write the incident timeline (JSON Lines)")
    parser.add_argument(
        "--write-portfolio",
        type=Path,
        help="write the simulated portfolio, durations compressed, for the workers to read",
    )
    parser.add_argument(
        "--start", help="the run's start, ISO 8601 (default: now); fixes every timestamp"
    )
    parser.add_argument(
        "--fast", action="store_true", help="publish as fast as possible instead of in real time"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="records per message: batch messages of up to this many records of one model "
        "(or feature writer); 1 (the default) publishes single-record messages",
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        default=LINGER_MS,
        help="in real time, the most a batch message waits after its first record, in ms of "
        f"event time (default: {LINGER_MS:g})",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        help="write the counts and how far behind its clock the simulator fell, as JSON, here",
    )
    parser.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.portfolio import PortfolioError, load_portfolio, parse_duration
    from streams.simulate.population import portfolio_toml
    from streams.simulate.run import SimulationRun
    from streams.simulate.scenario import ScenarioError, load_scenario
    from streams.simulate.timeline import write_timeline

    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size: expected 1 or more, got {args.batch_size}")
        if not args.linger_ms >= 0:
            raise ValueError(f"--linger-ms: expected 0 or more, got {args.linger_ms:g}")
        if args.models is not None and args.portfolio is not None:
            raise ValueError("--models and --portfolio: give one, the portfolio sets the models")
        run = SimulationRun.prepare(
            load_scenario(args.scenario),
            start_ms=_start_ms(args.start),
            portfolio=load_portfolio(args.portfolio) if args.portfolio is not None else None,
            models=args.models,
            seed=args.seed,
            duration=parse_duration(args.duration) if args.duration is not None else None,
            rate=args.rate,
            time_scale=args.time_scale,
        )
    except (ScenarioError, PortfolioError, ValueError) as error:
        print(f"failsoft simulate: {error}", file=sys.stderr)
        return 2
    if args.timeline is not None:
        write_timeline(args.timeline, run.timeline())
    if args.write_portfolio is not None:
        args.write_portfolio.write_text(portfolio_toml(run.portfolio, run.time_scale))
    _describe(run, args)
    return _publish(
        run,
        settings,
        realtime=not args.fast,
        batch_size=args.batch_size,
        linger_ms=args.linger_ms,
        summary=args.summary,
    )


def _start_ms(text: str | None) -> int:
    if text is None:
        return int(time.time() * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--start: expected ISO 8601 such as 2026-11-28T12:00:00Z, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _describe(run: SimulationRun, args: argparse.Namespace) -> None:
    from streams.simulate.timeline import iso_utc

    nominal = timedelta(milliseconds=run.duration_ms) * run.time_scale
    print(
        f"failsoft simulate: scenario {run.scenario.name!r}, {len(run.portfolio)} models, "
        f"seed {run.seed}, {run.rate:g} requests/s, {run.duration_ms / 1000:g} s wall "
        f"= {nominal} nominal (time scale {run.time_scale:g}), from {iso_utc(run.start_ms)}"
    )
    for record in run.timeline():
        target = record["model"] + (f" / {record['feature']}" if record["feature"] else "")
        until = record["until"] or "end of run"
        print(
            f"  incident {record['index']}: {record['kind']} on {target}, {record['at']} .. {until}"
        )
    if args.timeline is not None:
        print(f"  timeline written to {args.timeline}")


def _publish(
    run: SimulationRun,
    settings: Settings,
    *,
    realtime: bool,
    batch_size: int,
    linger_ms: float,
    summary: Path | None,
) -> int:
    from confluent_kafka import Producer

    from streams import topics
    from streams.kafka_security import probe
    from streams.simulate.deliveries import DeliveryWatch
    from streams.simulate.publish import Pacer, PublishStats, producer_config, publish
    from streams.simulate.timeline import iso_utc

    names = {spec.suffix: spec.name(settings) for spec in topics.CATALOGUE}
    # A refused password or an untrusted certificate would otherwise show only when the
    # first deliveries time out, minutes later.
    unreachable = probe(settings, topics.KAFKA_PROBE_TIMEOUT_S)
    if unreachable is not None:
        print(f"failsoft simulate: {unreachable}", file=sys.stderr)
        return 1
    reported: set[str] = set()

    def on_error(error: Any) -> None:
        # librdkafka retries what it can by itself; the first error of each kind, timed,
        # is what a stall of deliveries (a run's "still queued" at the end) is read from.
        if error.name() not in reported:
            reported.add(error.name())
            print(f"  Kafka error at {iso_utc(int(time.time() * 1000))}: {error.str()}", flush=True)

    def on_stall(line: str) -> None:
        print(f"  Kafka deliveries at {iso_utc(int(time.time() * 1000))}: {line}", flush=True)

    watch = DeliveryWatch(on_stall)
    producer = Producer({**producer_config(settings), "error_cb": on_error, **watch.config()})
    stats = PublishStats()
    started = time.monotonic()
    last_report = [started]

    def progress(stats: PublishStats, event: SimEvent) -> None:
        now = time.monotonic()
        if now - last_report[0] >= _PROGRESS_EVERY_S:
            last_report[0] = now
            counts = ", ".join(f"{t} {n}" for t, n in sorted(stats.produced.items()))
            print(f"  {now - started:6.1f} s  at {iso_utc(event.at)}: {counts}", flush=True)

    interrupted = False
    try:
        pacer = Pacer(run.start_ms, realtime=realtime)
        publish(
            run.events(),
            producer,
            names,
            pacer,
            batch_size=batch_size,
            linger_ms=linger_ms,
            stats=stats,
            progress=progress,
            watch=watch,
        )
    except KeyboardInterrupt:
        interrupted = True
    _summarize(stats, time.monotonic() - started, interrupted=interrupted, realtime=realtime)
    if summary is not None:
        summary.write_text(json.dumps(stats.summary()) + "\n")
    if stats.failed or stats.undelivered:
        return 1
    return 130 if interrupted else 0


def _summarize(stats: PublishStats, elapsed_s: float, *, interrupted: bool, realtime: bool) -> None:
    total = sum(stats.produced.values())
    state = "interrupted after" if interrupted else "done in"
    rate = total / max(elapsed_s, 1e-9)
    print(
        f"failsoft simulate: {state} {elapsed_s:.1f} s, {total} records ({rate:.0f}/s) "
        f"in {sum(stats.messages.values())} messages"
        + (f", at most {stats.behind_s:.3f} s behind its clock" if realtime else "")
    )
    for topic in sorted(stats.produced):
        print(
            f"  {topic}: produced {stats.produced[topic]}, delivered {stats.delivered[topic]}, "
            f"failed {stats.failed[topic]}"
        )
    for error, count in stats.errors.most_common(3):
        print(f"  delivery error x{count}: {error}")
    if stats.undelivered:
        print(f"  {stats.undelivered} messages still queued when the flush timed out")
