"""The shadow trial: always-valid errors under repeated looks, power, and the stable period."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.shadow._betting import BettingConfidenceSequence, _kept
from detectors.shadow.promotion import DAY, ShadowPromotion

MINUTE = 60.0


def _pairs(
    rng: np.random.Generator, n: int, live_rate: float, shadow_rate: float
) -> list[tuple[float, float, float]]:
    live = rng.random(n) < live_rate
    shadow = rng.random(n) < shadow_rate
    pairs = zip(live.tolist(), shadow.tolist(), strict=True)
    return [(MINUTE * i, float(a), float(b)) for i, (a, b) in enumerate(pairs)]


def _first_verdicts(trial: ShadowPromotion, pairs: list[Any]) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, pair in enumerate(pairs):
        trial.update(pair)
        first.setdefault(trial.verdict, i)
    return first


@pytest.mark.parametrize(
    ("live_rate", "shadow_rate", "min_improvement", "errors", "naive_errors"),
    [(0.2, 0.2, 0.0, 1, 73), (0.30, 0.25, 0.05, 2, 74)],
    ids=["equal-models", "improvement-exactly-at-the-margin"],
)
def test_looking_after_every_label_keeps_errors_below_alpha(
    live_rate: float, shadow_rate: float, min_improvement: float, errors: int, naive_errors: int
) -> None:
    # 100 null trials of 1,000 labels, the verdict read after every one. The true mean
    # improvement equals min_improvement, so any promote or reject is an error.
    alpha, trials, n = 0.1, 100, 1000
    rng = np.random.default_rng(70)
    wrong = 0
    naive_wrong = 0
    for _ in range(trials):
        pairs = _pairs(rng, n, live_rate, shadow_rate)
        trial = ShadowPromotion(
            alpha=alpha, min_improvement=min_improvement, min_stable_period=0.0, grid_size=100
        )
        decided = False
        for pair in pairs:
            trial.update(pair)
            decided = decided or trial.verdict != "keep_watching"
        wrong += decided
        # The same looks with a fixed-sample 90% normal interval: errors pile up.
        improvement = np.array([a - b for _, a, b in pairs]) - min_improvement
        t = np.arange(1, n + 1)
        mean = np.cumsum(improvement) / t
        sd = np.sqrt(np.maximum(np.cumsum(improvement**2) / t - mean**2, 1e-12))
        naive_wrong += bool(np.any((np.abs(mean) > 1.645 * sd / np.sqrt(t))[10:]))
    assert (wrong, naive_wrong) == (errors, naive_errors)
    assert wrong <= alpha * trials
    assert naive_wrong > 3 * alpha * trials


def test_a_better_shadow_is_promoted_exactly_when_the_stable_period_ends() -> None:
    rng = np.random.default_rng(71)
    pairs = _pairs(rng, 12_000, 0.20, 0.15)
    trial = ShadowPromotion(alpha=0.05, min_stable_period=7 * DAY)
    evidence_at = None
    promoted_at = None
    for i, pair in enumerate(pairs):
        trial.update(pair)
        if evidence_at is None and trial.lower > 0:
            evidence_at = i
        if promoted_at is None and trial.verdict == "promote":
            promoted_at = i
    assert evidence_at == 602  # statistical evidence after 10 hours...
    assert promoted_at == 10_080  # ...but the promotion waits for 7 days of event time
    assert trial.lower <= 0.05 <= trial.upper


def test_a_worse_shadow_is_rejected_without_waiting() -> None:
    rng = np.random.default_rng(72)
    first = _first_verdicts(ShadowPromotion(alpha=0.05), _pairs(rng, 5000, 0.20, 0.26))
    assert first == {"keep_watching": 0, "reject": 629}


def test_an_undecided_trial_is_rejected_after_max_trial_period() -> None:
    rng = np.random.default_rng(73)
    trial = ShadowPromotion(min_stable_period=DAY, max_trial_period=3 * DAY)
    first = _first_verdicts(trial, _pairs(rng, 5000, 0.2, 0.2))
    assert first == {"keep_watching": 0, "reject": 3 * 1440}


def test_stable_period_is_the_event_time_spanned_even_out_of_order() -> None:
    trial = ShadowPromotion(min_stable_period=DAY, grid_size=100)
    assert trial.stable_for == 0.0
    for at in (5 * DAY, 4 * DAY, 4.5 * DAY, 5.5 * DAY):
        trial.update((at, 1.0, 0.0))
    assert trial.stable_for == 1.5 * DAY
    assert trial.verdict == "keep_watching"  # four labels are no evidence
    assert trial.n_pairs == 4


def test_bounds_before_any_pair_and_ignored_inputs() -> None:
    trial = ShadowPromotion(grid_size=100)
    assert (trial.lower, trial.upper) == (-1.0, 1.0)
    assert math.isnan(trial.mean_improvement)
    for bad in (None, (0.0, 1.5, 0.0), (math.nan, 0.0, 0.0), (0.0, 0.5)):
        trial.update(bad)
    assert (trial.n_pairs, trial.n_ignored, trial.verdict) == (0, 4, "keep_watching")


def test_bounds_shrink_around_the_true_improvement() -> None:
    rng = np.random.default_rng(74)
    trial = ShadowPromotion(alpha=0.05, min_stable_period=0.0)
    widths = []
    for i, pair in enumerate(_pairs(rng, 20_000, 0.3, 0.3)):
        trial.update(pair)
        if (i + 1) % 5000 == 0:
            widths.append(round(trial.upper - trial.lower, 3))
            assert trial.lower <= 0.0 <= trial.upper
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < 0.06


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"min_improvement": 1.0}, "min_improvement"),
        ({"min_stable_period": -1.0}, "min_stable_period"),
        ({"min_stable_period": math.inf}, "min_stable_period"),
        ({"max_trial_period": 60.0}, "max_trial_period"),
        ({"grid_size": 5}, "grid_size"),
        ({"alpha": "0.05"}, "alpha"),
        ({"min_stable_period": None}, "min_stable_period"),
        ({"max_trial_period": "30 days"}, "max_trial_period"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ShadowPromotion(**kwargs)


# Offsets from the threshold at and across the band's edges (to a few ulps), and far below.
_NEAR = st.tuples(
    st.sampled_from([-40.0, -math.log(2.0), -1e-9, -1e-12, 0.0, 1e-12, 1e-9, math.log(2.0)]),
    st.sampled_from([0.0, 1e-10, -1e-10, 1e-3, -1e-3, 0.4, -0.4]),
    st.integers(-3, 3),
)


@given(
    st.sampled_from([0.01, 0.05, 0.3]),
    st.lists(st.tuples(_NEAR, _NEAR), min_size=1, max_size=40),
)
def test_candidates_kept_are_those_whose_hedged_capital_is_below_the_threshold(
    alpha: float, offsets: list[tuple[tuple[float, float, int], tuple[float, float, int]]]
) -> None:
    # Each capital near or across the band's edges, or far below, the two equal or not:
    # the shortcut must agree with logaddexp's comparison on each, rounding included.
    threshold = math.log(1.0 / alpha)
    ulp = math.ulp(threshold)
    log_up, log_down = (
        np.array([threshold + edge + shift + ulps * ulp for edge, shift, ulps in side])
        for side in zip(*offsets, strict=True)
    )
    expected = np.logaddexp(log_up, log_down) + math.log(0.5) < threshold
    kept = [_kept(up, down, threshold) for up, down in zip(log_up, log_down, strict=True)]
    assert kept == expected.tolist()


@given(
    st.sampled_from([0.05, 0.5]),
    st.sampled_from([10, 37]),
    st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.55, 1.0]), min_size=1, max_size=60),
    st.booleans(),
)
def test_bounds_are_the_first_and_last_candidates_whose_hedged_capital_is_below_the_threshold(
    alpha: float, grid_size: int, xs: list[float], batched: bool
) -> None:
    # The compiled loop's bounds against their definition, on the whole grid by numpy:
    # runs at either end of [0, 1] keep the grid's first or last candidate, or none.
    sequence = BettingConfidenceSequence(alpha, grid_size)
    found = sequence.update_many(xs) if batched else []
    for x in [] if batched else xs:
        sequence.update(x)
        found.append(sequence.bounds())
    hedged = np.logaddexp(sequence._log_up, sequence._log_down) + math.log(0.5)
    kept = sequence._grid[hedged < math.log(1.0 / alpha)].tolist()
    cell = 1.0 / grid_size
    expected = (max(kept[0] - cell, 0.0), min(kept[-1] + cell, 1.0)) if kept else (math.nan,) * 2
    assert str(found[-1]) == str(sequence.bounds()) == str(expected)
