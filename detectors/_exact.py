"""Exact binomial and hypergeometric tails, and Fisher's exact test, for every detector group.

Only numpy, numba and the standard library: scipy is a test dependency, not a runtime one.
The probabilities are built in logs from ratios of consecutive terms, so no factorial is
ever formed, however large the counts.

The tails are compiled loops (``detectors._compiled``), so that the compiled loops of the
detectors that test as they go (``_coincide``) call the very code Python calls: the same
libm logarithms and exponentials, summed in the same order, give the same p-value to the
bit in either (numpy's vectorized ``log`` and ``exp`` and its pairwise sums do not).
"""

from __future__ import annotations

import math

import numpy as np

from detectors._compiled import compiled


@compiled
def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)


def _hypergeom_log_ratios(
    start: int, stop: int, total: int, successes: int, draws: int
) -> np.ndarray:
    """``log P(k + 1) - log P(k)`` of the hypergeometric, for k from ``start`` to ``stop - 1``.

    ``hypergeom_tail`` adds the same ratios one at a time with the C library's logarithms,
    as the compiled loops must; Fisher's test, which no compiled loop calls, takes them as
    an array."""
    k = np.arange(start, stop, dtype=np.float64)
    return (
        np.log(successes - k)
        + np.log(draws - k)
        - np.log(k + 1.0)
        - np.log(total - successes - draws + k + 1.0)
    )


@compiled
def binomial_tail(k: int, n: int, p: float) -> float:
    """``binomial_sf``, for compiled loops."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_first = _log_choose(n, k) + k * log_p + (n - k) * log_q
    # P(k) in logs, then P(k + 1), P(k + 2), ... by ratios of consecutive terms.
    total = math.exp(log_first)
    ratios = 0.0
    for i in range(k, n):
        ratios += math.log(n - i) - math.log(i + 1.0) + log_p - log_q
        total += math.exp(log_first + ratios)
    return min(1.0, total)


@compiled
def hypergeom_tail(k: int, total: int, successes: int, draws: int) -> float:
    """``hypergeom_sf``, for compiled loops."""
    low = max(0, draws - (total - successes))
    high = min(successes, draws)
    if k <= low:
        return 1.0
    if k > high:
        return 0.0
    log_first = (
        _log_choose(successes, k)
        + _log_choose(total - successes, draws - k)
        - _log_choose(total, draws)
    )
    found = math.exp(log_first)
    ratios = 0.0
    for j in range(k, high):
        at = float(j)
        ratios += (
            math.log(successes - at)
            + math.log(draws - at)
            - math.log(at + 1.0)
            - math.log(total - successes - draws + at + 1.0)
        )
        found += math.exp(log_first + ratios)
    return min(1.0, found)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p).

    Examples
    --------
    >>> round(binomial_sf(8, 10, 0.5), 6)  # 56 of the 1024 sequences of ten fair flips
    0.054688
    """
    # One type per argument: a compiled loop is compiled once per combination of types.
    return binomial_tail(int(k), int(n), float(p))


def hypergeom_sf(k: int, total: int, successes: int, draws: int) -> float:
    """P(X >= k) for X the successes among ``draws`` taken without replacement.

    The population has ``total`` items, ``successes`` of them successes. With the rows of a
    2x2 table as the draws, this is the one-sided p-value of Fisher's exact test.

    Examples
    --------
    >>> round(hypergeom_sf(3, 10, 4, 4), 6)  # 3 or 4 of the 4 successes in 4 of 10 draws
    0.119048
    """
    return hypergeom_tail(int(k), int(total), int(successes), int(draws))


def fisher_exact_two_sided(
    reference_hits: int, reference_size: int, current_hits: int, current_size: int
) -> float:
    """Two-sided p-value of Fisher's exact test on a 2x2 table.

    Sums the hypergeometric probabilities of all tables no more likely than the observed
    one, as scipy's ``fisher_exact`` does.

    Examples
    --------
    >>> round(fisher_exact_two_sided(1, 10, 6, 10), 6)  # 1 hit in 10 against 6 in 10
    0.057276
    """
    total = reference_size + current_size
    hits = reference_hits + current_hits
    low = max(0, hits - reference_size)
    high = min(hits, current_size)
    if high == low:
        return 1.0
    log_ratios = _hypergeom_log_ratios(low, high, total, hits, current_size)
    log_pmf = np.concatenate([[0.0], np.cumsum(log_ratios)])
    log_pmf -= log_pmf.max()
    pmf = np.exp(log_pmf)
    pmf /= pmf.sum()
    observed = pmf[current_hits - low]
    return float(min(1.0, pmf[pmf <= observed * (1.0 + 1e-7)].sum()))
