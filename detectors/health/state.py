"""The states a model's health can be in."""

from __future__ import annotations

import enum


class HealthState(enum.StrEnum):
    """Where a model stands, from serving normally to serving its fallback.

    ``healthy`` and ``degraded`` serve the live model; ``fallback`` and ``probing`` serve the
    fallback. ``degraded`` is a watch state (an alarm not yet confirmed) and ``probing`` is a
    probation (quiet again, not yet trusted).

    Examples
    --------
    >>> HealthState("probing").serves_fallback
    True
    >>> [state.value for state in HealthState]
    ['healthy', 'degraded', 'fallback', 'probing']
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FALLBACK = "fallback"
    PROBING = "probing"

    @property
    def serves_fallback(self) -> bool:
        return self in (HealthState.FALLBACK, HealthState.PROBING)
