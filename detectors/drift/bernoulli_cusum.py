"""Bernoulli CUSUM for a rise in the rate of a binary event (errors, nulls, timeouts)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base

from detectors._batch import TupleEvents
from detectors.drift._cusum import (
    REBASE_EVERY,
    SegmentedBatches,
    cusum_path,
    excursion_start,
    rebase,
)
from detectors.drift._window import Batch, BoolArray, IntArray, validate_positive

# Each input of a batch as an event (1), a non-event (0) or an input to skip (-1).
_EVENT, _QUIET, _SKIPPED = 1, 0, -1


class BernoulliCUSUM(SegmentedBatches, TupleEvents, base.BinaryDriftDetector):
    """Log-likelihood ratio CUSUM for a Bernoulli rate rising by ``odds_ratio``.

    The in-control rate ``p0`` is ``reference_rate`` when given, otherwise it is learnt
    from the first ``warm_up`` inputs as ``(events + 0.5) / (n + 1)``. Each input then adds
    its log-likelihood ratio of ``p1`` (the rate whose odds are ``odds_ratio`` times those
    of ``p0``) against ``p0``: ``S = max(0, S + x ln(p1/p0) + (1 - x) ln((1-p1)/(1-p0)))``.
    An alarm (``S > threshold``) sets ``drift_detected`` for that update, then ``S`` restarts
    and, when the rate was learnt, so does the warm-up. The CUSUM is the fastest detector of
    a rise to ``p1`` for a given false-alarm rate; a rate falling is not an alarm. With a
    correct ``p0`` the false-alarm rate is at most ``exp(-threshold)`` per input
    (Lorden's bound); the health policy may therefore set ``threshold = ln(1 / alpha)``
    for a per-input level ``alpha``. With the defaults the quality benchmark measures
    about 0.01 false alarms per 10,000 inputs at a 5% rate, and a delay of about 440
    inputs for a rise from 5% to 10%. Inputs other than 0, 1, False and True are skipped
    and counted in ``n_skipped``.

    ``update_many`` takes a batch and gives exactly what ``update`` gives one by one: both
    keep the CUSUM as a running sum minus its running minimum (``detectors.drift._cusum``),
    computed in the same floating-point operations one by one and in a batch. That form
    equals ``max(0, S + step)`` up to rounding (under 1e-11 at the defaults), so an alarm
    moves only if the CUSUM ends that close to its threshold.

    Parameters
    ----------
    warm_up
        Inputs that estimate ``p0``, after the start and after every alarm, when
        ``reference_rate`` is None. Without a given rate, no alarm comes before it ends.
    odds_ratio
        Rise of the odds of an event the detector is tuned for (> 1).
    threshold
        Alarm level of the CUSUM (log-likelihood ratio, nats).
    reference_rate
        Known in-control rate, e.g. the validation error rate; None learns it.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import BernoulliCUSUM
    >>> rng = np.random.default_rng(42)
    >>> detector = BernoulliCUSUM()
    >>> errors = np.concatenate([rng.random(4000) < 0.05, rng.random(2000) < 0.1])
    >>> for i, x in enumerate(errors):
    ...     detector.update(bool(x))
    ...     if detector.drift_detected:
    ...         print(i, detector.n_detections, detector.statistic)
    4336 1 0.0

    The same inputs in batches of 1,000, each alarm at its position in its batch:

    >>> batched = BernoulliCUSUM()
    >>> for start in range(0, errors.size, 1000):
    ...     batched.update_many(errors[start : start + 1000])
    ...     for i in batched.detections:
    ...         print(start + i, batched.n_detections, batched.n_skipped)
    4336 1 0
    """

    def __init__(
        self,
        warm_up: int = 2000,
        odds_ratio: float = 2.0,
        threshold: float = 10.0,
        reference_rate: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(warm_up, int) or warm_up < 10:
            raise ValueError(f"warm_up must be an int >= 10, got {warm_up!r}")
        if not odds_ratio > 1.0:
            raise ValueError(f"odds_ratio must be > 1, got {odds_ratio!r}")
        validate_positive("threshold", threshold)
        if reference_rate is not None and not 0.0 < reference_rate < 1.0:
            raise ValueError(
                f"reference_rate must lie in (0, 1) or be None, got {reference_rate!r}"
            )
        self.warm_up = warm_up
        self.odds_ratio = odds_ratio
        self.threshold = threshold
        self.reference_rate = reference_rate
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n_detections = 0
        self._n_skipped = 0
        self._batch_events = ()
        self._start_warm_up()
        if self.reference_rate is not None:
            self._set_rate(self.reference_rate)

    def _start_warm_up(self) -> None:
        self._seen = 0
        self._events = 0
        self._restart_cusum()
        self._rate = math.nan
        self._event_step = self._quiet_step = 0.0

    def _restart_cusum(self) -> None:
        # The CUSUM is its running sum minus the sum's running minimum (_cusum).
        self._sum = self._low = 0.0
        self._since_rebase = 0

    def _set_rate(self, p0: float) -> None:
        odds = self.odds_ratio * p0 / (1.0 - p0)
        p1 = odds / (1.0 + odds)
        self._rate = p0
        self._event_step = math.log(p1 / p0)
        self._quiet_step = math.log((1.0 - p1) / (1.0 - p0))

    def update(self, x: Any) -> None:
        """Add one input: True/1 is an event, False/0 is not; others count in ``n_skipped``."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = ()
        if type(x) is bool:
            event = x
        else:
            code = _code(x)
            if code == _SKIPPED:
                self._n_skipped += 1
                return
            event = code == _EVENT
        if math.isnan(self._rate):
            self._seen += 1
            self._events += event
            if self._seen == self.warm_up:
                self._set_rate((self._events + 0.5) / (self._seen + 1.0))
            return
        total = self._sum = self._sum + (self._event_step if event else self._quiet_step)
        low = self._low
        if total < low:
            low = self._low = total
        if total - low > self.threshold:
            self._alarm(0)
        else:
            self._since_rebase += 1
            if self._since_rebase == REBASE_EVERY:
                self._rebase()

    def update_many(self, values: Batch) -> None:
        """Add a batch of inputs: the same results and state as ``update`` one by one.

        ``detections`` gives the position in the batch of each alarm; a warm-up, the first
        or the one after an alarm, may start and end inside the batch.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = ()
        codes = _codes(values)
        positions = np.flatnonzero(codes != _SKIPPED)
        self._n_skipped += int(codes.size - positions.size)
        self._segments(codes[positions] == _EVENT, positions, codes.size)

    def _warm_up_room(self) -> int:
        return self.warm_up - self._seen if math.isnan(self._rate) else 0

    def _warm(self, inputs: BoolArray) -> None:
        self._seen += inputs.size
        self._events += int(np.count_nonzero(inputs))
        if self._seen == self.warm_up:
            self._set_rate((self._events + 0.5) / (self._seen + 1.0))

    def _run(self, events: BoolArray) -> tuple[int, tuple[()]] | None:
        """Run the CUSUM over inputs after the warm-up; the offset of the first alarm, if any."""
        steps = np.where(events, self._event_step, self._quiet_step)
        sums, lows = cusum_path([self._sum], [self._low], steps[np.newaxis])
        self._sum, self._low = float(sums[0, -1]), float(lows[0, -1])
        crossed = sums[0] - lows[0] > self.threshold
        return (int(np.argmax(crossed)), ()) if crossed.any() else None

    def _rebase(self) -> None:
        """Bring the running sum back near zero (every REBASE_EVERY steps, in both paths)."""
        self._sum, self._low = rebase(self._sum, self._low)
        self._since_rebase = 0

    def _alarm(self, position: int, *details: object) -> None:
        self._drift_detected = True
        self._n_detections += 1
        self._add_event((position,))
        if self.reference_rate is None:
            self._start_warm_up()
        else:
            self._restart_cusum()

    def change_start(self, values: Batch) -> int:
        """Where this CUSUM, run from zero over ``values`` (0 and 1) at its current rates,
        last left zero: the estimate of where a rise began (``len(values)`` while ``p0``
        is being learnt). Changes no state.

        Examples
        --------
        >>> detector = BernoulliCUSUM(reference_rate=0.05)
        >>> detector.change_start([0] * 50 + [1, 0, 1, 1, 0, 1])
        50
        """
        events = np.asarray(values, dtype=np.float64)
        if math.isnan(self._rate):
            return int(events.size)
        return excursion_start(np.where(events > 0.5, self._event_step, self._quiet_step))

    @property
    def statistic(self) -> float:
        """The CUSUM, in nats (0 during warm-up)."""
        return self._sum - self._low

    @property
    def warm_up_left(self) -> int:
        """Inputs the current warm-up still takes (0 once ``p0`` is set)."""
        return self._warm_up_room()

    @property
    def in_control_rate(self) -> float:
        """The in-control rate p0 in use (NaN while it is being learnt)."""
        return self._rate

    @property
    def n_detections(self) -> int:
        """Alarms so far."""
        return self._n_detections

    @property
    def n_skipped(self) -> int:
        """Inputs skipped as neither 0, 1, False nor True."""
        return self._n_skipped

    @property
    def detections(self) -> IntArray:
        """Positions in the last batch (or update) of the inputs that raised an alarm."""
        return np.array([event[0] for event in self._batch_events], dtype=np.intp)


def _codes(values: Batch) -> npt.NDArray[np.int8]:
    """Each input as _EVENT, _QUIET or _SKIPPED, by the rule of ``update``."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        flat = values.ravel()
        codes = np.full(flat.size, _SKIPPED, dtype=np.int8)
        codes[flat == 0] = _QUIET
        codes[flat == 1] = _EVENT
        return codes
    return np.fromiter((_code(x) for x in values), dtype=np.int8)


def _code(x: Any) -> int:
    # Exact types first: isinstance against the numbers ABC costs a microsecond. A bool
    # array's elements come as np.bool_.
    if type(x) is bool or type(x) is np.bool_:
        return _EVENT if x else _QUIET
    if isinstance(x, numbers.Real | np.bool_) and x in (0, 1):
        return _EVENT if x == 1 else _QUIET
    return _SKIPPED
