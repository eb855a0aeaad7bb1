"""Drift detector quality: detection delay, misses, false alarms and cost per update.

Seeded streams of 10,000 events with a known change point at event 5,000:

- ``abrupt_mean``: N(0, 1), then N(1, 1);
- ``gradual_mean``: the mean ramps linearly from 0 to 1 over events 5,000 to 6,000;
- ``variance``: N(0, 1), then N(0, 2^2);
- ``error_rate``: Bernoulli(0.05) errors, then Bernoulli(0.10);
- ``category_mix``: shares (0.5, 0.3, 0.15, 0.05), then (0.3, 0.3, 0.25, 0.15);

and stationary streams of 10,000 events without a change: ``stationary_normal``,
``stationary_latency`` (log-normal, sigma 0.5: skewed, as latencies are),
``stationary_errors`` and ``stationary_categories``.

Per detector and stream: the mean delay of the first alarm at or after the change (in
events), the runs with no alarm after it (misses), false alarms per 10,000 events (every
alarm before the change, and every alarm on a stationary stream), and the cost of one
``update`` in microseconds (median over runs of the run's time divided by its length,
Python loop included). The windowed tests get a frozen reference of 2,000 pre-change
values from a separate seed and windows of 500; the change falls on a window boundary, so
their delay is one full window (499 events) when the first changed window alarms. river's
ADWIN and PageHinkley run at their defaults as baselines. Numeric detectors read the
categorical streams as the indicator of the most common category.

Rows marked "material" count only the alarms the worker acts on: those at or above the
default effect-size floor (``streams.monitor.watch``: ``DEFAULT_MIN_EFFECT``, 0.15 of the
population, for the windowed tests; ``DEFAULT_SCORE_MIN_EFFECT`` for ResidualCUSUM as
the score detector; ``DEFAULT_ERROR_MIN_EFFECT`` for the error rate). The windowed tests read
their window's effect; the CUSUMs run as the worker runs them on a model's outputs
(``streams.monitor.watch.ScoreDetector`` for the score, the effect measured against the
episode's baseline; ``OutputDetector`` for the error rate, reference frozen after the
warm-up, the effect measured since the change).

``--batch N`` feeds each detector that has ``update_many`` in consecutive batches of N (the
last one shorter) and reads its alarms' indices from the batch (``_alarm_quality``): the
delays, misses and false alarms must be those of the default, one by one; only the cost
differs. river's ADWIN and PageHinkley have no ``update_many`` and go one by one. The
worker's adapters go through the worker's own batch paths: ``ScoreDetector.feed_many``
(each read then judged in turn) and ``OutputDetector.update_many`` (up to the input that
gives evidence, which ``update`` takes).

Run::

    .venv/bin/python -m tests.benchmarks.bench_drift_quality            # 50 runs per stream
    .venv/bin/python -m tests.benchmarks.bench_drift_quality --runs 5
    .venv/bin/python -m tests.benchmarks.bench_drift_quality --batch 500

or through pytest: ``.venv/bin/python -m pytest tests/benchmarks/bench_drift_quality.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from river import drift

from detectors import (
    BernoulliCUSUM,
    CategoricalPSIDrift,
    ChiSquareDrift,
    JensenShannonDrift,
    KSDrift,
    NullRateDrift,
    PSIDrift,
    ResidualCUSUM,
    RobustCUSUM,
    WassersteinDrift,
)
from detectors.health.evidence import Evidence
from streams.monitor.watch import (
    DEFAULT_ERROR_MIN_EFFECT,
    DEFAULT_MIN_EFFECT,
    DEFAULT_SCORE_MIN_EFFECT,
    OutputDetector,
    ScoreDetector,
)
from tests.benchmarks._alarm_quality import Outcome, add_batch_option, table, verdicts

LENGTH = 10_000
CHANGE = 5_000
WINDOW = 500
REFERENCE_SIZE = 2_000
CATEGORIES = ("web", "ios", "android", "tv")
CATEGORY_SHARES = (0.5, 0.3, 0.15, 0.05)
SHIFTED_SHARES = (0.3, 0.3, 0.25, 0.15)
ERROR_RATE = 0.05


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "numeric", "binary" or "categorical": which detectors apply
    change: int | None
    generate: Callable[[np.random.Generator], list[Any]]


def _normal(rng: np.random.Generator, n: int = LENGTH) -> np.ndarray:
    return rng.normal(0.0, 1.0, n)


def _abrupt_mean(rng: np.random.Generator) -> list[Any]:
    values = _normal(rng)
    values[CHANGE:] += 1.0
    return values.tolist()


def _gradual_mean(rng: np.random.Generator) -> list[Any]:
    values = _normal(rng)
    values[CHANGE:] += np.minimum(1.0, np.arange(LENGTH - CHANGE) / 1000.0)
    return values.tolist()


def _variance(rng: np.random.Generator) -> list[Any]:
    values = _normal(rng)
    values[CHANGE:] *= 2.0
    return values.tolist()


def _errors(rng: np.random.Generator, after: float = ERROR_RATE) -> list[Any]:
    rates = np.where(np.arange(LENGTH) < CHANGE, ERROR_RATE, after)
    return (rng.random(LENGTH) < rates).tolist()


def _categories(rng: np.random.Generator, after: Sequence[float] = CATEGORY_SHARES) -> list[Any]:
    before = rng.choice(CATEGORIES, CHANGE, p=CATEGORY_SHARES)
    rest = rng.choice(CATEGORIES, LENGTH - CHANGE, p=after)
    return [*before.tolist(), *rest.tolist()]


SCENARIOS = [
    Scenario("abrupt_mean", "numeric", CHANGE, _abrupt_mean),
    Scenario("gradual_mean", "numeric", CHANGE, _gradual_mean),
    Scenario("variance", "numeric", CHANGE, _variance),
    Scenario("error_rate", "binary", CHANGE, lambda rng: _errors(rng, 2 * ERROR_RATE)),
    Scenario("category_mix", "categorical", CHANGE, lambda rng: _categories(rng, SHIFTED_SHARES)),
    Scenario("stationary_normal", "numeric", None, lambda rng: _normal(rng).tolist()),
    Scenario(
        "stationary_latency", "numeric", None, lambda rng: rng.lognormal(3.0, 0.5, LENGTH).tolist()
    ),
    Scenario("stationary_errors", "binary", None, _errors),
    Scenario("stationary_categories", "categorical", None, _categories),
]


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    kinds: tuple[str, ...]
    # make(reference sample of the stream's pre-change distribution) -> detector
    make: Callable[[list[Any]], Any]
    # how a stream value is fed to the detector, per stream kind
    feed: Callable[[str, Any], Any] = lambda kind, x: x


class Material:
    """A windowed test whose alarms count only at or above the worker's floor; a batch's
    alarms, by position, in ``detections``."""

    def __init__(self, test: Any) -> None:
        self.test = test
        self.drift_detected = False
        self.detections: list[int] = []

    def update(self, x: Any) -> None:
        self.test.update(x)
        self.drift_detected = self.test.drift_detected and self.test.effect >= DEFAULT_MIN_EFFECT

    def update_many(self, values: list[Any]) -> None:
        test = self.test
        test.update_many(values)
        material = test.window_drifts & (test.window_effects >= DEFAULT_MIN_EFFECT)
        self.detections = test.window_ends[material].tolist()
        self.drift_detected = test.drift_detected and test.effect >= DEFAULT_MIN_EFFECT


class MaterialOutput:
    """An output's detector as the worker runs it (the score's ``ScoreDetector``, the
    error rate's ``OutputDetector``): material alarms only."""

    def __init__(self, output: ScoreDetector | OutputDetector) -> None:
        self.output = output
        self.drift_detected = False
        self.detections: list[int] = []

    def update(self, x: Any) -> None:
        output = self.output
        if isinstance(output, ScoreDetector):
            # The score is read, then judged at its turn, as the watch does it.
            read = output.feed(x)
            evidence = None if read is None else output.judge("output", read, 0.0)
        else:
            evidence = output.update("output", x, 0.0)
        self.drift_detected = _material(evidence)

    def update_many(self, values: list[Any]) -> None:
        """``update`` on each in turn, through the worker's batch path; the material
        alarms' positions in ``detections``."""
        output = self.output
        found = []
        if isinstance(output, ScoreDetector):
            reads = output.feed_many(values, range(len(values)))
            for i in reads.positions:
                read = reads.get(i)
                assert read is not None
                if _material(output.judge("output", read, 0.0)):
                    found.append(i)
        else:
            failed = np.array(values, dtype=np.bool_)
            i = output.update_many(failed)
            while i < len(failed):
                if _material(output.update("output", values[i], 0.0)):
                    found.append(i)
                i += 1 + output.update_many(failed[i + 1 :])
        self.detections = found
        self.drift_detected = bool(found) and found[-1] == len(values) - 1


def _material(evidence: Evidence | None) -> bool:
    return evidence is not None and evidence.alarm and evidence.material


def _top_category_indicator(kind: str, x: Any) -> Any:
    return float(x == CATEGORIES[0]) if kind == "categorical" else x


def _error_as_null(kind: str, x: Any) -> Any:
    return None if x else 0.0


def _category_counts(reference: list[Any]) -> dict[str, int]:
    keys, counts = np.unique(np.asarray(reference), return_counts=True)
    return {str(k): int(n) for k, n in zip(keys, counts, strict=True)}


CONTENDERS = [
    Contender(
        "ADWIN (river default)",
        ("numeric", "binary", "categorical"),
        lambda ref: drift.ADWIN(),
        _top_category_indicator,
    ),
    Contender(
        "PageHinkley (river default)",
        ("numeric", "binary", "categorical"),
        lambda ref: drift.PageHinkley(),
        _top_category_indicator,
    ),
    Contender("RobustCUSUM", ("numeric",), lambda ref: RobustCUSUM()),
    Contender("ResidualCUSUM", ("numeric",), lambda ref: ResidualCUSUM()),
    Contender("BernoulliCUSUM", ("binary",), lambda ref: BernoulliCUSUM()),
    Contender(
        "KSDrift (alpha 0.001)",
        ("numeric",),
        lambda ref: KSDrift(ref, window_size=WINDOW, alpha=0.001),
    ),
    Contender("WassersteinDrift", ("numeric",), lambda ref: WassersteinDrift(ref, WINDOW)),
    Contender("PSIDrift", ("numeric",), lambda ref: PSIDrift(ref, WINDOW)),
    Contender("JensenShannonDrift", ("numeric",), lambda ref: JensenShannonDrift(ref, WINDOW)),
    Contender(
        "NullRateDrift (alpha 0.001)",
        ("binary",),
        lambda ref: NullRateDrift((int(np.sum(ref)), len(ref)), window_size=WINDOW, alpha=0.001),
        _error_as_null,
    ),
    Contender(
        "ChiSquareDrift (alpha 0.001)",
        ("categorical",),
        lambda ref: ChiSquareDrift(_category_counts(ref), window_size=WINDOW, alpha=0.001),
    ),
    Contender(
        "CategoricalPSIDrift",
        ("categorical",),
        lambda ref: CategoricalPSIDrift(_category_counts(ref), window_size=WINDOW),
    ),
    Contender(
        "ResidualCUSUM, material (worker)",
        ("numeric",),
        lambda ref: MaterialOutput(
            ScoreDetector(
                ResidualCUSUM(min_effect=DEFAULT_SCORE_MIN_EFFECT), DEFAULT_SCORE_MIN_EFFECT
            )
        ),
    ),
    Contender(
        "BernoulliCUSUM, material (worker)",
        ("binary",),
        lambda ref: MaterialOutput(OutputDetector(BernoulliCUSUM(), DEFAULT_ERROR_MIN_EFFECT)),
    ),
    Contender(
        "KSDrift (alpha 0.001), material",
        ("numeric",),
        lambda ref: Material(KSDrift(ref, window_size=WINDOW, alpha=0.001)),
    ),
    Contender("PSIDrift, material", ("numeric",), lambda ref: Material(PSIDrift(ref, WINDOW))),
    Contender(
        "ChiSquareDrift (alpha 0.001), material",
        ("categorical",),
        lambda ref: Material(
            ChiSquareDrift(_category_counts(ref), window_size=WINDOW, alpha=0.001)
        ),
    ),
]


def _reference(scenario: Scenario, seed: int) -> list[Any]:
    """A pre-change sample from a separate seed: the "training" data."""
    rng = np.random.default_rng(10_000 + seed)
    if scenario.kind == "numeric" and scenario.name == "stationary_latency":
        return rng.lognormal(3.0, 0.5, REFERENCE_SIZE).tolist()
    if scenario.kind == "numeric":
        return _normal(rng, REFERENCE_SIZE).tolist()
    if scenario.kind == "binary":
        return (rng.random(REFERENCE_SIZE) < ERROR_RATE).tolist()
    return rng.choice(CATEGORIES, REFERENCE_SIZE, p=CATEGORY_SHARES).tolist()


def evaluate(
    runs: int, scenarios: Sequence[str] | None = None, batch: int = 1
) -> dict[tuple[str, str], Outcome]:
    results: dict[tuple[str, str], Outcome] = {}
    for scenario in SCENARIOS:
        if scenarios is not None and scenario.name not in scenarios:
            continue
        for seed in range(runs):
            stream = scenario.generate(np.random.default_rng(seed))
            ref = _reference(scenario, seed)
            for contender in CONTENDERS:
                if scenario.kind not in contender.kinds:
                    continue
                outcome = results.setdefault((scenario.name, contender.name), Outcome())
                values = [contender.feed(scenario.kind, x) for x in stream]
                outcome.run(contender.make(ref), values, scenario.change, batch)
    return results


_CHANGED = {s.name for s in SCENARIOS if s.change is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="seeded runs per stream")
    add_batch_option(parser)
    args = parser.parse_args(argv)
    print(table(evaluate(args.runs, batch=args.batch), args.runs, _CHANGED, args.batch))
    return 0


def test_quality_benchmark_runs_and_our_detectors_catch_each_change() -> None:
    runs = 2
    results = evaluate(runs)
    print(table(results, runs, _CHANGED))
    for scenario, ours in [
        ("abrupt_mean", "RobustCUSUM"),
        ("gradual_mean", "RobustCUSUM"),
        ("variance", "RobustCUSUM"),
        ("error_rate", "BernoulliCUSUM"),
        ("category_mix", "ChiSquareDrift (alpha 0.001)"),
        # The floors keep every change of this benchmark material.
        ("abrupt_mean", "ResidualCUSUM, material (worker)"),
        ("variance", "ResidualCUSUM, material (worker)"),
        ("error_rate", "BernoulliCUSUM, material (worker)"),
        ("category_mix", "ChiSquareDrift (alpha 0.001), material"),
    ]:
        assert results[(scenario, ours)].misses == 0, (scenario, ours)


def test_the_worker_score_detector_catches_a_gradual_ramp() -> None:
    runs = 2
    results = evaluate(runs, scenarios=("gradual_mean",))
    assert results[("gradual_mean", "ResidualCUSUM, material (worker)")].misses == 0


def test_batches_change_no_verdict() -> None:
    # 37: windows of 500 and warm-ups end inside batches. A stream of each kind has
    # every detector, and the change gives each alarms to place; on the ramp the first
    # window KSDrift finds drifting (seed 0) is below the floor, which "material" skips,
    # and the score's episode follows its alarm in both.
    scenarios = ("abrupt_mean", "gradual_mean", "error_rate", "category_mix")
    batched = evaluate(1, scenarios, batch=37)
    alone = {name for (_, name), outcome in batched.items() if not outcome.batched}
    assert alone == {"ADWIN (river default)", "PageHinkley (river default)"}
    assert verdicts(batched) == verdicts(evaluate(1, scenarios))


if __name__ == "__main__":
    sys.exit(main())
