"""Shadow versus live without labels: agreement, score deltas, rank correlations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from detectors.shadow.agreement import ShadowAgreement


def test_rank_correlations_match_scipy_on_the_window_with_ties() -> None:
    rng = np.random.default_rng(60)
    live = np.round(rng.random(900), 2)
    shadow = np.round(np.clip(live + rng.normal(0, 0.2, 900), 0, 1), 1)
    agreement = ShadowAgreement(window=400)
    for pair in zip(live.tolist(), shadow.tolist(), strict=True):
        agreement.update(pair)
    spearman = stats.spearmanr(live[-400:], shadow[-400:]).statistic
    kendall = stats.kendalltau(live[-400:], shadow[-400:]).statistic  # tau-b
    assert agreement.spearman == pytest.approx(spearman, abs=1e-12)
    assert agreement.kendall == pytest.approx(kendall, abs=1e-12)


def test_agreement_and_deltas_exact() -> None:
    agreement = ShadowAgreement(window=4, threshold=0.5, min_pairs=2)
    for pair in [(0.9, 0.8), (0.2, 0.6), (0.4, 0.1), (0.7, 0.7), (0.1, 0.3)]:
        agreement.update(pair)
    # The window holds the last four: (0.2, 0.6) disagrees, the others agree.
    assert agreement.agreement == 0.75
    deltas = np.array([0.4, -0.3, 0.0, 0.2])
    assert agreement.delta_mean == pytest.approx(deltas.mean())
    assert agreement.delta_p50 == pytest.approx(np.quantile(deltas, 0.5))
    assert agreement.delta_p05 == pytest.approx(np.quantile(deltas, 0.05))
    assert agreement.delta_p95 == pytest.approx(np.quantile(deltas, 0.95))


def test_a_broken_shadow_diverges_pinned() -> None:
    rng = np.random.default_rng(61)
    agreement = ShadowAgreement(window=200)
    diverged = []
    for i in range(2000):
        live = float(rng.random())
        # At 1000 the shadow loses a feature and its scores stop following live.
        shadow = live + float(rng.normal(0, 0.1)) if i < 1000 else float(rng.random())
        agreement.update((live, shadow))
        if agreement.diverged:
            diverged.append(i)
    assert diverged[0] == 1085
    assert diverged[-1] == 1999


def test_a_constant_shadow_has_no_rank_correlation_and_diverges() -> None:
    agreement = ShadowAgreement(window=100, min_pairs=50)
    for i in range(60):
        agreement.update((i / 60, 0.5))
    assert math.isnan(agreement.spearman) and math.isnan(agreement.kendall)
    assert agreement.diverged


def test_a_faithful_shadow_never_diverges() -> None:
    rng = np.random.default_rng(62)
    agreement = ShadowAgreement(window=300)
    for _ in range(3000):
        live = float(rng.random())
        agreement.update((live, live + float(rng.normal(0, 0.15))))
        assert not agreement.diverged


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 1}, "window"),
        ({"threshold": math.nan}, "threshold"),
        ({"min_rank_correlation": 1.5}, "min_rank_correlation"),
        ({"min_pairs": 1}, "min_pairs"),
        ({"window": 10, "min_pairs": 11}, "min_pairs"),
        ({"threshold": "0.5"}, "threshold"),
        ({"min_rank_correlation": None}, "min_rank_correlation"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ShadowAgreement(**kwargs)
