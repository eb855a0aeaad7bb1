"""A confidence sequence for the mean of [0, 1] observations, by betting.

Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting" (JRSS-B,
2024): for each candidate mean ``m`` on a grid, a gambler bets on the observations being
above ``m`` and another on them being below; their hedged capital is a nonnegative
martingale when ``m`` is the true mean, so by Ville's inequality it ever reaches
``1 / alpha`` with probability at most ``alpha``. The candidates whose capital stays below
that form a (1 - alpha) confidence sequence: valid at every time at once, so it may be
looked at after every observation. Bets are the predictable plug-in of their eq. (26),
truncated at ``_TRUNCATION``: below their Theorem 3's ``_TRUNCATION / m`` and
``_TRUNCATION / (1 - m)`` for every candidate, which keeps the capital positive and lets
one bet serve the whole grid.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._compiled import compiled

_TRUNCATION = 0.5
# Rows of the (observations x grid) arrays a batch update computes at once: the four
# arrays of 16 rows of a 1,000-candidate grid, 128 KB each, stay in a core's cache (32 or
# 64 rows cost twice as much a value, 4 or 8 rows a fifth more).
_ROWS = 16
_LOG_2 = math.log(2.0)
# Far above the rounding of capitals near a threshold of at most a few tens (1e-13).
_BAND = 1e-9
_LOG_HALF = math.log(0.5)


class BettingConfidenceSequence:
    """Running (1 - alpha) confidence bounds on the mean of observations in [0, 1]."""

    def __init__(self, alpha: float, grid_size: int) -> None:
        self._log_threshold = math.log(1.0 / alpha)
        self._log_factor = 2.0 * math.log(2.0 / alpha)
        self._grid = (np.arange(grid_size) + 0.5) / grid_size
        self._log_up = np.zeros(grid_size)
        self._log_down = np.zeros(grid_size)
        self._n = 0
        self._sum = 0.0
        self._squared_deviations = 0.0
        # The bounds after the last value, found with it.
        self._bounds = (0.0, 1.0)

    def update(self, x: float) -> None:
        t = self._n + 1
        variance = (0.25 + self._squared_deviations) / t
        bet = min(math.sqrt(self._log_factor / (variance * t * math.log1p(t))), _TRUNCATION)
        stake = (bet * (x - self._grid))[None]
        self._bounds = self._add_rows(stake)[0]
        self._n = t
        self._sum += x
        self._squared_deviations += (x - (0.5 + self._sum) / (t + 1)) ** 2

    def update_many(self, xs: list[float]) -> list[tuple[float, float]]:
        """Add ``xs`` in turn, exactly as ``update`` on each; the bounds after each.

        The bets and running sums go value by value with ``update``'s own arithmetic (a
        bet reads the variance of the values before it); the stakes of every value on
        every candidate are then one (observations x grid) array, and ``_add_rows`` adds
        their logarithms to the capitals row after row, as ``update`` does.
        """
        found: list[tuple[float, float]] = []
        for start in range(0, len(xs), _ROWS):
            found.extend(self._update_rows(xs[start : start + _ROWS]))
        return found

    def _update_rows(self, xs: list[float]) -> list[tuple[float, float]]:
        bets = []
        n, total, squared = self._n, self._sum, self._squared_deviations
        for x in xs:
            t = n + 1
            variance = (0.25 + squared) / t
            bets.append(
                min(math.sqrt(self._log_factor / (variance * t * math.log1p(t))), _TRUNCATION)
            )
            n = t
            total += x
            squared += (x - (0.5 + total) / (t + 1)) ** 2
        stakes = np.array(bets)[:, None] * (np.array(xs)[:, None] - self._grid)
        found = self._add_rows(stakes)
        self._n, self._sum, self._squared_deviations = n, total, squared
        self._bounds = found[-1]
        return found

    def _add_rows(self, stakes: np.ndarray) -> list[tuple[float, float]]:
        """Bets ``stakes`` (a row per value) in turn; the bounds after each row.

        The logarithms of the capitals' factors are numpy's (``log1p`` of a whole array
        may be vectorised code whose last bit differs from the C library's); the compiled
        loop adds them and reads the bounds.
        """
        bounds = _bet_rows(
            self._log_up,
            self._log_down,
            np.log1p(stakes),
            np.log1p(-stakes),
            self._grid,
            self._log_threshold,
        )
        return [
            (math.nan, math.nan) if lower != lower else (lower, upper)
            for lower, upper in bounds.tolist()
        ]

    def bounds(self) -> tuple[float, float]:
        """(lower, upper); NaN when every candidate is excluded (a drifting mean)."""
        return self._bounds

    @property
    def n(self) -> int:
        return self._n

    @property
    def mean(self) -> float:
        return self._sum / self._n if self._n else math.nan


@compiled
def _bet_rows(
    log_up: np.ndarray,
    log_down: np.ndarray,
    up_steps: np.ndarray,
    down_steps: np.ndarray,
    grid: np.ndarray,
    log_threshold: float,
) -> np.ndarray:
    """Adds each row of ``up_steps`` and ``down_steps`` to the log capitals in turn (in
    place); the bounds after each row, NaN where every candidate is excluded.

    A candidate is kept while its hedged capital, ``logaddexp(log_up, log_down) + log(0.5)``,
    is below the threshold: that comparison, with ``logaddexp`` (ten times ``log1p``'s
    cost) only where its answer is not already known. The hedged capital is between
    ``max(log_up, log_down) - log(2)`` and that maximum, so a candidate whose maximum is
    below the threshold is kept and one whose maximum is ``log(2)`` or more above it is
    not, with ``_BAND`` to spare for rounding. The bounds are the first and the last
    candidates kept, widened by a cell: a true mean between two candidates is within one
    cell of the nearest kept one.
    """
    rows, size = up_steps.shape
    cell = 1.0 / size
    bounds = np.full((rows, 2), np.nan)
    for i in range(rows):
        for j in range(size):
            log_up[j] += up_steps[i, j]
            log_down[j] += down_steps[i, j]
        first = -1
        for j in range(size):
            if _kept(log_up[j], log_down[j], log_threshold):
                first = j
                break
        if first < 0:
            continue
        last = first
        for j in range(size - 1, first, -1):
            if _kept(log_up[j], log_down[j], log_threshold):
                last = j
                break
        # Python's ``max(lower, 0.0)`` and ``min(upper, 1.0)``.
        lower = grid[first] - cell
        upper = grid[last] + cell
        bounds[i, 0] = 0.0 if lower < 0.0 else lower
        bounds[i, 1] = 1.0 if upper > 1.0 else upper
    return bounds


@compiled
def _kept(log_up: float, log_down: float, log_threshold: float) -> bool:
    """Whether a candidate of these log capitals is kept (``_bet_rows``)."""
    highest = log_up if log_up >= log_down else log_down
    if highest < log_threshold - _BAND:
        return True
    if highest >= log_threshold + _LOG_2 + _BAND:
        return False
    return bool(np.logaddexp(log_up, log_down) + _LOG_HALF < log_threshold)
