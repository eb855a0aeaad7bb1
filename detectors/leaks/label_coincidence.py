"""Label-coincident writes: features written (or nulled) at the moment the label happens."""

from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Any

import numpy as np
from river import base

from detectors._exact import binomial_sf, hypergeom_sf
from detectors.leaks._anytime import AnytimePValue
from detectors.leaks._arguments import require_counts, require_durations, require_fractions
from detectors.leaks._memory import Forgetful
from detectors.leaks.events import (
    EntityId,
    FeatureWrite,
    Label,
    Scalar,
    checked_label,
    checked_write,
    is_null,
)

# Axes of a feature's counters: kind of write, class, then the statistic.
_ANY, _NULL = 0, 1
_NEAR, _CONTROL, _NEAR_ONLY, _CONTROL_ONLY = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class CoincidenceEvidence:
    """What one feature's writes look like around the labels, per class (negative, positive).

    Attributes
    ----------
    feature
        The feature's name.
    labels
        Labels counted for this feature, per class.
    near_writes, control_writes
        Labels with a write to the feature within ``tolerance`` of ``label_at`` (near), and
        within ``tolerance`` of ``label_at - control_offset`` (control), per class.
    near_nulls, control_nulls
        The same, counting only writes of null or a sentinel.
    leak_class
        The class whose labels attract the writes (0 or 1).
    score
        The excess of near over control writes per label in ``leak_class`` minus the same
        excess in the other class, for writes or for nulls, whichever is larger; 1.0 means
        every label of one class and none of the other came with a write.
    p_value
        The anytime-valid p-value of "write times are tied to one class's label times".
    leaking
        Whether ``p_value`` is at most the detector's ``alpha``.
    unjudged
        Labels not counted because the entity's writes around them were partly forgotten
        (more than ``history`` writes, or the entity dropped for ``max_entities``). Many of
        them mean the limits are too small for the traffic.
    """

    feature: str
    labels: tuple[int, int]
    near_writes: tuple[int, int]
    control_writes: tuple[int, int]
    near_nulls: tuple[int, int]
    control_nulls: tuple[int, int]
    leak_class: int
    score: float
    p_value: float
    leaking: bool
    unjudged: int


@dataclasses.dataclass
class _Times:
    """Recent write times of one entity's feature, oldest first, at most ``history`` of them."""

    times: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    # The latest timestamp among writes dropped to keep the list short.
    dropped_until: float = -math.inf

    def add(self, write: FeatureWrite, history: int) -> None:
        self.times.append((write.event_at, write.written_at))
        if len(self.times) > history:
            event_at, written_at = self.times.pop(0)
            self.dropped_until = max(self.dropped_until, event_at, written_at)

    def hit(self, low: float, high: float) -> bool | None:
        """Whether a write's event or write time fell in [low, high]; None if unknowable."""
        if any(low <= e <= high or low <= w <= high for e, w in self.times):
            return True
        return None if self.dropped_until >= low else False

    def latest(self) -> float:
        return max([self.dropped_until, *(max(e, w) for e, w in self.times)])


@dataclasses.dataclass
class _Entity:
    """One entity's recent writes per feature: (any writes, writes of null)."""

    # Writes up to this time may have been forgotten along with the entity (max_entities):
    # without it, a forgotten control-window write would look like none, and near-only
    # labels, the evidence of a leak, would be overcounted.
    known_since: float
    features: dict[str, tuple[_Times, _Times]] = dataclasses.field(default_factory=dict)

    def times(self, feature: str) -> tuple[_Times, _Times]:
        found = self.features.get(feature)
        if found is None:
            found = (_Times(dropped_until=self.known_since), _Times(dropped_until=self.known_since))
            self.features[feature] = found
        return found

    def latest(self) -> float:
        return max(
            [self.known_since, *(t.latest() for pair in self.features.values() for t in pair)]
        )


@dataclasses.dataclass
class _Feature:
    first_look: dataclasses.InitVar[int]
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2, np.int64))
    counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((2, 2, 4), np.int64))
    looks: AnytimePValue = dataclasses.field(init=False)
    unjudged: int = 0

    def __post_init__(self, first_look: int) -> None:
        self.looks = AnytimePValue(first_look)


class LabelCoincidentWrites(base.Base):
    """Flags features whose writes cluster around the label time of one class.

    A trigger that nulls ``last_login_date`` when a user cancels leaks the label into
    training: the feature is null exactly for those who churned. The detector checks, for
    every label, whether the entity's feature was written within ``tolerance`` of
    ``label_at`` (the near window) and within ``tolerance`` of ``label_at - control_offset``
    (the control window, same width, earlier). An honest feature is written as often in
    either window, whatever the class, even when its value or its write rate depends on the
    class. A leak is written near the label far more than in the control window, for one
    class more than for the other. A write counts in a window if its ``event_at`` or its
    ``written_at`` falls in it. The control window stands in for the near one as long as an
    entity writes about as often an hour before its label as at it; a feature written by the
    very action that makes the label (the login of the session in which the user cancels)
    is tied to the label, and is flagged: its value at label time carries the outcome.

    Each feature is tested both for any write and for writes of null or a ``sentinels``
    value, in both directions, as an intersection-union test: an exact sign test that near
    writes outnumber control writes within the class, and Fisher's exact test that the class
    has near writes more often than the other class. Both must be significant. The four
    combinations are Bonferroni-corrected and the tests are repeated as labels arrive with
    an anytime-valid correction, so ``alpha`` bounds the chance that an honest feature is
    ever flagged, per feature, over the whole stream.

    A label is scored ``lateness`` after its near window closes in stream time (the latest
    ``written_at`` or ``label_at`` seen), so writes may arrive before or after the label.
    Memory is bounded: the last ``history`` writes per entity and feature for at most
    ``max_entities`` entities (least recently seen are forgotten), at most
    ``max_open_labels`` labels waiting, and ``max_features`` features.

    Parameters
    ----------
    tolerance
        Half-width of the near and control windows, in timestamp units (default one minute
        in milliseconds).
    control_offset
        How far before ``label_at`` the control window is centred (default one hour); at
        least twice ``tolerance``, so the windows do not overlap.
    lateness
        How long, in stream time, a label waits for writes after its near window.
    sentinels
        Values that mean "missing" like ``None``, e.g. ``("1970-01-01", -1)``. (``None``
        rather than an empty tuple when there are none: river's ``clone()`` cannot copy an
        empty tuple.)
    alpha
        The chance, per feature, of ever flagging an honest feature.
    min_labels
        Labels of each class needed before the first test.
    history
        Writes kept per entity and feature. When more writes than this make it unknowable
        whether a window had one, the label is not counted for that feature.
    max_entities
        Entities whose writes are kept. It should cover the entities written to within
        ``control_offset`` plus ``lateness``: a label whose control window may hold writes
        of a forgotten entity is not counted (see ``unjudged``), as guessing "no write"
        there would make honest features look like leaks.
    max_open_labels
        Labels waiting for late writes; beyond it the oldest is scored early.
    max_features
        Features followed; writes to further features are ignored.

    Examples
    --------
    Users log in at random; when one cancels, a trigger nulls ``last_login_date``. The
    ``plan`` feature's value tells churners apart, but its write times are not tied to the
    label.

    >>> import numpy as np
    >>> from detectors import LabelCoincidentWrites
    >>> from detectors.leaks import FeatureWrite, Label
    >>> rng = np.random.default_rng(3)
    >>> detector = LabelCoincidentWrites()
    >>> now, labels = 0.0, 0
    >>> while not detector.leak_detected:
    ...     user = int(rng.integers(500))
    ...     churner = user % 3 == 0
    ...     now += rng.exponential(60_000.0)
    ...     if rng.random() < 0.8:
    ...         detector.update(FeatureWrite(user, "last_login_date", now, now, now))
    ...         plan = "free" if churner else "pro"
    ...         detector.update(FeatureWrite(user, "plan", plan, now, now))
    ...         continue
    ...     if churner:
    ...         detector.update(FeatureWrite(user, "last_login_date", None, now, now))
    ...     detector.update(Label(user, int(churner), now))
    ...     labels += 1
    >>> detector.leaking_features, labels
    (('last_login_date',), 25)
    >>> evidence = detector.evidence["last_login_date"]
    >>> evidence.labels, evidence.near_nulls, evidence.control_nulls, evidence.leak_class
    ((10, 11), (0, 11), (0, 0), 1)
    >>> round(evidence.score, 3), round(evidence.p_value, 5)
    (1.0, 0.00391)
    >>> detector.evidence["plan"].leaking
    False
    """

    def __init__(
        self,
        tolerance: float = 60_000.0,
        control_offset: float = 3_600_000.0,
        lateness: float = 600_000.0,
        sentinels: tuple[Scalar, ...] | None = None,
        alpha: float = 0.01,
        min_labels: int = 10,
        history: int = 16,
        max_entities: int = 100_000,
        max_open_labels: int = 100_000,
        max_features: int = 1_000,
    ) -> None:
        require_durations(positive=True, tolerance=tolerance)
        require_durations(lateness=lateness)
        if not (
            isinstance(control_offset, int | float)
            and math.isfinite(control_offset)
            and control_offset >= 2 * tolerance
        ):
            raise ValueError(
                f"control_offset must be at least 2 * tolerance = {2 * tolerance!r}, "
                f"got {control_offset!r}"
            )
        if not (sentinels is None or isinstance(sentinels, tuple)):
            raise ValueError(f"sentinels must be None or a tuple of values, got {sentinels!r}")
        require_fractions(alpha=alpha)
        require_counts(
            min_labels=min_labels,
            history=history,
            max_entities=max_entities,
            max_open_labels=max_open_labels,
            max_features=max_features,
        )
        self.tolerance = tolerance
        self.control_offset = control_offset
        self.lateness = lateness
        self.sentinels = sentinels
        self.alpha = alpha
        self.min_labels = min_labels
        self.history = history
        self.max_entities = max_entities
        self.max_open_labels = max_open_labels
        self.max_features = max_features
        self._reset()

    def _reset(self) -> None:
        self._stream_time = -math.inf
        self._arrivals = 0
        # Least recently seen entity first.
        self._writes: Forgetful[EntityId, _Entity] = Forgetful(self.max_entities)
        # A heap of (scoring time, arrival number, entity, class, label_at).
        self._open: list[tuple[float, int, EntityId, int, float]] = []
        self._features: dict[str, _Feature] = {}
        self._rejected = 0

    def update(self, x: Any) -> None:
        """Reads one :class:`FeatureWrite` or :class:`Label`; anything else is counted in
        ``rejected``."""
        write = checked_write(x)
        label = None if write is not None else checked_label(x)
        if write is not None:
            self._add_write(write)
        elif label is not None:
            self._add_label(label)
        else:
            self._rejected += 1
            return
        while self._open and self._open[0][0] < self._stream_time:
            self._score(heapq.heappop(self._open))

    def _add_write(self, write: FeatureWrite) -> None:
        self._stream_time = max(self._stream_time, write.written_at)
        if write.feature not in self._features:
            if len(self._features) >= self.max_features:
                return
            self._features[write.feature] = _Feature(2 * self.min_labels)
        times = self._writes.use(write.entity_id, _Entity).times(write.feature)
        times[_ANY].add(write, self.history)
        if is_null(write.value, self.sentinels or ()):
            times[_NULL].add(write, self.history)

    def _add_label(self, label: Label) -> None:
        self._stream_time = max(self._stream_time, label.label_at)
        self._writes.use(label.entity_id, _Entity)
        self._arrivals += 1
        scoring_at = label.label_at + self.tolerance + self.lateness
        entry = (scoring_at, self._arrivals, label.entity_id, int(label.label), label.label_at)
        heapq.heappush(self._open, entry)
        if len(self._open) > self.max_open_labels:
            self._score(heapq.heappop(self._open))

    def _score(self, entry: tuple[float, int, EntityId, int, float]) -> None:
        _, _, entity_id, label, label_at = entry
        entity = self._writes.get(entity_id) or _Entity(self._writes.forgotten_until)
        near = (label_at - self.tolerance, label_at + self.tolerance)
        control_at = label_at - self.control_offset
        control = (control_at - self.tolerance, control_at + self.tolerance)
        for name, feature in self._features.items():
            times = entity.features.get(name)
            outcomes: list[tuple[bool | None, bool | None]] = [(False, False), (False, False)]
            if times is not None:
                outcomes = [(kind.hit(*near), kind.hit(*control)) for kind in times]
            unknown = times is None and entity.known_since >= control[0]
            if unknown or any(None in outcome for outcome in outcomes):
                feature.unjudged += 1
                continue
            feature.labels[label] += 1
            for kind, (near_hit, control_hit) in enumerate(outcomes):
                feature.counts[kind, label] += (
                    bool(near_hit),
                    bool(control_hit),
                    bool(near_hit and not control_hit),
                    bool(control_hit and not near_hit),
                )
            size = int(feature.labels.sum())
            if feature.labels.min() >= self.min_labels and feature.looks.due(size):
                feature.looks.record(size, self._p_value(feature))

    @staticmethod
    def _p_value(feature: _Feature) -> float:
        labels = [int(n) for n in feature.labels]
        best = 1.0
        for kind in (_ANY, _NULL):
            near = [int(c) for c in feature.counts[kind, :, _NEAR]]
            for cls in (0, 1):
                near_only, control_only = (int(c) for c in feature.counts[kind, cls, 2:])
                tied_to_labels = binomial_sf(near_only, near_only + control_only, 0.5)
                class_specific = hypergeom_sf(near[cls], sum(labels), sum(near), labels[cls])
                best = min(best, max(tied_to_labels, class_specific))
        return min(1.0, 4 * best)

    def _evidence(self, name: str, feature: _Feature) -> CoincidenceEvidence:
        labels = np.maximum(feature.labels, 1)
        excess = (feature.counts[:, :, _NEAR] - feature.counts[:, :, _CONTROL]) / labels
        gaps = excess[:, 1] - excess[:, 0]
        kind = int(np.argmax(np.abs(gaps)))

        def per_class(kind: int, stat: int) -> tuple[int, int]:
            return int(feature.counts[kind, 0, stat]), int(feature.counts[kind, 1, stat])

        return CoincidenceEvidence(
            feature=name,
            labels=(int(feature.labels[0]), int(feature.labels[1])),
            near_writes=per_class(_ANY, _NEAR),
            control_writes=per_class(_ANY, _CONTROL),
            near_nulls=per_class(_NULL, _NEAR),
            control_nulls=per_class(_NULL, _CONTROL),
            leak_class=int(gaps[kind] > 0),
            score=float(abs(gaps[kind])),
            p_value=feature.looks.p_value,
            leaking=feature.looks.p_value <= self.alpha,
            unjudged=feature.unjudged,
        )

    @property
    def evidence(self) -> dict[str, CoincidenceEvidence]:
        """Per feature: the counts, the score and the p-value."""
        return {name: self._evidence(name, f) for name, f in self._features.items()}

    @property
    def leaking_features(self) -> tuple[str, ...]:
        """The features flagged so far, sorted. A flag stays: a leak does not heal."""
        return tuple(sorted(n for n, f in self._features.items() if f.looks.p_value <= self.alpha))

    @property
    def leak_detected(self) -> bool:
        """Whether any feature is flagged."""
        return any(f.looks.p_value <= self.alpha for f in self._features.values())

    @property
    def leak_score(self) -> float:
        """The largest ``score`` among flagged features, 0.0 when none is flagged."""
        return max((e.score for e in self.evidence.values() if e.leaking), default=0.0)

    @property
    def open_labels(self) -> int:
        """Labels still waiting for late writes."""
        return len(self._open)

    @property
    def rejected(self) -> int:
        """Inputs that were not a well-formed write or label."""
        return self._rejected
