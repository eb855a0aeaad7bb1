"""WriteLag: lag quantiles, drift against the first window, and a declared SLA."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from detectors import WriteLag
from detectors.leaks import FeatureWrite


def _writes(lags: np.ndarray, feature: str = "balance") -> list[FeatureWrite]:
    return [
        FeatureWrite("u", feature, 1.0, 1_000.0 * i, 1_000.0 * i + lag)
        for i, lag in enumerate(lags.tolist())
    ]


def _alarms(detector: WriteLag, events: list[FeatureWrite]) -> list[int]:
    found = []
    for i, event in enumerate(events):
        detector.update(event)
        if detector.drift_detected:
            found.append(i)
    return found


def test_quantiles_match_numpy_to_the_relative_accuracy() -> None:
    lags = np.random.default_rng(0).lognormal(8.0, 1.5, 20_000)
    detector = WriteLag(relative_accuracy=0.01)
    for event in _writes(lags):
        detector.update(event)
    summary = detector.write_lag["balance"]
    assert summary.writes == 20_000
    for estimate, q in ((summary.p50, 0.5), (summary.p99, 0.99)):
        assert estimate == pytest.approx(np.quantile(lags, q, method="lower"), rel=0.02)


def test_detects_a_lag_increase_in_the_first_window_after_it() -> None:
    rng = np.random.default_rng(1)
    lags = np.concatenate([rng.lognormal(8.0, 1.0, 5_000), rng.lognormal(8.7, 1.0, 2_000)])
    detector = WriteLag(window=500)
    alarms = _alarms(detector, _writes(lags))
    assert alarms[0] == 5_499
    assert detector.drifting_features == ("balance",)


@pytest.mark.parametrize("seed", range(3))
def test_silent_on_stationary_lags(seed: int) -> None:
    lags = np.random.default_rng(seed).lognormal(8.0, 1.0, 100_000)
    detector = WriteLag(window=500, sla=60_000.0)
    assert _alarms(detector, _writes(lags)) == []
    assert not detector.sla_broken
    assert detector.write_lag["balance"].drift_p_value < 1.0


def test_a_lag_decrease_is_not_drift() -> None:
    rng = np.random.default_rng(2)
    lags = np.concatenate([rng.lognormal(8.0, 1.0, 1_000), rng.lognormal(6.0, 1.0, 2_000)])
    assert _alarms(WriteLag(window=500), _writes(lags)) == []


def test_sla_broken_when_clearly_more_than_one_percent_exceed_it() -> None:
    rng = np.random.default_rng(3)
    # 0.5% of writes over 30 s, then 5%.
    within = np.where(rng.random(1_000) < 0.005, 40_000.0, 1_000.0)
    beyond = np.where(rng.random(1_000) < 0.05, 40_000.0, 1_000.0)
    detector = WriteLag(sla=30_000.0, window=500)
    verdicts = []
    for i, event in enumerate(_writes(np.concatenate([within, beyond]))):
        detector.update(event)
        if i % 500 == 499:
            verdicts.append(detector.sla_broken)
    assert verdicts == [False, False, True, True]
    assert detector.sla_breaches == ("balance",)


def test_features_are_followed_separately() -> None:
    rng = np.random.default_rng(4)
    events = _writes(rng.lognormal(8.0, 1.0, 1_000), "fast") + _writes(
        rng.lognormal(12.0, 1.0, 1_000), "slow"
    )
    detector = WriteLag(window=100)
    for event in events:
        detector.update(event)
    summaries = detector.write_lag
    assert summaries["fast"].p50 < summaries["slow"].p50 / 10


def test_features_hold_no_object_each_that_the_garbage_collector_walks() -> None:
    rng = np.random.default_rng(6)
    detector = WriteLag(window=100)
    for n in range(20):
        detector.update_many(_writes(rng.lognormal(8.0, 1.0, 150), f"f{n}"))
    restored = pickle.loads(pickle.dumps(detector))
    tracked = [type(item).__name__ for item in vars(restored).values() if gc.is_tracked(item)]
    # The sketches' list (dicts of ints, untracked), the counts and p-values as arrays of
    # machine numbers (whose collection visits only their type) and the last batch's events,
    # a tuple (of summaries here; empty, untracked).
    assert tracked == ["list", "array", "array", "tuple"]
    assert sum(gc.is_tracked(sketch) for sketch in restored._buckets) == 0
    assert restored.write_lag == detector.write_lag


@pytest.mark.filterwarnings("ignore:overflow encountered in subtract:RuntimeWarning")
@pytest.mark.parametrize("size", [1, 40])
def test_a_lag_beyond_the_floats_raises_one_by_one_and_batched(size: int) -> None:
    # Finite times, their difference infinite: no bucket has it, in ``update`` (math.ceil)
    # as in the compiled loop of a batch.
    writes = _writes(np.full(size, 5.0))
    writes[-1] = FeatureWrite("u", "balance", 1.0, -1e308, 1e308)
    with pytest.raises(OverflowError):
        WriteLag().update_many(writes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sla": 0.0}, "sla"),
        ({"sla_quantile": 1.0}, "sla_quantile"),
        ({"window": 5}, "window"),
        ({"drift_quantile": 0.0}, "drift_quantile"),
        ({"relative_accuracy": 0.6}, "relative_accuracy"),
        ({"relative_accuracy": "0.01"}, "relative_accuracy"),
    ],
)
def test_constructor_names_the_bad_argument(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        WriteLag(**kwargs)
