"""CPU cost per value of the hot-path detectors: ``update`` one by one against ``update_many``.

Each detector gets the same stream three ways, side by side in one run:

- ``update``: one value at a time, the stream as Python objects (what the worker has after
  decoding a record);
- ``update_many`` in batches of 500, the stream as numpy arrays (what a columnar batch of
  one model's records gives);
- ``update_many`` in batches of 1 (slices of those arrays): the cost of the batch path
  when a batch holds a single record.

Streams have the shapes of real traffic: log-normal scores whose level moves half-way,
about 1% missing values, skewed categories with a new one appearing, error flags whose rate
doubles, served feature values with a few written after the prediction, live and shadow
scores of the same requests, labelled losses where the shadow is a little better, and
feature writes whose lag grows half-way. Each figure is the
median over ``--rounds`` rounds of CPU time (``time.process_time``) per value, in µs.
After each round the three detectors must hold the same state (``same_state``), so a
figure never comes from a batch path that computed something else. Run::

    .venv/bin/python -m tests.benchmarks.bench_detector_batches --values 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import (
    BernoulliCUSUM,
    CategoricalPSIDrift,
    ChiSquareDrift,
    FutureValues,
    JensenShannonDrift,
    KSDrift,
    NullRateDrift,
    PSIDrift,
    ResidualCUSUM,
    RobustCUSUM,
    ShadowAgreement,
    ShadowPromotion,
    WassersteinDrift,
    WriteLag,
)
from detectors.leaks import FeatureWrite, ServedFeature
from tests.detectors.batching import same_state, state_difference

BATCH = 500


@dataclass(frozen=True)
class Case:
    """A detector, its stream one value at a time, and the stream as batch columns."""

    name: str
    make: Callable[[], Any]
    one_by_one: Sequence[Any]
    # The batch columns; update_many(*[column[i:j] for column in columns]).
    columns: Sequence[Any]


def _scores(rng: np.random.Generator, n: int) -> Any:
    scores = rng.lognormal(0.0, 0.6, n)
    scores[n // 2 :] *= 1.3
    scores[rng.random(n) < 0.01] = np.nan
    return scores


def cases(n: int, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    scores = _scores(rng, n)
    reference = rng.lognormal(0.0, 0.6, 2_000)
    categories = np.array([f"c{i}" for i in range(20)] + ["new"], dtype=object)
    shares = 0.8 ** np.arange(21)
    shares[-1] = 0.0
    before = rng.choice(categories, n // 2, p=shares / shares.sum())
    shares[-1] = shares[:-1].sum() * 0.05
    after = rng.choice(categories, n - n // 2, p=shares / shares.sum())
    labels = np.concatenate([before, after])
    labels[rng.random(n) < 0.01] = None
    category_reference = dict(zip(*np.unique(before[:5_000], return_counts=True), strict=True))
    errors = np.concatenate([rng.random(n // 2) < 0.05, rng.random(n - n // 2) < 0.1])
    entity_ids = np.array([f"u{i}" for i in rng.integers(0, 10_000, n)])
    features = np.array([f"f{i}" for i in rng.integers(0, 20, n)])
    predicted_at = 1.7e12 + np.sort(rng.uniform(0.0, 8.64e7, n))
    written_at = predicted_at - rng.exponential(6e5, n)
    written_at[rng.random(n) < 1e-4] += 1.2e6
    served = [
        ServedFeature(*row)
        for row in zip(
            entity_ids.tolist(),
            features.tolist(),
            scores.tolist(),
            written_at.tolist(),
            predicted_at.tolist(),
            strict=True,
        )
    ]
    served_columns = [entity_ids, features, scores, written_at, predicted_at]
    live = rng.random(n)
    shadow = np.clip(live + rng.normal(0.02, 0.1, n), 0.0, 1.0)
    pairs = list(zip(live.tolist(), shadow.tolist(), strict=True))
    losses = list(
        zip(
            (60.0 * np.arange(n)).tolist(),
            (rng.random(n) < 0.2).astype(float).tolist(),
            (rng.random(n) < 0.18).astype(float).tolist(),
            strict=True,
        )
    )
    lags = rng.lognormal(8.0, 1.0, n)
    lags[n // 2 :] *= 2.0
    writes = [
        FeatureWrite(entity, feature, 1.0, at - lag, at)
        for entity, feature, at, lag in zip(
            entity_ids.tolist(),
            features.tolist(),
            predicted_at.tolist(),
            lags.tolist(),
            strict=True,
        )
    ]
    numeric: list[tuple[str, Callable[[], Any]]] = [
        ("KSDrift", lambda: KSDrift(reference)),
        ("KSDrift rolling", lambda: KSDrift(None)),
        ("PSIDrift", lambda: PSIDrift(reference)),
        ("PSIDrift rolling", lambda: PSIDrift(None)),
        ("WassersteinDrift", lambda: WassersteinDrift(reference)),
        ("JensenShannonDrift", lambda: JensenShannonDrift(reference)),
        ("RobustCUSUM", RobustCUSUM),
        ("ResidualCUSUM", ResidualCUSUM),
        ("NullRateDrift", lambda: NullRateDrift((10, 1_000))),
    ]
    return [
        *(Case(name, make, scores.tolist(), [scores]) for name, make in numeric),
        Case(
            "CategoricalPSIDrift",
            lambda: CategoricalPSIDrift(category_reference),
            labels.tolist(),
            [labels],
        ),
        Case(
            "ChiSquareDrift", lambda: ChiSquareDrift(category_reference), labels.tolist(), [labels]
        ),
        Case("BernoulliCUSUM", BernoulliCUSUM, errors.tolist(), [errors]),
        Case("FutureValues", FutureValues, served, served_columns),
        Case("ShadowAgreement", ShadowAgreement, pairs, [pairs]),
        Case("ShadowPromotion", ShadowPromotion, losses, [losses]),
        Case("WriteLag", lambda: WriteLag(sla=30_000.0), writes, [writes]),
    ]


def _cpu_per_value(feed: Callable[[], None], n: int) -> float:
    start = time.process_time()
    feed()
    return (time.process_time() - start) / n * 1e6


def measure(case: Case, rounds: int) -> dict[str, Any]:
    n = len(case.one_by_one)
    # Untimed: numpy imports some modules on first use (np.median imports numpy.ma).
    warm = case.make()
    for x in case.one_by_one[:5_000]:
        warm.update(x)
    timings: dict[str, list[float]] = {"update": [], "batch_500": [], "batch_1": []}
    for _ in range(rounds):
        single, batched, singles = case.make(), case.make(), case.make()

        def one_by_one(detector: Any = single) -> None:
            update = detector.update
            for x in case.one_by_one:
                update(x)

        def in_batches(detector: Any, size: int) -> None:
            update_many = detector.update_many
            for start in range(0, n, size):
                update_many(*[column[start : start + size] for column in case.columns])

        timings["update"].append(_cpu_per_value(one_by_one, n))
        timings["batch_500"].append(_cpu_per_value(lambda: in_batches(batched, BATCH), n))  # noqa: B023
        timings["batch_1"].append(_cpu_per_value(lambda: in_batches(singles, 1), n))  # noqa: B023
        for other in (batched, singles):
            assert same_state(other, single), f"{case.name}: {state_difference(other, single)}"
    medians = {mode: statistics.median(values) for mode, values in timings.items()}
    return {"detector": case.name, **medians, "speed_up": medians["update"] / medians["batch_500"]}


def run(n: int, rounds: int) -> list[dict[str, Any]]:
    return [measure(case, rounds) for case in cases(n)]


def report(rows: list[dict[str, Any]], n: int, rounds: int) -> str:
    lines = [
        f"CPU µs per value, median of {rounds} rounds of {n:,} values",
        f"{'detector':20} {'update':>8} {'batch 500':>10} {'batch 1':>8} {'update/500':>11}",
    ]
    for row in rows:
        lines.append(
            f"{row['detector']:20} {row['update']:8.3f} {row['batch_500']:10.3f} "
            f"{row['batch_1']:8.2f} {row['speed_up']:11.1f}"
        )
    return "\n".join(lines)


def test_bench_detector_batches() -> None:
    rows = run(n=20_000, rounds=3)
    print("\n" + report(rows, 20_000, 3))
    assert all(row["batch_500"] > 0.0 for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: the table reports medians")
    print(report(run(args.values, args.rounds), args.values, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
