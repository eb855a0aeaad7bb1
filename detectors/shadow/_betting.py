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
import numpy.typing as npt

_TRUNCATION = 0.5
# Rows of the (observations x grid) arrays a batch update computes at once: 64 rows of a
# 1,000-candidate grid, 512 KB an array, stay in a core's cache (256 rows cost 40% more).
_ROWS = 64
_LOG_2 = math.log(2.0)
# Far above the rounding of capitals near a threshold of at most a few tens (1e-13).
_BAND = 1e-9


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
        self._bounds = (0.0, 1.0)
        self._bounds_at = 0

    def update(self, x: float) -> None:
        t = self._n + 1
        variance = (0.25 + self._squared_deviations) / t
        bet = min(math.sqrt(self._log_factor / (variance * t * math.log1p(t))), _TRUNCATION)
        stake = bet * (x - self._grid)
        self._log_up += np.log1p(stake)
        self._log_down += np.log1p(-stake)
        self._n = t
        self._sum += x
        self._squared_deviations += (x - (0.5 + self._sum) / (t + 1)) ** 2

    def update_many(self, xs: list[float]) -> list[tuple[float, float]]:
        """Add ``xs`` in turn, exactly as ``update`` on each; the bounds after each.

        The bets and running sums go value by value with ``update``'s own arithmetic (a
        bet reads the variance of the values before it); the capitals are then one
        cumulative sum down an (observations x grid) array, which adds row after row as
        ``update`` does, and the bounds of every row come from one mask.
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
        capitals = []
        for start, sign in ((self._log_up, 1.0), (self._log_down, -1.0)):
            rows = np.empty((len(xs) + 1, len(self._grid)))
            rows[0] = start
            np.log1p(stakes if sign > 0 else -stakes, out=rows[1:])
            np.cumsum(rows, axis=0, out=rows)
            capitals.append(rows[1:])
        self._log_up, self._log_down = capitals[0][-1].copy(), capitals[1][-1].copy()
        self._n, self._sum, self._squared_deviations = n, total, squared
        found = self._bounds_of(capitals[0], capitals[1])
        self._bounds, self._bounds_at = found[-1], n
        return found

    def _bounds_of(self, log_up: np.ndarray, log_down: np.ndarray) -> list[tuple[float, float]]:
        """``_compute_bounds`` for each row of capitals."""
        kept = self._kept(log_up, log_down)
        first = np.argmax(kept, axis=1)
        last = (kept.shape[1] - 1 - np.argmax(kept[:, ::-1], axis=1)).tolist()
        # A row keeps a candidate if its first True is one (argmax is 0 on no True).
        any_kept_rows = kept[np.arange(len(kept)), first].tolist()
        grid = self._grid.tolist()
        cell = 1.0 / len(grid)
        return [
            (max(grid[i] - cell, 0.0), min(grid[j] + cell, 1.0))
            if any_kept
            else (math.nan, math.nan)
            for i, j, any_kept in zip(first.tolist(), last, any_kept_rows, strict=True)
        ]

    def bounds(self) -> tuple[float, float]:
        """(lower, upper); NaN when every candidate is excluded (a drifting mean)."""
        if self._bounds_at != self._n:
            self._bounds = self._compute_bounds()
            self._bounds_at = self._n
        return self._bounds

    def _compute_bounds(self) -> tuple[float, float]:
        kept = self._grid[self._kept(self._log_up, self._log_down)]
        if not len(kept):
            return math.nan, math.nan
        # The kept candidates are an interval holding the mean (with probability 1 - alpha);
        # a true mean between two candidates is within one cell of the nearest kept one.
        cell = 1.0 / len(self._grid)
        return max(float(kept[0]) - cell, 0.0), min(float(kept[-1]) + cell, 1.0)

    def _kept(self, log_up: np.ndarray, log_down: np.ndarray) -> npt.NDArray[np.bool_]:
        """Whether each candidate's hedged capital, ``logaddexp(log_up, log_down) +
        log(0.5)``, is below the threshold: exactly that comparison, with ``logaddexp``
        (ten times ``log1p``'s cost) only where its answer is not already known.

        The hedged capital is between ``max(log_up, log_down) - log(2)`` and that maximum,
        so a candidate whose maximum is below the threshold is kept and one whose maximum
        is ``log(2)`` or more above it is not, with ``_BAND`` to spare for rounding; only
        the few candidates in between, near the interval's ends, are computed.
        """
        highest = np.maximum(log_up, log_down)
        kept = highest < self._log_threshold - _BAND
        unsure = ~kept & (highest < self._log_threshold + _LOG_2 + _BAND)
        if unsure.any():
            hedged = np.logaddexp(log_up[unsure], log_down[unsure]) + math.log(0.5)
            kept[unsure] = hedged < self._log_threshold
        return kept

    @property
    def n(self) -> int:
        return self._n

    @property
    def mean(self) -> float:
        return self._sum / self._n if self._n else math.nan
