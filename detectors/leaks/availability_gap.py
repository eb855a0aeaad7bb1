"""Serving/training availability gap: training sees values that serving could not yet read."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from river import base

from detectors import _batch
from detectors._exact import binomial_sf
from detectors.leaks._anytime import AnytimePValues
from detectors.leaks._arguments import require_counts, require_durations, require_fractions
from detectors.leaks._memory import KeyTable, narrow, pack_times, unpack_times
from detectors.leaks.events import (
    EntityId,
    FeatureWrite,
    ServedFeature,
    all_finite,
    checked_write,
    entity_hash,
    finite,
    hash64,
)


@dataclasses.dataclass(frozen=True)
class GapEvidence:
    """One feature's predictions, and how many had a training value serving could not read.

    Attributes
    ----------
    feature
        The feature's name.
    predictions
        Predictions that used the feature: all of them in ``AvailabilityGap.evidence``; in
        a flag, those of the window of recent predictions whose test flagged it.
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

    Recent predictions are judged, so that a gap that starts after a long healthy period is
    found as soon as after a short one. A feature's predictions are cut into blocks of
    ``window // 8``. Each time a block is complete, exact binomial tests of "the gap rate
    is at most ``max_gap_rate``" run on windows of the last 8 complete blocks (``window``
    predictions) ending at the newest block and at the newest whose predictions are
    ``max_delay`` times 1/32, 1/32 * sqrt(2), ..., 1/2, 1/sqrt(2) and 1 old: gaps are found
    when the late writes arrive, so a window whose writes have all come is there however
    far the write path lags, within ``max_delay``. The smallest p-value times the 12
    windows (Bonferroni) is that look's; look ``j`` is charged ``j * (j + 1)``, whose
    inverses sum to one, so ``alpha`` bounds the chance of ever flagging a feature whose
    rate stays at most ``max_gap_rate``, over an unbounded stream. Which windows are tested
    depends on the predictions' count and times only, never on the gaps. The price of
    looking forever is the charge's growth: after ``j`` looks a window needs about
    ``2 * log(j)`` more nats of evidence (a few dozen predictions at a gap rate well above
    ``max_gap_rate``). Gaps found by writes that have not come yet are missing, so a
    window's count can only grow as they do: never a false gap from a slow write path.

    Memory is bounded in time and in bytes: an (entity, feature) pair is kept while it was
    seen (its latest prediction or write time) within ``max_delay`` of the newest
    prediction, and at most ``max_keys`` pairs are: with more, the sixteenth seen longest
    ago are forgotten. A pair is a row of numpy arrays, found by a 64-bit hash of the
    entity and the feature in an open-addressing table (no Python object per pair):
    ``49 + 16 * history + 13 * pending`` bytes, plus 24 to 48 of the table; rows grow by
    doubling up to ``max_keys`` and are taken again once their pairs expire. Pickled, a
    pair costs its hash, two times, two counts and the writes and predictions it holds
    (16 and 13 bytes each), not its empty slots. Timestamps are read as float64.

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
    window
        Recent predictions per feature judged together, at least 8: more finds a smaller
        excess over ``max_gap_rate``, fewer finds a large one sooner.
    max_delay
        The delay tolerated between a prediction and the late write that makes its gap
        reach the detector, in timestamp units (default ten minutes of milliseconds): how
        late the write is, plus how far the write path lags the predictions. Pairs are kept
        that long (within ``max_keys``), and windows that old are tested. A gap that
        hinges on a forgotten write is not counted, which costs power but never makes a
        false gap.
    history
        Writes kept per entity and feature.
    pending
        Predictions kept per entity and feature, waiting for late writes.
    max_keys
        (entity, feature) pairs kept at most. It should cover the pairs seen within
        ``max_delay``; past it, pairs seen longest ago go first.
    max_features
        Features followed; further features are ignored.

    Examples
    --------
    ``balance`` is computed for the end of each day and written within the hour; serving at
    2am reads yesterday's value. After two months the pipeline slows down and writes it at
    6am: training joins the new value, serving could not. With a quarter of predictions
    tolerated, the gaps are found once a window is full of them, 16 days on; the rate
    since the first prediction would pass a quarter only after 55 days more.

    >>> import numpy as np
    >>> from detectors import AvailabilityGap
    >>> from detectors.leaks import FeatureWrite, ServedFeature
    >>> hour = 3_600_000.0
    >>> rng = np.random.default_rng(7)
    >>> detector = AvailabilityGap(
    ...     max_gap_rate=0.25, min_predictions=10, window=16, max_delay=12 * hour
    ... )
    >>> for day in range(200):
    ...     midnight = day * 24 * hour
    ...     yesterday = midnight - 18 * hour
    ...     lag = 6 * hour if day >= 60 else rng.uniform(0.1, 1.0) * hour
    ...     detector.update(ServedFeature("acct-1", "balance", 1.0, yesterday, midnight + 2 * hour))
    ...     detector.update(FeatureWrite("acct-1", "balance", 2.0, midnight, midnight + lag))
    ...     if detector.gap_detected:
    ...         break
    >>> day, detector.gapped_features
    (75, ('balance',))
    >>> evidence = detector.evidence["balance"]
    >>> evidence.predictions, evidence.gaps, evidence.p_value < 0.01
    (76, 16, True)
    """

    def __init__(
        self,
        max_gap_rate: float = 0.01,
        alpha: float = 0.01,
        min_predictions: int = 50,
        window: int = 1_000,
        max_delay: float = 600_000.0,
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
        require_counts(_BLOCKS, window=window)
        require_durations(max_delay=max_delay)
        self.max_gap_rate = max_gap_rate
        self.alpha = alpha
        self.min_predictions = min_predictions
        self.window = window
        self.max_delay = max_delay
        self.history = history
        self.pending = pending
        self.max_keys = max_keys
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        # The key of each (entity, feature) kept -> its row below.
        self._table = KeyTable(0)
        # The latest timestamp a forgotten key held: a key made since may be a forgotten one
        # coming back, so its writes up to then are incomplete.
        self._forgotten_until = -math.inf
        # The latest prediction time: pairs not seen within ``max_delay`` of it expire.
        self._stream_time = -math.inf
        self._block = self.window // _BLOCKS
        # Prediction ages of the windows tested, newest first.
        self._cuts = np.array([0.0, *(self.max_delay * 2.0 ** (-k / 2) for k in range(10, -1, -1))])
        # Per row, one key (``_in_use``) or none; rows not in use, to be taken from the end.
        # Rows grow by doubling up to max_keys. The writes and predictions are rings of the
        # last ``history`` and ``pending``, counted by ``_writes`` and ``_served`` since
        # the key was made; ``_block_of`` is each prediction's block of its feature.
        self._in_use = np.zeros(0, bool)
        self._free = np.zeros(0, np.intp)
        self._free_count = 0  # the free rows are the first so many of ``_free``
        self._key_hash = np.zeros(0, np.uint64)
        self._since = np.zeros(0)  # writes up to this may have been dropped or forgotten
        self._latest = np.zeros(0)  # the latest time of a write the key held, ``_since`` included
        self._seen = np.zeros(0)  # ``_latest``, or the latest prediction if later: it expires by it
        self._writes = np.zeros(0, np.int64)
        self._event_at = np.zeros((0, self.history))
        self._written_at = np.zeros((0, self.history))
        self._served = np.zeros(0, np.int64)
        self._predicted_at = np.zeros((0, self.pending))
        self._counted = np.zeros((0, self.pending), bool)  # its gap was counted already
        self._block_of = np.zeros((0, self.pending), np.uint32)
        # Each feature's column: its place in the order features were first seen, its row
        # in the per-feature arrays below and its test in ``_looks``. Columns, not an object
        # per feature, which every full garbage collection of a worker would walk, for each
        # feature of each model: a dict of strings to ints, and arrays of machine numbers,
        # are not tracked or are visited as one object.
        self._columns: dict[str, int] = {}
        # Per feature: the salt mixed into an entity's hash to make the key of (entity,
        # feature), its predictions, the gaps found among them and the latest prediction
        # time.
        self._salt = np.zeros(0, np.uint64)
        self._predictions = np.zeros(0, np.int64)
        self._gaps = np.zeros(0, np.int64)
        self._newest = np.zeros(0)
        # Per feature and block of predictions (``window // _BLOCKS`` of them), the last
        # ``_RING`` blocks, block b in slot ``b % _RING``: the gaps found among its
        # predictions so far (late writes add to it while it is in the ring), and the latest
        # prediction time up to its end, which places it in time for the windows tested.
        self._block_gaps = np.zeros((0, _RING), np.int64)
        self._block_end = np.zeros((0, _RING))
        # Each feature's anytime p-value, by its column.
        self._looks = AnytimePValues(self.min_predictions)
        self._rejected = 0
        self._made = 0
        self._evicted = 0
        # (position in the last batch, evidence) of each feature flagged in it: a tuple
        # replaced at a flag (rare), which empty the garbage collector does not track.
        self._batch_events: tuple[tuple[int, GapEvidence], ...] = ()

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite`, :class:`ServedFeature` or :class:`ServedValues`;
        anything else is counted in ``rejected``."""
        self._batch_events = ()
        self._read((x,))

    def update_many(self, events: Sequence[Any]) -> None:
        """Reads a batch of events, exactly as ``update`` one by one would; ``flags`` holds
        the features flagged in it, with their positions.

        Writes go one at a time: each reads and changes its key's predictions. Served
        values are queued in a run: their keys are found (and made, and forgotten) in
        order, a long run's at once, and a long run's predictions go through numpy at once,
        since none of its values changes what another one reads. A write leaves the run
        queued unless it holds the write's key or the write counts a gap (see
        ``_add_write``). A run is flushed before keys are forgotten to make room, so that
        what its keys last saw is there to choose by.
        """
        self._batch_events = ()
        if len(events) <= _batch.SMALL_BATCH:
            self._read(events)
        else:
            self._read_many(events)

    def _read_many(self, events: Sequence[Any]) -> None:
        """``_read`` with the keys of the batch's values and writes found at once, up to
        the first key without a free row (which goes as in ``_read``, with the predictions
        after it up to a write, and the rest is found again after them), and the writes
        that neither hold a prediction nor meet one of the run's queued until the run is
        added (``_put_writes``)."""
        entities: dict[EntityId, int] = {}
        served, writes = self._parse(events, entities)
        steps = _steps(served, writes)
        # The keys of the steps, in order, and where each step's keys start.
        keys: list[int] = []
        starts: list[int] = []
        for step in steps:
            starts.append(len(keys))
            if step >= 0:
                start, stop = served.values_of(step)
                keys.extend(served.keys[start:stop])
            else:
                keys.append(writes[-1 - step][3])
        run = _Run()
        first = 0
        while first < len(steps):
            first = self._apply(served, writes, steps, first, run, keys, starts[first])
            if first == len(steps):
                break
            # The step whose key has no free row goes as ``_read`` takes it; a prediction
            # with the ones after it, up to a write or ``_RESOLVED`` keys: at the cap,
            # room is made every few keys, and their rows are found between (``_resolve``).
            self._put_writes(run)
            step = steps[first]
            if step >= 0:
                last = first
                while (
                    last < len(steps)
                    and steps[last] >= 0
                    and starts[last] - starts[first] < _RESOLVED
                ):
                    run.take(served, steps[last])
                    last += 1
                self._resolve(run)
                first = last
            else:
                write, _, _, now = writes[-1 - step][1:]
                self._add_write(write, entities, run, now)
                first += 1
        self._flush(run)

    def _parse(
        self, events: Sequence[Any], entities: dict[EntityId, int]
    ) -> tuple[_Run, list[tuple[int, FeatureWrite, int, int, float]]]:
        """The batch's well-formed served values, queued in a run whose keys are not
        found, and its writes of followed features: (values served before it, the write,
        its feature's column, its key, the stream time then); the rest counted in
        ``rejected``."""
        served = _Run()
        writes = []
        for write in self._writes_between(served, entities, events):
            column = self._feature(write.feature)
            if column is None:
                continue
            key = self._entity(entities, write.entity_id) ^ self._salt.item(column)
            writes.append((len(served.keys), write, column, key, self._stream_time))
        return served, writes

    def _apply(
        self,
        served: _Run,
        writes: list[tuple[int, FeatureWrite, int, int, float]],
        steps: list[int],
        first: int,
        run: _Run,
        keys: list[int],
        start: int,
    ) -> int:
        """Takes ``steps`` from ``first`` on, their keys (``keys`` from ``start``) found at
        once, up to the first key without a free row; the index of its step
        (``len(steps)``: none)."""
        rows, end = self._rows_of(keys, start)
        found = 0
        for index in range(first, len(steps)):
            step = steps[index]
            if step >= 0:
                start, stop = served.values_of(step)
                if end is not None and found + stop - start > end:
                    return index
                taken = rows[found : found + stop - start]
                found += stop - start
                run.take(served, step)
                run.rows.extend(taken)
                run.held.update(taken)
                continue
            if found == end:
                return index
            row = rows[found]
            found += 1
            _, write, column, _, _ = writes[-1 - step]
            if row in run.held:
                self._add(run)
            elif self._served.item(row) == 0:
                # Nothing to count a gap of: the write can wait for the run.
                if row in run.written:
                    self._put_writes(run)
                run.written.add(row)
                run.writes.append((row, float(write.event_at), float(write.written_at)))
                continue
            self._write_row(row, column, write, run)
        return len(steps)

    def _read(self, events: Sequence[Any]) -> None:
        run = _Run()
        entities: dict[EntityId, int] = {}
        for write in self._writes_between(run, entities, events):
            self._add_write(write, entities, run, self._stream_time)
        self._flush(run)

    def _writes_between(
        self, run: _Run, entities: dict[EntityId, int], events: Sequence[Any]
    ) -> Iterator[FeatureWrite]:
        """The well-formed writes of ``events``, in order, each once the served values
        before it are queued in ``run``; the malformed events counted in ``rejected``."""
        for position, x in enumerate(events):
            # Writes first: most events are, and the leak watch's come checked.
            write = checked_write(x)
            if write is not None:
                yield write
            elif not self._queue_served(run, entities, position, x):
                self._rejected += 1

    def _queue_served(
        self, run: _Run, entities: dict[EntityId, int], position: int, x: Any
    ) -> bool:
        """Whether ``x`` is a :class:`ServedFeature` or :class:`ServedValues`: if so, its
        well-formed values are queued in ``run``."""
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
            else:
                at = x.predicted_at
                self._serve(run, entities, position, x.entity_id, at, features, written_at)
        else:
            return False
        return True

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
        columns, salts = self._columns_of(run, features, written_at)
        # As the values one by one: a prediction of none does not move the stream time.
        if not columns:
            return
        if at > self._stream_time:
            self._stream_time = at
        run.keys.extend(map(entity.__xor__, salts))
        run.features.extend(columns)
        run.close(at, position, self._stream_time)

    def _columns_of(
        self, run: _Run, features: Sequence[Any], written_at: Sequence[Any]
    ) -> tuple[list[int], list[int]]:
        """The column and salt of each well-formed served value's feature, in order; the
        others are counted in ``rejected``, features new and within ``max_features`` made.

        Making a feature before the run is flushed changes nothing there: a feature counts
        only the values queued for it. The predictions of a batch mostly list the same
        features, so the run remembers the columns of each list whose features are known
        (features are never forgotten).
        """
        known = None
        # A malformed feature that cannot be a key (a list, say) is rejected below.
        with contextlib.suppress(TypeError):
            known = run.known.get(features) if isinstance(features, tuple) else None
        if known is not None and all_finite(written_at):
            return known
        found = []
        for feature, written in zip(features, written_at, strict=True):
            column = self._columns.get(feature) if type(feature) is str else None
            if column is None:
                if not (_valid_feature(feature) and finite(written)):
                    self._rejected += 1
                    continue
                column = self._feature(feature)
                if column is None:
                    continue
            elif not finite(written):
                self._rejected += 1
                continue
            found.append(column)
        salt = self._salt.item
        columns = found, [salt(column) for column in found]
        if known is None and len(found) == len(features) and isinstance(features, tuple):
            run.known[features] = columns
        return columns

    def _entity(self, entities: dict[EntityId, int], entity_id: EntityId) -> int:
        """The entity's 64-bit hash, computed once per batch."""
        found = entities.get(entity_id)
        if found is None:
            found = entities[entity_id] = entity_hash(entity_id)
        return found

    def _feature(self, name: str) -> int | None:
        """The feature's column, made if there is room; None past ``max_features``."""
        column = self._columns.get(name)
        if column is None and len(self._columns) < self.max_features:
            column = self._columns[name] = len(self._columns)
            self._looks.add()
            # A row more each: features are few (``max_features``) and made once.
            self._salt = np.append(self._salt, np.uint64(hash64(b"f", name)))
            self._predictions = np.append(self._predictions, 0)
            self._gaps = np.append(self._gaps, 0)
            self._newest = np.append(self._newest, -math.inf)
            self._block_gaps = np.vstack((self._block_gaps, np.zeros(_RING, np.int64)))
            self._block_end = np.vstack((self._block_end, np.full(_RING, -math.inf)))
        return column

    def _resolve(self, run: _Run) -> None:
        """Finds the rows of the run's keys not looked up yet, in order, making the absent
        ones as one by one would: the same rows, the same slots of the table. When no row
        is free for a key, the values before it are added and room is made, as the stream
        time then was, so that what their keys last saw is there to choose by."""
        while len(run.rows) < len(run.keys):
            rows, end = self._rows_of(run.keys, len(run.rows))
            run.rows.extend(rows)
            run.held.update(rows)
            if end is not None:
                head, now = run.cut(len(run.rows))
                self._add(head)
                self._make_room(now)

    def _rows_of(self, keys: list[int], start: int) -> tuple[list[int], int | None]:
        """The rows of ``keys`` from ``start`` on, in order, the absent ones made as one by
        one would, up to the first key without a free row; and that key's index from
        ``start`` (None: every key has its row).

        Keys are looked up a part at a time, each twice as long as the one before, from
        one more than the free rows (the first key that may have none), or as many as go
        a key at a time (which stops at that key): at the cap room is made every few keys,
        and a key after that is looked up after it, once.
        """
        found: list[int] = []
        size = max(self._free_count + 1, RUN_IN_NUMPY * _batch.SMALL_BATCH)
        while start < len(keys):
            part = keys[start : start + size]
            if len(part) > RUN_IN_NUMPY * _batch.SMALL_BATCH:
                rows, end = self._rows_all(part)
            else:
                rows, end = self._rows_each(part)
            found.extend(rows)
            if end is not None:
                return found, len(found)
            start += len(part)
            size *= 2
        return found, None

    def _rows_each(self, keys: list[int]) -> tuple[list[int], int | None]:
        """``_rows_of`` a key at a time."""
        probe = self._table.probe
        made: list[tuple[int, int]] = []
        rows: list[int] = []
        end = None
        for i, key in enumerate(keys):
            slot, row = probe(key)
            if row < 0:
                if not self._free_count:
                    end = i
                    break
                row = self._take(key, slot)
                made.append((row, key))
            rows.append(row)
        # Rows made at once past a few: a prediction's values are mostly new keys.
        if len(made) > _batch.SMALL_BATCH:
            taken, new = zip(*made, strict=True)
            self._make(np.array(taken, np.intp), np.array(new, np.uint64), self._forgotten_until)
        else:
            for row, key in made:
                self._make(row, key, self._forgotten_until)
        return rows, end

    def _rows_all(self, listed: list[int]) -> tuple[list[int], int | None]:
        """``_rows_of`` at once."""
        keys = np.array(listed, np.uint64)
        slots, rows = self._table.probe_many(keys)
        end = None
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            # The absent keys, each once, in the order they first come.
            _, firsts, which = np.unique(keys[missing], return_index=True, return_inverse=True)
            order = np.argsort(firsts)
            rank = np.empty(len(order), np.intp)
            rank[order] = np.arange(len(order))
            made = min(len(order), self._free_count)
            new = missing[firsts[order[:made]]]
            if made < len(order):
                end = int(missing[firsts[order[made]]])
                keep = rank[which] < made
                missing, which = missing[keep], which[keep]
            # Rows are taken from the end of the free ones.
            taken = self._free[self._free_count - made : self._free_count][::-1]
            self._free_count -= made
            self._table.put_many(slots[new], keys[new], taken)
            self._in_use[taken] = True
            self._make(taken, keys[new], self._forgotten_until)
            rows[missing] = taken[rank[which]]
        found: list[int] = rows[:end].tolist()
        return found, end

    def _take(self, key: int, slot: int) -> int:
        """A free row for the absent ``key``, put at its empty ``slot`` of the table (to be
        set by ``_make``)."""
        self._free_count -= 1
        row = self._free.item(self._free_count)
        self._table.put(slot, key, row)
        self._in_use[row] = True
        return row

    def _make_room(self, now: float) -> None:
        """Frees rows: those of the pairs that expired by stream time ``now``, else new ones
        up to ``max_keys``, else those of the sixteenth of the pairs seen longest ago (at
        once, so that this is rare; all rows are in use)."""
        expired = np.flatnonzero(self._in_use & (self._seen < now - self.max_delay))
        if len(expired):
            self._forget(expired)
            return
        size = len(self._in_use)
        if size < self.max_keys:
            self._grow(min(self.max_keys, max(16, 2 * size)))
            return
        oldest = max(1, size // 16)
        # Every pair as old as the ``oldest``-th: which go does not depend on row order.
        threshold = np.partition(self._seen, oldest - 1)[oldest - 1]
        evicted = np.flatnonzero(self._seen <= threshold)
        self._evicted += len(evicted)
        self._forget(evicted)

    def _forget(self, rows: np.ndarray) -> None:
        self._forgotten_until = max(self._forgotten_until, float(self._latest[rows].max()))
        remove = self._table.remove
        for key in self._key_hash[rows].tolist():
            remove(key)
        self._in_use[rows] = False
        # The lowest row is taken first.
        self._free = np.concatenate((self._free[: self._free_count], rows[::-1]))
        self._free_count = len(self._free)

    def _make(self, rows: Any, key: Any, since: Any) -> None:
        """Sets fresh rows (or one): their key, no writes and no predictions."""
        # Not ``np.size``: it makes an array of a single row, which each new key paid.
        self._made += len(rows) if isinstance(rows, np.ndarray) else 1
        self._key_hash[rows] = key
        self._since[rows] = since
        self._latest[rows] = since
        self._seen[rows] = since
        self._writes[rows] = 0
        self._served[rows] = 0

    def _grow(self, size: int) -> None:
        """``size`` rows, the new ones free; the key table made for them."""
        before = len(self._in_use)
        for name in _ROWS:
            array = getattr(self, name)
            bigger = np.zeros((size, *array.shape[1:]), array.dtype)
            bigger[:before] = array
            setattr(self, name, bigger)
        free = np.arange(size - 1, before - 1, -1)
        self._free = np.concatenate((self._free[: self._free_count], free))
        self._free_count = len(self._free)
        rows = np.flatnonzero(self._in_use)
        self._table = KeyTable.of(self._key_hash[rows], rows, size)

    def _add_write(
        self, write: FeatureWrite, entities: dict[EntityId, int], run: _Run, now: float
    ) -> None:
        """Adds a write, made when the stream time was ``now``. The run's values stay queued
        while the write neither reads nor changes what they do: their rows are found first
        (a new key takes the next free row), and the run is added before the write if it
        holds the write's key, if room must be made, or before the write counts a gap (its
        feature's counts are the run's too)."""
        column = self._feature(write.feature)
        if column is None:
            return
        if len(run.rows) < len(run.keys):
            self._resolve(run)
        key = self._entity(entities, write.entity_id) ^ self._salt.item(column)
        slot, row = self._table.probe(key)
        if row < 0:
            if not self._free_count:
                self._add(run)
                self._make_room(now)
                slot = self._table.probe(key)[0]
            row = self._take(key, slot)
            self._make(row, key, self._forgotten_until)
        elif row in run.held:
            self._add(run)
        self._write_row(row, column, write, run)

    def _write_row(self, row: int, column: int, write: FeatureWrite, run: _Run) -> None:
        """Adds a write to its key's row; the gaps it finds among the row's predictions
        (the run's, of other keys, added before a gap is counted)."""
        event_at, written_at = float(write.event_at), float(write.written_at)
        self._put_write(row, event_at, written_at)
        kept = min(self._served.item(row), self.pending)
        if kept == 0:
            return
        predicted = self._predicted_at[row, :kept].tolist()
        counted = self._counted[row, :kept].tolist()
        for slot, (at, done) in enumerate(zip(predicted, counted, strict=True)):
            if not done and event_at <= at < written_at and self._late(row, at):
                self._add(run)
                self._counted[row, slot] = True
                self._gaps[column] += 1
                block = int(self._block_of[row, slot])
                # Still in the ring: the block of the latest prediction and the ones before.
                if block > (self._predictions.item(column) - 1) // self._block - _RING:
                    self._block_gaps[column, block % _RING] += 1

    def _put_write(self, row: int, event_at: float, written_at: float) -> None:
        """Puts a write in its row's ring."""
        # Read with ``item`` as Python numbers: a write is one event, numpy scalars cost more.
        writes = self._writes.item(row)
        slot = writes % self.history
        if writes >= self.history:
            dropped = max(self._event_at.item(row, slot), self._written_at.item(row, slot))
            self._since[row] = max(self._since.item(row), dropped)
        self._event_at[row, slot] = event_at
        self._written_at[row, slot] = written_at
        self._writes[row] = writes + 1
        latest = max(self._latest.item(row), event_at, written_at)
        self._latest[row] = latest
        self._seen[row] = max(self._seen.item(row), latest)

    def _put_writes(self, run: _Run) -> None:
        """Puts the run's queued writes (of different rows) in their rings, as
        ``_put_write`` one by one would."""
        if not run.writes:
            return
        if len(run.writes) <= _batch.SMALL_BATCH:
            for row, event_at, written_at in run.writes:
                self._put_write(row, event_at, written_at)
        else:
            rows, events, writtens = (np.array(c) for c in zip(*run.writes, strict=True))
            writes = self._writes[rows]
            slots = writes % self.history
            dropped = np.maximum(self._event_at[rows, slots], self._written_at[rows, slots])
            since = self._since[rows]
            self._since[rows] = np.where(writes >= self.history, np.maximum(since, dropped), since)
            self._event_at[rows, slots] = events
            self._written_at[rows, slots] = writtens
            self._writes[rows] = writes + 1
            latest = np.maximum(np.maximum(self._latest[rows], events), writtens)
            self._latest[rows] = latest
            self._seen[rows] = np.maximum(self._seen[rows], latest)
        run.writes.clear()
        run.written.clear()

    def _late(self, row: int, at: float) -> bool:
        """Whether the value training would join for a prediction at ``at`` was written
        after it.

        When a forgotten write might be the newer one training joins, the answer is no:
        guessing yes would make gaps out of missing memory.
        """
        kept = min(self._writes.item(row), self.history)
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
        return written_at > at and event_at >= self._since.item(row)

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
        """Finds the run's keys and adds its predictions, in order."""
        self._resolve(run)
        self._add(run)

    def _add(self, run: _Run) -> None:
        """Adds the run's queued writes, then its predictions (their keys found), in order."""
        if run.writes:
            self._put_writes(run)
        if not run.rows:
            return
        if len(run.rows) <= RUN_IN_NUMPY * _batch.SMALL_BATCH:
            start = 0
            for end, at, position, _ in run.predictions:
                for i in range(start, end):
                    self._add_prediction(run.rows[i], at, run.features[i], position)
                start = end
        else:
            self._add_predictions(run)
        run.clear()

    def _add_prediction(self, row: int, at: float, column: int, position: int) -> None:
        late = self._late(row, at)
        served = self._served.item(row)
        slot = served % self.pending
        first = self._predictions.item(column)
        number = first // self._block
        self._predicted_at[row, slot] = at
        self._counted[row, slot] = late
        self._block_of[row, slot] = number
        self._served[row] = served + 1
        if at > self._seen.item(row):
            self._seen[row] = at
        found = self._advance_one(column, first, number, late, at)
        if found is not None:
            self._batch_events = (*self._batch_events, (position, found))

    def _advance_one(
        self, column: int, first: int, number: int, late: bool, at: float
    ) -> GapEvidence | None:
        """``_advance`` of one prediction, the ``first``-th of its feature (of block
        ``number``), touching only the numbers it changes: short runs pay this per value."""
        slot = number % _RING
        fresh = first % self._block == 0
        if fresh:
            self._block_gaps[column, slot] = late
        elif late:
            self._block_gaps[column, slot] += 1
        if late:
            self._gaps[column] += 1
        newest = self._newest.item(column)
        # Within a block its end is the newest time already, unless this one is newer.
        if at > newest:
            self._newest[column] = self._block_end[column, slot] = at
        elif fresh:
            self._block_end[column, slot] = newest
        predictions = first + 1
        self._predictions[column] = predictions
        if predictions % self._block == 0 and predictions >= self.min_predictions:
            return self._look(column, number)
        return None

    def _add_predictions(self, run: _Run) -> None:
        """``_add_prediction`` of each of the run's values, at once."""
        ends, times, positions, _ = zip(*run.predictions, strict=True)
        n = len(run.rows)
        served = [end - start for start, end in zip((0, *ends), ends, strict=False)]
        rows, at = np.asarray(run.rows, np.intp), np.repeat(np.asarray(times), served)
        late = self._late_many(rows, at)
        # Per feature, its values in order, and each one's block.
        columns = np.array(run.features, np.intp)
        added = np.bincount(columns, minlength=len(self._columns)).tolist()
        by_feature = np.argsort(columns, kind="stable")
        firsts = (np.cumsum(added) - added).tolist()
        before = np.repeat(self._predictions, added)
        within = np.arange(n) - np.repeat(firsts, added)
        block_of = np.empty(n, np.uint32)
        block_of[by_feature] = (before + within) // self._block
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
        self._block_of[rows[kept], slots[kept]] = block_of[kept]
        self._served[grouped[starts]] += sizes
        np.maximum.at(self._seen, rows, at)
        flags: list[tuple[int, int, GapEvidence]] = []
        for column, more in enumerate(added):
            if not more:
                continue
            values = by_feature[firsts[column] : firsts[column] + more]
            flagged = self._advance(column, late[values].tolist(), at[values].tolist())
            if flagged is not None:
                index = int(values[flagged[0]])
                flags.append((index, positions[bisect.bisect(ends, index)], flagged[1]))
        self._batch_events += tuple((position, found) for _, position, found in sorted(flags))

    def _advance(
        self, column: int, late: Sequence[Any], at: Sequence[Any]
    ) -> tuple[int, GapEvidence] | None:
        """Adds a feature's predictions (whether each is late, and when it was made) to its
        blocks, looking as each block is complete; the value that flagged the feature, and
        its evidence, if one did."""
        block, first = self._block, self._predictions.item(column)
        block_gaps, block_end = self._block_gaps[column], self._block_end[column]
        newest = self._newest.item(column)
        flagged = None
        start = 0
        while start < len(late):
            index = first + start
            number = index // block
            slot = number % _RING
            stop = min(len(late), (number + 1) * block - first)
            if index % block == 0:
                block_gaps[slot] = 0
            newest = max(newest, float(max(at[start:stop])))
            self._newest[column] = block_end[slot] = newest
            gaps = int(sum(late[start:stop]))
            block_gaps[slot] += gaps
            self._gaps[column] += gaps
            predictions = first + stop
            self._predictions[column] = predictions
            if predictions % block == 0 and predictions >= self.min_predictions:
                found = self._look(column, number)
                if found is not None:
                    flagged = stop - 1, found
            start = stop
        return flagged

    def _look(self, column: int, number: int) -> GapEvidence | None:
        """Tests the windows of complete blocks up to block ``number``, just complete; the
        feature's evidence if that flags it."""
        oldest = max(0, number - _RING + 1)
        slots = np.arange(oldest, number + 1) % _RING
        ends, gaps = self._block_end[column, slots], self._block_gaps[column, slots]
        # The newest block old enough for each cut (block ends only grow).
        newest = np.searchsorted(ends, ends[-1] - self._cuts, side="right") - 1
        best = (math.inf, 0, 0)
        for last in sorted(set(newest[newest >= 0].tolist()), reverse=True):
            first = max(0, last - _BLOCKS + 1)
            size, found = (last - first + 1) * self._block, int(gaps[first : last + 1].sum())
            best = min(best, (binomial_sf(found, size, self.max_gap_rate), -size, found))
        p_value, size, found = best[0] * len(self._cuts), -best[1], best[2]
        looks = self._looks
        flagged = looks.p(column) <= self.alpha
        looks.record(column, self._predictions.item(column), p_value)
        if flagged or looks.p(column) > self.alpha:
            return None
        # Flags are rare: the name is found by its column then.
        name = list(self._columns)[column]
        return GapEvidence(name, size, found, found / size, looks.p(column), True)

    def __getstate__(self) -> dict[str, Any]:
        """The kept keys' rows, each ring cut to what it holds, oldest first: a key costs
        its hash, ``since``, when it was last seen, two counts and its writes and predictions,
        whatever ``history`` and ``pending`` are; times as integer offsets when they are
        whole (``pack_times``). The key table and the free rows are made again."""
        state = dict(vars(self))
        del state["_table"], state["_free"], state["_free_count"], state["_in_use"]
        rows = np.flatnonzero(self._in_use)
        state["_capacity"] = len(self._in_use)
        writes, served = self._writes[rows], self._served[rows]
        state["_key_hash"] = self._key_hash[rows]
        del state["_latest"]
        state["_since"], state["_seen"] = (
            pack_times(self._since[rows]),
            pack_times(self._seen[rows]),
        )
        counts = np.min_scalar_type(max(self.history, self.pending))
        state["_writes"] = np.minimum(writes, self.history).astype(counts)
        state["_served"] = np.minimum(served, self.pending).astype(counts)
        for name in ("_event_at", "_written_at"):
            state[name] = pack_times(_oldest_first(getattr(self, name)[rows], writes))
        state["_predicted_at"] = pack_times(_oldest_first(self._predicted_at[rows], served))
        state["_counted"] = _oldest_first(self._counted[rows], served)
        state["_block_of"] = narrow(_oldest_first(self._block_of[rows], served))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        capacity = state.pop("_capacity")
        self.__dict__.update(state)
        for name in ("_since", "_seen", "_event_at", "_written_at", "_predicted_at"):
            setattr(self, name, unpack_times(getattr(self, name)))
        self._writes = self._writes.astype(np.int64)
        self._served = self._served.astype(np.int64)
        self._event_at = _ring(self._event_at, self._writes, self.history)
        self._written_at = _ring(self._written_at, self._writes, self.history)
        self._predicted_at = _ring(self._predicted_at, self._served, self.pending)
        self._counted = _ring(self._counted, self._served, self.pending)
        self._block_of = _ring(self._block_of.astype(np.uint32), self._served, self.pending)
        held = np.arange(self.history) < self._writes[:, None]
        latest = np.where(held, np.maximum(self._event_at, self._written_at), -np.inf)
        self._latest = np.maximum(self._since, latest.max(axis=1, initial=-np.inf))
        kept = len(self._key_hash)
        self._in_use = np.ones(kept, bool)
        self._free = np.zeros(0, np.intp)
        self._free_count = 0
        # As many free rows as there were: when room is made does not change.
        self._grow(capacity)

    def _evidence(self, feature: str, column: int) -> GapEvidence:
        predictions, gaps = self._predictions.item(column), self._gaps.item(column)
        rate = gaps / predictions if predictions else 0.0
        p_value = self._looks.p(column)
        return GapEvidence(feature, predictions, gaps, rate, p_value, p_value <= self.alpha)

    @property
    def evidence(self) -> dict[str, GapEvidence]:
        """Per feature: predictions, gaps, the gap rate and the p-value."""
        return {f: self._evidence(f, column) for f, column in self._columns.items()}

    @property
    def gapped_features(self) -> tuple[str, ...]:
        """The features flagged so far, sorted."""
        p_value = self._looks.p_value
        return tuple(
            sorted(f for f, column in self._columns.items() if p_value[column] <= self.alpha)
        )

    @property
    def gap_detected(self) -> bool:
        """Whether any feature is flagged."""
        return bool((self._looks.p_value <= self.alpha).any())

    @property
    def flags(self) -> list[tuple[int, GapEvidence]]:
        """Each feature flagged in the last batch (after ``update``: at 0): its position
        there and its evidence right after that event, in order."""
        return list(self._batch_events)

    @property
    def keys(self) -> int:
        """(entity, feature) pairs kept, at most ``max_keys``."""
        return self._table.size

    @property
    def evicted(self) -> int:
        """Pairs forgotten to make room (not expired) since the start."""
        return self._evicted

    @property
    def made(self) -> int:
        """(entity, feature) pairs made since the start: their rate times ``max_delay`` is
        about how many are kept when none is forgotten to make room."""
        return self._made

    @staticmethod
    def bytes_per_key(history: int, pending: int) -> int:
        """Bytes a pair costs in memory: its row (a flag, its hash, three times, two
        counts, ``history`` writes of two times, ``pending`` predictions of a time, a flag
        and a block), its free-row entry and its share of the key table (at most four
        slots a row)."""
        return 49 + 16 * history + 13 * pending + 8 + 4 * KeyTable.SLOT_BYTES

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write or served value (each value of a
        :class:`ServedValues` counts)."""
        return self._rejected


# The per-row arrays, grown together.
_ROWS = (
    "_in_use",
    "_key_hash",
    "_since",
    "_latest",
    "_seen",
    "_writes",
    "_event_at",
    "_written_at",
    "_served",
    "_predicted_at",
    "_counted",
    "_block_of",
)
# Blocks per window, and blocks kept per feature: the window and older blocks, for the
# windows of older predictions.
_BLOCKS = 8
_RING = 4 * _BLOCKS
# Runs of served values longer than this many times ``SMALL_BATCH`` go through numpy (their
# keys looked up, their predictions added).
RUN_IN_NUMPY = 2
# Keys of the predictions a batch queues at once when one has no free row.
_RESOLVED = 256
_END = operator.itemgetter(0)


class _Run:
    """Served values not added yet: per value its key, its feature's column, and its row
    once found (the first ones, ``held`` the set of them); per prediction (end of its
    values, prediction time, position in the batch, stream time after it)."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.features: list[int] = []
        self.rows: list[int] = []
        self.held: set[int] = set()
        self.predictions: list[tuple[int, float, int, float]] = []
        # The columns and salts of each list of features whose values were all well-formed.
        self.known: dict[tuple[Any, ...], tuple[list[int], list[int]]] = {}
        # Writes of rows without predictions, not put yet: (row, event_at, written_at),
        # and their rows.
        self.writes: list[tuple[int, float, float]] = []
        self.written: set[int] = set()

    def close(self, at: float, position: int, now: float) -> None:
        """Ends the values, some, of the prediction at ``position`` (made at ``at``, the
        stream time then ``now``)."""
        self.predictions.append((len(self.keys), at, position, now))

    def values_of(self, prediction: int) -> tuple[int, int]:
        """Where the values of the ``prediction``-th prediction start and end."""
        start = self.predictions[prediction - 1][0] if prediction else 0
        return start, self.predictions[prediction][0]

    def take(self, served: _Run, prediction: int) -> None:
        """Queues the values of ``served``'s ``prediction``-th prediction, their rows not
        found, and ends them."""
        start, stop = served.values_of(prediction)
        self.keys.extend(served.keys[start:stop])
        self.features.extend(served.features[start:stop])
        _, at, position, now = served.predictions[prediction]
        self.close(at, position, now)

    def clear(self) -> None:
        """Forgets the values (all added)."""
        self.keys.clear()
        self.features.clear()
        self.rows.clear()
        self.held.clear()
        self.predictions.clear()

    def cut(self, end: int) -> tuple[_Run, float]:
        """The run of the first ``end`` values (their rows found), taken out of this one,
        and the stream time after the prediction of the value at ``end``."""
        head = _Run()
        head.keys, self.keys = self.keys[:end], self.keys[end:]
        head.features, self.features = self.features[:end], self.features[end:]
        head.rows, self.rows = self.rows, []
        self.held = set()
        # The prediction of value ``end`` may be cut in two: each part ends its values.
        split = bisect.bisect(self.predictions, end, key=_END)
        head.predictions = self.predictions[:split]
        _, at, position, now = self.predictions[split]
        if end > (head.predictions[-1][0] if head.predictions else 0):
            head.predictions.append((end, at, position, now))
        self.predictions = [(e - end, a, p, n) for e, a, p, n in self.predictions[split:]]
        return head, now


def _steps(served: _Run, writes: list[tuple[Any, ...]]) -> list[int]:
    """The batch's predictions (their index in ``served.predictions``) and writes (``-1 -
    k`` for the k-th), in order: a write after the predictions whose values came before
    it."""
    steps: list[int] = []
    done = 0
    for k, (values, *_) in enumerate(writes):
        upto = bisect.bisect(served.predictions, values, key=_END)
        steps.extend(range(done, upto))
        steps.append(-1 - k)
        done = upto
    steps.extend(range(done, len(served.predictions)))
    return steps


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
