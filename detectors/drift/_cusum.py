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
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors._batch import BatchEvents
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


class SegmentedBatches(BatchEvents):
    """The batch loop of the CUSUM detectors: warm-up segments, then runs of at most
    ``REBASE_EVERY`` steps, each ending at a rebase, an alarm or the batch's end.

    A detector supplies its warm-up (``_warm_up_room``, ``_warm``), optionally where its
    reference next changes (``_steady_room``), one run of its CUSUMs
    (``_run``: the offset of the first alarm and what ``_alarm`` records with it, or None),
    ``_alarm(position, *details)`` and ``_rebase``; it keeps ``_since_rebase`` and
    ``_batch_events``, as its ``update`` does.
    """

    _since_rebase: int
    _drift_detected: bool

    def _warm_up_room(self) -> int:
        """Inputs the current warm-up still takes (0 once the reference is set)."""
        raise NotImplementedError

    def _warm(self, inputs: npt.NDArray[Any]) -> None:
        raise NotImplementedError

    def _run(self, inputs: npt.NDArray[Any]) -> tuple[int, tuple[Any, ...]] | None:
        raise NotImplementedError

    def _alarm(self, position: int, *details: Any) -> None:
        raise NotImplementedError

    def _rebase(self) -> None:
        raise NotImplementedError

    def _steady_room(self) -> int:
        """Inputs a run may take before the detector changes its reference (a detector
        that refines its reference after the warm-up ends its runs there)."""
        return REBASE_EVERY

    def _segments(
        self, inputs: npt.NDArray[Any], positions: npt.NDArray[np.intp], size: int
    ) -> None:
        """Feed the valid ``inputs``, found at ``positions`` of a batch of ``size``."""
        start = 0
        while start < inputs.size:
            room = self._warm_up_room()
            if room:
                stop = min(inputs.size, start + room)
                self._warm(inputs[start:stop])
                start = stop
                continue
            stop = min(
                inputs.size, start + REBASE_EVERY - self._since_rebase, start + self._steady_room()
            )
            alarm = self._run(inputs[start:stop])
            if alarm is None:
                self._since_rebase += stop - start
                if self._since_rebase == REBASE_EVERY:
                    self._rebase()
                start = stop
            else:
                offset, details = alarm
                self._alarm(int(positions[start + offset]), *details)
                start += offset + 1
        if size:
            # drift_detected describes the last input only, as after update() one by one.
            events = self._batch_events
            self._drift_detected = bool(events) and events[-1][0] == size - 1
