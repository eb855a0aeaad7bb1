"""A command for the serving fleet that a health transition asks for."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ControlAction:
    """Switch a model's serving to its fallback, or back to the live model.

    The streams layer signs it and sends it on the control topic, keyed by model.

    Parameters
    ----------
    action
        ``"fallback"`` or ``"restore"``.
    seq
        Per-model sequence number, 1 for the model's first action, then increasing by one;
        serving nodes drop a command whose seq is not above the last one they saw.
    at
        Event time of the transition that asked for it, in seconds.
    detector
        The detector that caused it, or None for a restore caused by quiet.
    reason
        One line for humans.

    Examples
    --------
    >>> import numpy as np
    >>> at = float(np.random.default_rng(3).integers(0, 1000))
    >>> ControlAction(action="fallback", seq=1, at=at, detector="psi", reason="confirmed")
    ControlAction(action='fallback', seq=1, at=811.0, detector='psi', reason='confirmed')
    """

    action: Literal["fallback", "restore"]
    seq: int
    at: float
    detector: str | None
    reason: str
