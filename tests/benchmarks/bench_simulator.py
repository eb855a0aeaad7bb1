"""Simulator cost per event against the portfolio size: it must not grow with N.

For each portfolio size the same short scenario runs at the same request rate for the same
compressed duration, so every size produces about the same number of events. Sizes are
measured in turns (20, 100, 1000, 20, 100, 1000, ...) so that machine noise hits them all
alike; each turn times generation alone, and generation plus encoding with the contracts'
codec (what ``failsoft simulate`` does before handing bytes to the producer). Times are the
process's CPU time (the generator is single-threaded), so that other work on a shared
machine does not count. The portfolio set-up (O(N) once per run) is outside the timing.

Run::

    .venv/bin/python -m tests.benchmarks.bench_simulator [--sizes 20 100 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

from schemas.codec import encode
from streams.simulate.run import SimulationRun
from streams.simulate.scenario import SCENARIOS, load_scenario


def _time_run(run: SimulationRun, *, with_encoding: bool) -> tuple[int, float]:
    started = time.process_time()
    count = 0
    if with_encoding:
        for event in run.events():
            encode(event.record)
            count += 1
    else:
        for _ in run.events():
            count += 1
    return count, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="compressed duration")
    args = parser.parse_args()

    scenario = load_scenario(SCENARIOS / "short.toml")
    runs = {
        size: SimulationRun.prepare(
            scenario,
            start_ms=1_800_000_000_000,
            models=size,
            rate=args.rate,
            duration=timedelta(seconds=args.seconds),
        )
        for size in args.sizes
    }
    per_event: dict[tuple[int, bool], list[float]] = {}
    counts: dict[int, int] = {}
    for _ in range(args.repeats):
        for size, run in runs.items():
            for with_encoding in (False, True):
                count, elapsed = _time_run(run, with_encoding=with_encoding)
                counts[size] = count
                per_event.setdefault((size, with_encoding), []).append(elapsed / count * 1e6)

    base = args.sizes[0]
    print(f"rate {args.rate:g}/s for {args.seconds:g} s compressed, {args.repeats} turns")
    print("models   events   generate CPU us/event (median)   ratio   +encode   ratio")
    for size in args.sizes:
        generate = statistics.median(per_event[(size, False)])
        encoded = statistics.median(per_event[(size, True)])
        generate_ratio = generate / statistics.median(per_event[(base, False)])
        encoded_ratio = encoded / statistics.median(per_event[(base, True)])
        print(
            f"{size:6d} {counts[size]:8d} {generate:26.2f} {generate_ratio:13.2f}"
            f" {encoded:9.2f} {encoded_ratio:7.2f}"
        )


if __name__ == "__main__":
    main()
