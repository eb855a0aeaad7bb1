"""A record that moves a health policy's event time forward without any evidence."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """Event time has reached ``at`` (seconds) for a model, whether or not detectors spoke.

    On a quiet stream no evidence arrives, yet dwell times end, probation passes and a
    model on fallback must still escalate. The streams layer sends one per model on a
    timer, stamped with the newest event time it has seen (never the wall clock).

    Examples
    --------
    >>> import numpy as np
    >>> at = float(np.random.default_rng(1).integers(0, 86_400))
    >>> Heartbeat(at=at)
    Heartbeat(at=40883.0)
    """

    at: float
