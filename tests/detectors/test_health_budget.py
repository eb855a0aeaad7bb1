"""The alarm budget: Bonferroni levels per test, and what they buy on null p-values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.health.budget import AlarmBudget


def test_equal_shares_spend_exactly_the_budget() -> None:
    budget = AlarmBudget(0.01, {"drift": 160, "score": 1, "performance": 24})
    assert budget.alpha_for("drift") == pytest.approx(0.01 / 3 / 160)
    assert budget.alpha_for("score") == pytest.approx(0.01 / 3)
    spent = sum(budget.alpha_for(family) * n for family, n in budget.tests_per_day.items())
    assert spent == pytest.approx(0.01)


def test_shares_weight_the_families() -> None:
    budget = AlarmBudget(0.02, {"drift": 100, "score": 4}, shares={"drift": 0.75, "score": 0.25})
    assert budget.alpha_for("drift") == pytest.approx(0.02 * 0.75 / 100)
    assert budget.alpha_for("score") == pytest.approx(0.02 * 0.25 / 4)


def test_null_model_days_stay_within_the_budget() -> None:
    # 20,000 null model-days of 200 tests each, correlated in pairs (two tests per window):
    # the share of days with any alarm must not exceed the budget of 0.05.
    rng = np.random.default_rng(12)
    budget = AlarmBudget(0.05, {"drift": 200})
    windows = rng.random((20_000, 100))
    p_values = np.repeat(windows, 2, axis=1)  # PSI and KS on one window agree perfectly
    days_with_alarm = int((p_values <= budget.alpha_for("drift")).any(axis=1).sum())
    assert days_with_alarm == 490
    assert days_with_alarm / 20_000 <= 0.05 / 2 + 0.003  # the pairs halve the real level


def test_unknown_family_names_the_valid_ones() -> None:
    budget = AlarmBudget(0.01, {"drift": 10})
    with pytest.raises(ValueError, match=r"'score'.*\['drift'\]"):
        budget.alpha_for("score")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0.0, {"drift": 1}), "false_fallbacks_per_model_day"),
        ((1.0, {"drift": 1}), "false_fallbacks_per_model_day"),
        ((0.01, {}), "tests_per_day"),
        ((0.01, {"drift": 0}), r"tests_per_day\['drift'\]"),
        ((0.01, {"drift": 1}, {"score": 1.0}), "shares"),
        ((0.01, {"drift": 1, "score": 1}, {"drift": 0.8, "score": 0.8}), "shares"),
    ],
)
def test_invalid_budgets_name_the_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AlarmBudget(*args)
