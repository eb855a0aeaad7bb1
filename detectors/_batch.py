"""What the detectors' batch updates share.

A batch update (``update_many``) gives exactly what ``update`` gives one by one, and keeps
what happened inside the batch in ``_batch_events``: tuples whose first item is the
position in the batch (``tests/detectors/batching.py`` states the convention). Below
``SMALL_BATCH`` values the numpy path costs more than it saves (a dozen array operations
of a few microseconds each, against well under a microsecond per ``update``), so a small
batch goes through ``update`` itself: exact by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

SMALL_BATCH = 16


class BatchEvents:
    """Adds ``_update_each``: a batch fed through ``update``, its events kept by position."""

    _batch_events: Sequence[tuple[Any, ...]]
    update: Callable[[Any], None]

    @staticmethod
    def _small(size: int) -> bool:
        """Whether a batch of ``size`` goes through ``update`` (``SMALL_BATCH`` read here)."""
        return size <= SMALL_BATCH

    def _update_each(self, values: Iterable[Any]) -> None:
        events: list[tuple[Any, ...]] = []
        update = self.update
        for i, x in enumerate(values):
            update(x)
            if self._batch_events:
                events.extend((i, *event[1:]) for event in self._batch_events)
        self._batch_events = events


class TupleEvents(BatchEvents):
    """Batch events kept as a tuple (``_add_event``; empty: ``()``) rather than a list.

    A tuple of tuples of numbers is one the garbage collector stops tracking, and then so
    is the attribute dict holding it when nothing else there is tracked: a list of the
    last batch's events, kept by every feature's test of every model, is visited at each
    collection. A batch holds few events, so a tuple built anew per event costs little.
    """

    _batch_events: tuple[tuple[Any, ...], ...]

    def _add_event(self, event: tuple[Any, ...]) -> None:
        self._batch_events = (*self._batch_events, event)

    def _update_each(self, values: Iterable[Any]) -> None:
        super()._update_each(values)
        self._batch_events = tuple(self._batch_events)
