"""Serving/training availability gap: training sees values that serving could not yet read."""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from river import base

from detectors import _batch
from detectors._compiled import compiled
from detectors._exact import binomial_tail
from detectors.leaks._anytime import AnytimePValues
from detectors.leaks._arguments import require_counts, require_durations, require_fractions
from detectors.leaks._coincide import record_look
from detectors.leaks._memory import (
    KeyTable,
    narrow,
    pack_times,
    probe_compiled,
    remove_compiled,
    unpack_times,
    with_rows,
)
from detectors.leaks.events import (
    EntityId,
    ServedFeature,
    WriteColumns,
    all_finite,
    checked_write,
    entity_hash,
    finite,
    hashes64,
    interleaved,
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


class ServedRun(NamedTuple):
    """Predictions' served values as columns, for ``AvailabilityGap.update_served``: what a
    :class:`ServedValues` per prediction says, for predictions that serve the same features
    in the same order.

    Attributes
    ----------
    entities
        Each prediction's entity, as its ``entity_hash`` (uint64).
    predicted_at
        When each prediction was made (float64).
    features
        The features' names, in the order the predictions list them.
    written_at
        When each value had been written to the store, as serving saw it (float64): a row
        per prediction, a column per feature.
    before
        How many of the other events ``update_served`` reads come before each prediction
        (non-decreasing).
    """

    entities: np.ndarray
    predicted_at: np.ndarray
    features: tuple[str, ...]
    written_at: np.ndarray
    before: np.ndarray


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

    # The key table, the p-values and the columns by name (objects, which the garbage
    # collector tracks) in slots, the numbers and arrays in the attribute dict, which it
    # then stops tracking and visiting.
    __slots__ = ("_columns", "_looks", "_table")

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
        self._read(self._parse((x,)))

    def update_many(self, events: Sequence[Any]) -> None:
        """Reads a batch of events, exactly as ``update`` one by one would; ``flags`` holds
        the features flagged in it, with their positions.

        The events are read into columns once (``_parse``); from ``_FEW_VALUES`` values,
        a compiled loop (``_read_compiled``) then takes them in order, as ``_read`` does a
        value at a time: every write and value reads what the one before changed (its key's
        row, its feature's blocks), so the loop cannot be one numpy expression. It stops at
        what stays in Python: rows to grow, and a feature's test when a block of its
        predictions is complete; then goes on from there.
        """
        self._batch_events = ()
        self._read_parsed(self._parse(events))

    def _read_parsed(self, parsed: _Parsed) -> None:
        """Reads ``_parse``'s lists: a few values one at a time (``_read``), more in the
        compiled loop."""
        if _few(len(parsed.columns), _FEW_VALUES):
            self._read(parsed)
        else:
            self._read_many(_arrays(parsed))

    def update_writes(
        self,
        writes: WriteColumns,
        others: Sequence[Any],
        places: np.ndarray,
        run: ServedRun | None = None,
    ) -> None:
        """Reads ``writes`` and ``others`` (served values, or anything ``update`` takes) as
        one batch, exactly as ``update_many`` would: ``others[j]`` at place ``places[j]``
        (increasing), the writes in order at the places left; then the ``run``'s
        predictions among them (prediction ``i`` after the first ``run.before[i]``
        events), as each prediction's :class:`ServedValues` in its place. ``flags`` gives
        those places, and prediction ``i`` the place ``len(writes.ok) + len(others) + i``.

        The writes go in as columns, without an object per write; the features they and
        the run make are made where the events one by one would make them. Then one
        compiled loop (``_merge_compiled``) checks the writes and the run's values (each
        malformed one counted in ``rejected``) and places them among the other events:
        no Python step per write or prediction.
        """
        self._batch_events = ()
        n = len(writes.ok) + len(others)
        if run is None and not n:
            return
        if run is None and _few(n, _FEW_EVENTS):
            # A few events: as ``update_many`` reads them, without columns of the writes.
            self._read_parsed(self._parse(interleaved(writes, others, places)))
            return
        made = self._made_by_writes(writes, places)
        named = _named(run.features) if run is not None else _NAMED_NONE
        if run is not None:
            made += self._made_by(run.features, named, run)
        made.sort(key=_FIRST_TWO)
        events = _NO_EVENTS
        if len(others) or made:
            # Each ``(events before, feature)`` made after the others placed before it.
            parsed = self._parse(
                others,
                [(int(np.searchsorted(places, c)), name) for c, _, name in made],
                places.tolist(),
            )
            if parsed.ends:
                events = _arrays(parsed)
        if run is None:
            run = _NO_RUN
        # A write's column (-1: not followed; the features are all made by now).
        found = np.array([self._columns.get(f, -1) for f in writes.features], np.intp)
        *merged, rejected = _merge_compiled(
            *events,
            writes.ok,
            writes.entities,
            writes.event_at,
            writes.written_at,
            writes.codes,
            found,
            np.asarray(places, np.intp),
            run.entities,
            run.predicted_at,
            run.written_at,
            run.before,
            named,
            np.array([self._columns.get(f, -1) for f in run.features], np.intp),
            n,
        )
        self._rejected += rejected
        parsed = _Parsed(*merged)
        if _few(len(parsed.columns), _FEW_VALUES):
            self._read(_Parsed(*(column.tolist() for column in parsed)))
        else:
            self._read_many(parsed)

    def _made_by_writes(
        self, writes: WriteColumns, places: np.ndarray
    ) -> list[tuple[int, int, str]]:
        """The writes' features not followed yet, each with the events before its first
        well-formed write (as ``_made_by``; 1: after a run's prediction there)."""
        if len(self._columns) >= self.max_features:
            return []
        codes = writes.codes[writes.ok]
        new = [c for c, f in enumerate(writes.features) if f not in self._columns]
        if not new or not len(codes):
            return []
        at = np.flatnonzero(writes.ok)
        first = np.unique(codes, return_index=True)
        made = []
        for code, j in zip(*(part.tolist() for part in first), strict=True):
            if code in new:
                # The write's place: its index plus the others before it.
                w = int(at[j])
                made.append((_place(places, w), 1, writes.features[code]))
        return made

    def _made_by(
        self, features: tuple[str, ...], named: np.ndarray, run: ServedRun
    ) -> list[tuple[int, int, str]]:
        """The run's features not followed yet that its well-formed values make, each with
        the events before its first such value: where ``_parse`` makes it, in the order
        values one by one would (rare: a model's first predictions)."""
        if len(self._columns) >= self.max_features:
            return []
        new = [j for j, feature in enumerate(features) if feature not in self._columns]
        if not new:
            return []
        valid = np.isfinite(run.written_at) & np.isfinite(run.predicted_at)[:, None] & named
        found = valid[:, new]
        first = found.argmax(axis=0).tolist()
        made = sorted((first[x], j) for x, j in enumerate(new) if found[first[x], x])
        return [(int(run.before[i]), 0, features[j]) for i, j in made]

    def _parse(
        self,
        events: Sequence[Any],
        made: Sequence[tuple[int, str]] = (),
        places: Sequence[int] | None = None,
    ) -> _Parsed:
        """The batch's well-formed writes of followed features and served values, in order,
        as ``_Parsed`` columns; the rest counted in ``rejected``, new features within
        ``max_features`` made (a feature counts only the values read for it, so making it
        before the values ahead of it are read changes nothing). ``made``: features to make
        after so many events, in order; ``places``: each event's position (default: its
        index)."""
        parsed = _Parsed([], [], [], [], [], [])
        # Per batch: each entity's hash, and the columns of each list of features whose
        # values were all well-formed (a batch's predictions mostly list the same ones;
        # features are never forgotten).
        hashes: dict[EntityId, int] = {}
        known: dict[tuple[Any, ...], list[int]] = {}
        if places is None:
            places = range(len(events))
        start = 0
        for stop, feature in made:
            self._parse_into(parsed, events[start:stop], places[start:stop], hashes, known)
            self._feature(feature)
            start = stop
        self._parse_into(parsed, events[start:], places[start:], hashes, known)
        self._add_rows()
        return parsed

    def _parse_into(
        self,
        parsed: _Parsed,
        events: Sequence[Any],
        places: Sequence[int],
        hashes: dict[EntityId, int],
        known: dict[tuple[Any, ...], list[int]],
    ) -> None:
        """``_parse`` of ``events``, at ``places`` in the batch, into ``parsed``."""
        entities, first, second = parsed.entities, parsed.first, parsed.second
        ends, positions, columns = parsed.ends, parsed.positions, parsed.columns
        column_of = self._columns.get
        for position, x in zip(places, events, strict=True):
            # Writes first: most events are, and the leak watch's come checked.
            write = checked_write(x)
            if write is not None:
                column = column_of(write.feature)
                if column is None:
                    column = self._feature(write.feature)
                    if column is None:
                        continue
                entity_id = write.entity_id
                first.append(write.event_at)
                second.append(write.written_at)
                columns.append(column)
            else:
                served = self._values_of(x, known)
                if served is None:
                    continue
                entity_id, at, found = served
                first.append(at)
                second.append(math.nan)
                columns += found
            entity = hashes.get(entity_id)
            if entity is None:
                entity = hashes[entity_id] = entity_hash(entity_id)
            entities.append(entity)
            ends.append(len(columns))
            positions.append(position)

    def _values_of(
        self, x: Any, known: dict[tuple[Any, ...], list[int]]
    ) -> tuple[EntityId, Any, list[int]] | None:
        """The entity, time and well-formed values' columns (``_columns_of``) of a
        :class:`ServedValues` or :class:`ServedFeature`; None if it has none (the malformed
        ones counted in ``rejected``, as anything else is)."""
        if isinstance(x, ServedValues):
            features, written_at = x.features, x.written_at
            if not (
                isinstance(features, tuple)
                and isinstance(written_at, tuple)
                and len(features) == len(written_at)
            ):
                self._rejected += 1
                return None
        elif isinstance(x, ServedFeature):
            features, written_at = (x.feature,), (x.written_at,)
        else:
            self._rejected += 1
            return None
        entity_id, at = x.entity_id, x.predicted_at
        if not (_valid_entity(entity_id) and finite(at)):
            self._rejected += len(features)
            return None
        found = self._columns_of(known, features, written_at)
        # As the values one by one: a prediction of none does not move the stream time.
        return (entity_id, at, found) if found else None

    def _columns_of(
        self,
        known: dict[tuple[Any, ...], list[int]],
        features: tuple[Any, ...],
        written_at: tuple[Any, ...],
    ) -> list[int]:
        """The column of each well-formed served value's feature, in order; the others are
        counted in ``rejected``, features new and within ``max_features`` made. ``known``:
        the columns of each list of features found all well-formed in the batch."""
        try:
            found = known.get(features)
        except TypeError:  # a malformed feature that cannot be a key (a list, say)
            found = None
        if found is not None and all_finite(written_at):
            return found
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
        if len(found) == len(features):
            known[features] = found
        return found

    def _read(self, parsed: _Parsed) -> None:
        """Reads the parsed events in order, a value at a time: the reference
        ``_read_compiled`` is checked against."""
        columns, salt = parsed.columns, self._salt.item
        start = 0
        for entity, first, second, end, position in zip(
            parsed.entities, parsed.first, parsed.second, parsed.ends, parsed.positions, strict=True
        ):
            # A prediction's ``second`` is NaN, a write's is its (finite) write time.
            if second == second:
                column = columns[start]
                row = self._row(entity ^ salt(column), self._stream_time)
                self._write_row(row, column, float(first), float(second))
            else:
                at = float(first)
                if at > self._stream_time:
                    self._stream_time = at
                for column in columns[start:end]:
                    row = self._row(entity ^ salt(column), self._stream_time)
                    self._add_prediction(row, at, column, position)
            start = end

    def _read_many(self, parsed: _Parsed) -> None:
        """``_read`` of ``_Parsed`` arrays (``_arrays``), the loop compiled
        (``_read_compiled``), which tests each block of a feature's predictions as it
        completes; Python grows the rows, and takes the look where the loop stops: one
        that flags the feature, or whose next look only Python rounds."""
        batch = (parsed.entities, parsed.first, parsed.second, parsed.ends, parsed.columns)
        tallies = np.zeros(len(_TALLIES), np.int64)
        times = np.zeros(len(_TIMES))
        # The arrays the loop takes, gathered again only when the rows grow (new arrays).
        rows = tuple(getattr(self, name) for name in _ROWS)
        features = tuple(getattr(self, name) for name in _FEATURES)
        settings = (self._block, self.min_predictions, self.max_keys)
        looks = self._looks
        tests = (float(self.max_gap_rate), float(self.alpha), float(looks.growth))
        event = value = 0
        while True:
            table = self._table
            tallies[:] = self._free_count, table.size, self._made, self._evicted
            times[:] = self._forgotten_until, self._stream_time
            status, event, value, column, number = _read_compiled(
                *batch,
                event,
                value,
                (table.rows, table.keys, self._free, self._salt),
                rows,
                features,
                tallies,
                times,
                settings,
                float(self.max_delay),
                (looks.looks, looks.next_look, looks.p_value),
                self._cuts,
                tests,
            )
            self._free_count, table.size, self._made, self._evicted = tallies.tolist()
            self._forgotten_until, self._stream_time = times.tolist()
            if status == _DONE:
                return
            if status == _GROW:
                self._make_room(self._stream_time)
                rows = tuple(getattr(self, name) for name in _ROWS)
                continue
            found = self._look(column, number)
            if found is not None:
                self._batch_events += ((int(parsed.positions[event]), found),)

    def _feature(self, name: str) -> int | None:
        """The feature's column, made if there is room (its rows of the per-feature arrays
        by ``_add_rows``); None past ``max_features``."""
        column = self._columns.get(name)
        if column is None and len(self._columns) < self.max_features:
            column = self._columns[name] = len(self._columns)
        return column

    def _add_rows(self) -> None:
        """The per-feature arrays' rows of the features made since they last grew, at
        once: a model's first batch makes each of its features, and a row more of each
        array per feature costs that batch more than its events."""
        made = len(self._columns) - len(self._salt)
        if not made:
            return
        names = list(self._columns)[len(self._salt) :]
        self._looks.add(made)
        salts = np.array(hashes64(b"f", names), np.uint64)
        self._salt = with_rows(self._salt, salts, made)
        self._predictions = with_rows(self._predictions, 0, made)
        self._gaps = with_rows(self._gaps, 0, made)
        self._newest = with_rows(self._newest, -math.inf, made)
        self._block_gaps = with_rows(self._block_gaps, 0, made)
        self._block_end = with_rows(self._block_end, -math.inf, made)

    def _row(self, key: int, now: float) -> int:
        """The key's row, made if absent (room made first, as the stream time ``now`` is,
        if no row is free)."""
        slot, row = self._table.probe(key)
        if row >= 0:
            return row
        if not self._free_count:
            self._make_room(now)
            slot = self._table.probe(key)[0]
        self._free_count -= 1
        row = self._free.item(self._free_count)
        self._table.put(slot, key, row)
        self._in_use[row] = True
        self._made += 1
        self._key_hash[row] = key
        self._since[row] = self._latest[row] = self._seen[row] = self._forgotten_until
        self._writes[row] = self._served[row] = 0
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
        self._table.remove_all(self._key_hash[rows])
        self._in_use[rows] = False
        # The lowest row is taken first.
        self._free[self._free_count : self._free_count + len(rows)] = rows[::-1]
        self._free_count += len(rows)

    def _grow(self, size: int) -> None:
        """``size`` rows, the new ones free; the key table made for them."""
        before = len(self._in_use)
        for name in _ROWS:
            array = getattr(self, name)
            bigger = np.zeros((size, *array.shape[1:]), array.dtype)
            bigger[:before] = array
            setattr(self, name, bigger)
        # A row is free or in use: the free rows, the first ``_free_count``, fit in ``size``.
        free = np.zeros(size, np.intp)
        free[: self._free_count] = self._free[: self._free_count]
        self._free = free
        self._free[self._free_count : self._free_count + size - before] = np.arange(
            size - 1, before - 1, -1
        )
        self._free_count += size - before
        rows = np.flatnonzero(self._in_use)
        self._table = KeyTable.of(self._key_hash[rows], rows, size)

    def _write_row(self, row: int, column: int, event_at: float, written_at: float) -> None:
        """Adds a write to its key's row, and the gaps it finds among the row's predictions
        to its feature."""
        self._put_write(row, event_at, written_at)
        kept = min(self._served.item(row), self.pending)
        if kept == 0:
            return
        predicted = self._predicted_at[row, :kept].tolist()
        counted = self._counted[row, :kept].tolist()
        for slot, (at, done) in enumerate(zip(predicted, counted, strict=True)):
            if not done and event_at <= at < written_at and self._late(row, at):
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
        found = self._advance(column, first, number, late, at)
        if found is not None:
            self._batch_events = (*self._batch_events, (position, found))

    def _advance(
        self, column: int, first: int, number: int, late: bool, at: float
    ) -> GapEvidence | None:
        """Adds a prediction, the ``first``-th of its feature (of block ``number``), to its
        feature's blocks; its test if that completes a block (and the evidence if that
        flags the feature)."""
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

    def _look(self, column: int, number: int) -> GapEvidence | None:
        """Tests the windows of complete blocks up to block ``number``, just complete; the
        feature's evidence if that flags it."""
        p_value, size, found = _windows_compiled(
            self._block_end[column],
            self._block_gaps[column],
            number,
            self._cuts,
            self._block,
            float(self.max_gap_rate),
        )
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
        state = _batch.attribute_state(self)
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
            state[name] = pack_times(_oldest_first(getattr(self, name), rows, writes))
        state["_predicted_at"] = pack_times(_oldest_first(self._predicted_at, rows, served))
        state["_counted"] = _oldest_first(self._counted, rows, served)
        state["_block_of"] = narrow(_oldest_first(self._block_of, rows, served))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        capacity = state.pop("_capacity")
        _batch.set_attribute_state(self, state)
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
    def rates(self) -> dict[str, tuple[int, float, float, bool]]:
        """Per feature that predictions used, of its ``evidence``: the predictions, the
        gap rate, the p-value and whether gapped; from the arrays at once, as a round of
        points reads them."""
        p_values = self._looks.p_value
        return {
            f: (predictions, gaps / predictions, p_value, p_value <= self.alpha)
            for f, predictions, gaps, p_value in zip(
                self._columns,
                self._predictions.tolist(),
                self._gaps.tolist(),
                p_values.tolist(),
                strict=True,
            )
            if predictions
        }

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


# The per-row arrays, grown together (``_read_compiled`` takes them in this order).
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


class _Parsed(NamedTuple):
    """A batch's well-formed events, read once, as columns (lists, or arrays: ``_arrays``).
    Per event (a write, or a prediction with at least one well-formed value): its entity's
    hash, its event time or prediction time (``first``), its write time or, for a
    prediction, NaN (``second``), where its values end in ``columns`` and its position in
    the batch; per value (a write is one), its feature's column."""

    entities: Any
    first: Any
    second: Any
    ends: Any
    positions: Any
    columns: Any


# Values below which ``_read`` costs less than the compiled loop: about 5 us a value in
# Python, against 12 us for the loop's call and 2 us for its arrays.
_FEW_VALUES = 3


# Events below which ``_parse`` of them one at a time (``update_writes`` without a run)
# costs less than the columns' compiled merge: at a leak watch's batch of 16 records of
# the default scenario (about 11 writes and served values), the merge costs 15% less (100
# against 118 us a batch); at batches of 4 records, 20% more.
_FEW_EVENTS = 9


def _few(count: int, bound: int) -> bool:
    """Whether ``count`` values (``_read``) or events (``_parse``) go one at a time: fewer
    than ``bound``, and not past ``SMALL_BATCH`` (which tests set to -1 to send every batch
    to the loop)."""
    return count < bound and count <= _batch.SMALL_BATCH


def _arrays(parsed: _Parsed) -> _Parsed:
    """The columns as the arrays ``_read_compiled`` takes."""
    return _Parsed(
        np.array(parsed.entities, np.uint64),
        np.array(parsed.first, np.float64),
        np.array(parsed.second, np.float64),
        np.array(parsed.ends, np.intp),
        np.array(parsed.positions, np.intp),
        np.array(parsed.columns, np.intp),
    )


_FIRST_TWO = operator.itemgetter(0, 1)
_NAMED_NONE = np.zeros(0, bool)
# No events parsed, and no run: ``_merge_compiled``'s inputs of a batch without them.
_NO_EVENTS = _Parsed(
    np.zeros(0, np.uint64),
    np.zeros(0),
    np.zeros(0),
    np.zeros(0, np.intp),
    np.zeros(0, np.intp),
    np.zeros(0, np.intp),
)
_NO_RUN = ServedRun(np.zeros(0, np.uint64), np.zeros(0), (), np.zeros((0, 0)), np.zeros(0, np.intp))


def _place(places: np.ndarray, w: int) -> int:
    """The place of write ``w`` among events whose others are at ``places``: the
    ``w``-th place not in ``places``."""
    # The others before it are those at places up to its own, found by bisection on
    # ``places[j] - j`` (the writes before other ``j``), which never decreases.
    return w + int(np.searchsorted(places - np.arange(len(places)), w, side="right"))


@functools.lru_cache(maxsize=64)
def _named(features: tuple[str, ...]) -> np.ndarray:
    """Whether each of a run's features is a valid name (a batch's runs list the same)."""
    return np.array([_valid_feature(feature) for feature in features], bool)


@compiled
def _merge_compiled(
    entities: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    ends: np.ndarray,
    positions: np.ndarray,
    columns: np.ndarray,
    write_ok: np.ndarray,
    write_entities: np.ndarray,
    write_event_at: np.ndarray,
    write_written_at: np.ndarray,
    write_codes: np.ndarray,
    found: np.ndarray,
    places: np.ndarray,
    run_entities: np.ndarray,
    run_at: np.ndarray,
    run_written: np.ndarray,
    run_before: np.ndarray,
    named: np.ndarray,
    run_columns: np.ndarray,
    offset: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The ``_Parsed`` arrays of a batch of ``offset`` events, in order: the others
    (``entities``... ``columns``, their events parsed at their places, ``places``), the
    writes at the places left (``write_ok``... ``write_codes``: those well-formed whose
    feature has a column in ``found``, the others' columns, ``-1`` if not followed), and a
    ``ServedRun``'s predictions among them, each after the events of place below its
    ``run_before``, at position ``offset`` plus its index: its values as ``_values_of``
    reads a ``ServedValues`` (a value is malformed unless its prediction's time, its
    feature's name (``named``) and its write time are well-formed; a well-formed one is
    read if its feature has a column in ``run_columns``, -1 past ``max_features``; a
    prediction without one is no event). The merged arrays and the number of malformed
    writes and values. One pass, not the numpy steps of each source's columns and their
    merge, which cost a batch of a few dozen events more than the pass."""
    count, width = run_written.shape
    writes = write_ok.shape[0]
    events = len(entities) + writes + count
    out_entities = np.empty(events, np.uint64)
    out_first = np.empty(events)
    out_second = np.empty(events)
    out_ends = np.empty(events, np.intp)
    out_positions = np.empty(events, np.intp)
    out_columns = np.empty(len(columns) + writes + count * width, np.intp)
    rejected = 0
    event = value = 0
    taken = start = 0
    other = w = 0
    prediction = 0
    for place in range(offset + 1):
        # The predictions before this place's event (all that are left, after the last).
        while prediction < count and (place == offset or run_before[prediction] <= place):
            at = run_at[prediction]
            values = value
            for feature in range(width):
                if not (
                    np.isfinite(at)
                    and named[feature]
                    and np.isfinite(run_written[prediction, feature])
                ):
                    rejected += 1
                elif run_columns[feature] >= 0:
                    out_columns[value] = run_columns[feature]
                    value += 1
            if value > values:
                out_entities[event] = run_entities[prediction]
                out_first[event] = at
                out_second[event] = np.nan
                out_ends[event] = value
                out_positions[event] = offset + prediction
                event += 1
            prediction += 1
        if place == offset:
            break
        if other < places.shape[0] and places[other] == place:
            # An other: its event, if it parsed to one.
            other += 1
            if not (taken < len(entities) and positions[taken] == place):
                continue
            for at_value in range(start, ends[taken]):
                out_columns[value] = columns[at_value]
                value += 1
            start = ends[taken]
            entity, at, second_at = entities[taken], first[taken], second[taken]
            taken += 1
        else:
            column = found[write_codes[w]]
            well_formed = write_ok[w]
            entity, at, second_at = write_entities[w], write_event_at[w], write_written_at[w]
            w += 1
            if not well_formed:
                rejected += 1
                continue
            if column < 0:
                continue
            out_columns[value] = column
            value += 1
        out_entities[event] = entity
        out_first[event] = at
        out_second[event] = second_at
        out_ends[event] = value
        out_positions[event] = place
        event += 1
    return (
        out_entities[:event],
        out_first[:event],
        out_second[:event],
        out_ends[:event],
        out_positions[:event],
        out_columns[:value],
        rejected,
    )


# The per-feature arrays ``_read_compiled`` changes, in its order.
_FEATURES = ("_predictions", "_gaps", "_newest", "_block_gaps", "_block_end")
# What ``_read_compiled`` stopped at: the end, a key without a free row where the rows must
# grow, or a look at a block just complete that Python takes (it flags the feature, or
# its next look needs Python's rounding).
_DONE, _GROW, _LOOK = 0, 1, 2
# The numbers ``_read_compiled`` changes, in its ``tallies`` (the free rows, the keys in
# the table, the keys made and evicted) and its ``times``.
_TALLIES = _FREE, _SIZE, _MADE, _EVICTED = range(4)
_TIMES = _FORGOTTEN_UNTIL, _STREAM_TIME = range(2)


@compiled
def _read_compiled(
    entities: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    ends: np.ndarray,
    columns: np.ndarray,
    event: int,
    value: int,
    table: tuple[np.ndarray, ...],
    rows: tuple[np.ndarray, ...],
    features: tuple[np.ndarray, ...],
    tallies: np.ndarray,
    times: np.ndarray,
    settings: tuple[int, int, int],
    max_delay: float,
    anytime: tuple[np.ndarray, np.ndarray, np.ndarray],
    cuts: np.ndarray,
    tests: tuple[float, float, float],
) -> tuple[int, int, int, int, int]:
    """``AvailabilityGap._read`` of a batch's ``_Parsed`` columns from value ``value`` (of
    event ``event``) on, on the detector's arrays: ``table`` (the key table's rows and keys,
    the free rows, the features' salts), ``rows`` (``_ROWS``) and ``features``
    (``_FEATURES``), its numbers in ``tallies`` and ``times``, ``settings`` (the block,
    ``min_predictions``, ``max_keys``), and for the tests of complete blocks (``_look``)
    the anytime p-values' arrays (``looks``, ``next_look``, ``p_value``), the cuts and
    ``tests`` (``max_gap_rate``, ``alpha``, the looks' growth).

    One loop, its steps written out rather than calls of functions of the arrays: such a
    call counts references to each array it is given, which cost more than the step. The
    exceptions are ``_late_compiled``, for a write that reaches back past its entity's
    predictions, and ``_make_room_compiled``, at the cap: both rarer than a value.

    Returns
    -------
    tuple
        What it stopped at (``_DONE``; ``_GROW``: the rows must grow for the key of value
        ``value``, which is read again; ``_LOOK``: the value before ``value`` completed
        block ``number`` of the feature of ``column``, whose test, left undone, flags the
        feature or has a next look too close to call without Python's rounding), the
        event of that value and the value to go on from, ``column`` and ``number``.
    """
    table_rows, table_keys, free, salt = table
    in_use, key_hash, since, latest, seen, written, events, writes = rows[:8]
    served, predicted_at, counted, block_of = rows[8:]
    predictions, gaps, newest, block_gaps, block_end = features
    block, min_predictions, max_keys = settings
    looks, next_look, p_values = anytime
    max_gap_rate, alpha, growth = tests
    history, pending = events.shape[1], predicted_at.shape[1]
    step, index = event, value
    while step < len(entities):
        if index == ends[step]:
            step += 1
            continue
        at, write_time = first[step], second[step]
        write = not np.isnan(write_time)
        # At each value of a prediction, the same: the stream time after it.
        if not write and at > times[_STREAM_TIME]:
            times[_STREAM_TIME] = at
        column = columns[index]
        key = entities[step] ^ salt[column]
        # ``AvailabilityGap._row``.
        slot, row = probe_compiled(table_rows, table_keys, key, False)
        if row < 0:
            if tallies[_FREE] == 0:
                if not _make_room_compiled(
                    times[_STREAM_TIME],
                    table_rows,
                    table_keys,
                    free,
                    in_use,
                    key_hash,
                    latest,
                    seen,
                    tallies,
                    times,
                    max_keys,
                    max_delay,
                ):
                    return _GROW, step, index, 0, 0
                slot = probe_compiled(table_rows, table_keys, key, False)[0]
            tallies[_FREE] -= 1
            row = np.int64(free[tallies[_FREE]])
            table_keys[slot] = key
            table_rows[slot] = row
            tallies[_SIZE] += 1
            in_use[row] = True
            tallies[_MADE] += 1
            key_hash[row] = key
            since[row] = latest[row] = seen[row] = times[_FORGOTTEN_UNTIL]
            written[row] = served[row] = 0
        index += 1
        if write:
            # ``AvailabilityGap._write_row``, ``_put_write`` first.
            count = written[row]
            place = count % history
            if count >= history:
                since[row] = _max(since[row], _max(events[row, place], writes[row, place]))
            events[row, place] = at
            writes[row, place] = write_time
            written[row] = count + 1
            latest[row] = _max(_max(latest[row], at), write_time)
            seen[row] = _max(seen[row], latest[row])
            for place in range(min(served[row], pending)):
                when = predicted_at[row, place]
                if (
                    not counted[row, place]
                    and at <= when < write_time
                    and _late_compiled(row, when, since, written, events, writes)
                ):
                    counted[row, place] = True
                    gaps[column] += 1
                    number = np.int64(block_of[row, place])
                    # Still in the ring: the block of the latest prediction and the ones
                    # before.
                    if number > (predictions[column] - 1) // block - _RING:
                        block_gaps[column, number % _RING] += 1
            continue
        # ``AvailabilityGap._add_prediction``.
        late = _late_compiled(row, at, since, written, events, writes)
        count = predictions[column]
        number = count // block
        place = served[row] % pending
        predicted_at[row, place] = at
        counted[row, place] = late
        block_of[row, place] = number
        served[row] += 1
        if at > seen[row]:
            seen[row] = at
        # ``AvailabilityGap._advance``; the place in the block without dividing again.
        ring = number % _RING
        fresh = count == number * block
        if fresh:
            block_gaps[column, ring] = 1 if late else 0
        elif late:
            block_gaps[column, ring] += 1
        if late:
            gaps[column] += 1
        if at > newest[column]:
            newest[column] = block_end[column, ring] = at
        elif fresh:
            block_end[column, ring] = newest[column]
        predictions[column] = count + 1
        if count + 1 == (number + 1) * block and count + 1 >= min_predictions:
            # ``AvailabilityGap._look``, its record as ``AnytimePValues.record``'s.
            p_value = _windows_compiled(
                block_end[column], block_gaps[column], number, cuts, block, max_gap_rate
            )[0]
            flagged = p_values[column] <= alpha
            if not record_look(
                column, count + 1, p_value, growth, alpha, flagged, looks, next_look, p_values
            ):
                return _LOOK, step, index, column, number
    return _DONE, step, index, 0, 0


@compiled
def _windows_compiled(
    block_end: np.ndarray,
    block_gaps: np.ndarray,
    number: int,
    cuts: np.ndarray,
    block: int,
    max_gap_rate: float,
) -> tuple[float, int, int]:
    """The test of a feature's windows of complete blocks up to block ``number``, just
    complete (``block_end`` and ``block_gaps``: its rows of the per-block arrays): the
    smallest p-value times the windows tested (Bonferroni), and that window's predictions
    and gaps; of windows alike in p-value the largest, then the fewest gaps."""
    oldest = max(0, number - _RING + 1)
    best, best_size, best_found = math.inf, 0, 0
    # The newest block old enough for each cut (the cuts grow): block ends only grow, so
    # it is found going back from the last cut's, and one found for two cuts is tested once.
    last = tested = number
    for k, cut in enumerate(cuts):
        before = block_end[number % _RING] - cut
        while last >= oldest and block_end[last % _RING] > before:
            last -= 1
        if last < oldest:
            break
        if k and last == tested:
            continue
        tested = last
        first = max(oldest, last - _BLOCKS + 1)
        size = (last - first + 1) * block
        found = 0
        for b in range(first, last + 1):
            found += block_gaps[b % _RING]
        p_value = binomial_tail(found, size, max_gap_rate)
        if p_value < best or (
            p_value == best and (size > best_size or (size == best_size and found < best_found))
        ):
            best, best_size, best_found = p_value, size, found
    return best * len(cuts), best_size, best_found


@compiled
def _make_room_compiled(
    now: float,
    table_rows: np.ndarray,
    table_keys: np.ndarray,
    free: np.ndarray,
    in_use: np.ndarray,
    key_hash: np.ndarray,
    latest: np.ndarray,
    seen: np.ndarray,
    tallies: np.ndarray,
    times: np.ndarray,
    max_keys: int,
    max_delay: float,
) -> bool:
    """``AvailabilityGap._make_room``, but for growing the rows: False if they must grow."""
    size = len(in_use)
    expired = np.flatnonzero(in_use & (seen < now - max_delay))
    if len(expired):
        forgotten = expired
    elif size < max_keys:
        return False
    else:
        oldest = max(1, size // 16)
        threshold = np.partition(seen, oldest - 1)[oldest - 1]
        forgotten = np.flatnonzero(seen <= threshold)
        tallies[_EVICTED] += len(forgotten)
    # ``AvailabilityGap._forget``.
    until = latest[forgotten].max()
    if until > times[_FORGOTTEN_UNTIL]:
        times[_FORGOTTEN_UNTIL] = until
    remove_compiled(table_rows, table_keys, key_hash[forgotten])
    in_use[forgotten] = False
    tallies[_SIZE] -= len(forgotten)
    count = tallies[_FREE]
    free[count : count + len(forgotten)] = forgotten[::-1]
    tallies[_FREE] = count + len(forgotten)
    return True


@compiled
def _late_compiled(
    row: np.int64,
    at: float,
    since: np.ndarray,
    written: np.ndarray,
    events: np.ndarray,
    writes: np.ndarray,
) -> bool:
    """``AvailabilityGap._late``."""
    joined = False
    joined_event = joined_written = 0.0
    for slot in range(min(written[row], events.shape[1])):
        event, write = events[row, slot], writes[row, slot]
        # Among writes of the same event time, the one written first is the benefit of
        # the doubt.
        if event <= at and (
            not joined or event > joined_event or (event == joined_event and write < joined_written)
        ):
            joined, joined_event, joined_written = True, event, write
    return joined and joined_written > at and joined_event >= since[row]


@compiled
def _max(a: float, b: float) -> float:
    """Python's ``max(a, b)``: ``a`` unless ``b`` is greater."""
    return b if b > a else a


def _oldest_first(rings: np.ndarray, rows: np.ndarray, added: np.ndarray) -> np.ndarray:
    """The values the rings of ``rows`` hold, row after row, each row's oldest first
    (``added[i]`` values went into row ``rows[i]``)."""
    # Made here, not in the compiled loop: an array numba makes carries a dtype object of
    # its own, which pickle writes out again where numpy's own would be a reference.
    taken = np.empty(int(np.minimum(added, rings.shape[1]).sum()), rings.dtype)
    _take_oldest_first(rings, rows, added, taken)
    return taken


@compiled
def _take_oldest_first(
    rings: np.ndarray, rows: np.ndarray, added: np.ndarray, taken: np.ndarray
) -> None:
    """``_oldest_first`` into ``taken``, in one pass over what the rings hold: a
    checkpoint reads every kept key's rings, and numpy's gather over whole rows of slot
    indices was most of a worker's checkpoint cost."""
    size = rings.shape[1]
    k = 0
    for i in range(len(rows)):
        held = min(added[i], size)
        slot = (added[i] - held) % size
        for _ in range(held):
            taken[k] = rings[rows[i], slot]
            k += 1
            slot += 1
            if slot == size:
                slot = 0


def _ring(values: np.ndarray, held: np.ndarray, size: int) -> np.ndarray:
    """Rings of ``size`` holding ``values`` (as ``_oldest_first`` gives them), ``held`` per
    row, oldest first from slot 0."""
    rings = np.zeros((len(held), size), values.dtype)
    rings[np.arange(size) < held[:, None]] = values
    return rings
