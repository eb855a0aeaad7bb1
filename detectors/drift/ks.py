"""Kolmogorov-Smirnov test of a tumbling window against a reference sample."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.drift._effect import MIN_EFFECT
from detectors.drift._statistics import FloatArray, kolmogorov_sf, ks_statistic
from detectors.drift._window import NumericWindowTest, PValue, validate_level


class KSDrift(PValue, NumericWindowTest):
    """Two-sample Kolmogorov-Smirnov test, evaluated once per full tumbling window.

    ``statistic`` is the largest gap between the empirical CDFs of the reference and the
    last full window (identical to ``scipy.stats.ks_2samp``); ``p_value`` is its asymptotic
    two-sided p-value (Kolmogorov distribution with Stephens' correction, conservative on
    tied data). ``drift_detected`` is ``p_value < alpha``, so on a stationary continuous
    stream the false-alarm rate is about ``alpha`` per window, i.e. per
    ``window_size`` valid events.

    Parameters
    ----------
    reference
        A frozen sample, e.g. from training; non-finite values are dropped. ``None`` makes
        the reference rolling: each full window is compared with the previous one.
    window_size
        Valid values per window (and per test).
    alpha
        Significance level of each test; the health policy hands it out of its budget.
    min_effect
        The smallest effect (``effect``) worth acting on, as in the watch's floor. Windows
        below it count as the traffic's harmless variation and widen the in-control noise
        of later windows' effects (``detectors.drift._effect``); ``drift_detected`` does not
        depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import KSDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = KSDrift(reference=rng.normal(0.0, 1.0, 1000), window_size=500, alpha=0.001)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1500), rng.normal(0.3, 1.0, 1500)])
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, round(detector.statistic, 3), f"{detector.p_value:.1e}")
    1999 0.172 4.1e-09
    2499 0.161 4.9e-08
    2999 0.148 7.4e-07

    A batch gives the same windows, each at its position in the batch:

    >>> batched = KSDrift(reference=detector.reference, window_size=500, alpha=0.001)
    >>> batched.update_many(stream)
    >>> batched.window_ends[batched.window_drifts].tolist(), batched.drift_detected
    ([1999, 2499, 2999], True)
    >>> [f"{p:.1e}" for p in batched.window_p_values[batched.window_drifts]]
    ['4.1e-09', '4.9e-08', '7.4e-07']
    """

    def __init__(
        self,
        reference: Sequence[float] | None = None,
        window_size: int = 1000,
        alpha: float = 0.01,
        min_effect: float = MIN_EFFECT,
    ) -> None:
        validate_level("alpha", alpha)
        self._configure(reference, window_size, min_effect)
        self.alpha = alpha
        self._reset()

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        statistic = ks_statistic(reference, current)
        p_value = kolmogorov_sf(statistic, reference.size, current.size)
        return statistic, p_value, p_value < self.alpha
