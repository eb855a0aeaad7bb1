"""A change inside a reference sample: where it is, and the part before it.

A frozen reference is the first values a watch sees. When the stream already changes
while those values arrive (a watch started on a model whose inputs are moving), the
reference holds both sides of the change, and windows of the changed stream look like
part of it. ``reference_cut`` finds such a change and gives the length of the part
before it, the reference the change should have been measured against.

The change point is Pettitt's (1979): the split that maximizes the rank-sum difference
between the two parts, ``K = max_k |2 sum_{i<k} r_i - k (n + 1)|``, with the p-value
``2 exp(-6 K^2 / (n^3 + n^2))``. It needs no distribution, only ranks, so skewed,
discrete and zero-inflated values alike fit it (ties take their mid-rank, which only
makes the p-value conservative). Its level holds for independent values; slow harmless
movement (a daily mix, an aggregate's random walk) makes it find "changes" too, so a cut
also needs the values after the split to move at least ``min_effect`` of the population
against the values before it, by the effect the windows' alarms are judged with
(``quantile_effect``, less the part before's own slow variation and sampling noise).
"""

from __future__ import annotations

import math

import numpy as np

from detectors.drift._effect import quantile_effect, slow_variance
from detectors.drift._statistics import FloatArray

# Level of the test. It runs once per reference, so a strict one costs no power worth
# having: a change large enough to matter is far beyond it in a few hundred values.
CHANGE_ALPHA = 0.001
# Fewest values on either side of a cut: the part before becomes a reference, and fewer
# than 100 would leave each of a binned test's default ten bins under ten values.
MIN_SEGMENT = 100


def change_point(values: FloatArray, min_segment: int = MIN_SEGMENT) -> tuple[int, float]:
    """Pettitt's change point of ``values`` (finite, in arrival order): the length of the
    part before it, at least ``min_segment`` on either side, and its p-value.

    ``(0, 1.0)`` when there are fewer than ``2 * min_segment`` values.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> shifted = np.concatenate([rng.normal(0, 1, 150), rng.normal(1, 1, 450)])
    >>> cut, p_value = change_point(shifted)
    >>> cut, p_value < 1e-10
    (160, True)
    >>> cut, p_value = change_point(rng.normal(0, 1, 600))
    >>> round(p_value, 2)
    0.49
    """
    n = values.size
    if n < 2 * min_segment:
        return 0, 1.0
    # Mid-ranks: ties share the mean of the ranks they span.
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = mid_ranks[inverse]
    k = np.arange(1, n)
    u = np.abs(2.0 * np.cumsum(ranks)[:-1] - k * (n + 1.0))
    inside = u[min_segment - 1 : n - min_segment]
    best = int(np.argmax(inside))
    statistic = float(inside[best])
    p_value = min(1.0, 2.0 * math.exp(-6.0 * statistic**2 / (float(n) ** 3 + float(n) ** 2)))
    return best + min_segment, p_value


def reference_cut(
    values: FloatArray,
    min_effect: float,
    alpha: float = CHANGE_ALPHA,
    min_segment: int = MIN_SEGMENT,
) -> int:
    """How many of the first ``values`` (finite, in arrival order) form a reference: all of
    them, or those before a change inside them, significant at ``alpha`` and moving at
    least ``min_effect`` of the population (see the module's docstring).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(4)
    >>> drifting = np.concatenate([rng.lognormal(0, 1, 267), rng.lognormal(1, 1, 333)])
    >>> reference_cut(drifting, min_effect=0.15)
    266
    >>> reference_cut(rng.lognormal(0, 1, 600), min_effect=0.15)
    600
    >>> # A small shift is found, yet below the floor: the whole sample stays.
    >>> small = np.concatenate([rng.normal(0, 1, 300), rng.normal(0.3, 1, 300)])
    >>> reference_cut(small, min_effect=0.15)
    600
    """
    cut, p_value = change_point(values, min_segment)
    if p_value >= alpha:
        return values.size
    before = values[:cut]
    effect = quantile_effect(np.sort(before), slow_variance(before), values[cut:])
    return cut if effect >= min_effect else values.size
