"""One model's leak watch: write lag, availability gaps and label leaks of its features.

Pure code, no Faust. Each model's ``streams.monitor.Monitor`` holds one ``LeakWatch`` and
calls ``observe_batch(model, watch, batch)`` with each ``Batch`` of the model's records
(``observe_many(model, watch, records)`` takes a list, ``observe(model, watch, record)``
one record; they give the same). It reads:

- every ``FeatureWrite`` of a feature the model monitors (writes are keyed by entity_id
  on the wire; the worker's reader gives each to ``Portfolio.models_monitoring(
  write.feature)``, straight or through its internal topic keyed by model_id when
  another worker holds the model);
- every ``live`` ``Prediction`` of the model (the values it was served, with the write
  time of each value, feed the availability gap; its request_id is remembered to find
  the entity of a label that names only the request);
- every ``GroundTruth`` of the model (a binary label: 0, 1, false or true).

What comes back (``LeakEffects``, per record) is evidence for the model's health policy,
InfluxDB points and Alerta alerts. The watch reads nothing else of the monitor, so the
monitor feeds it a whole batch first and carries each record's effects out in its place.

Detectors, per model (settings ``[detectors.leaks]`` of the portfolio; timestamps and
durations in milliseconds, as on the wire):

- ``label_leak``: ``LabelCoincidentWrites``, settings ``coincidence_<argument>``;
- ``availability_gap``: ``AvailabilityGap``, settings ``gap_<argument>``;
- ``write_lag_drift`` and ``write_lag_sla``: a ``WriteLag`` per distinct ``write_lag_sla``
  of the features, settings ``write_lag_<argument>``; its ``sla`` is its features';
- ``future_values``: ``FutureValues``, setting ``skew_tolerance``, only with
  ``future_values=True`` (see below);

and the watch's own ``report_every`` (seconds of event time between two rounds of points,
default 60), ``max_bytes`` (the memory the entities of the watch may take, default
280,000) and ``max_requests`` (request_ids remembered for labels without an entity_id).

Memory. A worker holds a watch per model, 1,000 of them within a few hundred MB, so the
watch is bounded in bytes: ``max_bytes`` is shared out as the caps of what grows with the
entities, unless they are set: ``label_leak``'s ``coincidence_max_entities`` (60%, at
``LabelCoincidentWrites.bytes_per_entity`` of the model's features each),
``availability_gap``'s ``gap_max_keys`` (30%, at ``AvailabilityGap.bytes_per_key``) and
``max_requests`` (10%, at about 80 bytes each). ``coincidence_max_features`` and
``gap_max_features`` default to the model's feature count, so that no column is made
that no write fills. When ``label_leak``'s table is full, it keeps a hash sample of the
entities and halves it as often as it must (``sample_fraction``); the availability gap
reads the same entities: the watch feeds it the predictions and writes of the entities
in ``label_leak``'s sample as it was after the records before them (``values_unsampled``
counts the served values it did not feed). Labels of entities outside the sample are
counted (``unsampled`` in the ``label_leak`` points), not judged. The gap keeps pairs for
minutes, not days: at each round of points (``report_every``), if it forgot pairs to
make room since the last one, it reads half as many of those entities from then on, and
half again as often as it takes for the pairs it made since the last round, at that rate
over ``gap_max_delay``, to fit its cap (``gap_sample_fraction``), so that it does not
spend its time forgetting pairs to make room. A sample costs time to
detection, not validity: each entity kept is whole, so no label is judged on writes
partly forgotten. Entities expire as well: ``label_leak`` keeps an entity for
``label_delay`` (the model's) plus two ``coincidence_max_lag`` after its latest event;
``availability_gap`` keeps a pair for ``gap_max_delay`` (ten minutes) after it was last
seen, so that writes that reach the worker that far behind the predictions still find
the predictions they gap; past its cap it forgets the pairs seen longest ago, which
costs power, never a false gap.

Values from the future. ``streams.monitor.watch`` already sends every live prediction's served
values through ``FutureValues`` on the health path. ``new_leak_watch(model,
future_values=True)`` does it here as well (critical evidence, a ``future_values`` leak
point and alert, a ``future_values`` field in write-lag points); the agent must not do
both, or every such value is reported twice.

Evidence. ``label_leak`` and ``availability_gap`` are sequential tests whose flags stay on:
one alarming ``Evidence`` per feature when it is flagged. ``write_lag_drift`` and
``write_lag_sla`` test each complete window of a feature's writes: one ``Evidence`` per
window, alarming or not. ``future_values`` evidence is ``critical``: the policy acts at
once. Evidence goes to the model's health policy (``HealthPolicy.update``); the points
and alerts of leak evidence are the ones here, not those of ``streams.monitor.watch.consequences``.

Alerts. One per model and detector (Alerta event = detector), naming the flagged features
in its text and its ``feature`` attribute; it is sent when that set of features changes,
and closes (severity normal) when a windowed detector is quiet again.

Points, on a cadence of event time (``report_every``), not per event: per feature a
``write_lag`` point (tags model, feature: ``p50_ms``, ``p99_ms``, ``writes``,
``drift_p_value``, ``sla_p_value``, ``gap_rate``, and ``future_values`` when on) and
``leak`` points (tags model, feature, detector: ``score``, ``p_value``, ``flagged``,
``labels``, ``unjudged``, ``unsampled``, ``sample_fraction`` for ``label_leak``;
``gap_rate``, ``p_value``, ``flagged``, ``predictions``, ``values_unsampled``,
``sample_fraction`` for ``availability_gap``). A flag also writes its leak point at once.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import operator
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import numpy as np

from detectors._batch import SMALL_BATCH
from detectors._compiled import compiled
from detectors.health.evidence import Evidence
from detectors.leaks._memory import KeyTable, in_sample, probe_compiled, vacate_compiled
from detectors.leaks.availability_gap import AvailabilityGap, ServedRun, ServedValues
from detectors.leaks.events import (
    Label,
    ServedFeature,
    WriteColumns,
    entity_hash,
    entity_hashes,
    finite,
    get_entity_id,
    get_written_at,
    request_hash,
)
from detectors.leaks.future_values import FutureValues
from detectors.leaks.label_coincidence import LabelCoincidentWrites
from detectors.leaks.write_lag import WriteLag, WriteLagSummary
from schemas.contracts import FeatureSeen, FeatureWrite, GroundTruth, Prediction
from streams.monitor.batch import NO_WRITES, Batch, get_features, get_predicted_at, get_role
from streams.monitor.effects import Alert, FieldValue, Point, detector_alert, point
from streams.portfolio import Model, PortfolioError

__all__ = [
    "ALERT_SEVERITIES",
    "LeakEffects",
    "LeakWatch",
    "build_detector",
    "new_leak_watch",
    "observe",
    "observe_batch",
    "observe_many",
    "split_settings",
]

DEFAULT_REPORT_EVERY = 60.0
DEFAULT_MAX_BYTES = 280_000
# Shares of ``max_bytes`` for the caps that grow with the entities (module docstring).
_COINCIDENCE_SHARE, _GAP_SHARE, _REQUESTS_SHARE = 0.6, 0.3, 0.1
# A remembered request in memory: its hash, its entity id's bytes (about 24) and its
# share of the key table.
_REQUEST_BYTES = 80
_DETECTOR_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "coincidence": {},
    "gap": {},
    "write_lag": {},
}
_OWN_KEYS = ("skew_tolerance", "report_every", "max_requests", "max_bytes")
# How loud each detector's alert is while it alarms.
ALERT_SEVERITIES: Mapping[str, str] = {
    "label_leak": "major",
    "availability_gap": "major",
    "write_lag_drift": "warning",
    "write_lag_sla": "warning",
    "future_values": "critical",
}


class RequestMap:
    """``request_id -> entity_id`` of the latest ``capacity`` requests put, the oldest
    forgotten first, in numpy arrays: a hash of each request id, its entity id as UTF-8
    bytes (the array widens to the longest), in a ring of rows, found by a key table. No
    Python object per request, so a worker's garbage collections do not walk them. A
    request put again keeps its place and takes the new entity id. An entity id ending in
    NUL bytes comes back without them (numpy's bytes), and two request ids whose 64-bit
    hashes collide share an entry.

    >>> requests = RequestMap(2)
    >>> for n in range(3):
    ...     requests.put(request_hash(f"r{n}"), f"user-{n}")
    >>> requests.get("r0"), requests.get("r2"), len(requests)
    (None, 'user-2', 2)
    """

    # One object per model for the garbage collector to walk, not two (it and its dict).
    __slots__ = ("_ids", "_keys", "_put", "_table", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._table = KeyTable(capacity)
        self._keys = np.zeros(capacity, np.uint64)
        self._ids = np.zeros(capacity, "S1")
        # Requests put so far: the next one takes row ``_put % capacity``.
        self._put = 0

    def __len__(self) -> int:
        return self._table.size

    def put(self, key: int, entity_id: str) -> None:
        """Remembers the entity of the request of hash ``key`` (``request_hash``, which
        a batch's predictions have at once), forgetting the oldest request if full."""
        encoded = entity_id.encode("utf-8", "surrogatepass")
        if len(encoded) > self._ids.itemsize:
            self._ids = self._ids.astype(f"S{len(encoded)}")
        slot, row = self._table.probe(key)
        if row < 0:
            row = self._put % self.capacity
            if self._put >= self.capacity:
                self._table.remove(self._keys.item(row))
                slot = self._table.probe(key)[0]
            self._table.put(slot, key, row)
            self._keys[row] = key
            self._put += 1
        self._ids[row] = encoded

    def put_many(self, keys: Sequence[int], entity_ids: Sequence[str]) -> None:
        """``put`` of each request in turn (``keys[i]`` names ``entity_ids[i]``'s): the
        same table, past ``_FEW_REQUESTS`` requests with one compiled loop
        (``_put_compiled``) over their hashes and encoded entity ids."""
        if len(keys) <= _FEW_REQUESTS:
            for key, entity_id in zip(keys, entity_ids, strict=True):
                self.put(key, entity_id)
            return
        encoded = np.array([entity_id.encode("utf-8", "surrogatepass") for entity_id in entity_ids])
        if encoded.itemsize > self._ids.itemsize:
            self._ids = self._ids.astype(encoded.dtype)
        width = self._ids.itemsize
        # Padded to the rows' width, as a row's bytes are (NULs after the id).
        encoded = encoded.astype(self._ids.dtype)
        table = self._table
        self._put, table.size = _put_compiled(
            table.rows,
            table.keys,
            self._keys,
            self._ids.view(np.uint8).reshape(self.capacity, width),
            np.array(keys, np.uint64),
            encoded.view(np.uint8).reshape(len(encoded), width),
            self._put,
            table.size,
        )

    def get(self, request_id: str) -> str | None:
        """The request's entity id, None if it is not remembered."""
        row = self._table.find(request_hash(request_id))
        if row < 0:
            return None
        return bytes(self._ids[row]).decode("utf-8", "surrogatepass")


# Requests up to which ``put`` one at a time costs less than the compiled loop: about
# 3.5 us a request against 7.5 us for the loop's call and arrays, whatever their number.
_FEW_REQUESTS = 2


@compiled
def _put_compiled(
    table_rows: np.ndarray,
    table_keys: np.ndarray,
    keys_of_rows: np.ndarray,
    ids: np.ndarray,
    keys: np.ndarray,
    encoded: np.ndarray,
    put: int,
    size: int,
) -> tuple[int, int]:
    """``RequestMap.put`` of each of ``keys`` in turn, its entity id's bytes a row of
    ``encoded``, on the map's table, its rows' keys and the bytes of its ids (``ids``, a row
    per request); the requests put and the table's size after."""
    capacity = len(keys_of_rows)
    for i in range(len(keys)):
        key = keys[i]
        slot, row = probe_compiled(table_rows, table_keys, key, False)
        if row < 0:
            row = np.int64(put % capacity)
            if put >= capacity:
                hole = probe_compiled(table_rows, table_keys, keys_of_rows[row], False)[0]
                vacate_compiled(table_rows, table_keys, int(hole), False)
                size -= 1
                slot = probe_compiled(table_rows, table_keys, key, False)[0]
            table_keys[slot] = key
            table_rows[slot] = row
            size += 1
            keys_of_rows[row] = key
            put += 1
        ids[row, :] = encoded[i, :]
    return put, size


@dataclasses.dataclass(slots=True)
class LeakWatch:
    """Everything the leak watch remembers about one model; pickled into a table value."""

    model_id: str
    coincidence: LabelCoincidentWrites
    gap: AvailabilityGap
    # Each monitored feature's WriteLag, shared by the features of the same SLA.
    write_lag: dict[str, WriteLag]
    future: FutureValues | None
    report_every_ms: float
    max_requests: int
    # request_id -> entity_id of recent live predictions (``max_requests`` of them).
    entities: RequestMap
    # Writes each feature's WriteLag accepted: its windows close every ``window`` of them.
    lag_writes: dict[str, int] = dataclasses.field(default_factory=dict)
    stream_time: float = -math.inf
    # The first round is due at the first time seen, whatever it is; not at -inf, which a
    # stream time reaches before any record with a time: a round there has no timestamp.
    next_report_at: float = -sys.float_info.max
    # Detector -> its flagged features, as last alerted.
    alarming: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    # Labels that could not be used: not binary, or an entity that is not known.
    labels_unusable: int = 0
    labels_unresolved: int = 0
    writes_ignored: int = 0
    # Served values of entities outside the gap's sample, not fed to availability_gap.
    values_unsampled: int = 0
    # The gap reads entities whose key's top so many bits are 0, within label_leak's sample;
    # the stream time, and the gap's pairs made and evicted, at the last round, which set it.
    gap_sample_bits: int = 0
    gap_round: tuple[float, int, int] = (-math.inf, 0, 0)

    @property
    def lag_detectors(self) -> tuple[WriteLag, ...]:
        """The distinct WriteLag detectors of ``write_lag``, in order of first feature."""
        return tuple({id(lag): lag for lag in self.write_lag.values()}.values())

    @property
    def sample_fraction(self) -> float:
        """The fraction of the entities' key range ``label_leak`` reads (1.0 until its
        table first fills)."""
        return self.coincidence.sample_fraction

    @property
    def gap_sample_fraction(self) -> float:
        """The fraction of the entities' key range ``availability_gap`` reads: within
        ``label_leak``'s, and halved at each round of points that finds the gap full."""
        return 2.0 ** -max(self.gap_sample_bits, self.coincidence.sample_bits)


@dataclasses.dataclass(frozen=True)
class LeakEffects:
    """What one record caused: evidence for the health policy, points and alerts."""

    evidence: tuple[Evidence, ...] = ()
    points: tuple[Point, ...] = ()
    alerts: tuple[Alert, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.evidence or self.points or self.alerts)


def split_settings(
    model: Model, group: str, own: Sequence[str], prefixes: Sequence[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A detector group's settings as (the caller's own keys, keyword arguments per prefix).

    ``coincidence_alpha`` goes to prefix ``coincidence`` as ``alpha``.

    Raises
    ------
    PortfolioError
        For a key that is neither one of ``own`` nor starts with a prefix.
    """
    own_settings: dict[str, Any] = {}
    per_prefix: dict[str, dict[str, Any]] = {prefix: {} for prefix in prefixes}
    for key, value in model.detector_settings(group).items():
        if key in own:
            own_settings[key] = value
            continue
        prefix = next((p for p in prefixes if key.startswith(f"{p}_")), None)
        if prefix is None:
            valid = [*own, *(f"{p}_<argument>" for p in prefixes)]
            raise PortfolioError(
                model.model_id,
                f"detectors.{group}.{key}",
                f"unknown key; valid: {', '.join(valid)}",
            )
        per_prefix[prefix][key.removeprefix(f"{prefix}_")] = value
    return own_settings, per_prefix


def build_detector(model: Model, key: str, detector: type[Any], arguments: dict[str, Any]) -> Any:
    """``detector(**arguments)``; a refused argument is a PortfolioError naming ``key``."""
    try:
        return detector(**arguments)
    except (TypeError, ValueError) as error:
        raise PortfolioError(model.model_id, key, str(error)) from None


def new_leak_watch(model: Model, *, future_values: bool = False) -> LeakWatch:
    """A fresh leak watch for ``model``; ``future_values`` adds the check of served values
    written after the prediction (off by default: ``streams.monitor.watch`` does it).

    Raises
    ------
    PortfolioError
        When the model's ``[detectors.leaks]`` settings do not fit the detectors.
    """
    key = "detectors.leaks"
    own, arguments = split_settings(model, "leaks", _OWN_KEYS, tuple(_DETECTOR_DEFAULTS))
    for prefix, defaults in _DETECTOR_DEFAULTS.items():
        arguments[prefix] = {**defaults, **arguments[prefix]}
    # Entities are kept until their labels can have come: the model's label delay.
    label_delay_ms = model.label_delay.total_seconds() * 1000.0
    arguments["coincidence"].setdefault("label_delay", label_delay_ms)
    max_bytes = own.get("max_bytes", DEFAULT_MAX_BYTES)
    if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and max_bytes >= 1):
        raise PortfolioError(model.model_id, f"{key}.max_bytes", "expected an integer >= 1")
    features = len(model.features)
    for prefix in ("coincidence", "gap"):
        arguments[prefix].setdefault("max_features", features)
    arguments["coincidence"].setdefault(
        "max_entities", _cap(max_bytes * _COINCIDENCE_SHARE, _coincidence_bytes(arguments))
    )
    arguments["gap"].setdefault("max_keys", _cap(max_bytes * _GAP_SHARE, _gap_bytes(arguments)))
    if "sla" in arguments["write_lag"]:
        raise PortfolioError(
            model.model_id, f"{key}.write_lag_sla", "set write_lag_sla on each feature"
        )
    # Features with the same SLA share a WriteLag (its state is per feature already), so a
    # worker holds a few of them per model rather than one per feature.
    slas = {
        feature.name: None
        if feature.write_lag_sla is None
        else feature.write_lag_sla.total_seconds() * 1000.0
        for feature in model.features
    }
    by_sla = {
        sla: build_detector(
            model,
            f"{key}.write_lag",
            WriteLag,
            {**arguments["write_lag"], "sla": sla},
        )
        for sla in dict.fromkeys(slas.values())
    }
    write_lag = {name: by_sla[sla] for name, sla in slas.items()}
    future = None
    if future_values:
        skew = {"skew_tolerance": own.get("skew_tolerance", 0.0)}
        future = build_detector(model, f"{key}.skew_tolerance", FutureValues, skew)
    report_every = own.get("report_every", DEFAULT_REPORT_EVERY)
    if not (isinstance(report_every, int | float) and 0 < report_every < math.inf):
        raise PortfolioError(model.model_id, f"{key}.report_every", "expected seconds > 0")
    max_requests = own.get("max_requests", _cap(max_bytes * _REQUESTS_SHARE, _REQUEST_BYTES))
    if not (isinstance(max_requests, int) and not isinstance(max_requests, bool)):
        raise PortfolioError(model.model_id, f"{key}.max_requests", "expected an integer >= 1")
    if max_requests < 1:
        raise PortfolioError(model.model_id, f"{key}.max_requests", "expected an integer >= 1")
    return LeakWatch(
        model_id=model.model_id,
        coincidence=build_detector(
            model, f"{key}.coincidence", LabelCoincidentWrites, arguments["coincidence"]
        ),
        gap=build_detector(model, f"{key}.gap", AvailabilityGap, arguments["gap"]),
        write_lag=write_lag,
        future=future,
        report_every_ms=float(report_every) * 1000.0,
        max_requests=max_requests,
        entities=RequestMap(max_requests),
    )


def _cap(share: float, each: int) -> int:
    """How many items of ``each`` bytes fit in ``share`` bytes; at least one."""
    return max(1, int(share) // each)


def _coincidence_bytes(arguments: dict[str, dict[str, Any]]) -> int:
    """An entity's bytes in ``label_leak``, with its features as set (an int, or any
    value the detector will refuse: then the cap is moot)."""
    features = arguments["coincidence"]["max_features"]
    columns = features if isinstance(features, int) and features > 0 else 1
    return LabelCoincidentWrites.bytes_per_entity(columns)


def _gap_bytes(arguments: dict[str, dict[str, Any]]) -> int:
    """A pair's bytes in ``availability_gap``, with its ``history`` and ``pending``."""
    sizes = [arguments["gap"].get(name, 8) for name in ("history", "pending")]
    history, pending = (n if isinstance(n, int) and n > 0 else 1 for n in sizes)
    return AvailabilityGap.bytes_per_key(history, pending)


def observe(
    model: Model, watch: LeakWatch, record: FeatureWrite | Prediction | GroundTruth
) -> LeakEffects:
    """Feed one record about ``model``; returns what it caused. Mutates ``watch``.

    Writes of features the model does not monitor, and predictions that are not ``live``,
    are ignored (``writes_ignored`` counts the writes).
    """
    found = observe_many(model, watch, [record])
    return found[0][1] if found else LeakEffects()


def observe_many(
    model: Model, watch: LeakWatch, records: Sequence[FeatureWrite | Prediction | GroundTruth]
) -> list[tuple[int, LeakEffects]]:
    """Feed records about ``model`` in order: what ``observe`` one by one gives, as
    (position, effects) for each record that caused something. Mutates ``watch``.

    The label-coincidence and availability-gap detectors read their events a batch at a
    time, up to each round of points (which reads them as they are at its record).
    """
    return _observe(model, watch, Batch.from_records(model.model_id, records), every_role=True)


def observe_batch(model: Model, watch: LeakWatch, batch: Batch) -> list[tuple[int, LeakEffects]]:
    """``observe_many`` of the batch's records but its predictions that are not ``live``,
    which the monitor gives only to the model's other watches: (position in the batch,
    effects) for each record that caused something. Mutates ``watch``."""
    return _observe(model, watch, batch, every_role=False)


def _observe(
    model: Model, watch: LeakWatch, batch: Batch, every_role: bool
) -> list[tuple[int, LeakEffects]]:
    """``observe_many``; predictions that are not ``live`` move the stream time only if
    ``every_role``. The batch's writes go as runs of its columns (``Batch.writes``),
    between the other records, cut where a round of points is due; its live predictions
    go as runs of columns when they can (``_served``), else each alone (``_prediction``),
    and without a step each when they are many (``_bulk``)."""
    if len(batch) == 1 and type(batch.records[0]) is FeatureWrite:
        lone = _lone_write(model, watch, batch)
        if lone is not None:
            return lone
    found: list[tuple[int, LeakEffects]] = []
    writes = batch.writes
    # Per write: the monitored writes before it (and all).
    before: Sequence[int]
    if not len(writes.ok):
        before = _NO_BEFORE
    else:
        monitored = watch.write_lag
        followed = [name in monitored for name in writes.features]
        if all(followed):
            # As the agent routes them: without a step per write.
            before = range(len(writes.ok) + 1)
        else:
            codes = writes.codes.tolist()
            before = list(itertools.accumulate(map(followed.__getitem__, codes), initial=0))
    pending = _Pending(batch.records, writes, 0, before, 0)
    stream_time = watch.stream_time
    served = _served(watch, batch)
    positions, latest, counts, others = _bulk(len(batch), writes, served)
    # The bulk's records queued.
    queued = 0
    records = batch.records
    # The number of a prediction among the batch's: read only when none goes as a run,
    # and then each takes a step.
    n = -1
    for k in itertools.chain(others, (len(records),)):
        # The bulk's records before it first: at once, unless a round falls due among them.
        end = bisect.bisect_left(positions, k, queued)
        if end > queued:
            if stream_time < watch.next_report_at > latest[end - 1]:
                stream_time = max(stream_time, latest[end - 1])
                queued = end
                pending.stop = counts[end]
            else:
                pending, stream_time, queued = _queue_bulk(
                    model,
                    watch,
                    pending,
                    (positions, latest, counts),
                    queued,
                    end,
                    stream_time,
                    served,
                    found,
                )
        if k == len(records):
            break
        record = records[k]
        if isinstance(record, Prediction):
            n += 1
            at = record.predicted_at
            if record.role == "live":
                # Else it goes in its round's slice of ``served``.
                if served is None:
                    _prediction(watch, record, batch.request_hashes[n], k, pending)
            elif not every_role:
                continue
        else:
            truth = cast(GroundTruth, record)
            _label(watch, truth, k, pending, served)
            at = truth.label_at
        if at > stream_time:
            stream_time = float(at)
        if stream_time >= watch.next_report_at:
            watch.stream_time = stream_time
            found += _effects(model, watch, pending, k, served)
            pending = pending.after()
    watch.stream_time = stream_time
    found += _effects(model, watch, pending, None, served)
    if served is not None:
        _put(watch, served, len(served.requests))
    return found


def _lone_write(
    model: Model, watch: LeakWatch, batch: Batch
) -> list[tuple[int, LeakEffects]] | None:
    """``_observe`` of a batch of one write of a monitored feature after which no round of
    points is due, with the detectors called as ``_effects`` calls them, without the steps
    that order and place a batch's events; None, with nothing changed, for any other batch
    of one write. A worker holding many models feeds mostly such batches: a model's
    feature writes come apart, a few a minute each, and each is a batch of its own."""
    writes = batch.writes
    if writes.features[0] not in watch.write_lag:
        return None
    # A time that is not one (NaN) goes the batch's way, as does one after which a round
    # is due.
    written = writes.written_at.item(0)
    stream_time = watch.stream_time
    if not stream_time < watch.next_report_at > written:
        return None
    watch.stream_time = max(stream_time, written)
    coincidence, gap = watch.coincidence, watch.gap
    # ``update_writes`` of one write is ``update`` of its event.
    coincidence.update(writes.event(0))
    bits_after = coincidence.sample_bits
    # ``_sampled`` of one write: the gap's sample within label_leak's after the write,
    # whether or not the write halved it.
    inside = in_sample(writes.entities.item(0), max(watch.gap_sample_bits, bits_after))
    gap.update_writes(writes if inside else NO_WRITES, (), _NONE)
    # The gap flags only at a served value, never at a write.
    queued = _lag_windows(watch, writes)
    queued += [(0, 0, "label_leak", leak) for _, leak in coincidence.flags]
    return _caused(model, watch, batch.records, writes, None, queued, bits_after)


# A batch's records that go without a step each (``_bulk``): their positions in the batch,
# the latest time up to each (-inf before any; NaN is no time), and the writes among the
# first so many of them (``[i]``: the first i).
_Bulk = tuple[Sequence[int], Sequence[float], Sequence[int]]


def _bulk(
    size: int, writes: WriteColumns, served: _Served | None
) -> tuple[Sequence[int], Sequence[float], Sequence[int], Sequence[int]]:
    """The bulk of a batch of ``size`` records (``_Bulk``): its writes, and its live
    predictions that go as runs when they are more than ``SMALL_BATCH`` (fewer take a step
    each, cheaper than the columns that merge them); and the positions of the others, in
    order, which take a step each. A tuple, not a named one: a batch of one record pays
    for what it builds."""
    count = len(writes.ok)
    if served is None or len(served.records) <= SMALL_BATCH:
        if not count:
            return (), (), _NO_BEFORE, range(size)
        at = writes.positions
        positions = at.tolist()
        if count > SMALL_BATCH:
            latest = np.fmax.accumulate(np.fmax(writes.written_at, -math.inf)).tolist()
        else:
            # ``max`` keeps the first unless the second is greater, as the stream time does.
            latest = list(itertools.accumulate(writes.written_at.tolist(), max, initial=-math.inf))
            del latest[0]
        taken: Sequence[int] = range(count + 1)
    else:
        at = np.concatenate((writes.positions, served.records))
        # A prediction's time moves the stream time as a write's does.
        order = np.argsort(at, kind="stable")
        at = at[order]
        positions = at.tolist()
        times = np.concatenate((writes.written_at, served.predicted_at))[order]
        latest = np.fmax.accumulate(np.fmax(times, -math.inf)).tolist()
        taken = [0, *np.cumsum(order < count).tolist()]
    if len(positions) == size:
        return positions, latest, taken, ()
    others = np.ones(size, bool)
    others[at] = False
    return positions, latest, taken, np.flatnonzero(others).tolist()


def _queue_bulk(
    model: Model,
    watch: LeakWatch,
    pending: _Pending,
    bulk: _Bulk,
    queued: int,
    end: int,
    stream_time: float,
    served: _Served | None,
    found: list[tuple[int, LeakEffects]],
) -> tuple[_Pending, float, int]:
    """Queues the bulk's records after the first ``queued`` up to ``end``, each round of
    points due after one of them with the effects so far (added to ``found``); the
    pending events after, the stream time and the bulk's records queued."""
    w = queued
    positions, latest, counts = bulk
    while w < end:
        due = watch.next_report_at
        if stream_time >= due:
            last = w
        elif latest[end - 1] >= due:
            last = bisect.bisect_left(latest, due, w, end)
        else:
            stream_time = max(stream_time, latest[end - 1])
            w = end
            break
        stream_time = max(stream_time, latest[last])
        w = last + 1
        pending.stop = counts[w]
        watch.stream_time = stream_time
        found += _effects(model, watch, pending, positions[last], served)
        pending = pending.after()
    pending.stop = counts[w]
    return pending, stream_time, w


@dataclasses.dataclass(slots=True)
class _Served:
    """A batch's live predictions as columns (``_served``), in order, for them to reach
    the request map and the availability gap as runs: each round's are a slice of them,
    so that a round costs no column of its own."""

    predictions: list[Prediction]
    # Each one's position in the batch, request hash, entity id, its hash and its time.
    records: np.ndarray
    requests: list[int]
    entity_ids: list[str]
    entities: np.ndarray
    predicted_at: np.ndarray
    # The monitored features the predictions serve, and their places in the served order
    # (None: every feature served is monitored).
    features: tuple[str, ...]
    places: list[int] | None
    # How many of them (the first) the request map has.
    put: int = 0


def _served(watch: LeakWatch, batch: Batch) -> _Served | None:
    """The batch's predictions as columns, when its live ones can go as runs: without
    ``future`` (which judges each value), enough of them to pay for the columns, all
    serving the same features in the same order (``Batch.served_features``), with str
    entity ids and int or float times. None otherwise: then each goes alone."""
    # The records first: a batch of a few needs no list of its predictions.
    if watch.future is not None or len(batch) < _FEWEST_AS_RUNS:
        return None
    predictions = batch.predictions
    if len(predictions) < _FEWEST_AS_RUNS:
        return None
    features = batch.served_features
    if features is None:
        return None
    entity_ids = list(map(get_entity_id, predictions))
    times = list(map(get_predicted_at, predictions))
    if set(map(type, entity_ids)) != {str} or not set(map(type, times)) <= {int, float}:
        return None
    try:
        predicted_at = np.array(times, np.float64)
    except OverflowError:  # an int beyond the floats: it goes alone, and is rejected
        return None
    records: Sequence[int] = batch.prediction_index
    requests = batch.request_hashes
    roles = list(map(get_role, predictions))
    # Nearly always all live: counted by identity, without a step per prediction.
    if roles.count("live") < len(roles):
        live = [role == "live" for role in roles]
        predicted_at = predicted_at[np.array(live, bool)]
        records, requests, entity_ids, predictions = (
            list(itertools.compress(column, live))
            for column in (records, requests, entity_ids, predictions)
        )
    monitored = watch.write_lag
    places = None
    if not monitored.keys() >= set(features):
        places = [j for j, name in enumerate(features) if name in monitored]
        features = tuple(features[j] for j in places)
    return _Served(
        predictions,
        np.fromiter(records, np.intp, len(records)),
        requests,
        entity_ids,
        np.array(entity_hashes(entity_ids), np.uint64),
        predicted_at,
        features,
        places,
    )


def _written_at(served: _Served, taken: slice | np.ndarray) -> np.ndarray:
    """The write times of the monitored values of live predictions ``taken``: float64, a
    row each, NaN for a value that is not ``finite`` (the gap rejects it). A round's own:
    those its sample leaves out are never read."""
    predictions = served.predictions
    if isinstance(taken, slice):
        carried = list(map(get_features, predictions[taken]))
    else:
        carried = [predictions[n].features for n in taken.tolist()]
    times = list(map(get_written_at, itertools.chain.from_iterable(map(_values, carried))))
    try:
        if not set(map(type, times)) <= {int, float}:
            raise TypeError
        written = np.array(times, np.float64)
    except (TypeError, OverflowError):
        # Malformed times (a bool, a str, an int beyond the floats): rare, one by one.
        written = np.array([float(t) if finite(t) else math.nan for t in times], np.float64)
    written = written.reshape(len(carried), -1)
    return written if served.places is None else written[:, served.places]


_values = operator.methodcaller("values")


def _put(watch: LeakWatch, served: _Served, stop: int) -> None:
    """Puts the batch's live predictions before number ``stop`` in the request map, those
    it does not have yet, in order."""
    start = served.put
    if stop > start:
        watch.entities.put_many(served.requests[start:stop], served.entity_ids[start:stop])
        served.put = stop


# A record's slots (its events that may give evidence) are ``k * _SUB + j``: evidence
# comes in the order of its slots, record after record. A record has fewer events than
# this (a prediction's values with ``future``: the model's features).
_SUB = 1 << 20


class _Pending:
    """The detectors' events of records not read yet, of the batch's ``records``. A run of
    the batch's writes (``start`` to ``stop``, ``before``: the monitored writes before
    each), its labels and the gap's other events, each with its record, and its live
    predictions that go as runs (``live`` on among ``_Served``'s); evidence comes in the
    order of slots (``_SUB``), each slot's flags first, then what else its record found
    there (a window its write closed, a value from the future)."""

    def __init__(
        self,
        records: Sequence[Any],
        writes: WriteColumns,
        start: int,
        before: Sequence[int],
        live: int,
    ) -> None:
        self.records = records
        self.writes = writes
        self.start = self.stop = start
        self.before = before
        self.live = self.live_stop = live
        self.labels: list[Label] = []
        self.label_records: list[int] = []
        # The gap's events that are not writes, each one's slot, and the labels queued
        # before it (its record's included): label_leak's sample after them (and the
        # writes before it) is the one it is read in.
        self.gap: list[ServedFeature | ServedValues] = []
        self.gap_slots: list[int] = []
        self.gap_after: list[int] = []
        # Evidence found at once, by slot.
        self.found: dict[int, list[Evidence]] = {}

    def after(self) -> _Pending:
        """The events after these, once read."""
        return _Pending(self.records, self.writes, self.stop, self.before, self.live_stop)

    def gap_slot(self, k: int, j: int, event: Any) -> int:
        """Queues event ``j`` of record ``k`` for the gap, which may flag; its slot."""
        slot = k * _SUB + j
        self.gap_slots.append(slot)
        self.gap.append(event)
        self.gap_after.append(len(self.labels))
        return slot

    def followed(self) -> WriteColumns:
        """The run's writes of monitored features."""
        start, stop = self.start, self.stop
        if self.before[stop] - self.before[start] == stop - start:
            if stop - start == len(self.writes.ok):
                return self.writes
            return self.writes.take(slice(start, stop))
        ok = np.diff(self.before[start : stop + 1]) > 0
        return self.writes.take(start + np.flatnonzero(ok))


def _effects(
    model: Model,
    watch: LeakWatch,
    pending: _Pending,
    report_at: int | None,
    served: _Served | None,
) -> list[tuple[int, LeakEffects]]:
    """Feeds the pending events; each record's effects, and the round of points after the
    record ``report_at`` (None: no round is due)."""
    coincidence, gap = watch.coincidence, watch.gap
    start, stop, before = pending.start, pending.stop, pending.before
    watch.writes_ignored += (stop - start) - (before[stop] - before[start])
    writes = pending.followed()
    bits = coincidence.sample_bits
    # Label j's place among the coincidence events: after the writes of records before it.
    if pending.labels:
        label_records = np.array(pending.label_records, np.intp)
        places = _places(writes.positions, label_records)
    else:
        label_records = places = _NONE
    coincidence.update_writes(writes, pending.labels, places)
    bits_after = coincidence.sample_bits
    if served is not None:
        # The batch's live predictions up to the record of the round.
        pending.live_stop = (
            len(served.records)
            if report_at is None
            else int(np.searchsorted(served.records, report_at, "right"))
        )
    gap_writes, events, slots_of_gap, run = _sampled(
        watch, pending, bits, served, writes, places, label_records
    )
    if slots_of_gap:
        gap_records = np.array(slots_of_gap, np.int64) // _SUB
        gap_places = _places(gap_writes.positions, gap_records)
    else:
        gap_places = _NONE
    if run is None or served is None:
        gap.update_writes(gap_writes, events, gap_places)
        slots_of_run = None
    else:
        values = ServedRun(
            served.entities[run.taken],
            served.predicted_at[run.taken],
            served.features,
            _written_at(served, run.taken),
            run.before,
        )
        gap.update_writes(gap_writes, events, gap_places, values)
        slots_of_run = run.records * _SUB
    flagged = []
    if gap.flags:
        total = len(gap_writes.ok) + len(events)
        for place, found in gap.flags:
            if place >= total and slots_of_run is not None:
                slot = int(slots_of_run[place - total])
            else:
                slot = slots_of_gap[int(np.searchsorted(gap_places, place))]
            flagged.append((slot, found))
    # (slot, 0: a flag or 1: found at once, detector or "", what was found), by slot.
    queued: list[tuple[int, int, str, Any]] = [
        (slot, 1, "", found) for slot, found in pending.found.items()
    ]
    queued += _lag_windows(watch, writes)
    for place, leak in coincidence.flags:
        j = int(np.searchsorted(places, place))
        is_label = j < len(places) and places[j] == place
        k = pending.label_records[j] if is_label else int(writes.positions[place - j])
        queued.append((k * _SUB, 0, "label_leak", leak))
    queued += [(slot, 0, "availability_gap", found) for slot, found in flagged]
    return _caused(model, watch, pending.records, pending.writes, report_at, queued, bits_after)


def _caused(
    model: Model,
    watch: LeakWatch,
    records: Sequence[Any],
    writes: WriteColumns,
    report_at: int | None,
    queued: list[tuple[int, int, str, Any]],
    bits_after: int,
) -> list[tuple[int, LeakEffects]]:
    """Each record's effects from what its events ``queued`` (slot, 0 for a flag or 1 for
    what was found at once, detector, what was found) among the batch's ``records``
    (``writes``: its writes' columns), and the round of points after record ``report_at``
    (None: none is due; ``bits_after``: label_leak's sample then)."""
    if report_at is None and not queued:
        return []
    queued.sort(key=_SLOT_ORDER)
    evidence: dict[int, list[Evidence]] = {}
    for slot, _, name, found in queued:
        k = slot // _SUB
        if name:
            at_ms = _slot_at(records, writes, slot)
            evidence.setdefault(k, []).append(_flag_evidence(name, found, at_ms / 1000.0))
        else:
            evidence.setdefault(k, []).extend(found)
    if report_at is not None:
        evidence.setdefault(report_at, [])
        _gap_round(watch, bits_after)
    effects = []
    for k, caused in evidence.items():
        points = [_flag_point(watch, e) for e in caused if e.alarm and e.detector in _LEAK_POINTS]
        if k == report_at:
            points.extend(_report(watch))
            step = watch.report_every_ms
            watch.next_report_at = (watch.stream_time // step + 1) * step
        alerts = [
            alert
            for detector, alarms in _by_detector(caused).items()
            if (alert := _alert_change(model, watch, detector, alarms))
        ]
        if caused or points or alerts:
            effects.append((k, LeakEffects(tuple(caused), tuple(points), tuple(alerts))))
    return effects


def _places(positions: np.ndarray, records: np.ndarray) -> np.ndarray:
    """The places of events of ``records`` among writes at ``positions`` (both
    increasing, none in both): after the writes before each, and the events before it."""
    if not len(records):
        return _NONE
    if not len(positions):
        return np.arange(len(records))
    places: np.ndarray = np.searchsorted(positions, records) + np.arange(len(records))
    return places


def _slot_at(records: Sequence[Any], writes: WriteColumns, slot: int) -> float:
    """The time of a slot: its record's (a write's from its columns)."""
    record = records[slot // _SUB]
    if isinstance(record, Prediction):
        return record.predicted_at
    if isinstance(record, GroundTruth):
        return record.label_at
    w = int(np.searchsorted(writes.positions, slot // _SUB))
    return float(writes.written_at[w])


_NONE = np.zeros(0, np.intp)
# The monitored writes before each of none.
_NO_BEFORE = (0,)


class _Run(NamedTuple):
    """Live predictions of a run: which of ``_Served``'s (a slice, or their numbers there),
    each one's record, and the writes queued before it (the gap's only other events when
    predictions go as runs)."""

    taken: slice | np.ndarray
    records: np.ndarray
    before: np.ndarray


def _sampled(
    watch: LeakWatch,
    pending: _Pending,
    bits: int,
    served: _Served | None,
    writes: WriteColumns,
    places: np.ndarray,
    label_records: np.ndarray,
) -> tuple[WriteColumns, list[Any], list[int], _Run | None]:
    """The gap's events of entities in its sample: within ``label_leak``'s as it was after
    the coincidence events queued before each (``bits`` before the first), as one record
    at a time would, and within ``gap_sample_bits``: the monitored ``writes`` (label ``j``
    among them at ``places[j]``) kept, the other events kept and their slots, and the
    run of live predictions kept, each with the writes kept before it (None if it keeps
    none). Counts the served values left out. The other events are those of predictions
    that go alone, so a batch has them or a run, never both."""
    halvings = watch.coincidence.halvings
    own = watch.gap_sample_bits
    events, slots = pending.gap, pending.gap_slots
    running = served is not None and pending.live_stop > pending.live
    taken: slice | np.ndarray = slice(pending.live, pending.live_stop) if running else _NONE
    if not (bits or halvings or own):
        return writes, events, slots, _run(served, taken, writes) if running else None
    # label_leak's sample bits after coincidence event i: those of the last halving at
    # or before it, and ``bits`` before any; one for every event (``uniform``) in a run
    # that did not halve it, without counting the events queued before each.
    uniform = None if halvings else max(own, bits)
    if halvings:
        positions = np.array([position for position, _ in halvings], np.intp)
        after = np.array([bits, *(found for _, found in halvings)])

    def samples(queued: np.ndarray) -> np.ndarray:
        """The gap's sample bits of events after ``queued`` coincidence events each."""
        return np.maximum(own, after[np.searchsorted(positions, queued)])

    # A write's coincidence events queued: those before it and its own.
    inside = _in_samples(
        writes.entities,
        uniform
        if uniform is not None
        else samples(
            np.arange(1, len(writes.ok) + 1) + np.searchsorted(label_records, writes.positions)
        ),
    )
    kept = writes if inside.all() else writes.take(np.flatnonzero(inside))
    if events:
        entities = np.array([entity_hash(e.entity_id) for e in events], np.uint64)
        sampled = _in_samples(
            entities,
            uniform
            if uniform is not None
            else samples(
                np.searchsorted(writes.positions, np.array(slots, np.int64) // _SUB)
                + np.array(pending.gap_after)
            ),
        ).tolist()
        if not all(sampled):
            for event, inside_one in zip(events, sampled, strict=True):
                if not inside_one:
                    width = len(event.features) if isinstance(event, ServedValues) else 1
                    watch.values_unsampled += width
            events = [e for e, inside_one in zip(events, sampled, strict=True) if inside_one]
            slots = [s for s, inside_one in zip(slots, sampled, strict=True) if inside_one]
    if not running:
        return kept, events, slots, None
    assert served is not None
    records = served.records[taken]
    # The coincidence events queued before each prediction (none is its own).
    inside = _in_samples(
        served.entities[taken],
        uniform
        if uniform is not None
        else samples(
            np.searchsorted(writes.positions, records) + np.searchsorted(label_records, records)
        ),
    )
    left_out = len(inside) - int(inside.sum())
    if left_out:
        watch.values_unsampled += len(served.features) * left_out
        taken = pending.live + np.flatnonzero(inside)
        if not len(taken):
            return kept, events, slots, None
    return kept, events, slots, _run(served, taken, kept)


def _run(served: _Served | None, taken: slice | np.ndarray, writes: WriteColumns) -> _Run:
    """The run of live predictions ``taken`` of ``served``, after ``writes``."""
    assert served is not None
    records = served.records[taken]
    return _Run(taken, records, np.searchsorted(writes.positions, records))


def _in_samples(keys: np.ndarray, bits: np.ndarray | int) -> np.ndarray:
    """``in_sample`` of each of ``keys`` (uint64) with its ``bits`` (0 to 64), or with
    the same ``bits`` each."""
    shift = np.minimum(64 - bits, 63).astype(np.uint64)
    in_range: np.ndarray = (bits == 0) | (keys >> shift == 0)
    return in_range


def _gap_round(watch: LeakWatch, bits: int) -> None:
    """At a round of points (the same records whatever the batches), if the gap forgot
    pairs to make room since the last round: halves its sample (within label_leak's, of
    ``bits``) at least once, and until the pairs it made since the last round, at their
    rate over ``gap_max_delay``, would fit its cap."""
    gap = watch.gap
    last_at, last_made, last_evicted = watch.gap_round
    watch.gap_round = (watch.stream_time, gap.made, gap.evicted)
    span = watch.stream_time - last_at
    if gap.evicted == last_evicted or not 0 < span < math.inf:
        return
    needed = (gap.made - last_made) * float(gap.max_delay) / span
    sample = max(watch.gap_sample_bits, bits) + 1
    while needed / 2 > gap.max_keys and sample < 64:
        sample += 1
        needed /= 2
    watch.gap_sample_bits = min(64, sample)


def _lag_windows(watch: LeakWatch, writes: WriteColumns) -> list[tuple[int, int, str, Any]]:
    """Feeds the monitored writes to the ``WriteLag`` of their features, each detector its
    features' writes in one call (its state per feature, the same as a feature's at a
    time: a call per feature cost more than the counting on a few dozen writes); the
    verdicts of each window a write closed, found at once at the write's slot."""
    if not len(writes.ok):
        return []
    found = []
    features = writes.features
    codes = writes.codes
    # The features written, in order of first write, and their writes accepted.
    if len(features) == 1:
        order = [0]
        accepted = [int(np.count_nonzero(writes.ok))]
    else:
        order = list(dict.fromkeys(codes.tolist()))
        accepted = np.bincount(codes[writes.ok], minlength=len(features)).tolist()
    # Per detector, in order of its first feature: the codes of its features written.
    shared: dict[int, tuple[WriteLag, list[int]]] = {}
    for code in order:
        feature = features[code]
        watch.lag_writes[feature] = watch.lag_writes.get(feature, 0) + accepted[code]
        lag = watch.write_lag[feature]
        shared.setdefault(id(lag), (lag, []))[1].append(code)
    for lag, own in shared.values():
        rows = None if len(own) == len(order) else np.flatnonzero(np.isin(codes, own))
        lag.update_writes(writes, rows)
        for position, summary in lag.windows_closed:
            w = int(np.searchsorted(writes.positions, position))
            at = float(writes.written_at[w]) / 1000.0
            found.append((position * _SUB, 1, "", _window_evidence(lag, summary, at)))
        if len(own) > 1:
            # The detector is pickled as a call per feature leaves it.
            lag.keep_windows(features[own[-1]])
    return found


def _window_evidence(lag: WriteLag, summary: WriteLagSummary, at: float) -> list[Evidence]:
    """The verdicts of a window of writes that just closed (``summary``: its feature's
    right after)."""
    feature = summary.feature
    details: dict[str, float | int | str | bool] = {"p50_ms": summary.p50, "p99_ms": summary.p99}
    verdicts = []
    if not math.isnan(summary.reference_lag):
        reference = {"reference_lag_ms": summary.reference_lag}
        verdicts.append(("write_lag_drift", summary.drifting, summary.drift_p_value, reference))
    if lag.sla is not None:
        verdicts.append(
            ("write_lag_sla", summary.sla_broken, summary.sla_p_value, {"sla_ms": lag.sla})
        )
    return [
        Evidence(
            detector=detector,
            feature=feature,
            at=at,
            alarm=alarm,
            alpha=lag.alpha,
            p_value=p_value,
            windowed=True,
            details={**details, **extra},
        )
        for detector, alarm, p_value, extra in verdicts
    ]


def _prediction(
    watch: LeakWatch, prediction: Prediction, request: int, k: int, pending: _Pending
) -> None:
    """Queues a live prediction's served values, one event or one per value (with
    ``future``); ``request``: its request hash."""
    watch.entities.put(request, prediction.entity_id)
    at_ms = prediction.predicted_at
    features, monitored = prediction.features, watch.write_lag
    if watch.future is None:
        # The gap flags of the prediction's values, in served order: one event for them all.
        seen: Iterable[FeatureSeen] = features.values()
        if monitored.keys() >= features.keys():
            names = tuple(features)
        else:
            names = tuple(name for name in features if name in monitored)
            seen = map(features.__getitem__, names)
        written_at = tuple(map(get_written_at, seen))
        together = ServedValues(prediction.entity_id, at_ms, names, written_at)
        pending.gap_slot(k, 0, together)
        return
    values = [
        ServedFeature(prediction.entity_id, name, seen.value, seen.written_at, at_ms)
        for name, seen in features.items()
        if name in monitored
    ]
    for j, served in enumerate(values):
        slot = pending.gap_slot(k, j, served)
        name, seen_at = served.feature, served.written_at
        before = watch.future.future_values
        watch.future.update(served)
        if watch.future.future_values != before:
            future = Evidence(
                detector="future_values",
                feature=name,
                at=at_ms / 1000.0,
                alarm=True,
                critical=True,
                details={
                    "skew_ms": seen_at - at_ms,
                    "future_values": watch.future.future_values,
                },
            )
            pending.found[slot] = [future]


def _label(
    watch: LeakWatch, truth: GroundTruth, k: int, pending: _Pending, served: _Served | None
) -> None:
    label = truth.label
    if not (isinstance(label, bool | int | float) and label in (0, 1)):
        watch.labels_unusable += 1
        return
    entity_id = truth.entity_id
    if entity_id is None and truth.request_id is not None:
        if served is not None:
            # The predictions before it first: it may name their requests.
            _put(watch, served, int(np.searchsorted(served.records, k)))
        entity_id = watch.entities.get(truth.request_id)
    if entity_id is None:
        watch.labels_unresolved += 1
        return
    pending.labels.append(Label(entity_id, int(label), truth.label_at))
    pending.label_records.append(k)


def _flag_evidence(detector: str, found: Any, at: float) -> Evidence:
    details: dict[str, float | int | str | bool]
    if detector == "label_leak":
        details = {
            "score": found.score,
            "leak_class": found.leak_class,
            "labels": sum(found.labels),
            "unjudged": found.unjudged,
        }
    else:
        details = {"gap_rate": found.gap_rate, "predictions": found.predictions}
    return Evidence(
        detector=detector,
        feature=found.feature,
        at=at,
        alarm=True,
        p_value=found.p_value,
        details=details,
    )


# Predictions in a batch below which each goes alone: the columns of a run cost more.
_FEWEST_AS_RUNS = 8
# Evidence in the order of its slots, each slot's flags first.
_SLOT_ORDER = operator.itemgetter(0, 1)
_LEAK_POINTS = frozenset({"label_leak", "availability_gap", "future_values"})


def _flag_point(watch: LeakWatch, evidence: Evidence) -> Point:
    tags = {
        "model": watch.model_id,
        "feature": evidence.feature or "",
        "detector": evidence.detector,
    }
    fields: dict[str, FieldValue] = {"flagged": 1, **evidence.details}
    if evidence.p_value is not None:
        fields["p_value"] = evidence.p_value
    return point("leak", tags, fields, int(evidence.at * 1000))


def _report(watch: LeakWatch) -> list[Point]:
    """One round of write-lag and leak points, at the watch's stream time."""
    time_ms = int(watch.stream_time)
    model_id = watch.model_id
    # A feature's gap rate means something once predictions used it.
    gaps = watch.gap.rates
    future = watch.future.counts if watch.future is not None else {}
    points = []
    summaries = {}
    for detector in watch.lag_detectors:
        summaries.update(detector.write_lag)
    for name in watch.write_lag:
        if name not in summaries:
            continue
        summary = summaries[name]
        fields: dict[str, FieldValue] = {
            "p50_ms": summary.p50,
            "p99_ms": summary.p99,
            "writes": summary.writes,
            "drift_p_value": summary.drift_p_value,
            "sla_p_value": summary.sla_p_value,
        }
        if name in gaps:
            fields["gap_rate"] = gaps[name][1]
        if watch.future is not None:
            fields["future_values"] = future[name].future if name in future else 0
        points.append(point("write_lag", {"model": model_id, "feature": name}, fields, time_ms))
    unsampled, fraction = watch.coincidence.unsampled, watch.sample_fraction
    for name, (score, p_value, leaking, labels, unjudged) in watch.coincidence.scores.items():
        fields = {
            "score": score,
            "p_value": p_value,
            "flagged": int(leaking),
            "labels": labels,
            "unjudged": unjudged,
            "unsampled": unsampled,
            "sample_fraction": fraction,
        }
        tags = {"model": model_id, "feature": name, "detector": "label_leak"}
        points.append(point("leak", tags, fields, time_ms))
    fraction = watch.gap_sample_fraction
    for name, (predictions, rate, p_value, gapped) in gaps.items():
        fields = {
            "gap_rate": rate,
            "p_value": p_value,
            "flagged": int(gapped),
            "predictions": predictions,
            "values_unsampled": watch.values_unsampled,
            "sample_fraction": fraction,
        }
        tags = {"model": model_id, "feature": name, "detector": "availability_gap"}
        points.append(point("leak", tags, fields, time_ms))
    return points


def _by_detector(evidence: list[Evidence]) -> dict[str, dict[str, bool]]:
    """Per detector, in order of first appearance: {feature: alarm}, the last word per feature."""
    grouped: dict[str, dict[str, bool]] = {}
    for e in evidence:
        grouped.setdefault(e.detector, {})[e.feature or ""] = e.alarm
    return grouped


def _alert_change(
    model: Model, watch: LeakWatch, detector: str, alarms: dict[str, bool]
) -> Alert | None:
    """An alert when the set of features ``detector`` flags changes."""
    before = watch.alarming.get(detector, set())
    after = {f for f in before if alarms.get(f, True)} | {f for f, on in alarms.items() if on}
    if after == before:
        return None
    watch.alarming[detector] = after
    if not after:
        text = f"{model.model_id}: {detector} is quiet again"
        return detector_alert(model.model_id, model.owner, detector, "normal", text)
    features = ", ".join(sorted(after))
    text = f"{model.model_id}: {detector} flags {features}"
    severity = ALERT_SEVERITIES[detector]
    return detector_alert(model.model_id, model.owner, detector, severity, text, features)
