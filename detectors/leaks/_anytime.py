"""Anytime-valid p-values for exact tests repeated as data arrives."""

from __future__ import annotations

import math

import numpy as np

from detectors.leaks._memory import with_rows


class AnytimePValues:
    """P-values that stay valid however often they are looked at, one per test (a
    feature's, say), tests numbered from 0 in the order they are added.

    Each test runs at sample sizes that grow geometrically (``growth``), never more than
    once per size. Its look ``j`` is charged ``j * (j + 1)``, so the charges sum to one and
    the union bound makes its p-value, the smallest charged p-value so far, valid at every
    moment: under the null hypothesis it falls to ``alpha`` or below with probability at
    most ``alpha`` over the whole unbounded stream.

    The tests' looks so far, next sample sizes due and p-values are numpy arrays
    (``looks``, ``next_look``, ``p_value``), not an object per test, which a worker's
    garbage collections would walk for each feature of each model.

    >>> tests = AnytimePValues(first_look=20)
    >>> test = tests.add()
    >>> tests.due(test, 19), tests.due(test, 20)
    (False, True)
    >>> tests.record(test, 20, 0.01)
    >>> round(tests.p(test), 6), int(tests.next_look[test])
    (0.02, 22)
    """

    def __init__(self, first_look: int, growth: float = 1.1) -> None:
        self.first_look = first_look
        self.growth = growth
        self.looks = np.zeros(0, np.int64)
        self.next_look = np.zeros(0, np.int64)
        self.p_value = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return len(self.looks)

    def add(self, count: int = 1) -> int:
        """``count`` new tests, not looked at yet; the number of the last."""
        self.looks = with_rows(self.looks, 0, count)
        self.next_look = with_rows(self.next_look, self.first_look, count)
        self.p_value = with_rows(self.p_value, 1.0, count)
        return len(self.looks) - 1

    def due(self, test: int, size: int) -> bool:
        """Whether a look of ``test`` is due at sample size ``size``."""
        return size >= self.next_look.item(test)

    def p(self, test: int) -> float:
        """The p-value of ``test``."""
        return float(self.p_value.item(test))

    def record(self, test: int, size: int, p_value: float) -> None:
        """Takes the run of ``test`` at sample size ``size`` into account."""
        looks = self.looks.item(test) + 1
        self.looks[test] = looks
        charged = p_value * looks * (looks + 1)
        self.p_value[test] = min(self.p_value.item(test), charged, 1.0)
        self.next_look[test] = max(size + 1, math.ceil(round(size * self.growth, 9)))

    def __getstate__(self) -> tuple[int, float, list[int], list[int], list[float]]:
        """As plain numbers: smaller pickles than three arrays' for a few tests."""
        columns = self.looks.tolist(), self.next_look.tolist(), self.p_value.tolist()
        return (self.first_look, self.growth, *columns)

    def __setstate__(self, state: tuple[int, float, list[int], list[int], list[float]]) -> None:
        self.first_look, self.growth, looks, next_look, p_value = state
        self.looks = np.array(looks, np.int64)
        self.next_look = np.array(next_look, np.int64)
        self.p_value = np.array(p_value, np.float64)

    def copy(self) -> AnytimePValues:
        """An independent copy."""
        copied = AnytimePValues(self.first_look, self.growth)
        copied.looks, copied.next_look = self.looks.copy(), self.next_look.copy()
        copied.p_value = self.p_value.copy()
        return copied
