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
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.leaks.events import request_hash
from schemas.contracts import GroundTruth

__all__ = [
    "ARRIVED",
    "CLOCK",
    "CLOCKED",
    "DEFAULT_MAX_WAITING",
    "EARLY",
    "MOST",
    "SIZE",
    "LabelWait",
]

DEFAULT_MAX_WAITING = 10_000
# ``LabelWait.columns``' table: how many wait, the prediction clock and whether it is set,
# the arrivals so far, ``released_early`` and ``max_waiting``.
SIZE, CLOCK, CLOCKED, ARRIVED, EARLY, MOST = range(6)


class LabelWait:
    """One model's labels that arrived ahead of its predictions."""

    # One object per model for the garbage collector to walk, not two (it and its dict).
    __slots__ = ("_arrived", "_heap", "max_waiting", "prediction_clock", "released_early")

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if not (isinstance(max_waiting, int) and max_waiting >= 1):
            raise ValueError(f"max_waiting must be an integer >= 1, got {max_waiting!r}")
        self.max_waiting = max_waiting
        self.prediction_clock: float = -math.inf
        self.released_early = 0
        # (label_at, arrival, label, its request's hash or None): the arrival number keeps
        # equal times in order; the hash is the join's key, kept for its compiled loop.
        self._heap: list[tuple[int, int, GroundTruth, int | None]] = []
        self._arrived = 0

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def add(self, truth: GroundTruth) -> list[GroundTruth]:
        """The labels to join now: ``truth`` itself when predictions have reached it, else
        the one it pushed over the bound, if any."""
        if truth.label_at <= self.prediction_clock:
            return [truth]
        request = None if truth.request_id is None else request_hash(truth.request_id)
        heapq.heappush(self._heap, (truth.label_at, self._arrived, truth, request))
        self._arrived += 1
        if len(self._heap) <= self.max_waiting:
            return []
        self.released_early += 1
        return [heapq.heappop(self._heap)[2]]

    def advance(self, predicted_at: int) -> list[GroundTruth]:
        """Move the prediction clock; the labels it has caught up with, oldest first."""
        self.prediction_clock = max(self.prediction_clock, predicted_at)
        released = []
        while self._heap and self._heap[0][0] <= self.prediction_clock:
            released.append(heapq.heappop(self._heap)[2])
        return released

    def columns(self, first: int, room: int) -> tuple[list[GroundTruth], list[Any]]:
        """The wait as arrays, for a compiled loop that adds and releases labels as
        ``add`` and ``advance`` do (``streams.monitor.held``'s ``wait_add``): the waiting
        labels in heap order, whose numbers are ``first`` on, and the columns: the heap's
        times, arrival numbers and label numbers, with room for ``room`` more, the table
        (``SIZE``...), then each waiting label's request hash and whether it has one."""
        heap, count = self._heap, len(self._heap)
        at = np.zeros(count + room, np.int64)
        arrival = np.zeros(count + room, np.int64)
        number = np.zeros(count + room, np.int64)
        keys = np.zeros(count, np.uint64)
        named = np.zeros(count, np.bool_)
        if count:
            at[:count] = [entry[0] for entry in heap]
            arrival[:count] = [entry[1] for entry in heap]
            number[:count] = np.arange(first, first + count)
            requests = [entry[3] for entry in heap]
            named[:] = [request is not None for request in requests]
            keys[named] = [request for request in requests if request is not None]
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
        return [entry[2] for entry in heap], [at, arrival, number, table, keys, named]

    def load(
        self,
        labels: Sequence[Any],
        columns: list[Any],
        keys: npt.NDArray[np.uint64],
        named: npt.NDArray[np.bool_],
    ) -> None:
        """The wait the compiled loop left in ``columns``' arrays: ``labels`` (the
        ``GroundTruth`` of each number that waits), ``keys`` and ``named``, each label's
        request hash and whether it has one, by its number; in the same heap order."""
        at, arrival, number, table = columns[:4]
        count = int(table[SIZE])
        waiting = number[:count]
        requests = [
            key if has else None
            for key, has in zip(keys[waiting].tolist(), named[waiting].tolist(), strict=True)
        ]
        self._heap = list(
            zip(
                at[:count].tolist(),
                arrival[:count].tolist(),
                [labels[n] for n in waiting.tolist()],
                requests,
                strict=True,
            )
        )
        if table[CLOCKED]:
            self.prediction_clock = int(table[CLOCK])
        self._arrived = int(table[ARRIVED])
        self.released_early = int(table[EARLY])
