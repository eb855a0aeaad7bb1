"""Chi-square test of a tumbling window of categories against reference counts."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from detectors.drift._statistics import FloatArray, chi_square_sf, contingency_chi_square
from detectors.drift._window import CategoricalWindowTest, PValue, validate_level


class ChiSquareDrift(PValue, CategoricalWindowTest):
    """Pearson's chi-square test of homogeneity, evaluated once per full tumbling window.

    The reference counts and the window counts form a 2 x K table over the tracked
    categories, an "other" cell (the reference's rarer categories) and an "unseen" cell
    (values absent from the reference). Columns with an expected count below 5 are pooled,
    so the chi-square approximation holds; unseen values still weigh in through the pooled
    column. ``drift_detected`` is ``p_value < alpha``: about ``alpha`` false alarms per
    window on a stationary stream. The test is two-sample, so a frozen reference's size
    counts: pass training counts, not shares.

    Parameters
    ----------
    reference
        Category -> count, e.g. from training. ``None`` makes the reference rolling: each
        full window is compared with the previous one.
    window_size
        Valid values per window (and per test).
    alpha
        Significance level of each test; the health policy hands it out of its budget.
    max_categories
        Reference categories with a cell of their own; the rest are pooled. A window also
        keeps at most twice this many distinct categories, which bounds memory.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import ChiSquareDrift
    >>> rng = np.random.default_rng(42)
    >>> detector = ChiSquareDrift(
    ...     reference={"web": 5000, "ios": 3000, "android": 2000}, window_size=500, alpha=0.001
    ... )
    >>> before = rng.choice(["web", "ios", "android"], 1500, p=[0.5, 0.3, 0.2])
    >>> after = rng.choice(["web", "ios", "android", "tv"], 1500, p=[0.4, 0.3, 0.2, 0.1])
    >>> for i, x in enumerate([*before, *after]):
    ...     detector.update(str(x))
    ...     if detector.drift_detected:
    ...         print(i, f"{detector.p_value:.1e}", detector.unseen_rate)
    1999 2.6e-241 0.11
    2499 7.8e-205 0.094
    2999 3.1e-219 0.1

    A batch gives the same windows, each at its position in the batch:

    >>> batched = ChiSquareDrift(reference=detector.reference, window_size=500, alpha=0.001)
    >>> batched.update_many([*before, *after])
    >>> batched.window_ends[batched.window_drifts].tolist(), batched.unseen_rate
    ([1999, 2499, 2999], 0.1)
    """

    def __init__(
        self,
        reference: Mapping[Hashable, int] | None = None,
        window_size: int = 1000,
        alpha: float = 0.01,
        max_categories: int = 50,
    ) -> None:
        validate_level("alpha", alpha)
        self._configure(reference, window_size, max_categories)
        self.alpha = alpha
        self._reset()

    def _evaluate(self, reference: FloatArray, current: FloatArray) -> tuple[float, float, bool]:
        statistic, dof = contingency_chi_square(reference, current)
        p_value = chi_square_sf(statistic, dof)
        return statistic, p_value, p_value < self.alpha
