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


def own_attribute_dict(instance: object) -> None:
    """Give a new detector its attribute dict at once, before its constructor sets any.

    CPython keeps a new instance's attributes inline, in the object, until something
    reads its ``__dict__``; the garbage collector then visits every attribute of it at
    every collection, and it never stops tracking the object. An attribute dict of numbers,
    arrays and tuples of them is one the collector stops tracking (at the first full
    collection after a tuple is set), and the instance then costs it two visits: the dict
    and the type. A restored detector has its dict already (unpickling fills it); this
    gives one built by its constructor the same, in every feature's test of every model.
    """
    vars(instance)


def attribute_state(instance: Any) -> dict[str, Any]:
    """An instance's attributes: its class's slots, then its attribute dict.

    The state a ``__getstate__`` starts from where a class keeps its objects (which the
    garbage collector tracks) in slots, and its numbers, arrays and tuples of them in the
    attribute dict, which the collector then stops tracking and visiting.
    """
    slots = type(instance).__slots__
    return {**{name: getattr(instance, name) for name in slots}, **vars(instance)}


def set_attribute_state(instance: Any, state: dict[str, Any]) -> None:
    """Sets what ``attribute_state`` gave (less what is made again): the class's slots, the
    rest in the attribute dict in order."""
    slots = type(instance).__slots__
    for name in slots:
        if name in state:
            setattr(instance, name, state[name])
    vars(instance).update((key, value) for key, value in state.items() if key not in slots)


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

    _batch_events: tuple[Any, ...]

    def _add_event(self, event: Any) -> None:
        self._batch_events = (*self._batch_events, event)

    def _update_each(self, values: Iterable[Any]) -> None:
        super()._update_each(values)
        self._batch_events = tuple(self._batch_events)
