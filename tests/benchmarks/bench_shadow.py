"""Shadow promotion: labels needed to reach a verdict, and wrong verdicts under repeated looks.

Seeded paired streams of 0/1 errors: live errs with probability 0.20 and the shadow with
the scenario's rate. The two share hard requests: with probability ``--correlation``
(default 0.8) the shadow sees the same uniform draw as live, else a fresh one, as two
models scoring one request do. ``ShadowPromotion`` (alpha 0.05, min_improvement 0, no
stable period, so that only the evidence counts) reads every label and its verdict is
looked at after every one; a run stops at its first verdict or at ``--max-labels``.

Per scenario: the share of runs ending in promote, reject or undecided; the median and
90th percentile of the labels needed for a verdict; the wrong-verdict rate (a promotion of
a shadow that is not better, a rejection of one that is not worse); and the cost of one
update plus one verdict read in microseconds (median over runs). Beside it, on the same
streams, a fixed-sample z-test at the same level looked at after every label (from the
10th): the error it makes when used sequentially, which the confidence sequence avoids.

``--batch N`` feeds the labels in consecutive batches of N through ``update_many`` and
finds the first verdict in ``verdict_changes``: the verdicts and the labels to each must
be those of the default, one by one; the cost is then per label fed, the rest of the
batch that reached the verdict included.

Run::

    .venv/bin/python -m tests.benchmarks.bench_shadow               # 40 runs per scenario
    .venv/bin/python -m tests.benchmarks.bench_shadow --runs 5
    .venv/bin/python -m tests.benchmarks.bench_shadow --batch 500

or through pytest: ``.venv/bin/python -m pytest tests/benchmarks/bench_shadow.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np

from detectors import ShadowPromotion
from tests.benchmarks._alarm_quality import add_batch_option

LIVE_ERROR = 0.20
ALPHA = 0.05
SCENARIOS = (0.20, 0.19, 0.18, 0.17, 0.15, 0.22, 0.25)  # the shadow's error rate
Z = 1.959963984540054  # two-sided 95% normal quantile


@dataclasses.dataclass
class Outcome:
    verdicts: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"promote": 0, "reject": 0, "undecided": 0}
    )
    labels: list[int] = dataclasses.field(default_factory=list)
    micros: list[float] = dataclasses.field(default_factory=list)
    naive_wrong: int = 0


def paired_errors(
    rng: np.random.Generator, n: int, shadow_error: float, correlation: float
) -> np.ndarray:
    """(n, 2) array of live and shadow 0/1 errors on the same requests."""
    hardness = rng.random(n)
    shadow_hardness = np.where(rng.random(n) < correlation, hardness, rng.random(n))
    return np.column_stack([hardness < LIVE_ERROR, shadow_hardness < shadow_error]).astype(float)


def run_one(errors: np.ndarray, batch: int = 1) -> tuple[str, int, float]:
    """The first verdict (or undecided), the labels it took, and microseconds per label."""
    if batch > 1:
        return _run_batched(errors, batch)
    trial = ShadowPromotion(alpha=ALPHA, min_stable_period=0.0)
    verdict = "keep_watching"
    start = time.perf_counter()
    i = 0
    for i, (live, shadow) in enumerate(errors.tolist()):
        trial.update((60.0 * i, live, shadow))
        verdict = trial.verdict
        if verdict != "keep_watching":
            break
    micros = (time.perf_counter() - start) / (i + 1) * 1e6
    return ("undecided" if verdict == "keep_watching" else verdict), i + 1, micros


def _run_batched(errors: np.ndarray, batch: int) -> tuple[str, int, float]:
    """``run_one`` in batches: the verdict starts at keep_watching, so its first change
    is the first verdict."""
    trial = ShadowPromotion(alpha=ALPHA, min_stable_period=0.0)
    start = time.perf_counter()
    for offset in range(0, len(errors), batch):
        rows = errors[offset : offset + batch].tolist()
        trial.update_many(
            [(60.0 * (offset + k), live, shadow) for k, (live, shadow) in enumerate(rows)]
        )
        if trial.verdict_changes:
            position, verdict = trial.verdict_changes[0]
            micros = (time.perf_counter() - start) / (offset + len(rows)) * 1e6
            return verdict, offset + position + 1, micros
    micros = (time.perf_counter() - start) / len(errors) * 1e6
    return "undecided", len(errors), micros


def naive_wrong(errors: np.ndarray, shadow_error: float) -> bool:
    """Whether a fixed-sample z-test looked at after every label ever decides wrongly."""
    improvement = errors[:, 0] - errors[:, 1]
    t = np.arange(1, len(improvement) + 1)
    mean = np.cumsum(improvement) / t
    sd = np.sqrt(np.maximum(np.cumsum(improvement**2) / t - mean**2, 1e-12))
    half_width = Z * sd / np.sqrt(t)
    promote = (mean - half_width > 0)[10:]
    reject = (mean + half_width < 0)[10:]
    return bool(
        (shadow_error >= LIVE_ERROR and promote.any())
        or (shadow_error <= LIVE_ERROR and reject.any())
    )


def evaluate(
    runs: int, max_labels: int, correlation: float, batch: int = 1
) -> dict[float, Outcome]:
    results: dict[float, Outcome] = {}
    for k, shadow_error in enumerate(SCENARIOS):
        outcome = results.setdefault(shadow_error, Outcome())
        for run in range(runs):
            rng = np.random.default_rng([k, run])
            errors = paired_errors(rng, max_labels, shadow_error, correlation)
            verdict, labels, micros = run_one(errors, batch)
            outcome.verdicts[verdict] += 1
            outcome.micros.append(micros)
            if verdict != "undecided":
                outcome.labels.append(labels)
            outcome.naive_wrong += naive_wrong(errors, shadow_error)
    return results


def wrong(shadow_error: float, outcome: Outcome) -> int:
    promote_wrong = outcome.verdicts["promote"] if shadow_error >= LIVE_ERROR else 0
    reject_wrong = outcome.verdicts["reject"] if shadow_error <= LIVE_ERROR else 0
    return promote_wrong + reject_wrong


def table(results: dict[float, Outcome], runs: int) -> str:
    lines = [
        "| shadow error (live 0.20) | promote | reject | undecided | labels to verdict p50 | "
        "p90 | wrong verdicts (CS) | wrong verdicts (z-test, every look) | us per label |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shadow_error, outcome in results.items():
        labels = sorted(outcome.labels)
        p50 = f"{statistics.median(labels):.0f}" if labels else "-"
        p90 = f"{labels[int(0.9 * (len(labels) - 1))]}" if labels else "-"
        v = outcome.verdicts
        lines.append(
            f"| {shadow_error:.2f} | {v['promote']}/{runs} | {v['reject']}/{runs} | "
            f"{v['undecided']}/{runs} | {p50} | {p90} | {wrong(shadow_error, outcome)}/{runs} | "
            f"{outcome.naive_wrong}/{runs} | {statistics.median(outcome.micros):.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="seeded runs per scenario")
    parser.add_argument("--max-labels", type=int, default=20_000, help="labels per run at most")
    parser.add_argument("--correlation", type=float, default=0.8, help="shared hard requests")
    add_batch_option(parser)
    args = parser.parse_args(argv)
    results = evaluate(args.runs, args.max_labels, args.correlation, args.batch)
    print(table(results, args.runs))
    return 0


def test_shadow_benchmark_runs_and_decides_clear_cases_rightly() -> None:
    runs = 3
    results = evaluate(runs, 5_000, 0.8)
    print(table(results, runs))
    assert results[0.15].verdicts["promote"] == runs
    assert results[0.25].verdicts["reject"] == runs
    assert wrong(0.20, results[0.20]) == 0


def test_batches_change_no_verdict() -> None:
    def verdicts(results: dict[float, Outcome]) -> list[tuple[dict[str, int], list[int]]]:
        return [(outcome.verdicts, outcome.labels) for outcome in results.values()]

    # 37: most verdicts fall inside a batch, whose rest is fed but not counted.
    batched = evaluate(1, 5_000, 0.8, batch=37)
    assert verdicts(batched) == verdicts(evaluate(1, 5_000, 0.8))


if __name__ == "__main__":
    sys.exit(main())
