"""Compiles the monitor's loops before the first record needs them.

The batch updates of the leak watch, the label join and its drop detectors run compiled
loops (``detectors._compiled``): numba compiles each on its first call, which takes seconds
(17 s of CPU for all of them), then caches the machine code on disk, where later
processes load it in about a second. A worker that compiled them on its first
batch would stall its whole event loop that long, with every model's records waiting, so
the worker calls ``warm_up`` before it consumes, and ``./deploy/run setup`` fills the
cache once.

``warm_up`` feeds one batch of made-up records to a throwaway ``Monitor``: predictions
of a model's features, their labels by request, and writes of the entities they were
about, enough for every compiled loop to run, and pickles it as a checkpoint does; then
scores through a score detector of a short warm-up (a model's own may want more scores
than the batch has), a performance drop detector given its baseline, whose CUSUM loop
runs only once it has one, a classifier's metric on int labels and on a window of one
pair, a key table's removal of entities at once, the compiled tests that Python also
calls, and a shadow trial's confidence sequence. Nothing of it is kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta

import numpy as np

from detectors._batch import SMALL_BATCH
from detectors._exact import binomial_sf, hypergeom_sf
from detectors.drift.residual_cusum import ResidualCUSUM
from detectors.leaks._coincide import best_cell
from detectors.leaks._memory import KeyTable
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.drop import PerformanceDrop
from detectors.shadow.promotion import ShadowPromotion
from schemas.contracts import FeatureSeen, FeatureWrite, GroundTruth, Prediction, Score
from streams.monitor.batch import Batch, Record
from streams.monitor.monitor import Monitor
from streams.portfolio import Model, parse_portfolio

__all__ = ["warm_up"]

# What one warm-up batch holds: enough records, entities and labels that each compiled
# loop takes its batch path (not the one-by-one path of short batches).
_PREDICTIONS = 200
_ENTITIES = 50
_LABEL_DELAY_MS = 60_000
# The second batch's records, after the first's.
_LATER_MS = 1_000 * _PREDICTIONS + _LABEL_DELAY_MS

# A model with a feature of each kind, for a process with no portfolio at hand.
_MODEL = """
[models.warm-up]
owner = "failsoft"
tier = "cpu"
fallback = "keep_all"
label_delay = "1m"
[models.warm-up.features]
amount = "numeric"
country = "categorical"
"""


def warm_up(models: Iterable[Model] = ()) -> None:
    """Runs every compiled loop once, on the first of ``models`` that has features (a
    model without any has no leak watch, whose loops would not run; a made-up model if
    none has), so that none is compiled while records wait.

    >>> warm_up()
    """
    model = next((m for m in models if m.features), None)
    if model is None:
        model = next(iter(parse_portfolio(_MODEL)))
    # The made-up labels come a minute after their predictions: a model's shorter label
    # delay would expire the predictions first, and leave them unjoined and the join's
    # batch paths cold.
    model = dataclasses.replace(model, label_delay=timedelta(milliseconds=_LABEL_DELAY_MS))
    numeric = frozenset(f.name for f in model.features if f.kind == "numeric")
    monitor = Monitor(model)
    monitor.observe(Batch.from_records(model.model_id, _records(model, numeric), numeric))
    # Later records, their labels first: they wait for the predictions to reach them.
    later = _records(model, numeric, _LATER_MS)
    labels = [r for r in later if isinstance(r, GroundTruth)]
    rest = [r for r in later if not isinstance(r, GroundTruth)]
    monitor.observe(Batch.from_records(model.model_id, [*labels, *rest], numeric))
    # The worker checkpoints its monitors: their state's compiled loops too.
    monitor.dumps()
    ResidualCUSUM(warm_up=10).update_many([(n % 10) / 10 for n in range(_PREDICTIONS)])
    # A drop detector's CUSUMs run once it has learnt its baseline (``reference_size``
    # labels), which a made-up batch does not reach: one given a baseline runs them.
    PerformanceDrop(baseline=0.5).update_many(np.zeros(SMALL_BATCH + 1))
    # A classifier's labels as ints, whose batch goes through a compiled loop: the made-up
    # labels are bools, which take the general path.
    ClassificationPerformance().update_many([(1, 0.5)] * (SMALL_BATCH + 1))
    # A window of one pair, as a stream's first report reads it: its columns are then
    # contiguous, which numba compiles apart from the strided columns of a longer window.
    first = ClassificationPerformance()
    first.update((1, 0.5))
    _ = first.metrics
    # The key table's removal of entities at once, as a leak detector forgets them past
    # its share of the model's memory (the made-up batch's few entities stay under it).
    table = KeyTable(1)
    table.add(1, 0)
    table.remove_all(np.array([1], np.uint64))
    # Compiled code that Python calls too, for the types it passes: the exact tails (a
    # window of write lags) and label_leak's test (a batch of one event, a test that
    # flags), which the made-up batch does not reach from Python.
    binomial_sf(1, 2, 0.5)
    hypergeom_sf(1, 2, 1, 1)
    best_cell(np.zeros((2, 1), np.int64), np.zeros((2, 2, 1, 4), np.int64), 1)
    # The shadow trial's confidence sequence, of a model with a shadow (the made-up one
    # has none).
    ShadowPromotion(grid_size=10).update((0.0, 0.5, 0.5))


def _records(model: Model, numeric: frozenset[str], start_ms: int = 0) -> list[Record]:
    """Predictions a second apart from ``start_ms``, each followed by a write of one of its
    features for its entity; then their labels, by request, the label delay later."""
    records: list[Record] = []
    predictions: list[Prediction] = []
    for n in range(_PREDICTIONS):
        at = start_ms + 1_000 * (n + 1)
        entity = f"entity-{n % _ENTITIES}"
        prediction = Prediction(
            schema_version=1,
            request_id=f"request-{start_ms}-{n}",
            model_id=model.model_id,
            model_version="warm-up",
            role="live",
            entity_id=entity,
            predicted_at=at,
            output=Score(score=(n % 10) / 10),
            features={
                f.name: FeatureSeen(_value(f.name, n, numeric), at - 500) for f in model.features
            },
            latency_ms=1.0,
        )
        predictions.append(prediction)
        records.append(prediction)
        if model.features:
            feature = model.features[n % len(model.features)].name
            records.append(
                FeatureWrite(
                    schema_version=1,
                    entity_id=entity,
                    feature=feature,
                    value=_value(feature, n + 1, numeric),
                    event_at=at + 100,
                    written_at=at + 200,
                    source="warm-up",
                )
            )
    records.extend(
        GroundTruth(
            schema_version=1,
            model_id=model.model_id,
            label=n % 3 == 0,
            label_at=prediction.predicted_at + _LABEL_DELAY_MS,
            request_id=prediction.request_id,
            entity_id=prediction.entity_id,
        )
        for n, prediction in enumerate(predictions)
    )
    return records


def _value(feature: str, n: int, numeric: frozenset[str]) -> float | str:
    return float(n % 7) if feature in numeric else f"value-{n % 5}"
