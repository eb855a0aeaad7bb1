"""Performance before labels: the calibrated estimate against today's and against no estimate.

Seeded binary classifiers. Each has a true P(y = 1 | x) = sigmoid(z), with the logit ``z``
drawn per prediction, and reports the score sigmoid(k z + c): ``k < 1`` under-confident,
``k > 1`` over-confident. Scenarios:

- ``under_confident``: k 0.5, z ~ N(-1, 2), threshold 0.5, stationary;
- ``over_confident``: k 2, c 0.3, z ~ N(-2, 1.5) (a rarer class 1), threshold 0.5,
  stationary;
- ``covariate_shift``: k 0.6, threshold 0.35, the mean of z moves from -1.5 to +1.5 over
  the chunks (the scores move, P(y | score) does not);
- ``concept_change``: as under_confident until half-way, then P(y = 1) = sigmoid(z / 2)
  for the same scores: the labels grow noisier while the scores do not change at all.

Each run: 4 labelled reference chunks, then ``--chunks`` chunks of ``--chunk-size``
predictions. The labels of a chunk arrive after the chunk, so a chunk is estimated from
the labels of the chunks before it. Per chunk, the accuracy (at the model's threshold) and
ROC AUC the labels then measure are compared with:

- ``CalibratedEstimate``: the chunk's ``estimated_accuracy`` and ``estimated_auc``;
- ``EstimatedAccuracy``: today's detector, its ``expected_accuracy`` over the chunk (mean
  ``max(p, 1 - p)``; it has no AUC and predicts class 1 at 0.5 whatever the threshold);
- ``no change``: the value measured on the previous chunk's labels;
- ``oracle``: the expectation under the true P(y = 1): the chunk's own sampling noise;
- ``bound``: not an estimate but the least mean absolute error any estimate without the
  chunk's labels can expect. Given the chunk's scores, its labels are independent draws
  from the true P(y = 1 | score), whatever came before, so the measured value has a known
  law; no number beats that law's median, whose expected absolute error is computed here
  from ``BOUND_DRAWS`` redraws of the chunk's labels.

Reported: mean absolute error per chunk, over chunks and runs, for accuracy and for AUC.

Run::

    .venv/bin/python -m tests.benchmarks.bench_estimate                # 5 runs, 20 chunks
    .venv/bin/python -m tests.benchmarks.bench_estimate --runs 2 --chunks 8

or through pytest: ``.venv/bin/python -m pytest tests/benchmarks/bench_estimate.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable

import numpy as np

from detectors import CalibratedEstimate, EstimatedAccuracy
from detectors.performance.calibrated import expected_metrics, measured_metrics

REFERENCE_CHUNKS = 4
ESTIMATORS = ("CalibratedEstimate", "EstimatedAccuracy", "no change", "oracle", "bound")
BOUND_DRAWS = 200


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A model: its threshold, and per chunk (``at`` in [0, 1] of the run) its traffic."""

    threshold: float
    # (rng, n, at) -> true P(y = 1), reported score
    traffic: Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray]]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _model(
    k: float, c: float = 0.0, mean: Callable[[float], float] = lambda at: -1.0, spread: float = 2.0
) -> Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray]]:
    def traffic(rng: np.random.Generator, n: int, at: float) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(mean(at), spread, n)
        return _sigmoid(z), _sigmoid(k * z + c)

    return traffic


def _concept_change(rng: np.random.Generator, n: int, at: float) -> tuple[np.ndarray, np.ndarray]:
    truth, scores = _model(0.5)(rng, n, at)
    if at >= 0.5:
        truth = _sigmoid(np.log(truth / (1.0 - truth)) / 2.0)
    return truth, scores


SCENARIOS = {
    "under_confident": Scenario(0.5, _model(0.5)),
    "over_confident": Scenario(0.5, _model(2.0, 0.3, mean=lambda at: -2.0, spread=1.5)),
    "covariate_shift": Scenario(0.35, _model(0.6, mean=lambda at: -1.5 + 3.0 * at)),
    "concept_change": Scenario(0.5, _concept_change),
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    runs: int = 5
    chunks: int = 20
    chunk_size: int = 5000
    calibration_size: int | None = None  # None: CalibratedEstimate's default


@dataclasses.dataclass
class Errors:
    """Absolute errors per chunk of each estimator, accuracy and AUC."""

    accuracy: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {name: [] for name in ESTIMATORS}
    )
    auc: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {name: [] for name in ESTIMATORS}
    )
    cpu_s: float = 0.0


def least_errors(
    rng: np.random.Generator, scores: np.ndarray, truth: np.ndarray, threshold: float
) -> tuple[float, float]:
    """E|M - median(M)| of the accuracy and the ROC AUC M that the chunk's labels, drawn
    from ``truth``, measure: the least expected error of any estimate from its scores."""
    labels = rng.random((BOUND_DRAWS, len(scores))) < truth
    accuracy = np.mean(labels == (scores >= threshold), axis=1)
    # Mann-Whitney: the AUC from the positives' ranks among the scores (ties averaged).
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positives = labels.sum(axis=1)
    negatives = len(scores) - positives
    auc = (labels @ ranks - positives * (positives + 1) / 2.0) / (positives * negatives)
    return _median_error(accuracy), _median_error(auc)


def _median_error(values: np.ndarray) -> float:
    return float(np.mean(np.abs(values - np.median(values))))


def run(scenario: Scenario, seed: int, sizes: Sizes, errors: Errors) -> None:
    """One seeded run of a scenario; appends its per-chunk errors to ``errors``."""
    rng = np.random.default_rng(seed)
    redraws = np.random.default_rng([seed, 1])  # apart, so the runs' draws stay as they were
    chunks, chunk_size = sizes.chunks, sizes.chunk_size
    calibration = (
        {} if sizes.calibration_size is None else {"calibration_size": sizes.calibration_size}
    )
    calibrated = CalibratedEstimate(
        threshold=scenario.threshold, chunk_size=chunk_size, **calibration
    )
    today = EstimatedAccuracy(window=chunk_size, min_labels=chunk_size)
    previous: np.ndarray | None = None
    for index in range(-REFERENCE_CHUNKS, chunks):
        truth, scores = scenario.traffic(rng, chunk_size, max(index, 0) / max(chunks - 1, 1))
        labels = (rng.random(chunk_size) < truth).astype(int)
        measured = measured_metrics(scores, labels, scenario.threshold)
        if index >= 0 and previous is not None:
            started = time.process_time()
            calibrated.update_many(scores)
            errors.cpu_s += time.process_time() - started
            for p in scores.tolist():
                today.update((None, p))
            oracle = expected_metrics(scores, truth, scenario.threshold)
            estimates = {
                "CalibratedEstimate": (calibrated.estimated_accuracy, calibrated.estimated_auc),
                "EstimatedAccuracy": (today.expected_accuracy, np.nan),
                "no change": (previous[0], previous[4]),
                "oracle": (oracle[0], oracle[4]),
            }
            for name, (accuracy, auc) in estimates.items():
                errors.accuracy[name].append(abs(accuracy - measured[0]))
                errors.auc[name].append(abs(auc - measured[4]))
            least = least_errors(redraws, scores, truth, scenario.threshold)
            errors.accuracy["bound"].append(least[0])
            errors.auc["bound"].append(least[1])
        else:
            calibrated.update_many(scores)
        started = time.process_time()
        calibrated.update_many(scores, labels)  # the chunk's labels arrive
        errors.cpu_s += time.process_time() - started
        previous = measured


def evaluate(sizes: Sizes) -> dict[str, Errors]:
    results = {}
    for number, (name, scenario) in enumerate(SCENARIOS.items()):
        errors = Errors()
        for seed in range(sizes.runs):
            run(scenario, 1000 * number + seed, sizes, errors)
        results[name] = errors
    return results


def mae(values: list[float]) -> float:
    return float(np.mean(values)) if not np.all(np.isnan(values)) else float("nan")


def table(results: dict[str, Errors]) -> str:
    lines = [
        "| scenario | metric | " + " | ".join(ESTIMATORS) + " |",
        "|---|---|" + "---:|" * len(ESTIMATORS),
    ]
    for scenario, errors in results.items():
        for metric in ("accuracy", "auc"):
            by_name = getattr(errors, metric)
            cells = [
                "—" if np.isnan(mae(by_name[name])) else f"{mae(by_name[name]):.4f}"
                for name in ESTIMATORS
            ]
            lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Sizes()
    parser.add_argument("--runs", type=int, default=default.runs)
    parser.add_argument("--chunks", type=int, default=default.chunks)
    parser.add_argument("--chunk-size", type=int, default=default.chunk_size)
    parser.add_argument("--calibration-size", type=int, default=default.calibration_size)
    args = parser.parse_args(argv)
    results = evaluate(Sizes(args.runs, args.chunks, args.chunk_size, args.calibration_size))
    print(
        f"Mean absolute error per chunk of {args.chunk_size} ({args.runs} runs x "
        f"{args.chunks} chunks after {REFERENCE_CHUNKS} labelled reference chunks; "
        f"calibration_size {args.calibration_size or CalibratedEstimate().calibration_size}):\n"
    )
    print(table(results))
    n_updates = args.runs * (REFERENCE_CHUNKS + args.chunks) * args.chunk_size * 2
    cpu = sum(errors.cpu_s for errors in results.values())
    print(
        f"\nCalibratedEstimate CPU: {cpu:.2f} s for {len(results) * n_updates} inputs in "
        f"batches of {args.chunk_size} ({1e6 * cpu / (len(results) * n_updates):.2f} µs each)"
    )
    return 0


def test_calibrated_estimate_corrects_miscalibration_and_follows_the_shift() -> None:
    # Two short runs are too few to rank estimates whose errors are all near the chunk's own
    # noise (that takes the full benchmark): this checks the large differences only.
    results = evaluate(Sizes(runs=2, chunks=8))
    print(table(results))
    for name in ("under_confident", "over_confident", "covariate_shift"):
        errors = results[name].accuracy
        assert mae(errors["CalibratedEstimate"]) < mae(errors["EstimatedAccuracy"]) / 4
        assert mae(errors["CalibratedEstimate"]) < 2 * mae(errors["oracle"])
    shift = results["covariate_shift"]
    assert mae(shift.accuracy["CalibratedEstimate"]) < mae(shift.accuracy["no change"])
    assert mae(shift.auc["CalibratedEstimate"]) < mae(shift.auc["no change"])


if __name__ == "__main__":
    sys.exit(main())
