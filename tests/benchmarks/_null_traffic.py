"""Healthy traffic shaped like real models' for the null portfolio: nothing breaks, yet
nothing is Gaussian or stationary in the small.

Each model has a score shape that real portfolios have (``SHAPES``), features that are
skewed, counts or bounded ratios, and two kinds of harmless movement that real traffic
always shows:

- **time of day**: the mix of two user segments follows a daily cycle, so features and
  scores wander within a day and come back;
- **batch jobs**: an entity aggregate (feature ``f0``) is rewritten for a share of the
  entities every few minutes, so its level takes small random-walk steps that revert
  slowly (an AR(1) with a half-life of days), moving the score mix a little all the time.

Labels follow the score (a calibrated model), arriving after a log-normal delay (median
4 h, a tail of days); regression labels are the output plus noise. Nothing about the
model's relation to its inputs changes, so a fallback here is a false one.

Records are msgspec ``Prediction`` and ``GroundTruth`` values in event-time order, made a
day at a time per model so a long run holds one model-day and the labels still in flight.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from schemas.contracts import FeatureSeen, GroundTruth, Prediction, Score

__all__ = ["DAY_MS", "SHAPES", "NullModel", "model_days", "null_portfolio_toml"]

DAY_MS = 86_400_000
# score shape -> what it stands for
SHAPES = {
    "ctr_beta": "click-through rate near 0.1, right-skewed",
    "fraud_bimodal": "most scores near 0, a few percent near 0.85",
    "zero_inflated": "60% exactly 0, the rest spread",
    "heavy_tailed_regression": "a regression output with Student-t(3) tails (lifetime value)",
    "discrete": "five score values, as a small tree gives",
    "drifting_mix": "click-through scores whose mix follows a fast-moving batch aggregate",
}
LABEL_DELAY_MEDIAN_MS = 4 * 3_600_000
LABEL_DELAY_SIGMA = 1.2
# The batch job that rewrites f0: how often (ms), and the step of its level per run.
BATCH_EVERY_MS = 5 * 60_000
BATCH_STEP = {"drifting_mix": 0.08}
BATCH_STEP_DEFAULT = 0.02
# Half-life of the aggregate's excursions, in batch runs (about 3.5 days at 5 minutes).
BATCH_HALF_LIFE = 1_000


@dataclasses.dataclass(frozen=True)
class NullModel:
    """One healthy model: its id, score shape, feature count and traffic."""

    model_id: str
    shape: str
    features: int
    per_day: int
    seed: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {sorted(SHAPES)}, got {self.shape!r}")

    @property
    def task(self) -> str:
        return "regression" if self.shape == "heavy_tailed_regression" else "classification"


def null_portfolio_toml(models: list[NullModel]) -> str:
    """A portfolio file with the product's defaults: only what each model declares."""
    lines = [
        "schema_version = 1",
        "",
        "[defaults]",
        'tier = "cpu"',
        'fallback = { strategy = "top_n_popular", mode = "automatic" }',
        'label_delay = "4h"',
        'escalation_limit = "3d"',
        "",
    ]
    for model in models:
        lines += [f"[models.{model.model_id}]", f'owner = "team-{model.shape}"', ""]
        if model.task == "regression":
            lines += [f"[models.{model.model_id}.detectors.performance]", 'task = "regression"', ""]
        lines += [f"[models.{model.model_id}.features]"]
        lines += [f'f{j} = "numeric"' for j in range(model.features)]
        lines.append("")
    return "\n".join(lines)


def model_days(model: NullModel, days: int) -> Iterator[list[Prediction | GroundTruth]]:
    """The model's records day by day, in event-time order: each day's predictions, and the
    labels (of that day's predictions and earlier ones) that arrive during it. Labels due
    after the last day are never seen, as in a run that ends."""
    pending: list[GroundTruth] = []
    for day in range(days):
        predictions = _predictions(model, day)
        pending.extend(_labels(model, day))
        pending.sort(key=lambda label: label.label_at)
        end = (day + 1) * DAY_MS
        cut = next((i for i, label in enumerate(pending) if label.label_at >= end), len(pending))
        arrived, pending = pending[:cut], pending[cut:]
        records: list[Prediction | GroundTruth] = [*predictions, *arrived]
        records.sort(key=lambda r: r.predicted_at if isinstance(r, Prediction) else r.label_at)
        yield records


def _rng(model: NullModel, day: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([model.seed, day, stream])


def _columns(model: NullModel, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction times (ms), features (n x features) and scores of one day."""
    rng = _rng(model, day, 0)
    n = int(rng.poisson(model.per_day))
    at = np.sort(rng.integers(day * DAY_MS, (day + 1) * DAY_MS, n))
    phase = 2.0 * math.pi * (at % DAY_MS) / DAY_MS
    # Two segments whose mix follows the hour of the day.
    evening = rng.random(n) < 0.5 + 0.2 * np.sin(phase)
    level = _batch_level(model, at)
    features = np.empty((n, model.features))
    for j in range(model.features):
        kind = j % 3
        shift = 0.3 * evening
        if kind == 0:  # skewed amounts
            features[:, j] = rng.lognormal(1.0 + shift, 0.8)
        elif kind == 1:  # counts
            features[:, j] = rng.poisson(3.0 * (1.0 + shift))
        else:  # bounded ratios
            features[:, j] = rng.beta(2.0 + 2.0 * shift, 5.0)
    features[:, 0] += level
    latent = 0.6 * (np.log1p(features[:, 0].clip(0.0)) - 1.2) + 0.4 * evening
    return at, features, _scores(model.shape, latent, rng)


def _batch_level(model: NullModel, at: np.ndarray) -> np.ndarray:
    """The level the batch job has left f0 at each time: an AR(1) over its runs."""
    if at.size == 0:
        return np.zeros(0)
    step = BATCH_STEP.get(model.shape, BATCH_STEP_DEFAULT)
    runs = at // BATCH_EVERY_MS
    # The job's history from the start, so a day's level continues the day before.
    steps = np.random.default_rng([model.seed, 7]).normal(0.0, step, int(runs[-1]) + 1)
    keep = 0.5 ** (1.0 / BATCH_HALF_LIFE)
    levels = np.empty(steps.size)
    running = 0.0
    for i, s in enumerate(steps):
        running = keep * running + s
        levels[i] = running
    return levels[runs]


def _scores(shape: str, latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = latent.size
    if shape in ("ctr_beta", "drifting_mix"):
        return 1.0 / (1.0 + np.exp(-(latent - 2.2 + rng.normal(0.0, 0.5, n))))
    if shape == "fraud_bimodal":
        risky = rng.random(n) < 0.03 * np.exp(0.5 * latent)
        return np.where(risky, rng.beta(8.0, 2.0, n), rng.beta(1.0, 40.0, n))
    if shape == "zero_inflated":
        zero = rng.random(n) < 0.6
        return np.where(zero, 0.0, rng.beta(2.0, 5.0, n))
    if shape == "heavy_tailed_regression":
        return 120.0 + 40.0 * latent + 25.0 * rng.standard_t(3.0, n)
    # discrete
    values = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    index = np.clip(np.round(1.5 + latent + rng.normal(0.0, 0.8, n)), 0, 4).astype(int)
    return values[index]


def _predictions(model: NullModel, day: int) -> list[Prediction]:
    at, features, scores = _columns(model, day)
    names = [f"f{j}" for j in range(model.features)]
    records = []
    for i in range(at.size):
        t = int(at[i])
        row = features[i]
        records.append(
            Prediction(
                schema_version=1,
                request_id=f"{model.model_id}-{day}-{i}",
                model_id=model.model_id,
                model_version="1",
                role="live",
                entity_id=f"e{i % 5_000}",
                predicted_at=t,
                output=Score(score=float(scores[i])),
                features={
                    name: FeatureSeen(value=float(row[j]), written_at=t - 60_000)
                    for j, name in enumerate(names)
                },
                latency_ms=5.0,
            )
        )
    return records


def _labels(model: NullModel, day: int) -> Iterator[GroundTruth]:
    at, _, scores = _columns(model, day)
    rng = _rng(model, day, 1)
    delay = rng.lognormal(math.log(LABEL_DELAY_MEDIAN_MS), LABEL_DELAY_SIGMA, at.size)
    if model.task == "regression":
        labels: list[float | int] = list(scores + rng.normal(0.0, 10.0, at.size))
    else:
        labels = list((rng.random(at.size) < scores).astype(int))
    for i in range(at.size):
        yield GroundTruth(
            schema_version=1,
            model_id=model.model_id,
            label=labels[i],
            label_at=int(at[i] + delay[i]),
            request_id=f"{model.model_id}-{day}-{i}",
        )
