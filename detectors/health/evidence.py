"""What one detector observed about one model, in the form the health policy reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """One detector result about one model at one event time.

    The streams layer builds these from detector results; detectors do not know about them.

    Parameters
    ----------
    detector
        Name of the detector that produced the result, e.g. ``"psi"`` or ``"adwin_error"``.
    at
        Event time the result describes, in seconds (e.g. the end of the tested window).
    alarm
        Whether the detector alarmed at its level ``alpha``.
    feature
        The feature tested, or None for model-level detectors (score, error, latency).
    alpha
        The level the detector tested at, when it has one (see ``AlarmBudget``).
    p_value
        The p-value of the test, when known.
    critical
        An incident that acts at once, whatever the alarm budget: values from the future, an
        error rate above a hard limit.
    material
        Whether an alarm is worth acting on: the change it found is at least the
        detector's effect-size floor (the smallest shift worth a fallback), or it is
        evidence that performance, measured or estimated, dropped. An alarm below the floor
        is real but harmless: it is recorded and alerted on (informational), and the health
        policy does not act on it.
    windowed
        The result of a test that is evaluated again on its own (a window filling) and
        reports every evaluation, alarm or not. Until its next result, time without alarms
        says nothing about the change it found: a model this alarm degraded stays
        ``degraded``, so that the test's next window can confirm it, however long that
        window takes to fill.
    details
        A few named numbers or words for humans (statistic, counts); copied on construction.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = round(float(rng.uniform(0, 1e-4)), 7)
    >>> e = Evidence(detector="psi", feature="age", at=3600.0, alarm=p <= 1e-5, alpha=1e-5,
    ...              p_value=p, details={"psi": 0.31})
    >>> (e.alarm, e.p_value, e.details["psi"])
    (False, 6.37e-05, 0.31)
    """

    detector: str
    at: float
    alarm: bool
    feature: str | None = None
    alpha: float | None = None
    p_value: float | None = None
    critical: bool = False
    material: bool = True
    windowed: bool = False
    details: Mapping[str, float | int | str | bool] = dataclasses.field(
        default_factory=dict, hash=False
    )

    def __post_init__(self) -> None:
        # A caller mutating its own dict afterwards must not rewrite recorded evidence.
        object.__setattr__(self, "details", dict(self.details))
