"""Serving/training availability gap: training sees values that serving could not yet read."""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import hashlib
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors import _batch
from detectors._exact import binomial_sf
from detectors.leaks._anytime import AnytimePValue
from detectors.leaks._arguments import require_counts, require_fractions
from detectors.leaks._memory import pack_times, unpack_times
from detectors.leaks.events import (
    EntityId,
    FeatureWrite,
    ServedFeature,
    checked_write,
    finite,
)


@dataclasses.dataclass(frozen=True)
class GapEvidence:
    """One feature's predictions, and how many had a training value serving could not read.

    Attributes
    ----------
    feature
        The feature's name.
    predictions
        Predictions that used the feature.
    gaps
        Those for which the value a point-in-time training join picks (the newest with
        ``event_at <= predicted_at``) was written after ``predicted_at``.
    gap_rate
        ``gaps / predictions`` (0.0 before any prediction). Gaps found by writes that have
        not arrived yet are missing, so it can only grow as they do.
    p_value
        The anytime-valid p-value of "the gap rate is at most ``max_gap_rate``".
    gapped
        Whether ``p_value`` is at most the detector's ``alpha``.
    """

    feature: str
    predictions: int
    gaps: int
    gap_rate: float
    p_value: float
    gapped: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ServedValues:
    """The feature values one prediction used, as one event: what ``ServedFeature`` says of
    each, for ``update_many`` to read without an object per value.

    Parameters
    ----------
    entity_id
        The entity the prediction was made for.
    predicted_at
        When the prediction was made.
    features
        The features' names, in the order the prediction listed them.
    written_at
        When each value had been written to the store, as serving saw it.
    """

    entity_id: EntityId
    predicted_at: float
    features: tuple[str, ...]
    written_at: tuple[float, ...]


@dataclasses.dataclass
class _Feature:
    looks: AnytimePValue
    name: str
    # Its place in the order features were first seen.
    column: int
    # Mixed into an entity's hash to make the key of (entity, feature).
    salt: int
    predictions: int = 0
    gaps: int = 0


def _hash64(tag: bytes, text: str) -> int:
    """A 64-bit hash, the same in every process (unlike ``hash``)."""
    data = tag + text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _entity_hash(entity_id: EntityId) -> int:
    return _hash64(b"i" if isinstance(entity_id, int) else b"s", str(entity_id))


def _valid_entity(entity_id: Any) -> bool:
    return isinstance(entity_id, str | int) and not isinstance(entity_id, bool)


def _valid_feature(feature: Any) -> bool:
    return isinstance(feature, str) and feature != ""


class AvailabilityGap(base.Base):
    """Flags features whose training values were often not yet written at prediction time.

    Training joins features on event time: for a prediction at ``predicted_at`` it takes
    the newest value with ``event_at <= predicted_at``. If that value was written later (a
    slow pipeline, a backfill), training sees something serving never could, and the model
    learns from inputs it will not get in production. The detector keeps each entity's
    recent writes and predictions per feature, so the late write can come before or after
    the prediction, and counts each prediction with a gap once.

    A feature is flagged when an exact binomial test, repeated as predictions arrive with an
    anytime-valid correction, says its gap rate is above ``max_gap_rate``; ``alpha`` bounds
    the chance of ever flagging a feature whose rate is at most that.

    Memory is bounded: ``history`` writes and ``pending`` predictions per entity and feature,
    for the ``max_keys`` most recently seen (entity, feature) pairs, and ``max_features``.
    A pair is a row of numpy arrays, found by a 64-bit hash of the entity and the feature
    (no Python object per entity): ``40 + 16 * history + 9 * pending`` bytes in memory,
    plus the lookup table's entry. Pickled, a pair costs its hash, ``since``, two counts
    and the writes and predictions it holds (16 and 9 bytes each), not its empty slots.
    Timestamps are read as float64.

    A prediction's values can come as one :class:`ServedValues`; ``update_many`` reads
    them as the :class:`ServedFeature` of each would be read one by one, and counts each
    malformed value in ``rejected``.

    Parameters
    ----------
    max_gap_rate
        The gap rate tolerated, e.g. 0.01 for 1% of predictions.
    alpha
        The chance, per feature, of ever flagging a feature within ``max_gap_rate``.
    min_predictions
        Predictions of a feature before its first test.
    history
        Writes kept per entity and feature.
    pending
        Predictions kept per entity and feature, waiting for late writes.
    max_keys
        (entity, feature) pairs kept; the least recently seen are forgotten. It should
        cover the pairs written to within the longest write lag: a gap that hinges on a
        forgotten write is not counted, which costs power but never makes a false gap.
    max_features
        Features followed; further features are ignored.

    Examples
    --------
    ``balance`` is computed for the end of each day but written six hours later; serving
    at 2am reads yesterday's value, training joins the new one.

    >>> from detectors import AvailabilityGap
    >>> from detectors.leaks import FeatureWrite, ServedFeature
    >>> hour = 3_600_000.0
    >>> detector = AvailabilityGap(min_predictions=10)
    >>> for day in range(30):
    ...     midnight = day * 24 * hour
    ...     yesterday = midnight - 18 * hour
    ...     detector.update(ServedFeature("acct-1", "balance", 1.0, yesterday, midnight + 2 * hour))
    ...     detector.update(FeatureWrite("acct-1", "balance", 2.0, midnight, midnight + 6 * hour))
    ...     if detector.gap_detected:
    ...         break
    >>> day, detector.gapped_features
    (9, ('balance',))
    >>> detector.evidence["balance"]  # doctest: +ELLIPSIS
    GapEvidence(feature='balance', predictions=10, gaps=10, gap_rate=1.0, p_value=..., gapped=True)
    """

    def __init__(
        self,
        max_gap_rate: float = 0.01,
        alpha: float = 0.01,
        min_predictions: int = 50,
        history: int = 8,
        pending: int = 8,
        max_keys: int = 100_000,
        max_features: int = 1_000,
    ) -> None:
        if not (isinstance(max_gap_rate, int | float) and 0 <= max_gap_rate < 1):
            raise ValueError(f"max_gap_rate must be in [0, 1), got {max_gap_rate!r}")
        require_fractions(alpha=alpha)
        require_counts(
            min_predictions=min_predictions,
            history=history,
            pending=pending,
            max_keys=max_keys,
            max_features=max_features,
        )
        self.max_gap_rate = max_gap_rate
        self.alpha = alpha
        self.min_predictions = min_predictions
        self.history = history
        self.pending = pending
        self.max_keys = max_keys
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        # The key of each (entity, feature) kept -> its row below, least recently used first.
        self._keys: collections.OrderedDict[int, int] = collections.OrderedDict()
        # The latest timestamp a forgotten key held: a key made since may be a forgotten one
        # coming back, so its writes up to then are incomplete.
        self._forgotten_until = -math.inf
        # Per row, one key. Rows grow by doubling up to max_keys; a forgotten key's row is
        # the next new key's. The writes and predictions are rings of the last ``history``
        # and ``pending``, counted by ``_writes`` and ``_served`` since the key was made.
        self._key_hash = np.zeros(0, np.uint64)
        self._since = np.zeros(0)  # writes up to this may have been dropped or forgotten
        self._latest = np.zeros(0)  # the latest timestamp the key held, ``_since`` included
        self._writes = np.zeros(0, np.int64)
        self._event_at = np.zeros((0, self.history))
        self._written_at = np.zeros((0, self.history))
        self._served = np.zeros(0, np.int64)
        self._predicted_at = np.zeros((0, self.pending))
        self._counted = np.zeros((0, self.pending), bool)  # its gap was counted already
        self._features: dict[str, _Feature] = {}
        self._rejected = 0
        # (position in the last batch, evidence) of each feature flagged in it.
        self._batch_events: list[tuple[int, GapEvidence]] = []

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite`, :class:`ServedFeature` or :class:`ServedValues`;
        anything else is counted in ``rejected``."""
        self._batch_events = []
        self._read((x,))

    def update_many(self, events: Sequence[Any]) -> None:
        """Reads a batch of events, exactly as ``update`` one by one would; ``flags`` holds
        the features flagged in it, with their positions.

        Writes go one at a time: each reads and changes its key's predictions. The served
        values between two writes are a run: their keys are found (and made, and forgotten)
        in order, then a long run goes through numpy at once, since none of its values
        changes what another one reads. A run is cut before it could forget a key it used.
        """
        self._batch_events = []
        self._read(events)

    def _read(self, events: Sequence[Any]) -> None:
        run = _Run()
        entities: dict[EntityId, int] = {}
        for position, x in enumerate(events):
            if isinstance(x, ServedFeature):
                served = (x.feature,), (x.written_at,)
                self._serve(run, entities, position, x.entity_id, x.predicted_at, *served)
            elif isinstance(x, ServedValues):
                features, written_at = x.features, x.written_at
                if not (
                    isinstance(features, tuple)
                    and isinstance(written_at, tuple)
                    and len(features) == len(written_at)
                ):
                    self._rejected += 1
                    continue
                at = x.predicted_at
                self._serve(run, entities, position, x.entity_id, at, features, written_at)
            else:
                write = checked_write(x)
                if write is None:
                    self._rejected += 1
                    continue
                self._flush(run)
                self._add_write(write, entities)
        self._flush(run)

    def _serve(
        self,
        run: _Run,
        entities: dict[EntityId, int],
        position: int,
        entity_id: Any,
        predicted_at: Any,
        features: Sequence[Any],
        written_at: Sequence[Any],
    ) -> None:
        """Queues the well-formed served values of one prediction in ``run``."""
        if not (_valid_entity(entity_id) and finite(predicted_at)):
            self._rejected += len(features)
            return
        entity = self._entity(entities, entity_id)
        at = float(predicted_at)
        # The loop runs for every value served: lookups bound once, no call when the key
        # is known or a row is free.
        keys = self._keys
        find, recent = keys.get, keys.move_to_end
        rows, values, limit = run.rows, run.features, self.max_keys
        add_row, add_value, add_made = rows.append, values.append, run.made.append
        for counts in self._counts(run, features, written_at):
            if len(rows) >= limit:
                # Fewer values than keys in the run: the key forgotten next is not one of
                # its keys, whose rows it reads when flushed.
                run.close(at, position)
                self._flush(run)
            key = entity ^ counts.salt
            row = find(key)
            if row is not None:
                recent(key)
            elif len(keys) < len(self._since):
                # ``_use`` where a free row is there: rows are taken in order, none forgotten.
                row = keys[key] = len(keys)
                add_made((row, key, self._forgotten_until))
            else:
                row = self._use(key, run)
            add_row(row)
            add_value(counts)
        run.close(at, position)

    def _counts(
        self, run: _Run, features: Sequence[Any], written_at: Sequence[Any]
    ) -> Sequence[_Feature]:
        """The counts of each well-formed served value's feature, in order; the others are
        counted in ``rejected``, features new and within ``max_features`` made.

        Making a feature before the run is flushed changes nothing there: a feature counts
        only the values queued for it. The predictions of a batch mostly list the same
        features, so the run remembers the counts of each list whose features are known
        (features are never forgotten).
        """
        known = None
        # A malformed feature that cannot be a key (a list, say) is rejected below.
        with contextlib.suppress(TypeError):
            known = run.known.get(features) if isinstance(features, tuple) else None
        if known is not None and all(map(finite, written_at)):
            return known
        found = []
        for feature, written in zip(features, written_at, strict=True):
            counts = self._features.get(feature) if type(feature) is str else None
            if counts is None:
                if not (_valid_feature(feature) and finite(written)):
                    self._rejected += 1
                    continue
                counts = self._feature(feature)
                if counts is None:
                    continue
            elif not finite(written):
                self._rejected += 1
                continue
            found.append(counts)
        if known is None and len(found) == len(features) and isinstance(features, tuple):
            run.known[features] = found
        return found

    def _entity(self, entities: dict[EntityId, int], entity_id: EntityId) -> int:
        """The entity's 64-bit hash, computed once per batch."""
        found = entities.get(entity_id)
        if found is None:
            found = entities[entity_id] = _entity_hash(entity_id)
        return found

    def _feature(self, name: str) -> _Feature | None:
        """The feature's counts, made if there is room; None past ``max_features``."""
        counts = self._features.get(name)
        if counts is None and len(self._features) < self.max_features:
            column = len(self._features)
            looks = AnytimePValue(self.min_predictions)
            counts = _Feature(looks, name, column, _hash64(b"f", name))
            self._features[name] = counts
        return counts

    def _use(self, key: int, run: _Run | None = None) -> int:
        """The key's row, made (forgetting the least recently used key if all rows are
        taken) if absent; the key is now the most recently used. A row made for ``run``
        is set when the run is flushed, all at once."""
        keys = self._keys
        row = keys.get(key)
        if row is not None:
            keys.move_to_end(key)
            return row
        since = self._forgotten_until
        if len(keys) < self.max_keys:
            row = len(keys)
            if row == len(self._since):
                self._grow(min(self.max_keys, max(16, 2 * row)))
        else:
            # Not a row of a run: it would be among the most recently used.
            _, row = keys.popitem(last=False)
            self._forgotten_until = max(since, float(self._latest[row]))
        keys[key] = row
        if run is None:
            self._make(row, key, since)
        else:
            run.made.append((row, key, since))
        return row

    def _make(self, rows: Any, key: Any, since: Any) -> None:
        """Sets fresh rows (or one): their key, no writes and no predictions."""
        self._key_hash[rows] = key
        self._since[rows] = since
        self._latest[rows] = since
        self._writes[rows] = 0
        self._served[rows] = 0

    def _grow(self, size: int) -> None:
        for name in _ROWS:
            array = getattr(self, name)
            bigger = np.zeros((size, *array.shape[1:]), array.dtype)
            bigger[: len(array)] = array
            setattr(self, name, bigger)

    def _add_write(self, write: FeatureWrite, entities: dict[EntityId, int]) -> None:
        counts = self._feature(write.feature)
        if counts is None:
            return
        row = self._use(self._entity(entities, write.entity_id) ^ counts.salt)
        event_at, written_at = float(write.event_at), float(write.written_at)
        writes = int(self._writes[row])
        slot = writes % self.history
        if writes >= self.history:
            dropped = max(self._event_at[row, slot], self._written_at[row, slot])
            self._since[row] = max(self._since[row], dropped)
        self._event_at[row, slot] = event_at
        self._written_at[row, slot] = written_at
        self._writes[row] = writes + 1
        self._latest[row] = max(float(self._latest[row]), event_at, written_at)
        kept = min(int(self._served[row]), self.pending)
        predicted = self._predicted_at[row, :kept].tolist()
        counted = self._counted[row, :kept].tolist()
        for slot, (at, done) in enumerate(zip(predicted, counted, strict=True)):
            if not done and event_at <= at < written_at and self._late(row, at):
                self._counted[row, slot] = True
                counts.gaps += 1

    def _late(self, row: int, at: float) -> bool:
        """Whether the value training would join for a prediction at ``at`` was written
        after it.

        When a forgotten write might be the newer one training joins, the answer is no:
        guessing yes would make gaps out of missing memory.
        """
        kept = min(int(self._writes[row]), self.history)
        if kept == 0:
            return False
        joined: tuple[float, float] | None = None
        writes = zip(
            self._event_at[row, :kept].tolist(), self._written_at[row, :kept].tolist(), strict=True
        )
        for write in writes:
            # Among writes of the same event time, the one written first is the benefit of
            # the doubt.
            if write[0] <= at and (
                joined is None
                or write[0] > joined[0]
                or (write[0] == joined[0] and write[1] < joined[1])
            ):
                joined = write
        if joined is None:
            return False
        event_at, written_at = joined
        return written_at > at and event_at >= float(self._since[row])

    def _late_many(self, rows: np.ndarray, at: np.ndarray) -> np.ndarray:
        """``_late`` of each (row, time), at once."""
        late = np.zeros(len(rows), bool)
        kept = np.minimum(self._writes[rows], self.history)
        # Keys without writes are never late: most keys of a run are new.
        some = np.flatnonzero(kept)
        if len(some) == 0:
            return late
        rows, at, kept = rows[some], at[some], kept[some]
        event_at, written_at = self._event_at[rows], self._written_at[rows]
        joinable = (np.arange(self.history) < kept[:, None]) & (event_at <= at[:, None])
        newest = np.where(joinable, event_at, -np.inf).max(axis=1)
        first = np.where(joinable & (event_at == newest[:, None]), written_at, np.inf)
        joined = first.min(axis=1)
        late[some] = joinable.any(axis=1) & (joined > at) & (newest >= self._since[rows])
        return late

    def _flush(self, run: _Run) -> None:
        """Adds the run's predictions, in order."""
        if not run.rows:
            return
        if run.made and len(run.made) > _batch.SMALL_BATCH:
            rows, keys, since = zip(*run.made, strict=True)
            self._make(np.array(rows, np.intp), np.array(keys, np.uint64), np.array(since))
        else:
            for made in run.made:
                self._make(*made)
        run.made.clear()
        if len(run.rows) <= RUN_IN_NUMPY * _batch.SMALL_BATCH:
            start = 0
            for end, at, position in run.predictions:
                for i in range(start, end):
                    self._add_prediction(run.rows[i], at, run.features[i], position)
                start = end
        else:
            self._add_predictions(run)
        run.rows.clear()
        run.features.clear()
        run.predictions.clear()

    def _add_prediction(self, row: int, at: float, counts: _Feature, position: int) -> None:
        late = self._late(row, at)
        served = int(self._served[row])
        slot = served % self.pending
        self._predicted_at[row, slot] = at
        self._counted[row, slot] = late
        self._served[row] = served + 1
        counts.predictions += 1
        counts.gaps += late
        if counts.looks.due(counts.predictions):
            flagged = self._look(counts, counts.predictions, counts.gaps)
            if flagged is not None:
                self._batch_events.append((position, flagged))

    def _add_predictions(self, run: _Run) -> None:
        """``_add_prediction`` of each of the run's values, at once."""
        ends, times, positions = zip(*run.predictions, strict=True)
        n = len(run.rows)
        served = [end - start for start, end in zip((0, *ends), ends, strict=False)]
        rows, at = np.asarray(run.rows, np.intp), np.repeat(np.asarray(times), served)
        late = self._late_many(rows, at)
        # Each value's rank among the run's values of its key: where it goes in the ring.
        order = np.argsort(rows, kind="stable")
        grouped = rows[order]
        edges = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1], [True])))
        starts, sizes = edges[:-1], edges[1:] - edges[:-1]
        rank, total = np.empty(n, np.int64), np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(starts, sizes)
        total[order] = np.repeat(sizes, sizes)
        # A key's last ``pending`` values of the run are the ones its ring keeps.
        kept = rank >= total - self.pending
        slots = (self._served[rows] + rank) % self.pending
        self._predicted_at[rows[kept], slots[kept]] = at[kept]
        self._counted[rows[kept], slots[kept]] = late[kept]
        self._served[grouped[starts]] += sizes
        # Per feature: the counts, and the looks due within the run.
        columns = np.fromiter(map(_COLUMN, run.features), np.intp, n)
        everything = list(self._features.values())
        added = np.bincount(columns, minlength=len(everything)).tolist()
        gaps = np.bincount(columns, weights=late, minlength=len(everything)).tolist()
        due = [
            c
            for c, counts in enumerate(everything)
            if added[c] and counts.looks.next_look <= counts.predictions + added[c]
        ]
        flags: list[tuple[int, int, GapEvidence]] = []
        if due:
            # Each value's running gap count within its feature, values grouped by feature.
            by_feature = np.argsort(columns, kind="stable").tolist()
            running = np.cumsum(late[by_feature]).tolist()
            start = (np.cumsum(added) - added).tolist()
        for column in due:
            counts = everything[column]
            before, first = counts.predictions, start[column]
            earlier = running[first - 1] if first else 0
            while counts.looks.next_look <= before + added[column]:
                size = counts.looks.next_look
                at_value = first + size - before - 1
                gaps_then = counts.gaps + running[at_value] - earlier
                flagged = self._look(counts, size, gaps_then)
                if flagged is not None:
                    index = by_feature[at_value]
                    flags.append((index, positions[bisect.bisect(ends, index)], flagged))
        for counts, more, gapped in zip(everything, added, gaps, strict=True):
            counts.predictions += more
            counts.gaps += int(gapped)
        self._batch_events.extend((position, found) for _, position, found in sorted(flags))

    def _look(self, counts: _Feature, size: int, gaps: int) -> GapEvidence | None:
        """Tests the feature at ``size`` predictions with ``gaps`` gaps; its evidence if
        that flags it."""
        p_value = binomial_sf(gaps, size, self.max_gap_rate)
        flagged = counts.looks.p_value <= self.alpha
        counts.looks.record(size, p_value)
        if flagged or counts.looks.p_value > self.alpha:
            return None
        return GapEvidence(counts.name, size, gaps, gaps / size, counts.looks.p_value, True)

    def __getstate__(self) -> dict[str, Any]:
        """The kept keys' rows in the order they were last used, each ring cut to what it
        holds, oldest first: a key costs its hash, ``since``, two counts and its writes and
        predictions, whatever ``history`` and ``pending`` are; times as integer offsets
        when they are whole (``pack_times``)."""
        state = dict(vars(self))
        del state["_keys"], state["_latest"]
        rows = np.fromiter(self._keys.values(), np.intp, len(self._keys))
        writes, served = self._writes[rows], self._served[rows]
        state["_key_hash"], state["_since"] = self._key_hash[rows], pack_times(self._since[rows])
        counts = np.min_scalar_type(max(self.history, self.pending))
        state["_writes"] = np.minimum(writes, self.history).astype(counts)
        state["_served"] = np.minimum(served, self.pending).astype(counts)
        for name in ("_event_at", "_written_at"):
            state[name] = pack_times(_oldest_first(getattr(self, name)[rows], writes))
        state["_predicted_at"] = pack_times(_oldest_first(self._predicted_at[rows], served))
        state["_counted"] = _oldest_first(self._counted[rows], served)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in ("_since", "_event_at", "_written_at", "_predicted_at"):
            setattr(self, name, unpack_times(getattr(self, name)))
        self._writes = self._writes.astype(np.int64)
        self._served = self._served.astype(np.int64)
        self._event_at = _ring(self._event_at, self._writes, self.history)
        self._written_at = _ring(self._written_at, self._writes, self.history)
        self._predicted_at = _ring(self._predicted_at, self._served, self.pending)
        self._counted = _ring(self._counted, self._served, self.pending)
        held = np.arange(self.history) < self._writes[:, None]
        latest = np.where(held, np.maximum(self._event_at, self._written_at), -np.inf)
        self._latest = np.maximum(self._since, latest.max(axis=1, initial=-np.inf))
        self._keys = collections.OrderedDict(
            zip(self._key_hash.tolist(), range(len(self._key_hash)), strict=True)
        )

    def _evidence(self, feature: str, counts: _Feature) -> GapEvidence:
        rate = counts.gaps / counts.predictions if counts.predictions else 0.0
        p_value = counts.looks.p_value
        return GapEvidence(
            feature, counts.predictions, counts.gaps, rate, p_value, p_value <= self.alpha
        )

    @property
    def evidence(self) -> dict[str, GapEvidence]:
        """Per feature: predictions, gaps, the gap rate and the p-value."""
        return {f: self._evidence(f, counts) for f, counts in self._features.items()}

    @property
    def gapped_features(self) -> tuple[str, ...]:
        """The features flagged so far, sorted."""
        return tuple(sorted(f for f, c in self._features.items() if c.looks.p_value <= self.alpha))

    @property
    def gap_detected(self) -> bool:
        """Whether any feature is flagged."""
        return any(c.looks.p_value <= self.alpha for c in self._features.values())

    @property
    def flags(self) -> list[tuple[int, GapEvidence]]:
        """Each feature flagged in the last batch (after ``update``: at 0): its position
        there and its evidence right after that event, in order."""
        return list(self._batch_events)

    @property
    def keys(self) -> int:
        """(entity, feature) pairs kept, at most ``max_keys``."""
        return len(self._keys)

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write or served value (each value of a
        :class:`ServedValues` counts)."""
        return self._rejected


# The per-row arrays, grown together.
_ROWS = (
    "_key_hash",
    "_since",
    "_latest",
    "_writes",
    "_event_at",
    "_written_at",
    "_served",
    "_predicted_at",
    "_counted",
)
# Runs of served values longer than this many times ``SMALL_BATCH`` go through numpy.
RUN_IN_NUMPY = 2
_COLUMN = operator.attrgetter("column")


class _Run:
    """Served values whose keys were found, not added yet: per value its row and feature;
    per prediction (end of its values, prediction time, position in the batch); and the
    keys made for them, (row, key, since)."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.features: list[_Feature] = []
        self.predictions: list[tuple[int, float, int]] = []
        self.made: list[tuple[int, int, float]] = []
        # The counts of each list of features whose values were all well-formed.
        self.known: dict[tuple[Any, ...], list[_Feature]] = {}

    def close(self, at: float, position: int) -> None:
        """Ends the values of the prediction at ``position`` (made at ``at``)."""
        end = len(self.rows)
        if end > (self.predictions[-1][0] if self.predictions else 0):
            self.predictions.append((end, at, position))


def _oldest_first(rings: np.ndarray, added: np.ndarray) -> np.ndarray:
    """The values the rings hold, row after row, each row's oldest first (``added`` values
    went into each)."""
    size = rings.shape[1]
    held = np.minimum(added, size)
    slots = ((added - held)[:, None] + np.arange(size)) % size
    taken: np.ndarray = np.take_along_axis(rings, slots, axis=1)[np.arange(size) < held[:, None]]
    return taken


def _ring(values: np.ndarray, held: np.ndarray, size: int) -> np.ndarray:
    """Rings of ``size`` holding ``values`` (as ``_oldest_first`` gives them), ``held`` per
    row, oldest first from slot 0."""
    rings = np.zeros((len(held), size), values.dtype)
    rings[np.arange(size) < held[:, None]] = values
    return rings
