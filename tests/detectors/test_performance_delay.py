"""The label delay sketch: quantiles within its relative accuracy, recency, SLA breach."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from detectors._sketch import bucket_value, quantile_key
from detectors.performance.delay import LabelDelay


@pytest.mark.parametrize("relative_accuracy", [0.01, 0.05])
def test_quantiles_are_within_the_relative_accuracy_of_an_observed_delay(
    relative_accuracy: float,
) -> None:
    rng = np.random.default_rng(40)
    delays = np.concatenate([rng.lognormal(np.log(600.0), 2.0, 5000), rng.exponential(5.0, 500)])
    sketch = LabelDelay(relative_accuracy=relative_accuracy, window=10_000)
    for delay in delays:
        sketch.update(float(delay))
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        exact = float(np.quantile(delays, q, method="lower"))
        assert abs(sketch.quantile(q) - exact) <= relative_accuracy * exact + 1e-12


def test_only_recent_delays_count() -> None:
    sketch = LabelDelay(window=1000)
    for _ in range(5000):
        sketch.update(60.0)
    for _ in range(2500):
        sketch.update(86_400.0)  # the label pipeline slowed down
    assert sketch.p50 == pytest.approx(86_400.0, rel=0.01)
    assert sketch.quantile(0.0) == pytest.approx(86_400.0, rel=0.01)
    # One full generation of 1000 and the current one of 500.
    assert (sketch.n, sketch.n_recent) == (7500, 1500)


def test_zero_negative_and_invalid_delays() -> None:
    sketch = LabelDelay()
    assert math.isnan(sketch.p50)
    for value in (0.0, 0.0, 1e-4, -3.0, "10", None, float("inf")):
        sketch.update(value)
    assert sketch.p50 == 0.0
    assert (sketch.n, sketch.n_negative, sketch.n_ignored) == (3, 1, 3)
    assert math.isnan(sketch.quantile(1.5))


def test_sla_breach_pinned_when_labels_slow_down() -> None:
    rng = np.random.default_rng(41)
    sketch = LabelDelay(window=1000, max_delay=6 * 3600.0, sla_quantile=0.9, min_count=200)
    breached = []
    for i in range(4000):
        scale = 3600.0 if i < 2000 else 5 * 3600.0
        sketch.update(float(rng.exponential(scale)))
        if sketch.sla_breached:
            breached.append(i)
    assert breached[0] == 2418
    assert all(i >= 2000 for i in breached)


def test_memory_stays_small_for_any_delays() -> None:
    rng = np.random.default_rng(42)
    sketch = LabelDelay(window=100_000)
    for delay in rng.lognormal(0.0, 12.0, 50_000):  # from microseconds to ages
        sketch.update(float(delay))
    assert len(sketch._current) + len(sketch._previous) <= 2 * 1400


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"relative_accuracy": 0.0}, "relative_accuracy"),
        ({"window": 0}, "window"),
        ({"max_delay": 0.0}, "max_delay"),
        ({"sla_quantile": 1.0}, "sla_quantile"),
        ({"min_count": 0}, "min_count"),
        ({"relative_accuracy": "0.01"}, "relative_accuracy"),
        ({"max_delay": "3600"}, "max_delay"),
    ],
)
def test_constructor_names_the_invalid_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LabelDelay(**kwargs)


def test_a_batch_keys_delays_on_the_buckets_edges_as_one_by_one() -> None:
    """The compiled keys of a batch are ``update``'s: delays at each bucket's edge, a
    float either side of it, and at the bounds of the lowest and highest buckets."""
    one, batched = LabelDelay(relative_accuracy=0.02), LabelDelay(relative_accuracy=0.02)
    gamma = math.exp(one._log_gamma)
    edges = [gamma**k for k in range(-400, 1100, 7)] + [1e-3, 1e9, 0.0, -0.0, -1e-9]
    delays = [
        float(x)
        for edge in edges
        for x in (np.nextafter(edge, -1.0), edge, np.nextafter(edge, 2e9))
    ]
    for x in delays:
        one.update(x)
    batched.update_many(delays)
    assert vars(batched) == vars(one)
    assert (batched._current, batched._previous) == (one._current, one._previous)


def test_quantiles_read_the_merged_generations_once_for_all() -> None:
    sketch = LabelDelay(window=50)
    assert all(map(math.isnan, sketch.quantiles((0.5, 0.9))))
    sketch.update_many([float(n) for n in range(120)])
    merged = dict(sketch._previous)
    for key, count in sketch._current.items():
        merged[key] = merged.get(key, 0) + count
    qs = (0.0, 0.5, 0.9, 0.99, 1.0, 1.5, -0.1)
    expected = [
        bucket_value(quantile_key(merged, q), sketch._log_gamma) if 0.0 <= q <= 1.0 else math.nan
        for q in qs
    ]
    assert np.array_equal(sketch.quantiles(qs), expected, equal_nan=True)
