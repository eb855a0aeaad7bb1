"""Exact tail probabilities and an anytime-valid p-value for tests repeated as data arrives.

Only numpy and the standard library: scipy is a test dependency, not a runtime one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _upper_tail(log_first: float, log_ratios: np.ndarray) -> float:
    # P(k) in logs, then P(k + 1), P(k + 2), ... by ratios of consecutive terms.
    log_terms = log_first + np.concatenate([[0.0], np.cumsum(log_ratios)])
    return float(min(1.0, np.exp(log_terms).sum()))


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    i = np.arange(k, n, dtype=np.float64)
    log_ratios = np.log(n - i) - np.log(i + 1.0) + math.log(p) - math.log1p(-p)
    log_first = _log_choose(n, k) + k * math.log(p) + (n - k) * math.log1p(-p)
    return _upper_tail(log_first, log_ratios)


def hypergeom_sf(k: int, total: int, successes: int, draws: int) -> float:
    """P(X >= k) for X the successes among ``draws`` taken without replacement.

    The population has ``total`` items, ``successes`` of them successes. With the rows of a
    2x2 table as the draws, this is the one-sided p-value of Fisher's exact test.
    """
    low = max(0, draws - (total - successes))
    high = min(successes, draws)
    if k <= low:
        return 1.0
    if k > high:
        return 0.0
    i = np.arange(k, high, dtype=np.float64)
    log_ratios = (
        np.log(successes - i)
        + np.log(draws - i)
        - np.log(i + 1.0)
        - np.log(total - successes - draws + i + 1.0)
    )
    log_first = (
        _log_choose(successes, k)
        + _log_choose(total - successes, draws - k)
        - _log_choose(total, draws)
    )
    return _upper_tail(log_first, log_ratios)


@dataclasses.dataclass
class AnytimePValue:
    """A p-value that stays valid however often it is looked at.

    Tests run at sample sizes that grow geometrically (``growth``), never more than once per
    size. Look ``j`` is charged ``j * (j + 1)``, so the charges sum to one and the union
    bound makes ``p_value``, the smallest charged p-value so far, valid at every moment:
    under the null hypothesis it falls to ``alpha`` or below with probability at most
    ``alpha`` over the whole unbounded stream.
    """

    first_look: int
    growth: float = 1.1
    looks: int = 0
    next_look: int = 0
    p_value: float = 1.0

    def __post_init__(self) -> None:
        self.next_look = self.first_look

    def due(self, size: int) -> bool:
        """Whether a test is due at sample size ``size``."""
        return size >= self.next_look

    def record(self, size: int, p_value: float) -> None:
        """Takes the test run at sample size ``size`` into account."""
        self.looks += 1
        charged = p_value * self.looks * (self.looks + 1)
        self.p_value = min(self.p_value, charged, 1.0)
        self.next_look = max(size + 1, math.ceil(round(size * self.growth, 9)))
