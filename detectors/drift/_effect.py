"""Effect sizes: how far a sample moved from its reference, less what the reference's own
traffic moves when nothing changes.

An alarm says a change is there; its effect says whether the change is large enough to act
on. Effects are shares of the population, so one floor fits every feature and score:

- numeric (``quantile_effect``): each quartile ``q_p`` of the sample is placed in the
  reference's distribution ``F``; ``|F(q_p) - p|`` is the share of the reference between
  where the quartile was and where it is, and ``|F(q_75) - F(q_25) - 1/2|`` the share
  that left or entered the middle half (a change of spread). A normal stream whose median
  moves by ``d`` standard deviations has ``Phi(d) - 1/2``: 0.10 for 0.25, 0.19 for 0.5,
  0.34 for 1; a doubled standard deviation 0.32. A quartile on an atom of the reference
  (zero-inflated or discrete scores) covers every ``p`` from ``F(q-)`` to ``F(q)``: no
  effect there.
- categorical (``share_effect``): the largest change of one cell's share.

In-control noise. Each position is read less ``NOISE_SDS`` in-control standard deviations
of it. Its variance has two parts: sampling (``p (1 - p) (1/m + 1/n)`` for a sample of
``m`` and a reference of ``n`` values; ``(1/m + 1/n) / 4`` for the middle half), and the
slow variation of real traffic (a
time-of-day mix, a batch job moving an entity aggregate), which single values do not show
but the reference's consecutive blocks do: ``slow_variance`` is the variance of the
blocks' quartile positions less its sampling part. A reference without an order (counts,
a sorted window) has no slow part.

A reference spans hours; real traffic also wanders over days (an aggregate a batch job
keeps moving), further than the reference's blocks went. So a windowed test also learns
from its own windows (``steady_variance``): the mean square of the positions of the earlier
windows that were not material (effect below ``min_effect``), less their sampling part,
is the variation the traffic has shown without a change, and the noise takes the larger
of the two estimates. A slow walk widens it window by window as it goes; a step's windows
are material and never join it, so a break stays material however long it lasts.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from detectors.drift._statistics import FloatArray

QUARTILES = np.array([0.25, 0.5, 0.75])
# Per position (the three quartiles, then the middle half), its sampling variance times
# the sample size.
_SAMPLING = np.array([0.1875, 0.25, 0.1875, 0.25])
# A position less two in-control standard deviations: an effect above the floor is then
# the change's own, not the noise of the sample it was measured on.
NOISE_SDS = 2.0
# The default effect-size floor of a feature's windowed test: the median of a normal stream
# moving by 0.4 standard deviations (``streams.monitor.watch.DEFAULT_MIN_EFFECT``).
MIN_EFFECT = 0.15
# Consecutive blocks of a reference that estimate its slow variation; fewer than
# MIN_BLOCK values a block leave it at zero (the blocks' noise would swamp it).
BLOCKS = 10
MIN_BLOCK = 20


def _positions(reference_sorted: FloatArray, sample: FloatArray) -> FloatArray:
    """Signed distance of the sample's quartiles from their place in the reference (0 when
    the quartile's step of the reference's distribution covers ``p``), then the change of
    the middle half's share."""
    distances = _distances(reference_sorted, _quartiles(sample))
    return np.append(distances, distances[2] - distances[0])


def _distances(reference_sorted: FloatArray, quartiles: FloatArray) -> FloatArray:
    """``_positions``' signed distances of quartiles (the last axis) from their places."""
    n = reference_sorted.size
    below = np.searchsorted(reference_sorted, quartiles, side="left") / n
    upto = np.searchsorted(reference_sorted, quartiles, side="right") / n
    distances: FloatArray = np.where(
        below > QUARTILES, below - QUARTILES, np.minimum(upto - QUARTILES, 0.0)
    )
    return distances


def _quartiles(sample: FloatArray) -> FloatArray:
    """``np.quantile(sample, QUARTILES, method="inverted_cdf")``: the same partition of a
    copy at the same places, without the tens of microseconds numpy's quantile spends
    around it (a slow check, a reference's blocks and every window read quartiles)."""
    places = _inverted_cdf_places(sample.size)
    parted = np.partition(sample, places)
    # Partitioned at the last place too, a NaN (which sorts last) is found as numpy does.
    if math.isnan(parted[-1]):
        return np.full(QUARTILES.size, math.nan)
    return parted[list(places[:-1])]


@functools.lru_cache(maxsize=256)
def _inverted_cdf_places(size: int) -> tuple[int, ...]:
    """Where ``np.quantile``'s ``inverted_cdf`` method finds each quartile in ``size``
    sorted values, as it computes them, then the last place."""
    places = []
    for p in QUARTILES.tolist():
        index = size * p - 1
        previous = math.floor(index)
        place = previous if index - previous == 0 else previous + 1
        places.append(max(place, 0))
    return (*places, size - 1)


def slow_variance(reference: FloatArray) -> FloatArray:
    """Per position (see ``_positions``), the variance that the reference's slow variation
    adds to sampling; ``reference`` in arrival order, finite values."""
    size = reference.size // BLOCKS
    if size < MIN_BLOCK:
        return np.zeros(_SAMPLING.size)
    # The blocks' quartiles at once, a row each: a partition of a row puts the same values
    # at its places as ``_quartiles`` of that block, without a call per block (every
    # feature's test computes this once, as its reference is complete).
    places = _inverted_cdf_places(size)
    rows = np.partition(reference[: BLOCKS * size].reshape(BLOCKS, size), places, axis=1)
    distances = _distances(np.sort(reference), rows[:, list(places[:-1])])
    blocks = np.column_stack((distances, distances[:, 2] - distances[:, 0]))
    sampling = _SAMPLING / size
    slow: FloatArray = np.maximum(blocks.var(axis=0, ddof=1) - sampling, 0.0)
    return slow


def quantile_effect(reference_sorted: FloatArray, slow: FloatArray, sample: FloatArray) -> float:
    """The sample's effect against the sorted reference, in reference quantiles (>= 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> reference = rng.normal(0.0, 1.0, 2000)
    >>> slow = slow_variance(reference)
    >>> ordered = np.sort(reference)
    >>> [round(quantile_effect(ordered, slow, rng.normal(d, 1.0, 500)), 3) for d in (0, 0.5, 1)]
    [0.0, 0.181, 0.345]
    """
    if sample.size == 0:
        return 0.0
    return excess(*quantile_shifts(reference_sorted, slow, sample))


def excess(distances: FloatArray, sds: FloatArray) -> float:
    """The largest distance beyond ``NOISE_SDS`` of its in-control standard deviations
    (>= 0): the effect of the positions ``quantile_shifts`` gives."""
    return max(float((np.abs(distances) - NOISE_SDS * sds).max()), 0.0)


def steady_variance(mean_squares: FloatArray, sample_size: int, reference_size: int) -> FloatArray:
    """Per position, the slow variance that windows of ``sample_size`` values showed against
    a reference of ``reference_size``: the mean square of their positions (``mean_squares``,
    from ``quantile_shifts``) less its sampling part (>= 0).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> reference = np.sort(rng.normal(0.0, 1.0, 1000))
    >>> def mean_squares(levels):
    ...     shifts = [quantile_shifts(reference, np.zeros(4), rng.normal(d, 1.0, 500))[0]
    ...               for d in levels]
    ...     return np.mean(np.square(shifts), axis=0)
    >>> steady_variance(mean_squares([0.0] * 8), 500, 1000).round(4).tolist()
    [0.0002, 0.0, 0.0002, 0.0]
    >>> # Windows at a level that wanders by 0.3 standard deviations: the median's position
    >>> # varies by about 0.09 (its standard deviation) beyond sampling.
    >>> steady_variance(mean_squares([-0.3, 0.0, 0.3, 0.0] * 2), 500, 1000).round(4).tolist()
    [0.0046, 0.0078, 0.006, 0.0]
    """
    sampling = _SAMPLING * (1.0 / sample_size + 1.0 / reference_size)
    steady: FloatArray = np.maximum(mean_squares - sampling, 0.0)
    return steady


def quantile_shifts(
    reference_sorted: FloatArray, slow: FloatArray, sample: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per position (the three quartiles, then the middle half; see ``quantile_effect``),
    the sample's signed distance from the sorted reference and its in-control standard
    deviation, sampling and slow variation together; ``sample`` not empty."""
    sampling = _SAMPLING * (1.0 / sample.size + 1.0 / reference_sorted.size)
    return _positions(reference_sorted, sample), np.sqrt(sampling + slow)


def share_effect(reference: FloatArray, current: FloatArray) -> float:
    """The largest change of one cell's share between two count vectors over the same
    cells, less its sampling noise (>= 0).

    Examples
    --------
    >>> import numpy as np
    >>> round(share_effect(np.array([500.0, 300.0, 200.0]), np.array([250.0, 150.0, 100.0])), 3)
    0.0
    >>> round(share_effect(np.array([500.0, 300.0, 200.0]), np.array([150.0, 150.0, 200.0])), 3)
    0.156
    """
    n, m = float(reference.sum()), float(current.sum())
    if n <= 0.0 or m <= 0.0:
        return 0.0
    before, after = reference / n, current / m
    noise = NOISE_SDS * np.sqrt(before * (1.0 - before) * (1.0 / m + 1.0 / n))
    return max(float((np.abs(after - before) - noise).max()), 0.0)
