"""A confidence sequence for the mean of [0, 1] observations, by betting.

Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting" (JRSS-B,
2024): for each candidate mean ``m`` on a grid, a gambler bets on the observations being
above ``m`` and another on them being below; their hedged capital is a nonnegative
martingale when ``m`` is the true mean, so by Ville's inequality it ever reaches
``1 / alpha`` with probability at most ``alpha``. The candidates whose capital stays below
that form a (1 - alpha) confidence sequence: valid at every time at once, so it may be
looked at after every observation. Bets are the predictable plug-in of their eq. (26),
truncated at ``_TRUNCATION / m`` and ``_TRUNCATION / (1 - m)`` as in their Theorem 3.
"""

from __future__ import annotations

import math

import numpy as np

_TRUNCATION = 0.5


class BettingConfidenceSequence:
    """Running (1 - alpha) confidence bounds on the mean of observations in [0, 1]."""

    def __init__(self, alpha: float, grid_size: int) -> None:
        self._log_threshold = math.log(1.0 / alpha)
        self._log_factor = 2.0 * math.log(2.0 / alpha)
        self._grid = (np.arange(grid_size) + 0.5) / grid_size
        self._log_up = np.zeros(grid_size)
        self._log_down = np.zeros(grid_size)
        self._up_cap = _TRUNCATION / self._grid
        self._down_cap = _TRUNCATION / (1.0 - self._grid)
        self._n = 0
        self._sum = 0.0
        self._squared_deviations = 0.0

    def update(self, x: float) -> None:
        t = self._n + 1
        variance = (0.25 + self._squared_deviations) / t
        bet = math.sqrt(self._log_factor / (variance * t * math.log1p(t)))
        excess = x - self._grid
        self._log_up += np.log1p(np.minimum(bet, self._up_cap) * excess)
        self._log_down += np.log1p(-np.minimum(bet, self._down_cap) * excess)
        self._n = t
        self._sum += x
        self._squared_deviations += (x - (0.5 + self._sum) / (t + 1)) ** 2

    def bounds(self) -> tuple[float, float]:
        """(lower, upper), widened to the grid cells' edges; NaN if every mean is excluded."""
        hedged = np.logaddexp(self._log_up, self._log_down) + math.log(0.5)
        kept = self._grid[hedged < self._log_threshold]
        if not len(kept):
            return math.nan, math.nan
        half_cell = 0.5 / len(self._grid)
        return max(float(kept[0]) - half_cell, 0.0), min(float(kept[-1]) + half_cell, 1.0)

    @property
    def n(self) -> int:
        return self._n

    @property
    def mean(self) -> float:
        return self._sum / self._n if self._n else math.nan
