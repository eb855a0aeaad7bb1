"""The label delay distribution of one model: a bounded, recent quantile sketch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors import _batch
from detectors._compiled import compiled
from detectors._sketch import bucket_key, bucket_value, log_gamma, quantile_key
from detectors.drift._window import finite_floats
from detectors.performance._inputs import finite_float, is_real

# Delays at or below this many seconds share the lowest bucket; above the top they share the
# highest, so the number of buckets is bounded whatever arrives.
_SMALLEST_DELAY = 1e-3
_LARGEST_DELAY = 1e9


class LabelDelay(base.Base):
    """Quantiles of ``label_at - predicted_at`` over the recent labels, in bounded memory.

    Feed it each label's delay in seconds, ``update(label_at - predicted_at)``. Delays go
    into logarithmic buckets (as in DDSketch), so every quantile is within
    ``relative_accuracy`` of a delay that was seen. The sketch covers the recent labels
    only: it keeps a current and a previous generation of ``window`` delays each and
    reports over both, so it follows a label pipeline that slows down. A negative delay (a
    label stamped before its prediction: clock skew or a leak) is counted in
    ``n_negative`` and kept out of the quantiles; non-numbers are counted in ``n_ignored``.
    The fraction still unlabelled needs the predictions too, so the streams layer keeps it.

    Parameters
    ----------
    relative_accuracy
        The relative error of the quantiles, in (0, 1).
    window
        How many delays one generation of the sketch holds.
    max_delay
        The declared label SLA in seconds: ``sla_breached`` turns True when the
        ``sla_quantile`` of the recent delays is above it. None declares none.
    sla_quantile
        Which quantile the SLA is about, in (0, 1).
    min_count
        How many recent delays are needed before ``sla_breached`` may turn True.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> delays = LabelDelay(max_delay=3 * 86400.0)
    >>> for delay in rng.lognormal(mean=np.log(3600.0), sigma=1.0, size=5000):
    ...     delays.update(float(delay))
    >>> round(delays.p50), round(delays.p90), round(delays.p99), delays.sla_breached
    (3606, 13230, 36691, False)
    """

    # The two windows' histograms (dicts) in slots, the numbers in the attribute dict, which
    # the garbage collector then stops tracking (``detectors._batch.attribute_state``).
    __slots__ = ("_current", "_previous")

    def __init__(
        self,
        relative_accuracy: float = 0.01,
        window: int = 10_000,
        max_delay: float | None = None,
        sla_quantile: float = 0.99,
        min_count: int = 100,
    ) -> None:
        if not (is_real(relative_accuracy) and 0.0 < relative_accuracy < 1.0):
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if max_delay is not None and not (is_real(max_delay) and max_delay > 0.0):
            raise ValueError(f"max_delay must be None or > 0 seconds, got {max_delay!r}")
        if not (is_real(sla_quantile) and 0.0 < sla_quantile < 1.0):
            raise ValueError(f"sla_quantile must be in (0, 1), got {sla_quantile!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        self.relative_accuracy = relative_accuracy
        self.window = window
        self.max_delay = max_delay
        self.sla_quantile = sla_quantile
        self.min_count = min_count
        self._reset()

    def _reset(self) -> None:
        self._log_gamma = log_gamma(self.relative_accuracy)
        # One key below every bucket holds the delays of (almost) zero.
        self._zero = bucket_key(_SMALLEST_DELAY, self._log_gamma) - 1
        self._highest = bucket_key(_LARGEST_DELAY, self._log_gamma)
        self._current: dict[int, int] = {}
        self._current_count = 0
        self._previous: dict[int, int] = {}
        self._previous_count = 0
        self._n = 0
        self._n_negative = 0
        self._n_ignored = 0

    def update(self, x: Any) -> None:
        """Absorb one label delay in seconds; never raises."""
        delay = finite_float(x)
        if delay is None:
            self._n_ignored += 1
            return
        if delay < 0.0:
            self._n_negative += 1
            return
        key = self._zero
        if delay > _SMALLEST_DELAY:
            key = min(bucket_key(delay, self._log_gamma), self._highest)
        self._count([key])

    def update_many(self, values: Sequence[Any] | np.ndarray) -> None:
        """Absorb a batch of label delays in seconds: the same state as ``update`` one by one.

        Examples
        --------
        >>> delays = LabelDelay(window=3)
        >>> delays.update_many([5.0, None, -1.0, 0.0, 60.0, 3600.0, float("inf"), 7.5])
        >>> delays.n, delays.n_negative, delays.n_ignored, delays.n_recent, round(delays.p50, 1)
        (5, 1, 2, 5, 7.5)
        """
        if len(values) <= _batch.SMALL_BATCH:
            for x in values:
                self.update(x)
            return
        # NaN (not a finite number) is neither negative nor kept.
        delays = finite_floats(values)
        keys, negative = _keys(delays, self._log_gamma, self._highest, self._zero)
        self._n_ignored += len(delays) - len(keys) - negative
        self._n_negative += negative
        self._count(keys.tolist())

    def _count(self, keys: list[int]) -> None:
        """Add delays by bucket key, in order: the current window's buckets hand over to
        the previous ones each time it holds ``window`` delays."""
        self._n += len(keys)
        while keys:
            room = self.window - self._current_count
            current = self._current
            for key in keys[:room]:
                current[key] = current.get(key, 0) + 1
            self._current_count += min(room, len(keys))
            keys = keys[room:]
            if self._current_count == self.window:
                self._previous, self._previous_count = self._current, self._current_count
                self._current, self._current_count = {}, 0

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the recent delays in seconds (NaN when there are none)."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """``quantile`` of each of ``qs``, the two generations merged once for all."""
        if self._current_count + self._previous_count == 0:
            return [math.nan] * len(qs)
        merged = dict(self._previous)
        for key, count in self._current.items():
            merged[key] = merged.get(key, 0) + count
        found = []
        for q in qs:
            if not 0.0 <= q <= 1.0:
                found.append(math.nan)
                continue
            key = quantile_key(merged, q)
            found.append(0.0 if key == self._zero else bucket_value(key, self._log_gamma))
        return found

    @property
    def p50(self) -> float:
        """Median recent delay, seconds."""
        return self.quantile(0.5)

    @property
    def p90(self) -> float:
        """90th percentile of the recent delays, seconds."""
        return self.quantile(0.9)

    @property
    def p99(self) -> float:
        """99th percentile of the recent delays, seconds."""
        return self.quantile(0.99)

    @property
    def n(self) -> int:
        """How many non-negative delays were absorbed in all."""
        return self._n

    @property
    def n_recent(self) -> int:
        """How many delays the quantiles are over now."""
        return self._current_count + self._previous_count

    @property
    def n_negative(self) -> int:
        """How many labels were stamped before their prediction."""
        return self._n_negative

    @property
    def n_ignored(self) -> int:
        """How many inputs were not a finite number."""
        return self._n_ignored

    @property
    def sla_breached(self) -> bool:
        """The ``sla_quantile`` of the recent delays is above ``max_delay``."""
        if self.max_delay is None or self.n_recent < self.min_count:
            return False
        return self.quantile(self.sla_quantile) > self.max_delay


@compiled
def _keys(delays: np.ndarray, log_gamma: float, highest: int, zero: int) -> tuple[np.ndarray, int]:
    """The bucket key of each delay that is not negative, in order, and how many are:
    ``update``'s keys, one by one with ``math.log`` (the C library's, as Python's: a
    vectorised log may differ in the last bit and move a delay on a bucket's edge)."""
    keys = np.empty(delays.shape[0], np.int64)
    kept = negative = 0
    for k in range(delays.shape[0]):
        delay = delays[k]
        if delay >= 0.0:
            key = zero
            if delay > _SMALLEST_DELAY:
                key = min(math.ceil(math.log(delay) / log_gamma), highest)
            keys[kept] = key
            kept += 1
        elif delay < 0.0:
            negative += 1
    return keys[:kept], negative
