"""Two-sided CUSUM for a shift in mean, plus a CUSUM for a rise in spread."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import base

from detectors._batch import BatchEvents
from detectors.drift._cusum import (
    REBASE_EVERY,
    SegmentedBatches,
    cusum_path,
    excursion_start,
    rebase,
)
from detectors.drift._statistics import FloatArray
from detectors.drift._window import (
    Batch,
    IntArray,
    finite_float,
    finite_floats,
    validate_positive,
)

# Warm-up values further than this many MADs from the median are left out of the reference.
_OUTLIER_MADS = 5.0
_MAD_TO_SIGMA = 1.4826
# After the warm-up the reference is learnt again, from every value of the segment so far,
# when the segment reaches these multiples of the warm-up: an estimate from the warm-up
# alone is off by about 1 / sqrt(warm_up) standard deviations, and a CUSUM's false-alarm
# rate grows exponentially with that error.
_REFINEMENTS = (1.5, 2.0, 3.0, 4.0)
# The rows of the CUSUMs in a batch, in the order update() checks them.
_CAUSES = ("mean_up", "mean_down", "spread_up")


class RobustCUSUM(SegmentedBatches, BatchEvents, base.DriftDetector):
    """CUSUM on standardized values, with the reference learnt from a robust warm-up.

    The first ``warm_up`` finite values set the reference: values further than five MADs
    from the median are dropped, and the mean and standard deviation of the rest become
    the in-control location and scale. The reference is learnt again in the same way from
    all the values since the warm-up began when there are 1.5, 2, 3 and 4 times
    ``warm_up`` of them: a reference from 1,000 values is off by about 0.03 standard
    deviations, which shortens the mean CUSUMs' run to a false alarm several times over;
    from 4,000, by half that. Each later value becomes ``z = (x - location) /
    scale``, clipped to ``[-clip, clip]`` so that a lone outlier cannot raise an alarm.
    Three CUSUMs run on it:

    - up: ``S+ = max(0, S+ + z - allowance)``; down: ``S- = max(0, S- - z - allowance)``.
      They detect a mean shift of ``2 * allowance`` standard deviations fastest, in about
      ``threshold / (shift - allowance)`` values.
    - spread: ``S = max(0, S + |z| - k)`` against ``spread_threshold``, for the standard
      deviation growing by ``spread_ratio``: ``k = sqrt(2 / pi) * (1 + spread_ratio) / 2``
      lies half-way between the mean of ``|z|`` before and after such a rise. ``|z|``
      rather than ``z^2`` keeps skewed streams (latency) from looking like a rise in
      spread. ``spread_ratio=None`` turns it off.

    An alarm sets ``drift_detected`` for that update and starts a new warm-up, so the new
    regime becomes the reference. With known parameters the two mean CUSUMs together
    raise a false alarm about once in ``exp(2 * allowance * (threshold + 1.166)) / (4 *
    allowance^2)`` values (Siegmund): about once in 6 million at the defaults (warm-up
    1,000, allowance 0.15, threshold 43, spread ratio 2, spread threshold 15, clip 3).
    Among CUSUMs with that run length, an allowance of 0.12 to 0.15 catches a slow ramp
    soonest (delay about ``allowance * R + sqrt(2 * threshold * R)`` for a ramp of one
    standard deviation over ``R`` values, against 474 at allowance 0.25 and threshold 25);
    a one-sigma step takes about ``threshold / (1 - allowance)`` values. On the quality
    benchmark (``tests/benchmarks/bench_drift_quality.py``) that is about 48 values for a
    one-sigma step, 400 for a ramp of one sigma over 1,000 values and 50 for a doubling of
    the standard deviation, with no false alarm in 50 runs of 10,000 stationary Gaussian
    or log-normal values.

    ``update_many`` takes a batch and gives exactly what ``update`` gives one by one. Both
    keep each CUSUM as a running sum minus its running minimum (``detectors.drift._cusum``),
    which a batch computes with ``np.cumsum`` and ``np.minimum.accumulate`` in the same
    floating-point operations. That form equals ``max(0, S + step)`` up to rounding (under
    3e-12 here), so an alarm moves only if the CUSUM ends that close to its threshold.

    The detector keeps up to ``4 * warm_up`` values of the current segment to learn the
    reference again (32 KB at the defaults).

    Parameters
    ----------
    warm_up
        Values that estimate the reference, after the start and after every alarm.
    allowance
        Half the mean shift, in standard deviations, the detector is tuned for.
    threshold
        Alarm level of the mean CUSUMs, in standard deviations.
    spread_ratio
        Rise of the standard deviation the spread CUSUM is tuned for (> 1), or None to
        watch the mean only.
    spread_threshold
        Alarm level of the spread CUSUM.
    clip
        Largest absolute standardized value taken into account.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import RobustCUSUM
    >>> rng = np.random.default_rng(42)
    >>> detector = RobustCUSUM()
    >>> stream = np.concatenate([rng.normal(10.0, 2.0, 3000), rng.normal(11.0, 2.0, 1000)])
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, detector.cause)
    3074 mean_up

    The same stream in batches of 500: each alarm at its position in its batch.

    >>> batched = RobustCUSUM()
    >>> for start in range(0, stream.size, 500):
    ...     batched.update_many(stream[start : start + 500])
    ...     for i, cause in zip(batched.detections, batched.detection_causes):
    ...         print(start + i, cause)
    3074 mean_up
    """

    def __init__(
        self,
        warm_up: int = 1000,
        allowance: float = 0.15,
        threshold: float = 43.0,
        spread_ratio: float | None = 2.0,
        spread_threshold: float = 15.0,
        clip: float = 3.0,
    ) -> None:
        super().__init__()
        if not isinstance(warm_up, int) or warm_up < 10:
            raise ValueError(f"warm_up must be an int >= 10, got {warm_up!r}")
        for name, value in (
            ("allowance", allowance),
            ("threshold", threshold),
            ("spread_threshold", spread_threshold),
            ("clip", clip),
        ):
            validate_positive(name, value)
        if spread_ratio is not None and not spread_ratio > 1.0:
            raise ValueError(f"spread_ratio must be > 1 or None, got {spread_ratio!r}")
        self.warm_up = warm_up
        self.allowance = allowance
        self.threshold = threshold
        self.spread_ratio = spread_ratio
        self.spread_threshold = spread_threshold
        self.clip = clip
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        # Zeros, not np.empty: the unused cells are part of the state a batch must reproduce.
        self._buffer = np.zeros(int(_REFINEMENTS[-1] * self.warm_up), dtype=np.float64)
        # Segment sizes at which the reference is learnt: the warm-up's end, then refinements.
        self._learn_at = (self.warm_up, *(int(m * self.warm_up) for m in _REFINEMENTS))
        self._start_warm_up()
        self._cause: str | None = None
        self._n_detections = 0
        self._n_skipped = 0
        self._batch_events: list[tuple[Any, ...]] = []
        self._spread_allowance = math.inf
        if self.spread_ratio is not None:
            self._spread_allowance = math.sqrt(2.0 / math.pi) * (1.0 + self.spread_ratio) / 2.0

    def _start_warm_up(self) -> None:
        self._filled = 0
        self._location = math.nan
        self._scale = math.nan
        # Each CUSUM is its running sum minus the sum's running minimum (_cusum).
        self._up_sum = self._up_low = 0.0
        self._down_sum = self._down_low = 0.0
        self._spread_sum = self._spread_low = 0.0
        self._since_rebase = 0

    def update(self, x: Any) -> None:
        """Add one value; missing and non-finite values are counted in ``n_skipped``."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = []
        value = finite_float(x)
        if value is None:
            self._n_skipped += 1
            return
        filled = self._filled
        if filled < self.warm_up:
            self._buffer[filled] = value
            self._filled += 1
            if self._filled == self.warm_up:
                self._learn_reference()
            return
        # Plain comparisons and locals rather than min/max: this is the per-event hot path.
        z = (value - self._location) / self._scale
        clip = self.clip
        z = clip if z > clip else -clip if z < -clip else z
        allowance = self.allowance
        up_sum = self._up_sum = self._up_sum + (z - allowance)
        up_low = self._up_low
        if up_sum < up_low:
            up_low = self._up_low = up_sum
        down_sum = self._down_sum = self._down_sum + (-z - allowance)
        down_low = self._down_low
        if down_sum < down_low:
            down_low = self._down_low = down_sum
        spread = 0.0
        if self.spread_ratio is not None:
            spread_sum = self._spread_sum = self._spread_sum + (abs(z) - self._spread_allowance)
            spread_low = self._spread_low
            if spread_sum < spread_low:
                spread_low = self._spread_low = spread_sum
            spread = spread_sum - spread_low
        threshold = self.threshold
        if up_sum - up_low > threshold:
            self._alarm(0, "mean_up")
        elif down_sum - down_low > threshold:
            self._alarm(0, "mean_down")
        elif spread > self.spread_threshold:
            self._alarm(0, "spread_up")
        else:
            self._since_rebase += 1
            if self._since_rebase == REBASE_EVERY:
                self._rebase()
            if filled < self._buffer.size:
                self._buffer[filled] = value
                self._filled += 1
                if self._filled in self._learn_at:
                    self._learn_reference()

    def update_many(self, values: Batch) -> None:
        """Add a batch of values: the same results and state as ``update`` one by one.

        ``detections`` and ``detection_causes`` give the position in the batch, and the
        cause, of each alarm; a warm-up, the first or the one after an alarm, may start and
        end inside the batch.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = []
        array = finite_floats(values)
        positions = np.flatnonzero(~np.isnan(array))
        self._n_skipped += int(array.size - positions.size)
        self._segments(array[positions], positions, array.size)

    def _warm_up_room(self) -> int:
        return max(self.warm_up - self._filled, 0)

    def _steady_room(self) -> int:
        for size in self._learn_at:
            if size > self._filled:
                return size - self._filled
        return REBASE_EVERY

    def _warm(self, inputs: FloatArray) -> None:
        self._buffer[self._filled : self._filled + inputs.size] = inputs
        self._filled += inputs.size
        if self._filled == self.warm_up:
            self._learn_reference()

    def _run(self, values: FloatArray) -> tuple[int, tuple[str]] | None:
        """Run the CUSUMs over values after the warm-up; the first alarm, if any, and its cause.

        Without an alarm the CUSUMs keep their state at the end; after one, the alarm
        starts a new warm-up and the rest of the run is discarded.
        """
        z = np.clip((values - self._location) / self._scale, -self.clip, self.clip)
        steps = [z - self.allowance, -z - self.allowance]
        totals = [self._up_sum, self._down_sum]
        lows = [self._up_low, self._down_low]
        levels = [self.threshold, self.threshold]
        if self.spread_ratio is not None:
            steps.append(np.abs(z) - self._spread_allowance)
            totals.append(self._spread_sum)
            lows.append(self._spread_low)
            levels.append(self.spread_threshold)
        sums, floors = cusum_path(totals, lows, np.vstack(steps))
        ends, end_floors = sums[:, -1].tolist(), floors[:, -1].tolist()
        self._up_sum, self._down_sum = ends[0], ends[1]
        self._up_low, self._down_low = end_floors[0], end_floors[1]
        if self.spread_ratio is not None:
            self._spread_sum, self._spread_low = ends[2], end_floors[2]
        crossed = sums - floors > np.array(levels)[:, None]
        alarms = crossed.any(axis=0)
        first = int(np.argmax(alarms)) if alarms.any() else values.size
        # The values before an alarm are kept as update() keeps them, though the alarm's
        # new warm-up overwrites them: the unused cells are part of the state.
        # _steady_room ended the run at the next refinement at the latest.
        if self._filled < self._buffer.size:
            self._buffer[self._filled : self._filled + first] = values[:first]
            self._filled += first
            if first == values.size and self._filled in self._learn_at:
                self._learn_reference()
        if first == values.size:
            return None
        # At one value the mean CUSUMs come first, as in update().
        return first, (_CAUSES[int(np.argmax(crossed[:, first]))],)

    def change_start(self, values: FloatArray, cause: str) -> int:
        """Where the CUSUM of ``cause`` last left zero when run from zero over ``values``
        against this detector's reference: the classic CUSUM estimate of where a change
        began (``values.size`` during warm-up, or for an unknown cause). Reads no state
        beyond the reference and changes none.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> detector = RobustCUSUM(warm_up=100)
        >>> detector.update_many(rng.normal(0.0, 1.0, 100))
        >>> detector.change_start(np.r_[rng.normal(0.0, 1.0, 80), np.full(20, 2.0)], "mean_up")
        78
        """
        if math.isnan(self._location) or cause not in _CAUSES:
            return int(values.size)
        z = np.clip((values - self._location) / self._scale, -self.clip, self.clip)
        step = {
            "mean_up": z - self.allowance,
            "mean_down": -z - self.allowance,
            "spread_up": np.abs(z) - self._spread_allowance,
        }[cause]
        return excursion_start(step)

    def _rebase(self) -> None:
        """Bring the running sums back near zero (every REBASE_EVERY values, in both paths)."""
        self._up_sum, self._up_low = rebase(self._up_sum, self._up_low)
        self._down_sum, self._down_low = rebase(self._down_sum, self._down_low)
        self._spread_sum, self._spread_low = rebase(self._spread_sum, self._spread_low)
        self._since_rebase = 0

    def _learn_reference(self) -> None:
        """Learn the reference from the segment's values so far (a warm-up that yields no
        finite reference starts again; a refinement that does keeps the one it had)."""
        values = self._buffer[: self._filled]
        # Finite values near the float limit can overflow the mean or the spread; numpy
        # would warn, and an infinite or NaN reference would never alarm again.
        with np.errstate(over="ignore", invalid="ignore"):
            median = float(np.median(values))
            mad = float(np.median(np.abs(values - median))) * _MAD_TO_SIGMA
            if mad > 0.0:
                values = values[np.abs(values - median) <= _OUTLIER_MADS * mad]
            location = float(np.mean(values))
            spread = float(np.std(values))
        if not (math.isfinite(location) and math.isfinite(spread)):
            if self._filled == self.warm_up:
                self._start_warm_up()
            return
        self._location = location
        # A constant warm-up still needs a scale: any later change is then a large one.
        self._scale = spread if spread > 0.0 else max(abs(self._location) * 1e-6, 1e-12)

    def _alarm(self, position: int, *details: str) -> None:
        (cause,) = details
        self._drift_detected = True
        self._cause = cause
        self._n_detections += 1
        self._batch_events.append((position, cause))
        self._start_warm_up()

    @property
    def statistic(self) -> float:
        """The larger mean CUSUM, in standard deviations (0 during warm-up)."""
        return max(self._up_sum - self._up_low, self._down_sum - self._down_low)

    @property
    def n_skipped(self) -> int:
        """Inputs skipped as missing, non-numeric or not finite."""
        return self._n_skipped

    @property
    def detections(self) -> IntArray:
        """Positions in the last batch (or update) of the values that raised an alarm."""
        return np.array([position for position, _ in self._batch_events], dtype=np.intp)

    @property
    def detection_causes(self) -> tuple[str, ...]:
        """The cause of each alarm in ``detections``, as in ``cause``."""
        return tuple(cause for _, cause in self._batch_events)

    @property
    def cause(self) -> str | None:
        """What the last alarm saw: "mean_up", "mean_down" or "spread_up"."""
        return self._cause

    @property
    def n_detections(self) -> int:
        """Alarms so far."""
        return self._n_detections

    @property
    def reference_location(self) -> float:
        """In-control mean learnt in the last warm-up or refinement (NaN while warming up)."""
        return self._location

    @property
    def reference_scale(self) -> float:
        """In-control standard deviation learnt in the last warm-up or refinement (NaN while
        warming up)."""
        return self._scale
