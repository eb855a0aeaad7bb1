"""Write lag per feature: its distribution, drift against a reference, and a declared SLA."""

from __future__ import annotations

import array
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors._batch import TupleEvents
from detectors._compiled import compiled
from detectors._exact import binomial_sf, hypergeom_sf
from detectors._sketch import bucket_key, bucket_value, log_gamma, quantile_key
from detectors.leaks._arguments import require_counts, require_durations, require_fractions
from detectors.leaks.events import FeatureWrite, WriteColumns, checked_write, write_columns


@dataclasses.dataclass(frozen=True)
class WriteLagSummary:
    """One feature's write lag (``written_at - event_at``).

    Attributes
    ----------
    feature
        The feature's name.
    writes
        Writes seen.
    p50, p99
        Quantiles of the lag over all writes, to the detector's ``relative_accuracy``
        (lags of at most one timestamp unit, and negative ones, count as 0.0).
    reference_lag
        The ``drift_quantile`` of the reference windows, once complete (else NaN).
    drift_p_value
        For the last complete window: the p-value of "lags above ``reference_lag`` are no
        more frequent than in the reference" (Fisher's exact test, one-sided).
    drifting
        Whether ``drift_p_value`` is at most ``alpha``.
    sla_p_value
        For the last complete window: the p-value of "at most ``1 - sla_quantile`` of the
        lags exceed ``sla``" (exact binomial test); 1.0 without an SLA.
    sla_broken
        Whether ``sla_p_value`` is at most ``alpha``.
    """

    feature: str
    writes: int
    p50: float
    p99: float
    reference_lag: float
    drift_p_value: float
    drifting: bool
    sla_p_value: float
    sla_broken: bool


# A feature's counts in ``WriteLag._counts``, at ``row * _FIELDS + field``: writes, windows
# complete, and in the current window writes, those over the SLA and over the reference;
# then the reference's bucket (-1 until the reference windows are complete) and its writes
# above that bucket.
_WRITES, _WINDOWS, _WINDOW_WRITES, _OVER_SLA, _OVER_REFERENCE, _REFERENCE, _REFERENCE_OVER = range(
    7
)
_FIELDS = 7
# Its last window's p-values in ``WriteLag._p_values``, at ``row * 2 + test``.
_DRIFT, _SLA = 0, 1


class WriteLag(TupleEvents, base.Base):
    """Follows how long each feature's values take to reach the store, and when that changes.

    Per feature, the lag ``written_at - event_at`` goes into a sketch with relative error
    ``relative_accuracy`` (log-spaced buckets, as DDSketch), which gives p50 and p99 in
    bounded memory. Writes are cut into tumbling windows of ``window`` writes. The first
    ``reference_windows`` are the reference: their ``drift_quantile`` becomes a threshold,
    and each later window is tested for more lags above it than the reference had (Fisher's
    exact test). A longer reference makes a reference that was unusual by chance, which
    would then make every later window look drifted, less likely.
    With an ``sla``, each window is tested for more than ``1 - sla_quantile`` of its lags
    above it (exact binomial test), so "p99 within 30 s" is broken when significantly more
    than 1% of the writes take longer. Each window is tested once, at level ``alpha``; the
    verdicts are those of each feature's last complete window. The false-alarm contract is
    thus a rate, which an alarm budget per day can be split into: with 1,000-write windows
    and a million writes a day, the default ``alpha`` gives 0.01 false verdicts a day per
    feature and test. The price is power: a window of 1,000 needs about 3% of writes over
    the SLA, or 15% over the reference's p90 instead of 10%, to be flagged.

    ``windows_closed`` lists, by position in the last batch (``update_many``; ``update`` is
    a batch of one), each write that completed a window, with its feature's summary then.

    Parameters
    ----------
    sla
        The declared lag limit, in timestamp units, or ``None`` for no SLA.
    sla_quantile
        The share of writes that must be within ``sla``.
    window
        Writes per window, per feature.
    reference_windows
        Windows in the reference.
    drift_quantile
        The reference window's quantile above which lags are counted for drift.
    alpha
        The chance, per feature and window, of a false drift or SLA verdict.
    relative_accuracy
        The sketch's relative error on quantiles.
    max_features
        Features followed; further features are ignored.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import WriteLag
    >>> from detectors.leaks import FeatureWrite
    >>> rng = np.random.default_rng(5)
    >>> detector = WriteLag(sla=30_000.0, window=500)
    >>> lags = np.concatenate([rng.lognormal(8, 1, 3_000), rng.lognormal(9, 1, 1_000)])
    >>> for i, lag in enumerate(lags):
    ...     detector.update(FeatureWrite("u", "balance", 1.0, float(i), i + float(lag)))
    ...     if detector.drift_detected:
    ...         break
    >>> i, detector.drifting_features, detector.sla_breaches
    (3499, ('balance',), ('balance',))
    >>> summary = detector.write_lag["balance"]
    >>> summary.writes, round(summary.p50), round(summary.p99), round(summary.reference_lag)
    (3500, 3534, 45721, 10725)
    """

    def __init__(
        self,
        sla: float | None = None,
        sla_quantile: float = 0.99,
        window: int = 1_000,
        reference_windows: int = 5,
        drift_quantile: float = 0.9,
        alpha: float = 1e-5,
        relative_accuracy: float = 0.01,
        max_features: int = 1_000,
    ) -> None:
        if sla is not None:
            require_durations(positive=True, sla=sla)
        require_fractions(sla_quantile=sla_quantile, drift_quantile=drift_quantile, alpha=alpha)
        require_counts(minimum=10, window=window)
        require_counts(reference_windows=reference_windows, max_features=max_features)
        if not (isinstance(relative_accuracy, int | float) and 0 < relative_accuracy < 0.5):
            raise ValueError(f"relative_accuracy must be in (0, 0.5), got {relative_accuracy!r}")
        self.sla = sla
        self.sla_quantile = sla_quantile
        self.window = window
        self.reference_windows = reference_windows
        self.drift_quantile = drift_quantile
        self.alpha = alpha
        self.relative_accuracy = relative_accuracy
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        self._log_gamma = log_gamma(self.relative_accuracy)
        # Per feature a row, in order of first write: its sketch, its counts and p-values as
        # machine numbers in arrays (``_FIELDS`` and 2 a row), which the garbage collector
        # does not walk. A worker holds thousands of these detectors.
        self._rows: dict[str, int] = {}
        # Bucket i > 0 holds lags in (gamma ** (i - 1), gamma ** i]; bucket 0 holds the rest.
        self._buckets: list[dict[int, int]] = []
        self._counts = array.array("q")
        self._p_values = array.array("d")
        self._rejected = 0
        self._batch_events = ()

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite`; anything else is counted in ``rejected``."""
        if self._batch_events:
            self._batch_events = ()
        write = checked_write(x)
        if write is None:
            self._rejected += 1
            return
        self._add_lag(0, write.feature, float(write.written_at - write.event_at))

    def _add_lag(self, position: int, feature: str, lag: float) -> None:
        """``update`` of a well-formed write, the ``position``-th of its batch."""
        row = self._rows.get(feature)
        if row is None:
            if len(self._rows) >= self.max_features:
                return
            row = self._add(feature)
        bucket = bucket_key(lag, self._log_gamma) if lag > 1.0 else 0
        buckets = self._buckets[row]
        buckets[bucket] = buckets.get(bucket, 0) + 1
        counts, at = self._counts, row * _FIELDS
        counts[at + _WRITES] += 1
        counts[at + _WINDOW_WRITES] += 1
        counts[at + _OVER_SLA] += self.sla is not None and lag > self.sla
        if counts[at + _REFERENCE] >= 0:
            counts[at + _OVER_REFERENCE] += bucket > counts[at + _REFERENCE]
        if counts[at + _WINDOW_WRITES] == self.window:
            self._close_window(row)
            self._add_event((position, self._summary(feature, row)))

    def update_many(self, values: Sequence[Any]) -> None:
        """Reads a batch of writes: the same state as ``update`` on each in turn, and
        ``windows_closed`` at the same positions (``update_writes`` of their columns;
        anything not a :class:`FeatureWrite` is counted in ``rejected``)."""
        if self._small(len(values)):
            self._update_each(values)
            return
        at = [i for i, x in enumerate(values) if isinstance(x, FeatureWrite)]
        writes = write_columns([values[i] for i in at], at)
        self.update_writes(writes)
        self._rejected += len(values) - len(at)

    def update_writes(self, writes: WriteColumns, rows: np.ndarray | None = None) -> None:
        """Reads the writes ``rows`` of ``writes`` (all of them by default), in order: the
        same state as ``update`` of each write in turn; ``windows_closed`` gives each
        write its ``writes.positions``.

        Each feature's writes are counted a window's share at a time, by a compiled loop
        (``_count_lags``): its sketch's counts, and those over the SLA and the reference.
        A lag's bucket key is the C library's ``log``, as ``math.log`` in ``update``:
        numpy's logarithm may differ in the last bit, which would move a lag on a bucket's
        edge. A few writes go one at a time, without the numpy calls.
        """
        self._batch_events = ()
        names, positions, ok, codes, lags = (
            writes.features,
            writes.positions,
            writes.ok,
            writes.codes,
            writes.lags,
        )
        size = len(ok) if rows is None else len(rows)
        if self._small(size):
            for w in range(size) if rows is None else rows.tolist():
                if ok.item(w):
                    self._add_lag(positions.item(w), names[codes.item(w)], lags.item(w))
                else:
                    self._rejected += 1
            return
        good = np.arange(size) if rows is None else rows
        accepted = int(np.count_nonzero(ok[good]))
        if not accepted:
            self._rejected += size
            return
        if accepted < size:
            good = good[ok[good]]
            self._rejected += size - accepted
        picked = codes[good]
        # Per feature, in order of its first write (a feature's writes alone: the leak
        # watch's).
        order = [picked.item(0)]
        if np.count_nonzero(picked != order[0]):
            order = list(dict.fromkeys(picked.tolist()))
        for code in order:
            feature = names[code]
            row = self._rows.get(feature)
            if row is None:
                if len(self._rows) >= self.max_features:
                    continue
                row = self._add(feature)
            taken = good if len(order) == 1 else good[picked == code]
            self._count(feature, row, positions, lags, taken)
        if len(self._batch_events) > 1:
            self._batch_events = tuple(sorted(self._batch_events, key=lambda event: event[0]))

    def keep_windows(self, feature: str) -> None:
        """Keeps of ``windows_closed`` those of ``feature``: what ``update_writes`` of its
        writes alone, after the others', leaves."""
        self._batch_events = tuple(
            event for event in self._batch_events if event[1].feature == feature
        )

    def _count(
        self, feature: str, row: int, positions: np.ndarray, lags: np.ndarray, taken: np.ndarray
    ) -> None:
        """One feature's writes of a batch, at ``taken`` in ``positions`` and ``lags``, a
        window's share at a time."""
        sketch, counts, at = self._buckets[row], self._counts, row * _FIELDS
        sla = math.inf if self.sla is None else float(self.sla)
        start = 0
        while start < len(taken):
            stop = min(len(taken), start + self.window - counts[at + _WINDOW_WRITES])
            share = taken if start == 0 and stop == len(taken) else taken[start:stop]
            found, over_sla, over_reference = _count_lags(
                lags, share, self._log_gamma, sla, counts[at + _REFERENCE]
            )
            keys, numbers = found.tolist()
            for bucket, count in zip(keys, numbers, strict=True):
                sketch[bucket] = sketch.get(bucket, 0) + count
            counts[at + _WRITES] += stop - start
            counts[at + _WINDOW_WRITES] += stop - start
            counts[at + _OVER_SLA] += over_sla
            counts[at + _OVER_REFERENCE] += over_reference
            if counts[at + _WINDOW_WRITES] == self.window:
                self._close_window(row)
                self._add_event((positions.item(taken.item(stop - 1)), self._summary(feature, row)))
            start = stop

    def _add(self, feature: str) -> int:
        """A row for a feature's first write."""
        row = self._rows[feature] = len(self._rows)
        self._buckets.append({})
        self._counts.extend((0, 0, 0, 0, 0, -1, 0))
        self._p_values.extend((1.0, 1.0))
        return row

    def _close_window(self, row: int) -> None:
        counts, at = self._counts, row * _FIELDS
        counts[at + _WINDOWS] += 1
        if self.sla is not None:
            over_sla = counts[at + _OVER_SLA]
            sla_p_value = binomial_sf(over_sla, self.window, 1 - self.sla_quantile)
            self._p_values[row * 2 + _SLA] = sla_p_value
        reference = counts[at + _REFERENCE]
        if reference >= 0:
            over = counts[at + _OVER_REFERENCE]
            total = (self.reference_windows + 1) * self.window
            both = counts[at + _REFERENCE_OVER] + over
            self._p_values[row * 2 + _DRIFT] = hypergeom_sf(over, total, both, self.window)
        elif counts[at + _WINDOWS] == self.reference_windows:
            # The whole sketch so far is the reference.
            buckets = self._buckets[row]
            reference = quantile_key(buckets, self.drift_quantile)
            counts[at + _REFERENCE] = reference
            counts[at + _REFERENCE_OVER] = sum(
                count for bucket, count in buckets.items() if bucket > reference
            )
        counts[at + _WINDOW_WRITES] = counts[at + _OVER_SLA] = counts[at + _OVER_REFERENCE] = 0

    def _lag(self, quantile: float, row: int) -> float:
        bucket = quantile_key(self._buckets[row], quantile)
        return 0.0 if bucket == 0 else bucket_value(bucket, self._log_gamma)

    def _summary(self, feature: str, row: int) -> WriteLagSummary:
        counts, at = self._counts, row * _FIELDS
        reference = counts[at + _REFERENCE]
        drift_p_value, sla_p_value = self._p_values[row * 2 : row * 2 + 2]
        return WriteLagSummary(
            feature=feature,
            writes=counts[at + _WRITES],
            p50=self._lag(0.5, row),
            p99=self._lag(0.99, row),
            reference_lag=math.nan if reference < 0 else math.exp(self._log_gamma * reference),
            drift_p_value=drift_p_value,
            drifting=drift_p_value <= self.alpha,
            sla_p_value=sla_p_value,
            sla_broken=sla_p_value <= self.alpha,
        )

    def _flagged(self, test: int) -> tuple[str, ...]:
        """Features whose last window's ``test`` p-value is at most ``alpha``, sorted."""
        p_values = self._p_values
        return tuple(
            sorted(f for f, row in self._rows.items() if p_values[row * 2 + test] <= self.alpha)
        )

    @property
    def write_lag(self) -> dict[str, WriteLagSummary]:
        """Per feature: lag quantiles and the last window's verdicts."""
        return {f: self._summary(f, row) for f, row in self._rows.items()}

    @property
    def windows_closed(self) -> list[tuple[int, WriteLagSummary]]:
        """Positions in the last batch whose write completed a window, with the summary of
        its feature right after (its window's verdicts)."""
        return list(self._batch_events)

    @property
    def drifting_features(self) -> tuple[str, ...]:
        """Features whose last window's lags drifted above the reference, sorted."""
        return self._flagged(_DRIFT)

    @property
    def sla_breaches(self) -> tuple[str, ...]:
        """Features whose last window broke the SLA, sorted."""
        return self._flagged(_SLA)

    @property
    def drift_detected(self) -> bool:
        """Whether any feature's write lag drifted in its last window."""
        return bool(self.drifting_features)

    @property
    def sla_broken(self) -> bool:
        """Whether any feature broke the SLA in its last window."""
        return bool(self.sla_breaches)

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write."""
        return self._rejected


@compiled
def _count_lags(
    lags: np.ndarray, taken: np.ndarray, log_gamma: float, sla: float, reference: int
) -> tuple[np.ndarray, int, int]:
    """The lags at ``taken``, as ``WriteLag._add_lag`` counts each: the sketch's bucket
    keys that they fall in, in order of first lag (as one by one adds them to the sketch,
    a dict, which keeps that order), over how many fall in each; how many lags exceed
    ``sla``, and how many fall in a bucket above ``reference`` (none while it is
    negative)."""
    n = len(taken)
    keys = np.empty(n, np.int64)
    over_sla = over_reference = 0
    for i in range(n):
        lag = lags[taken[i]]
        if lag == math.inf:
            # As ``math.ceil`` of it in ``update``.
            raise OverflowError("cannot convert float infinity to integer")
        # ``bucket_key``, with numba's ``math.log``: the C library's, as CPython's.
        key = math.ceil(math.log(lag) / log_gamma) if lag > 1.0 else 0
        keys[i] = key
        if lag > sla:
            over_sla += 1
        if reference >= 0 and key > reference:
            over_reference += 1
    # A tally over the keys' range: lags are at most ``sys.float_info.max``, whose key is
    # at most 709 / log_gamma (35,000 at a 1% accuracy).
    low = keys.min()
    tally = np.zeros(keys.max() - low + 1, np.int64)
    for i in range(n):
        tally[keys[i] - low] += 1
    found = np.empty((2, n), np.int64)
    distinct = 0
    for i in range(n):
        count = tally[keys[i] - low]
        if count:
            found[0, distinct] = keys[i]
            found[1, distinct] = count
            tally[keys[i] - low] = 0
            distinct += 1
    return found[:, :distinct], over_sla, over_reference
