"""What the alarm-quality benchmarks share: one timed run, its score against the change, the table.

A stream has a known change point (or none); a detector's alarms before it are false alarms,
the first at or after it gives the detection delay, and none after it is a miss.

A run feeds its detector one ``update`` at a time, or (``--batch N``) in consecutive batches
of N through ``update_many`` where the detector has one, each alarm's index read from the
batch's events (``detections``; ``window_ends`` where ``window_drifts``) plus the batch's
offset: the same indices, so the same delays, misses and false alarms, at another cost.
"""

from __future__ import annotations

import argparse
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
    # Whether its runs went through ``update_many`` (a batch of 1 never does).
    batched: bool = False

    @property
    def false_alarms_per_10k(self) -> float:
        return 10_000 * self.false_alarms / self.quiet_events

    def run(self, detector: Any, values: list[Any], change: int | None, batch: int) -> None:
        """Feed one run to a new ``detector`` (``alarms``) and score it (``record``)."""
        self.batched = batches(detector, batch)
        found, micros = alarms(detector, values, batch)
        self.record(found, micros, change, len(values))

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


def add_batch_option(parser: argparse.ArgumentParser) -> None:
    """``--batch N``: feed in batches of N where a detector has ``update_many``."""
    parser.add_argument(
        "--batch",
        type=_positive,
        default=1,
        metavar="N",
        help="values per update_many, where a detector has one (default 1: update one by one)",
    )


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"a batch holds at least 1 value, got {number}")
    return number


def verdicts(results: dict[tuple[str, str], Outcome]) -> dict[tuple[str, str], Any]:
    """What the results say less their cost: per (stream, detector), the delays, misses and
    false alarms."""
    return {key: (o.delays, o.misses, o.false_alarms) for key, o in results.items()}


def alarms(detector: Any, values: list[Any], batch: int = 1) -> tuple[list[int], float]:
    """Feed ``values`` one by one, or in batches of ``batch`` where ``batches(detector,
    batch)``: the indices of the alarms, and microseconds per update."""
    found: list[int] = []
    start = time.perf_counter_ns()
    if batches(detector, batch):
        for offset in range(0, len(values), batch):
            detector.update_many(values[offset : offset + batch])
            found.extend(offset + i for i in batch_alarms(detector))
    else:
        for i, x in enumerate(values):
            detector.update(x)
            if detector.drift_detected:
                found.append(i)
    elapsed = time.perf_counter_ns() - start
    return found, elapsed / 1_000 / len(values)


def batches(detector: Any, batch: int) -> bool:
    """Whether a run of ``detector`` goes through ``update_many`` in batches of ``batch``."""
    return batch > 1 and hasattr(detector, "update_many")


def batch_alarms(detector: Any) -> list[int]:
    """The positions in the last batch where ``drift_detected`` would have been True: a
    sequential detector's ``detections``, a windowed test's drifting ``window_ends``."""
    if hasattr(detector, "detections"):
        return [int(i) for i in detector.detections]
    return detector.window_ends[detector.window_drifts].tolist()


def table(
    results: dict[tuple[str, str], Outcome], runs: int, changed: Container[str], batch: int = 1
) -> str:
    """A markdown row per (stream, detector); misses only for the ``changed`` streams. Fed
    in batches, a note names the detectors that went one by one (no ``update_many``)."""
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
    if batch > 1:
        alone = dict.fromkeys(name for (_, name), o in results.items() if not o.batched)
        lines += [
            "",
            f"Batches of {batch} through update_many; one by one, having no update_many: "
            + (", ".join(alone) or "none"),
        ]
    return "\n".join(lines)
