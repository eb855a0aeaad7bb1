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
``streams.monitor.Monitor`` and go with its checkpoints.

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
import itertools
import math

from schemas.contracts import GroundTruth

__all__ = ["DEFAULT_MAX_WAITING", "LabelWait"]

DEFAULT_MAX_WAITING = 10_000


class LabelWait:
    """One model's labels that arrived ahead of its predictions."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if not (isinstance(max_waiting, int) and max_waiting >= 1):
            raise ValueError(f"max_waiting must be an integer >= 1, got {max_waiting!r}")
        self.max_waiting = max_waiting
        self.prediction_clock: float = -math.inf
        self.released_early = 0
        # (label_at, arrival, label): the arrival number keeps equal times in order.
        self._heap: list[tuple[int, int, GroundTruth]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def add(self, truth: GroundTruth) -> list[GroundTruth]:
        """The labels to join now: ``truth`` itself when predictions have reached it, else
        the one it pushed over the bound, if any."""
        if truth.label_at <= self.prediction_clock:
            return [truth]
        heapq.heappush(self._heap, (truth.label_at, next(self._arrivals), truth))
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
