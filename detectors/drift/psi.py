"""Population stability index of a tumbling window against a reference sample."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.drift._effect import MIN_EFFECT
from detectors.drift._statistics import FloatArray, population_stability_index, psi_alarms
from detectors.drift._window import BinnedWindowTest, validate_level


class PSIDrift(BinnedWindowTest):
    """Population stability index over equal-frequency reference bins, once per window.

    The bins are the reference's ``n_bins`` quantiles, fixed for a frozen reference and
    recomputed from each new reference window when rolling. Counts get half a count per
    bin, so empty bins stay finite. The customary reading is below 0.1 stable, 0.1 to 0.25
    moderate, above 0.25 major.

    ``drift_detected`` is ``statistic > threshold`` where chance alone gives such an index
    with probability below ``alpha`` (``psi_p_value``: PSI is close to ``1/n + 1/m`` times a
    chi-square). A fixed threshold alone does not hold at small sizes: on stationary
    samples of 4,000 pairs of windows, 0.2 was exceeded in 75% of pairs of 50 values and
    29% of pairs of 100 (normal, lognormal alike), against 0.3% and 0.8% with ``alpha`` at
    0.01. With 10 bins, from windows of 500 against references of 500 or more, the
    threshold is the higher of the two and this changes nothing (with more cells filled,
    say 31 at 500 against 500, ``alpha`` decides there too).

    Parameters
    ----------
    reference
        A frozen sample, e.g. from training; non-finite values are dropped. ``None`` makes
        the reference rolling: each full window is compared with the previous one.
    window_size
        Valid values per window.
    n_bins
        Number of equal-frequency bins of the reference.
    threshold
        Alarm level of the index.
    alpha
        The chance of an index this high between two samples of one distribution below
        which an index above ``threshold`` is an alarm.
    min_effect
        The smallest effect (``effect``) worth acting on, as in the watch's floor. Windows
        below it count as the traffic's harmless variation and widen the in-control noise
        of later windows' effects (``detectors.drift._effect``); ``drift_detected`` does not
        depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import PSIDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = PSIDrift(reference=rng.normal(0.0, 1.0, 1000), window_size=500)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1500), rng.normal(0.5, 1.0, 1500)])
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, round(detector.statistic, 3))
    1999 0.332
    2499 0.322
    2999 0.279
    """

    _divergence = staticmethod(population_stability_index)

    def __init__(
        self,
        reference: Sequence[float] | None = None,
        window_size: int = 1000,
        n_bins: int = 10,
        threshold: float = 0.2,
        alpha: float = 0.01,
        min_effect: float = MIN_EFFECT,
    ) -> None:
        validate_level("alpha", alpha)
        self._configure_bins(reference, window_size, n_bins, threshold, min_effect)
        self.alpha = alpha
        self._reset()

    def _drifted(self, statistic: float, reference: FloatArray, current: FloatArray) -> bool:
        return psi_alarms(statistic, reference, current, self.threshold, self.alpha)
