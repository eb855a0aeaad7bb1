"""The monitors alone, no Kafka and no Faust: records per CPU-second, and their memory.

Two replays, each fed to one ``streams.monitor.Monitor`` per model, in batches of
``--batch`` records of one model (the records are grouped by model in arrival order, as
the worker's readers group them; a model's batch is observed once it is full, and the
rest at the end):

- ``scenario``: the default demo scenario's records (``streams.simulate``: predictions,
  labels, and feature writes routed to each model that monitors the feature), with the
  portfolio the demo writes;
- ``synthetic``: a portfolio of ``--models`` models with ``--features`` numeric features
  each; per model, predictions (one a second, every feature carried, a Score output),
  their labels an hour later, and writes of the features, in the ratio 5 : 3 : 2.
- ``--labels-ahead N``: the pipeline benchmark's traffic
  (``bench_pipeline_throughput.traffic``, 20 models, ``--pipeline-events`` records) with
  each label moved ``N`` of its model's requests ahead of its predictions, as a worker
  reads the ground truth topic ahead of the predictions' (catching up on a backlog): the
  labels wait until the predictions reach their time (``streams.monitor.label_wait``).
  ``N`` = 0 is the traffic as produced.
- ``--lone N``: one model of ``--features`` features fed as a worker holding many models
  feeds each (``lone_records``): N requests, each of a new entity, its writes of every
  feature, its prediction, and the label of the request ``LONE_LABEL_AFTER`` before it,
  every record a batch of its own. At 1,000 models a model's records come a few a minute
  and its feature writes apart, so nearly every micro-batch is one record (the soak of
  ``bench_soak``). CPU microseconds per record of each kind, medians of ``--rounds``
  rounds on fresh monitors.

Rates are records per CPU-second (``time.process_time``), building each ``Batch`` from
decoded records included; medians of ``--rounds`` rounds, each on fresh monitors.
Memory, after the last synthetic round: pickled bytes per model and per state kind, the
process's object count (``gc.get_objects``), a full ``gc.collect()``, pickle and restore
time per model (p50, p99) and the process RSS. ``--at-caps``: one model of ``--features``
features driven past its caps (12,000 entities, each predicted once and never labelled,
and a write of every feature for each), its pickled size per state kind and restore time,
and each kind's pickle and restore CPU time. ``--portfolio-at-caps N``: that model's state
restored N times and held at once, as a worker holding N such models would (every copy
the same size, none shared): the process RSS before and after, the object count, full
``gc.collect()``s (the median of ``FULL_COLLECTIONS`` in wall and CPU time and the longest,
and one after ``gc.freeze()``, as the worker runs), and each restore's wall and CPU time
(p50, p99) and the full collections among them; then the same restores again as the
worker makes them, freezing what survives each full collection (``_restores_as_worker``).
``--portfolio-live N``: N monitors of that model built live, each fed the first
``--live-entities`` entities of that feed (detectors made by their constructors, as a
running worker holds them, rather than unpickled): the object count and full collections
as above.

Run from the repository root, e.g.::

    python -m tests.benchmarks.bench_monitor_replay --models 20 1000 --batch 500 1 \
        --scenario-records 200000 --records-batch-one 50000
    python -m tests.benchmarks.bench_monitor_replay --profile --models 20 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import io
import pickle
import pstats
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.contracts import FeatureSeen, FeatureWrite, GroundTruth, Prediction, Score
from streams.demo.run import DEMO_DETECTOR_DEFAULTS
from streams.monitor import Batch, Monitor
from streams.monitor.batch import Record
from streams.portfolio import Model, Portfolio, parse_portfolio
from streams.simulate.population import portfolio_toml
from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario
from tests.benchmarks.bench_soak import rss_of_status

LABEL_DELAY_MS = 3_600_000
# Full collections timed in a row, of which the median and the longest are reported.
FULL_COLLECTIONS = 7
# ``--lone``: a request's label comes this many requests after it.
LONE_LABEL_AFTER = 30
# ``--busy``: a request every 100 ms, for one of this many entities.
BUSY_EVERY_MS = 100
BUSY_ENTITIES = 100_000


def scenario() -> tuple[Portfolio, list[tuple[str, Record]]]:
    """The default scenario's portfolio and its records, each with the model it is for."""
    run = SimulationRun.prepare(load_scenario(SCENARIOS / "default.toml"), start_ms=0)
    portfolio = parse_portfolio(
        portfolio_toml(run.portfolio, run.time_scale) + DEMO_DETECTOR_DEFAULTS
    )
    routed: list[tuple[str, Record]] = []
    for event in run.events():
        record = event.record
        if isinstance(record, FeatureWrite):
            routed.extend((m, record) for m in portfolio.models_monitoring(record.feature))
        elif isinstance(record, Prediction | GroundTruth):
            routed.append((record.model_id, record))
    return portfolio, routed


def synthetic_portfolio(models: int, features: int) -> Portfolio:
    lines = []
    for n in range(models):
        lines += [
            f"[models.m{n:04d}]",
            'owner = "team-bench"',
            'tier = "cpu"',
            'fallback = "keep_all"',
            'label_delay = "1h"',
            f"[models.m{n:04d}.features]",
            *(f'"m{n:04d}.f{k:02d}" = "numeric"' for k in range(features)),
        ]
    return parse_portfolio("\n".join(lines) + "\n")


def synthetic(portfolio: Portfolio, per_model: int, seed: int) -> list[tuple[str, Record]]:
    """``per_model`` records of each model, models interleaved a second at a time."""
    rng = np.random.default_rng(seed)
    streams = [_model_records(model, per_model, rng) for model in portfolio]
    routed: list[tuple[str, Record]] = []
    for chunk in zip(*streams, strict=True):
        routed.extend(chunk)
    return routed


def _model_records(model: Model, count: int, rng: np.random.Generator) -> list[tuple[str, Record]]:
    names = [f.name for f in model.features]
    records: list[tuple[str, Record]] = []
    made: collections.deque[Prediction] = collections.deque()
    n = 0
    while len(records) < count:
        at = n * 1000
        step = n % 10
        if step < 5:
            values = rng.normal(0.0, 1.0, len(names))
            prediction = _live(
                model,
                f"{model.model_id}-r{n}",
                f"u{n % 5000}",
                at,
                float(rng.uniform()),
                dict(zip(names, values.tolist(), strict=True)),
            )
            made.append(prediction)
            records.append((model.model_id, prediction))
        elif step < 8 and made:
            earlier = made.popleft()
            truth = GroundTruth(
                schema_version=1,
                model_id=model.model_id,
                label=int(rng.uniform() < 0.3),
                label_at=earlier.predicted_at + LABEL_DELAY_MS,
                request_id=earlier.request_id,
                entity_id=earlier.entity_id,
            )
            records.append((model.model_id, truth))
        else:
            write = FeatureWrite(
                schema_version=1,
                entity_id=f"u{rng.integers(5000)}",
                feature=names[n % len(names)],
                value=float(rng.normal()),
                event_at=at - 200,
                written_at=at,
                source="bench",
            )
            records.append((model.model_id, write))
        n += 1
    return records


def _live(
    model: Model, request_id: str, entity_id: str, at: int, score: float, served: dict[str, float]
) -> Prediction:
    """A live prediction of ``model`` at ``at``, each feature's value ``served`` as written
    500 ms before."""
    return Prediction(
        schema_version=1,
        request_id=request_id,
        model_id=model.model_id,
        model_version="v1",
        role="live",
        entity_id=entity_id,
        predicted_at=at,
        output=Score(score=score),
        features={name: FeatureSeen(value, at - 500) for name, value in served.items()},
        latency_ms=1.0,
    )


def lone_records(features: int, requests: int, seed: int) -> tuple[Model, list[Record]]:
    """One model of ``features`` numeric features and ``requests`` requests of its records
    in the order they arrive (``--lone``)."""
    [model] = synthetic_portfolio(1, features)
    names = [f.name for f in model.features]
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    made: collections.deque[Prediction] = collections.deque()
    for n in range(requests):
        at = 1_000_000 + n * 2_000
        entity = f"e{n}"
        records += [
            FeatureWrite(
                schema_version=1,
                entity_id=entity,
                feature=name,
                value=float(rng.normal()),
                event_at=at - 900 + k,
                written_at=at - 800 + k,
                source="bench",
            )
            for k, name in enumerate(names)
        ]
        score = float(rng.uniform())
        prediction = _live(
            model, f"r{n}", entity, at, score, {name: float(rng.normal()) for name in names}
        )
        records.append(prediction)
        made.append(prediction)
        if len(made) > LONE_LABEL_AFTER:
            earlier = made.popleft()
            records.append(
                GroundTruth(
                    schema_version=1,
                    model_id=model.model_id,
                    label=int(rng.uniform() < 0.3),
                    label_at=at,
                    request_id=earlier.request_id,
                    entity_id=earlier.entity_id,
                )
            )
    return model, records


def lone(features: int, requests: int, rounds: int) -> dict[str, float]:
    """CPU microseconds per record of each kind and over all, each record a batch of its
    own (``--lone``): medians of ``rounds`` rounds, each on a fresh monitor."""
    model, records = lone_records(features, requests, seed=features)
    numeric = frozenset(f.name for f in model.features)
    counts = collections.Counter(type(record).__name__ for record in records)
    per_round: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        monitor = Monitor(model)
        spent: collections.Counter[str] = collections.Counter()
        for record in records:
            start = time.process_time()
            monitor.observe(Batch.from_records(model.model_id, [record], numeric))
            spent[type(record).__name__] += time.process_time() - start
        for kind, seconds in spent.items():
            per_round[kind].append(1e6 * seconds / counts[kind])
        per_round["every record"].append(1e6 * sum(spent.values()) / len(records))
    return {kind: statistics.median(values) for kind, values in per_round.items()}


def busy_records(
    features: int, requests: int, seed: int, early_ms: int = 0, by_entity: bool = False
) -> tuple[Model, list[Record]]:
    """One busy model of ``features`` numeric features (``--busy``): ``requests`` requests
    ``BUSY_EVERY_MS`` apart, each for one of ``BUSY_ENTITIES`` entities, after a write of
    one of its features, and its label ``LABEL_DELAY_MS`` after it, all in time order
    (the labels of the last hour's requests are not come yet), the labels ``early_ms``
    early (a worker whose predictions lag its ground truth), each naming its request and
    entity, or (``by_entity``) only its entity. Ten requests a second with
    a label an hour later are 36,000 predictions waiting: far past the label join's cap of
    held predictions, so its sample keeps a fraction of the entities, and most labels are
    of entities it left out."""
    [model] = synthetic_portfolio(1, features)
    names = [f.name for f in model.features]
    rng = np.random.default_rng(seed)
    timed: list[tuple[int, int, Record]] = []
    last = 1_000_000 + (requests - 1) * BUSY_EVERY_MS
    for n in range(requests):
        at = 1_000_000 + n * BUSY_EVERY_MS
        entity = f"e{rng.integers(BUSY_ENTITIES)}"
        write = FeatureWrite(
            schema_version=1,
            entity_id=entity,
            feature=names[n % len(names)],
            value=float(rng.normal()),
            event_at=at - 60,
            written_at=at - 50,
            source="bench",
        )
        served = {name: float(rng.normal()) for name in names}
        made = _live(model, f"r{n}", entity, at, float(rng.uniform()), served)
        timed += [(at - 50, n, write), (at, n, made)]
        if at + LABEL_DELAY_MS <= last:
            label = int(rng.uniform() < 0.3)
            truth = GroundTruth(
                schema_version=1,
                model_id=model.model_id,
                label=label,
                label_at=at + LABEL_DELAY_MS,
                request_id=None if by_entity else made.request_id,
                entity_id=entity,
            )
            timed.append((at + LABEL_DELAY_MS - early_ms, -1, truth))
    timed.sort(key=lambda x: x[:2])
    return model, [record for *_, record in timed]


def busy(
    features: int, requests: int, early_ms: int, by_entity: bool, size: int, rounds: int
) -> dict[str, Any]:
    """CPU microseconds a record of a busy model (``busy_records``) in batches of
    ``size``, before its first label and after it: medians of ``rounds`` rounds, each on
    a fresh monitor; and what its label join counted."""
    model, records = busy_records(features, requests, features, early_ms, by_entity)
    numeric = frozenset(f.name for f in model.features)
    first = next(n for n, r in enumerate(records) if isinstance(r, GroundTruth))
    phases = {"before the first label": records[:first], "with labels": records[first:]}
    spent: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        monitor = Monitor(model)
        for phase, part in phases.items():
            start = time.process_time()
            for k in range(0, len(part), size):
                monitor.observe(Batch.from_records(model.model_id, part[k : k + size], numeric))
            spent[phase].append(1e6 * (time.process_time() - start) / len(part))
    join = monitor.join
    return {
        **{
            f"{phase} ({len(part):,d} records)": statistics.median(spent[phase])
            for phase, part in phases.items()
        },
        "labels, joined, unsampled": (join.labels, join.joined, join.unsampled_labels),
        "sample fraction": join.held.fraction,
    }


def pipeline(events: int, ahead: int) -> tuple[Portfolio, list[tuple[str, Record]]]:
    """The pipeline benchmark's portfolio of 20 models and ``events`` of its records, each
    with the model it is for, each label ``ahead`` of its model's requests early."""
    from tests.benchmarks.bench_pipeline_throughput import bench_portfolio, traffic

    portfolio = bench_portfolio(20, 200)
    placed: list[tuple[int, int, str, Record]] = []
    request = -1
    for n, (_, _, record) in enumerate(traffic(portfolio, events, 0)):
        if isinstance(record, FeatureWrite):
            request += 1  # each request starts with its write
            placed.extend(
                (request, n, m, record) for m in portfolio.models_monitoring(record.feature)
            )
        elif isinstance(record, GroundTruth):
            # The models take turns: a model's N-th request before is 20 N requests before.
            placed.append((request - 20 * ahead, n, record.model_id, record))
        else:
            placed.append((request, n, record.model_id, record))
    placed.sort(key=lambda x: x[:2])
    return portfolio, [(model_id, record) for _, _, model_id, record in placed]


def batches(routed: Sequence[tuple[str, Record]], size: int) -> Iterator[tuple[str, list[Record]]]:
    """Per model, in arrival order: a batch once ``size`` of its records arrived."""
    pending: dict[str, list[Record]] = collections.defaultdict(list)
    for model_id, record in routed:
        waiting = pending[model_id]
        waiting.append(record)
        if len(waiting) >= size:
            yield model_id, waiting
            pending[model_id] = []
    for model_id, waiting in pending.items():
        if waiting:
            yield model_id, waiting


def replay(
    portfolio: Portfolio, routed: Sequence[tuple[str, Record]], size: int
) -> tuple[float, dict[str, Monitor], list[tuple[str, str, float]]]:
    """CPU seconds to feed every record, the monitors, and the alarms (model, detector, at)."""
    grouped = list(batches(routed, size))
    numeric = {
        m.model_id: frozenset(f.name for f in m.features if f.kind == "numeric") for m in portfolio
    }
    monitors = {model.model_id: Monitor(model) for model in portfolio}
    alarms: list[tuple[str, str, float]] = []
    start = time.process_time()
    for model_id, records in grouped:
        effects = monitors[model_id].observe(
            Batch.from_records(model_id, records, numeric[model_id])
        )
        alarms.extend((model_id, e.detector, e.at) for e in effects.alarms)
    return time.process_time() - start, monitors, alarms


def rate(
    portfolio: Portfolio, routed: Sequence[tuple[str, Record]], size: int, rounds: int
) -> float:
    return statistics.median(
        len(routed) / replay(portfolio, routed, size)[0] for _ in range(rounds)
    )


def memory(monitors: dict[str, Monitor]) -> dict[str, Any]:
    """The monitors' memory: pickled sizes, objects, a full collection, pickle and restore."""
    kinds: dict[str, list[int]] = collections.defaultdict(list)
    dump_s, load_s, sizes = [], [], []
    for monitor in monitors.values():
        for kind in ("watch", "join", "leaks", "shadow", "label_wait"):
            part = getattr(monitor, kind)
            if part is not None:
                kinds[kind].append(len(pickle.dumps(part, pickle.HIGHEST_PROTOCOL)))
        start = time.perf_counter()
        data = monitor.dumps()
        dump_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        Monitor.restore(monitor.model, data)
        load_s.append(time.perf_counter() - start)
        sizes.append(len(data))
    collect = _full_collections()
    return {
        "pickled_bytes_per_model": statistics.mean(sizes),
        "pickled_bytes_per_kind": {k: statistics.mean(v) for k, v in kinds.items()},
        "objects": len(gc.get_objects()),
        **collect,
        "pickle_ms_p50_p99": _percentiles(dump_s),
        "restore_ms_p50_p99": _percentiles(load_s),
        "rss_mb": _rss_mb(),
    }


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return round(float(p50), 3), round(float(p99), 3)


def _rss_mb() -> float:
    return rss_of_status(Path("/proc/self/status").read_text()) / 2**20


def _monitor_at_caps(model: Model, entities: int) -> Monitor:
    """A monitor of ``model`` fed ``entities`` entities, each predicted once and never
    labelled, with a write of every feature for each, in batches of 500."""
    return _fed(model, _caps_records(model, entities))


def _fed(model: Model, records: Sequence[Record]) -> Monitor:
    """A new monitor of ``model`` that observed ``records`` in batches of 500."""
    monitor = Monitor(model)
    numeric = frozenset(f.name for f in model.features)
    for start in range(0, len(records), 500):
        monitor.observe(Batch.from_records(model.model_id, records[start : start + 500], numeric))
    return monitor


def _caps_records(model: Model, entities: int) -> list[Record]:
    """``entities`` entities, each predicted once and never labelled, with a write of every
    feature for each."""
    names = [f.name for f in model.features]
    records: list[Record] = []
    for n in range(entities):
        at = n * 100
        records.extend(
            FeatureWrite(
                schema_version=1,
                entity_id=f"u{n}",
                feature=name,
                value=float(n % 7),
                event_at=at,
                written_at=at,
                source="bench",
            )
            for name in names
        )
        records.append(
            Prediction(
                schema_version=1,
                request_id=f"r{n}",
                model_id=model.model_id,
                model_version="v1",
                role="live",
                entity_id=f"u{n}",
                predicted_at=at + 50,
                output=Score(score=0.5),
                features={name: FeatureSeen(float(n % 7), at) for name in names},
                latency_ms=1.0,
            )
        )
    return records


def at_caps(features: int, entities: int = 12_000) -> dict[str, Any]:
    """One synthetic model driven past its caps: ``entities`` entities each predicted once
    and never labelled (held predictions, remembered requests, availability-gap keys) and
    a write of every feature for each (label-coincidence entities). Its pickled size and
    restore time; the portfolio's state is that times the model count."""
    [model] = list(synthetic_portfolio(1, features))
    monitor = _monitor_at_caps(model, entities)
    records = entities * (len(model.features) + 1)
    data = monitor.dumps()
    parts = {
        kind: pickle.dumps(getattr(monitor, kind), pickle.HIGHEST_PROTOCOL)
        for kind in ("watch", "join", "leaks", "label_wait")
    }
    restore_s = []
    for _ in range(20):
        start_s = time.perf_counter()
        Monitor.restore(model, data)
        restore_s.append(time.perf_counter() - start_s)
    return {
        "records": records,
        "held_predictions": len(monitor.join.held),
        "pickled_bytes": len(data),
        "pickled_bytes_per_kind": {kind: len(part) for kind, part in parts.items()},
        "restore_ms_p50_p99": _percentiles(restore_s),
        **_cpu_per_kind(monitor, parts),
    }


def portfolio_at_caps(features: int, models: int) -> dict[str, Any]:
    """``models`` restored copies of one model's state at its caps, held at once; then as
    many restored again as the worker restores them (``_restores_as_worker``)."""
    [model] = list(synthetic_portfolio(1, features))
    data = _monitor_at_caps(model, 12_000).dumps()
    gc.collect()
    rss_before = _rss_mb()
    full_before = _full_collections_made()
    held: list[Monitor] = []
    wall_s: list[float] = []
    cpu_s: list[float] = []
    for _ in range(models):
        _restore_timed(model, data, held, wall_s, cpu_s)
    full_during = _full_collections_made() - full_before
    collect = _full_collections()
    rss_after = _rss_mb()
    found = {
        "models": len(held),
        "pickled_bytes_per_model": len(data),
        "rss_mb_before_after": (round(rss_before, 1), round(rss_after, 1)),
        "state_mb_in_memory": round(rss_after - rss_before, 1),
        "objects": len(gc.get_objects()),
        **collect,
        "restore_wall_ms_p50_p99": _percentiles(wall_s),
        "restore_cpu_ms_p50_p99": _percentiles(cpu_s),
        "full_gcs_during_restores": full_during,
    }
    held.clear()
    gc.collect()
    return found | asyncio.run(_restores_as_worker(model, data, models))


def _restore_timed(
    model: Model, data: bytes, held: list[Monitor], wall_s: list[float], cpu_s: list[float]
) -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    held.append(Monitor.restore(model, data))
    wall_s.append(time.perf_counter() - start_wall)
    cpu_s.append(time.process_time() - start_cpu)


def _full_collections_made() -> int:
    return int(gc.get_stats()[2]["collections"])


async def _restores_as_worker(model: Model, data: bytes, models: int) -> dict[str, Any]:
    """``models`` restores as the worker makes them after a handover, and full
    collections of them all: its ``FullCollections`` froze what the process held before
    the first (the modules, numba's compiled loops), so a full collection walks only the
    monitors; and the loop turns once work has held it for ``FEED_SLICE_S`` (the reader's
    ``_Turns``)."""
    # Imported here, after the collections above were timed, and after ``--portfolio-live``
    # (``main`` runs it first): the worker's modules (aiokafka, Faust) add some 27,000
    # tracked objects that are not the monitors' state, frozen below as the worker's are.
    from streams.worker.gcfreeze import FullCollections
    from streams.worker.readers import FEED_SLICE_S

    full = FullCollections(freeze=True)
    full.install()
    held: list[Monitor] = []
    wall_s: list[float] = []
    cpu_s: list[float] = []
    try:
        turn_at = time.monotonic() + FEED_SLICE_S
        for _ in range(models):
            _restore_timed(model, data, held, wall_s, cpu_s)
            if time.monotonic() >= turn_at:
                await asyncio.sleep(0)
                turn_at = time.monotonic() + FEED_SLICE_S
        during = full.pauses.total, full.longest
        collect = _full_collections()
        objects = len(gc.get_objects())
        frozen = full.frozen
    finally:
        full.remove()
    return {
        "frozen_at_start_as_worker": frozen,
        "objects_as_worker": objects,
        **{f"{key}_as_worker": value for key, value in collect.items()},
        "restore_wall_ms_p50_p99_as_worker": _percentiles(wall_s),
        "restore_cpu_ms_p50_p99_as_worker": _percentiles(cpu_s),
        "full_gcs_during_restores_as_worker": during[0],
        "full_gc_ms_longest_during_restores_as_worker": round(during[1] * 1000, 1),
    }


def portfolio_live(features: int, models: int, entities: int) -> dict[str, Any]:
    """``models`` monitors built live, each fed ``entities`` entities as ``--at-caps`` feeds
    its model: the detectors a running worker holds were made by their constructors, not
    unpickled, and a full collection walks them differently (``detectors._batch``'s
    ``own_attribute_dict``)."""
    [model] = list(synthetic_portfolio(1, features))
    records = _caps_records(model, entities)
    held = [_fed(model, records) for _ in range(models)]
    collect = _full_collections()
    return {"models": len(held), "objects": len(gc.get_objects()), **collect}


def _full_collections(times: int = FULL_COLLECTIONS) -> dict[str, float]:
    """``times`` full collections in a row after one that frees what is left: the median
    wall and CPU time of one, and the longest wall time (one collection's wall time on a
    shared machine also measures its neighbours)."""
    gc.collect()
    wall_s: list[float] = []
    cpu_s: list[float] = []
    for _ in range(times):
        start, start_cpu = time.perf_counter(), time.process_time()
        gc.collect()
        wall_s.append(time.perf_counter() - start)
        cpu_s.append(time.process_time() - start_cpu)
    return {
        "full_gc_ms": round(statistics.median(wall_s) * 1000, 1),
        "full_gc_cpu_ms": round(statistics.median(cpu_s) * 1000, 1),
        "full_gc_ms_longest": round(max(wall_s) * 1000, 1),
    }


def checkpoints(monitors: dict[str, Monitor], times: int = 5) -> dict[str, Any]:
    """What a checkpoint of each monitor costs (``Monitor.dumps``, as the worker writes one
    every ``CHECKPOINT_EVERY`` records and at each alert): its bytes and, the median of
    ``times``, its CPU time; p50 and maximum over the monitors, and the sum."""
    sizes, cpu_s = [], []
    for monitor in monitors.values():
        spent = []
        for _ in range(times):
            start = time.process_time()
            data = monitor.dumps()
            spent.append(time.process_time() - start)
        sizes.append(len(data))
        cpu_s.append(statistics.median(spent))
    return {
        "monitors": len(monitors),
        "bytes_p50_max": (int(statistics.median(sizes)), max(sizes)),
        "dumps_cpu_ms_p50_max_sum": tuple(
            round(1000 * x, 2) for x in (statistics.median(cpu_s), max(cpu_s), sum(cpu_s))
        ),
    }


def _cpu_per_kind(monitor: Monitor, parts: dict[str, bytes]) -> dict[str, Any]:
    """Pickling and unpickling each state kind, 20 times, in CPU time (the machine is shared:
    wall time there measures the neighbours)."""
    pickle_s: dict[str, list[float]] = collections.defaultdict(list)
    restore_s: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(20):
        for kind, data in parts.items():
            start = time.process_time()
            pickle.dumps(getattr(monitor, kind), pickle.HIGHEST_PROTOCOL)
            pickle_s[kind].append(time.process_time() - start)
            start = time.process_time()
            pickle.loads(data)
            restore_s[kind].append(time.process_time() - start)
    return {
        "pickle_cpu_ms_p50_p99_per_kind": {k: _percentiles(v) for k, v in pickle_s.items()},
        "restore_cpu_ms_p50_p99_per_kind": {k: _percentiles(v) for k, v in restore_s.items()},
    }


def profile(portfolio: Portfolio, routed: Sequence[tuple[str, Record]], size: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    replay(portfolio, routed, size)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, nargs="*", default=[20, 1000])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 1])
    parser.add_argument("--per-model", type=int, default=500, help="synthetic records per model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenario-records",
        type=int,
        default=None,
        help="replay only the first so many routed records of the scenario",
    )
    parser.add_argument(
        "--records-batch-one",
        type=int,
        default=None,
        help="replay only the first so many records in batches of 1",
    )
    parser.add_argument(
        "--labels-ahead",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="the pipeline traffic, each label N of its model's requests ahead",
    )
    parser.add_argument("--pipeline-events", type=int, default=200_000)
    parser.add_argument("--no-scenario", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile one round instead")
    parser.add_argument("--at-caps", action="store_true", help="one model driven to its caps")
    parser.add_argument(
        "--checkpoints",
        action="store_true",
        help="each monitor's checkpoint after the whole scenario, in batches of the largest",
    )
    parser.add_argument(
        "--portfolio-at-caps",
        type=int,
        metavar="N",
        help="N models at their caps held at once (copies of the --at-caps model's state)",
    )
    parser.add_argument(
        "--portfolio-live",
        type=int,
        metavar="N",
        help="N models built live, each fed --live-entities entities as --at-caps feeds one",
    )
    parser.add_argument("--live-entities", type=int, default=1_100)
    parser.add_argument(
        "--lone",
        type=int,
        metavar="N",
        help="N requests of one model, every record a batch of its own",
    )
    parser.add_argument(
        "--busy",
        type=int,
        metavar="N",
        help="N requests of one busy model, its labels an hour later (batches of --batch's first)",
    )
    parser.add_argument(
        "--busy-early",
        type=int,
        default=0,
        metavar="MS",
        help="--busy's labels read MS before their time",
    )
    parser.add_argument(
        "--busy-by-entity", action="store_true", help="--busy's labels name only their entity"
    )
    args = parser.parse_args(argv)
    if args.busy:
        print(
            f"one busy model of {args.features} features, {args.busy:,d} requests, "
            f"labels read {args.busy_early} ms early"
            f"{', naming only their entity' if args.busy_by_entity else ''}:"
        )
        found = busy(
            args.features,
            args.busy,
            args.busy_early,
            args.busy_by_entity,
            args.batch[0],
            args.rounds,
        )
        for key, value in found.items():
            print(
                f"  {key}: {value:.2f} CPU microseconds a record"
                if "records" in key
                else f"  {key}: {value}"
            )
    if args.lone:
        print(f"one model of {args.features} features, {args.lone:,d} requests, records alone:")
        for kind, micros in lone(args.features, args.lone, args.rounds).items():
            print(f"  {kind}: {micros:.1f} CPU microseconds a record")
    runs: list[tuple[str, Portfolio, list[tuple[str, Record]]]] = []
    if not args.no_scenario:
        portfolio, routed = scenario()
        label = f"scenario (20 models, 4 features, {len(routed):,d} records)"
        runs.append((label, portfolio, routed[: args.scenario_records]))
    for models in args.models:
        portfolio = synthetic_portfolio(models, args.features)
        label = f"synthetic ({models} models, {args.features} features)"
        runs.append((label, portfolio, synthetic(portfolio, args.per_model, seed=models)))
    for ahead in args.labels_ahead:
        portfolio, routed = pipeline(args.pipeline_events, ahead)
        runs.append((f"pipeline (20 models), labels {ahead} ahead", portfolio, routed))
    for label, portfolio, everything in runs:
        for size in args.batch:
            limit = args.records_batch_one if size == 1 else None
            routed = everything[:limit]
            if args.profile:
                print(f"== {label}, batch {size}: cProfile, top 25 by own time")
                print(profile(portfolio, routed, size))
                continue
            value = rate(portfolio, routed, size, args.rounds)
            print(
                f"{label:40s} batch {size:4d}: {len(routed):9,d} records, "
                f"{value:12,.0f} records/CPU-s (median of {args.rounds})",
                flush=True,
            )
    if not args.profile and len(runs) > 1:
        label, portfolio, everything = runs[-1]
        _, monitors, _ = replay(portfolio, everything, max(args.batch))
        print(f"memory after {label}:")
        for key, value in memory(monitors).items():
            print(f"  {key}: {value}")
    if args.checkpoints:
        portfolio, routed = scenario()
        _, monitors, _ = replay(portfolio, routed, max(args.batch))
        print(f"checkpoints after the scenario's {len(routed):,d} records:")
        for key, value in checkpoints(monitors).items():
            print(f"  {key}: {value}")
    if args.at_caps:
        print(f"one model of {args.features} features at its caps:")
        for key, value in at_caps(args.features).items():
            print(f"  {key}: {value}")
    if args.portfolio_live:
        print(
            f"{args.portfolio_live} models of {args.features} features built live, "
            f"{args.live_entities:,d} entities each:"
        )
        live = portfolio_live(args.features, args.portfolio_live, args.live_entities)
        for key, value in live.items():
            print(f"  {key}: {value}")
    if args.portfolio_at_caps:
        print(f"{args.portfolio_at_caps} models of {args.features} features at their caps:")
        for key, value in portfolio_at_caps(args.features, args.portfolio_at_caps).items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
