"""The chaos run's serving node: a process of its own that serves and times every call.

It holds what a serving node holds (a ``ControlListener`` with the public keys only, and
a ``PredictionLogger``) and serves ``BURST`` calls a second on its main thread, each call
the serving path of ``tests/benchmarks/bench_fleet_serving.py``: the mode of a model of
the portfolio, then a prediction logged. Each call is timed alone with
``perf_counter_ns``. The logged predictions name ``NODE_MODEL``, which the portfolio does
not declare, so the worker dead-letters every one of them: a known stream of dead letters.

A process of its own, so that the chaos run's watching threads never hold the GIL the
serving path needs. On SIGTERM it flushes the logger and writes ``--out``: the call
latencies per wall-clock second, the listener's switches and final modes, and both
clients' stats. Run by ``tests/chaos/run.py``::

    python -m tests.chaos.node --model fraud-001 --out node.json   # FAILSOFT_* settings
"""

from __future__ import annotations

import argparse
import json
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from schemas.contracts import SCHEMA_VERSION, Prediction, Score
from streams.fleet import ControlListener, ModeChange, PredictionLogger
from streams.settings import Settings

NODE_MODEL = "chaos-node"
# Calls back to back, once a second: timed hot, as the benchmark times them (a call after
# a sleep pays for cold caches, tens of microseconds on these machines, whatever failsoft
# does), and few enough that the node's dead letters stay a small part of the traffic.
BURST = 50
BOOTSTRAP_TIMEOUT_S = 60.0


class Stop(Exception):
    pass


def _stop(signum: int, frame: Any) -> None:
    raise Stop


def serve(settings: Settings, model: str, out: Path) -> None:
    switches: list[tuple[str, str, int]] = []

    def on_change(change: ModeChange) -> None:
        switches.append((change.model_id, change.new, time.time_ns() // 1_000_000))

    listener = ControlListener(settings)
    listener.on_change(on_change)
    listener.start()
    logger = PredictionLogger(settings)
    # Per wall-clock second: the calls' latencies in microseconds.
    seconds: dict[int, list[float]] = {}
    first: list[float] = []
    clock = time.perf_counter_ns
    try:
        if not listener.wait_bootstrapped(BOOTSTRAP_TIMEOUT_S):
            raise SystemExit(
                f"the listener did not read the control topic in {BOOTSTRAP_TIMEOUT_S}s"
            )
        out.with_suffix(".ready").touch()
        while True:
            prediction = Prediction(
                SCHEMA_VERSION,
                uuid.uuid4().hex,
                NODE_MODEL,
                "chaos-1",
                "live",
                "user-1",
                time.time_ns() // 1_000_000,
                Score(0.5),
                {},
                0.1,
            )
            samples = seconds.setdefault(int(time.time()), [])
            # The first call after the pause runs on cold caches; timed apart, as the
            # benchmark's loop has none.
            started = clock()
            listener.mode(model)
            logger.log(prediction)
            first.append((clock() - started) / 1e3)
            for _ in range(BURST):
                started = clock()
                listener.mode(model)
                logger.log(prediction)
                samples.append((clock() - started) / 1e3)
            time.sleep(1.0)
    except Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        remaining = logger.close(timeout=30)
        listener.stop()
        document = {
            "latency_us": {str(second): samples for second, samples in seconds.items()},
            "first_call_us": first,
            "switches": switches,
            "modes": dict(listener.modes),
            "listener": msgspec.to_builtins(listener.stats()),
            "logger": msgspec.to_builtins(logger.stats()),
            "undelivered_at_close": remaining,
        }
        out.write_text(json.dumps(document))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the portfolio model whose mode is read")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    serve(Settings.from_env(), args.model, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
