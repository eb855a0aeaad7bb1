"""A worker's first rebalance cut by the broker's SIGKILL (chaos seed 6's a#2): start the
chaos scenario, SIGKILL the worker, start its successor, SIGKILL the broker while the
successor joins the group, start the broker again, then watch the successor's books and
sinks on ``/metrics``.

It kills servers of the stack the ``FAILSOFT_*`` settings name: run it on a private
stack only::

    python -m tests.chaos.rebalance_kill --run-dir /tmp/rebalance-kill
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streams.settings import Settings
from streams.stack import SERVERS, faults
from tests.chaos.run import ChaosRun


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--kill-after", type=float, default=18.0, help="s after the start")
    parser.add_argument("--watch", type=float, default=180.0, help="s to watch after")
    args = parser.parse_args(argv)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    chaos = ChaosRun(settings, 6, args.run_dir)
    try:
        chaos.start()
        time.sleep(30.0)
        (first,) = chaos.live("a")
        chaos._expected_exit.add(first.process.pid)
        first.kill()
        time.sleep(3.0)
        second = chaos.start_worker("a", first.settings, loglevel="info")
        time.sleep(args.kill_after)
        faults.kill(chaos.settings, "kafka")
        print(f"broker killed {args.kill_after} s after the successor started", flush=True)
        time.sleep(4.0)
        print(SERVERS["kafka"].start(chaos.settings), flush=True)
        began = time.monotonic()
        while time.monotonic() - began < args.watch:
            time.sleep(10.0)
            answered = second.scrape()
            print(
                json.dumps(
                    {
                        "t": round(time.monotonic() - began),
                        "answered": answered,
                        "books": second.books,
                        "sinks": second.sinks,
                        "lag": second.lag_records,
                    }
                ),
                flush=True,
            )
    finally:
        chaos.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
