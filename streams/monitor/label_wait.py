"""Labels wait for their model's predictions to catch up before they are joined.

Pure code, no Faust. Predictions and ground truth come on two topics that the worker reads
at once, each at its own lag: when the predictions fall behind, a label can arrive before
the prediction it is about, and every join (``streams.monitor.label_join``,
``streams.monitor.shadow_join``) would count it unmatched. A prediction always comes
before its label in event time, so a label whose ``label_at`` is past the newest
``predicted_at`` the model's predictions have reached (the *prediction clock*) waits here;
each prediction moves the clock and releases the labels it has caught up with.

Waiting is bounded: at most ``max_waiting`` labels per model; a label beyond that releases
the one that waited longest (``released_early`` counts them), so a model whose predictions
stop cannot hold its labels back for long. Waiting labels are part of the model's
``streams.monitor.Monitor`` and go with its checkpoints. While labels wait, a batch's
records go through the label join's compiled loop with the wait in arrays (``columns``,
``load``), which releases them there as ``advance`` and ``add`` do.

>>> from schemas.contracts import GroundTruth
>>> def label(at):
...     return GroundTruth(schema_version=1, model_id="m", label=1, label_at=at, request_id="r")
>>> wait = LabelWait(max_waiting=2)
>>> [t.label_at for t in wait.add(label(50))]  # no prediction seen yet
[]
>>> [t.label_at for t in wait.add(label(20))]
[]
>>> [t.label_at for t in wait.advance(30)]  # predictions reached 30
[20]
>>> [t.label_at for t in wait.add(label(10))]  # already caught up with
[10]
>>> [t.label_at for t in wait.add(label(70)) + wait.add(label(60))]  # over the bound
[50]
>>> wait.waiting, wait.released_early
(2, 1)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.leaks.events import entity_hash, request_hash
from schemas.contracts import GroundTruth

__all__ = [
    "ARRIVED",
    "CLOCK",
    "CLOCKED",
    "DEFAULT_MAX_WAITING",
    "EARLY",
    "MOST",
    "NO_ENTITY",
    "SIZE",
    "LabelWait",
]

DEFAULT_MAX_WAITING = 10_000
# The entity hash kept for a label that names no entity: above the label join's sample
# limit whenever that holds less than everything (at most 2**63), as such a label is.
NO_ENTITY = (1 << 64) - 1


class _Columns(NamedTuple):
    at: npt.NDArray[np.int64]
    arrival: npt.NDArray[np.int64]
    keys: npt.NDArray[np.uint64]
    named: npt.NDArray[np.bool_]
    entities: npt.NDArray[np.uint64]
    labels: list[GroundTruth]


# A waiting label as ``add`` and ``advance`` keep it: (label_at, arrival, label, its
# request's hash or None, its entity's hash or ``NO_ENTITY``).
_Entry = tuple[int, int, GroundTruth, int | None, int]


def label_entity(truth: GroundTruth) -> int:
    """The hash of the entity ``truth`` names, ``NO_ENTITY`` for none."""
    return NO_ENTITY if truth.entity_id is None else entity_hash(truth.entity_id)


# ``LabelWait.columns``' table: how many wait, the prediction clock and whether it is set,
# the arrivals so far, ``released_early`` and ``max_waiting``.
SIZE, CLOCK, CLOCKED, ARRIVED, EARLY, MOST = range(6)


class LabelWait:
    """One model's labels that arrived ahead of its predictions.

    The heap is kept as the compiled loop left it (``load``: arrays, and the labels in heap
    order) until ``add`` or ``advance`` needs it as tuples: a worker behind on the
    predictions holds thousands of labels here, and turning them into tuples and back for
    every batch cost it more than the batch (36% of a worker's CPU at 10 times the demo's
    rate, 2026-12-07). A checkpoint holds the arrays either way (``__getstate__``).
    """

    # One object per model for the garbage collector to walk, not two (it and its dict).
    __slots__ = (
        "_arrived",
        "_columns",
        "_heap",
        "max_waiting",
        "prediction_clock",
        "released_early",
    )

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if not (isinstance(max_waiting, int) and max_waiting >= 1):
            raise ValueError(f"max_waiting must be an integer >= 1, got {max_waiting!r}")
        self.max_waiting = max_waiting
        self.prediction_clock: float = -math.inf
        self.released_early = 0
        # ``_Entry`` each: the arrival number keeps equal times in order; the hashes are
        # what the join's compiled loop reads of a label.
        self._heap: list[_Entry] = []
        # Or, in the same heap order: label_at, arrival, request hash and whether there is
        # one, entity hash, and the labels (``_Columns``); None while ``_heap`` holds them.
        self._columns: _Columns | None = None
        self._arrived = 0

    @property
    def waiting(self) -> int:
        columns = self._columns
        return len(self._heap) if columns is None else len(columns.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "max_waiting": self.max_waiting,
            "prediction_clock": self.prediction_clock,
            "released_early": self.released_early,
            "arrived": self._arrived,
            "columns": tuple(self._as_columns()),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_waiting = state["max_waiting"]
        self.prediction_clock = state["prediction_clock"]
        self.released_early = state["released_early"]
        self._arrived = state["arrived"]
        self._heap = []
        self._columns = _Columns(*state["columns"])

    def _as_columns(self) -> _Columns:
        """The heap as columns (made from the tuples, which stay, if it is held so)."""
        if self._columns is not None:
            return self._columns
        heap = self._heap
        named = [entry[3] is not None for entry in heap]
        return _Columns(
            np.array([entry[0] for entry in heap], np.int64),
            np.array([entry[1] for entry in heap], np.int64),
            np.array([entry[3] or 0 for entry in heap], np.uint64),
            np.array(named, np.bool_),
            np.array([entry[4] for entry in heap], np.uint64),
            [entry[2] for entry in heap],
        )

    def _tuples(self) -> list[_Entry]:
        """The heap as tuples, for ``add`` and ``advance``."""
        columns = self._columns
        if columns is not None:
            requests = [
                key if has else None
                for key, has in zip(columns.keys.tolist(), columns.named.tolist(), strict=True)
            ]
            self._heap = list(
                zip(
                    columns.at.tolist(),
                    columns.arrival.tolist(),
                    columns.labels,
                    requests,
                    columns.entities.tolist(),
                    strict=True,
                )
            )
            self._columns = None
        return self._heap

    def add(self, truth: GroundTruth) -> list[GroundTruth]:
        """The labels to join now: ``truth`` itself when predictions have reached it, else
        the one it pushed over the bound, if any."""
        if truth.label_at <= self.prediction_clock:
            return [truth]
        self._tuples()
        request = None if truth.request_id is None else request_hash(truth.request_id)
        entry = (truth.label_at, self._arrived, truth, request, label_entity(truth))
        heapq.heappush(self._heap, entry)
        self._arrived += 1
        if len(self._heap) <= self.max_waiting:
            return []
        self.released_early += 1
        return [heapq.heappop(self._heap)[2]]

    def advance(self, predicted_at: int) -> list[GroundTruth]:
        """Move the prediction clock; the labels it has caught up with, oldest first."""
        self.prediction_clock = max(self.prediction_clock, predicted_at)
        released: list[GroundTruth] = []
        if not self.waiting:
            return released
        heap = self._tuples()
        while heap and heap[0][0] <= self.prediction_clock:
            released.append(heapq.heappop(heap)[2])
        return released

    def columns(self, first: int, room: int) -> tuple[list[GroundTruth], list[Any]]:
        """The wait as arrays, for a compiled loop that adds and releases labels as
        ``add`` and ``advance`` do (``streams.monitor.held``'s ``wait_add``): the waiting
        labels in heap order, whose numbers are ``first`` on, and the columns: the heap's
        times, arrival numbers and label numbers, with room for ``room`` more, the table
        (``SIZE``...), then each waiting label's request hash, whether it has one, and its
        entity hash."""
        waiting = self._as_columns()
        count = len(waiting.labels)
        at = np.zeros(count + room, np.int64)
        arrival = np.zeros(count + room, np.int64)
        number = np.zeros(count + room, np.int64)
        at[:count] = waiting.at
        arrival[:count] = waiting.arrival
        number[:count] = np.arange(first, first + count)
        clocked = self.prediction_clock != -math.inf
        table = np.array(
            [
                count,
                self.prediction_clock if clocked else 0,
                clocked,
                self._arrived,
                self.released_early,
                self.max_waiting,
            ],
            np.int64,
        )
        columns = [at, arrival, number, table, waiting.keys, waiting.named, waiting.entities]
        return list(waiting.labels), columns

    def load(
        self,
        labels: Sequence[Any],
        columns: list[Any],
        keys: npt.NDArray[np.uint64],
        named: npt.NDArray[np.bool_],
        entities: npt.NDArray[np.uint64],
    ) -> None:
        """The wait the compiled loop left in ``columns``' arrays: ``labels`` (the
        ``GroundTruth`` of each number that waits), ``keys``, ``named`` and ``entities``,
        each label's request hash, whether it has one and its entity hash, by its number;
        in the same heap order."""
        at, arrival, number, table = columns[:4]
        count = int(table[SIZE])
        waiting = number[:count]
        self._heap = []
        self._columns = _Columns(
            at[:count].copy(),
            arrival[:count].copy(),
            keys[waiting],
            named[waiting],
            entities[waiting],
            list(map(labels.__getitem__, waiting.tolist())),
        )
        if table[CLOCKED]:
            self.prediction_clock = int(table[CLOCK])
        self._arrived = int(table[ARRIVED])
        self.released_early = int(table[EARLY])
