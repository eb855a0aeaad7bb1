"""Wasserstein-1 distance of a tumbling window from a reference sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.drift._effect import MIN_EFFECT
from detectors.drift._statistics import FloatArray, wasserstein_1
from detectors.drift._window import NumericWindowTest, validate_positive


class WassersteinDrift(NumericWindowTest):
    """Wasserstein-1 (earth mover's) distance, evaluated once per full tumbling window.

    ``statistic`` is the distance in the input's units (identical to
    ``scipy.stats.wasserstein_distance``). There is no distribution-free null, so
    ``drift_detected`` compares the distance with ``threshold`` reference standard
    deviations: ``statistic > threshold * reference_scale``. Measured on 20,000 stationary windows
    (standard normal, 1,000 reference values), the distance exceeds 0.25 standard
    deviations in 2.5% of windows of 100 values and in none of the windows of 500 or
    1,000, so the default 0.25 suits windows of 500 or more; it flags a mean shift of a
    quarter of a standard deviation, or a comparable change of shape.

    Parameters
    ----------
    reference
        A frozen sample, e.g. from training; non-finite values are dropped. ``None`` makes
        the reference rolling: each full window is compared with the previous one.
    window_size
        Valid values per window.
    threshold
        Alarm level in units of the reference's standard deviation.
    min_effect
        The smallest effect (``effect``) worth acting on, as in the watch's floor. Windows
        below it count as the traffic's harmless variation and widen the in-control noise
        of later windows' effects (``detectors.drift._effect``); ``drift_detected`` does not
        depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import WassersteinDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = WassersteinDrift(reference=rng.normal(0.0, 1.0, 1000), window_size=500)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1500), rng.normal(0.3, 1.0, 1500)])
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, round(detector.statistic, 3))
    1999 0.397
    2499 0.348
    2999 0.307
    """

    def __init__(
        self,
        reference: Sequence[float] | None = None,
        window_size: int = 1000,
        threshold: float = 0.25,
        min_effect: float = MIN_EFFECT,
    ) -> None:
        self._configure(reference, window_size, min_effect)
        validate_positive("threshold", threshold)
        self.threshold = threshold
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._reference_scale = float("nan")

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        self._reference_scale = float(np.std(reference))
        statistic = wasserstein_1(reference, current)
        return statistic, float("nan"), statistic > self.threshold * self._reference_scale

    @property
    def reference_scale(self) -> float:
        """Standard deviation of the reference used by the last test (NaN before it)."""
        return self._reference_scale
