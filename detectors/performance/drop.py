"""Alarm when the mean of a bounded per-prediction loss rises: an e-CUSUM at a set level."""

from __future__ import annotations

import math

from river import base

from detectors.performance._inputs import is_real, unit_float

# Bets for rises of 1, 2, 4, 8 and 16 tolerances over the null.
_MAX_BETS = 5


class PerformanceDrop(base.DriftDetector):
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
        super().__init__()
        self.alpha = alpha
        self.tolerance = tolerance
        self.baseline = baseline
        self.reference_size = reference_size
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._reference_sum = 0.0
        self._learned_baseline: float | None = None
        self._statistics: list[float] = []  # one log CUSUM per bet
        self._null_loss = math.nan
        self._bets: list[float] = []
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
        self._bets = [(a - null_loss) / (null_loss * (1.0 - null_loss)) for a in alternatives]
        self._statistics = [0.0] * len(self._bets)

    @property
    def baseline_loss(self) -> float | None:
        """The baseline mean loss in use: given, learned, or None while still learning."""
        return self._learned_baseline

    @property
    def statistic(self) -> float:
        """Log of the mean of the bets' CUSUMs; the alarm is at ``threshold``."""
        if not self._statistics:
            return 0.0
        top = max(self._statistics)
        total = sum(math.exp(statistic - top) for statistic in self._statistics)
        return top + math.log(total / len(self._statistics))

    @property
    def threshold(self) -> float:
        """``log(1 / alpha)``."""
        return math.log(1.0 / self.alpha)

    @property
    def n(self) -> int:
        """How many valid losses were absorbed."""
        return self._n

    def update(self, x: int | float) -> None:
        """Absorb one loss in [0, 1]; anything else (NaN, None, 1.5, ...) is ignored."""
        self._drift_detected = False
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
        self._statistics = [
            max(statistic, 0.0) + math.log1p(bet * excess)
            for statistic, bet in zip(self._statistics, self._bets, strict=True)
        ]
        # The mean of the CUSUMs is below the largest: most updates need no mean.
        if self._statistics and max(self._statistics) >= self.threshold <= self.statistic:
            self._drift_detected = True
            self._statistics = [0.0] * len(self._bets)
