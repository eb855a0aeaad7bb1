"""Null portfolio: how many false fallbacks the worker's own per-model code makes when
nothing breaks, on traffic shaped like real models'.

Every model runs a ``streams.monitor.Monitor`` built from a portfolio that declares only
what a team would (owner, features, label delay): every detector the worker runs, at the
product's defaults, the output detectors on the score included. The traffic
(``tests/benchmarks/_null_traffic.py``) has the score shapes of real portfolios (skewed
click-through rates, bimodal fraud scores, zero-inflated scores, heavy-tailed regression
outputs, discrete scores) and the harmless movement real traffic always has (a daily
cycle of the user mix; a batch job rewriting an entity aggregate, which moves the score
mix a little all the time). Labels follow the scores (a calibrated model) after a
log-normal delay. Nothing about any model's quality changes, so every fallback is false.

Records are fed as the worker feeds them: each model's records in event-time order, in
batches of ``--batch`` records of that model. A false fallback is a ``fallback`` command
among a batch's effects. Goal (issue #13): at most 0.01 false fallbacks per model-day
across every shape.

Per shape the table also gives each detector's alarms a day, how many of them were
material (at or above the detector's effect-size floor, so that the health policy acts on
them) and the largest effect an alarm had: alarms below the floor are real movements of
the traffic, recorded and alerted on as informational, never a fallback.

A policy that never acts would pass, so ``--broken`` models of each shape break half-way
(the score stuck at the 99th percentile of its healthy values): the report gives how long
each took to fall back, which detector made it, and how often it was restored while
still broken (the traffic does not obey commands, so its scores keep coming: none of
them should look healthy to the policy).

Run (about 10 minutes on one core at the defaults)::

    .venv/bin/python -m tests.benchmarks.bench_null_portfolio --models-per-shape 10 --days 10
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import time

import msgspec

from schemas.contracts import GroundTruth, Prediction, Score
from streams.monitor import Batch, Monitor
from streams.portfolio import parse_portfolio
from tests.benchmarks._null_traffic import (
    DAY_MS,
    SHAPES,
    NullModel,
    model_days,
    null_portfolio_toml,
)

GOAL_PER_MODEL_DAY = 0.01


@dataclasses.dataclass
class Tally:
    """One shape's results."""

    model_days: float = 0.0
    false_fallbacks: int = 0
    by_detector: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    alarms: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    material: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # The largest effect of an alarm per detector, to show its margin below the floor.
    effects: dict[str, float] = dataclasses.field(default_factory=dict)
    # Per broken model: hours from the break to its first fallback, and the detector.
    detections: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict)
    # Per broken model: restores after the break, while it still was.
    restored_broken: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )


def broken(record: Prediction | GroundTruth, stuck_at: float) -> Prediction | GroundTruth:
    """The record as a broken model would have served it: its score stuck at one value."""
    if isinstance(record, Prediction) and isinstance(record.output, Score):
        return msgspec.structs.replace(record, output=Score(score=stuck_at))
    return record


def run(args: argparse.Namespace) -> dict[str, Tally]:
    healthy = [
        NullModel(f"{shape}-{i}", shape, args.features, args.per_day, seed=args.seed * 1000 + n)
        for n, (shape, i) in enumerate(
            (shape, i) for shape in SHAPES for i in range(args.models_per_shape)
        )
    ]
    failing = [
        NullModel(f"{shape}-broken-{i}", shape, args.features, args.per_day, seed=7_000 + n)
        for n, (shape, i) in enumerate((shape, i) for shape in SHAPES for i in range(args.broken))
    ]
    portfolio = parse_portfolio(null_portfolio_toml([*healthy, *failing]))
    tallies = {shape: Tally() for shape in SHAPES}
    break_day = args.days // 2
    for model in [*healthy, *failing]:
        declared = portfolio.models[model.model_id]
        numeric = [f.name for f in declared.features if f.kind == "numeric"]
        monitor = Monitor(declared)
        tally = tallies[model.shape]
        is_broken = model in failing
        stuck_at = math.nan
        for day, records in enumerate(model_days(model, args.days)):
            if is_broken and day == break_day - 1:
                scores = sorted(r.output.score for r in records if isinstance(r, Prediction))
                stuck_at = scores[int(0.99 * (len(scores) - 1))]
            if is_broken and day >= break_day:
                records = [broken(record, stuck_at) for record in records]
            for start in range(0, len(records), args.batch):
                chunk = records[start : start + args.batch]
                effects = monitor.observe(Batch.from_records(model.model_id, chunk, numeric))
                for evidence in effects.alarms:
                    if not is_broken or day < break_day:
                        tally.alarms[evidence.detector] += 1
                        tally.material[evidence.detector] += evidence.material
                        effect = float(evidence.details.get("effect", math.nan))
                        largest = tally.effects.get(evidence.detector, -math.inf)
                        tally.effects[evidence.detector] = max(largest, effect)
                for command in effects.commands:
                    broken_since = is_broken and command.issued_at >= break_day * DAY_MS
                    if command.action == "restore" and broken_since:
                        tally.restored_broken[model.model_id] += 1
                    if command.action != "fallback":
                        continue
                    if broken_since:
                        delay_h = (command.issued_at - break_day * DAY_MS) / 3_600_000
                        tally.detections.setdefault(model.model_id, (delay_h, command.detector))
                    else:
                        tally.false_fallbacks += 1
                        tally.by_detector[command.detector] += 1
        tally.model_days += break_day if is_broken else args.days
    return tallies


def report(tallies: dict[str, Tally], args: argparse.Namespace, seconds: float) -> bool:
    print(
        f"null portfolio: {args.models_per_shape} healthy models per shape, {args.features} "
        f"features, {args.per_day} predictions a day, {args.days} days, batches of "
        f"{args.batch}; {seconds:.0f} s CPU"
    )
    print(
        "| shape | model-days | false fallbacks | per model-day | by detector "
        "| alarms a day (material a day; largest effect) |"
    )
    print("|---|---:|---:|---:|---|---|")
    total_days = total_false = 0.0
    for shape, tally in tallies.items():
        rate = tally.false_fallbacks / tally.model_days if tally.model_days else math.nan
        total_days += tally.model_days
        total_false += tally.false_fallbacks
        by = ", ".join(f"{d} {n}" for d, n in tally.by_detector.most_common()) or "-"
        alarms = (
            ", ".join(
                f"{d} {n / tally.model_days:.2f} ({tally.material[d] / tally.model_days:.2f}; "
                f"{_largest(tally.effects[d])})"
                for d, n in tally.alarms.most_common()
            )
            or "-"
        )
        print(
            f"| {shape} | {tally.model_days:.0f} | {tally.false_fallbacks} | {rate:.4f} | {by} "
            f"| {alarms} |"
        )
    overall = total_false / total_days
    # One-sided 95% upper bound of a Poisson rate (exact for 0 events: 3 / exposure).
    upper = _poisson_upper(int(total_false)) / total_days
    print(
        f"| all | {total_days:.0f} | {total_false:.0f} | {overall:.4f} (95% upper bound "
        f"{upper:.4f}) | goal <= {GOAL_PER_MODEL_DAY} | |"
    )
    if args.broken:
        print("\nbroken models (score stuck at its healthy 99th percentile from day", end=" ")
        print(f"{args.days // 2}): hours to the first fallback, its detector, restores since")
        for shape, tally in tallies.items():
            for i in range(args.broken):
                model_id = f"{shape}-broken-{i}"
                hours, detector = tally.detections.get(model_id, (math.nan, "never"))
                restores = tally.restored_broken[model_id]
                print(f"- {model_id}: {hours:.2f} h by {detector}, restored {restores} times")
    return overall <= GOAL_PER_MODEL_DAY


def _largest(effect: float) -> str:
    # Detectors without an effect size (estimated performance) have none to show.
    return f"{effect:.3f}" if math.isfinite(effect) else "-"


def _poisson_upper(events: int) -> float:
    # The 95% upper bound of a Poisson mean after ``events``: chi2(0.95, 2k + 2) / 2,
    # by Wilson-Hilferty, close enough for a report.
    dof = 2 * events + 2
    z = 1.6449
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3 / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-per-shape", type=int, default=10)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--broken", type=int, default=1, help="broken models per shape")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.process_time()
    tallies = run(args)
    met = report(tallies, args, time.process_time() - started)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
