"""Constructor argument checks shared by the leak detectors: each names the bad argument."""

from __future__ import annotations

import math
from typing import Any


def require_counts(minimum: int = 1, **values: Any) -> None:
    """Each value is an int of at least ``minimum``."""
    for name, value in values.items():
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def require_fractions(**values: Any) -> None:
    """Each value is a number strictly between 0 and 1 (a level or a quantile)."""
    for name, value in values.items():
        if not (isinstance(value, int | float) and 0 < value < 1):
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def require_durations(positive: bool = False, **values: Any) -> None:
    """Each value is a finite number of timestamp units, >= 0 (or > 0 if ``positive``)."""
    for name, value in values.items():
        ok = isinstance(value, int | float) and math.isfinite(value)
        if not ok or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
