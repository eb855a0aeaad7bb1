"""Shared-check cases for the shadow detectors.

Streams are one labelled request a minute; each call starts its clock at 0 again, which the
trial reads as late records (the span it has seen does not grow), so the warm-up, in event
time, cannot pass inside the silent check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.shadow.agreement import ShadowAgreement
from detectors.shadow.promotion import ShadowPromotion
from tests.detectors.cases import BAD_SCALARS, DetectorCase
from tests.detectors.cases_performance import BAD_PAIRS


def scores(rng: np.random.Generator, n: int, coupled: bool) -> Sequence[Any]:
    """(live, shadow) scores; a coupled shadow follows live closely, else it is unrelated."""
    live = rng.random(n)
    shadow = np.clip(live + rng.normal(0.0, 0.05, n), 0, 1) if coupled else rng.random(n)
    return list(zip(live.tolist(), shadow.tolist(), strict=True))


def paired_losses(
    rng: np.random.Generator, n: int, live_rate: float, shadow_rate: float
) -> Sequence[Any]:
    """(event_at, live_error, shadow_error), one a minute from 0."""
    live = (rng.random(n) < live_rate).astype(float)
    shadow = (rng.random(n) < shadow_rate).astype(float)
    return [
        (60.0 * i, float(a), float(b)) for i, (a, b) in enumerate(zip(live, shadow, strict=True))
    ]


CASES = [
    DetectorCase(
        make=lambda: ShadowAgreement(window=120, min_pairs=100),
        stream=lambda rng, n: scores(rng, n, coupled=True),
        results=(
            "agreement",
            "delta_mean",
            "delta_p05",
            "delta_p50",
            "delta_p95",
            "spearman",
            "kendall",
            "n_pairs",
            "n_ignored",
            "diverged",
        ),
        alarm="diverged",
        # Divergence can be judged on the 100th pair, so it must stay quiet for 99.
        warm_up=99,
        changed=lambda rng, n: scores(rng, n, coupled=False),
        bad_inputs=BAD_PAIRS,
    ),
    DetectorCase(
        make=lambda: ShadowPromotion(alpha=0.05, min_stable_period=86_400.0, grid_size=200),
        stream=lambda rng, n: paired_losses(rng, n, 0.2, 0.2),
        results=(
            "verdict",
            "lower",
            "upper",
            "mean_improvement",
            "n_pairs",
            "n_ignored",
            "stable_for",
            "promoted",
        ),
        alarm="promoted",
        # A day of event time at one pair a minute.
        warm_up=1440,
        changed=lambda rng, n: paired_losses(rng, n, 0.6, 0.0),
        bad_inputs=(
            *BAD_SCALARS,
            "x",
            (0.0, 0.1),
            (float("nan"), 0.0, 1.0),
            (None, 0.0, 1.0),
            (0.0, 2.0, 0.0),
            (0.0, None, 1.0),
            (0.0, 0.5, float("inf")),
        ),
    ),
]
