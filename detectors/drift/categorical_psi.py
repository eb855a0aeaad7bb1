"""Population stability index of a tumbling window of categories against reference counts."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from detectors.drift._statistics import FloatArray, population_stability_index, psi_alarms
from detectors.drift._window import CategoricalWindowTest, validate_level, validate_positive


class CategoricalPSIDrift(CategoricalWindowTest):
    """Population stability index over categories, evaluated once per full tumbling window.

    Cells are the tracked reference categories, an "other" cell (the reference's rarer
    categories) and an "unseen" cell (values absent from the reference). Every cell gets
    half a count, so unseen values give a large but finite index. Below 0.1 is customarily
    stable, above 0.25 a major shift. ``drift_detected`` is ``statistic > threshold`` where
    chance alone gives such an index with probability below ``alpha``: on a stationary
    stream PSI is roughly ``(1/n + 1/m)`` times a chi-square with one degree of freedom
    fewer than the cells filled (n, m: reference and window sizes; ``psi_p_value``), so
    small windows pass 0.2 by chance.

    Parameters
    ----------
    reference
        Category -> count (counts, not shares: ``alpha``'s chance level reads their
        total as the reference's size), e.g. from training. ``None`` makes the reference
        rolling: each full window is compared with the previous one.
    window_size
        Valid values per window.
    threshold
        Alarm level of the index.
    alpha
        The chance of an index this high between two samples of one distribution below
        which an index above ``threshold`` is an alarm.
    max_categories
        Reference categories with a cell of their own; the rest are pooled. A window also
        keeps at most twice this many distinct categories, which bounds memory.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import CategoricalPSIDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = CategoricalPSIDrift(
    ...     reference={"web": 5000, "ios": 3000, "android": 2000}, window_size=500
    ... )
    >>> before = rng.choice(["web", "ios", "android"], 1500, p=[0.5, 0.3, 0.2])
    >>> after = rng.choice(["web", "ios", "android", "tv"], 1500, p=[0.3, 0.3, 0.2, 0.2])
    >>> for i, x in enumerate([*before, *after]):
    ...     detector.update(str(x))
    ...     if detector.drift_detected:
    ...         print(i, round(detector.statistic, 3), detector.unseen_rate)
    1999 1.875 0.212
    2499 1.644 0.188
    2999 1.79 0.204
    """

    def __init__(
        self,
        reference: Mapping[Hashable, int] | None = None,
        window_size: int = 1000,
        threshold: float = 0.2,
        alpha: float = 0.01,
        max_categories: int = 50,
    ) -> None:
        self._configure(reference, window_size, max_categories)
        validate_positive("threshold", threshold)
        validate_level("alpha", alpha)
        self.threshold = threshold
        self.alpha = alpha
        self._reset()

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        statistic = population_stability_index(reference, current)
        drifted = psi_alarms(statistic, reference, current, self.threshold, self.alpha)
        return statistic, float("nan"), drifted
