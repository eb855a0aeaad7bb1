"""Performance-drop alarms: delay, misses, false alarms and cost, and the estimate's head start.

Part 1, error-rate streams (seeded, 10,000 labelled predictions, change at 5,000):
``rise_10_15`` (error rate 0.10 then 0.15), ``rise_10_20`` (0.10 then 0.20),
``brier_rise`` (a continuous loss in [0, 1], Beta(1, 9) then Beta(1.5, 8.5): mean 0.10
then 0.15), and ``stationary`` (0.10 throughout). Detectors: ``PerformanceDrop`` at alpha
1e-4 (tolerance 0.02, the default, and 0.01; baseline learnt from 1,000 losses); the
drift group's ``BernoulliCUSUM`` at the same nominal level (threshold ln 1e4, rate learnt
from 1,000); river's ADWIN and PageHinkley at their defaults. Per detector and stream: the
mean delay of the first alarm after the change, misses, false alarms per 10,000 events
(before the change, and on the stationary stream), and microseconds per update (median
over runs).

Part 2, the estimate's head start: a calibrated model grows unsure at prediction 5,000
(its probabilities move toward 0.5, so its accuracy falls, as they say), and every label
arrives ``--label-delay`` predictions after its prediction (default 2,000). Both fed to
``EstimatedAccuracy`` (alpha 1e-4) in arrival order: the delay of its first estimated
alarm and of its first measured alarm, in predictions after the change.

Part 3, cost: microseconds per ``update`` of every performance and shadow detector on
its shared-check stream (20,000 inputs, median of 5 repeats, Python loop included), and
of a read of its main result after every update where that read computes over a window.

Part 4 (``--long-null``), the portfolio's horizon: 100 models x 60,000 labels (30 days at
2,000 labels a day) at a stationary error rate of 0.10, each with its own learnt baseline;
false alarms of ``PerformanceDrop`` at alpha 1e-4 for a few tolerances and reference
sizes, in all and per model-day.

``--batch N`` feeds each detector that has ``update_many`` in consecutive batches of N (the
last one shorter), its alarms read from the batch (``_alarm_quality``); part 2's estimate
takes its predictions and labels so, in arrival order, each alarm and its source read from
``alarms``. The delays, misses and false alarms of parts 1, 2 and 4 must be those of the
default, one by one. Part 3's plain column then times ``update_many`` per value; its read
column stays one by one, as it reads after every update. river's ADWIN and PageHinkley
have no ``update_many`` and go one by one.

Run::

    .venv/bin/python -m tests.benchmarks.bench_performance            # 30 runs per stream
    .venv/bin/python -m tests.benchmarks.bench_performance --runs 5
    .venv/bin/python -m tests.benchmarks.bench_performance --batch 500

or through pytest: ``.venv/bin/python -m pytest tests/benchmarks/bench_performance.py``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from river import drift

from detectors import (
    BernoulliCUSUM,
    ClassificationPerformance,
    EstimatedAccuracy,
    LabelDelay,
    PerformanceDrop,
    PrecisionAtK,
    RegressionPerformance,
    ShadowAgreement,
    ShadowPromotion,
)
from tests.benchmarks._alarm_quality import Outcome, add_batch_option, batches, table, verdicts
from tests.detectors import cases_performance, cases_shadow

LENGTH = 10_000
CHANGE = 5_000
ALPHA = 1e-4


def _errors(rate_before: float, rate_after: float) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        rates = np.where(np.arange(LENGTH) < CHANGE, rate_before, rate_after)
        return (rng.random(LENGTH) < rates).astype(float)

    return make


def _brier(rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.beta(1, 9, CHANGE), rng.beta(1.5, 8.5, LENGTH - CHANGE)])


STREAMS: dict[str, tuple[Callable[[np.random.Generator], np.ndarray], bool]] = {
    "rise_10_15": (_errors(0.10, 0.15), True),
    "rise_10_20": (_errors(0.10, 0.20), True),
    "brier_rise": (_brier, True),
    "stationary": (_errors(0.10, 0.10), False),
}
CHANGED = {name for name, (_, changes) in STREAMS.items() if changes}

DETECTORS: dict[str, Callable[[], Any]] = {
    "PerformanceDrop (alpha 1e-4)": lambda: PerformanceDrop(alpha=ALPHA, reference_size=1000),
    "PerformanceDrop (alpha 1e-4, tolerance 0.01)": lambda: PerformanceDrop(
        alpha=ALPHA, tolerance=0.01, reference_size=1000
    ),
    "BernoulliCUSUM (threshold ln 1e4)": lambda: BernoulliCUSUM(
        warm_up=1000, threshold=math.log(1 / ALPHA)
    ),
    "river ADWIN (defaults)": drift.ADWIN,
    "river PageHinkley (defaults)": drift.PageHinkley,
}


def evaluate(runs: int, batch: int = 1) -> dict[tuple[str, str], Outcome]:
    results: dict[tuple[str, str], Outcome] = {}
    for s, (stream_name, (make_stream, changes)) in enumerate(STREAMS.items()):
        for run in range(runs):
            losses = make_stream(np.random.default_rng([s, run])).tolist()
            for detector_name, make in DETECTORS.items():
                if stream_name == "brier_rise" and detector_name.startswith("Bernoulli"):
                    continue  # its input is an event indicator, not a loss
                outcome = results.setdefault((stream_name, detector_name), Outcome())
                outcome.run(make(), losses, CHANGE if changes else None, batch)
    return results


def head_start(runs: int, label_delay: int, batch: int = 1) -> tuple[list[int], list[int]]:
    """Delays (in predictions after the change) of the estimated and the measured alarms."""
    estimated: list[int] = []
    measured: list[int] = []
    for run in range(runs):
        rng = np.random.default_rng([99, run])
        truth = rng.beta(0.6, 0.6, LENGTH)
        truth[CHANGE:] = 0.5 + (truth[CHANGE:] - 0.5) * 0.5  # unsure, and rightly so
        y = (rng.random(LENGTH) < truth).astype(int)
        arrivals, clock = _arrivals(truth, y, label_delay)
        detector = EstimatedAccuracy(alpha=ALPHA)
        found: list[tuple[int, str]] = []  # each alarm's clock and source
        if batch > 1:
            for offset in range(0, len(arrivals), batch):
                detector.update_many(arrivals[offset : offset + batch])
                found.extend((clock[offset + k], source) for k, source, _ in detector.alarms)
        else:
            for x, i in zip(arrivals, clock, strict=True):
                detector.update(x)
                if detector.alarm_source:
                    found.append((i, detector.alarm_source))
        first: dict[str, int] = {}
        for i, source in found:
            if i >= CHANGE:
                first.setdefault(source, i - CHANGE)
        estimated.append(first.get("estimated", -1))
        measured.append(first.get("measured", -1))
    return estimated, measured


def _arrivals(
    truth: np.ndarray, y: np.ndarray, label_delay: int
) -> tuple[list[tuple[int | None, float]], list[int]]:
    """The estimate's inputs in arrival order, each prediction then the label arriving
    with it, ``label_delay`` predictions late; and each input's clock: the index of the
    prediction made last when it arrives."""
    arrivals: list[tuple[int | None, float]] = []
    clock: list[int] = []
    for i in range(LENGTH + label_delay):
        if i < LENGTH:
            arrivals.append((None, float(truth[i])))
            clock.append(i)
        j = i - label_delay  # the prediction whose label arrives now
        if j >= 0:
            arrivals.append((int(y[j]), float(truth[j])))
            clock.append(i)
    return arrivals, clock


def head_start_table(estimated: list[int], measured: list[int], label_delay: int) -> str:
    def summary(delays: list[int]) -> str:
        found = [d for d in delays if d >= 0]
        median = f"{statistics.median(found):.0f}" if found else "-"
        return f"{median} | {len(delays) - len(found)}/{len(delays)}"

    return "\n".join(
        [
            f"| alarm (labels {label_delay} predictions late) | median delay (predictions) | "
            "misses |",
            "|---|---:|---:|",
            f"| estimated (no label needed) | {summary(estimated)} |",
            f"| measured (on labels) | {summary(measured)} |",
        ]
    )


COSTED: dict[str, tuple[Callable[[], Any], Callable[[np.random.Generator, int], Any], str]] = {
    "PerformanceDrop": (PerformanceDrop, lambda r, n: cases_performance.losses(r, n, 0.1), ""),
    "ClassificationPerformance": (
        ClassificationPerformance,
        cases_performance.labelled,
        "auc",
    ),
    "PrecisionAtK": (PrecisionAtK, lambda r, n: cases_performance.ranked(r, n, 0.5), ""),
    "RegressionPerformance": (
        RegressionPerformance,
        lambda r, n: cases_performance.regression(r, n, 1.0),
        "mae",
    ),
    "LabelDelay": (LabelDelay, lambda r, n: r.lognormal(8.0, 1.0, n).tolist(), "p99"),
    "EstimatedAccuracy": (
        EstimatedAccuracy,
        cases_performance.predictions_and_labels,
        "accuracy",
    ),
    "ShadowAgreement": (
        ShadowAgreement,
        lambda r, n: cases_shadow.scores(r, n, coupled=True),
        "spearman",
    ),
    "ShadowPromotion": (
        ShadowPromotion,
        lambda r, n: cases_shadow.paired_losses(r, n, 0.2, 0.2),
        "verdict",
    ),
}


def costs(n: int = 20_000, repeats: int = 5, batch: int = 1) -> str:
    lines = [
        "| detector (defaults) | us per update (median) | result read | us per update + read |",
        "|---|---:|---|---:|",
    ]
    for name, (make, stream, result) in COSTED.items():
        inputs = stream(np.random.default_rng(0), n)
        plain: list[float] = []
        with_read: list[float] = []
        for _ in range(repeats):
            detector = make()
            start = time.perf_counter()
            if batches(detector, batch):
                for offset in range(0, n, batch):
                    detector.update_many(inputs[offset : offset + batch])
            else:
                for x in inputs:
                    detector.update(x)
            plain.append((time.perf_counter() - start) / n * 1e6)
            if result:
                detector = make()
                start = time.perf_counter()
                for x in inputs[: n // 10]:
                    detector.update(x)
                    getattr(detector, result)
                with_read.append((time.perf_counter() - start) / (n // 10) * 1e6)
        read = f"{statistics.median(with_read):.1f}" if with_read else "-"
        lines.append(f"| {name} | {statistics.median(plain):.1f} | {result or '-'} | {read} |")
    return "\n".join(lines)


def long_null(models: int = 100, labels: int = 60_000, batch: int = 1) -> str:
    lines = [
        "| PerformanceDrop (alpha 1e-4) | false alarms | models with any | per model-day |",
        "|---|---:|---:|---:|",
    ]
    model_days = models * labels / 2000
    for tolerance, reference_size in ((0.02, 1000), (0.01, 1000), (0.01, 3000)):
        total = 0
        alarming = 0
        for model in range(models):
            rng = np.random.default_rng([7, model])
            detector = PerformanceDrop(
                alpha=ALPHA, tolerance=tolerance, reference_size=reference_size
            )
            losses = (rng.random(labels) < 0.10).astype(float).tolist()
            outcome = Outcome()
            outcome.run(detector, losses, None, batch)  # no change: every alarm is false
            count = outcome.false_alarms
            total += count
            alarming += count > 0
        lines.append(
            f"| tolerance {tolerance}, reference {reference_size} | {total} | "
            f"{alarming}/{models} | {total / model_days:.4f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="seeded runs per stream")
    parser.add_argument("--label-delay", type=int, default=2000, help="in predictions")
    parser.add_argument("--long-null", action="store_true", help="also run part 4 (minutes)")
    add_batch_option(parser)
    args = parser.parse_args(argv)
    batch = args.batch
    print(table(evaluate(args.runs, batch), args.runs, CHANGED, batch))
    print()
    print(head_start_table(*head_start(args.runs, args.label_delay, batch), args.label_delay))
    print()
    print(costs(batch=batch))
    if args.long_null:
        print()
        print(long_null(batch=batch))
    return 0


def test_performance_benchmark_runs_and_catches_each_rise() -> None:
    runs = 2
    results = evaluate(runs)
    print(table(results, runs, CHANGED))
    for stream in ("rise_10_20", "brier_rise"):
        assert results[(stream, "PerformanceDrop (alpha 1e-4)")].misses == 0, stream
    assert results[("stationary", "PerformanceDrop (alpha 1e-4)")].false_alarms == 0
    estimated, measured = head_start(runs, 2000)
    print(head_start_table(estimated, measured, 2000))
    assert all(0 <= e < m for e, m in zip(estimated, measured, strict=True))
    print(costs(n=500, repeats=1))
    print(long_null(models=2, labels=2000))


def test_batches_change_no_verdict() -> None:
    # 37: the 1,000 losses each baseline learns from end inside a batch, whose rest it judges.
    batched = evaluate(1, batch=37)
    alone = {name for (_, name), outcome in batched.items() if not outcome.batched}
    assert alone == {"river ADWIN (defaults)", "river PageHinkley (defaults)"}
    assert verdicts(batched) == verdicts(evaluate(1))
    assert head_start(1, 2000, batch=37) == head_start(1, 2000)


if __name__ == "__main__":
    sys.exit(main())
