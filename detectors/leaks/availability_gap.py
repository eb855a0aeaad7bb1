"""Serving/training availability gap: training sees values that serving could not yet read."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from river import base

from detectors._exact import binomial_sf
from detectors.leaks._anytime import AnytimePValue
from detectors.leaks._arguments import require_counts, require_fractions
from detectors.leaks._memory import Forgetful
from detectors.leaks.events import (
    EntityId,
    FeatureWrite,
    ServedFeature,
    checked_served,
    checked_write,
)


@dataclasses.dataclass(frozen=True)
class GapEvidence:
    """One feature's predictions, and how many had a training value serving could not read.

    Attributes
    ----------
    feature
        The feature's name.
    predictions
        Predictions that used the feature.
    gaps
        Those for which the value a point-in-time training join picks (the newest with
        ``event_at <= predicted_at``) was written after ``predicted_at``.
    gap_rate
        ``gaps / predictions`` (0.0 before any prediction). Gaps found by writes that have
        not arrived yet are missing, so it can only grow as they do.
    p_value
        The anytime-valid p-value of "the gap rate is at most ``max_gap_rate``".
    gapped
        Whether ``p_value`` is at most the detector's ``alpha``.
    """

    feature: str
    predictions: int
    gaps: int
    gap_rate: float
    p_value: float
    gapped: bool


@dataclasses.dataclass
class _Key:
    """One entity's feature: its recent writes and the predictions that used it."""

    # Writes with timestamps up to this may have been dropped (``history``) or forgotten
    # with the key (``max_keys``).
    forgotten_until: float
    writes: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    # [predicted_at, gap already counted]
    predictions: list[list[Any]] = dataclasses.field(default_factory=list)

    def add(self, event_at: float, written_at: float, history: int) -> None:
        self.writes.append((event_at, written_at))
        if len(self.writes) > history:
            dropped = self.writes.pop(0)
            self.forgotten_until = max(self.forgotten_until, *dropped)

    def late_for(self, predicted_at: float) -> bool:
        """Whether the value training would join for ``predicted_at`` was written after it.

        When a forgotten write might be the newer one training joins, the answer is no:
        guessing yes would make gaps out of missing memory.
        """
        joined: tuple[float, float] | None = None
        for write in self.writes:
            # Among writes of the same event time, the one written first is the benefit of
            # the doubt.
            if write[0] <= predicted_at and (
                joined is None
                or write[0] > joined[0]
                or (write[0] == joined[0] and write[1] < joined[1])
            ):
                joined = write
        if joined is None:
            return False
        event_at, written_at = joined
        return written_at > predicted_at and event_at >= self.forgotten_until

    def latest(self) -> float:
        return max([self.forgotten_until, *(max(e, w) for e, w in self.writes)])


@dataclasses.dataclass
class _Feature:
    looks: AnytimePValue
    predictions: int = 0
    gaps: int = 0


class AvailabilityGap(base.Base):
    """Flags features whose training values were often not yet written at prediction time.

    Training joins features on event time: for a prediction at ``predicted_at`` it takes
    the newest value with ``event_at <= predicted_at``. If that value was written later (a
    slow pipeline, a backfill), training sees something serving never could, and the model
    learns from inputs it will not get in production. The detector keeps each entity's
    recent writes and predictions per feature, so the late write can come before or after
    the prediction, and counts each prediction with a gap once.

    A feature is flagged when an exact binomial test, repeated as predictions arrive with an
    anytime-valid correction, says its gap rate is above ``max_gap_rate``; ``alpha`` bounds
    the chance of ever flagging a feature whose rate is at most that.

    Memory is bounded: ``history`` writes and ``pending`` predictions per entity and feature,
    for the ``max_keys`` most recently seen (entity, feature) pairs, and ``max_features``.

    Parameters
    ----------
    max_gap_rate
        The gap rate tolerated, e.g. 0.01 for 1% of predictions.
    alpha
        The chance, per feature, of ever flagging a feature within ``max_gap_rate``.
    min_predictions
        Predictions of a feature before its first test.
    history
        Writes kept per entity and feature.
    pending
        Predictions kept per entity and feature, waiting for late writes.
    max_keys
        (entity, feature) pairs kept; the least recently seen are forgotten. It should
        cover the pairs written to within the longest write lag: a gap that hinges on a
        forgotten write is not counted, which costs power but never makes a false gap.
    max_features
        Features followed; further features are ignored.

    Examples
    --------
    ``balance`` is computed for the end of each day but written six hours later; serving
    at 2am reads yesterday's value, training joins the new one.

    >>> from detectors import AvailabilityGap
    >>> from detectors.leaks import FeatureWrite, ServedFeature
    >>> hour = 3_600_000.0
    >>> detector = AvailabilityGap(min_predictions=10)
    >>> for day in range(30):
    ...     midnight = day * 24 * hour
    ...     yesterday = midnight - 18 * hour
    ...     detector.update(ServedFeature("acct-1", "balance", 1.0, yesterday, midnight + 2 * hour))
    ...     detector.update(FeatureWrite("acct-1", "balance", 2.0, midnight, midnight + 6 * hour))
    ...     if detector.gap_detected:
    ...         break
    >>> day, detector.gapped_features
    (9, ('balance',))
    >>> detector.evidence["balance"]  # doctest: +ELLIPSIS
    GapEvidence(feature='balance', predictions=10, gaps=10, gap_rate=1.0, p_value=..., gapped=True)
    """

    def __init__(
        self,
        max_gap_rate: float = 0.01,
        alpha: float = 0.01,
        min_predictions: int = 50,
        history: int = 8,
        pending: int = 8,
        max_keys: int = 100_000,
        max_features: int = 1_000,
    ) -> None:
        if not (isinstance(max_gap_rate, int | float) and 0 <= max_gap_rate < 1):
            raise ValueError(f"max_gap_rate must be in [0, 1), got {max_gap_rate!r}")
        require_fractions(alpha=alpha)
        require_counts(
            min_predictions=min_predictions,
            history=history,
            pending=pending,
            max_keys=max_keys,
            max_features=max_features,
        )
        self.max_gap_rate = max_gap_rate
        self.alpha = alpha
        self.min_predictions = min_predictions
        self.history = history
        self.pending = pending
        self.max_keys = max_keys
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        self._keys: Forgetful[tuple[str, EntityId], _Key] = Forgetful(self.max_keys)
        self._features: dict[str, _Feature] = {}
        self._rejected = 0
        # (position in the last batch, evidence) of each feature flagged in it.
        self._batch_events: list[tuple[int, GapEvidence]] = []

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite` or :class:`ServedFeature`; anything else is
        counted in ``rejected``."""
        self._batch_events = []
        self._step(x, 0)

    def update_many(self, events: Sequence[Any]) -> None:
        """Reads a batch of events, exactly as ``update`` one by one would; ``flags`` holds
        the features flagged in it, with their positions. Event by event: each one reads
        and changes its entity's short lists of writes and predictions, which numpy would
        only copy."""
        self._batch_events = []
        for i, x in enumerate(events):
            self._step(x, i)

    def _step(self, x: Any, position: int) -> None:
        write = checked_write(x)
        served = None if write is not None else checked_served(x)
        if write is not None:
            self._add_write(write)
        elif served is not None:
            self._add_prediction(served, position)
        else:
            self._rejected += 1

    def _key(self, feature: str, entity_id: EntityId) -> tuple[_Key, _Feature] | None:
        counts = self._features.get(feature)
        if counts is None:
            if len(self._features) >= self.max_features:
                return None
            counts = self._features[feature] = _Feature(AnytimePValue(self.min_predictions))
        return self._keys.use((feature, entity_id), _Key), counts

    def _add_write(self, write: FeatureWrite) -> None:
        found = self._key(write.feature, write.entity_id)
        if found is None:
            return
        key, counts = found
        key.add(write.event_at, write.written_at, self.history)
        for prediction in key.predictions:
            predicted_at, counted = prediction
            if counted or not write.event_at <= predicted_at < write.written_at:
                continue
            if key.late_for(predicted_at):
                prediction[1] = True
                counts.gaps += 1

    def _add_prediction(self, served: ServedFeature, position: int) -> None:
        found = self._key(served.feature, served.entity_id)
        if found is None:
            return
        key, counts = found
        late = key.late_for(served.predicted_at)
        key.predictions.append([served.predicted_at, late])
        if len(key.predictions) > self.pending:
            key.predictions.pop(0)
        counts.predictions += 1
        counts.gaps += late
        if counts.looks.due(counts.predictions):
            p_value = binomial_sf(counts.gaps, counts.predictions, self.max_gap_rate)
            flagged = counts.looks.p_value <= self.alpha
            counts.looks.record(counts.predictions, p_value)
            if not flagged and counts.looks.p_value <= self.alpha:
                self._batch_events.append((position, self._evidence(served.feature, counts)))

    def _evidence(self, feature: str, counts: _Feature) -> GapEvidence:
        rate = counts.gaps / counts.predictions if counts.predictions else 0.0
        p_value = counts.looks.p_value
        return GapEvidence(
            feature, counts.predictions, counts.gaps, rate, p_value, p_value <= self.alpha
        )

    @property
    def evidence(self) -> dict[str, GapEvidence]:
        """Per feature: predictions, gaps, the gap rate and the p-value."""
        return {f: self._evidence(f, counts) for f, counts in self._features.items()}

    @property
    def gapped_features(self) -> tuple[str, ...]:
        """The features flagged so far, sorted."""
        return tuple(sorted(f for f, c in self._features.items() if c.looks.p_value <= self.alpha))

    @property
    def gap_detected(self) -> bool:
        """Whether any feature is flagged."""
        return any(c.looks.p_value <= self.alpha for c in self._features.values())

    @property
    def flags(self) -> list[tuple[int, GapEvidence]]:
        """Each feature flagged in the last batch (after ``update``: at 0): its position
        there and its evidence right after that event, in order."""
        return list(self._batch_events)

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write or served value."""
        return self._rejected
