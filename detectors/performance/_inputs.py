"""Turning untrusted update() inputs into finite numbers or ``None``, never raising."""

from __future__ import annotations

import itertools
import math
import numbers
import operator
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


_INT_OR_NONE = frozenset({int, type(None)})


def label_pairs(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``values`` as columns when every value is a tuple of an int or None (a label or no
    label yet) and a float (the score): the labels as int64 (0 where None), whether each
    has one, and the scores as float64 (what ``fields`` and ``finite_float`` take at once,
    in C-level passes); else None, and for an int beyond 64 bits too: the caller then
    reads each value on its own."""
    if set(map(type, values)) != {tuple}:
        return None
    try:
        # Tuples of two, else ``strict`` (some longer than others) or the unpacking (all
        # of another length) raises.
        given, scores = zip(*values, strict=True)
    except ValueError:
        return None
    if set(map(type, scores)) != {float} or not set(map(type, given)) <= _INT_OR_NONE:
        return None
    n, unlabelled = len(given), given.count(None)
    try:
        # Most batches are all predictions (an estimate's before labels come) or all
        # labels (a metric's): one conversion, no mask to build.
        if unlabelled == n:
            labels, labelled = np.zeros(n, np.int64), np.zeros(n, np.bool_)
        elif not unlabelled:
            labels, labelled = np.array(given, np.int64), np.ones(n, np.bool_)
        else:
            labelled = np.fromiter(map(operator.is_not, given, itertools.repeat(None)), np.bool_)
            labels = np.zeros(n, np.int64)
            labels[labelled] = list(itertools.compress(given, labelled.tolist()))
    except OverflowError:
        return None
    return labels, labelled, np.array(scores, np.float64)
