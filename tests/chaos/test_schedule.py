"""The chaos schedule: seeded, complete, and with each outage on top of another fault."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.schedule import (
    FIRST_FAULT_S,
    LAST_FAULT_S,
    MAIN_KINDS,
    OUTAGE_KINDS,
    OUTAGE_S,
    PAUSE_S,
    plan,
)


@pytest.mark.parametrize("seed", range(20))
def test_every_seed_plans_every_fault_once_in_its_window(seed: int) -> None:
    faults = plan(seed)
    main = [f for f in faults if f.overlaps is None]
    outages = [f for f in faults if f.overlaps is not None]
    assert Counter(f.kind for f in main) == Counter(MAIN_KINDS)
    assert [f.kind for f in outages] == list(OUTAGE_KINDS)
    starts = [f.at_s for f in main]
    assert starts == sorted(starts)
    assert starts[0] >= FIRST_FAULT_S and starts[-1] <= LAST_FAULT_S
    for fault in main:
        if fault.kind == "broker_pause":
            assert fault.hold_s == PAUSE_S
    for outage in outages:
        assert outage.overlaps is not None and 0 <= outage.overlaps < len(main)
        assert main[outage.overlaps].kind != "worker_sigkill"  # a worker runs meanwhile
        assert 0 <= outage.at_s <= 5 and outage.hold_s == OUTAGE_S


def test_a_seed_always_plans_the_same_and_seeds_differ() -> None:
    assert plan(3) == plan(3)
    assert len({tuple(f.kind for f in plan(seed)) for seed in range(10)}) > 1
