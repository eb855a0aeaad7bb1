"""Alarm when the mean of a bounded per-prediction loss rises: an e-CUSUM at a set level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors._batch import TupleEvents, own_attribute_dict
from detectors._compiled import compiled
from detectors.drift._window import finite_floats
from detectors.performance._inputs import is_real, unit_float

# Bets for rises of 1, 2, 4, 8 and 16 tolerances over the null.
_MAX_BETS = 5


class PerformanceDrop(TupleEvents, base.DriftDetector):
    """Detect that a model's mean loss (in [0, 1]) has risen above its baseline.

    Each update is one labelled prediction's loss: the error indicator ``1 - correct``,
    ``1 - precision@k``, a clipped absolute error... The detector is a mixture e-CUSUM
    (Shin, Ramdas and Rinaldo, "E-detectors", 2022). A bet ``b`` turns every loss ``x``
    into the e-value ``1 + b * (x - null_loss)``, whose expectation is at most 1 while the
    mean loss stays at or below ``null_loss = baseline + tolerance``. One CUSUM of such
    e-values runs for each of a few bets, the Bernoulli likelihood ratios against mean
    losses ``null_loss + tolerance * 2**k`` (small and large drops), and the detector
    alarms when their average reaches ``1 / alpha``. The average is below the average of
    the Shiryaev-Roberts statistics, so under that null the mean number of updates between
    false alarms is at least ``1 / alpha``, however long it runs: a health policy can spend
    a false-alarm budget on it, about ``alpha`` false alarms per labelled prediction at
    most.

    After an alarm ``drift_detected`` is True for that update only and the statistics
    restart, keeping the baseline, so a loss that stays high alarms again.
    ``update_many(losses)`` is the batch form: the same state as ``update`` one by one, and
    ``detections`` the positions in the batch where ``drift_detected`` would have been True.

    Parameters
    ----------
    alpha
        False-alarm level in (0, 1): the mean run length between false alarms is at least
        ``1 / alpha`` updates.
    tolerance
        How much the mean loss may rise over the baseline before it counts as a drop, in
        (0, 1).
    baseline
        The mean loss when the model is healthy, in [0, 1), e.g. from validation. ``None``
        learns it as the mean of the first ``reference_size`` losses; the guarantee then
        holds as far as that reference is right, which ``tolerance`` should cover.
    reference_size
        How many losses learn the baseline when ``baseline`` is None; also the warm-up.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> errors = np.concatenate([rng.random(3000) < 0.10, rng.random(2000) < 0.25])
    >>> detector = PerformanceDrop(alpha=1e-4, tolerance=0.02)
    >>> alarms = []
    >>> for i, error in enumerate(errors):
    ...     detector.update(float(error))
    ...     if detector.drift_detected:
    ...         alarms.append(i)
    >>> alarms[:1], round(detector.baseline_loss, 3)
    ([3143], 0.095)

    The same losses in batches of 1,000, each alarm at its position in its batch:

    >>> batched = PerformanceDrop(alpha=1e-4, tolerance=0.02)
    >>> found = []
    >>> for start in range(0, errors.size, 1000):
    ...     batched.update_many(errors[start : start + 1000].astype(float))
    ...     found.extend(start + int(i) for i in batched.detections)
    >>> found == alarms
    True
    """

    def __init__(
        self,
        alpha: float = 1e-4,
        tolerance: float = 0.02,
        baseline: float | None = None,
        reference_size: int = 1000,
    ) -> None:
        if not (is_real(alpha) and 0.0 < alpha < 1.0):
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not (is_real(tolerance) and 0.0 < tolerance < 1.0):
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
        if baseline is not None and not (is_real(baseline) and 0.0 <= baseline < 1.0):
            raise ValueError(f"baseline must be None or in [0, 1), got {baseline!r}")
        # A float size would never be reached exactly: the baseline would never be learnt.
        if not isinstance(reference_size, int) or reference_size < 1:
            raise ValueError(f"reference_size must be a positive integer, got {reference_size!r}")
        own_attribute_dict(self)
        super().__init__()
        self.alpha = alpha
        self.tolerance = tolerance
        self.baseline = baseline
        self.reference_size = reference_size
        self._reset()

    def fresh(self) -> PerformanceDrop:
        """A new detector of the same settings: ``clone()`` without river's reading of the
        signature, 30 us of each new stream's few detectors."""
        return PerformanceDrop(self.alpha, self.tolerance, self.baseline, self.reference_size)

    def _reset(self) -> None:
        super()._reset()
        self._batch_events = ()
        self._n = 0
        self._reference_sum = 0.0
        self._learned_baseline: float | None = None
        # One log CUSUM per bet. Tuples of floats, replaced at each update: ones the
        # garbage collector does not track, in every label join of every model.
        self._statistics: tuple[float, ...] = ()
        self._null_loss = math.nan
        self._bets: tuple[float, ...] = ()
        if self.baseline is not None:
            self._set_baseline(self.baseline)

    def _set_baseline(self, baseline: float) -> None:
        null_loss = baseline + self.tolerance
        self._learned_baseline = baseline
        self._null_loss = null_loss
        if null_loss >= 1.0:
            # No loss in [0, 1] can be evidence of a mean above 1: never alarm.
            return
        # Alternatives stop short of 1, where the likelihood ratio of a zero loss would be 0.
        highest = (1.0 + null_loss) / 2.0
        alternatives = [null_loss + self.tolerance * 2**k for k in range(_MAX_BETS)]
        alternatives = [a for a in alternatives if a < highest] or [highest]
        self._bets = tuple((a - null_loss) / (null_loss * (1.0 - null_loss)) for a in alternatives)
        self._statistics = (0.0,) * len(self._bets)

    @property
    def baseline_loss(self) -> float | None:
        """The baseline mean loss in use: given, learned, or None while still learning."""
        return self._learned_baseline

    @property
    def statistic(self) -> float:
        """Log of the mean of the bets' CUSUMs; the alarm is at ``threshold``."""
        return _log_mean_exp(self._statistics)

    @property
    def threshold(self) -> float:
        """``log(1 / alpha)``."""
        return math.log(1.0 / self.alpha)

    @property
    def n(self) -> int:
        """How many valid losses were absorbed."""
        return self._n

    @property
    def detections(self) -> np.ndarray:
        """Positions in the last batch where ``drift_detected`` would have been True."""
        return np.array([event[0] for event in self._batch_events], dtype=np.int64)

    def update(self, x: int | float) -> None:
        """Absorb one loss in [0, 1]; anything else (NaN, None, 1.5, ...) is ignored."""
        self._drift_detected = False
        if self._batch_events:
            self._batch_events = ()
        loss = unit_float(x)
        if loss is None:
            return
        self._n += 1
        if self._learned_baseline is None:
            self._reference_sum += loss
            if self._n == self.reference_size:
                self._set_baseline(min(self._reference_sum / self._n, 1.0 - 1e-12))
            return
        excess = loss - self._null_loss
        self._statistics = tuple(
            [
                max(statistic, 0.0) + math.log1p(bet * excess)
                for statistic, bet in zip(self._statistics, self._bets, strict=True)
            ]
        )
        # The mean of the CUSUMs is below the largest: most updates need no mean.
        if self._statistics and max(self._statistics) >= self.threshold <= self.statistic:
            self._drift_detected = True
            self._batch_events = ((0,),)
            self._statistics = (0.0,) * len(self._bets)

    def update_many(self, values: Sequence[Any] | np.ndarray) -> None:
        """Absorb a batch of losses: the same results and state as ``update`` one by one.

        ``detections`` gives the position in the batch of each alarm. The baseline may be
        learnt inside the batch; its sum and every CUSUM step are the same float
        operations in the same order as ``update``'s, so the state is exactly equal.
        """
        if self._small(len(values)):
            self._update_each(values)
            return
        self._batch_events = ()
        if not len(values):
            return  # no update: the last one's alarm stands
        self._drift_detected = False
        # A float array needs no conversion: an infinite loss is out of [0, 1] as NaN is.
        floats = isinstance(values, np.ndarray) and values.dtype == np.float64
        losses = np.ascontiguousarray(values) if floats else finite_floats(values)
        learning = self._learned_baseline is None
        needed = self.reference_size - self._n if learning else 0
        positions, reference_sum = _valid(losses, self._reference_sum, needed)
        kept = losses[positions]
        start = 0
        if learning:
            start = min(needed, len(kept))
            self._reference_sum = reference_sum
            self._n += start
            if self._n == self.reference_size:
                self._set_baseline(min(self._reference_sum / self._n, 1.0 - 1e-12))
        self._n += len(kept) - start
        if self._bets and start < len(kept):
            alarms = self._run(kept[start:])
            self._batch_events = tuple((int(positions[start + offset]),) for offset in alarms)
        self._drift_detected = (
            bool(self._batch_events) and self._batch_events[-1][0] == len(losses) - 1
        )

    def _run(self, losses: np.ndarray) -> list[int]:
        """Run the CUSUMs over losses after the baseline; the offset of each alarm. The
        loop over losses and bets is compiled (``_cusum``); it stops where the largest
        CUSUM reaches the threshold, and an alarm, rare, is decided here on their mean."""
        excess = losses - self._null_loss
        bets = np.array(self._bets)
        statistics = np.array(self._statistics)
        threshold = self.threshold
        alarms: list[int] = []
        at = _cusum(bets, excess, statistics, threshold, 0)
        while at >= 0:
            if threshold <= _log_mean_exp(statistics.tolist()):
                alarms.append(at)
                statistics[:] = 0.0
            at = _cusum(bets, excess, statistics, threshold, at + 1)
        self._statistics = tuple(statistics.tolist())
        return alarms


@compiled
def _cusum(
    bets: np.ndarray, excess: np.ndarray, statistics: np.ndarray, threshold: float, start: int
) -> int:
    """``update``'s CUSUM steps (``math.log1p`` is the C library's, as in Python) over
    ``excess`` from ``start`` on, ``statistics`` updated in place: the first position
    after which the largest reaches ``threshold`` (-1: none)."""
    for k in range(start, excess.shape[0]):
        top = -math.inf
        for b in range(bets.shape[0]):
            statistic = statistics[b]
            statistic = (0.0 if statistic < 0.0 else statistic) + math.log1p(bets[b] * excess[k])
            statistics[b] = statistic
            if statistic > top:
                top = statistic
        if top >= threshold:
            return k
    return -1


@compiled
def _valid(losses: np.ndarray, reference_sum: float, needed: int) -> tuple[np.ndarray, float]:
    """The positions of the losses in [0, 1] (not NaN), and ``reference_sum`` plus the
    first ``needed`` of them, added in order as ``update``'s ``+=`` adds them."""
    positions = np.empty(losses.shape[0], np.int64)
    n = 0
    for k in range(losses.shape[0]):
        loss = losses[k]
        if loss >= 0.0 and loss <= 1.0:
            if n < needed:
                reference_sum += loss
            positions[n] = k
            n += 1
    return positions[:n], reference_sum


def _log_mean_exp(statistics: Sequence[float]) -> float:
    """Log of the mean of the CUSUMs ``exp(statistics)``, 0 without any."""
    if not statistics:
        return 0.0
    top = max(statistics)
    total = sum(math.exp(statistic - top) for statistic in statistics)
    return top + math.log(total / len(statistics))
