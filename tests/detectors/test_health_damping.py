"""Alert damping: escalations pass at once, other changes at most once per period, and the
newest state always arrives in the end."""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.health.damping import SEVERITY_RANKS, AlertDamping

SEVERITIES = ("normal", "warning", "minor", "major", "critical")


def test_an_escalation_is_sent_at_once_even_within_the_period() -> None:
    damping = AlertDamping(period=300.0)
    assert damping.offer("health", "warning", 0.0, "degraded") == ["degraded"]
    assert damping.offer("health", "major", 1.0, "fallback") == ["fallback"]
    assert damping.offer("health", "critical", 2.0, "escalated") == ["escalated"]


def test_a_flap_back_to_the_sent_severity_never_reaches_anyone() -> None:
    damping = AlertDamping(period=300.0)
    damping.offer("score", "warning", 0.0, "alarm")
    for at in range(5, 120, 10):
        assert damping.offer("score", "normal", float(at), "quiet") == []
        assert damping.offer("score", "warning", at + 5.0, "alarm again") == ["alarm again"]
    assert damping.held == 0
    assert damping.release(1_000.0) == []


def test_a_lasting_quiet_is_sent_when_the_period_has_passed() -> None:
    damping = AlertDamping(period=300.0)
    damping.offer("drift_psi", "warning", 0.0, "alarm")
    assert damping.offer("drift_psi", "normal", 10.0, "quiet") == []
    assert damping.release(299.9) == []
    assert damping.release(300.0) == ["quiet"]
    # The release is the key's new last change: a relapse right after it is an escalation.
    assert damping.offer("drift_psi", "warning", 301.0, "alarm") == ["alarm"]


def test_keys_are_damped_apart() -> None:
    damping = AlertDamping(period=60.0)
    damping.offer("score", "warning", 0.0, "score alarm")
    damping.offer("error_rate", "warning", 0.0, "error alarm")
    damping.offer("score", "normal", 1.0, "score quiet")
    assert damping.offer("error_rate", "normal", 61.0, "error quiet") == ["error quiet"]
    assert damping.release(61.0) == ["score quiet"]


def test_period_zero_passes_every_change() -> None:
    damping = AlertDamping(period=0.0)
    sent = [damping.offer("k", s, 1.0, s) for s in ("warning", "normal", "warning", "normal")]
    assert sent == [["warning"], ["normal"], ["warning"], ["normal"]]


@pytest.mark.parametrize("period", [-1.0, float("nan"), float("inf"), "5m"])
def test_invalid_period_is_refused_naming_the_valid_values(period: object) -> None:
    with pytest.raises(ValueError, match="period must be a finite number of seconds >= 0"):
        AlertDamping(period=period)  # type: ignore[arg-type]


def test_an_unknown_severity_is_a_bug_of_the_caller() -> None:
    with pytest.raises(ValueError, match="severity must be one of"):
        AlertDamping().offer("k", "urgent", 0.0, "x")


def test_pickle_round_trip_keeps_what_is_held() -> None:
    damping = AlertDamping(period=300.0)
    damping.offer("score", "warning", 0.0, "alarm")
    damping.offer("score", "normal", 1.0, "quiet")
    restored = pickle.loads(pickle.dumps(damping))
    assert restored.held == 1
    assert restored.release(300.0) == ["quiet"]


offers = st.lists(
    st.tuples(st.sampled_from(("a", "b")), st.sampled_from(SEVERITIES), st.floats(0.0, 200.0)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(offers, st.floats(1.0, 300.0))
def test_severity_changes_at_most_once_per_period_unless_escalating(
    steps: list[tuple[str, str, float]], period: float
) -> None:
    damping = AlertDamping(period=period)
    now = 0.0
    sent: dict[str, list[tuple[float, int]]] = {}
    last_offered: dict[str, int] = {}
    for key, severity, gap in steps:
        now += gap
        released = [(alert[0], alert[1]) for alert in damping.release(now)]
        offered = damping.offer(key, severity, now, (key, severity))
        for alert_key, alert_severity in [*released, *offered]:
            sent.setdefault(alert_key, []).append((now, SEVERITY_RANKS[alert_severity]))
        last_offered[key] = SEVERITY_RANKS[severity]
    now += period + 1.0
    for alert_key, alert_severity in damping.release(now):
        sent.setdefault(alert_key, []).append((now, SEVERITY_RANKS[alert_severity]))
    for key, history in sent.items():
        changes = [history[0]] + [
            (t, r) for (_, r0), (t, r) in itertools.pairwise(history) if r != r0
        ]
        for (t0, r0), (t1, r1) in itertools.pairwise(changes):
            assert r1 > r0 or t1 - t0 >= period, history
        # Nothing is lost: on-call ends up with the newest severity of every key.
        assert history[-1][1] == last_offered[key], history
    assert damping.held == 0
