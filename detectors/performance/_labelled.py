"""What the metrics on labelled predictions share: rows, counters, the drop alarm."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import base

from detectors._batch import TupleEvents
from detectors.performance._window import Window
from detectors.performance.drop import PerformanceDrop


class LabelCounts:
    """The counters every performance detector on labels reports; ``_reset()`` zeroes them."""

    _n_labels: int
    _n_ignored: int

    @property
    def n_labels(self) -> int:
        """How many labelled predictions were absorbed in all."""
        return self._n_labels

    @property
    def n_ignored(self) -> int:
        """How many inputs were invalid and ignored."""
        return self._n_ignored


class LabelledMetric(TupleEvents, LabelCounts, base.Base):
    """Keeps the last ``window`` rows of a metric's inputs and feeds their losses to a drop alarm.

    A subclass sets ``window`` and ``drop`` in its constructor, ``_columns``, names its
    main metric in ``primary``, and turns an input into its row and its loss in [0, 1] (or
    None for an invalid input) in ``_parse``. ``update_many(values)`` is ``update`` over a
    batch; ``alarms`` says where in it the drop alarm fired, and what it read there.
    """

    # The detectors and rows in slots, the counts in the attribute dict, which the garbage
    # collector then stops tracking (``detectors._batch.attribute_state``).
    __slots__ = ("_drop", "_rows", "drop")

    window: int
    drop: PerformanceDrop | None
    primary: str
    _columns = 1

    def _reset(self) -> None:
        self._batch_events = ()
        self._rows = Window(self.window, self._columns)
        self._drop = (self.drop or PerformanceDrop()).fresh()
        self._n_labels = 0
        self._n_ignored = 0

    def _parse(self, x: Any) -> tuple[tuple[float, ...], float] | None:
        raise NotImplementedError

    def _parse_many(self, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, Any] | None:
        """``_parse`` of every value as columns, when a subclass reads them so (its most
        common inputs): the losses (NaN: invalid), the valid ones' rows, and whether each
        is valid; None: a value at a time."""
        return None

    def update(self, x: Any) -> None:
        """Absorb one labelled prediction; an invalid one is counted in ``n_ignored``."""
        parsed = self._parse(x)
        if self._batch_events:
            self._batch_events = ()
        if parsed is None:
            self._n_ignored += 1
            self._drop.update(math.nan)  # clears a previous update's alarm
            return
        row, loss = parsed
        self._rows.push(*row)
        self._n_labels += 1
        self._drop.update(loss)
        if self._drop.drift_detected:
            self._batch_events = (self._alarm(0),)

    def update_many(self, values: Sequence[Any]) -> None:
        """Absorb a batch of labelled predictions: the same state as ``update`` one by one."""
        if self._small(len(values)):
            self._update_each(values)
            return
        columns = self._parse_many(values)
        if columns is None:
            parsed = [self._parse(x) for x in values]
            losses = np.array([math.nan if p is None else p[1] for p in parsed], dtype=np.float64)
            rows = np.array([p[0] for p in parsed if p is not None], dtype=np.float64).reshape(
                -1, self._columns
            )
            valid: Any = [p is not None for p in parsed]
        else:
            losses, rows, valid = columns
        self._n_ignored += len(values) - len(rows)
        self._drop.update_many(losses)
        # The rows go in up to each alarm, where the alarm reads the metric; the valid
        # values up to an alarm are counted there (alarms are rare).
        self._batch_events = ()
        pushed = 0
        for position in self._drop.detections.tolist():
            pushed = self._push(rows, pushed, int(np.count_nonzero(valid[: position + 1])))
            self._add_event(self._alarm(position))
        self._push(rows, pushed, len(rows))

    def _push(self, rows: np.ndarray, start: int, stop: int) -> int:
        self._rows.push_many(rows[start:stop])
        self._n_labels += stop - start
        return stop

    def _alarm(self, position: int) -> tuple[int, int, float]:
        return position, self._n_labels, getattr(self, self.primary)

    @property
    def alarms(self) -> list[tuple[int, int, float]]:
        """Each drop alarm of the last batch: its position, ``n_labels`` and the ``primary``
        metric just after it."""
        return list(self._batch_events)

    @property
    def drift_detected(self) -> bool:
        """Performance dropped, according to the drop alarm, at the last update."""
        return self._drop.drift_detected
