"""Label-coincident writes: features written (or nulled) because the outcome happened, at
any lag from the moment of the outcome to a week or so after it."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors._batch import attribute_state, set_attribute_state
from detectors.leaks import _coincide
from detectors.leaks._anytime import AnytimePValues
from detectors.leaks._arguments import require_counts, require_durations, require_fractions
from detectors.leaks._coincide import (
    _ANY_KIND,
    _CONTROL,
    _NEAR,
    _NEAR_ONLY,
    _NULL_KINDS,
    _NULL_SHIFT,
    _WINDOWS,
    best_cell,
    coincide,
    telling,
)
from detectors.leaks._memory import KeyTable, in_sample, narrow, pack_times, unpack_times
from detectors.leaks.events import (
    FeatureWrite,
    Label,
    Scalar,
    WriteColumns,
    checked_label,
    checked_write,
    entity_hash,
    interleaved,
    is_null,
    label_columns,
    write_columns,
)

# Axes of a feature's counters: kind of write, class, lag bin, then the statistic
# (``_NEAR``, ``_CONTROL``, ``_NEAR_ONLY``, ``_CONTROL_ONLY``, shared with the compiled loop).
_ANY, _NULL = 0, 1
# A feature's lag bins of one entity are bits of a uint32: any writes in the low half,
# writes of null in the high half (``_NULL_SHIFT``), so at most 16 bins.
_MAX_BINS = 16
# Each lag bin is this many times as wide as the one before.
_GROWTH = 4.0
_NO_WRITE = -math.inf
# ``math.floor`` without its attribute lookup, in ``_tiles``'s loop over the bins.
_floor = math.floor
# Batches of fewer events cost more in the compiled loop's call than one by one.
_FEW_EVENTS = 2
# A batch's events as the compiled loop reads them (``_read``): the writes' six columns,
# the labels' three and their places.
_Columns = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
]  # fmt: skip
# The labels' columns of a batch of writes alone.
_NO_KEYS = np.zeros(0, np.uint64)
_NO_TIMES = np.zeros(0, np.float64)
_NO_CLASSES = np.zeros(0, np.int8)
_NO_PLACES = np.zeros(0, np.intp)
# Values written whose nulls numpy finds at once.
_NONE_TYPE = type(None)
_FLOAT_OR_NONE = frozenset({float, _NONE_TYPE})
# Values written whose nulls are those unequal to themselves, and None.
_PLAIN = frozenset({float, _NONE_TYPE, str, int, bool})
_NONES = itertools.repeat(None)
# Judgments times features judged at once, which bounds the memory judging takes.
_CHUNK_CELLS = 1 << 16
# Fewer labels with lag bins due at once cost more in numpy calls than one by one.
_FEW_LABELS = 4
# Per row (entity): dtype, and value in a row not in use.
_PER_ROW: dict[str, tuple[type, float]] = {
    "_in_use": (np.bool_, False),
    "_row_keys": (np.uint64, 0),
    "_phase": (np.float64, 0.0),  # in [0, 1): where the entity's control grid starts
    "_since": (np.float64, 0.0),  # writes before this may have been forgotten
    "_latest": (np.float64, -math.inf),  # the latest write time, which the control bins follow
    "_expires": (np.float64, 0.0),
    "_label_at": (np.float64, 0.0),
    "_label_class": (np.int8, 0),
    "_judgeable": (np.uint32, 0),  # the open label's bins that can be judged
    "_next_bin": (np.int64, 0),
    "_due": (np.float64, math.inf),  # when the open label's next bin is judged; inf: none open
}
# Per row and feature (then control window): bins (and null bins) with writes in the
# current control window and the ones before, of the open label near and in control, and
# the latest write and write of null.
_PER_CELL: dict[str, tuple[type, float, tuple[int, ...]]] = {
    "_windows": (np.uint32, 0, (_WINDOWS,)),
    "_near": (np.uint32, 0, ()),
    "_control": (np.uint32, 0, ()),
    "_last_write": (np.float64, _NO_WRITE, ()),
    "_last_null": (np.float64, _NO_WRITE, ()),
}
# What a row not in use holds, per array.
_FILLS: dict[str, float] = {
    **{name: fill for name, (_, fill) in _PER_ROW.items()},
    **{name: fill for name, (_, fill, _) in _PER_CELL.items()},
}
_ROW_TIMES = ("_since", "_latest", "_expires", "_label_at", "_due")
_PER_FEATURE = ("_labels", "_counts", "_unjudged", "_best")


def _spread(bins: int) -> int:
    """The bits of ``bins`` (one per lag bin) in both halves: any writes and writes of null."""
    return bins | (bins << _NULL_SHIFT)


def _bins(tiles: list[int], other: list[int], offset: int) -> int:
    """The bits of the bins whose ``tiles`` are ``offset`` after ``other``'s."""
    return sum(1 << b for b, (t, o) in enumerate(zip(tiles, other, strict=True)) if t - o == offset)


def _offsets(tiles: list[int], other: list[int]) -> list[int]:
    """Per offset up to ``_WINDOWS - 1``, the bits of the bins whose ``tiles`` are that
    offset after ``other``'s: ``_bins`` of each offset, in one pass."""
    found = [0] * _WINDOWS
    for b, (t, o) in enumerate(zip(tiles, other, strict=True)):
        if 0 <= t - o < _WINDOWS:
            found[t - o] |= 1 << b
    return found


def _bins_beyond(tiles: list[int], other: list[int], offset: int) -> int:
    """The bits of the bins whose ``tiles`` are more than ``offset`` after ``other``'s."""
    return sum(1 << b for b, (t, o) in enumerate(zip(tiles, other, strict=True)) if t - o > offset)


def _add_judged(
    counts: np.ndarray, labels: np.ndarray, judged: np.ndarray, stats: np.ndarray
) -> None:
    """Adds judgments to ``counts`` (feature, kind, class, bin, statistic) and ``labels``
    (feature, class, bin): judgment j adds ``stats[j]`` (feature, kind, statistic) and one
    label at its class and lag bin, the one true cell of ``judged[j]`` (class, bin)."""
    n, classes, lags = judged.shape
    added = judged.reshape(n, classes * lags).T @ stats.reshape(n, -1)
    into = counts.transpose(2, 3, 0, 1, 4)
    np.add(into, added.reshape(classes, lags, *stats.shape[1:]), out=into)
    into = labels.transpose(1, 2, 0)
    np.add(into, judged.sum(axis=0)[..., None], out=into)


def _pack_bits(bits: np.ndarray, bins: int) -> np.ndarray:
    """Bits of ``bins`` lag bins in both halves as ``2 * bins`` bits, in the narrowest type."""
    low = np.uint32((1 << bins) - 1)
    packed = (bits & low) | ((bits >> np.uint32(_NULL_SHIFT - bins)) & (low << np.uint32(bins)))
    return packed.astype(np.min_scalar_type((1 << 2 * bins) - 1))


def _unpack_bits(packed: np.ndarray, bins: int, out: np.ndarray) -> None:
    """Writes the bits ``_pack_bits`` packed into ``out`` (uint32), in both halves."""
    # Into ``out`` directly: a restore's cost is mostly the pages it writes first.
    np.left_shift(packed >> bins, _NULL_SHIFT, out=out, dtype=np.uint32)
    out |= packed & ((1 << bins) - 1)


def lag_edges(tolerance: float, max_lag: float) -> np.ndarray:
    """The lag bins' edges: ``[-tolerance, tolerance)`` around the outcome, then bins each
    ``4`` times as far out, the last one ending at ``max_lag``.

    >>> (lag_edges(1.0, 100.0)).tolist()
    [-1.0, 1.0, 4.0, 16.0, 64.0, 100.0]
    """
    edges = [-tolerance, tolerance]
    while edges[-1] * _GROWTH < max_lag:
        edges.append(edges[-1] * _GROWTH)
    edges.append(max_lag)
    return np.asarray(edges, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _constants(
    inverse: tuple[float, ...],
    widths: tuple[float, ...],
    tolerance: float,
    lateness: float,
    ttl: float,
    min_labels: int,
    alpha: float,
    growth: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled loop's arrays of a detector's settings: the bins' inverse widths and
    widths, and its ``settings`` (``_coincide.TOLERANCE``...). Made once per settings, not
    per batch: their numpy steps cost a batch of a few events as much as its loop. (The
    loop never writes them.)"""
    inverse_array = np.array(inverse)
    settings = np.array(
        [
            tolerance,
            lateness,
            ttl,
            _coincide.tile_limit(inverse_array),
            min_labels,
            alpha,
            growth,
        ],
        np.float64,
    )
    return inverse_array, np.array(widths), settings


@dataclasses.dataclass(frozen=True)
class CoincidenceEvidence:
    """One feature's writes around the outcomes, at the lag bin and kind of write where they
    look most like a leak, per class (negative, positive).

    Attributes
    ----------
    feature
        The feature's name.
    lag
        The lag bin ``(low, high)``, in timestamp units after ``label_at``.
    nulls
        Whether the counts are of writes of null or a sentinel (else of any write).
    labels
        Labels judged at that lag, per class.
    near_writes, control_writes
        Labels with such a write in the lag bin after ``label_at`` (near), and in a window
        as wide before it (control), per class.
    leak_class
        The class whose outcomes attract the writes (0 or 1).
    score
        The excess of near over control writes per label in ``leak_class`` minus the same
        excess in the other class; 1.0 means every outcome of one class and none of the
        other was followed by a write at that lag.
    p_value
        The anytime-valid p-value of "write times follow one class's outcomes".
    leaking
        Whether ``p_value`` is at most the detector's ``alpha``.
    unjudged
        Label lag bins not judged, over all lags: the entity's writes around them were
        partly forgotten (an entity dropped for ``max_entities`` or expired, a label that
        came too late for its control window). Many of them mean the limits are too small.
    """

    feature: str
    lag: tuple[float, float]
    nulls: bool
    labels: tuple[int, int]
    near_writes: tuple[int, int]
    control_writes: tuple[int, int]
    leak_class: int
    score: float
    p_value: float
    leaking: bool
    unjudged: int


class LabelCoincidentWrites(base.Base):
    """Flags features whose writes follow one class's outcomes, at any lag up to ``max_lag``.

    A trigger that nulls ``last_login_date`` when a user cancels, a nightly job that closes
    the account's fields, a clerk who types the cancellation reason in two days later: each
    writes the feature because the outcome happened, and training, which joins the value
    valid at ``label_at`` or later, learns the label from it. For every label and feature
    the detector asks, per lag bin (``[-tolerance, tolerance)`` around ``label_at``, then
    bins each four times as far out, to ``max_lag``), whether the entity's feature was
    written in that bin after ``label_at`` (near), and whether it was written in a window as
    wide shortly before the outcome (control: a window of a grid laid at a random phase per
    entity, the last one that ends before ``label_at - tolerance``). An honest feature is
    written as often in either window, whatever the class, even when its value or its write
    rate depends on the class; so is a feature written at every outcome whatever the class.
    A leak is written near more than in the control window, for one class more than for the
    other. A write counts at its ``event_at`` and at its ``written_at``. A feature first
    written after the labels (a field that exists only once the outcome happened) is
    judged like any other: its control windows were empty.

    Each feature, kind of write (any write, or of null or a ``sentinels`` value), class and
    lag bin is an intersection-union test: an exact sign test that near writes outnumber
    control writes within the class, and Fisher's exact test that the class has near writes
    more often than the other class. Both must be significant. The combinations are
    Bonferroni-corrected and the tests are repeated as labels arrive with an anytime-valid
    correction, so ``alpha`` bounds the chance that an honest feature is ever flagged, per
    feature, over the whole stream. A label's lag bin is judged ``lateness`` after the bin
    closes in stream time, so short lags are judged within minutes and a week's lag after a
    week. Stream time is the writes' own (the latest ``written_at`` seen), not the labels':
    a worker further behind on the writes than on the labels reads a label before the
    writes that follow its outcome, and a bin closed by the label's time would be judged
    without them.

    State is a few numbers per entity and feature in numpy arrays: per entity its key (a
    64-bit hash of the id), times and open label; per entity and feature the bins hit in
    the current and the previous control window, the near and control bins of the open
    label, and the latest write and write of null (a label that arrives after its entity's
    writes recovers only those). At most ``max_entities`` entities are kept: an entity
    expires ``label_delay + 2 * max_lag + lateness`` after its latest event. When the table
    is full and none has expired, the entities kept become a smaller sample: only entities
    whose key is below a threshold are kept, and the threshold halves (``sample_fraction``
    of the key range; the entities above it are forgotten, and their events from then on
    ignored, their labels counted in ``unsampled``). Every event of an entity in the sample
    is kept, so its labels are judged whole: forgetting the entity seen longest ago instead
    would forget most entities before their labels come. ``max_features`` features are
    followed. Writes of a forgotten entity are missing, so its control windows up to then
    are not judged (see ``unjudged``): guessing "no write" there would make honest features
    look like leaks. ``state_bytes`` is bounded by ``bytes_per_entity(max_features)`` times
    ``max_entities``, plus a part per feature. A pickle holds only the entities kept and
    the features followed, in
    the narrowest types that give them back exactly: 11 to 18 bytes per entity and
    feature with timestamps in whole milliseconds (``__getstate__``).

    Parameters
    ----------
    tolerance
        Half-width of the lag bin around the outcome, in timestamp units (default one
        minute in milliseconds); the next bins end at 4, 16, 64... times it.
    max_lag
        The longest lag judged (default eight days: a weekly job with a day's slack).
    lateness
        How long, in stream time (the writes'), a lag bin waits for late writes after it
        closes.
    label_delay
        How long after the outcome its label typically arrives; entities are kept at least
        that long plus ``2 * max_lag + lateness`` after their latest event.
    sentinels
        Values that mean "missing" like ``None``, e.g. ``("1970-01-01", -1)``. (``None``
        rather than an empty tuple when there are none: river's ``clone()`` cannot copy an
        empty tuple.)
    alpha
        The chance, per feature, of ever flagging an honest feature.
    min_labels
        Labels of each class judged at a lag before that lag is tested.
    max_entities
        Entities kept; the state grows with them up to this cap and no further (the sample
        of entities halves instead).
    max_features
        Features followed; writes to further features are ignored.

    Examples
    --------
    Users are written to at random and each gets one outcome. A nightly job closes a
    cancelled account and sets ``days_since_last_order`` to the sentinel -1, two to 26 hours
    after the cancellation. ``plan``'s value tells churners apart, but its write times are
    not tied to the outcome.

    >>> import heapq
    >>> import numpy as np
    >>> from detectors import LabelCoincidentWrites
    >>> from detectors.leaks import FeatureWrite, Label
    >>> rng = np.random.default_rng(3)
    >>> hour = 3_600_000.0
    >>> detector = LabelCoincidentWrites(sentinels=(-1,))
    >>> now, labelled, nightly = 0.0, set(), []
    >>> while not detector.leak_detected:
    ...     user = int(rng.integers(2_000))
    ...     churner = user % 3 == 0
    ...     now += rng.exponential(20_000.0)
    ...     while nightly and nightly[0][0] <= now:
    ...         at, closed = heapq.heappop(nightly)
    ...         detector.update(FeatureWrite(closed, "days_since_last_order", -1, at, at))
    ...     if user in labelled:
    ...         continue
    ...     if rng.random() < 0.95:
    ...         plan = "free" if churner else "pro"
    ...         detector.update(FeatureWrite(user, "plan", plan, now, now))
    ...         detector.update(FeatureWrite(user, "days_since_last_order", 3, now, now))
    ...         continue
    ...     detector.update(Label(user, int(churner), now))
    ...     labelled.add(user)
    ...     if churner:
    ...         heapq.heappush(nightly, (now + float(rng.uniform(2, 26)) * hour, user))
    >>> detector.leaking_features, len(labelled), round(now / hour, 1)
    (('days_since_last_order',), 404, 50.5)
    >>> evidence = detector.evidence["days_since_last_order"]
    >>> [round(lag / hour, 2) for lag in evidence.lag], evidence.nulls, evidence.leak_class
    ([4.27, 17.07], True, 1)
    >>> evidence.labels, evidence.near_writes, evidence.control_writes
    ((69, 39), (0, 20), (0, 0))
    >>> round(evidence.score, 3), round(evidence.p_value, 5)
    (0.513, 0.00555)
    >>> detector.evidence["plan"].leaking
    False
    """

    # The key table, the p-values and the columns by name (objects, which the garbage
    # collector tracks) in slots, the numbers and arrays in the attribute dict, which it
    # then stops tracking and visiting.
    __slots__ = ("_columns", "_looks", "_table")

    # The per-row and per-cell arrays (_PER_ROW, _PER_CELL), which _blank makes.
    _in_use: np.ndarray
    _row_keys: np.ndarray
    _phase: np.ndarray
    _since: np.ndarray
    _latest: np.ndarray
    _expires: np.ndarray
    _label_at: np.ndarray
    _label_class: np.ndarray
    _judgeable: np.ndarray
    _next_bin: np.ndarray
    _due: np.ndarray
    _windows: np.ndarray
    _near: np.ndarray
    _control: np.ndarray
    _last_write: np.ndarray
    _last_null: np.ndarray

    def __init__(
        self,
        tolerance: float = 60_000.0,
        max_lag: float = 691_200_000.0,
        lateness: float = 600_000.0,
        label_delay: float = 86_400_000.0,
        sentinels: tuple[Scalar, ...] | None = None,
        alpha: float = 0.01,
        min_labels: int = 10,
        max_entities: int = 100_000,
        max_features: int = 1_000,
    ) -> None:
        require_durations(positive=True, tolerance=tolerance)
        require_durations(lateness=lateness, label_delay=label_delay)
        if not (
            isinstance(max_lag, int | float)
            and math.isfinite(max_lag)
            and max_lag >= _GROWTH * tolerance
            and len(lag_edges(tolerance, max_lag)) <= _MAX_BINS + 1
        ):
            raise ValueError(
                f"max_lag must be at least {_GROWTH:g} * tolerance = {_GROWTH * tolerance!r} "
                f"and give at most {_MAX_BINS} lag bins, got {max_lag!r}"
            )
        if not (sentinels is None or isinstance(sentinels, tuple)):
            raise ValueError(f"sentinels must be None or a tuple of values, got {sentinels!r}")
        require_fractions(alpha=alpha)
        require_counts(min_labels=min_labels, max_entities=max_entities, max_features=max_features)
        self.tolerance = tolerance
        self.max_lag = max_lag
        self.lateness = lateness
        self.label_delay = label_delay
        self.sentinels = sentinels
        self.alpha = alpha
        self.min_labels = min_labels
        self.max_entities = max_entities
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        self._edges = lag_edges(float(self.tolerance), float(self.max_lag))
        bins = len(self._edges) - 1
        # Plain floats: the hot path does scalar arithmetic on them. Tuples, which the
        # garbage collector stops tracking, as it does not a list.
        self._edge_list: tuple[float, ...] = tuple(self._edges.tolist())
        self._width_list: tuple[float, ...] = tuple(np.diff(self._edges).tolist())
        self._inverse_list = tuple(1.0 / width for width in self._width_list)
        self._ttl = float(self.label_delay) + 2.0 * float(self.max_lag) + float(self.lateness)
        self._stream_time = -math.inf
        # Writes before the first event, or up to the latest time a forgotten entity held,
        # are unknown: a new entity may have had some, or be a forgotten one.
        self._forgotten_until = -math.inf
        # The row of each entity kept, by key. Rows grow by doubling up to max_entities.
        self._table = KeyTable(0)
        # Per row, and per row and feature (_PER_ROW, _PER_CELL).
        self._blank(0, 0)
        self._min_due = math.inf
        # Per feature.
        self._columns: dict[str, int] = {}
        self._labels = np.zeros((0, 2, bins), np.int64)
        self._counts = np.zeros((0, 2, 2, bins, 4), np.int64)
        self._unjudged = np.zeros(0, np.int64)
        self._looks = AnytimePValues(2 * self.min_labels)
        # The (kind, class, bin) of each feature's smallest p-value at its last test.
        self._best = np.zeros((0, 3), np.int64)
        self._flagged = np.zeros(0, bool)
        # Columns flagged by the event being read, and the features by column. These and
        # the batch's flags and halvings are tuples, replaced rather than appended to (a
        # flag or a halving is rare): empty, the garbage collector does not track them.
        self._new_flags: tuple[int, ...] = ()
        self._column_names: tuple[str, ...] = ()
        self._rejected = 0
        # Entities are kept if their key's top ``_sample_bits`` bits are 0; labels of the
        # others are counted.
        self._sample_bits = 0
        self._unsampled = 0
        # (position in the last batch, evidence) of each feature flagged in it.
        self._batch_events: tuple[tuple[int, CoincidenceEvidence], ...] = ()
        # (position in the last batch, ``sample_bits`` after) of each event that halved it.
        self._halvings: tuple[tuple[int, int], ...] = ()

    # ----------------------------------------------------------------- updates

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite` or :class:`Label`; anything else is counted in
        ``rejected``. ``detections`` is ``[0]`` if it flagged a feature, else empty."""
        self._batch_events = ()
        self._halvings = ()
        self._step(x, 0)

    def update_many(self, events: Sequence[Any]) -> None:
        """Reads a batch of events, exactly as ``update`` one by one would.

        ``detections`` holds the positions in the batch at which a feature was flagged, and
        ``flags`` the evidence of each feature as it was then. The events, read into
        columns (``_read``), go through a compiled loop that does ``update``'s arithmetic
        on the state arrays event by event (``_coincide.coincide``), the tests of the looks
        due included. It comes back here for what is rare: a new feature, a new entity when
        the table is full (room made: entities forgotten, rows grown, the sample halved),
        an event of times too large for integer tiles (read through ``update``'s code), a
        test that flags (or whose next look needs Python's decimal rounding) and a flag's
        evidence.
        """
        self._batch_events = ()
        self._halvings = ()
        if len(events) < _FEW_EVENTS:
            for i, x in enumerate(events):
                self._step(x, i)
            return
        at = [i for i, x in enumerate(events) if isinstance(x, FeatureWrite)]
        writes = write_columns([events[i] for i in at], at)
        others = np.ones(len(events), bool)
        others[at] = False
        places = np.flatnonzero(others)
        self._update_columns(writes, [events[i] for i in places.tolist()], places)

    def update_writes(
        self, writes: WriteColumns, labels: Sequence[Any], places: np.ndarray
    ) -> None:
        """Reads ``writes`` and ``labels`` as one batch, exactly as ``update_many`` would:
        ``labels[j]`` at place ``places[j]`` (increasing), the writes in order at the
        places left. ``flags``, ``detections`` and ``halvings`` give those places."""
        self._batch_events = ()
        self._halvings = ()
        if len(writes.ok) + len(labels) < _FEW_EVENTS:
            for i, x in enumerate(interleaved(writes, labels, places)):
                self._step(x, i)
            return
        self._update_columns(writes, labels, places)

    def _update_columns(
        self, writes: WriteColumns, others: Sequence[Any], places: np.ndarray
    ) -> None:
        """``update_writes``, its events (``others``: anything but writes, each rejected
        unless a well-formed :class:`Label`) read as the compiled loop's columns
        (``_read``); the loop comes back here for what is rare (``update_many``)."""
        columns, new_features = self._read(writes, others, places)
        places = columns[-1]
        # Each is made where the loop reaches it; the room for them all, made at once, is
        # the room they would have made one by one (``_column``).
        width = self._width(len(self._columns) + len(new_features))
        if width > self._windows.shape[1]:
            self._grow_columns(width)
        edges = self._edges
        inverse, widths, settings = _constants(
            self._inverse_list,
            self._width_list,
            self.tolerance,
            self.lateness,
            self._ttl,
            self.min_labels,
            self.alpha,
            self._looks.growth,
        )
        context = np.zeros(_coincide.CONTEXT, np.int64)
        # The rows of a pass of judgments, kept while the loop is out for the tests.
        work = np.empty(0, np.int64)
        first_new = len(self._columns)
        while True:
            if len(work) < len(self._due):
                work = np.empty(len(self._due), np.int64)
            tests = np.empty((max(1, len(self._columns)), 2), np.int64)
            times = np.array([self._stream_time, self._forgotten_until, self._min_due])
            table, looks = self._table, self._looks
            counters = np.array(
                [
                    table.size,
                    self._rejected,
                    self._unsampled,
                    len(self._columns),
                    self._sample_bits,
                ],
                np.int64,
            )
            stop = coincide(
                *columns, context, times, counters, settings, edges, inverse, widths,
                table.keys, table.rows, self._in_use, self._row_keys, self._phase, self._since,
                self._latest, self._expires, self._label_at, self._label_class,
                self._judgeable, self._next_bin, self._due, self._windows, self._near,
                self._control, self._last_write, self._last_null, self._labels, self._counts,
                self._unjudged, looks.looks, looks.next_look, looks.p_value, self._best,
                self._flagged, tests, work,
            )  # fmt: skip
            self._stream_time, self._forgotten_until, self._min_due = times.tolist()
            table.size, self._rejected, self._unsampled = counters[:3].tolist()
            i = int(context[_coincide.EVENT])
            if stop == _coincide.DONE:
                return
            # The event's label, or its write (the labels before it: the events before
            # it less the writes).
            j = int(np.searchsorted(places, i))
            label = j < len(places) and places[j] == i
            if stop == _coincide.NEW_COLUMN:
                self._column(new_features[int(columns[2][i - j]) - first_new])
            elif stop == _coincide.ROOM:
                # As ``_row`` for the event, after its times: expiries are by stream time.
                if label:
                    at = written = float(columns[7][j])
                else:
                    at, written = float(columns[3][i - j]), float(columns[4][i - j])
                self._start(at)
                if not label:
                    self._stream_time = max(self._stream_time, written)
                bits = self._sample_bits
                self._make_room()
                if self._sample_bits != bits:
                    self._halvings = (*self._halvings, (i, self._sample_bits))
            elif stop == _coincide.TESTS:
                for column, size in tests[: context[_coincide.DUE_TESTS]].tolist():
                    self._test(column, size, self._labels[column], self._counts[column])
                context[_coincide.FLAGGED] = bool(self._new_flags)
            else:
                if stop == _coincide.ALONE:
                    self._step(others[j] if label else writes.event(i - j), i)
                else:
                    self._take_flags(i)
                context[_coincide.EVENT] = i + 1

    def _read(
        self, writes: WriteColumns, others: Sequence[Any], places: np.ndarray
    ) -> tuple[_Columns, list[str]]:
        """The events of ``_update_columns`` as the compiled loop's columns: the writes'
        (whether well-formed, entity key, feature column, ``event_at``, ``written_at``,
        whether of null), the others' as labels (entity key, ``label_at``, class: -1
        unless a well-formed label) and their places among the writes. The features
        they add, in order: a write's column is the one its feature has, or will have
        when the features come in order."""
        ok = writes.ok
        # The column of each feature, or the one it will have: in order of first
        # well-formed write, within ``max_features``.
        features = writes.features
        codes = writes.codes
        found = np.array([self._columns.get(f, -1) for f in features], np.int64)
        added: list[str] = []
        if (found < 0).any() and (found[codes[ok]] < 0).any():
            room = self.max_features - len(self._columns)
            good = codes[ok]
            first = np.unique(good, return_index=True)[1]
            for code in good[np.sort(first)].tolist():
                if found[code] < 0:
                    if len(added) < room:
                        found[code] = len(self._columns) + len(added)
                        added.append(features[code])
                    else:
                        found[code] = _coincide.IGNORED
        write_columns = (ok, writes.entities, found[codes], writes.event_at, writes.written_at)
        nulls = self._nulls(writes.values)
        if not len(others):
            return (*write_columns, nulls, _NO_KEYS, _NO_TIMES, _NO_CLASSES, _NO_PLACES), added
        return (*write_columns, nulls, *label_columns(others), np.asarray(places, np.intp)), added

    def _nulls(self, values: list[Any]) -> np.ndarray:
        """``is_null`` of each value written, with the detector's sentinels."""
        if self.sentinels:
            sentinels = self.sentinels
            return np.array([is_null(value, sentinels) for value in values], np.bool_)
        kinds = set(map(type, values))
        if kinds <= _FLOAT_OR_NONE:
            # Floats and None only: NaN where ``is_null`` finds one (numpy reads None so).
            return np.isnan(np.array(values, np.float64))
        if kinds <= _PLAIN:
            # Of these, NaN alone is unequal to itself: a C-level pass, without a Python
            # step per value (strings and floats mixed, as most features' values are).
            nulls = np.fromiter(map(operator.ne, values, values), np.bool_, len(values))
            if _NONE_TYPE in kinds:
                nulls |= np.fromiter(map(operator.is_, values, _NONES), np.bool_, len(values))
            return nulls
        # ``is_null`` without sentinels, inline: a call per write costs as much again.
        isnan = math.isnan
        return np.array(
            [v is None or (isinstance(v, float) and isnan(v)) for v in values], np.bool_
        )

    def _step(self, x: Any, position: int) -> None:
        """Reads one event, the ``position``-th of its batch."""
        write = checked_write(x)
        label = None if write is not None else checked_label(x)
        bits = self._sample_bits
        if write is not None:
            self._add_write(write)
        elif label is not None:
            self._add_label(label)
        else:
            self._rejected += 1
            return
        if self._sample_bits != bits:
            self._halvings = (*self._halvings, (position, self._sample_bits))
        self._judge_now(position)

    def _judge_now(self, position: int) -> None:
        """Judges the lag bins due after the event at ``position``; keeps the evidence of
        the features that flagged, sorted by name, as it is after that event."""
        if self._min_due < self._stream_time:
            self._judge_due()
        self._take_flags(position)

    def _take_flags(self, position: int) -> None:
        """Keeps the evidence of the features flagged since the last event at ``position``,
        sorted by name, as it is now."""
        if self._new_flags:
            names = sorted(self._column_names[column] for column in self._new_flags)
            self._new_flags = ()
            self._batch_events += tuple(
                (position, self._evidence(n, self._columns[n])) for n in names
            )

    def _add_write(self, write: FeatureWrite) -> None:
        self._start(float(write.event_at))
        self._stream_time = max(self._stream_time, float(write.written_at))
        column = self._column(write.feature)
        if column is None:
            return
        row = self._row(entity_hash(write.entity_id))
        if row < 0:
            return
        null = is_null(write.value, self.sentinels or ())
        event_at, written_at = float(write.event_at), float(write.written_at)
        current = self._mark(row, column, event_at, null, None)
        if written_at != event_at:
            self._mark(row, column, written_at, null, current)
        if written_at + self._ttl > self._expires.item(row):
            self._expires[row] = written_at + self._ttl

    def _start(self, at: float) -> None:
        """At the first event: what came before it is unknown."""
        if self._forgotten_until == -math.inf:
            self._forgotten_until = at

    def _mark(
        self, row: int, column: int, at: float, null: bool, current: list[int] | None
    ) -> list[int]:
        """Records a write at ``at`` in the entity's control windows and open label; the
        tiles of the entity's latest write after it. ``current``: those before it, if
        known (a write's second time reads its first's), else None."""
        # Scalars through ``item``: a numpy scalar costs a microsecond more per operation.
        phase = self._phase.item(row)
        tiles = self._tiles(at, phase)
        latest = self._latest.item(row)
        if current is None and latest != -math.inf:
            current = self._tiles(latest, phase)
        kinds = _NULL_KINDS if null else _ANY_KIND
        windows = self._windows
        if at > latest:
            self._advance(row, at, tiles, current)
            # The entity's windows are now this write's: each bin's current one holds it
            # (``_offsets`` of the tiles and themselves, without the pass).
            cell = row, column, 0
            windows[cell] = windows.item(cell) | (_spread((1 << len(tiles)) - 1) & kinds)
            current = tiles
        else:
            assert current is not None  # ``at`` is finite, so the latest is too
            for back, bins in enumerate(_offsets(current, tiles)):
                if bins:
                    cell = row, column, back
                    windows[cell] = windows.item(cell) | (_spread(bins) & kinds)
        if at > self._last_write.item(row, column):
            self._last_write[row, column] = at
        if null and at > self._last_null.item(row, column):
            self._last_null[row, column] = at
        if self._due.item(row) < math.inf:
            label_at = self._label_at.item(row)
            near = self._near.item(row, column) | (self._lag_bits(at - label_at) & kinds)
            self._near[row, column] = near
            control = _bins(tiles, self._control_tiles(label_at, phase), 0)
            self._control[row, column] = self._control.item(row, column) | (
                _spread(control) & kinds
            )
        return current

    def _tiles(self, at: float, phase: float) -> list[int]:
        """Per bin, the index of the window of the entity's control grid that holds ``at``."""
        return [_floor(at * inverse - phase) for inverse in self._inverse_list]

    def _advance(self, row: int, at: float, tiles: list[int], current: list[int] | None) -> None:
        """Moves the entity's control windows on to those of a write at ``at``, later than
        its latest, whose windows are ``tiles`` (the latest's: ``current``, None if it had
        no write)."""
        if current is None:
            self._windows[row] = 0
        elif tiles != current:
            # A later write's tiles are never before the latest's (``floor`` of a product
            # by a positive inverse is monotonic), so some bin moved on.
            # Per bin, each window moves back by the bin's step; those beyond the last go.
            before = self._windows[row].copy()
            windows = self._windows[row]
            windows[...] = 0
            for step, bins in enumerate(_offsets(tiles, current)):
                if bins:
                    windows[:, step:] |= before[:, : _WINDOWS - step] & np.uint32(_spread(bins))
        self._latest[row] = at

    def _add_label(self, label: Label) -> None:
        label_at = float(label.label_at)
        self._start(label_at)
        row = self._row(entity_hash(label.entity_id))
        if row < 0:
            self._unsampled += 1
            return
        if self._due.item(row) < math.inf:
            # A new outcome of the entity: the bins of the last one not judged yet never will.
            self._close(np.array([row]))
        columns = len(self._columns)
        # Writes since the outcome that came before its label: only the latest are known.
        # Each row's times as Python floats at once (``tolist``), not a numpy scalar each.
        self._near[row, :columns] = [
            self._lag_bits(last_write - label_at) & _ANY_KIND | self._lag_bits(last_null - label_at)
            for last_write, last_null in zip(
                self._last_write[row, :columns].tolist(),
                self._last_null[row, :columns].tolist(),
                strict=True,
            )
        ]
        # Each bin's control window, the last of the grid that ends before the outcome, is
        # the entity's current window or the one before, or one without writes since.
        phase, since = self._phase.item(row), self._since.item(row)
        control = self._control_tiles(label_at, phase)
        latest = self._latest.item(row)
        lost = 0
        self._control[row] = 0
        if latest > -math.inf:
            current = self._tiles(latest, phase)
            for back, bins in enumerate(_offsets(current, control)):
                if bins:
                    self._control[row] |= self._windows[row, :, back] & np.uint32(_spread(bins))
            lost = _bins_beyond(current, control, _WINDOWS - 1)
        # A window that began before the entity was (re)made may miss forgotten writes.
        known = sum(
            1 << b
            for b, (tile, width, low) in enumerate(
                zip(control, self._width_list, self._edge_list, strict=False)
            )
            if (tile + phase) * width >= since and label_at + low >= since
        )
        self._judgeable[row] = known & ~lost
        self._label_at[row] = label_at
        self._label_class[row] = int(label.label)
        self._next_bin[row] = 0
        due = label_at + self._edge_list[1] + self.lateness
        self._due[row] = due
        self._min_due = min(self._min_due, float(due))
        self._expires[row] = max(self._expires.item(row), label_at + self._ttl)

    def _control_tiles(self, label_at: float, phase: float) -> list[int]:
        """Per bin, the index of a label's control window in the entity's grid: the last
        window that ends by ``label_at - tolerance``."""
        return [t - 1 for t in self._tiles(label_at - self.tolerance, phase)]

    def _lag_bits(self, lag: float) -> int:
        """The bit of the bin ``lag`` falls in, in both halves; 0 outside the bins."""
        if not self._edge_list[0] <= lag < self._edge_list[-1]:
            return 0
        return _spread(1 << (bisect.bisect_right(self._edge_list, lag) - 1))

    # ----------------------------------------------------------------- judging

    def _judge_due(self) -> None:
        """Judges every lag bin due by the stream time: in passes, each judging the next
        due bin of every label with one due, earliest first. A few labels due go one at a
        time; more go through numpy together, every pass at once (``_judge_all``)."""
        while self._min_due < self._stream_time:
            rows = np.flatnonzero(self._due < self._stream_time)
            if len(rows) >= _FEW_LABELS:
                self._judge_all(rows)
            else:
                for row in rows[np.argsort(self._due[rows], kind="stable")]:
                    self._judge_one(int(row))
            self._min_due = float(self._due.min(initial=math.inf))

    def _judge_one(self, row: int) -> None:
        """Judges the next lag bin of the entity's open label."""
        b = int(self._next_bin[row])
        columns = len(self._columns)
        if (int(self._judgeable[row]) >> b) & 1:
            label = int(self._label_class[row])
            shifts = np.array([b, b + _NULL_SHIFT], np.uint32)
            near = ((self._near[row, :columns, None] >> shifts) & 1).astype(np.int64)
            control = ((self._control[row, :columns, None] >> shifts) & 1).astype(np.int64)
            stats = np.stack([near, control, near & (1 - control), control & (1 - near)], -1)
            self._counts[:columns, :, label, b] += stats
            self._labels[:columns, label, b] += 1
            # Looks are spaced by labels judged at the most judged lag (the earliest, as a
            # rule), not by label lags, which would look eight times as often per label.
            sizes = self._labels[:columns].sum(axis=1).max(axis=1).tolist()
            due = [c for c in range(columns) if self._looks.due(c, sizes[c])]
            if due:
                # As in _judge_all: a test that can only give 1.0 changes nothing.
                counts, labels = self._counts[due], self._labels[due]
                open_ = self._open_cells(counts.transpose(3, 0, 1, 2, 4), labels.transpose(2, 0, 1))
                for column, may in zip(due, np.any(open_, axis=0).tolist(), strict=True):
                    if may:
                        self._test(
                            column, sizes[column], self._labels[column], self._counts[column]
                        )
        else:
            self._unjudged[:columns] += 1
        b += 1
        self._next_bin[row] = b
        if b < len(self._edges) - 1:
            self._due[row] = self._label_at[row] + self._edge_list[b + 1] + self.lateness
        else:
            self._due[row] = math.inf

    def _judge_all(self, rows: np.ndarray) -> None:
        """Judges every lag bin of ``rows`` due by the stream time, as ``_judge_one`` pass
        after pass would: judgment by judgment in numpy, a chunk at a time.

        Judging adds to counts and never reads what another judgment added, except in a
        test. A test whose p-value is 1.0 changes nothing, so tests run only where a look is
        due and some cell can give less than 1.0 (``_may_test``), on the counts as they are
        after that judgment. The work is a few numpy passes over the bins due, at most
        ``max_entities`` times the lag bins, plus the tests of the looks due.
        """
        bins = len(self._edges) - 1
        first = self._next_bin[rows]
        later = first[:, None] + np.arange(bins)
        ahead = np.minimum(later, bins - 1)
        due = (self._label_at[rows, None] + self._edges[ahead + 1]) + self.lateness
        due_now = (later < bins) & (due < self._stream_time)
        # Pass after pass, earliest first, then by row.
        which, step = np.nonzero(due_now)
        order = np.lexsort((rows[which], due[which, step], step))
        judged_rows, judged_bins = rows[which][order], later[which, step][order]
        judged = ((self._judgeable[judged_rows] >> judged_bins.astype(np.uint32)) & 1) == 1
        self._unjudged[: len(self._columns)] += int((~judged).sum())
        judged_rows, judged_bins = judged_rows[judged], judged_bins[judged]
        self._judge_chunks(judged_rows, judged_bins)
        after = first + due_now.sum(axis=1)
        self._next_bin[rows] = after
        next_due = (self._label_at[rows] + self._edges[np.minimum(after, bins - 1) + 1]) + (
            self.lateness
        )
        self._due[rows] = np.where(after < bins, next_due, math.inf)

    def _judge_chunks(self, rows: np.ndarray, bins: np.ndarray) -> None:
        """``_judge`` a chunk at a time, which bounds the memory it takes."""
        chunk = max(1, _CHUNK_CELLS // max(1, len(self._columns)))
        for at in range(0, len(rows), chunk):
            self._judge(rows[at : at + chunk], bins[at : at + chunk])

    def _judge(self, rows: np.ndarray, bins: np.ndarray) -> None:
        """Judges lag bin ``bins[j]`` of the open label of ``rows[j]``, for each j in order."""
        columns = len(self._columns)
        classes = self._label_class[rows].astype(np.intp)
        shifts = np.stack([bins, bins + _NULL_SHIFT], -1).astype(np.uint32)[:, None, :]
        near = ((self._near[rows, :columns, None] >> shifts) & 1).astype(np.int64)
        control = ((self._control[rows, :columns, None] >> shifts) & 1).astype(np.int64)
        # Per judgment, feature and kind: the statistics it adds to its class and bin.
        stats = np.stack([near, control, near & (1 - control), control & (1 - near)], -1)
        counts, labels = self._counts[:columns], self._labels[:columns]
        judged = np.zeros((len(rows), 2, labels.shape[2]), np.int64)
        judged[np.arange(len(rows)), classes, bins] = 1
        # Looks are spaced by labels judged at the most judged lag (the earliest, as a
        # rule), not by label lags, which would look eight times as often per label.
        judged_so_far = np.cumsum(judged.sum(axis=1), axis=0)
        sizes = (labels.sum(axis=1)[None] + judged_so_far[:, None]).max(axis=2)
        due = sizes >= self._looks.next_look
        if due.any():
            due &= self._may_test(bins, classes, stats)
        for column in np.flatnonzero(due.any(axis=0)).tolist():
            next_look = self._looks.next_look
            j = 0
            while (
                found := np.flatnonzero(due[j:, column] & (sizes[j:, column] >= next_look[column]))
            ).size:
                j += int(found[0])
                counts_then, labels_then = counts[column].copy(), labels[column].copy()
                _add_judged(
                    counts_then[None],
                    labels_then[None],
                    judged[: j + 1],
                    stats[: j + 1, column, None],
                )
                self._test(column, int(sizes[j, column]), labels_then, counts_then)
                j += 1
        _add_judged(counts, labels, judged, stats)

    def _may_test(self, bins: np.ndarray, classes: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """Per judgment and feature, whether a test right after it could give a p-value
        below 1.0: some bin has ``min_labels`` of each class and a cell ``_test`` would not
        find to be 1.0 at once."""
        counts, labels = self._counts[: stats.shape[1]], self._labels[: stats.shape[1]]
        n, lags = len(bins), labels.shape[2]
        # Each judgment's bin as it is after it: the bin before the chunk plus the
        # judgments of the chunk in that bin so far.
        added = np.zeros((n, *stats.shape[1:3], 2, 4), np.int64)
        added[np.arange(n), :, :, classes] = stats
        judged = np.zeros((n, 2), np.int64)
        judged[np.arange(n), classes] = 1
        order = np.argsort(bins, kind="stable")
        firsts = np.searchsorted(bins[order], bins[order])
        for part in (added, judged):
            total = np.cumsum(part[order], axis=0)
            before = np.concatenate([np.zeros_like(total[:1]), total[:-1]])[firsts]
            part[order] = total - before
        added += counts[:, :, :, bins].transpose(3, 0, 1, 2, 4)
        judged = judged[:, None] + labels[:, :, bins].transpose(2, 0, 1)
        after = self._open_cells(added, judged)
        # Whether each feature could test below 1.0 at each judgment: any bin, as it is
        # at the latest judgment of that bin so far (or before the chunk).
        before = self._open_cells(counts.transpose(3, 0, 1, 2, 4), labels.transpose(2, 0, 1))
        table = np.concatenate([before, after])
        seen = np.where(bins[:, None] == np.arange(lags), np.arange(n)[:, None] + lags, -1)
        latest = np.maximum.accumulate(seen, axis=0)
        return np.any(table[np.where(latest >= 0, latest, np.arange(lags))], axis=1)

    def _open_cells(self, counts: np.ndarray, judged: np.ndarray) -> np.ndarray:
        """Per bin state of ``counts`` (..., kind, class, statistic) and ``judged`` (...,
        class): whether ``_test`` could find a p-value below 1.0 there."""
        near = counts[..., _NEAR]
        near_only = counts[..., _NEAR_ONLY]
        total = judged.sum(axis=-1)[..., None, None]
        draws = judged[..., None, :]
        low = np.maximum(0, draws - (total - near.sum(axis=-1, keepdims=True)))
        cells = (near_only > 0) & (near > low)
        return (judged.min(axis=-1) >= self.min_labels) & cells.any(axis=(-2, -1))

    def _test(self, column: int, size: int, labels: np.ndarray, counts: np.ndarray) -> None:
        """Tests the feature at ``column`` on its ``labels`` (class, bin) and ``counts``
        (kind, class, bin, statistic)."""
        best, *cell = best_cell(labels, counts, self.min_labels)
        if best == 1.0:
            return
        self._looks.record(column, size, min(1.0, 4 * labels.shape[1] * best))
        self._best[column] = cell
        if self._looks.p(column) <= self.alpha and not self._flagged[column]:
            self._flagged[column] = True
            self._new_flags = (*self._new_flags, column)

    # ----------------------------------------------------------------- state

    def _column(self, feature: str) -> int | None:
        """The feature's column, added if there is room; None if there is not."""
        column = self._columns.get(feature)
        if column is not None:
            return column
        column = len(self._columns)
        if column >= self.max_features:
            return None
        if column >= self._windows.shape[1]:
            self._grow_columns(self._width(column + 1))
        self._columns[feature] = column
        self._column_names += (feature,)
        self._looks.add()
        return column

    def _width(self, columns: int) -> int:
        """The arrays' room for features once ``columns`` of them are followed, as it
        grows a feature at a time: a quarter more when full (features are few, and a column
        costs a few numbers per entity). A batch's new features get it at once."""
        width = self._windows.shape[1]
        for column in range(len(self._columns), columns):
            if column >= width:
                width = min(self.max_features, max(4, column + column // 4))
        return width

    def _grow_columns(self, size: int) -> None:
        def grown(array: np.ndarray, fill: float = 0) -> np.ndarray:
            bigger = np.full((size, *array.shape[1:]), fill, array.dtype)
            bigger[: len(array)] = array
            return bigger

        def wider(array: np.ndarray, fill: float = 0) -> np.ndarray:
            bigger = np.full((array.shape[0], size, *array.shape[2:]), fill, array.dtype)
            bigger[:, : array.shape[1]] = array
            return bigger

        for name, (_, fill, _) in _PER_CELL.items():
            setattr(self, name, wider(getattr(self, name), fill))
        for name in (*_PER_FEATURE, "_flagged"):
            setattr(self, name, grown(getattr(self, name)))

    def _row(self, key: int) -> int:
        """The entity's row, made if absent (after making room if the table is full); -1
        if the entity is not in the sample (then or once room is made)."""
        if not in_sample(key, self._sample_bits):
            return -1
        row = self._table.find(key)
        if row >= 0:
            return row
        if self._table.size == len(self._in_use):
            self._make_room()
            if not in_sample(key, self._sample_bits):
                return -1
        row = int(np.argmin(self._in_use))
        self._make_row(key, row)
        return row

    def _make_room(self) -> None:
        """Room for a new entity in the full table: the expired entities forgotten, else
        the table grown, else the sample halved."""
        expired = np.flatnonzero(self._in_use & (self._expires < self._stream_time))
        if len(expired):
            self._forget(expired)
        elif len(self._in_use) < self.max_entities:
            self._grow_rows(min(self.max_entities, max(16, 2 * len(self._in_use))))
        else:
            self._halve()

    def _make_row(self, key: int, row: int) -> None:
        """Gives the entity ``key`` the free ``row``."""
        self._table.add(key, row)
        self._row_keys[row] = key
        self._in_use[row] = True
        self._phase[row] = (key >> 11) / float(1 << 53)
        self._since[row] = self._forgotten_until

    def _grow_rows(self, size: int) -> None:
        def grown(array: np.ndarray, fill: float) -> np.ndarray:
            # Filled only past the rows copied: a table grows a dozen times on its way to
            # its cap, each time every array.
            bigger = np.empty((size, *array.shape[1:]), array.dtype)
            bigger[: len(array)] = array
            bigger[len(array) :] = fill
            return bigger

        for name, fill in _FILLS.items():
            setattr(self, name, grown(getattr(self, name), fill))
        used = np.flatnonzero(self._in_use)
        self._table = KeyTable.of(self._row_keys[used], used, size)

    def _blank(self, rows: int, columns: int) -> None:
        """Per-row and per-cell arrays of ``rows`` rows and ``columns`` features, unused."""
        for name, (dtype, fill) in _PER_ROW.items():
            setattr(self, name, np.full(rows, fill, dtype))
        for name, (dtype, fill, shape) in _PER_CELL.items():
            # Zeros come from the allocator at no cost, until written.
            full = np.zeros if fill == 0 else functools.partial(np.full, fill_value=fill)
            setattr(self, name, full((rows, columns, *shape), dtype=dtype))

    def _close(self, rows: np.ndarray) -> None:
        """Ends the open labels of ``rows``: their bins not judged yet count as unjudged."""
        bins = len(self._edges) - 1
        left = int(np.where(self._due[rows] < math.inf, bins - self._next_bin[rows], 0).sum())
        self._unjudged[: len(self._columns)] += left
        self._due[rows] = math.inf

    def _halve(self) -> None:
        """Halves the sample until some entity kept falls outside it, and forgets those.
        They never come back, so what the others know of their times is still whole."""
        # A full table holds at least one key, and the sample of 64 bits only the key 0.
        while self._sample_bits < 64:
            self._sample_bits += 1
            outside = self._row_keys >> np.uint64(64 - self._sample_bits) != 0
            dropped = np.flatnonzero(self._in_use & outside)
            if len(dropped):
                self._forget(dropped, back=False)
                return

    def _forget(self, rows: np.ndarray, back: bool = True) -> None:
        """Forgets the entities of ``rows``; ``back``: they may come back."""
        self._close(rows)
        if back:
            latest = self._latest[rows].max()
            self._forgotten_until = max(self._forgotten_until, float(latest))
        self._table.remove_all(self._row_keys[rows])
        # A free row holds what a new one does, so that a pickle need not hold it.
        for name, fill in _FILLS.items():
            getattr(self, name)[rows] = fill

    def __getstate__(self) -> dict[str, Any]:
        """What the rows in use and the features followed hold, in the narrowest exact
        types: times as integer offsets when they are integers (``pack_times``), counts and
        bin numbers as the smallest integers that hold them, bins as ``2 * bins`` bits,
        near and control bins only of the entities with some. Free rows and columns hold
        what new ones do (``_forget``); the entity keys by row are in the key table, and
        the phases are the keys' hashes."""
        state = attribute_state(self)
        used = np.flatnonzero(self._in_use)
        columns, bins = len(self._columns), len(self._edges) - 1
        state["_shape"] = (len(self._in_use), self._windows.shape[1])
        for name in ("_in_use", "_row_keys", "_phase"):
            state[name] = None
        for name in _ROW_TIMES:
            state[name] = pack_times(getattr(self, name)[used])
        for name in ("_label_class", "_judgeable", "_next_bin"):
            state[name] = narrow(getattr(self, name)[used])
        state["_windows"] = _pack_bits(self._windows[used, :columns], bins)
        near, control = self._near[used, :columns], self._control[used, :columns]
        marked = np.flatnonzero(near.any(axis=1) | control.any(axis=1))
        state["_marked"] = narrow(marked)
        state["_near"], state["_control"] = (_pack_bits(a[marked], bins) for a in (near, control))
        for name in ("_last_write", "_last_null"):
            state[name] = pack_times(getattr(self, name)[used, :columns])
        for name in _PER_FEATURE:
            state[name] = narrow(getattr(self, name)[:columns])
        state["_flagged"] = self._flagged[:columns]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        packed = dict(state)
        rows, capacity = packed.pop("_shape")
        marked = packed.pop("_marked")
        # In the order they were: vars() is the state compared in tests.
        set_attribute_state(self, packed)
        self._blank(rows, capacity)
        table = self._table
        used = np.sort(table.rows[table.rows >= 0])
        occupied = table.rows >= 0
        self._row_keys[table.rows[occupied]] = table.keys[occupied]
        self._in_use[used] = True
        self._phase[used] = (self._row_keys[used] >> np.uint64(11)) / float(1 << 53)
        for name in _ROW_TIMES:
            getattr(self, name)[used] = unpack_times(packed[name])
        for name in ("_label_class", "_judgeable", "_next_bin"):
            getattr(self, name)[used] = packed[name]
        columns, bins = len(self._columns), len(self._edges) - 1
        # Every row in use (at the cap): a slice, copied rather than gathered.
        rows_used: slice | np.ndarray = slice(None) if len(used) == rows else used
        if isinstance(rows_used, slice):
            _unpack_bits(packed["_windows"], bins, self._windows[:, :columns])
            for name in ("_last_write", "_last_null"):
                unpack_times(packed[name], getattr(self, name)[:, :columns])
        else:
            windows = np.zeros((len(used), columns, _WINDOWS), np.uint32)
            _unpack_bits(packed["_windows"], bins, windows)
            self._windows[used, :columns] = windows
            for name in ("_last_write", "_last_null"):
                getattr(self, name)[used, :columns] = unpack_times(packed[name])
        for name in ("_near", "_control"):
            bits = np.zeros((len(marked), columns), np.uint32)
            _unpack_bits(packed[name], bins, bits)
            getattr(self, name)[used[marked], :columns] = bits
        for name in _PER_FEATURE:
            values = packed[name]
            setattr(self, name, np.zeros((capacity, *values.shape[1:]), np.int64))
            getattr(self, name)[:columns] = values
        self._flagged = np.zeros(capacity, bool)
        self._flagged[:columns] = packed["_flagged"]

    # ----------------------------------------------------------------- results

    def _telling(self, columns: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per column of ``columns``: its most telling kind, class and lag bin
        (``_best``), the labels judged there per class, the writes there per class (near
        and control among them) and the score (``_coincide.telling``)."""
        return telling(self._best, self._labels, self._counts, columns)

    def _evidence(self, name: str, column: int) -> CoincidenceEvidence:
        kinds, labels, bins, judged_rows, count_rows, scores = self._telling(np.array([column]))
        kind, label, b = kinds.item(), labels.item(), bins.item()
        judged, counts = judged_rows[0], count_rows[0]
        p_value = self._looks.p(column)
        return CoincidenceEvidence(
            feature=name,
            lag=(self._edge_list[b], self._edge_list[b + 1]),
            nulls=kind == _NULL,
            labels=(int(judged[0]), int(judged[1])),
            near_writes=(int(counts[0, _NEAR]), int(counts[1, _NEAR])),
            control_writes=(int(counts[0, _CONTROL]), int(counts[1, _CONTROL])),
            leak_class=label,
            score=scores.item(),
            p_value=p_value,
            leaking=p_value <= self.alpha,
            unjudged=int(self._unjudged[column]),
        )

    @property
    def evidence(self) -> dict[str, CoincidenceEvidence]:
        """Per feature: the counts at its most telling lag, the score and the p-value."""
        return {name: self._evidence(name, column) for name, column in self._columns.items()}

    @property
    def scores(self) -> dict[str, tuple[float, float, bool, int, int]]:
        """Per feature, of its ``evidence``: the score, the p-value, whether leaking, the
        labels judged (both classes) and ``unjudged``; every feature in one compiled pass
        (``telling``), as a round of points reads them."""
        columns = np.fromiter(self._columns.values(), np.intp, len(self._columns))
        _, _, _, judged, _, score = self._telling(columns)
        p_value = self._looks.p_value[columns]
        return dict(
            zip(
                self._columns,
                zip(
                    score.tolist(),
                    p_value.tolist(),
                    (p_value <= self.alpha).tolist(),
                    judged.sum(axis=1).tolist(),
                    self._unjudged[columns].tolist(),
                    strict=True,
                ),
                strict=True,
            )
        )

    @property
    def leaking_features(self) -> tuple[str, ...]:
        """The features flagged so far, sorted. A flag stays: a leak does not heal."""
        return tuple(sorted(n for n, c in self._columns.items() if self._flagged[c]))

    @property
    def leak_detected(self) -> bool:
        """Whether any feature is flagged."""
        return bool(self._flagged.any())

    @property
    def leak_score(self) -> float:
        """The largest ``score`` among flagged features, 0.0 when none is flagged."""
        return max((e.score for e in self.evidence.values() if e.leaking), default=0.0)

    @property
    def detections(self) -> np.ndarray:
        """Positions in the last batch (``[0]`` after ``update``) at which a feature was
        flagged."""
        return np.unique(np.array([i for i, _ in self._batch_events], np.int64))

    @property
    def flags(self) -> list[tuple[int, CoincidenceEvidence]]:
        """Each feature flagged in the last batch: its position there and its evidence
        right after that event, in order of position, then name."""
        return list(self._batch_events)

    @property
    def open_labels(self) -> int:
        """Labels with lags still to judge."""
        return int((self._due < math.inf).sum())

    @property
    def entities(self) -> int:
        """Entities kept."""
        return self._table.size

    @property
    def state_bytes(self) -> int:
        """Bytes of the numpy arrays that hold the state; bounded by ``max_entities`` and
        ``max_features``."""
        arrays = [*vars(self).values(), self._table.keys, self._table.rows]
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write or label."""
        return self._rejected

    @property
    def sample_bits(self) -> int:
        """How many times the sample of entities halved: an entity is kept if the top
        ``sample_bits`` bits of its key (``entity_hash``) are 0."""
        return self._sample_bits

    @property
    def sample_fraction(self) -> float:
        """The fraction of the entities' key range kept (1.0 until the table first fills)."""
        return 2.0**-self._sample_bits

    @property
    def halvings(self) -> list[tuple[int, int]]:
        """Each event of the last batch that halved the sample: its position there and
        ``sample_bits`` after it."""
        return list(self._halvings)

    @property
    def unsampled(self) -> int:
        """Labels ignored because their entity was outside the sample."""
        return self._unsampled

    @staticmethod
    def bytes_per_entity(features: int) -> int:
        """Bytes an entity costs in memory with ``features`` columns: its row, its cells
        and its share of the key table (at most four slots a row)."""
        row = sum(np.dtype(dtype).itemsize for dtype, _ in _PER_ROW.values())
        cell = sum(
            np.dtype(dtype).itemsize * math.prod(shape) for dtype, _, shape in _PER_CELL.values()
        )
        return row + features * cell + 4 * KeyTable.SLOT_BYTES
