"""Simulator cost per event against the portfolio size: it must not grow with N.

For each portfolio size the same scenario runs at the same request rate for the same
compressed duration, so every size produces about the same number of events. Sizes are
measured in turns (20, 100, 1000, 20, 100, 1000, ...) so that machine noise hits them all
alike; each turn times generation alone; generation plus encoding with the contracts'
codec; and ``publish`` to a producer that drops every message, with single-record
messages and with batch messages of ``--batch-size`` records (what ``failsoft simulate``
does before librdkafka gets the bytes). Times are the process's CPU time (the generator is
single-threaded), so that other work on a shared machine does not count. The portfolio
set-up (O(N) once per run) is outside the timing.

Run::

    .venv/bin/python -m tests.benchmarks.bench_simulator [--sizes 20 100 1000] [--repeats 5]

``--scenario default.toml --seconds 0 --sizes 0`` times the demo's own run: the scenario's
portfolio and duration (at ``--rate``, 4000 for the demo at ten times its rate).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from schemas.codec import encode
from streams.simulate.publish import Pacer, publish
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario
from streams.simulate.traffic import FEATURE_WRITES, GROUND_TRUTH, PREDICTIONS

_TOPIC_NAMES = {name: name for name in (PREDICTIONS, FEATURE_WRITES, GROUND_TRUTH)}


class _NullProducer:
    """Takes every message and drops it: what is timed is the simulator's own work."""

    def produce(
        self, topic: str, *, value: bytes, key: bytes, timestamp: int, on_delivery: Any
    ) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def _generate(run: SimulationRun) -> int:
    count = 0
    for _ in run.events():
        count += 1
    return count


def _encode(run: SimulationRun) -> int:
    count = 0
    for event in run.events():
        encode(event.record)
        count += 1
    return count


def _publish(batch_size: int) -> Callable[[SimulationRun], int]:
    def play(run: SimulationRun) -> int:
        pacer = Pacer(run.start_ms, realtime=False)
        stats = publish(run.events(), _NullProducer(), _TOPIC_NAMES, pacer, batch_size=batch_size)
        return sum(stats.produced.values())

    return play


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[20, 100, 1000], help="0: the scenario's"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="compressed duration (0: the scenario's)"
    )
    parser.add_argument("--scenario", default="short.toml", help="a file of the scenarios")
    parser.add_argument("--batch-size", type=int, default=500, help="records per batch message")
    args = parser.parse_args()

    scenario = load_scenario(SCENARIOS / args.scenario)
    runs = {
        size: SimulationRun.prepare(
            scenario,
            start_ms=1_800_000_000_000,
            models=size or None,
            rate=args.rate,
            duration=timedelta(seconds=args.seconds) if args.seconds else None,
        )
        for size in args.sizes
    }
    plays = {
        "generate": _generate,
        "+encode": _encode,
        "publish 1": _publish(1),
        f"publish {args.batch_size}": _publish(args.batch_size),
    }
    per_event: dict[tuple[int, str], list[float]] = {}
    counts: dict[int, int] = {}
    for _ in range(args.repeats):
        for size, run in runs.items():
            for name, play in plays.items():
                started = time.process_time()
                count = play(run)
                elapsed = time.process_time() - started
                counts[size] = count
                per_event.setdefault((size, name), []).append(elapsed / count * 1e6)

    base = args.sizes[0]
    seconds = f"{args.seconds:g} s" if args.seconds else "the scenario's duration"
    print(
        f"{args.scenario}: rate {args.rate:g}/s for {seconds} compressed, {args.repeats} turns;"
        " CPU us/event, median (ratio to the first size)"
    )
    print("models   events" + "".join(f" {name:>18}" for name in plays))
    for size in args.sizes:
        cells = []
        for name in plays:
            median = statistics.median(per_event[(size, name)])
            ratio = median / statistics.median(per_event[(base, name)])
            cells.append(f"{median:11.2f} ({ratio:4.2f})")
        print(f"{len(runs[size].portfolio):6d} {counts[size]:8d} " + " ".join(cells))


if __name__ == "__main__":
    main()
