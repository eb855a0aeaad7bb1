"""One change of a model's health state, with what caused it."""

from __future__ import annotations

import dataclasses

from detectors.health.evidence import Evidence
from detectors.health.state import HealthState


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A move from one health state to another at an event time.

    Parameters
    ----------
    from_state, to_state
        The states left and entered.
    at
        Event time of the move, in seconds.
    detector
        The detector whose evidence caused the move, or None when the move is caused by
        quiet (no alarm for long enough) rather than by a detector.
    evidence
        The evidence that caused the move: the critical record, or the first alarm of the
        episode that was confirmed; None for moves caused by quiet.
    reason
        One line for humans.

    Examples
    --------
    >>> import numpy as np
    >>> at = float(np.random.default_rng(2).integers(0, 1000))
    >>> e = Evidence(detector="future_values", at=at, alarm=True, critical=True)
    >>> t = Transition(from_state=HealthState.HEALTHY, to_state=HealthState.FALLBACK, at=at,
    ...                detector=e.detector, evidence=e, reason="critical: future_values")
    >>> (t.from_state.value, t.to_state.value, t.at)
    ('healthy', 'fallback', 837.0)
    """

    from_state: HealthState
    to_state: HealthState
    at: float
    detector: str | None
    evidence: Evidence | None
    reason: str
