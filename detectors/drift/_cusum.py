"""The CUSUM recursion as a running sum minus its running minimum, for batches and one by one.

``S = max(0, S + d)`` from ``S = 0`` equals ``C - min(0, C_1, ..., C_t)`` where ``C`` is the
running sum of the steps ``d``. Both forms give the same value in exact arithmetic, but
not in floating point; a CUSUM that takes batches therefore keeps ``(total, low)`` as its
state in ``update`` too: ``total + d`` then ``min(low, total)`` one step at a time is what
``np.cumsum`` and ``np.minimum.accumulate`` compute in a batch, operation for operation,
so both give bitwise the same state after any split of a stream into batches.

A running sum grows without bound (the allowance makes it drift), and with it its rounding
error. Every ``REBASE_EVERY`` steps, counted the same way whatever the batches, both paths
subtract the minimum from the sum (``rebase``): the CUSUM keeps its value, and the sum
stays below ``REBASE_EVERY`` times the largest step, so ``total - low`` carries an absolute
rounding error under ``REBASE_EVERY * max|d| * 2**-52`` (3e-12 for steps up to 3.25).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.drift._statistics import FloatArray

REBASE_EVERY = 4096


def cusum_path(
    totals: Sequence[float], lows: Sequence[float], steps: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Running sums and their running minima after each step, from ``(totals, lows)``.

    ``steps`` holds one row per CUSUM, so that several CUSUMs on one stream take one call
    of each accumulation; along each row the accumulation is sequential as ever. The CUSUM
    after each step is the difference of the two results.
    """
    start = np.empty((steps.shape[0], 1), dtype=np.float64)
    start[:, 0] = totals
    sums = np.cumsum(np.hstack([start, steps]), axis=1)
    floor = sums.copy()
    floor[:, 0] = lows
    return sums[:, 1:], np.minimum.accumulate(floor, axis=1)[:, 1:]


def rebase(total: float, low: float) -> tuple[float, float]:
    """The same CUSUM as ``(total, low)``, with its running sum brought back near zero."""
    return total - low, 0.0


def excursion_start(steps: FloatArray) -> int:
    """Where a CUSUM run from zero over ``steps`` last left zero: the classic estimate of
    where the change it sees began (``steps.size`` when it ends at zero). The CUSUM is
    zero where its running sum is at its running minimum; ties go to the latest."""
    path = np.concatenate([[0.0], np.cumsum(steps)])
    return int(path.size - 1 - np.argmin(path[::-1]))
