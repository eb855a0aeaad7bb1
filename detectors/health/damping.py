"""Alert damping: an alert changes severity at most once per period, unless it escalates.

On-call is paged on every change of an alert's severity. A detector near its threshold
crosses it back and forth (the demo's ``score`` alerts toggled between normal and warning
every 5 to 10 s for two minutes), and each crossing is a page that says nothing new.

``AlertDamping`` sits between the alerts a model's monitor makes and the sink. Each alert
has a key (the model's detector, or its health alert) and a severity ranked as Alerta
ranks them. Per key:

- an **escalation** (a severity above the one last sent) is sent at once: a model that gets
  worse must never wait;
- the severity last sent again (a duplicate, which Alerta only counts) is sent, and any
  change held for the key is dropped: the flap never reaches anyone;
- any other change within ``period`` of the last one sent is **held**: the newest held
  alert replaces an older one;
- a held alert goes out once ``period`` has passed since the last one sent (``release``,
  called with the event time as it advances).

So a key's severity changes at most once per period on the way down, and what on-call
sees last is always the newest state. Time is event time in seconds, passed in; the
object is pure and pickles with the monitor that owns it. Memory is one entry per key.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SEVERITY_RANKS", "AlertDamping"]

# Alerta's order, most severe first; a larger rank here is more severe.
SEVERITY_RANKS = {
    "ok": 0,
    "normal": 0,
    "cleared": 0,
    "informational": 1,
    "warning": 2,
    "minor": 3,
    "major": 4,
    "critical": 5,
    "security": 6,
}


class AlertDamping:
    """Holds back an alert's de-escalations and flaps for ``period`` seconds.

    Parameters
    ----------
    period
        Seconds of event time an alert's severity must stay before it may change again
        other than upwards; 0 passes every change through.

    Examples
    --------
    A detector alarms, goes quiet two seconds later, alarms again: on-call gets one page.

    >>> damping = AlertDamping(period=300.0)
    >>> damping.offer("score", "warning", 0.0, "score alarms")
    ['score alarms']
    >>> damping.offer("score", "normal", 2.0, "score quiet")
    []
    >>> damping.offer("score", "warning", 5.0, "score alarms again")
    ['score alarms again']

    A quiet that lasts is sent once the period since the first alarm has passed.

    >>> damping.offer("score", "normal", 100.0, "score quiet")
    []
    >>> damping.release(299.0), damping.release(300.0)
    ([], ['score quiet'])
    >>> damping.held
    0
    """

    def __init__(self, period: float = 300.0) -> None:
        if not (isinstance(period, int | float) and math.isfinite(period) and period >= 0):
            raise ValueError(f"period must be a finite number of seconds >= 0, got {period!r}")
        self.period = period
        self._reset()

    def _reset(self) -> None:
        # key -> (rank of the severity last sent, event time it was sent)
        self._sent: dict[str, tuple[int, float]] = {}
        # key -> (rank, alert) of the newest change waiting for the period to pass
        self._held: dict[str, tuple[int, Any]] = {}

    def offer(self, key: str, severity: str, at: float, alert: Any) -> list[Any]:
        """The alerts to send now, given a new ``alert`` of ``severity`` for ``key`` at ``at``.

        Raises
        ------
        ValueError
            When ``severity`` is not one of ``SEVERITY_RANKS`` (a bug of the caller).
        """
        try:
            rank = SEVERITY_RANKS[severity]
        except KeyError:
            raise ValueError(
                f"severity must be one of {sorted(SEVERITY_RANKS)}, got {severity!r}"
            ) from None
        sent = self._sent.get(key)
        if sent is None or rank > sent[0] or at - sent[1] >= self.period:
            self._held.pop(key, None)
            self._sent[key] = (rank, at)
            return [alert]
        if rank == sent[0]:
            # Back where on-call last saw it: the flap is dropped, the duplicate goes out.
            self._held.pop(key, None)
            return [alert]
        self._held[key] = (rank, alert)
        return []

    def release(self, at: float) -> list[Any]:
        """The held alerts whose key has kept its last severity for ``period`` by ``at``."""
        due = [key for key in self._held if at - self._sent[key][1] >= self.period]
        released = []
        for key in due:
            rank, alert = self._held.pop(key)
            self._sent[key] = (rank, at)
            released.append(alert)
        return released

    @property
    def held(self) -> int:
        """How many alerts are waiting for their period to pass."""
        return len(self._held)
