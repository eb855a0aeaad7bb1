"""Portfolio false-alarm control: a budget of false fallbacks per model-day, split by Bonferroni.

Why Bonferroni. The quantity to control is the chance that a healthy model falls back on a
given day. A fallback is a model-level action: one false alarm among all of a model's tests
is enough to start one. That is a family-wise error per model-day, not a false discovery
rate: with no drift at all every discovery is false and an FDR rule (Benjamini-Hochberg)
controls exactly the same thing, while under a real drift it lets extra false alarms
through; and Holm or BH need all of a day's p-values at once, which a stream never has.
Bonferroni holds under any dependence between the tests (correlated features, overlapping
windows, PSI and KS on the same window), needs no p-values from the other tests, and
spending it evenly over the evaluations of a day is the simplest alpha-spending schedule,
which a stream can apply as each window closes. It is conservative when the tests are
nearly independent; with a budget of 0.01 per model-day and a few thousand tests a day the
per-test level stays near 1e-6, which a window of a few hundred values can still reach on
a real shift. The health policy's confirmation (alarms at distinct times) comes on top.

How the budget is spent. Each detector family (``"drift"``, ``"score"``, ``"performance"``,
...) gets a share of the budget (equal shares by default, so that twenty features times
four windowed tests do not starve the single error-rate detector), and each family splits
its share evenly over its tests per model-day. A test is one chance of a false alarm at the
level the detector is given: for a windowed test (``KSDrift``, ``NullRateDrift``), one
evaluation of one feature; for a sequential detector whose level is per input
(``PerformanceDrop``: mean run length at least ``1 / alpha``; ``BernoulliCUSUM``: about one
false alarm in ``e ** threshold`` inputs, so ``threshold = ln(1 / alpha)``), one input; for
an always-valid test that alarms at most once per run, one run. Critical
incidents (values from the future, an error rate above a hard limit) do not spend budget:
the policy acts on them at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class AlarmBudget:
    """The false-alarm budget of one model, and the level it hands each test.

    Parameters
    ----------
    false_fallbacks_per_model_day
        Expected false fallbacks per model-day that the portfolio accepts, in (0, 1).
    tests_per_day
        Detector family -> number of tests that family runs per model-day (features times
        evaluations per day), each > 0.
    shares
        Detector family -> share of the budget; must name the same families as
        ``tests_per_day`` and sum to at most 1. Default: equal shares.

    Examples
    --------
    A model with 2,000 predictions and labels a day, and 20 features each tested by KS on
    windows of 500 (4 a day), a CUSUM on the score and an e-CUSUM on the error indicator,
    both with a level per input:

    >>> import numpy as np
    >>> per_day = int(np.random.default_rng(0).integers(2000, 2001))
    >>> budget = AlarmBudget(
    ...     0.01, {"drift": 20 * per_day // 500, "score": per_day, "performance": per_day}
    ... )
    >>> f"{budget.alpha_for('drift'):.3g}", f"{budget.alpha_for('performance'):.3g}"
    ('4.17e-05', '1.67e-06')
    >>> round(sum(budget.alpha_for(d) * n for d, n in budget.tests_per_day.items()), 12)
    0.01
    """

    false_fallbacks_per_model_day: float
    tests_per_day: Mapping[str, float]
    shares: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        budget = self.false_fallbacks_per_model_day
        if not isinstance(budget, int | float) or not 0.0 < budget < 1.0:
            raise ValueError(f"false_fallbacks_per_model_day={budget!r}: expected 0 < value < 1")
        tests = dict(self.tests_per_day)
        if not tests:
            raise ValueError("tests_per_day: expected at least one detector family")
        for family, count in tests.items():
            if not isinstance(count, int | float) or not math.isfinite(count) or count <= 0:
                raise ValueError(f"tests_per_day[{family!r}]={count!r}: expected a number > 0")
        object.__setattr__(self, "tests_per_day", tests)
        if self.shares is None:
            return
        shares = dict(self.shares)
        if set(shares) != set(tests):
            raise ValueError(
                f"shares: expected exactly the families of tests_per_day {sorted(tests)}, "
                f"got {sorted(shares)}"
            )
        for family, share in shares.items():
            if not isinstance(share, int | float) or not 0.0 < share <= 1.0:
                raise ValueError(f"shares[{family!r}]={share!r}: expected 0 < share <= 1")
        if sum(shares.values()) > 1.0 + 1e-9:
            raise ValueError(f"shares: sum to {sum(shares.values())!r}, expected at most 1")
        object.__setattr__(self, "shares", shares)

    def alpha_for(self, family: str) -> float:
        """The level for each test of ``family``: its share of the budget over its tests.

        Raises
        ------
        ValueError
            When ``family`` is not one of ``tests_per_day``; the message names the valid ones.
        """
        if family not in self.tests_per_day:
            raise ValueError(f"family={family!r}: expected one of {sorted(self.tests_per_day)}")
        share = 1.0 / len(self.tests_per_day) if self.shares is None else self.shares[family]
        return self.false_fallbacks_per_model_day * share / self.tests_per_day[family]
