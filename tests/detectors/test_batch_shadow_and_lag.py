"""Batch updates of the shadow detectors and the write lag: any split of a stream into
batches gives what ``update`` gives one by one (``tests/detectors/batching.py``): the same
events at the same indices, with what each read there, and the same state after."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.leaks import FeatureWrite
from detectors.leaks.write_lag import WriteLag
from detectors.shadow._betting import BettingConfidenceSequence
from detectors.shadow.agreement import ShadowAgreement
from detectors.shadow.promotion import ShadowPromotion
from tests.detectors.batching import Event, cuts
from tests.detectors.cases_leaks import BAD_EVENTS
from tests.detectors.cases_performance import BAD_PAIRS
from tests.detectors.test_batch_updates import assert_same_batched

PROPERTY = settings(max_examples=150, deadline=None)
BAD_NUMBERS = [math.nan, None, math.inf, -math.inf, -0.25, 1.5, "0.5", 1 + 0j]


def no_event(_: Any) -> Event | None:
    return None


def no_events(_: Any) -> list[tuple[int, Event]]:
    return []


@st.composite
def score_pairs(draw: st.DrawFn) -> list[Any]:
    """Pairs of scores that agree, then disagree, with malformed pairs among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 4))):
        noise = draw(st.sampled_from([0.05, 0.8]))
        for live in rng.random(draw(st.integers(1, 40))).tolist():
            values.append((live, float(np.clip(live + rng.normal(0.0, noise), 0.0, 1.0))))
    for _ in range(draw(st.integers(0, 10))):
        bad = draw(st.sampled_from([*BAD_PAIRS, (0.5, math.nan), [math.inf, 0.5], (0.5,)]))
        values.insert(draw(st.integers(0, len(values))), bad)
    return values


@PROPERTY
@given(st.sampled_from([2, 7, 50]), st.data())
def test_shadow_agreement_batched_as_one_by_one(window: int, data: st.DataObject) -> None:
    values = data.draw(score_pairs())
    assert_same_batched(
        lambda: ShadowAgreement(window=window, min_pairs=2),
        values,
        data.draw(cuts(len(values))),
        no_event,
        no_events,
    )


@st.composite
def labelled_losses(draw: st.DrawFn) -> list[Any]:
    """Runs of ``(event_at, live_loss, shadow_loss)`` where the shadow is better, worse
    or alike, event times out of order at times, with malformed inputs among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    at = 0.0
    for _ in range(draw(st.integers(1, 4))):
        live, shadow = draw(st.sampled_from([(0.4, 0.1), (0.1, 0.4), (0.3, 0.3)]))
        for _ in range(draw(st.integers(1, 80))):
            at += float(rng.exponential(600.0)) - draw(st.sampled_from([0.0, 0.0, 900.0]))
            values.append((at, float(rng.random() < live), float(rng.random() < shadow) * 0.9))
    for _ in range(draw(st.integers(0, 10))):
        bad = draw(st.sampled_from([*BAD_NUMBERS, (math.nan, 0.5, 0.5), (0.0, 1.5, 0.5)]))
        values.insert(draw(st.integers(0, len(values))), bad)
    return values


def verdict_event(detector: ShadowPromotion) -> Event | None:
    """The one-by-one counterpart of ``verdict_events``; reads the verdict after every
    input, as the shadow join does."""
    assert detector.verdict in ("promote", "keep_watching", "reject")
    changes = detector.verdict_changes
    return (changes[0][1],) if changes else None


def verdict_events(detector: ShadowPromotion) -> list[tuple[int, Event]]:
    return [(i, (verdict,)) for i, verdict in detector.verdict_changes]


@PROPERTY
@given(st.sampled_from([None, 40_000.0]), st.data())
def test_shadow_promotion_batched_as_one_by_one(
    max_trial_period: float | None, data: st.DataObject
) -> None:
    values = data.draw(labelled_losses())
    assert_same_batched(
        lambda: ShadowPromotion(
            alpha=0.2,
            min_stable_period=20_000.0,
            max_trial_period=max_trial_period,
            grid_size=50,
        ),
        values,
        data.draw(cuts(len(values))),
        verdict_event,
        verdict_events,
    )


def test_shadow_promotion_batch_finds_each_verdict_change() -> None:
    """A seeded trial whose verdict changes three times inside one batch: promote as the
    stable period ends, then back to watching and to reject once the shadow is worse."""
    rng = np.random.default_rng(61)
    values = [
        (60.0 * i, float(rng.random() < 0.4), float(rng.random() < (0.1 if i < 600 else 0.95)))
        for i in range(3_000)
    ]
    trial = ShadowPromotion(alpha=0.05, min_stable_period=30_000.0)
    trial.update_many(values)
    expected = [(500, "promote"), (1223, "keep_watching"), (1953, "reject")]
    assert trial.verdict_changes == expected
    one_by_one = ShadowPromotion(alpha=0.05, min_stable_period=30_000.0)
    found = []
    for i, value in enumerate(values):
        one_by_one.update(value)
        found.extend((i, verdict) for _, verdict in one_by_one.verdict_changes)
    assert found == expected


def test_betting_bounds_batched_as_one_by_one_when_every_candidate_is_excluded() -> None:
    """A mean at the end of a coarse grid, off its cells' centres, then jumping to the
    other end: the sequence excludes every candidate (NaN bounds) at some rows and not at
    others, across the batch's row blocks, as one by one."""
    xs = [0.0] * 100 + [1.0] * 20
    one_by_one = BettingConfidenceSequence(0.5, 10)
    expected = []
    for x in xs:
        one_by_one.update(x)
        expected.append(one_by_one.bounds())
    found = BettingConfidenceSequence(0.5, 10).update_many(xs)
    excluded = [i for i, (lower, _) in enumerate(expected) if math.isnan(lower)]
    assert excluded == [*range(53, 101), *range(114, 119)]
    assert str(found) == str(expected)


@st.composite
def writes(draw: st.DrawFn) -> list[Any]:
    """Writes of three features whose lag jumps, some exactly on a bucket's edge or the
    SLA, with malformed events among them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values: list[Any] = []
    at = 0
    for _ in range(draw(st.integers(1, 4))):
        scale = draw(st.sampled_from([1.0, 20.0]))
        for _ in range(draw(st.integers(1, 120))):
            at += 1
            feature = draw(st.sampled_from(["plan", "balance", "sessions"]))
            lag = draw(st.sampled_from([0, 1, 2, 500, float(1.02**300)]))
            lag = lag or float(rng.lognormal(5.0, 1.0) * scale)
            values.append(FeatureWrite("u", feature, 1.0, at, at + lag))
    for _ in range(draw(st.integers(0, 10))):
        values.insert(draw(st.integers(0, len(values))), draw(st.sampled_from(BAD_EVENTS)))
    return values


def window_event(detector: WriteLag) -> Event | None:
    closed = detector.windows_closed
    return _summary(closed[0][1]) if closed else None


def window_events(detector: WriteLag) -> list[tuple[int, Event]]:
    return [(i, _summary(summary)) for i, summary in detector.windows_closed]


def _summary(summary: Any) -> Event:
    return tuple("nan" if x != x else x for x in dataclasses.astuple(summary))


@PROPERTY
@given(st.sampled_from([None, 500.0]), st.sampled_from([2, 3]), st.data())
def test_write_lag_batched_as_one_by_one(
    sla: float | None, max_features: int, data: st.DataObject
) -> None:
    values = data.draw(writes())
    assert_same_batched(
        lambda: WriteLag(sla=sla, window=10, reference_windows=2, max_features=max_features),
        values,
        data.draw(cuts(len(values))),
        window_event,
        window_events,
    )


@PROPERTY
@given(st.sampled_from([None, 500, 500.0]), st.data())
def test_write_lag_batched_as_one_by_one_one_feature_at_a_time(
    sla: float | None, data: st.DataObject
) -> None:
    # The leak watch's batches: one feature's writes (and malformed events), one run each.
    values = [v for v in data.draw(writes()) if getattr(v, "feature", "plan") == "plan"]
    assert_same_batched(
        lambda: WriteLag(sla=sla, window=10, reference_windows=2),
        values,
        data.draw(cuts(len(values))),
        window_event,
        window_events,
    )
