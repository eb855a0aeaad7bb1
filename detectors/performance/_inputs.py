"""Turning untrusted update() inputs into finite numbers or ``None``, never raising."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (numpy's included), for constructor checks."""
    return isinstance(value, numbers.Real)


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a finite real number."""
    if type(value) is float:
        # Most inputs: skips the abstract-class check, a third of the label join's time.
        return value if math.isfinite(value) else None
    if type(value) is int:
        # Labels: an int is a real number whose float is finite unless it overflows.
        try:
            return float(value)
        except OverflowError:
            return None
    if not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


def unit_float(value: Any) -> float | None:
    """``value`` as a float in [0, 1], or ``None`` when it is anything else."""
    number = finite_float(value)
    return number if number is not None and 0.0 <= number <= 1.0 else None


def binary_label(value: Any) -> int | None:
    """``value`` as 0 or 1 (bools and the numbers 0 and 1 count), or ``None``."""
    number = finite_float(value)
    return int(number) if number in (0.0, 1.0) else None


def fields(value: Any, count: int) -> tuple[Any, ...] | None:
    """The items of a tuple or list of exactly ``count`` items, or ``None``."""
    if type(value) is tuple:
        # Most inputs: the tuple itself (what ``tuple`` gives it), without the union check.
        return value if len(value) == count else None
    if isinstance(value, tuple | list) and len(value) == count:
        return tuple(value)
    return None


# ``float_pairs`` takes at least this many values: below it, a detector's loop over the
# values costs less than the dozen numpy operations on their columns.
PAIRS_AT_ONCE = 64


def float_pairs(values: Sequence[Any]) -> tuple[tuple[Any, ...], np.ndarray] | None:
    """The first items and, as a float64 array, the second items of ``values`` when every
    value is a tuple of two whose second item is a float (what ``fields`` and
    ``finite_float`` take at once, in C-level passes) and they are ``PAIRS_AT_ONCE`` or
    more; else None."""
    if len(values) < PAIRS_AT_ONCE:
        return None
    if set(map(type, values)) != {tuple} or set(map(len, values)) != {2}:
        return None
    first, second = zip(*values, strict=True)
    if set(map(type, second)) != {float}:
        return None
    return first, np.array(second, np.float64)
