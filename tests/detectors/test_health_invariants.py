"""Invariants of the health policy on arbitrary evidence sequences (hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.health.control_action import ControlAction
from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.policy import HealthPolicy

MIN_DWELL = 600.0
CLEAR_AFTER = 1800.0
ESCALATE_AFTER = 7200.0

_steps = st.lists(
    st.tuples(
        st.floats(min_value=-120.0, max_value=2400.0),  # time step; negative: a late record
        st.sampled_from(["quiet"] * 6 + ["beat"] * 6 + ["alarm"] * 3 + ["critical"]),
    ),
    min_size=20,
    max_size=300,
)


def _records(steps: list[tuple[float, str]]) -> list[Any]:
    records: list[Any] = []
    at = 0.0
    for step, kind in steps:
        at = max(0.0, at + step)
        if kind == "beat":
            records.append(Heartbeat(at=at))
        else:
            records.append(
                Evidence(detector="d", at=at, alarm=kind == "alarm", critical=kind == "critical")
            )
    return records


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_actions_alternate_never_flap_and_escalate_once(steps: list[tuple[float, str]]) -> None:
    policy = HealthPolicy(
        confirm=2, min_dwell=MIN_DWELL, clear_after=CLEAR_AFTER, escalate_after=ESCALATE_AFTER
    )
    actions: list[tuple[ControlAction, bool]] = []  # with: was it caused by critical evidence
    escalations_in_episode = 0
    now = 0.0
    for record in _records(steps):
        policy.update(record)
        now = max(now, record.at)
        action = policy.action
        if action is not None:
            critical = isinstance(record, Evidence) and record.critical
            actions.append((action, critical))
            if action.action == "fallback":
                escalations_in_episode = 0
            assert policy.fallback_since == (action.at if action.action == "fallback" else None)
        if policy.escalation_due:
            escalations_in_episode += 1
            assert policy.on_fallback
            assert policy.fallback_since is not None
            assert now - policy.fallback_since >= ESCALATE_AFTER
        assert escalations_in_episode <= 1
        if policy.fallback_since is not None and now - policy.fallback_since >= ESCALATE_AFTER:
            assert escalations_in_episode == 1
        assert policy.on_fallback == (policy.fallback_since is not None)

    assert [a.seq for a, _ in actions] == list(range(1, len(actions) + 1))
    assert [a.action for a, _ in actions] == ["fallback", "restore"] * (len(actions) // 2) + [
        "fallback"
    ] * (len(actions) % 2)
    for (first, _), (second, critical) in itertools.pairwise(actions):
        if first.action == "fallback":
            # On fallback, then quiet on fallback, then quiet in probation.
            assert second.at - first.at >= 2 * CLEAR_AFTER
        elif not critical:
            # Restored: an alarm degrades at once, but falling back needs the dwell.
            assert second.at - first.at >= MIN_DWELL
