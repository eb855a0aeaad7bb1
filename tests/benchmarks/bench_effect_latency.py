"""Effect latency at a fraction of the worker's maximum rate (issue #12: a p99 of at most
150 ms from a record reaching the worker to its effects being sent, at 80% of its
maximum rate).

Both steps are soaks (``tests.benchmarks.bench_soak``: a real worker and the simulator on
the stack the ``FAILSOFT_*`` settings name, the same portfolio and record mix), one after
the other:

1. **The maximum rate.** The simulator plays ``--probe-rate`` requests/s, more than the
   worker keeps up with, for ``--probe-duration``; the worker's lag grows, and once the
   simulator has ended it drains the backlog alone. Its maximum rate in records/s is what
   it consumed per second while behind: during the traffic after ``--warmup`` (the
   simulator beside it, as in step 2) and during the drain (alone on its share of the
   machine). Records here are what the worker consumes (inputs and the feature writes it
   routes by model), so a request is ``records_per_request`` of them: the records the
   worker consumed in the whole probe, backlog included, per request the simulator
   played. Step 2 takes the maximum while the simulator plays (``max_basis`` "play");
   ``--max-basis drain`` takes the drain's.
2. **The latency.** For each of ``--fractions`` (default 0.8), the simulator plays that
   fraction of the maximum in requests/s for ``--duration``. Every ``--every`` seconds
   the worker's ``failsoft_effect_latency_seconds`` histogram is read from its
   ``/metrics``; the p50 and p99 over the traffic after ``--warmup`` come from the
   difference of two readings (``bench_soak.latency_between``): the bucket's upper bound
   (the bounds include 0.15 s, so "at most 150 ms" is read off exactly) and an
   interpolation inside the bucket. The worst window's p99 shows whether it held
   throughout. Beside them: the records/s consumed, the worker's cores (CPU time of its
   process tree per second), its event-loop thread's CPU and run-queue wait per second
   (``loop_share``: busy near 1 means it ran at the most its CPU share allowed), its
   lag, the machine's busy cores and load average. ``--trees`` measures the worker of
   each source tree in turn (base and branch side by side), ``--rounds`` times.

The worker's latency is counted from the ``getmany`` that read a record to its effects
handed over (``streams.worker.readers``); a micro-batch's records count at its first
record's wait, so it is an upper bound. The machine is shared: the worker's cores say
whether it got the CPU its records need.

``--model`` runs only ``loop_model``, a model of the reader's loop on a core of its own
(no Kafka, no machine): the latency that waiting out a micro-batch's linger while idle
adds (about linger / (1 - utilisation) once one long read has made every model's batch
fall due at one instant), beside feeding what waits when a read finds nothing.

Run from the repository root, on a stack of its own::

    python -m tests.benchmarks.bench_effect_latency --models 20 --features 4 \\
        --probe-rate 1200 --out <folder>
    python -m tests.benchmarks.bench_effect_latency --max-requests-per-s 511 --rounds 3 \\
        --trees base=<checkout of main> branch=. --duration 3m --out <folder>
    python -m tests.benchmarks.bench_effect_latency --model
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.settings import Settings
from streams.worker.readers import EARLY_FEED_S, MICRO_BATCH, MICRO_BATCH_LINGER_S
from tests.benchmarks.bench_soak import (
    Sample,
    latency_between,
    rate_per_s,
    shareable_command,
    soak,
)

# The latency bound of issue #12, seconds.
GOAL_P99_S = 0.15


def steady(samples: Sequence[Sample], start_s: float, end_s: float) -> list[Sample]:
    """The samples from ``start_s`` to ``end_s`` (seconds from the worker's start) that the
    worker answered.

    >>> run = [Sample(t, "play", 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0)
    ...        for t in (0.0, 5.0, 10.0, 15.0)]
    >>> [s.t_s for s in steady(run, 4.0, 12.0)]
    [5.0, 10.0]
    """
    return [s for s in samples if start_s <= s.t_s <= end_s and s.consumed is not None]


def rate_over(samples: Sequence[Sample], field: str) -> float:
    """How fast ``field`` grew per second from the first sample to the last (0 for fewer
    than two): ``consumed`` gives records/s, ``worker_cpu_s`` the worker's mean cores.

    >>> run = [Sample(t, "play", 0, c, 0.0, 0.0, 0.0, 0, 0.0, 0, n, 0, 0, 0, 0)
    ...        for t, c, n in ((0.0, 1.0, 0), (10.0, 4.0, 500))]
    >>> rate_over(run, "consumed"), rate_over(run, "worker_cpu_s"), rate_over(run[:1], "consumed")
    (50.0, 0.3, 0.0)
    """
    return rate_per_s(samples[0], samples[-1], field) if len(samples) > 1 else 0.0


def loop_share(samples: Sequence[Sample]) -> dict[str, float | None]:
    """The worker's event loop thread from the first sample to the last, per second: its
    CPU (its utilisation had it a core of its own) and the time it was ready but waited
    for a CPU (what the machine's other processes took from it).

    >>> run = [Sample(t, "play", 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0,
    ...               loop_cpu_s=c, loop_wait_s=w)
    ...        for t, c, w in ((0.0, 1.0, 0.5), (10.0, 4.0, 2.5))]
    >>> loop_share(run)
    {'loop_cpu_per_s': 0.3, 'loop_wait_per_s': 0.2}
    """
    first, last = samples[0], samples[-1]
    if last.t_s <= first.t_s or None in (first.loop_cpu_s, last.loop_cpu_s):
        return {"loop_cpu_per_s": None, "loop_wait_per_s": None}
    return {
        "loop_cpu_per_s": round(rate_per_s(first, last, "loop_cpu_s"), 3),
        "loop_wait_per_s": round(rate_per_s(first, last, "loop_wait_s"), 3),
    }


def window_latencies(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Per pair of consecutive samples: when, the latency over it, the records/s consumed
    and the worker's cores."""
    windows = []
    for first, last in itertools.pairwise(samples):
        if first.latency is None or last.latency is None:
            continue
        windows.append(
            {
                "t_s": last.t_s,
                **latency_between(first.latency, last.latency),
                "records_per_s": round(rate_over([first, last], "consumed"), 1),
                "worker_cores": round(rate_over([first, last], "worker_cpu_s"), 3),
                **loop_share([first, last]),
                "load1": round(last.load1, 2),
            }
        )
    return windows


def maximum(result: dict[str, Any], warmup_s: float) -> dict[str, Any]:
    """The worker's maximum rate from a probe soak that it did not keep up with."""
    samples = [Sample(**s) for s in result["samples"]]
    play = steady(samples, result["play_start_s"] + warmup_s, result["play_end_s"])
    drain = [s for s in samples if s.phase == "drain" and s.consumed is not None]
    # The drain's last sample is the one that found the lag gone: the rate until then.
    draining = [play[-1], *drain] if play else drain
    summary = result["summary"]
    simulated = summary["simulator"] or {}
    requests = result["settings"]["rate_requests_per_s"] * simulated.get("elapsed_s", 0.0)
    consumed = summary["worker"]["records_consumed"]
    lags = [s.lag_records or 0 for s in play]
    return {
        "probe_rate_requests_per_s": result["settings"]["rate_requests_per_s"],
        "simulator": simulated,
        "records_per_request": round(consumed / requests, 3) if requests else None,
        "play_records_per_s": round(rate_over(play, "consumed"), 1),
        "play_worker_cores": round(rate_over(play, "worker_cpu_s"), 3),
        "drain_records_per_s": round(rate_over(draining, "consumed"), 1),
        "drain_worker_cores": round(rate_over(draining, "worker_cpu_s"), 3),
        "drain_s": round(draining[-1].t_s - draining[0].t_s, 1) if len(draining) > 1 else None,
        # Behind throughout: the lag grew from the warm-up to the traffic's end.
        "lag_records": [lags[0], lags[-1]] if lags else None,
        "load1_median": round(statistics.median(s.load1 for s in play), 2) if play else None,
        "machine_busy_cores_median": round(statistics.median(s.machine_busy_cores for s in play), 2)
        if play
        else None,
    }


def latency_row(
    result: dict[str, Any], warmup_s: float, max_records_per_s: float
) -> dict[str, Any]:
    """The latency and load of one soak over its traffic after the warm-up."""
    samples = [Sample(**s) for s in result["samples"]]
    play = steady(samples, result["play_start_s"] + warmup_s, result["play_end_s"])
    timed = [s for s in play if s.latency is not None]
    overall = latency_between(timed[0].latency or {}, timed[-1].latency or {}) if timed else {}
    windows = window_latencies(timed)
    rate = rate_over(play, "consumed")
    return {
        "rate_requests_per_s": result["settings"]["rate_requests_per_s"],
        "records_per_s": round(rate, 1),
        "of_max": round(rate / max_records_per_s, 3) if max_records_per_s else None,
        **overall,
        "worst_window_p99_le_s": max(
            (w["p99_le_s"] for w in windows if w["p99_le_s"] is not None), default=None
        ),
        "windows_over_goal": sum(
            1 for w in windows if w["p99_le_s"] is not None and w["p99_le_s"] > GOAL_P99_S
        ),
        "windows": len(windows),
        "worker_cores": round(rate_over(play, "worker_cpu_s"), 3),
        **loop_share(play),
        "worker_cores_range": [
            min((w["worker_cores"] for w in windows), default=None),
            max((w["worker_cores"] for w in windows), default=None),
        ],
        "lag_records_max": max((s.lag_records or 0 for s in play), default=None),
        "load1_median": round(statistics.median(s.load1 for s in play), 2) if play else None,
        "load1_max": round(max(s.load1 for s in play), 2) if play else None,
        "machine_busy_cores_median": round(statistics.median(s.machine_busy_cores for s in play), 2)
        if play
        else None,
        "per_window": windows,
    }


def loop_model(
    early_s: float | None,
    utilisation: float,
    per_batch_s: float,
    *,
    models: int = 20,
    records_per_s: float = 2400.0,
    per_message: int = 1,
    linger_s: float = MICRO_BATCH_LINGER_S,
    size: int = MICRO_BATCH,
    seconds: float = 60.0,
    seed: int = 1,
) -> tuple[float, float, float]:
    """The p50 and p99 (seconds) and the micro-batches fed per second of a model of the
    reader's loop on a core of its own, no machine around it: messages of ``per_message``
    records arrive at random (Poisson) over ``models`` models; a read takes every message
    arrived, its time is theirs; feeding a batch of n records holds the loop
    ``per_batch_s + n * utilisation / records_per_s``. A batch is fed at its size or
    linger; with ``early_s``, also once a read finds nothing and its first record has
    waited ``early_s`` (``streams.worker.readers.EARLY_FEED_S``; 0 feeds everything
    waiting, the reader tried before: it cut the p99 but fed nearly every message alone,
    2.6 times the worker's CPU per record at half its maximum rate; README, "Effect
    latency"). None waits out the linger.

    >>> [round(q, 3) for q in loop_model(None, 0.5, 0.0002, seconds=5.0)]
    [0.055, 0.066, 317.6]
    >>> [round(q, 3) for q in loop_model(0.0, 0.5, 0.0002, seconds=5.0)]
    [0.001, 0.005, 2170.0]
    >>> [round(q, 3) for q in loop_model(0.01, 0.5, 0.0002, seconds=5.0)]
    [0.012, 0.017, 1011.8]
    """
    rng = random.Random(seed)
    per_record = utilisation / records_per_s
    arrivals, at = [], 0.0
    while at < seconds:
        at += rng.expovariate(records_per_s / per_message)
        arrivals.append((at, rng.randrange(models)))
    now, next_arrival, fed = 0.0, 0, 0
    pending: dict[int, list[float]] = {}  # model: [its first record's read, records]
    latencies: list[float] = []
    while now < seconds:
        read = 0
        while next_arrival < len(arrivals) and arrivals[next_arrival][0] <= now:
            entry = pending.setdefault(arrivals[next_arrival][1], [now, 0])
            entry[1] += per_message
            next_arrival, read = next_arrival + 1, read + 1
        coming = arrivals[next_arrival][0] if next_arrival < len(arrivals) else seconds
        # Fed early: after a read that found nothing, what waited ``early_s``.
        early = early_s is not None and not read
        due = [
            model
            for model, (since, n) in pending.items()
            if since + linger_s <= now or n >= size or (early and since + early_s <= now)
        ]
        if not due and not read:
            # Nothing to do: the reader waits for a message, or the first deadline.
            waits = [since + linger_s for since, _ in pending.values()]
            if early_s is not None:
                waits += [since + early_s for since, _ in pending.values()]
            now = max(now, min([coming, *waits]))
            continue
        for model in due:
            since, n = pending.pop(model)
            now += per_batch_s + n * per_record
            latencies += [now - since] * int(n)
            fed += 1
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)], fed / seconds


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table of the README: one line per run."""

    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1000:.0f}"

    lines = [
        "| tree | requests/s | of max | records/s | p50 (ms, bucket / interp.) | p99 (ms, bucket"
        " / interp.) | worst 5 s p99 (ms) | worker cores | loop waiting for a CPU (s/s)"
        " | load 1 min (median, max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['tree']} | {row['rate_requests_per_s']:g} | {row['of_max']:.0%}"
            f" | {row['records_per_s']:,.0f}"
            f" | {ms(row.get('p50_le_s'))} / {ms(row.get('p50_s'))}"
            f" | {ms(row.get('p99_le_s'))} / {ms(row.get('p99_s'))}"
            f" | {ms(row['worst_window_p99_le_s'])} | {row['worker_cores']:.2f}"
            f" | {row['loop_wait_per_s']} | {row['load1_median']}, {row['load1_max']} |"
        )
    return "\n".join(lines)


def medians(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per tree and fraction: the median over its rounds of the p50, the p99 and the
    worker's cores.

    >>> medians([{"tree": "a", "fraction": 0.8, "p50_s": p, "p99_s": 2 * p, "worker_cores": 0.5}
    ...          for p in (0.1, 0.3, 0.2)])
    {'a at 0.8': {'rounds': 3, 'p50_s': 0.2, 'p99_s': 0.4, 'worker_cores': 0.5}}
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(f"{row['tree']} at {row['fraction']:g}", []).append(row)
    return {
        key: {"rounds": len(group)}
        | {
            field: statistics.median(row[field] for row in group)
            for field in ("p50_s", "p99_s", "worker_cores")
        }
        for key, group in groups.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--features", type=int, default=4, help="numeric features per model")
    parser.add_argument("--probe-rate", type=float, default=1200.0, help="requests/s, over max")
    parser.add_argument("--probe-duration", default="2m")
    parser.add_argument(
        "--max-requests-per-s",
        type=float,
        help="skip the probe: the maximum in requests/s, measured before",
    )
    parser.add_argument("--max-basis", choices=("play", "drain"), default="play")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.8])
    parser.add_argument("--duration", default="4m", help="traffic per fraction")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of traffic left out")
    parser.add_argument("--batch-size", type=int, default=50, help="records per message, at most")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--trees",
        nargs="+",
        default=[],
        metavar="LABEL=PATH",
        help="source trees whose worker to measure in turn, each round (e.g. base=<checkout>"
        " branch=.): the worker's PYTHONPATH",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per tree and fraction")
    parser.add_argument("--out", type=Path, help="folder for the JSON")
    parser.add_argument(
        "--per-message", type=int, default=1, help="with --model: records per message"
    )
    parser.add_argument(
        "--model",
        action="store_true",
        help="only the model of the reader's loop (``loop_model``), waiting or feeding when idle",
    )
    args = parser.parse_args(argv)
    if args.model:
        print(
            "per batch, utilisation: p50, p99 ms, batches/s: waiting out the linger"
            " | feeding early after EARLY_FEED_S | feeding everything waiting when idle"
        )
        for per_batch_s in (0.0002, 0.001):
            for utilisation in (0.5, 0.7, 0.8, 0.9):
                modelled = [
                    loop_model(early, utilisation, per_batch_s, per_message=args.per_message)
                    for early in (None, EARLY_FEED_S, 0.0)
                ]
                print(
                    f"{per_batch_s * 1000:g} ms, {utilisation:.0%}: "
                    + " | ".join(
                        f"{p50 * 1000:.0f}, {p99 * 1000:.0f} ms, {fed:.0f}/s"
                        for p50, p99, fed in modelled
                    )
                )
        return 0
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    trees = [tuple(tree.split("=", 1)) for tree in args.trees] or [
        ("this", os.environ.get("PYTHONPATH", "."))
    ]

    def run(rate: float, duration: str, tree: Sequence[str]) -> dict[str, Any]:
        started = time.monotonic()
        soak_args = argparse.Namespace(
            models=args.models,
            features=args.features,
            rate=round(rate, 1),
            duration=duration,
            batch_size=args.batch_size,
            every=args.every,
            warm=None,
            warm_rate=None,
        )
        # The worker (a child process) imports failsoft from this tree.
        os.environ["PYTHONPATH"] = str(Path(tree[1]).resolve())
        print(f"effect latency: {tree[0]}, {soak_args.rate} requests/s for {duration}", flush=True)
        result = soak(soak_args, settings)
        print(f"effect latency: run took {time.monotonic() - started:.0f} s", flush=True)
        return result

    found: dict[str, Any] = {
        "command": shareable_command("tests.benchmarks.bench_effect_latency", sys.argv[1:]),
        "settings": vars(args) | {"out": None},
    }
    if args.max_requests_per_s is None:
        found["max"] = maximum(run(args.probe_rate, args.probe_duration, trees[0]), args.warmup)
        max_records = found["max"][f"{args.max_basis}_records_per_s"]
        max_requests = max_records / found["max"]["records_per_request"]
    else:
        max_requests = args.max_requests_per_s
        max_records = 0.0
    found["max_requests_per_s"] = round(max_requests, 1)
    print(json.dumps(found, indent=1), flush=True)
    rows: list[dict[str, Any]] = []
    for fraction in args.fractions:
        for round_ in range(args.rounds):
            for tree in trees:
                result = run(fraction * max_requests, args.duration, tree)
                if not max_records:
                    # The maximum given in requests/s: in records, at this run's records
                    # per request.
                    max_records = (
                        max_requests
                        * result["summary"]["worker"]["records_consumed"]
                        / (
                            result["settings"]["rate_requests_per_s"]
                            * (result["summary"]["simulator"] or {}).get("elapsed_s", 1.0)
                        )
                    )
                row = latency_row(result, args.warmup, max_records)
                row |= {"tree": tree[0], "round": round_, "fraction": fraction}
                row["summary"] = result["summary"]
                rows.append(row)
                print(markdown([row]), flush=True)
                found["max_records_per_s"] = round(max_records, 1)
                found["rows"] = rows
                found["medians"] = medians(rows)
                (args.out / "effect_latency.json").write_text(json.dumps(found, indent=1) + "\n")
    print(markdown(rows))
    print(json.dumps(found["medians"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
