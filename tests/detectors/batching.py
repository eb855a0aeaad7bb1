"""Shared checks that a detector's batch update gives exactly what ``update`` gives.

The batch convention of every hot-path detector:

- ``update_many(values, ...)`` returns None and leaves every result property, and every
  piece of running state, as the same values fed one by one through ``update`` would;
- what happened inside the batch is read from properties indexed by position in the last
  batch: ``detections`` (where ``drift_detected`` would have been True) for sequential
  detectors, ``window_ends`` with ``window_statistics``, ``window_p_values`` and
  ``window_drifts`` for windowed tests. After ``update(x)`` they describe that batch of one.

A detector keeps those events in one attribute, ``_batch_events`` (``LabelCoincidentWrites``
also keeps where its sample of entities halved, in ``_halvings``). They describe the last
batch, so they differ by design between a stream fed one by one and the same stream fed in
batches; ``same_state`` leaves those attributes out and compares the rest of two detectors'
running state, NaN equal to NaN, so a test can feed one stream one by one and in arbitrary
batches (``cuts``, from hypothesis) and assert equality of both the events and the state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from streams.monitor.label_wait import LabelWait

Event = tuple[Any, ...]

# The attributes holding the events of the last batch (see the module docstring).
BATCH_EVENTS = frozenset({"_batch_events", "_halvings"})
# Classes whose state may be held in either of two forms, and pickles as one: the label
# wait keeps its labels as tuples, or as the arrays the join's compiled loop left.
HELD_IN_FORMS = (LabelWait,)


def same_state(a: Any, b: Any) -> bool:
    """Whether two objects hold equal state, compared recursively; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == object:
            return same_state(a.ravel().tolist(), b.ravel().tolist())
        # NaN equal to NaN where a NaN can be: numpy refuses it for bytes and the like.
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        # In order: which categories win a tie for a tracked cell follows insertion order.
        return list(a) == list(b) and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    if _has_state(a):
        return same_state(_running(a), _running(b))
    return bool(a == b)


def _has_state(x: Any) -> bool:
    """Whether ``x`` is an object compared by its attributes (``__dict__`` or slots)."""
    return (hasattr(x, "__dict__") or hasattr(type(x), "__slots__")) and not isinstance(x, type)


def attributes(x: Any) -> dict[str, Any]:
    """An object's attributes: its slots' values, then its ``__dict__``."""
    slots = (name for cls in type(x).__mro__ for name in getattr(cls, "__slots__", ()))
    found = {name: getattr(x, name) for name in slots if name != "__dict__" and hasattr(x, name)}
    return {**found, **vars(x)} if hasattr(x, "__dict__") else found


def _running(x: Any) -> dict[str, Any]:
    """What ``x`` holds as state: its attributes, or what it pickles for the classes that
    hold one state in more than one form (``HELD_IN_FORMS``)."""
    found = x.__getstate__() if isinstance(x, HELD_IN_FORMS) else attributes(x)
    return {key: value for key, value in found.items() if key not in BATCH_EVENTS}


def state_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first attribute path where two states differ, for a readable failure."""
    if same_state(a, b):
        return None
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        for key in a:
            found = state_difference(a[key], b[key], f"{path}[{key!r}]")
            if found is not None:
                return found
    if _has_state(a) and type(a) is type(b):
        mine, theirs = _running(a), _running(b)
        for key in mine:
            found = state_difference(mine[key], theirs.get(key), f"{path}.{key}")
            if found is not None:
                return found
    return f"{path}: {a!r} != {b!r}"


def cuts(n: int, max_batches: int = 12) -> st.SearchStrategy[list[int]]:
    """Sorted cut points that split ``range(n)`` into batches, empty batches allowed."""
    return st.lists(st.integers(0, n), max_size=max_batches).map(sorted)


def batches(values: Sequence[Any], at: Sequence[int]) -> list[Sequence[Any]]:
    """``values`` split at the cut points ``at`` (as from ``cuts``)."""
    edges = [0, *at, len(values)]
    return [values[start:stop] for start, stop in itertools.pairwise(edges)]


def events_one_by_one(
    detector: Any, values: Sequence[Any], event: Callable[[Any], Event | None]
) -> list[tuple[int, Event]]:
    """Feed ``values`` through ``update``; ``event(detector)`` after each, where not None."""
    found: list[tuple[int, Event]] = []
    for i, x in enumerate(values):
        detector.update(x)
        seen = event(detector)
        if seen is not None:
            found.append((i, seen))
    return found


def events_batched(
    detector: Any,
    values: Sequence[Any],
    at: Sequence[int],
    events: Callable[[Any], list[tuple[int, Event]]],
    update_many: Callable[[Any, Sequence[Any]], None] | None = None,
) -> list[tuple[int, Event]]:
    """Feed ``values`` in the batches cut at ``at``; ``events(detector)`` lists each
    batch's events by their index in that batch, returned here by global index."""
    found: list[tuple[int, Event]] = []
    offset = 0
    for batch in batches(values, at):
        if update_many is None:
            detector.update_many(batch)
        else:
            update_many(detector, batch)
        found.extend((offset + i, seen) for i, seen in events(detector))
        offset += len(batch)
    return found


def detections(detector: Any) -> list[tuple[int, Event]]:
    """The ``events`` of a sequential detector: each index in ``detections``."""
    return [(int(i), ()) for i in detector.detections]


def window_events(detector: Any) -> list[tuple[int, Event]]:
    """The ``events`` of a windowed test: each completed window and its verdict."""
    return [
        (int(i), (_nan_safe(s), _nan_safe(p), bool(d)))
        for i, s, p, d in zip(
            detector.window_ends,
            detector.window_statistics,
            detector.window_p_values,
            detector.window_drifts,
            strict=True,
        )
    ]


def window_event(detector: Any) -> Event | None:
    """The one-by-one counterpart of ``window_events``: the window this update completed."""
    ends = detector.window_ends
    if len(ends) == 0:
        return None
    return window_events(detector)[0][1]


def detection_event(detector: Any) -> Event | None:
    """The one-by-one counterpart of ``detections``."""
    return () if detector.drift_detected else None


def _nan_safe(x: Any) -> Any:
    x = float(x)
    return "nan" if math.isnan(x) else x
