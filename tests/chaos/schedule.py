"""The seeded schedule of a chaos run: which faults, in which order, when, and how long.

Pure: ``plan(seed)`` is the same list for the same seed. Times are seconds after the
scenario started playing. The run injects the *main* faults one after another, each no
sooner than its planned time and no sooner than ``MIN_GAP_S`` after the previous one
recovered (a restart's length is not known beforehand); the two *outages* (InfluxDB and
Alerta down for ``OUTAGE_S``) each begin a seeded moment (``at_s``, 0 to 5 s) after one
of the main faults (``overlaps``) other than a worker's SIGKILL is injected, so that they
overlap it while a worker runs.

>>> [fault.kind for fault in plan(1)] == [fault.kind for fault in plan(1)]
True
>>> sorted(fault.kind for fault in plan(1))  # doctest: +NORMALIZE_WHITESPACE
['alerta_outage', 'broker_pause', 'broker_sigkill', 'broker_sigterm', 'influxdb_outage',
 'worker_join_leave', 'worker_sigkill', 'worker_sigkill']
"""

from __future__ import annotations

import dataclasses
import random

__all__ = [
    "FIRST_FAULT_S",
    "LAST_FAULT_S",
    "MAIN_KINDS",
    "MIN_GAP_S",
    "OUTAGE_KINDS",
    "OUTAGE_S",
    "PAUSE_S",
    "PlannedFault",
    "plan",
]

MAIN_KINDS = (
    "worker_sigkill",
    "worker_sigkill",
    "broker_sigterm",
    "broker_sigkill",
    "broker_pause",
    "worker_join_leave",
)
OUTAGE_KINDS = ("influxdb_outage", "alerta_outage")
# The first fault waits for the detectors' references (the portfolio's first 600
# predictions per model, about 30 s); the last is planned well before the scenario ends,
# so that every incident's restore can still come.
FIRST_FAULT_S = 35.0
LAST_FAULT_S = 200.0
MIN_GAP_S = 8.0
PAUSE_S = 15.0
OUTAGE_S = 30.0


@dataclasses.dataclass(frozen=True)
class PlannedFault:
    """One fault: ``at_s`` is its planned start (for an outage: seconds after the main
    fault it ``overlaps``, by index, was injected); ``hold_s`` how long the server stays
    down or paused, the killed worker stays dead, or the second worker stays in."""

    kind: str
    at_s: float
    hold_s: float
    overlaps: int | None = None

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def plan(seed: int) -> list[PlannedFault]:
    """The faults of run ``seed``: the main ones in a seeded order at seeded times between
    ``FIRST_FAULT_S`` and ``LAST_FAULT_S``, then the two outages."""
    rng = random.Random(seed)
    kinds = list(MAIN_KINDS)
    rng.shuffle(kinds)
    # Each fault in a slot of its own, at a seeded third of it; the last ends at LAST_FAULT_S.
    slot = (LAST_FAULT_S - FIRST_FAULT_S) / (len(kinds) - 1 + 1 / 3)
    faults = []
    for index, kind in enumerate(kinds):
        at_s = FIRST_FAULT_S + index * slot + rng.uniform(0.0, slot / 3)
        if kind == "broker_pause":
            hold_s = PAUSE_S
        elif kind == "worker_join_leave":
            hold_s = rng.uniform(15.0, 30.0)
        else:
            hold_s = rng.uniform(1.0, 5.0)
        faults.append(PlannedFault(kind, round(at_s, 1), round(hold_s, 1)))
    # Not a worker's SIGKILL: its worker is down or starting for most of the outage, with
    # nothing to buffer, so the outage would test nothing.
    overlappable = [index for index, kind in enumerate(kinds) if kind != "worker_sigkill"]
    for kind in OUTAGE_KINDS:
        overlapped = rng.choice(overlappable)
        faults.append(
            PlannedFault(kind, round(rng.uniform(0.0, 5.0), 1), OUTAGE_S, overlaps=overlapped)
        )
    return faults
