"""One model's watch: its feature drift detectors and its health policy, as one state object.

Pure code, no Faust: each model's ``streams.monitor.Monitor`` holds one ``ModelWatch`` and
calls ``observe`` for each of the model's predictions. What comes back (evidence, the
transition, the control action, a due escalation) is what ``consequences`` turns into
points, alerts and commands to sign (``streams.monitor.effects``).

Drift. Each monitored feature gets a windowed test from ``detectors`` (settings
``[detectors.drift]`` of the portfolio: ``method`` plus the test's own keyword arguments).
Its reference is frozen from the first ``reference_size`` values the watch sees (default:
one window), so a lasting shift keeps alarming until the stream returns to it; a rolling
reference would accept the shifted stream as normal after one window. A stream that
already moves while its reference fills would hide the move in it: a numeric reference
holding a change worth a fallback (``detectors.drift._change_point``) keeps the values
before it, and the values after it are tested at once as the first windows.

Health. ``detectors.HealthPolicy`` with ``[detectors.health]`` settings (``confirm``,
``min_dwell``, ``clear_after``, seconds) and the model's ``escalation_limit``. Every
prediction without evidence moves the policy's event time forward (a policy heartbeat), so
dwell, probation and escalation fire on time between windows.

Values from the future. Every feature value a ``live`` prediction used goes through
``detectors.FutureValues`` (setting ``[detectors.leaks] skew_tolerance``, milliseconds): a
value written after the prediction was made is critical evidence, which moves the model
to its fallback at once. Evidence is emitted when a new such value arrives, so once they
stop the model can recover through probing like any other.

Shadow predictions are left to the shadow join (``streams.monitor.shadow_join``).

Outputs. ``[detectors.output]`` watches what the model answers, not only what it is fed:

- ``score``: ``detectors.ResidualCUSUM`` on the score of every ``live`` prediction (a
  ``Score`` output), ready after 50 scores: mean and spread CUSUMs on the scores' ranks
  in a short reference that follows the traffic's slow, harmless movement and renews at
  each change, and a slow check against references of 800 to 1,600 scores before that
  alarms when the scores moved by at least ``score_min_effect`` (a ramp too slow for the
  CUSUMs). Its reference renewing, a broken model's output would become its new
  normal; so the watch keeps the reference the episode's first alarm was judged against
  (``baseline``) and, every ``OUTPUT_FOLLOW_UP`` scores (and at the first score half the
  policy's ``clear_after`` after the last look), measures the scores since the latest
  change against it (from ``OUTPUT_EFFECT_MIN`` of them, at most the last
  ``OUTPUT_EFFECT_MAX``; after a restore, the scores since the restore): while that effect
  reaches the floor, the change is still there (an alarm, cause ``sustained``); once
  ``OUTPUT_EFFECT_MAX`` scores since the change have stayed below it, the episode ends.
- ``error_rate``: ``detectors.BernoulliCUSUM`` on "this request was served by the
  fallback because the model raised": a ``fallback`` prediction while the watch has not
  sent the model to its fallback. Predictions during a fallback episode (``fallback`` and
  ``probing``) and for ``restore_grace`` seconds after a restore (nodes obey the command
  with a lag) are not counted.

The error rate learns its reference from its first warm-up and then keeps it frozen (a
copy taken when the warm-up ended comes back after each alarm), like drift's reference:
the detector itself re-learns after an alarm, which would take a broken model's errors as
the new normal after one warm-up. Levels come from ``detectors.AlarmBudget``
(``false_fallbacks_per_model_day``, default 0.01, shared equally between the model's
families ``drift``, ``score`` and ``error_rate``; ``predictions_per_day``, default 2,000,
each prediction one test of ``score`` and ``error_rate``): ``error_rate`` gets
``threshold = ln(1 / alpha)``, ``score`` its ``alpha``. The other keys are the detectors'
arguments with a ``score_`` or ``error_`` prefix (``score_warm_up``, ``score_allowance``,
``score_spread_ratio``, ``score_clip``, ``score_max_reference``, ``error_warm_up``,
``error_odds_ratio``, ``error_reference_rate``). Evidence comes on each alarm and every
``OUTPUT_REPORT_EVERY`` inputs after the warm-up (InfluxDB ``drift`` points, detector tag
``score`` or ``error_rate``, no feature); ``enabled = false`` turns both off.

Effect-size floors. An alarm moves the health policy only when it is material
(``Evidence.material``): the change it found reaches its floor, the smallest change
worth a fallback, as a share of the population (``detectors.drift._effect``: how far the
quartiles moved in the reference's distribution, or a category's share), less the
in-control noise of that share, sampling and the slow variation the reference's own
consecutive blocks show (a daily mix, a batch job moving an aggregate). Drift reads each
window's effect against the frozen reference (``[detectors.drift] min_effect``, which the
numeric tests also get: their windows below it, the traffic's own wandering over days,
widen the noise of the windows after them); the
score its values since the located change (``ResidualCUSUM.change_lag``; at least
``OUTPUT_EFFECT_MIN``, at most ``OUTPUT_EFFECT_MAX``) against the episode's baseline
(``score_min_effect``); the error rate the rise of its share of failed requests over the
same span of its inputs, less twice its standard error (``error_min_effect``). Defaults
``DEFAULT_MIN_EFFECT``, ``DEFAULT_SCORE_MIN_EFFECT`` and ``DEFAULT_ERROR_MIN_EFFECT``. A
drop of performance, measured against labels, is material whatever its size
(``streams.monitor.label_join``). An alarm below its floor is still written to InfluxDB
(fields ``effect`` and ``material``) and raises the detector's alert at
``informational`` severity while all its alarming features are below the floor.

Only ``live`` and ``fallback`` predictions feed drift (they are the model's traffic
whichever model served it); ``shadow`` predictions duplicate that traffic.
"""

from __future__ import annotations

import bisect
import collections
import copy
import dataclasses
import functools
import itertools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from detectors._batch import SMALL_BATCH
from detectors.drift._change_point import reference_cut
from detectors.drift._effect import quantile_effect, slow_variance
from detectors.drift._window import finite_floats
from detectors.drift.bernoulli_cusum import BernoulliCUSUM
from detectors.drift.categorical_psi import CategoricalPSIDrift
from detectors.drift.chi_square import ChiSquareDrift
from detectors.drift.jensen_shannon import JensenShannonDrift
from detectors.drift.ks import KSDrift
from detectors.drift.psi import PSIDrift
from detectors.drift.residual_cusum import ResidualCUSUM
from detectors.drift.wasserstein import WassersteinDrift
from detectors.health.budget import AlarmBudget
from detectors.health.control_action import ControlAction
from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.policy import HealthPolicy
from detectors.health.transition import Transition
from detectors.leaks.events import get_entity_id, get_written_at
from detectors.leaks.future_values import FutureValues
from detectors.performance._window import Window
from schemas.contracts import FeatureSeen, Prediction, Score
from streams.monitor.batch import get_features, get_predicted_at, get_role
from streams.monitor.effects import (
    Alert,
    CommandToSign,
    Point,
    detector_alert,
    escalation_alert,
    escalation_cleared,
    health_alert,
    point,
)
from streams.portfolio import Feature, Model, PortfolioError

__all__ = [
    "DRIFT_METHODS",
    "HEALTH_STATE_CODES",
    "Effects",
    "ModelWatch",
    "Observation",
    "consequences",
    "describe",
    "new_watch",
    "observe",
    "observe_evidence",
    "prediction_evidence",
    "standing_alert",
    "transition_alert",
]

DRIFT_METHODS: Mapping[str, Mapping[str, type[Any]]] = {
    "numeric": {
        "psi": PSIDrift,
        "ks": KSDrift,
        "wasserstein": WassersteinDrift,
        "jensen_shannon": JensenShannonDrift,
    },
    "categorical": {"psi": CategoricalPSIDrift, "chi_square": ChiSquareDrift},
}
DEFAULT_DRIFT_METHOD = "psi"
DRIFT_ROLES = frozenset({"live", "fallback"})
# The ``state_code`` field of InfluxDB's health measurement: higher is further from live.
HEALTH_STATE_CODES = {"healthy": 0, "degraded": 1, "probing": 2, "fallback": 3}
# Settings the watch reads itself; the rest go to the drift test's constructor.
_WATCH_KEYS = ("method", "reference_size", "min_effect")
# Effect-size floors (``detectors.drift._effect``): the smallest change worth a fallback,
# as a share of the population that moved past a quartile (numeric) or into or out of a
# category, less the reference's in-control noise. For a feature, 0.15: the median of a
# normal stream moving by 0.4 standard deviations, a fifth of a category's share moving
# (the drift benchmark's category mix is 0.15 after its noise). A fallback on feature
# drift also needs a second material alarm at another time, which one window of every
# feature does not give. For the score, 0.25: a score stuck at its 99th percentile gives
# about 0.6, a one-sigma shift 0.34, a doubled spread 0.32, while the null portfolio's
# harmless movement of a score (a batch job moving an aggregate) stays below it.
DEFAULT_MIN_EFFECT = 0.15
DEFAULT_SCORE_MIN_EFFECT = 0.25
# The error rate's floor: the rise of the share of requests the model failed.
DEFAULT_ERROR_MIN_EFFECT = 0.02
# An output alarm's effect is measured on the inputs since the change, since its alarming
# CUSUM last left zero (``change_start``): at least OUTPUT_EFFECT_MIN of them (a stuck
# score alarms within about 15) and at most OUTPUT_EFFECT_MAX.
OUTPUT_EFFECT_MIN = 20
OUTPUT_EFFECT_MAX = 500
# Scores between two measurements of a score change against its baseline, unless this
# share of the health policy's clear_after passes first. A model of a few scores an hour
# (fewer than OUTPUT_FOLLOW_UP in clear_after) would otherwise look quiet to the policy
# between two looks: degraded, it would clear before any second look confirmed the
# change, and on its fallback (nodes that keep scoring it) it would be restored while the
# change lasts.
OUTPUT_FOLLOW_UP = 10
OUTPUT_FOLLOW_UP_SHARE = 0.5
SCORE_DETECTOR = "score"
ERROR_RATE_DETECTOR = "error_rate"
OUTPUT_REPORT_EVERY = 500
# [detectors.output] keys: the watch's own (with their defaults), then the detectors' own
# arguments behind a prefix.
_OUTPUT_DEFAULTS: Mapping[str, float | int | bool] = {
    "enabled": True,
    "false_fallbacks_per_model_day": 0.01,
    "predictions_per_day": 2000,
    "restore_grace": 60.0,
    "score_min_effect": DEFAULT_SCORE_MIN_EFFECT,
    "error_min_effect": DEFAULT_ERROR_MIN_EFFECT,
}
_OUTPUT_ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "score_": ("warm_up", "allowance", "spread_ratio", "clip", "max_reference"),
    "error_": ("warm_up", "odds_ratio", "reference_rate"),
}


# A drift window spans half a day of the model's traffic (``[detectors.output]
# predictions_per_day``): 1,000 values at the default 2,000 a day, as before, and fewer for
# a quieter model, which would otherwise wait days for its first test; never fewer than
# DRIFT_WINDOW_MIN, which keeps a window's quartiles and bins worth testing, nor more than
# DRIFT_WINDOW_MAX, the tests' own default. ``window_size`` set in the portfolio wins.
DRIFT_WINDOW_DAY_SHARE = 0.5
DRIFT_WINDOW_MIN = 100
DRIFT_WINDOW_MAX = 1000


def drift_window_size(predictions_per_day: Any) -> int:
    """The default drift window for a model with this traffic (a number of values).

    >>> drift_window_size(2000), drift_window_size(500), drift_window_size(50)
    (1000, 250, 100)
    """
    if isinstance(predictions_per_day, bool) or not isinstance(predictions_per_day, int | float):
        # A bad setting is refused by name with the output settings.
        predictions_per_day = _OUTPUT_DEFAULTS["predictions_per_day"]
    share = DRIFT_WINDOW_DAY_SHARE * predictions_per_day
    if not share > DRIFT_WINDOW_MIN:  # NaN included
        return DRIFT_WINDOW_MIN
    return int(min(DRIFT_WINDOW_MAX, share))


# A completed drift window: its position in a batch, statistic, p-value, verdict, effect.
DriftWindow = tuple[int, float, float, bool, float]


class ScoreRead(NamedTuple):
    """What the score's detector says after a finite score: whether its reference is
    ready, its statistic, and, on an alarm, its cause, change lag and the reference it
    judged against."""

    score: float
    ready: bool
    statistic: float = 0.0
    alarm: bool = False
    cause: str = ""
    change_lag: int = 0
    judged: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class ScoreReads:
    """What the score's detector read from a batch of scores (``ScoreDetector.feed_many``),
    by each score's position, for ``judge`` in turn.

    The finite scores' positions (ascending), values and whether the reference was
    ready at each; the whole read where ``feed`` made it or a report reads the
    statistic (a stretch's other reads carry none); and ``notable``, the positions
    (ascending) whose read ``judge`` turns into evidence outside an episode: an alarm,
    a report. Outside an episode, the scores between two notable ones only count
    (``ScoreDetector.count``).
    """

    positions: list[int] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)
    ready: list[bool] = dataclasses.field(default_factory=list)
    whole: dict[int, ScoreRead] = dataclasses.field(default_factory=dict)
    notable: list[int] = dataclasses.field(default_factory=list)

    def add(self, position: int, read: ScoreRead, counted: int) -> None:
        """Add the whole read of the score at ``position``, after which ``judge`` will
        have counted ``counted`` scores."""
        self.positions.append(position)
        self.values.append(read.score)
        self.ready.append(read.ready)
        self.whole[position] = read
        if read.ready and (read.alarm or counted % OUTPUT_REPORT_EVERY == 0):
            self.notable.append(position)

    def get(self, position: int) -> ScoreRead | None:
        """The read of the score at ``position`` (None: no finite score there)."""
        read = self.whole.get(position)
        if read is not None:
            return read
        k = bisect.bisect_left(self.positions, position)
        if k == len(self.positions) or self.positions[k] != position:
            return None
        ready = self.ready[k]
        return ScoreRead(self.values[k], ready=ready, statistic=math.nan if ready else 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class DriftSpec:
    """How a model tests its features of one kind for drift, the same for each of them: one
    object for all, which the model's pickle holds once (pickle keeps an object's identity
    within one ``dumps``). Never modified, ``settings`` included.
    """

    method: str
    test_class: type[Any]
    # The test's keyword arguments besides its reference.
    settings: dict[str, Any]
    reference_size: int
    kind: str = "numeric"
    min_effect: float = DEFAULT_MIN_EFFECT

    def build(self, filled: list[Any]) -> tuple[Any, list[Any]]:
        """The test on the reference ``filled``, and the values after a change inside it."""
        reference: Any = filled
        after: list[Any] = []
        if self.kind == "categorical":
            reference = dict(collections.Counter(filled))
        else:
            values = finite_floats(filled)
            finite = np.flatnonzero(~np.isnan(values))
            cut = reference_cut(values[finite], self.min_effect)
            if cut < finite.size:
                after = filled[finite[cut] :]
            # The finite values the test would keep of the values before the cut, as a
            # read-only array: the test holds it as its reference and sample at once, in
            # 8 bytes a value instead of a list of floats beside a sorted copy.
            reference = values[finite[:cut]]
            reference.flags.writeable = False
        return self.test_class(reference=reference, **self.settings), after


@dataclasses.dataclass(slots=True)
class Filling:
    """A feature's reference while it fills: its values, and the missing ones (None)."""

    spec: DriftSpec
    values: list[Any] = dataclasses.field(default_factory=list)
    skipped: int = 0


@dataclasses.dataclass(slots=True)
class DriftTests:
    """A model's feature drift tests: per feature, its reference while it fills
    (``Filling``), then the test built on it.

    A numeric reference that holds a change (``detectors.drift._change_point``: the
    stream already moving while the reference filled) keeps only the values before it;
    the values after it become the test's first windows, so the change is tested as soon
    as the reference is complete.

    Once built, a feature's test is all it keeps: its spec is the one of its test's class
    (a model's numeric and categorical tests never share one), and the values it skipped
    while its reference filled join ``skipped``. Every full garbage collection visits
    each reference a model's state holds: a dataclass of nine fields beside each test
    held 200 of them for 20 features.
    """

    # One per kind of feature the model has.
    specs: tuple[DriftSpec, ...]
    # Feature -> its ``Filling``, then its test.
    features: dict[str, Any]
    # Missing values (None) of the features whose test is built, while their references
    # filled; the tests count their own after.
    skipped: int = 0

    def spec(self, name: str) -> DriftSpec:
        """The spec of feature ``name``."""
        state = self.features[name]
        if isinstance(state, Filling):
            return state.spec
        test_class = type(state)
        return next(spec for spec in self.specs if spec.test_class is test_class)

    def skipped_values(self) -> int:
        """The missing values of every feature so far."""
        return self.skipped + sum(
            state.skipped if isinstance(state, Filling) else state.n_skipped
            for state in self.features.values()
        )

    def update(self, name: str, value: Any) -> list[DriftWindow]:
        """Feed one value of feature ``name``; its windows as ``update_many`` gives them."""
        state = self.features[name]
        if isinstance(state, Filling):
            if value is None:
                state.skipped += 1
            else:
                state.values.append(value)
            if len(state.values) < state.spec.reference_size:
                return []
            test, after = self._build(name, state)
            return _test_windows(test, after, 1, len(after)) if after else []
        windows = state.n_windows
        state.update(value)
        if state.n_windows == windows:
            return []
        p_value = float(getattr(state, "p_value", math.nan))
        return [(0, state.statistic, p_value, state.drift_detected, state.effect)]

    def update_many(self, name: str, values: Sequence[Any]) -> list[DriftWindow]:
        """Feed a batch of feature ``name``, as ``update`` one by one; per window it
        completed, its position in ``values``, statistic, p-value (NaN for tests without
        one), verdict and effect. The windows of the values after a change inside the
        reference are at the position of the value that completed the reference."""
        state = self.features[name]
        start = 0
        after: list[Any] = []
        if isinstance(state, Filling):
            # The reference takes the values that are not None until it is complete.
            filling = state.values
            # Nearly always none is missing: the positions without a step per value.
            present: Sequence[int] = range(len(values))
            if None in values:
                present = [i for i, value in enumerate(values) if value is not None]
            needed = state.spec.reference_size - len(filling)
            if len(present) == len(values):
                filling.extend(values[:needed])
            else:
                filling.extend(values[i] for i in present[:needed])
            if len(present) < needed:
                state.skipped += len(values) - len(present)
                return []
            start = present[needed - 1] + 1
            state.skipped += start - needed
            state, after = self._build(name, state)
        if not after and start == len(values):
            return []
        return _test_windows(
            state, [*after, *values[start:]] if after else values[start:], start, len(after)
        )

    def _build(self, name: str, filling: Filling) -> tuple[Any, list[Any]]:
        """Build feature ``name``'s test on its full reference, which it replaces; returns
        the test and the values after a change inside the reference."""
        test, after = filling.spec.build(filling.values)
        self.features[name] = test
        self.skipped += filling.skipped
        return test, after


def _test_windows(test: Any, values: Sequence[Any], start: int, replayed: int) -> list[DriftWindow]:
    """Feed ``values`` to ``test``: the first ``replayed`` of them came after a change
    inside the reference, the rest are the batch's from position ``start``."""
    windows = test.n_windows
    test.update_many(values)
    if test.n_windows == windows:
        # Nearly every batch completes no window (each counts one): none of the five
        # arrays of its windows to build and read, a few microseconds a feature a batch.
        return []
    return [
        (max(start + end - replayed, start - 1), statistic, p_value, drift, effect)
        for end, statistic, p_value, drift, effect in zip(
            test.window_ends.tolist(),
            test.window_statistics.tolist(),
            test.window_p_values.tolist(),
            test.window_drifts.tolist(),
            test.window_effects.tolist(),
            strict=True,
        )
    ]


@dataclasses.dataclass(slots=True)
class ScoreDetector:
    """The score's ``ResidualCUSUM`` and the baseline a change is measured against (see
    the module's docstring). An alarm is material when its effect reaches ``min_effect``.
    """

    detector: ResidualCUSUM
    min_effect: float = DEFAULT_SCORE_MIN_EFFECT
    inputs: int = 0
    alarms: int = 0
    # The last scores: an effect's sample, in one array of float64, where a deque would
    # hold a float object for each, which every garbage collection visits.
    recent: Window = dataclasses.field(default_factory=lambda: Window(OUTPUT_EFFECT_MAX, 1))
    # The episode's baseline, sorted, and its slow variation; None between episodes.
    baseline: Any = None
    slow: Any = None
    # The input count at which the episode's latest change began.
    change_at: int = 0
    # Event time (seconds) of the last look at an episode's change: its alarm, or a
    # measurement against its baseline.
    looked_at: float = -math.inf

    def feed(self, value: float) -> ScoreRead | None:
        """Feed one score to the detector; what the detector says after it (None for a
        score that is not finite, which it ignores). Reads nothing of the episode
        (``baseline``, ``change_at``), which a restore of the health policy moves: a
        batch's scores are fed before its policy runs, and judged in turn with it."""
        detector = self.detector
        detector.update(value)
        number = float(value)
        if not math.isfinite(number):
            return None
        if detector.n_reference == 0:
            return ScoreRead(number, ready=False)
        if detector.drift_detected:
            return ScoreRead(
                number,
                ready=True,
                statistic=detector.statistic,
                alarm=True,
                cause=detector.cause or "",
                change_lag=detector.change_lag,
                judged=detector.judged_against,
            )
        return ScoreRead(number, ready=True, statistic=detector.statistic)

    def feed_many(self, values: Sequence[float], at: Sequence[int]) -> ScoreReads:
        """``feed`` on each of ``values`` in turn, the detector a stretch at a time where
        ``judge`` can read no more than the scores themselves; the reads by each value's
        position ``at``.

        Outside an episode (no baseline), ``judge`` reads a score's statistic only for a
        report (every ``OUTPUT_REPORT_EVERY`` inputs) or an alarm: a stretch up to the
        next report goes through ``ResidualCUSUM.update_many`` and its other reads carry
        a NaN statistic. While the first reference fills (``warm_up`` finite scores, as
        many as ``judge`` counts), a stretch ends before the score that completes it. A
        stretch that alarmed, or whose reference was complete sooner, goes again value by
        value from a copy of the detector taken before it, and so does the rest of the
        batch, which ``judge`` may then read in an episode.
        """
        reads = ScoreReads()
        if len(values) <= SMALL_BATCH:
            # Too few for a stretch: no arrays.
            for position, value in zip(at, values, strict=True):
                read = self.feed(value)
                if read is not None:
                    reads.add(position, read, self.inputs + len(reads.positions) + 1)
            return reads
        numbers = [float(value) for value in values]
        finite = np.isfinite(numbers)
        # Inputs ``judge`` will have counted after each value.
        counted = self.inputs + np.cumsum(finite)
        reports = np.flatnonzero(finite & (counted % OUTPUT_REPORT_EVERY == 0)).tolist()
        stretches = self.baseline is None
        k = 0
        while k < len(numbers):
            stop = next((r + 1 for r in reports if r >= k), len(numbers))
            detector = self.detector
            ready = detector.n_reference > 0
            if not ready:
                stop = min(stop, int(np.searchsorted(counted, detector.warm_up)))
            if not stretches or stop - k <= SMALL_BATCH:
                read = self.feed(numbers[k])
                if read is not None:
                    reads.add(at[k], read, int(counted[k]))
                k += 1
                continue
            before = copy.copy(detector)
            detector.update_many(numbers[k:stop])
            if detector.detections or (detector.n_reference > 0) != ready:
                self.detector = before
                stretches = False
                continue
            # The stretch's reads: before the reference, ``feed``'s; after it, the
            # statistic unread but at a report.
            fine = finite[k:stop].tolist()
            reads.positions.extend(itertools.compress(at[k:stop], fine))
            reads.values.extend(itertools.compress(numbers[k:stop], fine))
            reads.ready.extend(itertools.repeat(ready, len(reads.values) - len(reads.ready)))
            if ready and stop - 1 in reports:
                last = ScoreRead(numbers[stop - 1], ready=True, statistic=detector.statistic)
                reads.whole[at[stop - 1]] = last
                reads.notable.append(at[stop - 1])
            k = stop
        return reads

    def count(self, values: Sequence[float]) -> None:
        """``judge`` on finite scores whose reads it turns into no evidence (before the
        reference, or outside an episode neither an alarm nor a report): each only
        counts and joins the recent scores."""
        if values:
            self.inputs += len(values)
            self.recent.push_many(np.array(values)[:, np.newaxis])

    def judge(
        self, name: str, read: ScoreRead, at: float, follow_up_after: float = math.inf
    ) -> Evidence | None:
        """The evidence of a score ``feed`` read, at its turn among the batch's records:
        on an alarm, while a change lasts (every ``OUTPUT_FOLLOW_UP`` scores, and at the
        first score ``follow_up_after`` seconds after the last look), and every
        ``OUTPUT_REPORT_EVERY`` scores after the warm-up."""
        number, ready, statistic, alarm, cause, change_lag, judged = read
        self.inputs += 1
        self.recent.append(number)
        if not ready:
            return None
        details: dict[str, float | int | str] = {"statistic": statistic}
        if alarm:
            self.alarms += 1
            if self.baseline is None:
                self.baseline, self.slow = np.sort(judged), slow_variance(judged)
            self.change_at = self.inputs - 1 - change_lag
            self.looked_at = at
        elif (
            self.baseline is not None
            and (since := self.inputs - self.change_at) >= OUTPUT_EFFECT_MIN
            and (since % OUTPUT_FOLLOW_UP == 0 or at - self.looked_at >= follow_up_after)
        ):
            cause = "sustained"
            self.looked_at = at
        elif self.inputs % OUTPUT_REPORT_EVERY:
            return None
        else:
            details["alarms"] = self.alarms
            return Evidence(detector=name, feature=None, at=at, alarm=False, details=details)
        effect = self.effect()
        material = effect >= self.min_effect
        if cause == "sustained" and not material:
            if self.inputs - self.change_at >= OUTPUT_EFFECT_MAX:
                # The change, if any, stayed below the floor: the episode is over.
                self.baseline = self.slow = None
            return None
        details |= {"alarms": self.alarms, "effect": effect, "cause": cause}
        return Evidence(
            detector=name, feature=None, at=at, alarm=True, material=material, details=details
        )

    def effect(self) -> float:
        """The effect of the scores since the latest change (at least
        ``OUTPUT_EFFECT_MIN``, at most the last ``SCORE_EFFECT_MAX``) against the baseline."""
        size = min(max(self.inputs - self.change_at, OUTPUT_EFFECT_MIN), len(self.recent))
        sample = self.recent.ordered(0)[len(self.recent) - size :]
        return quantile_effect(self.baseline, self.slow, sample)


@dataclasses.dataclass(slots=True)
class OutputDetector:
    """The error rate's detector, its reference frozen after its warm-up.

    An alarm is material when its effect (``effect``) reaches ``min_effect``.
    """

    detector: BernoulliCUSUM
    min_effect: float = DEFAULT_MIN_EFFECT
    # The detector as its first warm-up ended; it replaces the detector after each alarm.
    frozen: BernoulliCUSUM | None = None
    inputs: int = 0
    alarms: int = 0
    # The last inputs: an alarm's effect sample.
    recent: Window = dataclasses.field(default_factory=lambda: Window(OUTPUT_EFFECT_MAX, 1))

    def update(self, name: str, value: float | bool, at: float) -> Evidence | None:
        """Feed one input; evidence on an alarm and every ``OUTPUT_REPORT_EVERY`` inputs."""
        detector = self.detector
        detector.update(value)
        number = float(value)
        if math.isfinite(number):
            self.recent.append(number)
        if self.frozen is None:
            if not math.isnan(detector.in_control_rate):
                self.frozen = copy.deepcopy(detector)
            return None
        self.inputs += 1
        alarm = detector.drift_detected
        if alarm:
            self.alarms += 1
            self.detector = copy.deepcopy(self.frozen)
        elif self.inputs % OUTPUT_REPORT_EVERY:
            return None
        details: dict[str, float | int | str] = {
            "statistic": detector.statistic,
            "alarms": self.alarms,
        }
        material = True
        if alarm:
            effect = self.effect()
            details["effect"] = effect
            material = effect >= self.min_effect
        return Evidence(
            detector=name, feature=None, at=at, alarm=alarm, material=material, details=details
        )

    def update_many(self, values: npt.NDArray[np.bool_]) -> int:
        """Feed ``values`` as ``update`` one by one, up to the first that gives evidence
        (an alarm, a report); how many it fed (all of them: none gives evidence). That
        one is left to ``update``, which gives its evidence."""
        detector = self.detector
        fed = 0
        if self.frozen is None and len(values):
            # The warm-up takes its inputs; the reference is frozen after the one that
            # completes it (the first, for a detector given its rate).
            fed = min(len(values), max(detector.warm_up_left, 1))
            detector.update_many(values[:fed])
            if not math.isnan(detector.in_control_rate):
                self.frozen = copy.deepcopy(detector)
        if self.frozen is not None and fed < len(values):
            # Up to the input before the next report, and before an alarm if one comes.
            take = min(
                len(values) - fed, OUTPUT_REPORT_EVERY - 1 - self.inputs % OUTPUT_REPORT_EVERY
            )
            before, alarms = copy.copy(detector), detector.n_detections
            detector.update_many(values[fed : fed + take])
            if detector.n_detections != alarms:
                take = int(detector.detections[0])
                detector = self.detector = before
                detector.update_many(values[fed : fed + take])
            self.inputs += take
            fed += take
        if fed:
            self.recent.push_many(values[:fed, np.newaxis].astype(np.float64))
        return fed

    def effect(self) -> float:
        """The effect of the alarm just raised, against the frozen reference: the rise of
        the error share since the change less twice its standard error."""
        recent = self.recent.ordered(0)
        # Run from the oldest input kept, the CUSUM finds a lasting change's start across
        # the alarms (each restarts the detector) it has raised since.
        frozen = self.frozen
        assert frozen is not None
        start = frozen.change_start(recent)
        sample = recent[max(min(start, recent.size - OUTPUT_EFFECT_MIN), 0) :]
        rate = frozen.in_control_rate
        noise = 2.0 * math.sqrt(rate * (1.0 - rate) / sample.size)
        return max(float(sample.mean()) - rate - noise, 0.0)


@dataclasses.dataclass(slots=True)
class OutputWatch:
    """The model's score and error-rate detectors (settings ``[detectors.output]``)."""

    score: ScoreDetector
    error_rate: OutputDetector
    restore_grace: float
    restored_at: float = -math.inf

    def observe_error_rate(
        self, prediction: Prediction, policy: HealthPolicy, at: float
    ) -> Evidence | None:
        """Evidence of the error rate from one ``live`` or ``fallback`` prediction, if any."""
        # A fallback the watch ordered, or one still served just after its restore, is
        # not the model failing.
        if policy.fallback_since is None and at - self.restored_at >= self.restore_grace:
            return self.error_rate.update(ERROR_RATE_DETECTOR, prediction.role == "fallback", at)
        return None


@dataclasses.dataclass(slots=True)
class ModelWatch:
    """Everything failsoft remembers about one model; pickled into the watch table."""

    model_id: str
    drift: DriftTests
    policy: HealthPolicy
    future: FutureValues = dataclasses.field(default_factory=FutureValues)
    escalated: bool = False
    last_seq: int = 0
    output: OutputWatch | None = None
    # Detector -> features whose last window alarmed; drives one alert per detector.
    alarming: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    # Detector -> those of its alarming features whose last alarm was below the floor.
    immaterial: dict[str, set[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one prediction (at event time ``at``, seconds) caused; false when nothing."""

    at: float
    evidence: tuple[Evidence, ...] = ()
    transitions: tuple[Transition, ...] = ()
    actions: tuple[ControlAction, ...] = ()
    escalation_due: bool = False

    def __bool__(self) -> bool:
        return bool(self.evidence or self.transitions or self.actions or self.escalation_due)


def new_watch(model: Model) -> ModelWatch:
    """A fresh watch for ``model``.

    Raises
    ------
    PortfolioError
        When the model's drift or health settings do not fit the detectors.
    """
    drift_settings = model.detector_settings("drift")
    # A spec per kind of feature, built at its first feature (whose name a bad method's
    # error gives).
    specs: dict[str, DriftSpec] = {}
    features: dict[str, Any] = {}
    for feature in model.features:
        if feature.kind not in specs:
            specs[feature.kind] = _drift_spec(model, feature, drift_settings)
        features[feature.name] = Filling(specs[feature.kind])
    drift = DriftTests(tuple(specs.values()), features)
    health: dict[str, Any] = model.detector_settings("health")
    try:
        policy = HealthPolicy(**health, escalate_after=model.escalation_limit.total_seconds())
    except (TypeError, ValueError) as error:
        raise PortfolioError(model.model_id, "detectors.health", str(error)) from None
    skew_tolerance = model.detector_settings("leaks").get("skew_tolerance", 0.0)
    try:
        future = FutureValues(skew_tolerance=skew_tolerance)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise PortfolioError(model.model_id, "detectors.leaks.skew_tolerance", str(error)) from None
    return ModelWatch(
        model_id=model.model_id,
        drift=drift,
        policy=policy,
        future=future,
        output=_output_watch(model, drift),
    )


@dataclasses.dataclass(frozen=True)
class Found:
    """What the detectors that do not read the health policy found in a batch of
    predictions, by position in it: values from the future (first in a prediction's
    evidence), the score detector's reads (judged next, as the episode then stands), and
    drift windows (after the error rate's evidence)."""

    before: Mapping[int, list[Evidence]]
    after: Mapping[int, list[Evidence]]
    scores: ScoreReads = dataclasses.field(default_factory=ScoreReads)
    # Each prediction's event time (seconds) and role.
    at: Sequence[float] = ()
    roles: Sequence[str] = ()

    def share(self, n: int) -> Share:
        """The ``n``-th prediction's share, for ``observe``."""
        return self.before.get(n, ()), self.scores.get(n), self.after.get(n, ())

    @functools.cached_property
    def columns(
        self,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Per prediction: its event time, whether its role feeds the error rate, and
        whether it is an error (a ``fallback`` prediction), for ``observe_quiet``."""
        roles = np.array(self.roles)
        served = np.zeros(len(roles), dtype=bool)
        for role in DRIFT_ROLES:
            # Two comparisons cost a tenth of ``np.isin`` on strings.
            served |= roles == role
        return np.array(self.at, np.float64), served, roles == "fallback"

    @functools.cached_property
    def timeless(self) -> npt.NDArray[np.intp]:
        """The positions of the predictions whose event time is no number, in order:
        once a batch, not once a run (a score episode ends a run at each score)."""
        return np.flatnonzero(~np.isfinite(self.columns[0]))


# A prediction's share of a batch's ``Found``: evidence before the score, the score's read
# (None: no score) and evidence after the error rate.
Share = tuple[Sequence[Evidence], ScoreRead | None, Sequence[Evidence]]


def detect(
    watch: ModelWatch,
    predictions: Sequence[Prediction],
    every: tuple[str, ...] | None = None,
) -> Found:
    """Feed a batch of the model's predictions to its values-from-the-future check, score
    detector and drift tests, each a batch at a time; ``observe`` then takes each
    prediction's share in turn. The same evidence, in the same order, as ``observe`` one
    prediction at a time: none of these detectors reads the policy or another record (the
    score's evidence, which reads the episode a restore moves, is judged in ``observe``).
    ``every``: the features every prediction serves, in the order each lists them, when
    the caller knows (``Batch.served_features``). Mutates ``watch``.
    """
    before: dict[int, list[Evidence]] = collections.defaultdict(list)
    after: dict[int, list[Evidence]] = collections.defaultdict(list)
    if not predictions:
        # A batch of labels and writes: no detector here reads them (nor an empty batch).
        return Found(before, after)
    ats = [p.predicted_at / 1000.0 for p in predictions]
    roles = list(map(get_role, predictions))
    _future_values_many(watch.future, predictions, ats, before, every)
    served = [i for i, role in enumerate(roles) if role in DRIFT_ROLES]
    scores = ScoreReads()
    if watch.output is not None:
        # The scores of live predictions; the detector reads nothing else, so a batch's
        # scores go before its policy.
        scored = [
            i for i in served if roles[i] == "live" and isinstance(predictions[i].output, Score)
        ]
        values = [predictions[i].output.score for i in scored]  # type: ignore[union-attr]
        scores = watch.output.score.feed_many(values, scored)
    drift = watch.drift
    if served and drift.features:
        names = list(drift.features)
        found: Iterable[list[DriftWindow]]
        if len(served) == 1:
            # One value a feature (most batches of one record): ``update`` reads the test's
            # last window without the arrays of a batch's windows, nor a column each.
            carried = predictions[served[0]].features
            found = (
                drift.update(name, None if (seen := carried.get(name)) is None else seen.value)
                for name in names
            )
        else:
            columns = _feature_columns(names, [predictions[i].features for i in served])
            found = map(drift.update_many, names, columns)
        for name, windows in zip(names, found, strict=True):
            if windows:
                spec = drift.spec(name)
                for result in windows:
                    i = served[result[0]]
                    after[i].append(_window_evidence(spec, name, ats[i], result))
    return Found(before, after, scores, ats, roles)


def observe_quiet(watch: ModelWatch, found: Found, start: int, stop: int) -> int:
    """Feed the output detectors the batch's predictions from ``start`` while they give
    no evidence, at most up to ``stop``; the first that gives some (``stop``: none),
    which ``prediction_evidence`` then takes. For predictions without evidence of their
    own in ``found`` while the health policy takes nothing: what the error rate and the
    score's episode read of it stays as it is at ``start``. Mutates ``watch``."""
    output = watch.output
    if output is None:
        return stop
    scores, score = found.scores, output.score
    first = bisect.bisect_left(scores.positions, start)
    if score.baseline is None:
        # Outside an episode, only an alarm and a report are evidence.
        notable = scores.notable
        k = bisect.bisect_left(notable, start)
        if k < len(notable):
            stop = min(stop, notable[k])
    elif first < len(scores.positions):
        stop = min(stop, scores.positions[first])
    if stop > start and watch.policy.fallback_since is None:
        at, served, failed = found.columns
        # ``observe_error_rate``'s choice for each.
        counted = served[start:stop] & (at[start:stop] - output.restored_at >= output.restore_grace)
        places = np.flatnonzero(counted)
        fed = output.error_rate.update_many(failed[start:stop][places])
        if fed < len(places):
            stop = start + int(places[fed])
    score.count(scores.values[first : bisect.bisect_left(scores.positions, stop, first)])
    return stop


def _feature_columns(
    names: Sequence[str], carried: Sequence[Mapping[str, FeatureSeen]]
) -> list[list[Any]]:
    """Per name, the value each of ``carried`` holds for it (None: not carried)."""
    if len(names) > 1:
        # Nearly always every prediction carries every feature: the rows' values in the
        # names' order, transposed, without a lookup per value.
        take = operator.itemgetter(*names)
        try:
            rows = [take(features) for features in carried]
        except KeyError:
            pass
        else:
            return [[seen.value for seen in column] for column in zip(*rows, strict=True)]
    return [
        [None if (seen := features.get(name)) is None else seen.value for features in carried]
        for name in names
    ]


def _future_values_many(
    detector: FutureValues,
    predictions: Sequence[Prediction],
    ats: Sequence[float],
    before: dict[int, list[Evidence]],
    every: tuple[str, ...] | None,
) -> None:
    live = [i for i, prediction in enumerate(predictions) if prediction.role == "live"]
    served = [predictions[i] for i in live]
    carried = list(map(get_features, served))
    names = every if every is not None and carried else tuple(carried[0]) if carried else ()
    counted = detector.future_values
    if len(live) * len(names) > SMALL_BATCH and (
        every is not None or all(map(names.__eq__, map(tuple, carried)))
    ):
        # Nearly always every prediction serves the same features in the same order: one
        # grid of timestamps, without a list per row of the grid (nor a Python step per
        # value: the maps iterate in C).
        width = len(names)
        seen = itertools.chain.from_iterable(map(dict.values, carried))
        written = np.fromiter(map(get_written_at, seen), np.int64, len(live) * width)
        detector.update_grid(
            list(map(get_entity_id, served)),
            names,
            written.reshape(len(live), width),
            np.fromiter(map(get_predicted_at, served), np.int64, len(live)),
            lambda i, j: carried[i][names[j]].value,
        )

        def located(row: int) -> tuple[int, str]:
            return live[row // width], names[row % width]
    else:
        # One row per feature value served, predictions in order.
        features = [name for row in carried for name in row]
        if not features:
            return
        rows = [i for i, row in zip(live, carried, strict=True) for _ in row]
        entities = [predictions[i].entity_id for i in rows]
        made_at = [predictions[i].predicted_at for i in rows]
        values = [s.value for row in carried for s in row.values()]
        written_at = [s.written_at for row in carried for s in row.values()]
        if len(rows) > SMALL_BATCH:
            detector.update_many(
                entities,
                features,
                values,
                np.array(written_at, np.int64),
                np.array(made_at, np.int64),
            )
        else:
            # A small batch goes through ``update`` row by row (``detectors._batch``), which
            # checks plain ints faster than numpy's.
            detector.update_many(entities, features, values, written_at, made_at)

        def located(row: int) -> tuple[int, str]:
            return rows[row], features[row]

    if detector.future_values == counted:
        return  # none from the future, as nearly always
    for n, row in enumerate(detector.future_indices.tolist(), start=1):
        i, name = located(row)
        made_ms = predictions[i].predicted_at
        before[i].append(
            Evidence(
                detector="future_values",
                feature=name,
                at=ats[i],
                alarm=True,
                critical=True,
                details={
                    "skew_ms": predictions[i].features[name].written_at - made_ms,
                    "future_values": counted + n,
                },
            )
        )


def observe(watch: ModelWatch, prediction: Prediction, found: Share | None = None) -> Observation:
    """Feed one prediction of the watched model; returns what it caused.

    ``found`` is this prediction's share of ``detect``'s (``Found.share``) when its batch
    went through ``detect`` first; without it, the prediction goes through every detector
    here. Mutates ``watch``.
    """
    at = prediction.predicted_at / 1000.0
    if found is None:
        found = detect(watch, [prediction]).share(0)
    evidence = prediction_evidence(watch, prediction, found, at)
    changes = observe_evidence(watch, evidence, at)
    return dataclasses.replace(changes, evidence=tuple(evidence))


def prediction_evidence(
    watch: ModelWatch, prediction: Prediction, found: Share, at: float
) -> list[Evidence]:
    """The evidence of one prediction at event time ``at`` (seconds), in the order the
    health policy takes it: its share of ``detect`` with the score judged and the error
    rate fed in turn. ``observe`` then feeds it to the policy. Mutates ``watch``."""
    before, score, after = found
    evidence = list(before)
    output = watch.output
    if output is None:
        evidence.extend(after)
        return evidence
    if score is not None:
        follow_up_after = OUTPUT_FOLLOW_UP_SHARE * watch.policy.clear_after
        judged = output.score.judge(SCORE_DETECTOR, score, at, follow_up_after)
        if judged is not None:
            evidence.append(judged)
    if prediction.role in DRIFT_ROLES:
        error = output.observe_error_rate(prediction, watch.policy, at)
        if error is not None:
            evidence.append(error)
    evidence.extend(after)
    return evidence


def observe_evidence(watch: ModelWatch, evidence: Sequence[Evidence], at: float) -> Observation:
    """Feed evidence found elsewhere (label join, leak watch) to the health policy; without
    evidence, a heartbeat at ``at`` (seconds). Mutates ``watch``.

    The observation carries the transitions, actions and escalation, not the evidence:
    its points and alerts are the finder's, so ``consequences`` does not write them again.
    """
    transitions: list[Transition] = []
    actions: list[ControlAction] = []
    escalation_due = False
    policy = watch.policy
    records: list[Evidence | Heartbeat] = [*evidence] or [Heartbeat(at=at)]
    for record in records:
        before = policy.transition
        policy.update(record)
        # The transition is the last one made; action and escalation are edges of this update.
        if policy.transition is not before and policy.transition is not None:
            transitions.append(policy.transition)
        if policy.action is not None:
            actions.append(policy.action)
            if policy.action.action == "restore" and watch.output is not None:
                watch.output.restored_at = policy.action.at
                # The scores the model serves from now on say whether it is still changed.
                watch.output.score.change_at = watch.output.score.inputs
        escalation_due = escalation_due or policy.escalation_due
    return Observation(at, (), tuple(transitions), tuple(actions), escalation_due)


def _window_evidence(
    spec: DriftSpec,
    feature: str,
    at: float,
    result: DriftWindow,
) -> Evidence:
    _, statistic, p_value, drift, effect = result
    # Threshold tests (PSI) have no p-value: NaN.
    return Evidence(
        detector=f"drift_{spec.method}",
        feature=feature,
        at=at,
        alarm=bool(drift),
        p_value=None if p_value != p_value else p_value,
        material=effect >= spec.min_effect,
        windowed=True,
        details={"statistic": float(statistic), "effect": float(effect)},
    )


def _drift_spec(model: Model, feature: Feature, settings: dict[str, Any]) -> DriftSpec:
    key = "detectors.drift"
    method = str(settings.get("method", DEFAULT_DRIFT_METHOD))
    methods = DRIFT_METHODS[feature.kind]
    if method not in methods:
        raise PortfolioError(
            model.model_id,
            f"{key}.method",
            f"{method!r} does not test {feature.kind} feature {feature.name!r}; "
            f"valid: {', '.join(methods)}",
        )
    test_settings = {k: v for k, v in settings.items() if k not in _WATCH_KEYS}
    if "window_size" not in test_settings:
        per_day = model.detector_settings("output").get("predictions_per_day")
        test_settings["window_size"] = drift_window_size(per_day)
    test_class = methods[method]
    try:
        # Built once here so that a bad setting stops the worker at start-up.
        probe = test_class(reference=None, **test_settings)
    except (TypeError, ValueError) as error:
        raise PortfolioError(model.model_id, key, str(error)) from None
    reference_size = settings.get("reference_size", probe.window_size)
    if (
        not isinstance(reference_size, int)
        or isinstance(reference_size, bool)
        or reference_size < 2
    ):
        raise PortfolioError(model.model_id, f"{key}.reference_size", "expected an integer >= 2")
    min_effect = settings.get("min_effect", DEFAULT_MIN_EFFECT)
    if not _is_effect(min_effect):
        raise PortfolioError(model.model_id, f"{key}.min_effect", "expected a number in [0, 1]")
    if feature.kind == "numeric":
        # The test reads its windows' effects against the noise of those below the floor.
        test_settings["min_effect"] = min_effect
    return DriftSpec(
        method, test_class, test_settings, reference_size, kind=feature.kind, min_effect=min_effect
    )


def _is_effect(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _output_watch(model: Model, drift: DriftTests) -> OutputWatch | None:
    key = "detectors.output"
    settings = model.detector_settings("output")
    valid = set(_OUTPUT_DEFAULTS) | {
        prefix + name for prefix, names in _OUTPUT_ARGUMENTS.items() for name in names
    }
    for name, value in settings.items():
        if name not in valid:
            raise PortfolioError(
                model.model_id, f"{key}.{name}", f"unknown key; valid: {', '.join(sorted(valid))}"
            )
        expected_bool = name == "enabled"
        if isinstance(value, bool) != expected_bool or not isinstance(value, int | float):
            expected = "true or false" if expected_bool else "a number"
            raise PortfolioError(model.model_id, f"{key}.{name}", f"expected {expected}")
    own: dict[str, Any] = {**_OUTPUT_DEFAULTS, **settings}
    if not own["enabled"]:
        return None
    per_day = own["predictions_per_day"]
    tests_per_day: dict[str, float] = {SCORE_DETECTOR: per_day, ERROR_RATE_DETECTOR: per_day}
    if features := drift.features:
        # Drift's count does not change the output levels (equal shares), only its share.
        specs = [drift.spec(name) for name in features]
        # A test built once per spec, which features of a kind share, to read its window
        # (by identity: a spec's settings are a dict, which does not hash).
        distinct = {id(spec): spec for spec in specs}
        sizes = {
            key: spec.test_class(reference=None, **spec.settings).window_size
            for key, spec in distinct.items()
        }
        windows = sum(sizes[id(spec)] for spec in specs) / len(specs)
        tests_per_day["drift"] = len(features) * per_day / windows
    try:
        budget = AlarmBudget(float(own["false_fallbacks_per_model_day"]), tests_per_day)
    except ValueError as error:
        name = (
            "predictions_per_day"
            if "tests_per_day" in str(error)
            else "false_fallbacks_per_model_day"
        )
        raise PortfolioError(model.model_id, f"{key}.{name}", str(error)) from None
    for name in ("score_min_effect", "error_min_effect"):
        if not _is_effect(own[name]):
            raise PortfolioError(model.model_id, f"{key}.{name}", "expected a number in [0, 1]")
    score_arguments = _arguments(settings, "score_")
    score_arguments["alpha"] = budget.alpha_for(SCORE_DETECTOR)
    # The detector's own floor gates its slow check: a slow move below the watch's floor
    # is the harmless drift its renewing reference absorbs.
    score_arguments["min_effect"] = float(own["score_min_effect"])
    error_arguments = _arguments(settings, "error_")
    if model.slo is not None and model.slo.error_rate is not None:
        error_arguments.setdefault("reference_rate", model.slo.error_rate)
    error_arguments["threshold"] = math.log(1.0 / budget.alpha_for(ERROR_RATE_DETECTOR))
    score = _output_detector(model, "score_", ResidualCUSUM, score_arguments)
    error_rate = _output_detector(model, "error_", BernoulliCUSUM, error_arguments)
    restore_grace = float(own["restore_grace"])
    if not restore_grace >= 0.0:
        raise PortfolioError(model.model_id, f"{key}.restore_grace", "expected seconds >= 0")
    return OutputWatch(
        ScoreDetector(score, float(own["score_min_effect"])),
        OutputDetector(error_rate, float(own["error_min_effect"])),
        restore_grace,
    )


def _arguments(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    # The floors (score_min_effect, error_min_effect) are the watch's, not the detectors'.
    return {
        name[len(prefix) :]: value
        for name, value in settings.items()
        if name.startswith(prefix) and name not in _OUTPUT_DEFAULTS
    }


def _output_detector(
    model: Model, prefix: str, detector_class: type[Any], arguments: dict[str, Any]
) -> Any:
    try:
        return detector_class(**arguments)
    except (TypeError, ValueError) as error:
        # The detectors' messages start with the argument's name.
        name = str(error).split(" ", 1)[0].split("=", 1)[0]
        key = (
            f"detectors.output.{prefix}{name}"
            if name in _OUTPUT_ARGUMENTS[prefix]
            else "detectors.output"
        )
        raise PortfolioError(model.model_id, key, str(error)) from None


@dataclasses.dataclass(frozen=True)
class Effects:
    """What the monitor must do about one observation: points, alerts and commands to sign.

    ``withheld`` lists the actions not sent as commands: the model is ``alert_only``.
    """

    points: tuple[Point, ...] = ()
    alerts: tuple[Alert, ...] = ()
    commands: tuple[CommandToSign, ...] = ()
    withheld: tuple[ControlAction, ...] = ()


def transition_alert(model: Model, transition: Transition) -> Alert:
    """The health alert a transition opens (or, to healthy, closes)."""
    detector = transition.detector or "health"
    state = transition.to_state.value
    return health_alert(model.model_id, model.owner, state, detector, transition.reason)


def standing_alert(model: Model, watch: ModelWatch) -> Alert | None:
    """The health alert of the model's state now, unless it is healthy: what its last
    transition sent. A worker that takes the model over sends it again, since the worker
    before may have died with it still in its sink's memory after the command had left;
    Alerta counts a repeat as a duplicate of the open alert.

    >>> from detectors.health.evidence import Evidence
    >>> from streams.portfolio import parse_portfolio
    >>> lines = ['[models.ranker]', 'owner = "search"', 'tier = "cpu"', 'label_delay = "1d"']
    >>> lines.append('fallback = "popular"')
    >>> model = parse_portfolio("\\n".join(lines)).models["ranker"]
    >>> watch = new_watch(model)
    >>> standing_alert(model, watch) is None
    True
    >>> broken = Evidence(detector="score", at=100.0, alarm=True, critical=True)
    >>> found = observe_evidence(watch, [broken], 100.0)
    >>> watch.policy.state.value, standing_alert(model, watch).event
    ('fallback', 'ModelFallback')
    """
    transition = watch.policy.transition
    if transition is None or watch.policy.state.value == "healthy":
        return None
    return transition_alert(model, transition)


def consequences(model: Model, watch: ModelWatch, observation: Observation) -> Effects:
    """The effects of ``observation``; updates the watch's alert and command bookkeeping.

    A command's ``issued_at`` is the transition's event time and its seq follows the
    watch's ``last_seq``; both live in the monitor's state with the policy. A watch
    restored after a crash has either made the transition already (and does not make it
    again) or not (and makes the very same command again: same seq, same signature, which
    serving nodes drop as a replay).
    """
    points: list[Point] = []
    alerts: list[Alert] = []
    commands: list[CommandToSign] = []
    withheld: list[ControlAction] = []
    model_id, owner = model.model_id, model.owner
    for evidence in observation.evidence:
        tags = {"model": model_id, "detector": evidence.detector}
        # Output evidence (score, error_rate) is about no feature.
        if evidence.feature is not None:
            tags["feature"] = evidence.feature
        fields: dict[str, float | int | str | bool]
        if evidence.critical:
            fields = {"flagged": 1, **evidence.details}
            points.append(point("leak", tags, fields, int(evidence.at * 1000)))
        else:
            fields = {
                "statistic": float(evidence.details.get("statistic", float("nan"))),
                "drift": int(evidence.alarm),
            }
            if evidence.p_value is not None:
                fields["p_value"] = evidence.p_value
            # Below the floor, an alarm is recorded here and moves no model.
            if "effect" in evidence.details:
                fields["effect"] = float(evidence.details["effect"])
                fields["material"] = int(evidence.alarm and evidence.material)
            points.append(point("drift", tags, fields, int(evidence.at * 1000)))
        alert = _detector_alert_change(model, watch, evidence)
        if alert is not None:
            alerts.append(alert)
    for transition in observation.transitions:
        state = transition.to_state.value
        detector = transition.detector or "health"
        tags = {"model": model_id, "detector": detector}
        fields = {"state": state, "state_code": HEALTH_STATE_CODES[state]}
        points.append(point("health", tags, fields, int(transition.at * 1000)))
        alerts.append(transition_alert(model, transition))
    for action in observation.actions:
        if action.action == "restore":
            alerts.extend(_close_detector_alerts(model, watch))
        if action.action == "restore" and watch.escalated:
            watch.escalated = False
            alerts.append(escalation_cleared(model_id, owner))
        if not model.fallback.automatic:
            withheld.append(action)
            continue
        command = CommandToSign.after(
            watch.last_seq,
            model_id=model_id,
            action=action.action,
            reason=action.reason,
            detector=action.detector or "health",
            issued_at=int(action.at * 1000),
        )
        watch.last_seq = command.seq
        commands.append(command)
    if observation.escalation_due:
        watch.escalated = True
        since = watch.policy.fallback_since
        on_fallback_for = timedelta(
            seconds=observation.at - (observation.at if since is None else since)
        )
        alerts.append(escalation_alert(model_id, owner, on_fallback_for))
    return Effects(tuple(points), tuple(alerts), tuple(commands), tuple(withheld))


def _detector_alert_change(model: Model, watch: ModelWatch, evidence: Evidence) -> Alert | None:
    """An alert when the set of alarming features of ``evidence.detector`` changes, or
    whether any of them is material: ``informational`` while all are below the floor."""
    feature = evidence.feature or ""
    before = watch.alarming.get(evidence.detector, set())
    was_below = watch.immaterial.get(evidence.detector, set())
    after = before | {feature} if evidence.alarm else before - {feature}
    below = was_below - {feature}
    if evidence.alarm and not evidence.material:
        below = below | {feature}
    if after == before and (below == after) == (was_below == before):
        return None
    watch.alarming[evidence.detector] = after
    watch.immaterial[evidence.detector] = below
    # Output detectors (score, error_rate) are about the model, not a feature.
    features = ", ".join(sorted(f for f in after if f))
    if after:
        text = f"{model.model_id}: {evidence.detector} alarms" + (
            f" on {features}" if features else ""
        )
        severity = "critical" if evidence.critical else "warning"
        if below == after and not evidence.critical:
            severity = "informational"
            text += ", below its effect-size floor"
        return detector_alert(
            model.model_id, model.owner, evidence.detector, severity, text, features or None
        )
    text = f"{model.model_id}: {evidence.detector} is quiet again"
    return detector_alert(model.model_id, model.owner, evidence.detector, "normal", text)


def describe(model: Model, watch: ModelWatch | None) -> dict[str, Any]:
    """A model's state for ``/failsoft/models``: state, since when, why, last evidence.

    ``watch`` is None when this worker holds no watch for the model (its partition is on
    another worker, or no prediction arrived yet); the state is then ``"unknown"``.
    """
    entry: dict[str, Any] = {
        "model_id": model.model_id,
        "owner": model.owner,
        "fallback": model.fallback.strategy,
        "automatic": model.fallback.automatic,
    }
    if watch is None:
        return entry | {"state": "unknown"}
    policy = watch.policy
    transition = policy.transition
    evidence = policy.last_evidence
    return entry | {
        "state": policy.state.value,
        "since": _iso(policy.since),
        "why": None if transition is None else transition.reason,
        "detector": None if transition is None else transition.detector,
        "fallback_since": _iso(policy.fallback_since),
        "escalated": watch.escalated,
        "last_seq": watch.last_seq,
        # Detectors alarming now, with their features (none for the model's outputs).
        "alarming": {
            detector: sorted(f for f in features if f)
            for detector, features in watch.alarming.items()
            if features
        },
        "last_evidence": None
        if evidence is None
        else {
            "detector": evidence.detector,
            "feature": evidence.feature,
            "at": _iso(evidence.at),
            "alarm": evidence.alarm,
            "p_value": evidence.p_value,
            "details": dict(evidence.details),
        },
    }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")


def _close_detector_alerts(model: Model, watch: ModelWatch) -> list[Alert]:
    """On restore: detectors that never said "quiet" (critical ones only speak when they
    alarm) are quiet by now; their alerts close."""
    alerts = []
    for detector, features in sorted(watch.alarming.items()):
        if features:
            text = f"{model.model_id}: {detector} is quiet again; {model.model_id} is restored"
            alerts.append(detector_alert(model.model_id, model.owner, detector, "normal", text))
            watch.alarming[detector] = set()
            watch.immaterial[detector] = set()
    return alerts
