"""The breaker on the serving path: what it costs when nothing trips, and how fast it trips.

Overhead, in one run, ``--rounds`` rounds of ``--calls`` calls of each variant (the order
rotates per round), each call timed alone with ``perf_counter_ns``:

- ``no breaker``: ``routed.route(user)`` of a model that returns a constant list;
- ``breaker, no deadline``: the same model behind ``BreakerSettings(deadline_ms=None)``
  (called on the serving thread; the breaker only keeps its books);
- ``breaker, 100 ms deadline``: behind the default settings but the SLO (each call handed
  to a pool thread and waited for);
- ``executor hand-off``: for reference, no router: ``ThreadPoolExecutor.submit(model,
  user).result(timeout)``, the usual way to put a deadline on a call;
- ``SimpleQueue round trip``: for reference, no router: the job put on a ``SimpleQueue``
  that a waiting thread gets, calls and answers on a second one: the floor of any
  synchronous deadline in CPython, which needs the call on another thread (two wake-ups);
- ``asyncio, no breaker``, ``asyncio, no deadline`` and ``asyncio, 100 ms deadline``: on
  an asyncio server, ``await routed.route_async(user)`` of a coroutine model that returns
  the same list, bare and behind the same settings (the deadline on one event-loop timer
  shared by the model's calls, ``Breaker.call_async``: no thread hand-off, no timer per
  call);
- ``asyncio, asyncio.timeout``: for reference, the same behind a breaker whose
  ``call_async`` puts each call under its own ``asyncio.timeout`` (the mechanism before
  the shared timer). Each round runs in one ``asyncio.run``, its start and end outside the
  timed calls, and the loop runs once between calls (``asyncio.sleep(0)``, untimed), as a
  server's loop does between requests.

Reports, per variant, the medians over rounds of p50 and p99 wall time per call (us); of
``p99 np``, the p99 of the calls the OS did not preempt the serving thread during or just
before (its involuntary context switches, ``getrusage(RUSAGE_THREAD).ru_nivcsw``, read
after each call, untimed): on a loaded machine a call preempted for a time slice costs
milliseconds whatever the mechanism, the longer a call the likelier, and the call right
after a preemption runs with caches the other processes filled, the more code it runs
the slower. It means little for the thread hand-offs, whose woken thread itself preempts
the serving thread. Then the share of calls so preempted, the CPU time per call
(``process_time`` over the loop, every thread of the process, the ``getrusage`` call
included) and the CPU per call above ``no breaker``'s. With ``--busy-thread``, a
CPU-bound Python thread runs beside the overhead rounds (see ``BusyThread``; the CPU per
call then includes its time too: read the wall times).

Trip, ``--trials`` times with a fresh breaker (deadline 100 ms, SLO p99 50 ms, 5 failures
to trip, cool-down 0.2 s, probe share 0.5, 3 probes to close): a model whose latency is
log-normal around 20 ms (seeded) answers 3 calls, then its latency jumps to 800 ms. Timed:
from calling ``route`` for the first call over the deadline to that call returning the
fallback (the acceptance figure: p99 within the deadline plus 1 ms); from the same start to
the breaker open (5 calls); then, once latency is back to ~20 ms, from the first call
after the cool-down to the breaker closed by probes. Calls are serial, 5 ms apart while
fallbacks are served at once. Alternated with the trials: the first fallback on an asyncio
server (``route_async``, a model that awaits 800 ms), and, for reference, a bare
``Lock.acquire(timeout=0.1)`` that times out (how late the OS wakes a thread waiting for
the deadline, which the first figure includes). Also reports the load average. Run::

    .venv/bin/python -m tests.benchmarks.bench_fleet_breaker     # 3 rounds of 20,000; 100 trials
    .venv/bin/python -m tests.benchmarks.bench_fleet_breaker --busy-thread --trials 10
    .venv/bin/python -m tests.benchmarks.bench_fleet_breaker --rounds 9 --trials 0
    .venv/bin/python -m pytest tests/benchmarks/bench_fleet_breaker.py -s
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import os
import random
import resource
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Any

from streams.fleet import Breaker, BreakerSettings, Router
from streams.fleet.breaker import Outcome
from tests.fleet.helpers import percentiles
from tests.fleet.test_router import Modes

ITEMS = [f"item-{i}" for i in range(10)]
DEADLINE_MS = 100.0


def _model(user: str) -> list[str]:
    return ITEMS


def _top(user: str) -> list[str]:
    return ITEMS


# The breaker's books cost the same whatever the SLO; one far above any call keeps a late
# wake-up on a loaded machine (or behind a busy thread) from tripping a breaker mid-round,
# which would then time its short-circuits instead of its calls.
OVERHEAD_SLO_MS = 10_000.0
# The references wait with a timeout, as a deadline would, but one no late wake-up reaches:
# on a heavily loaded machine a hand-off can take over 100 ms, which would end the run.
REFERENCE_WAIT_S = OVERHEAD_SLO_MS / 1e3
VARIANTS: dict[str, BreakerSettings | None] = {
    "no breaker": None,
    "breaker, no deadline": BreakerSettings(deadline_ms=None, slo_p99_ms=OVERHEAD_SLO_MS),
    "breaker, 100 ms deadline": BreakerSettings(
        deadline_ms=DEADLINE_MS, slo_p99_ms=OVERHEAD_SLO_MS
    ),
}


async def _async_model(user: str) -> list[str]:
    return ITEMS


ASYNC_VARIANTS: dict[str, BreakerSettings | None] = {
    "asyncio, no breaker": None,
    "asyncio, no deadline": VARIANTS["breaker, no deadline"],
    "asyncio, 100 ms deadline": VARIANTS["breaker, 100 ms deadline"],
}


class TimeoutPerCallBreaker(Breaker):
    """The reference: each awaited call under its own ``asyncio.timeout`` (a context
    manager and a timer handle on the loop's heap per call)."""

    async def call_async(
        self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        started, probe = self._admit()
        outcome: Outcome
        error: BaseException | None = None
        value: Any = None
        try:
            async with asyncio.timeout(self._deadline_s):
                value = await fn(*args, **kwargs)
            outcome = "ok"
        except TimeoutError:
            outcome = "timeout"
        except Exception as raised:
            error, outcome = raised, "error"
        return self._end(started, probe, outcome, value, error)


class RoundTrip:
    """A thread that gets a job from one ``SimpleQueue``, calls it and puts the answer
    on another: the least a call on another thread costs."""

    def __init__(self) -> None:
        self.jobs: SimpleQueue[tuple[Callable[[str], object], str] | None] = SimpleQueue()
        self.answers: SimpleQueue[object] = SimpleQueue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            fn, arg = job
            self.answers.put(fn(arg))

    def __call__(self, fn: Callable[[str], object], arg: str) -> object:
        self.jobs.put((fn, arg))
        return self.answers.get(timeout=REFERENCE_WAIT_S)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()


def _preemptions() -> int:
    """Times the OS took the CPU from this thread while it could run (a loaded machine)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def _summary(samples: list[float], preempted: list[bool], cpu_us: float) -> dict[str, float]:
    kept = [sample for sample, hit in zip(samples, preempted, strict=True) if not hit]
    return {
        **percentiles(samples),
        "p99 kept": percentiles(kept)["p99"],
        "preempted": sum(preempted) / len(samples),
        "cpu": cpu_us,
    }


def _round_async(call: Callable[[], Awaitable[object]], calls: int) -> dict[str, float]:
    async def timed() -> dict[str, float]:
        clock = time.perf_counter_ns
        samples = [0.0] * calls
        preempted = [False] * calls
        cpu_started = time.process_time()
        last = _preemptions()
        for i in range(calls):
            started = clock()
            await call()
            samples[i] = (clock() - started) / 1e3
            now = _preemptions()
            preempted[i], last = now != last, now
            await asyncio.sleep(0)
        return _summary(samples, preempted, (time.process_time() - cpu_started) / calls * 1e6)

    return asyncio.run(timed())


def _round(call: Callable[[], object], calls: int) -> dict[str, float]:
    clock = time.perf_counter_ns
    samples = [0.0] * calls
    preempted = [False] * calls
    cpu_started = time.process_time()
    last = _preemptions()
    for i in range(calls):
        started = clock()
        call()
        samples[i] = (clock() - started) / 1e3
        now = _preemptions()
        preempted[i], last = now != last, now
    return _summary(samples, preempted, (time.process_time() - cpu_started) / calls * 1e6)


def measure_overhead(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    router = Router(Modes())
    routed = {
        name: router.register(name, live=_model, fallback=_top, breaker=settings)
        for name, settings in VARIANTS.items()
    }
    bodies: dict[str, Callable[[], object]] = {
        name: functools.partial(model.route, "u") for name, model in routed.items()
    }
    executor = ThreadPoolExecutor(max_workers=BreakerSettings().max_concurrent_calls)
    bodies["executor hand-off"] = lambda: executor.submit(_model, "u").result(REFERENCE_WAIT_S)
    round_trip = RoundTrip()
    bodies["SimpleQueue round trip"] = functools.partial(round_trip, _model, "u")
    routed_async = {
        name: router.register(name, live=_async_model, fallback=_top, breaker=settings)
        for name, settings in ASYNC_VARIANTS.items()
    }
    reference = router.register("asyncio, asyncio.timeout", live=_async_model, fallback=_top)
    reference.breaker = TimeoutPerCallBreaker(
        reference.model_id, ASYNC_VARIANTS["asyncio, 100 ms deadline"]
    )
    routed_async[reference.model_id] = reference
    awaited = {
        name: functools.partial(model.route_async, "u") for name, model in routed_async.items()
    }
    names = [*bodies, *awaited]
    per_round: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in awaited:
                per_round[name].append(_round_async(awaited[name], calls))
            else:
                per_round[name].append(_round(bodies[name], calls))
    executor.shutdown()
    round_trip.close()
    for name, model in [*routed.items(), *routed_async.items()]:
        assert model.breaker is None or model.breaker.stats().trips == 0, name
    results = {
        name: {
            key: statistics.median(row[key] for row in rows)
            for key in ("p50", "p99", "p99 kept", "preempted", "cpu")
        }
        for name, rows in per_round.items()
    }
    base = results["no breaker"]["cpu"]
    for row in results.values():
        row["cpu extra"] = row["cpu"] - base
    return results


class JumpingModel:
    """Sleeps a seeded log-normal latency around ``median_ms``, which the scenario moves."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.median_ms = 20.0

    def __call__(self, user: str) -> list[str]:
        time.sleep(self.rng.lognormvariate(math.log(self.median_ms), 0.25) / 1e3)
        return ITEMS


TRIP_SETTINGS = BreakerSettings(
    deadline_ms=DEADLINE_MS,
    slo_p99_ms=50.0,
    failures_to_trip=5,
    cool_down_s=0.2,
    probe_share=0.5,
    probes_to_close=3,
)


def trip_once(seed: int) -> dict[str, float]:
    """One scenario; times in ms."""
    model = JumpingModel(seed)
    router = Router(Modes())
    routed = router.register("ranker-gpu", live=model, fallback=_top, breaker=TRIP_SETTINGS)
    breaker = routed.breaker
    assert breaker is not None
    for _ in range(3):
        assert routed.route("u").role == "live"
    model.median_ms = 800.0
    clock = time.perf_counter
    started = clock()
    first = routed.route("u")
    first_fallback_ms = (clock() - started) * 1e3
    assert first.fallback_reason == "timeout", first
    while breaker.core.state == "closed":
        routed.route("u")
    open_ms = (clock() - started) * 1e3
    model.median_ms = 20.0
    while breaker.core.state == "open":
        time.sleep(0.005)
        routed.route("u")
    probing = clock()
    while breaker.core.state != "closed":
        time.sleep(0.005)
        routed.route("u")
    return {
        "first fallback": first_fallback_ms,
        "open": open_ms,
        "closed by probes": (clock() - probing) * 1e3,
    }


def timed_wait_ms() -> float:
    """A bare wait of the deadline on a lock nobody releases: the OS's own lateness."""
    held = threading.Lock()
    held.acquire()
    started = time.perf_counter()
    held.acquire(timeout=DEADLINE_MS / 1e3)
    return (time.perf_counter() - started) * 1e3


def first_fallback_async_ms() -> float:
    """On an asyncio server: from awaiting ``route_async`` of a model that awaits 800 ms
    to the fallback served at the deadline (the event loop's timer)."""

    async def slow(user: str) -> list[str]:
        await asyncio.sleep(0.8)
        return ITEMS

    routed = Router(Modes()).register("ranker-gpu", live=slow, fallback=_top, breaker=TRIP_SETTINGS)

    async def timed() -> float:
        started = time.perf_counter()
        served = await routed.route_async("u")
        assert served.fallback_reason == "timeout", served
        return (time.perf_counter() - started) * 1e3

    return asyncio.run(timed())


def measure_trip(trials: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {}
    for seed in range(trials):
        for name, value in trip_once(seed).items():
            samples.setdefault(name, []).append(value)
        samples.setdefault("asyncio first fallback", []).append(first_fallback_async_ms())
        samples.setdefault("bare 100 ms timed wait", []).append(timed_wait_ms())
    return {name: percentiles(values) for name, values in samples.items()}


class BusyThread:
    """A Python thread that computes without pause, as a serving process's other threads
    may: each thread hand-off of the serving path then waits for the GIL, which the busy
    thread gives up only every ``sys.getswitchinterval()`` (5 ms by default)."""

    def __init__(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        count = 0
        while self.running:
            count += 1

    def __enter__(self) -> BusyThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def run(calls: int, rounds: int, trials: int, busy_thread: bool = False) -> dict[str, Any]:
    # A warning per trip would drown the report; the scenario reads the breaker's state.
    logging.getLogger("streams.fleet.breaker").setLevel(logging.ERROR)
    load_before = os.getloadavg()[0]
    if busy_thread:
        with BusyThread():
            overhead = measure_overhead(calls, rounds)
    else:
        overhead = measure_overhead(calls, rounds)
    results = {"overhead": overhead, "trip": measure_trip(trials) if trials else {}}
    return {**results, "load average": (load_before, os.getloadavg()[0])}


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{'per call (us)':26} {'p50':>7} {'p99':>8} {'p99 np':>7} {'preempt':>7}"
        f" {'cpu':>7} {'cpu +':>7}"
    ]
    for name, row in results["overhead"].items():
        lines.append(
            f"{name:26} {row['p50']:7.2f} {row['p99']:8.2f} {row['p99 kept']:7.2f}"
            f" {row['preempted']:7.2%} {row['cpu']:7.2f} {row['cpu extra']:7.2f}"
        )
    lines += ["", f"{'trip (ms)':26} {'n':>5} {'p50':>7} {'p99':>7} {'max':>7}"]
    for name, row in results["trip"].items():
        lines.append(
            f"{name:26} {row['n']:5d} {row['p50']:7.2f} {row['p99']:7.2f} {row['max']:7.2f}"
        )
    lines.append(
        "load average (1 min) before and after: {:.1f}, {:.1f}".format(*results["load average"])
    )
    return "\n".join(lines)


def test_bench_fleet_breaker() -> None:
    results = run(calls=5_000, rounds=3, trials=10)
    print("\n" + report(results))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=100, help="0: the overhead only")
    parser.add_argument(
        "--busy-thread",
        action="store_true",
        help="measure the overhead with a CPU-bound Python thread running beside",
    )
    args = parser.parse_args(argv)
    print(report(run(args.calls, args.rounds, args.trials, args.busy_thread)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
