"""What the alarm-quality benchmarks share: one timed run, its score against the change, the table.

A stream has a known change point (or none); a detector's alarms before it are false alarms,
the first at or after it gives the detection delay, and none after it is a miss.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Container
from typing import Any


@dataclasses.dataclass
class Outcome:
    """One detector's record on one stream, over its seeded runs."""

    delays: list[int] = dataclasses.field(default_factory=list)
    misses: int = 0
    false_alarms: int = 0
    quiet_events: int = 0
    micros: list[float] = dataclasses.field(default_factory=list)

    @property
    def false_alarms_per_10k(self) -> float:
        return 10_000 * self.false_alarms / self.quiet_events

    def record(self, alarms: list[int], micros: float, change: int | None, length: int) -> None:
        """Score one run's alarm indices against ``change`` (None: the stream has none)."""
        self.micros.append(micros)
        end = change if change is not None else length
        self.false_alarms += sum(1 for i in alarms if i < end)
        self.quiet_events += end
        if change is not None:
            after = [i for i in alarms if i >= change]
            if after:
                self.delays.append(after[0] - change)
            else:
                self.misses += 1


def alarms(detector: Any, values: list[Any]) -> tuple[list[int], float]:
    """Feed ``values`` one by one: the indices of the alarms, and microseconds per update."""
    found = []
    start = time.perf_counter_ns()
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    elapsed = time.perf_counter_ns() - start
    return found, elapsed / 1_000 / len(values)


def table(results: dict[tuple[str, str], Outcome], runs: int, changed: Container[str]) -> str:
    """A markdown row per (stream, detector); misses only for the ``changed`` streams."""
    lines = [
        f"| stream | detector | mean delay (events) | misses / {runs} | "
        "false alarms / 10k events | us per update (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (stream, name), outcome in results.items():
        delay = f"{statistics.mean(outcome.delays):.0f}" if outcome.delays else "-"
        misses = str(outcome.misses) if stream in changed else "-"
        lines.append(
            f"| {stream} | {name} | {delay} | {misses} | "
            f"{outcome.false_alarms_per_10k:.2f} | {statistics.median(outcome.micros):.2f} |"
        )
    return "\n".join(lines)
