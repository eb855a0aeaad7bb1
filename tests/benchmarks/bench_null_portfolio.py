"""Null portfolio: how many false fallbacks the health policy issues when nothing drifts.

A portfolio of models (default 100) with 20 features each, 2,000 predictions per model-day
for 30 simulated days (6,000,000 predictions, 3,000 model-days), and labels arriving with
a log-normal delay (median 4 h, a tail of days; labels due after the run are never seen).
Nothing changes: features, scores and labels are stationary. Each model runs the team's
real detectors, with levels handed out by ``AlarmBudget`` (0.01 false fallbacks per
model-day by default, equal shares for three families):

- drift: ``KSDrift`` on each feature, frozen reference of 5,000 training rows, tumbling
  windows of 500 (4 tests per feature per day), ``alpha = alpha_for("drift")``;
- score: ``BernoulliCUSUM`` on the positive-decision indicator (score >= 0.5), rate learnt
  over 4,000 predictions, ``threshold = ln(1 / alpha_for("score"))`` (per input);
- performance: ``ClassificationPerformance`` fed ``(label, score)`` as labels arrive, its
  ``PerformanceDrop`` at ``alpha = alpha_for("performance")`` (per label), baseline learnt
  from the first 10,000 labels, tolerance 0.02.

Every windowed evaluation becomes an ``Evidence`` (alarming or not), every sequential alarm
one too, and a ``Heartbeat`` every 10 minutes of event time; a ``HealthPolicy`` per model
reads them in event-time order. A false fallback is a ``fallback`` action.

Feature values are generated with numpy and pushed into the detectors one by one through
their public ``update`` (the windowed tests take no batches); that is most of the run time.

Run (full scale, about 10 minutes on one core)::

    .venv/bin/python -m tests.benchmarks.bench_null_portfolio

Smaller runs: ``--models 10 --days 5``. ``--levels defaults`` runs the same portfolio with
the detectors at their default levels instead of the budget's, to show what the budget buys.
Several policy configurations run side by side on the same evidence (``--confirm 2,1``:
with and without confirmation). Zero false fallbacks would be easy with a policy that never
acts, so ``--shifted-models K`` shifts feature f0 of the first K models by ``--shift``
standard deviations half-way through and reports how long each took to fall back, and
which detector caused it; their model-days after the shift are not counted as null.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from detectors.drift.bernoulli_cusum import BernoulliCUSUM
from detectors.drift.ks import KSDrift
from detectors.health.budget import AlarmBudget
from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.policy import HealthPolicy
from detectors.health.state import HealthState
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.drop import PerformanceDrop

DAY = 86_400.0
HEARTBEAT_EVERY = 600.0
WINDOW = 500
REFERENCE_ROWS = 5_000
SCORE_WARM_UP = 4_000
LABEL_REFERENCE = 10_000
LABEL_DELAY_MEDIAN = 4 * 3600.0
LABEL_DELAY_SIGMA = 1.2
FAMILIES = ("drift", "score", "performance")


@dataclasses.dataclass(frozen=True)
class Scale:
    models: int
    features: int
    days: int
    per_day: int
    seed: int
    shifted_models: int = 0
    shift: float = 0.5

    @property
    def model_days(self) -> int:
        """Model-days without drift: shifted models count until their shift, half-way."""
        return (self.models - self.shifted_models) * self.days + self.shifted_models * (
            self.days // 2
        )


@dataclasses.dataclass
class PolicyTally:
    """What one policy configuration did over the whole portfolio."""

    fallbacks: int = 0
    restores: int = 0
    degraded: int = 0
    escalations: int = 0
    fallback_models: list[int] = dataclasses.field(default_factory=list)
    # Shifted models: (model, hours from the shift to the fallback, detector that caused it).
    detections: list[tuple[int, float, str | None]] = dataclasses.field(default_factory=list)
    missed: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tally:
    alarms: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    alarm_days: int = 0
    policies: dict[int, PolicyTally] = dataclasses.field(default_factory=dict)
    policy_updates: int = 0
    detector_seconds: float = 0.0
    policy_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class ModelData:
    reference: np.ndarray  # (REFERENCE_ROWS, features)
    features: np.ndarray  # (n, features), in prediction order
    predicted_at: np.ndarray  # (n,)
    score: np.ndarray  # (n,)
    label: np.ndarray  # (n,)
    label_at: np.ndarray  # (n,), inf when the label never arrives in the run
    shift_at: float  # when feature 0 shifts; inf for a model without drift


def simulate(scale: Scale, model: int) -> ModelData:
    """One model's stationary traffic: correlated features of mixed shapes, calibrated scores."""
    rng = np.random.default_rng([scale.seed, model])
    n = scale.days * scale.per_day
    loading = rng.uniform(0.0, 0.7, scale.features)
    kinds = np.arange(scale.features) % 4
    centre = rng.normal(0.0, 2.0, scale.features)
    spread = rng.uniform(0.5, 3.0, scale.features)

    def rows(count: int) -> np.ndarray:
        common = rng.standard_normal((count, 1))
        z = loading * common + np.sqrt(1.0 - loading**2) * rng.standard_normal(
            (count, scale.features)
        )
        x = centre + spread * z
        x[:, kinds == 1] = np.exp(z[:, kinds == 1])  # skewed, e.g. amounts
        x[:, kinds == 2] = np.round(2.0 * z[:, kinds == 2] + 5.0)  # integer, many ties
        x[:, kinds == 3] = np.maximum(z[:, kinds == 3], 0.0)  # half zeros, e.g. spend
        return x

    reference = rows(REFERENCE_ROWS)
    features = rows(n)
    shift_at = math.inf
    if model < scale.shifted_models:
        features[n // 2 :, 0] += scale.shift * reference[:, 0].std()
    weights = rng.normal(0.0, 0.4, scale.features)
    standard = (features - reference.mean(axis=0)) / reference.std(axis=0)
    score = 1.0 / (1.0 + np.exp(-(standard @ weights - 0.8)))
    label = (rng.random(n) < score).astype(np.int64)
    days = np.repeat(np.arange(scale.days), scale.per_day) * DAY
    predicted_at = (
        days + np.sort(rng.uniform(0.0, DAY, (scale.days, scale.per_day)), axis=1).ravel()
    )
    delay = rng.lognormal(math.log(LABEL_DELAY_MEDIAN), LABEL_DELAY_SIGMA, n)
    label_at = predicted_at + delay
    label_at[label_at >= scale.days * DAY] = np.inf
    if model < scale.shifted_models:
        shift_at = float(predicted_at[n // 2])
    return ModelData(reference, features, predicted_at, score, label, label_at, shift_at)


def budget_for(scale: Scale, false_fallbacks_per_model_day: float) -> AlarmBudget:
    return AlarmBudget(
        false_fallbacks_per_model_day,
        {
            "drift": scale.features * scale.per_day / WINDOW,
            "score": scale.per_day,
            "performance": scale.per_day,
        },
    )


def drift_evidence(data: ModelData, alpha: float | None) -> Iterator[Evidence]:
    """KS on every feature, one evidence record per evaluated window."""
    ends = np.arange(WINDOW - 1, len(data.predicted_at), WINDOW)
    for j in range(data.features.shape[1]):
        reference = data.reference[:, j].tolist()
        ks = KSDrift(reference, WINDOW) if alpha is None else KSDrift(reference, WINDOW, alpha)
        update = ks.update
        values = data.features[:, j].tolist()
        for end in ends:
            collections.deque(map(update, values[end - WINDOW + 1 : end + 1]), maxlen=0)
            yield Evidence(
                detector="ks",
                feature=f"f{j}",
                at=float(data.predicted_at[end]),
                alarm=ks.drift_detected,
                alpha=ks.alpha,
                p_value=ks.p_value,
                details={"statistic": ks.statistic},
            )


def score_evidence(data: ModelData, alpha: float | None) -> Iterator[Evidence]:
    """A CUSUM on the positive-decision rate; one record per alarm."""
    cusum = (
        BernoulliCUSUM(warm_up=SCORE_WARM_UP)
        if alpha is None
        else BernoulliCUSUM(warm_up=SCORE_WARM_UP, threshold=math.log(1.0 / alpha))
    )
    update = cusum.update
    for at, positive in zip(data.predicted_at.tolist(), (data.score >= 0.5).tolist(), strict=True):
        update(positive)
        if cusum.drift_detected:
            yield Evidence(detector="positive_rate_cusum", at=at, alarm=True, alpha=alpha)


def performance_evidence(data: ModelData, alpha: float | None) -> Iterator[Evidence]:
    """Accuracy drop on labels in arrival order; one record per alarm."""
    drop = (
        PerformanceDrop()
        if alpha is None
        else PerformanceDrop(alpha=alpha, tolerance=0.02, reference_size=LABEL_REFERENCE)
    )
    metrics = ClassificationPerformance(window=1000, drop=drop)
    order = np.argsort(data.label_at, kind="stable")
    arrived = order[np.isfinite(data.label_at[order])]
    update = metrics.update
    for at, y, p in zip(
        data.label_at[arrived].tolist(),
        data.label[arrived].tolist(),
        data.score[arrived].tolist(),
        strict=True,
    ):
        update((y, p))
        if metrics.drift_detected:
            yield Evidence(
                detector="accuracy_drop",
                at=at,
                alarm=True,
                alpha=alpha,
                details={"accuracy": metrics.accuracy},
            )


def run_model(
    scale: Scale,
    model: int,
    budget: AlarmBudget | None,
    policies: dict[int, HealthPolicy],
    clear_after: float,
    tally: Tally,
) -> None:
    """Run one model's detectors, then each policy configuration on the same evidence."""
    data = simulate(scale, model)
    started = time.perf_counter()
    alpha = {family: None if budget is None else budget.alpha_for(family) for family in FAMILIES}
    records: list[tuple[float, int, Any]] = []
    for family, evidence in (
        ("drift", drift_evidence(data, alpha["drift"])),
        ("score", score_evidence(data, alpha["score"])),
        ("performance", performance_evidence(data, alpha["performance"])),
    ):
        for record in evidence:
            records.append((record.at, 0, record))
            # Alarms after a shift are true ones; the tally is of false alarms.
            tally.alarms[family] += record.alarm and record.at < data.shift_at
    tally.detector_seconds += time.perf_counter() - started
    alarm_days = {
        int(at // DAY) for at, _, record in records if record.alarm and at < data.shift_at
    }
    tally.alarm_days += len(alarm_days)
    beats = np.arange(HEARTBEAT_EVERY, scale.days * DAY + HEARTBEAT_EVERY / 2, HEARTBEAT_EVERY)
    records.extend((float(at), 1, Heartbeat(at=float(at))) for at in beats)
    records.sort(key=lambda item: (item[0], item[1]))

    for confirm, policy in policies.items():
        out = tally.policies.setdefault(confirm, PolicyTally())
        started = time.perf_counter()
        fallbacks_before = out.fallbacks
        detected = False
        last_transition = policy.transition
        for _, _, record in records:
            policy.update(record)
            action = policy.action
            if action is not None and action.action == "restore":
                out.restores += 1
            elif action is not None and action.at < data.shift_at:
                out.fallbacks += 1
            if not detected and record.at >= data.shift_at and policy.on_fallback:
                # A model already on fallback (a false alarm) when the shift comes counts at 0.
                detected = True
                delay = (record.at - data.shift_at) / 3600.0
                cause = None if policy.transition is None else policy.transition.detector
                out.detections.append((model, round(delay, 1), cause))
            if policy.escalation_due:
                out.escalations += 1
            if policy.transition is not last_transition:
                last_transition = policy.transition
                out.degraded += policy.state is HealthState.DEGRADED
        tally.policy_updates += len(records)
        tally.policy_seconds += time.perf_counter() - started
        if out.fallbacks > fallbacks_before:
            out.fallback_models.append(model)
        if math.isfinite(data.shift_at) and not detected:
            out.missed.append(model)


def report(
    scale: Scale,
    budget: AlarmBudget,
    levels: str,
    clear_after: float,
    tally: Tally,
    seconds: float,
) -> str:
    model_days = scale.model_days
    spent = {family: budget.alpha_for(family) * budget.tests_per_day[family] for family in FAMILIES}
    lines = [
        f"null portfolio: {scale.models} models x {scale.features} features x {scale.days} days"
        f" x {scale.per_day} predictions/model-day = {scale.models * scale.days * scale.per_day:,}"
        f" predictions, {model_days:,} model-days without drift, seed {scale.seed}",
        f"detector levels: {levels}"
        + (
            f" (budget {budget.false_fallbacks_per_model_day} false fallbacks/model-day,"
            " Bonferroni,"
            f" equal shares; alpha per test: drift {budget.alpha_for('drift'):.3g}, score"
            f" {budget.alpha_for('score'):.3g}/input, performance"
            f" {budget.alpha_for('performance'):.3g}/label)"
            if levels == "budget"
            else ""
        ),
        "",
        "| quantity | value | per model-day |",
        "|---|---:|---:|",
    ]
    for family in FAMILIES:
        expected = f" (budget share {spent[family]:.4f})" if levels == "budget" else ""
        lines.append(
            f"| alarms: {family} | {tally.alarms[family]} |"
            f" {tally.alarms[family] / model_days:.4f}{expected} |"
        )
    lines += [
        f"| model-days with any alarm | {tally.alarm_days} | {tally.alarm_days / model_days:.4f} |",
        "",
        f"HealthPolicy(confirm=c, min_dwell=900, clear_after={clear_after:g}) on the same"
        " evidence:",
        "",
        "| confirm | entries into degraded | **false fallbacks** | per model-day | restores"
        " | escalations | goal <= 0.01 | models that fell back |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for confirm, out in tally.policies.items():
        goal = "met" if out.fallbacks <= 0.01 * model_days else "MISSED"
        lines.append(
            f"| {confirm} | {out.degraded} | **{out.fallbacks}** |"
            f" {out.fallbacks / model_days:.4f} | {out.restores} | {out.escalations} | {goal} |"
            f" {out.fallback_models} |"
        )
    if scale.shifted_models:
        lines += [
            "",
            f"{scale.shifted_models} models shift feature f0 by {scale.shift:g} standard deviations"
            " half-way through; (model, hours to the fallback, cause) and misses:",
            "",
        ]
        for confirm, out in tally.policies.items():
            lines.append(f"- confirm={confirm}: detected {out.detections}; missed {out.missed}")
    lines += [
        "",
        f"wall time {seconds:.1f} s: detectors {tally.detector_seconds:.1f} s, policy"
        f" {tally.policy_seconds:.1f} s for {tally.policy_updates:,} updates"
        f" ({1e6 * tally.policy_seconds / max(tally.policy_updates, 1):.2f} us per update)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument(
        "--shifted-models",
        type=int,
        default=0,
        help="this many models shift feature f0 half-way through (a power check; default none)",
    )
    parser.add_argument(
        "--shift", type=float, default=0.5, help="the shift, in standard deviations"
    )
    parser.add_argument(
        "--levels",
        choices=("budget", "defaults"),
        default="budget",
        help="detector levels from the alarm budget, or each detector's defaults",
    )
    parser.add_argument(
        "--confirm",
        default="2,1",
        help="HealthPolicy(confirm=...) values to run side by side on the same evidence",
    )
    parser.add_argument(
        "--clear-after", type=float, default=8 * 3600.0, help="HealthPolicy(clear_after=...), s"
    )
    args = parser.parse_args(argv)
    scale = Scale(
        args.models,
        args.features,
        args.days,
        args.per_day,
        args.seed,
        args.shifted_models,
        args.shift,
    )
    budget = budget_for(scale, args.budget)
    confirms = [int(c) for c in args.confirm.split(",")]
    tally = Tally()
    started = time.perf_counter()
    for model in range(scale.models):
        policies = {
            c: HealthPolicy(confirm=c, min_dwell=900.0, clear_after=args.clear_after)
            for c in confirms
        }
        levels = budget if args.levels == "budget" else None
        run_model(scale, model, levels, policies, args.clear_after, tally)
        if (model + 1) % 10 == 0:
            print(f"{model + 1} models, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(report(scale, budget, args.levels, args.clear_after, tally, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
