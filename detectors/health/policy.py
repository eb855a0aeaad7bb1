"""Per-model health state machine: evidence in, state, transitions and control actions out.

The machine, all in event time (timestamps are arguments; there is no clock)::

    healthy --alarm--> degraded --confirmed--> fallback --quiet--> probing --quiet--> healthy
       ^                  |                                          |
       +------quiet-------+                   fallback <--any alarm--+
    any state --critical--> fallback

Hysteresis: entering costs little (one alarm makes a model ``degraded``, which changes
nothing for the fleet), acting needs more (``confirm`` alarms at distinct event times
before ``fallback``), and coming back needs most (``clear_after`` seconds without any alarm
on fallback, then again ``clear_after`` seconds without any alarm in ``probing``, where a
single alarm sends the model back). A model degraded by a windowed test
(``Evidence.windowed``) stays ``degraded`` until that test's next result, for up to
``2 * clear_after`` after the alarm: quiet time before it says nothing, and its next
window is the one that can confirm the alarm. No transition out of ``degraded``,
``fallback`` or ``probing`` happens before the state is ``min_dwell`` seconds old, except
for critical evidence and a relapse during probing, which only ever move towards the
fallback. So a restore and the next non-critical fallback are at least ``min_dwell`` apart,
and a fallback and its restore at least ``2 * clear_after``: a noisy metric cannot make the
fleet flap.

Only alarms that matter move the machine: evidence whose ``material`` is false (a real
change below its detector's effect-size floor, such as the slow, harmless drift of a real
score mix) counts as no alarm here. It still reaches InfluxDB and an informational alert;
acting on it would take the model offline for a change that costs nothing.

How many false alarms reach the machine is the alarm budget's business (``AlarmBudget``
hands each test its level); the confirmation here is a second line against detectors whose
nominal level is not their real one (overlapping windows, autocorrelated inputs).
"""

from __future__ import annotations

import math
from typing import Any

from river import base

from detectors.health.control_action import ControlAction
from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.state import HealthState
from detectors.health.transition import Transition


class HealthPolicy(base.Base):
    """The health of one model, driven by ``Evidence`` and ``Heartbeat`` records.

    Parameters
    ----------
    confirm
        Alarms, at distinct event times, that a ``degraded`` model needs before it falls back.
        Several tests of one window share its event time and count once.
    min_dwell
        Seconds a model stays in ``degraded``, ``fallback`` or ``probing`` before a
        non-critical transition out of it.
    clear_after
        Seconds without any alarm after which ``degraded`` returns to ``healthy``,
        ``fallback`` moves to ``probing``, and ``probing`` restores the live model. A
        ``degraded`` model whose last windowed alarm's test has not given its next result
        yet waits for it as well, up to ``2 * clear_after`` after that alarm, so that two
        windows up to that far apart confirm each other.
    escalate_after
        Seconds on fallback (``fallback`` or ``probing``) after which the fallback episode
        escalates to a human, once per episode; default three days.

    Notes
    -----
    ``update(record)`` takes an ``Evidence`` or a ``Heartbeat``; anything else, or a record
    whose ``at`` is not a finite number, is counted in ``ignored`` and changes nothing.
    Event time never goes backwards: late evidence counts as arriving at the newest time
    seen. At most one transition happens per update, at the update's time, so quiet streams
    need heartbeats (e.g. one per model per minute of event time) for dwell, probation and
    escalation to fire on time.

    ``action`` and ``escalation_due`` are edges, like river's ``drift_detected``: they hold
    for the update that caused them and clear at the next one. Read them after each update.

    Examples
    --------
    A noisy but healthy stream: rare unconfirmed alarms degrade, never fall back.

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> policy = HealthPolicy(confirm=2, min_dwell=900.0, clear_after=3600.0)
    >>> seen, alarms = set(), 0
    >>> for i in range(2_000):
    ...     alarm = bool(rng.random() < 0.002)
    ...     alarms += alarm
    ...     policy.update(Evidence(detector="ks", at=60.0 * i, alarm=alarm))
    ...     seen.add(policy.state.value)
    >>> alarms, sorted(seen), policy.seq
    (7, ['degraded', 'healthy'], 0)

    A persistent alarm falls back once confirmed and past the dwell; quiet brings it back.

    >>> policy = HealthPolicy(confirm=2, min_dwell=900.0, clear_after=3600.0)
    >>> actions = []
    >>> for i in range(300):
    ...     policy.update(Evidence(detector="psi", at=60.0 * i, alarm=100 <= i < 130))
    ...     if policy.action is not None:
    ...         actions.append((i, policy.action.action, policy.action.seq))
    >>> actions
    [(115, 'fallback', 1), (249, 'restore', 2)]
    >>> policy.transition.from_state.value, policy.transition.to_state.value
    ('probing', 'healthy')
    """

    # The state and the evidence, transition and action kept (objects, which the garbage
    # collector tracks) in slots, the numbers in the attribute dict, which it then stops
    # tracking.
    __slots__ = ("_action", "_cause", "_last_evidence", "_state", "_transition")

    def __init__(
        self,
        confirm: int = 2,
        min_dwell: float = 900.0,
        clear_after: float = 3600.0,
        escalate_after: float = 3 * 86_400.0,
    ) -> None:
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            raise ValueError(f"confirm={confirm!r}: expected an integer >= 1")
        for name, value, low in (
            ("min_dwell", min_dwell, 0.0),
            ("clear_after", clear_after, 0.0),
            ("escalate_after", escalate_after, 0.0),
        ):
            if not _is_finite_number(value) or value < low:
                raise ValueError(f"{name}={value!r}: expected a finite number of seconds >= 0")
        self.confirm = confirm
        self.min_dwell = min_dwell
        self.clear_after = clear_after
        self.escalate_after = escalate_after
        self._reset()

    def _reset(self) -> None:
        self._state = HealthState.HEALTHY
        self._now: float | None = None
        self._since: float | None = None
        self._last_alarm_at = -math.inf
        # Event time of the last alarm counted towards confirmation, and how many were.
        self._confirmed_at = -math.inf
        self._confirmations = 0
        # While degraded: (detector, feature, event time) of the last windowed alarm whose
        # test has not given its next result yet.
        self._awaiting: tuple[str, str | None, float] | None = None
        self._cause: Evidence | None = None
        self._transition: Transition | None = None
        self._fallback_since: float | None = None
        self._escalated = False
        self._escalation_due = False
        self._action: ControlAction | None = None
        self._seq = 0
        self._last_evidence: Evidence | None = None
        self._ignored = 0

    # -- results -----------------------------------------------------------------------

    @property
    def state(self) -> HealthState:
        """The model's current health state."""
        return self._state

    @property
    def since(self) -> float | None:
        """Event time of the last transition (of the first update, before any)."""
        return self._since

    @property
    def transition(self) -> Transition | None:
        """The last transition, or None before the first."""
        return self._transition

    @property
    def on_fallback(self) -> bool:
        """Whether the fleet serves this model's fallback (``fallback`` or ``probing``)."""
        return self._state.serves_fallback

    @property
    def fallback_since(self) -> float | None:
        """Event time the current fallback episode began, or None when serving live."""
        return self._fallback_since

    @property
    def escalation_due(self) -> bool:
        """True for the one update at which the fallback episode passed ``escalate_after``."""
        return self._escalation_due

    @property
    def action(self) -> ControlAction | None:
        """The control action the last update's transition asks for, if any."""
        return self._action

    @property
    def seq(self) -> int:
        """Sequence number of the last action issued (0 before any)."""
        return self._seq

    @property
    def last_evidence(self) -> Evidence | None:
        """The newest evidence received, alarming or not."""
        return self._last_evidence

    @property
    def ignored(self) -> int:
        """How many records were not evidence or heartbeats with a finite time."""
        return self._ignored

    # -- update ------------------------------------------------------------------------

    def update(self, x: Any) -> None:
        # Edges clear on every update, ignored ones too: a caller reading ``action`` after
        # each update must not see the previous update's command again.
        self._action = None
        self._escalation_due = False
        if not isinstance(x, Evidence | Heartbeat) or not _is_finite_number(x.at):
            self._ignored += 1
            return
        now = float(x.at) if self._now is None else max(self._now, float(x.at))
        self._now = now
        if self._since is None:
            self._since = now
        moved = False
        if isinstance(x, Evidence):
            self._last_evidence = x
            awaiting = self._awaiting
            if (
                awaiting is not None
                and awaiting[:2] == (x.detector, x.feature)
                and x.at > awaiting[2]
            ):
                # The awaited test looked again: alarm (counted below) or not.
                self._awaiting = None
            if x.critical or (x.alarm and x.material):
                moved = self._on_alarm(x, now)
        if not moved:
            self._on_time(now)
        if (
            self._fallback_since is not None
            and not self._escalated
            and now - self._fallback_since >= self.escalate_after
        ):
            self._escalated = True
            self._escalation_due = True

    def _on_alarm(self, evidence: Evidence, now: float) -> bool:
        self._last_alarm_at = now
        state = self._state
        if evidence.critical:
            if state is HealthState.FALLBACK:
                return False
            self._cause = evidence
            self._move(HealthState.FALLBACK, now, evidence, f"critical: {evidence.detector}")
            return True
        if state is HealthState.HEALTHY:
            self._cause = evidence
            self._confirmations = 1
            self._confirmed_at = evidence.at
            self._move(HealthState.DEGRADED, now, evidence, f"alarm: {evidence.detector}")
            self._await(evidence)
            return True
        if state is HealthState.PROBING:
            self._cause = evidence
            self._move(HealthState.FALLBACK, now, evidence, f"relapse: {evidence.detector}")
            return True
        if state is HealthState.DEGRADED:
            if evidence.at > self._confirmed_at:
                self._confirmations += 1
                self._confirmed_at = evidence.at
            self._await(evidence)
        return False

    def _await(self, evidence: Evidence) -> None:
        if evidence.windowed:
            self._awaiting = (evidence.detector, evidence.feature, evidence.at)

    def _on_time(self, now: float) -> None:
        state = self._state
        assert self._since is not None
        if state is HealthState.HEALTHY or now - self._since < self.min_dwell:
            return
        quiet = now - max(self._last_alarm_at, self._since) >= self.clear_after
        awaiting = self._awaiting
        if state is HealthState.DEGRADED and awaiting is not None:
            # The next window confirms only while it is news about the same change: one
            # due hours later (a model of a few predictions a minute) would make any two
            # unrelated small drifts a fallback (the null portfolio's slowly drifting mix:
            # 0.2 false fallbacks per model-day), so the wait ends after 2 * clear_after.
            quiet = quiet and now - awaiting[2] >= 2 * self.clear_after
        if state is HealthState.DEGRADED and self._confirmations >= self.confirm:
            reason = f"{self._confirmations} alarms confirmed"
            self._move(HealthState.FALLBACK, now, self._cause, reason)
        elif quiet:
            reason = f"no alarm for {self.clear_after:g} s"
            target = HealthState.PROBING if state is HealthState.FALLBACK else HealthState.HEALTHY
            self._move(target, now, None, reason)

    def _move(
        self, target: HealthState, now: float, evidence: Evidence | None, reason: str
    ) -> None:
        source = self._state
        self._transition = Transition(
            from_state=source,
            to_state=target,
            at=now,
            detector=None if evidence is None else evidence.detector,
            evidence=evidence,
            reason=reason,
        )
        self._state = target
        self._since = now
        if target is not HealthState.DEGRADED:
            self._confirmations = 0
            self._confirmed_at = -math.inf
            self._awaiting = None
        if source.serves_fallback == target.serves_fallback:
            return
        # Only crossing between serving live and serving the fallback changes the fleet.
        self._seq += 1
        self._action = ControlAction(
            action="fallback" if target.serves_fallback else "restore",
            seq=self._seq,
            at=now,
            detector=self._transition.detector,
            reason=reason,
        )
        if target.serves_fallback:
            self._fallback_since = now
            self._escalated = False
        else:
            self._fallback_since = None


def _is_finite_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        # An int beyond the float range: no usable time, like infinity.
        return False
