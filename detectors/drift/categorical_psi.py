"""Population stability index of a tumbling window of categories against reference counts."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from detectors.drift._statistics import FloatArray, population_stability_index
from detectors.drift._window import CategoricalWindowTest, validate_positive


class CategoricalPSIDrift(CategoricalWindowTest):
    """Population stability index over categories, evaluated once per full tumbling window.

    Cells are the tracked reference categories, an "other" cell (the reference's rarer
    categories) and an "unseen" cell (values absent from the reference). Every cell gets
    half a count, so unseen values give a large but finite index. ``drift_detected`` is
    ``statistic > threshold``; below 0.1 is customarily stable, above 0.25 a major shift.
    On a stationary stream PSI is roughly ``(1/n + 1/m)`` times a chi-square with one
    degree of freedom fewer than the number of cells (n, m: reference and window sizes).

    Parameters
    ----------
    reference
        Category -> count, e.g. from training. ``None`` makes the reference rolling: each
        full window is compared with the previous one.
    window_size
        Valid values per window.
    threshold
        Alarm level of the index.
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
        max_categories: int = 50,
    ) -> None:
        self._configure(reference, window_size, max_categories)
        validate_positive("threshold", threshold)
        self.threshold = threshold
        self._reset()

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        statistic = population_stability_index(reference, current)
        return statistic, float("nan"), statistic > self.threshold
