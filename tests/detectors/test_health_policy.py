"""The health policy, list in and list out: seeded evidence in, transitions and actions out."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.policy import HealthPolicy
from detectors.health.state import HealthState

MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0


def _run(policy: HealthPolicy, records: Sequence[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Feed ``records`` and list what came out, each with the index of the record."""
    out: dict[str, list[tuple[Any, ...]]] = {"moves": [], "actions": [], "escalations": []}
    last = policy.transition
    for i, record in enumerate(records):
        policy.update(record)
        if policy.transition is not last:
            last = policy.transition
            assert last is not None
            out["moves"].append((i, last.from_state.value, last.to_state.value, last.detector))
        if policy.action is not None:
            out["actions"].append((i, policy.action.action, policy.action.seq))
        if policy.escalation_due:
            out["escalations"].append((i,))
    return out


def _minutes(alarm_rate: Sequence[float], seed: int, detector: str = "ks") -> list[Evidence]:
    """One evidence record a minute; record i alarms with probability alarm_rate[i]."""
    rng = np.random.default_rng(seed)
    alarms = rng.random(len(alarm_rate)) < np.asarray(alarm_rate)
    return [
        Evidence(detector=detector, feature="age", at=MINUTE * i, alarm=bool(a))
        for i, a in enumerate(alarms)
    ]


def test_pinned_transitions_on_a_seeded_incident() -> None:
    # Noise at 0.2% before and after; a real incident alarms 90% of the time in [200, 260).
    rates = [0.002] * 200 + [0.9] * 60 + [0.002] * 340
    out = _run(HealthPolicy(), _minutes(rates, seed=1))
    assert out["moves"] == [
        (200, "healthy", "degraded", "ks"),
        (215, "degraded", "fallback", "ks"),
        (319, "fallback", "probing", None),
        (379, "probing", "healthy", None),
    ]
    assert out["actions"] == [(215, "fallback", 1), (379, "restore", 2)]
    assert out["escalations"] == []


def test_unconfirmed_noise_degrades_but_never_falls_back() -> None:
    # Ten days of evidence every minute, alarming at 0.1%: about 14 lone alarms.
    records = _minutes([0.001] * 14_400, seed=2)
    out = _run(HealthPolicy(), records)
    assert sum(r.alarm for r in records) == 14
    assert {move[2] for move in out["moves"]} == {"degraded", "healthy"}
    assert out["actions"] == []


def test_a_flapping_metric_cannot_make_the_fleet_flap() -> None:
    # Alarms in bursts switching every 20 minutes: on, off, on... for two days.
    rates = [0.9 if (i // 20) % 2 == 0 else 0.0 for i in range(2 * 1440)]
    policy = HealthPolicy(confirm=2, min_dwell=900.0, clear_after=1800.0)
    out = _run(policy, _minutes(rates, seed=3))
    # Every gap is shorter than clear_after, so the model falls back once and stays there.
    assert out["actions"] == [(15, "fallback", 1)]
    assert policy.state is HealthState.FALLBACK


def test_actions_alternate_with_consecutive_seq_and_respect_dwell() -> None:
    # Hours of trouble alternating with quiet days, with noise throughout.
    rng = np.random.default_rng(4)
    rates = np.where(rng.random(20 * 1440) < 0.02, 0.8, 0.003)
    rates[(np.arange(rates.size) // 720) % 3 == 0] = 0.5
    policy = HealthPolicy(confirm=2, min_dwell=900.0, clear_after=HOUR)
    out = _run(policy, _minutes(rates.tolist(), seed=5))
    actions = out["actions"]
    assert len(actions) >= 10
    assert [seq for _, _, seq in actions] == list(range(1, len(actions) + 1))
    assert [kind for _, kind, _ in actions] == ["fallback", "restore"] * (len(actions) // 2) + [
        "fallback"
    ] * (len(actions) % 2)
    gaps = [MINUTE * (b[0] - a[0]) for a, b in itertools.pairwise(actions)]
    on_fallback = gaps[0::2]
    serving_live = gaps[1::2]
    assert min(on_fallback) >= 2 * HOUR
    assert min(serving_live) >= 900.0


def test_critical_evidence_bypasses_dwell_and_confirmation() -> None:
    policy = HealthPolicy(min_dwell=HOUR)
    policy.update(Evidence(detector="ks", at=0.0, alarm=True))
    assert policy.state is HealthState.DEGRADED
    policy.update(Evidence(detector="future_values", at=10.0, alarm=False, critical=True))
    assert policy.state is HealthState.FALLBACK
    assert policy.action is not None
    assert (policy.action.action, policy.action.seq, policy.action.at) == ("fallback", 1, 10.0)
    assert policy.transition is not None
    assert policy.transition.detector == "future_values"
    assert policy.transition.evidence is not None
    assert policy.transition.evidence.critical
    assert policy.fallback_since == 10.0


def test_critical_from_healthy_acts_on_the_very_first_record() -> None:
    out = _run(
        HealthPolicy(),
        [Evidence(detector="error_rate", at=5.0, alarm=True, critical=True, details={"rate": 0.4})],
    )
    assert out["moves"] == [(0, "healthy", "fallback", "error_rate")]
    assert out["actions"] == [(0, "fallback", 1)]


def test_alarms_below_their_effect_floor_never_move_the_model() -> None:
    # The seeded incident of the pinned test, found by a detector whose shift stays below
    # its effect-size floor: real, harmless, and the policy must not act on it.
    rates = [0.002] * 200 + [0.9] * 60 + [0.002] * 340
    immaterial = [
        Evidence(detector=e.detector, feature=e.feature, at=e.at, alarm=e.alarm, material=False)
        for e in _minutes(rates, seed=1)
    ]
    policy = HealthPolicy()
    out = _run(policy, immaterial)
    assert out == {"moves": [], "actions": [], "escalations": []}
    assert policy.last_evidence is immaterial[-1]


def test_an_immaterial_alarm_neither_confirms_a_fallback_nor_breaks_probation() -> None:
    policy = HealthPolicy(min_dwell=0.0, clear_after=HOUR)
    records: list[Any] = [Evidence(detector="score", at=0.0, alarm=True)]  # degraded
    records += [
        Evidence(detector="score", at=MINUTE * i, alarm=True, material=False) for i in range(1, 30)
    ]
    records += [Heartbeat(at=MINUTE * i) for i in range(30, 61)]  # quiet: healthy again
    records += [Evidence(detector="psi", at=MINUTE * 61, alarm=True, critical=True)]
    records += [Heartbeat(at=MINUTE * i) for i in range(62, 123)]  # probing at 121 min
    records += [Evidence(detector="score", at=MINUTE * 130, alarm=True, material=False)]
    records += [Heartbeat(at=MINUTE * i) for i in range(131, 190)]
    out = _run(policy, records)
    assert out["moves"] == [
        (0, "healthy", "degraded", "score"),
        (60, "degraded", "healthy", None),
        (61, "healthy", "fallback", "psi"),
        (121, "fallback", "probing", None),
        (174, "probing", "healthy", None),  # at minute 181: probation ran its hour
    ]
    assert out["actions"] == [(61, "fallback", 1), (174, "restore", 2)]


def test_relapse_in_probation_returns_to_fallback_without_a_new_command() -> None:
    policy = HealthPolicy(min_dwell=0.0, clear_after=HOUR)
    records: list[Any] = [Evidence(detector="ks", at=0.0, alarm=True, critical=True)]
    records += [Heartbeat(at=MINUTE * i) for i in range(1, 62)]  # probing at 60 min
    records += [Evidence(detector="psi", at=MINUTE * 70, alarm=True)]  # relapse
    records += [Heartbeat(at=MINUTE * i) for i in range(71, 200)]
    out = _run(policy, records)
    assert out["moves"] == [
        (0, "healthy", "fallback", "ks"),
        (60, "fallback", "probing", None),
        (62, "probing", "fallback", "psi"),
        (122, "fallback", "probing", None),
        (182, "probing", "healthy", None),
    ]
    assert out["actions"] == [(0, "fallback", 1), (182, "restore", 2)]


def test_escalation_is_due_exactly_once_per_fallback_episode() -> None:
    policy = HealthPolicy(escalate_after=3 * DAY)
    # Critical at 0, then an alarm every hour for 4 days keeps the model on fallback.
    records: list[Any] = [Evidence(detector="future_values", at=0.0, alarm=True, critical=True)]
    for minute in range(10, 4 * 1440, 10):
        alarm = minute % 60 == 0
        records.append(Evidence(detector="ks", at=MINUTE * minute, alarm=alarm))
    # Then quiet until restored, and a second episode that also lasts 4 days.
    second = 4 * 1440 + 600
    records += [Heartbeat(at=MINUTE * m) for m in range(4 * 1440, second, 10)]
    second_start = len(records)
    records.append(
        Evidence(detector="future_values", at=MINUTE * second, alarm=True, critical=True)
    )
    records += [
        Evidence(detector="ks", at=MINUTE * m, alarm=m % 60 == 0)
        for m in range(second + 10, second + 4 * 1440, 10)
    ]
    out = _run(policy, records)
    first_due = 3 * 1440 // 10  # the record stamped exactly three days after the fallback
    assert out["escalations"] == [(first_due,), (second_start + 3 * 1440 // 10,)]
    assert [kind for _, kind, _ in out["actions"]] == ["fallback", "restore", "fallback"]


def test_heartbeats_alone_let_dwell_and_quiet_pass() -> None:
    policy = HealthPolicy(min_dwell=900.0, clear_after=HOUR)
    records: list[Any] = [Evidence(detector="ks", at=0.0, alarm=True)]
    records += [Heartbeat(at=MINUTE * i) for i in range(1, 90)]
    out = _run(policy, records)
    assert out["moves"] == [(0, "healthy", "degraded", "ks"), (60, "degraded", "healthy", None)]


def test_tests_of_one_window_confirm_once() -> None:
    # PSI, KS and Wasserstein alarm on the same window: that is one observation, not three.
    policy = HealthPolicy(confirm=2, min_dwell=0.0)
    for detector in ("psi", "ks", "wasserstein"):
        policy.update(Evidence(detector=detector, feature="age", at=HOUR, alarm=True))
    policy.update(Heartbeat(at=2 * HOUR - 1.0))
    assert policy.state is HealthState.DEGRADED
    policy.update(Evidence(detector="psi", feature="age", at=2 * HOUR, alarm=True))
    policy.update(Heartbeat(at=2 * HOUR + 1.0))
    assert policy.state is HealthState.FALLBACK


def _windows_and_heartbeats(windowed: bool, alarms: Sequence[bool]) -> list[Any]:
    """A windowed test evaluated every 12 s (its window filling slower than clear_after),
    whose result i alarms when alarms[i], with a heartbeat every second in between."""
    records: list[Any] = []
    for i, alarm in enumerate(alarms):
        at = 12.0 * i
        records.append(
            Evidence(detector="drift_psi", feature="amount", at=at, alarm=alarm, windowed=windowed)
        )
        records += [Heartbeat(at=at + s) for s in range(1, 12)]
    return records


def test_a_windowed_alarm_waits_for_its_next_window_to_confirm() -> None:
    # Windows 12 s apart, clear_after 10 s: quiet time between them is not quiet evidence.
    # Without ``windowed`` the model is healthy again 10 s after each alarm, so no two
    # windows ever confirm each other (the demo's fraud-001 lost a window to this).
    alarms = [False, True, True, True, False, False]
    policy = HealthPolicy(confirm=2, min_dwell=5.0, clear_after=10.0)
    out = _run(policy, _windows_and_heartbeats(True, alarms))
    assert out["moves"][:2] == [
        (12, "healthy", "degraded", "drift_psi"),
        (24, "degraded", "fallback", "drift_psi"),
    ]
    assert out["actions"][0] == (24, "fallback", 1)
    unwindowed = _run(
        HealthPolicy(confirm=2, min_dwell=5.0, clear_after=10.0),
        _windows_and_heartbeats(False, alarms),
    )
    assert unwindowed["actions"] == []


def test_a_quiet_next_window_ends_the_degraded_state_after_clear_after() -> None:
    policy = HealthPolicy(confirm=2, min_dwell=5.0, clear_after=10.0)
    out = _run(policy, _windows_and_heartbeats(True, [False, True, False, False]))
    # The quiet window at 24 s comes after clear_after: healthy at once, never a fallback.
    assert out["moves"] == [
        (12, "healthy", "degraded", "drift_psi"),
        (24, "degraded", "healthy", None),
    ]
    assert out["actions"] == []


def test_an_unwindowed_test_or_another_feature_does_not_end_the_wait() -> None:
    policy = HealthPolicy(confirm=2, min_dwell=5.0, clear_after=10.0)
    policy.update(
        Evidence(detector="drift_psi", feature="amount", at=0.0, alarm=True, windowed=True)
    )
    policy.update(Evidence(detector="drift_psi", feature="age", at=12.0, alarm=False))
    policy.update(Evidence(detector="score", at=15.0, alarm=False))
    assert policy.state is HealthState.DEGRADED
    policy.update(
        Evidence(detector="drift_psi", feature="amount", at=18.0, alarm=False, windowed=True)
    )
    assert policy.state is HealthState.HEALTHY


def test_the_wait_for_a_next_window_ends_after_twice_clear_after() -> None:
    # Windows 25 s apart with clear_after 10 s: the next window is due after the wait, so
    # the model is healthy again at 20 s and each alarm starts a confirmation of its own.
    policy = HealthPolicy(confirm=2, min_dwell=5.0, clear_after=10.0)
    records: list[Any] = []
    for i in range(4):
        at = 25.0 * i
        records.append(
            Evidence(detector="drift_psi", feature="amount", at=at, alarm=i > 0, windowed=True)
        )
        records += [Heartbeat(at=at + s) for s in range(1, 25)]
    out = _run(policy, records)
    assert out["moves"] == [
        (25, "healthy", "degraded", "drift_psi"),
        (45, "degraded", "healthy", None),
        (50, "healthy", "degraded", "drift_psi"),
        (70, "degraded", "healthy", None),
        (75, "healthy", "degraded", "drift_psi"),
        (95, "degraded", "healthy", None),
    ]
    assert out["actions"] == []


def test_late_records_do_not_move_time_backwards() -> None:
    policy = HealthPolicy(min_dwell=900.0, clear_after=HOUR)
    policy.update(Evidence(detector="ks", at=10 * HOUR, alarm=True))
    policy.update(Evidence(detector="accuracy", at=0.0, alarm=False))  # labels from long ago
    assert policy.since == 10 * HOUR
    policy.update(Heartbeat(at=11 * HOUR))
    assert policy.state is HealthState.HEALTHY
    assert policy.transition is not None
    assert policy.transition.at == 11 * HOUR


@pytest.mark.parametrize(
    "record",
    [
        None,
        float("nan"),
        "x",
        3.0,
        Heartbeat(at=float("inf")),
        Heartbeat(at=True),
        Heartbeat(at=10**400),
        Evidence(detector="ks", at=10**400, alarm=True, critical=True),
    ],
)
def test_records_that_are_not_evidence_are_counted_and_ignored(record: Any) -> None:
    policy = HealthPolicy()
    policy.update(Evidence(detector="ks", at=0.0, alarm=True))
    policy.update(record)
    assert policy.ignored == 1
    assert policy.state is HealthState.DEGRADED
    assert policy.since == 0.0


def test_an_ignored_record_clears_the_edges_of_the_update_before() -> None:
    policy = HealthPolicy(escalate_after=0.0)
    policy.update(Evidence(detector="error_rate", at=5.0, alarm=True, critical=True))
    assert policy.action is not None and policy.escalation_due
    policy.update(Heartbeat(at=float("nan")))
    assert policy.ignored == 1
    assert policy.action is None and not policy.escalation_due
    assert policy.state is HealthState.FALLBACK


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"confirm": 0}, "confirm"),
        ({"confirm": 1.5}, "confirm"),
        ({"min_dwell": -1.0}, "min_dwell"),
        ({"clear_after": float("nan")}, "clear_after"),
        ({"escalate_after": float("inf")}, "escalate_after"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HealthPolicy(**kwargs)
