"""A fixed-size window of the last rows of numbers: bounded state that pickles compactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors._compiled import compiled


class Window:
    """The last ``size`` rows of ``columns`` floats each, kept in one preallocated array."""

    def __init__(self, size: int, columns: int) -> None:
        self._rows = np.zeros((size, columns))
        self._next = 0
        self._filled = 0

    def push(self, *row: float) -> None:
        self._rows[self._next] = row
        self._next = (self._next + 1) % len(self._rows)
        self._filled = min(self._filled + 1, len(self._rows))

    def append(self, number: float) -> None:
        """``push(number)`` on a window of one column, as a scalar write: numpy converts a
        row given as a tuple, which costs four times as much (the model watch's output
        detectors append a number for each prediction)."""
        size = len(self._rows)
        self._rows[self._next, 0] = number
        self._next = (self._next + 1) % size
        if self._filled < size:
            self._filled += 1

    def push_many(self, rows: np.ndarray) -> None:
        """Push ``rows`` (one per row, ``columns`` wide) in order, as ``push`` one by one."""
        size = len(self._rows)
        n = len(rows)
        start = self._next
        if n <= size - start:
            # Most batches: the rows fit before the end, one slice.
            self._rows[start : start + n] = rows
        else:
            # Only the last ``size`` rows stay, and writing only them keeps positions distinct.
            at = (start + np.arange(max(n - size, 0), n)) % size
            self._rows[at] = rows[-size:]
        self._next = (start + n) % size
        self._filled = min(self._filled + n, size)

    def __len__(self) -> int:
        return self._filled

    @property
    def rows(self) -> np.ndarray:
        """The preallocated rows, for a compiled loop that pushes into them as ``push``
        does, then sets ``cursor``."""
        return self._rows

    @property
    def cursor(self) -> tuple[int, int]:
        """The row the next push writes, and how many rows are held."""
        return self._next, self._filled

    @cursor.setter
    def cursor(self, cursor: tuple[int, int]) -> None:
        self._next, self._filled = cursor

    def __getstate__(self) -> dict[str, Any]:
        # Until the window is full, the rows past ``_filled`` are the zeros it was made with:
        # a window of 1,000 pairs would pickle 16 KB before its first row.
        return {**self.__dict__, "_rows": self._rows[: self._filled], "_size": len(self._rows)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A checkpoint written before the zeros were left out has no ``_size`` and all its
        # rows: it loads as it is, so that ``Monitor.restore`` refuses it by its format.
        size = state.pop("_size", len(state["_rows"]))
        rows = np.zeros((size, state["_rows"].shape[1]))
        rows[: len(state["_rows"])] = state["_rows"]
        self.__dict__.update(state, _rows=rows)

    def column(self, index: int) -> np.ndarray:
        """One column of the rows held, in no particular order (a view; do not modify it)."""
        return self._rows[: self._filled, index]

    def ordered(self, index: int) -> np.ndarray:
        """One column of the rows held, oldest first (a new array)."""
        column = self._rows[:, index]
        if self._filled < len(column):
            return column[: self._filled].copy()
        return np.roll(column, -self._next)


def validate_size(name: str, value: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer of at least 2."""
    if not isinstance(value, int) or value < 2:
        raise ValueError(f"{name} must be an integer of at least 2, got {value!r}")


def mid_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of their ranks."""
    ordered = np.sort(values)
    left = np.searchsorted(ordered, values, side="left")
    right = np.searchsorted(ordered, values, side="right")
    return (left + right + 1) / 2.0


def auc_of(n: int, positives: int, twice: int) -> float:
    """The ROC AUC of ``n`` scores from ``ranked_counts``' last two counts, ties counted
    half (NaN without both classes)."""
    negatives = n - positives
    if positives == 0 or negatives == 0:
        return math.nan
    rank_sum = twice / 2.0
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


@compiled
def ranked_counts(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> tuple[int, int, int, int]:
    """In one pass over labelled scores (a report reads a window's accuracy and ROC AUC,
    each a dozen numpy calls otherwise): the true positives at ``scores >= threshold``,
    the predicted positives, the positives (``labels == 1``), and twice the positives'
    mid-ranks summed (``mid_ranks``), in integers. A rank is the number of scores below,
    plus the number at or below, plus one, halved: ``np.searchsorted``'s left and right
    sides in the sorted scores, found here by bisection with numpy's order (NaN last)."""
    ordered = np.sort(scores)
    n = ordered.shape[0]
    true_positives = predicted = positives = twice = 0
    for k in range(n):
        score = scores[k]
        above = score >= threshold
        predicted += above
        if labels[k] == 1:
            positives += 1
            true_positives += above
            twice += _below(ordered, score, False) + _below(ordered, score, True) + 1
    return true_positives, predicted, positives, twice


@compiled
def _below(ordered: np.ndarray, value: float, equal: bool) -> int:
    """How many of ``ordered`` (sorted, NaN last) come before ``value``, and those equal to
    it too when ``equal``: ``np.searchsorted``'s left and right sides."""
    low, high = 0, ordered.shape[0]
    while low < high:
        middle = (low + high) // 2
        item = ordered[middle]
        # numpy's order: a NaN after every number, and equal to another NaN.
        before = item < value or (value != value and item == item)
        if equal and not before:
            before = item == value or (item != item and value != value)
        if before:
            low = middle + 1
        else:
            high = middle
    return low
