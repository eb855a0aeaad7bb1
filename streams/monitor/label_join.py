"""One model's label join: predictions waiting for late ground truth, and what the pairs say.

Pure code, no Faust: each model's ``streams.monitor.Monitor`` holds one ``LabelJoin`` and
feeds it a batch's predictions and ground truth records through a ``JoinBatch``
(``observe_prediction`` and ``observe_label`` take one record). What comes back for each
record (a ``JoinResult``) holds the ``Evidence`` for the model's health policy and, on a
fixed event-time cadence, the InfluxDB points of measurement ``performance``. The records
are joined one by one, a batch's common ones in a compiled loop (``observe_run``,
``HeldTable.join_run``); the detectors are fed a stream and a batch at a time
(``update_many``), which gives exactly what they give one record at a time.

Joining
-------
A prediction is held until its label arrives or its time to live runs out. Its key is
``(role, request_id)``: a request has one prediction per role (the live or fallback answer,
and the shadow's), and one label scores all of them. A label matches:

1. by ``request_id`` when it names one: every held prediction of the request, one per
   role. Only those: a label is about its request, and while that request's prediction is
   not held (not read yet, expired, left out), any other prediction of the entity is
   someone else's answer, paired with this label's outcome. (A worker that read the
   labels ahead of the predictions once joined them so, by entity, with the entity's
   earlier unlabelled predictions: a healthy model's accuracy fell to chance and 14 of 20
   models failed soft.) The label waits for its prediction (``streams.monitor.label_wait``);
2. by ``entity_id`` when it names no request: for each role, the latest held prediction of
   that entity made at or before ``label_at``, once the model's predictions have reached
   ``label_at`` (before that, the latest so far may be an earlier request's: the label
   waits). Earlier predictions of the entity stay held (a later label may be theirs) and
   expire if none comes;
3. else it is counted: unsampled when its prediction is one the sample of held predictions
   leaves out (below), else unmatched.

A matched prediction is no longer held: a second label for it is unmatched. Ids are
compared by their 64-bit hashes, which the held predictions keep instead of the strings
(``streams.monitor.held``).

Time is event time. The join's clock (``now_ms``) is the newest ``predicted_at`` or
``label_at`` seen. A prediction expires, and is counted, once the clock is more than the
model's ``label_ttl`` (``LABEL_TTL_FACTOR`` times its expected ``label_delay``) past its
``predicted_at``; a label moves the clock before it is matched, so a label later than the
TTL finds its prediction expired. Expiry goes in arrival order, so a prediction that
arrives out of order expires no earlier than those that arrived before it. At most
``max_held`` predictions are held, those of a hash sample of entities
(``streams.monitor.held``): a new one beyond that halves the sample, letting go of the held
predictions of the entities it leaves out (``unsampled``), or, as a last resort when one
entity fills the table, evicts the oldest (``evicted``), both counted apart from expiry. A
model that predicts faster than ``max_held`` per time to live so keeps joining the labels
of a fraction of its entities (``sampled`` in its points), and its detectors see fewer
labels, never none; a label whose prediction was left out is counted ``unsampled_labels``.
A prediction left out still feeds its stream's estimates, which need no label. A
prediction received twice (a redelivery) is held once and counted (only while it is held:
one left out cannot be told from a new one).

Performance
-----------
Each joined pair feeds the detectors of its stream, one per ``(role, model_version)``
(at most ``max_streams``, the least recently updated goes first, counted):

- ``Score`` outputs with ``task = "classification"`` (the default):
  ``ClassificationPerformance`` on ``(label, score)``, the label 0/1 or a bool,
  ``EstimatedAccuracy`` (``(None, score)`` per prediction, ``(label, score)`` per label),
  and ``CalibratedEstimate``, fed the same: accuracy, precision, recall, F1 and ROC AUC at
  the model's ``threshold``, estimated per ``window`` predictions from scores calibrated
  (isotonic, on binned counts) on the last ``calibration_size`` to twice as many labels,
  beside the same metrics measured on the last ``window`` labels;
- ``Score`` outputs with ``task = "regression"``: ``RegressionPerformance`` on
  ``(label, score)`` (setting ``error_cap``);
- ``ClassProbabilities``: ``EstimatedAccuracy`` over the classes in sorted order, the label
  naming the class (``True`` and ``1`` name ``"1"``, or ``"true"`` when that is the class);
  with exactly two classes also ``ClassificationPerformance`` and ``CalibratedEstimate``,
  the second class in sorted order being class 1;
- ``Ranking``: ``PrecisionAtK`` on ``(items, {label})``, the label the relevant item (only
  the first ``k`` items are held);
- always ``LabelDelay`` on ``label_at - predicted_at`` in seconds.

A pair whose label does not fit (a string for a score) is counted by the detector as
ignored, never raised.

Evidence. Only the ``live`` role speaks to the health policy: a drop of the live model is
what a fallback is for, while a shadow is judged by the shadow join and the fallback
strategy is what the fleet falls back to. A drop alarm of the metric gives
``Evidence(detector="performance_drop")``, one of ``EstimatedAccuracy`` gives
``Evidence(detector="estimated_accuracy")`` (``details["source"]`` says estimated, before
labels, or measured); ``at`` is the event time in seconds (the label's ``label_at``, or the
prediction's ``predicted_at`` for an estimate), ``alpha`` the level the alarm runs at. A
chunk whose calibrated estimate of accuracy is more than ``tolerance`` below the accuracy
measured on the calibration labels gives ``Evidence(detector="estimated_performance")``
(an effect size, no level), not material yet: the health policy records it and does not
act on it, because a chunk ends well after the change it saw did. Alarms of other roles
are counted in their points (``alarms``).

Levels. ``AlarmBudget(false_fallbacks_per_model_day, {"performance": labels_per_day,
"estimated_accuracy": predictions_per_day})`` with equal shares: ``PerformanceDrop``'s
level is per labelled prediction, so the metric's drop alarm gets
``alpha_for("performance") = budget / 2 / labels_per_day``. ``EstimatedAccuracy(alpha=a)``
runs its estimated alarm at ``a / 2`` per prediction and its measured one at ``a / 2`` per
label, at most ``a * predictions_per_day`` false alarms a day when labels are no more than
predictions, so ``a = alpha_for("estimated_accuracy") = budget / 2 /
predictions_per_day``.

Points
------
Measurement ``performance``, written for every stream when the clock has moved
``report_interval`` seconds past the last report (never per event), stamped with the
clock; tags ``model``, ``version``, ``role`` and ``detector`` (model-level points have no
version or role). Metrics not yet defined (NaN) are left out.

================== ===================================================================
detector           fields
================== ===================================================================
accuracy, log_loss ``value``, ``estimated`` (0), ``labels`` (labelled pairs so far),
auc, mae,          ``alarms`` (drop alarms so far)
precision_at_k
estimated_accuracy ``value``, ``estimated`` (1 before ``min_labels`` labels, else 0),
                   ``source`` (string), ``labels``, ``alarms``
calibrated         ``estimated_<m>`` and ``measured_<m>`` for ``m`` in accuracy,
                   precision, recall, f1, auc; ``reference_accuracy``,
                   ``calibration_gap``, ``chunks``, ``labels``, ``alarms``
label_delay        ``p50_s``, ``p90_s``, ``p99_s``, ``labels``
label_join         ``held``, ``labels``, ``joined``, ``unmatched``,
                   ``unsampled_labels``, ``expired``, ``evicted``, ``unsampled``,
                   ``duplicates``, ``evicted_streams`` (counts so far), ``sampled``
                   (the fraction of entities whose predictions are held)
================== ===================================================================

Settings (``[detectors.performance]`` of the portfolio, all optional): ``task``,
``window``, ``threshold``, ``error_cap``, ``k``, ``min_labels``, ``tolerance``,
``calibration_size`` (labels per generation of the calibration's binned counts: it is
fitted on the last ``calibration_size`` to twice as many labels, in 11.5 KB of the
monitor's state whatever the size),
``reference_size``, ``baseline`` (the healthy loss, else learnt), ``labels_per_day``,
``predictions_per_day``, ``false_fallbacks_per_model_day``, ``max_held``, ``max_streams``,
``report_interval`` (seconds); defaults in ``DEFAULTS``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from detectors.health.budget import AlarmBudget
from detectors.health.evidence import Evidence
from detectors.leaks.events import request_hashes
from detectors.performance.calibrated import METRICS, CalibratedEstimate
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.delay import LabelDelay
from detectors.performance.drop import PerformanceDrop
from detectors.performance.estimate import EstimatedAccuracy
from detectors.performance.ranking import PrecisionAtK
from detectors.performance.regression import RegressionPerformance
from schemas.contracts import ClassProbabilities, GroundTruth, Output, Prediction, Score
from streams.monitor import held as table
from streams.monitor.effects import FieldValue, Point, point
from streams.monitor.held import (
    EVERYTHING,
    JOINS_NOW,
    ROLES,
    WAITS,
    HeldOutput,
    HeldPrediction,
    HeldTable,
    JoinRun,
    Waiting,
    entity_hash,
    index_key,
    request_hash,
    wait_add,
)
from streams.monitor.label_wait import CLOCK, CLOCKED, LabelWait, label_entity
from streams.portfolio import Model, PortfolioError

__all__ = [
    "DEFAULTS",
    "JoinBatch",
    "JoinResult",
    "LabelJoin",
    "calibrated_fields",
    "describe_performance",
    "holds",
    "new_join",
    "observe",
    "observe_label",
    "observe_prediction",
]

TASKS = ("classification", "regression")
DEFAULTS: Mapping[str, Any] = {
    "task": "classification",
    "window": 1000,
    "threshold": 0.5,
    "error_cap": 1.0,
    "k": 10,
    "min_labels": 200,
    "tolerance": 0.02,
    "calibration_size": 50_000,
    "reference_size": 1000,
    "baseline": None,
    "labels_per_day": 2000.0,
    "predictions_per_day": None,  # None: as many as labels_per_day
    "false_fallbacks_per_model_day": 0.01,
    # About 0.16 MB of held table with its index (a model's whole state at its caps is
    # meant to stay near 1 MB); past it the sample of entities halves, so a fast model
    # gets fewer labels, never none (the demo scenario: the same alarms as at 10,000).
    "max_held": 3_000,
    "max_streams": 8,
    "report_interval": 60.0,
}
# The role whose alarms reach the health policy.
HEALTH_ROLE = "live"
# ``JoinBatch.observe_run``: a run of fewer records goes a record at a time (the fixed cost
# of a compiled loop's call and of the run's columns would outweigh what they save), and
# so do as many records after a call of the loop that joined fewer (unless the report
# time, not a record, stopped it), twice as many after
# another such call, up to ``_MOST_ALONE * FEWEST_AT_ONCE`` records (where the records that
# stop it are close together: labels not held, as when the sample leaves many out).
FEWEST_AT_ONCE = 8
_MOST_ALONE = 512
# A held prediction's label in ``JoinBatch._enqueue``: none yet.
_MADE = object()
_ROLE_CODES = {role: code for code, role in enumerate(ROLES)}


@dataclasses.dataclass(frozen=True, slots=True)
class JoinSettings:
    """The join's settings, resolved from the model once. Each stream's detectors are built
    from ``performance`` (the resolved ``[detectors.performance]`` settings) and the two
    levels by ``_detectors``, not cloned from prototypes: a prototype's buffers would sit
    in every model's state and checkpoint for nothing."""

    ttl_ms: int
    max_held: int
    max_streams: int
    report_interval_ms: int
    task: str
    k: int
    performance_alpha: float
    estimate_alpha: float
    performance: Mapping[str, Any]


@dataclasses.dataclass(slots=True)
class StreamPerformance:
    """The detectors of one ``(role, model_version)`` stream of one model."""

    role: str
    version: str
    metric: ClassificationPerformance | RegressionPerformance | PrecisionAtK | None
    estimate: EstimatedAccuracy | None
    calibrated: CalibratedEstimate | None = None
    delay: LabelDelay = dataclasses.field(default_factory=LabelDelay)
    alarms: int = 0
    estimate_alarms: int = 0
    calibrated_alarms: int = 0
    updated_at: int = 0


@dataclasses.dataclass(slots=True)
class LabelJoin:
    """Everything the label join remembers about one model; pickled into its table."""

    model_id: str
    settings: JoinSettings
    held: HeldTable
    streams: dict[tuple[str, str], StreamPerformance] = dataclasses.field(default_factory=dict)
    now_ms: int = 0
    next_report_ms: int | None = None
    labels: int = 0
    joined: int = 0
    unmatched: int = 0
    expired: int = 0
    evicted: int = 0
    duplicates: int = 0
    evicted_streams: int = 0
    # Labels whose prediction the sample of held predictions left out (``HeldTable``).
    unsampled_labels: int = 0


@dataclasses.dataclass(frozen=True)
class JoinResult:
    """What one prediction or label caused; false when nothing.

    ``evidence`` is for the model's health policy (live role only); ``points`` for InfluxDB;
    ``joined`` how many held predictions this label scored (0 for a prediction).
    """

    at: float
    evidence: tuple[Evidence, ...] = ()
    points: tuple[Point, ...] = ()
    joined: int = 0

    def __bool__(self) -> bool:
        return bool(self.evidence or self.points)


def new_join(model: Model) -> LabelJoin:
    """A fresh label join for ``model``.

    Raises
    ------
    PortfolioError
        When the model's ``[detectors.performance]`` settings do not fit the detectors; the
        error names the key.

    Examples
    --------
    >>> from streams.portfolio import parse_portfolio
    >>> model = parse_portfolio('''
    ... [models.churn]
    ... owner = "team-retention"
    ... tier = "cpu"
    ... fallback = "base_rate"
    ... label_delay = "1h"
    ... ''').models["churn"]
    >>> join = new_join(model)
    >>> join.settings.ttl_ms // 3_600_000, join.settings.performance_alpha
    (3, 2.5e-06)
    >>> made = Prediction(schema_version=1, request_id="r1", model_id="churn",
    ...     model_version="v1", role="live", entity_id="u1", predicted_at=0,
    ...     output=Score(score=0.8), features={}, latency_ms=1.0)
    >>> observe(join, made).evidence
    ()
    >>> truth = GroundTruth(schema_version=1, model_id="churn", label=1, label_at=90_000,
    ...     entity_id="u1")
    >>> observe(join, truth).joined, join.unmatched, len(join.held)
    (1, 0, 0)
    >>> round(join.streams[("live", "v1")].delay.p50, -1)  # the sketch is within 1 %
    90.0
    """
    given = model.detector_settings("performance")
    key = "detectors.performance"
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise PortfolioError(
            model.model_id, f"{key}.{unknown[0]}", f"unknown key; valid: {', '.join(DEFAULTS)}"
        )
    s: dict[str, Any] = {**DEFAULTS, **given}
    if s["task"] not in TASKS:
        raise PortfolioError(
            model.model_id, f"{key}.task", f"expected one of {', '.join(TASKS)}, got {s['task']!r}"
        )
    for name in ("max_held", "max_streams"):
        if not isinstance(s[name], int) or isinstance(s[name], bool) or s[name] < 1:
            raise PortfolioError(model.model_id, f"{key}.{name}", "expected an integer >= 1")
    for name in ("labels_per_day", "report_interval"):
        if not isinstance(s[name], int | float) or not 0 < s[name] < math.inf:
            raise PortfolioError(model.model_id, f"{key}.{name}", "expected a number > 0")
    try:
        budget = AlarmBudget(
            s["false_fallbacks_per_model_day"],
            {
                "performance": s["labels_per_day"],
                "estimated_accuracy": s["predictions_per_day"] or s["labels_per_day"],
            },
        )
        settings = JoinSettings(
            ttl_ms=int(model.label_ttl.total_seconds() * 1000),
            max_held=s["max_held"],
            max_streams=s["max_streams"],
            report_interval_ms=int(s["report_interval"] * 1000),
            task=s["task"],
            k=s["k"],
            performance_alpha=budget.alpha_for("performance"),
            estimate_alpha=budget.alpha_for("estimated_accuracy"),
            performance=s,
        )
        # Built once here so that a bad setting stops the worker at start-up.
        for kind in _DETECTORS:
            _detectors(settings, kind)
    except (TypeError, ValueError) as error:
        raise PortfolioError(model.model_id, key, str(error)) from None
    return LabelJoin(model_id=model.model_id, settings=settings, held=HeldTable(settings.max_held))


def observe_prediction(join: LabelJoin, prediction: Prediction) -> JoinResult:
    """Hold one prediction of the joined model until its label; returns what it caused.

    Mutates ``join``; the caller stores it back in the table.
    """
    return observe(join, prediction)


def observe_label(join: LabelJoin, truth: GroundTruth) -> JoinResult:
    """Join one ground truth record with the predictions it scores; returns what it caused.

    Mutates ``join``; the caller stores it back in the table.
    """
    return observe(join, truth)


def observe(join: LabelJoin, record: Prediction | GroundTruth) -> JoinResult:
    """``observe_prediction`` or ``observe_label``, whichever ``record`` is for."""
    batch = JoinBatch(join)
    batch.observe(record)
    [result] = batch.results()
    return result


def holds(join: LabelJoin, truth: GroundTruth) -> bool:
    """Whether ``truth`` names a request whose prediction ``join`` holds: it joins now,
    wherever the model's predictions are (``_held_now``)."""
    return bool(_held_now(join, truth))


def join_run(
    records: Sequence[Prediction | GroundTruth], requests: Sequence[int | None]
) -> JoinRun:
    """The columns of a run of predictions and labels for ``JoinBatch.observe_run``
    (``requests``: each prediction's request hash, None for a label)."""
    # One pass into a list per column: a run is tens of records, for which a numpy
    # operation per column and kind costs more than the pass.
    kinds: list[int] = []
    at: list[int] = []
    keys: list[int] = []
    simple: list[bool] = []
    entities: list[int] = []
    roles: list[int] = []
    version_index: list[int] = []
    scores: list[float] = []
    versions: dict[str, int] = {}
    # Labels by request: their places and request ids, hashed at once after the pass.
    named: list[int] = []
    ids: list[str] = []
    for record, request in zip(records, requests, strict=True):
        if request is None:
            truth = cast(GroundTruth, record)
            kinds.append(table.KIND_LABEL)
            at.append(truth.label_at)
            asked = truth.request_id
            if asked is not None:
                named.append(len(keys))
                ids.append(asked)
            keys.append(0)
            # A label naming no request (matched by entity) takes the Python's path.
            simple.append(asked is not None)
            # Whether the sample holds its entity, for a label that matches nothing.
            entities.append(label_entity(truth))
            roles.append(0)
            version_index.append(0)
            scores.append(math.nan)
            continue
        prediction = cast(Prediction, record)
        kinds.append(table.KIND_PREDICTION)
        at.append(prediction.predicted_at)
        role = _ROLE_CODES[prediction.role]
        keys.append(index_key(role, request))
        # Only a score is held in the columns: a prediction of another output takes the
        # Python's path.
        output = prediction.output
        score = output.score if type(output) is Score else math.nan
        simple.append(type(output) is Score and type(score) is float)
        entities.append(entity_hash(prediction.entity_id))
        roles.append(role)
        version_index.append(versions.setdefault(prediction.model_version, len(versions)))
        scores.append(score)
    for place, key in zip(named, request_hashes(ids), strict=True):
        keys[place] = key
    count = len(records)
    return JoinRun(
        np.array(kinds, np.int8),
        np.array(at, np.int64),
        np.array(keys, np.uint64),
        np.array(simple, np.bool_),
        np.array(entities, np.uint64),
        np.array(roles, np.int8),
        np.array(version_index, np.intp),
        list(versions),
        np.array(scores, np.float64),
        np.zeros(count, np.int64),
        np.full((count, len(ROLES)), -1, np.int64),
    )


@dataclasses.dataclass
class _Queued:
    """A stream's detector inputs not fed yet, each beside the record (by its index in the
    batch) that caused it."""

    delays: list[float] = dataclasses.field(default_factory=list)
    metric: list[Any] = dataclasses.field(default_factory=list)
    metric_at: list[int] = dataclasses.field(default_factory=list)
    estimate: list[Any] = dataclasses.field(default_factory=list)
    estimate_at: list[int] = dataclasses.field(default_factory=list)
    scores: list[float] = dataclasses.field(default_factory=list)
    labels: list[Any] = dataclasses.field(default_factory=list)
    calibrated_at: list[int] = dataclasses.field(default_factory=list)


class JoinBatch:
    """Records joined one by one, their detectors fed a stream and a batch at a time.

    ``observe`` joins a record at once (so ``holds`` sees it) and queues what its pairs
    feed the detectors; ``results`` feeds what is still queued and gives each record's
    ``JoinResult``, exactly what ``observe`` gives one record at a time: the queue is fed
    before every report (which reads the detectors) and before a stream is evicted, and
    each alarm is placed at the record that caused it, with what the detector read there.
    """

    def __init__(self, join: LabelJoin) -> None:
        self.join = join
        self._at_ms: list[int] = []
        self._joined: list[int] = []
        self._points: dict[int, tuple[Point, ...]] = {}
        # Per record: (the order of its detector in ``_score``, the evidence).
        self._evidence: dict[int, list[tuple[int, Evidence]]] = {}
        self._queued: dict[tuple[str, str], _Queued] = {}
        # The streams fed since the queues were last fed, with their queues: one lookup a
        # record. Emptied with the queues, and so before a stream is evicted.
        self._streams: dict[tuple[str, str], tuple[StreamPerformance, _Queued]] = {}
        # ``observe_run``: the records of run ``_alone_in`` before ``_alone_to`` go a record
        # at a time, ``_alone`` times ``FEWEST_AT_ONCE`` after the last call of the loop.
        self._alone_in: JoinRun | None = None
        self._alone_to = 0
        self._alone = 1

    def observe(self, record: Prediction | GroundTruth, request: int | None = None) -> None:
        """Join ``record``; its result comes with ``results``. ``request``: a prediction's
        ``request_hash``, when the caller hashed the batch's at once (``Batch``)."""
        if isinstance(record, Prediction):
            self._prediction(
                record, request_hash(record.request_id) if request is None else request
            )
        else:
            self._label(record, None)

    def observe_run(
        self,
        records: Sequence[Prediction | GroundTruth],
        requests: Sequence[int | None],
        start: int = 0,
        run: JoinRun | None = None,
        prediction_clock: float = -math.inf,
    ) -> int:
        """``observe`` of each prediction and ``observe_held`` of each label from
        ``start`` on, up to the first label the join does not hold: where it stopped
        (``len(records)`` at the end). ``requests``: each prediction's request hash (None
        for a label); ``run``: the records' columns (``join_run``; None: a record at a
        time). The common records go through a compiled loop (``HeldTable.join_run``),
        the others as ``observe`` takes them, then the loop goes on.

        With no label waiting, the label wait releases a label at once when the prediction
        clock (``prediction_clock``, the wait's, then the run's predictions) reached its
        time, and ``observe`` joins it: the loop joins such a label there when it matches
        nothing (a label of an entity the sample left out, of an expired prediction),
        rather than stop, which cost a busy model's batches most of their records going
        one at a time."""
        join, end = self.join, len(records)
        clock = prediction_clock
        while start < end:
            if (
                run is None
                or join.next_report_ms is None
                or (run is self._alone_in and start < self._alone_to)
            ):
                record = records[start]
                if isinstance(record, Prediction):
                    request = requests[start]
                    assert request is not None
                    self._prediction(record, request)
                    clock = max(clock, record.predicted_at)
                elif not self.observe_held(record):
                    return start
                start += 1
                continue
            counts = np.array([getattr(join, name) for name in table.COUNTS], np.int64)
            wait = table.no_wait(clock)
            stop, why, _ = join.held.join_run(
                run,
                start,
                counts,
                join.streams,
                join.settings.ttl_ms,
                join.next_report_ms,
                wait,
            )
            clock = table.clock_after(wait)
            for name, value in zip(table.COUNTS, counts.tolist(), strict=True):
                setattr(join, name, value)
            # A call stopped by the report time stopped for no record of the run.
            if stop - start < FEWEST_AT_ONCE and why != table.STOP_REPORT:
                alone = min(2 * self._alone, _MOST_ALONE) if self._alone_in is run else 1
                self._alone_in, self._alone = run, alone
                self._alone_to = stop + 1 + alone * FEWEST_AT_ONCE
            else:
                self._alone = 1
            self._queue_run(records, run, np.arange(start, stop + (why == table.STOP_REPORT)))
            if why == table.STOP_END:
                return end
            record = records[stop]
            if why == table.STOP_REPORT:
                self._report()
            elif why == table.STOP_PREDICTION:
                assert isinstance(record, Prediction)
                request = requests[stop]
                assert request is not None
                self._prediction(record, request)
                clock = max(clock, record.predicted_at)
            elif why == table.STOP_HELD_LABEL:
                assert isinstance(record, GroundTruth)
                self._label(record, None)
            elif not self.observe_held(record):  # type: ignore[arg-type]
                return stop
            start = stop + 1
        return end

    def observe_waiting(
        self,
        records: Sequence[Prediction | GroundTruth],
        requests: Sequence[int | None],
        start: int,
        run: JoinRun,
        wait: LabelWait,
    ) -> tuple[list[Prediction | GroundTruth], list[int]]:
        """The records from ``start`` on as they reach the join through ``wait``: a
        prediction, then the labels it releases; a label if the join holds its prediction
        (``observe_held``), else it waits (``LabelWait.add``) and maybe releases another.
        The records the join took, in order, and the number of the record whose step let
        each through. ``run``: the records' columns (``join_run``). The common records and
        the labels they release go through the compiled loop (``HeldTable.join_run``), the
        others as ``observe`` takes them; while the join's clock has not moved, every label
        that waits goes through the loop, and it stops at every other record
        (``held.NO_REPORT``)."""
        join, end = self.join, len(records)
        labels = sum(1 for request in requests[start:] if request is None)
        truths, heap = wait.columns(end, labels)
        at_wait, arrival, number, counter, keys, named, waiting_entities = heap
        # The waiting labels' columns after the batch's (a label's are its time, key and
        # entity hash).
        count = len(truths)
        run = JoinRun(
            np.concatenate((run.kinds, np.full(count, table.KIND_LABEL, np.int8))),
            np.concatenate((run.at, at_wait[:count])),
            np.concatenate((run.keys, keys)),
            np.concatenate((run.simple, named)),
            np.concatenate((run.entities, waiting_entities)),
            np.concatenate((run.roles, np.zeros(count, np.int8))),
            np.concatenate((run.version_index, np.zeros(count, np.intp))),
            run.versions,
            np.concatenate((run.scores, np.full(count, math.nan))),
            np.concatenate((run.outcome, np.zeros(count, np.int64))),
            np.concatenate((run.matched, np.full((count, len(ROLES)), -1, np.int64))),
        )
        everything = [*records, *truths]
        fed = np.zeros(len(everything), np.int64)
        state = Waiting(
            end, (at_wait, arrival, number, counter), fed, np.zeros_like(fed), np.zeros(1, np.int64)
        )
        taken_at, by = state.taken, state.by
        queued = 0

        def take(record: int, step: int) -> None:
            nonlocal queued
            fed[queued], by[queued] = record, step
            queued = taken_at[0] = queued + 1

        def label(at: int) -> None:
            """The Python's label ``at``: the join's if it holds its prediction, else the
            wait's."""
            truth = cast(GroundTruth, records[at])
            if self.observe_held(truth):
                take(at, at)
                return
            out = wait_add(at, truth.label_at, at_wait, arrival, number, counter)
            if out != WAITS:
                joined = at if out == JOINS_NOW else out
                self._label(cast(GroundTruth, everything[joined]), None)
                take(joined, at)

        while True:
            counts = np.array([getattr(join, name) for name in table.COUNTS], np.int64)
            next_report = join.next_report_ms
            stop, why, released = join.held.join_run(
                run,
                start,
                counts,
                join.streams,
                join.settings.ttl_ms,
                table.NO_REPORT if next_report is None else next_report,
                state,
            )
            for name, value in zip(table.COUNTS, counts.tolist(), strict=True):
                setattr(join, name, value)
            self._queue_run(everything, run, fed[queued : taken_at[0]])
            queued = int(taken_at[0])
            if why == table.STOP_END:
                break
            if why == table.STOP_REPORT:
                self._report()
            elif why == table.STOP_RELEASED:
                self._label(cast(GroundTruth, everything[released]), None)
                take(released, stop)
            elif why == table.STOP_PREDICTION:
                prediction = cast(Prediction, records[stop])
                request = requests[stop]
                assert request is not None
                self._prediction(prediction, request)
                take(stop, stop)
                if not counter[CLOCKED] or prediction.predicted_at > counter[CLOCK]:
                    counter[CLOCK], counter[CLOCKED] = prediction.predicted_at, 1
            elif why == table.STOP_HELD_LABEL:
                self._label(cast(GroundTruth, records[stop]), None)
                take(stop, stop)
            else:
                label(stop)
                # The labels after it too, up to the next prediction: most are not held
                # either, and each would cost a call of the loop.
                while stop + 1 < end and run.kinds[stop + 1] == table.KIND_LABEL:
                    stop += 1
                    label(stop)
            start = stop + 1
        wait.load(everything, heap, run.keys, run.simple, run.entities)
        return [everything[k] for k in fed[:queued].tolist()], by[:queued].tolist()

    def _queue_run(
        self, records: Sequence[Prediction | GroundTruth], run: JoinRun, fed: npt.NDArray[np.int64]
    ) -> None:
        """The results and the detector inputs of the records of ``run`` that
        ``HeldTable.join_run`` joined, ``fed`` (their numbers, in the order it took them):
        a stream at a time, each stream's in that order (a label's pairs in its
        matches')."""
        if not len(fed):
            return
        found = self.join.held.run_items(run, fed, len(self._at_ms))
        self._at_ms += found.at
        self._joined += found.joined
        outputs, numbers, delays = found.outputs, found.numbers, found.delays
        values = [
            _MADE if label < 0 else cast(GroundTruth, records[label]).label
            for label in found.labels
        ]
        for role, version, low, high, pairs_low, pairs_high, at_ms in found.streams:
            stream, queue = self._stream(role, version, outputs[high - 1], at_ms)
            self._enqueue(
                stream,
                queue,
                outputs[low:high],
                values[low:high],
                delays[pairs_low:pairs_high],
                numbers[low:high],
            )

    def observe_held(self, truth: GroundTruth) -> bool:
        """Join ``truth`` as ``observe`` does if the join holds its request's prediction
        (``holds``); else change nothing and return False."""
        matches = _held_now(self.join, truth)
        if not matches:
            return False
        self._label(truth, matches)
        return True

    def results(self) -> list[JoinResult]:
        """What each record observed so far caused, in order."""
        caused = self.caused()
        return [
            caused.get(i) or JoinResult(at_ms / 1000.0, joined=self._joined[i])
            for i, at_ms in enumerate(self._at_ms)
        ]

    def caused(self) -> dict[int, JoinResult]:
        """The results of the records observed so far that caused evidence or points, by
        their position among them (the others' results are false)."""
        self._feed()
        self.join.held.flush()
        if not self._evidence and not self._points:
            return {}  # most batches of one record
        return {
            i: JoinResult(
                self._at_ms[i] / 1000.0,
                tuple(e for _, e in sorted(self._evidence.get(i, []), key=lambda x: x[0])),
                self._points.get(i, ()),
                self._joined[i],
            )
            for i in sorted(self._evidence.keys() | self._points.keys())
        }

    def _label(self, truth: GroundTruth, matches: list[HeldPrediction] | None) -> None:
        """Join ``truth``; ``matches`` are what ``_matches`` found before the clock moved
        (None: not looked up), still right unless the move expired predictions."""
        join = self.join
        at_ms = truth.label_at
        if _advance(join, at_ms) or matches is None:
            matches = _matches(join, truth)
        self._at_ms.append(at_ms)
        join.labels += 1
        if not matches:
            if _sampled(join, truth):
                join.unmatched += 1
            else:
                join.unsampled_labels += 1
        self._joined.append(len(matches))
        index = len(self._at_ms) - 1
        for held in matches:
            join.held.discard((held.role, held.request))
            join.joined += 1
            output = held.output
            stream, queued = self._stream(held.role, held.version, output, at_ms)
            delay = (at_ms - held.predicted_at) / 1000.0
            self._enqueue(stream, queued, [output], [truth.label], [delay], [index])
        self._report()

    def _prediction(self, prediction: Prediction, request: int) -> None:
        join = self.join
        at_ms = prediction.predicted_at
        _advance(join, at_ms)
        self._at_ms.append(at_ms)
        self._joined.append(0)
        role, version = prediction.role, prediction.model_version
        held, settings = join.held, join.settings
        slot = held.vacancy(role, request)
        if slot < 0:
            join.duplicates += 1
        elif join.now_ms - at_ms > settings.ttl_ms:
            join.expired += 1  # arrived after its label could still have joined it
        else:
            output = _held_output(prediction.output, settings.k)
            entity = entity_hash(prediction.entity_id)
            if held.add(request, entity, role, version, at_ms, output, slot):
                join.evicted += 1
            stream, queued = self._stream(role, version, output, at_ms)
            self._enqueue(stream, queued, [output], [_MADE], [], [len(self._at_ms) - 1])
        self._report()

    def _enqueue(
        self,
        stream: StreamPerformance,
        queued: _Queued,
        outputs: Sequence[HeldOutput],
        labels: list[Any],
        delays: list[float],
        indices: list[int],
    ) -> None:
        """Queue inputs for a stream's detectors, in order: a held prediction's for its
        estimates, as they wait for no label (its label ``_MADE``), a joined pair's for
        all (``delays``: the pairs' label delays in seconds); ``indices``: each one's
        record's place among those observed."""
        queued.delays.extend(delays)
        metric = stream.metric is not None
        estimate, calibrated = stream.estimate is not None, stream.calibrated is not None
        task = self.join.settings.task
        # A score's estimate input is the score itself, for a classifier.
        scored = estimate and task == "classification"
        for output, label, index in zip(outputs, labels, indices, strict=True):
            if type(output) is float:
                # Most outputs: the general path's inputs, without its helpers' calls.
                if label is _MADE:
                    if scored:
                        queued.estimate.append((None, output))
                        queued.estimate_at.append(index)
                    if calibrated:
                        queued.scores.append(output)
                        queued.labels.append(None)
                        queued.calibrated_at.append(index)
                    continue
                if metric:
                    queued.metric.append((label, output))
                    queued.metric_at.append(index)
                code = -1 if label is None else label
                if scored:
                    queued.estimate.append((code, output))
                    queued.estimate_at.append(index)
                if calibrated:
                    queued.scores.append(output)
                    queued.labels.append(-1 if isinstance(code, float) and code != code else code)
                    queued.calibrated_at.append(index)
                continue
            code = None
            if label is not _MADE:
                if metric:
                    queued.metric.append(_metric_input(output, label))
                    queued.metric_at.append(index)
                if estimate or calibrated:
                    code = _class_index(output, label)
            if estimate:
                probabilities = _probabilities(output, task)
                if probabilities is not None:
                    queued.estimate.append((code, probabilities))
                    queued.estimate_at.append(index)
            if calibrated:
                queued.scores.append(_positive_score(output))
                # A NaN label is an ignored label one by one; in a batch NaN marks a
                # prediction.
                queued.labels.append(
                    None if label is _MADE else -1 if _is_nan(code) else code  # type: ignore[arg-type]
                )
                queued.calibrated_at.append(index)

    def _report(self) -> None:
        """The points of the last record observed, when the clock passed the report time."""
        join = self.join
        if join.next_report_ms is not None and join.now_ms >= join.next_report_ms:
            self._feed()
            self._points[len(self._at_ms) - 1] = _report(join)

    def _stream(
        self, role: str, version: str, output: HeldOutput, at_ms: int
    ) -> tuple[StreamPerformance, _Queued]:
        key = (role, version)
        found = self._streams.get(key)
        if found is None:
            join = self.join
            if key not in join.streams and len(join.streams) >= join.settings.max_streams:
                self._feed()  # the stream evicted gets its inputs first, as one by one
            found = self._streams[key] = (_stream(join, role, version, output, at_ms), _Queued())
            self._queued[key] = found[1]
        found[0].updated_at = at_ms
        return found

    def _feed(self) -> None:
        """Feed every stream's queued inputs; each alarm as evidence of its record."""
        for key, queued in self._queued.items():
            stream = self.join.streams[key]
            if queued.delays:
                stream.delay.update_many(queued.delays)
            if stream.metric is not None and queued.metric:
                self._feed_metric(stream, stream.metric, queued)
            if stream.estimate is not None and queued.estimate:
                self._feed_estimate(stream, stream.estimate, queued)
            if stream.calibrated is not None and queued.scores:
                self._feed_calibrated(stream, stream.calibrated, queued)
        self._queued.clear()
        self._streams.clear()

    def _alarm(self, index: int, order: int, stream: StreamPerformance, evidence: Evidence) -> None:
        if stream.role == HEALTH_ROLE:
            self._evidence.setdefault(index, []).append((order, evidence))

    def _feed_metric(
        self,
        stream: StreamPerformance,
        metric: ClassificationPerformance | RegressionPerformance | PrecisionAtK,
        queued: _Queued,
    ) -> None:
        metric.update_many(queued.metric)
        for position, labels, value in metric.alarms:
            stream.alarms += 1
            index = queued.metric_at[position]
            evidence = Evidence(
                detector="performance_drop",
                at=self._at_ms[index] / 1000.0,
                alarm=True,
                alpha=self.join.settings.performance_alpha,
                details={
                    "metric": metric.primary,
                    "value": value,
                    "version": stream.version,
                    "labels": labels,
                },
            )
            self._alarm(index, 0, stream, evidence)

    def _feed_estimate(
        self, stream: StreamPerformance, estimate: EstimatedAccuracy, queued: _Queued
    ) -> None:
        estimate.update_many(queued.estimate)
        for position, source, accuracy in estimate.alarms:
            stream.estimate_alarms += 1
            index = queued.estimate_at[position]
            evidence = Evidence(
                detector="estimated_accuracy",
                at=self._at_ms[index] / 1000.0,
                alarm=True,
                alpha=estimate.alpha,
                details={"source": source, "accuracy": accuracy, "version": stream.version},
            )
            self._alarm(index, 1, stream, evidence)

    def _feed_calibrated(
        self, stream: StreamPerformance, calibrated: CalibratedEstimate, queued: _Queued
    ) -> None:
        # Pieces of at most one chunk's room each, so that no piece closes two chunks and
        # each alarm reads its own chunk's estimate (an invalid score fills no room). Most
        # queues close none: one piece, without the predictions' positions.
        predictions = (
            [n for n, label in enumerate(queued.labels) if label is None]
            if queued.labels.count(None) >= _chunk_room(calibrated)
            else []
        )
        start = taken = 0
        while start < len(queued.labels):
            end = taken + _chunk_room(calibrated)
            stop = predictions[end - 1] + 1 if end <= len(predictions) else len(queued.labels)
            taken = min(end, len(predictions))
            calibrated.update_many(queued.scores[start:stop], queued.labels[start:stop])
            for position in calibrated.detections.tolist():
                stream.calibrated_alarms += 1
                index = queued.calibrated_at[start + position]
                evidence = Evidence(
                    detector="estimated_performance",
                    at=self._at_ms[index] / 1000.0,
                    alarm=True,
                    # Informational for now: a chunk of ``window`` predictions ends well
                    # after the change it saw did, and in the end-to-end scenario such
                    # late alarms held a drifted model on its fallback for the rest of the
                    # run.
                    material=False,
                    details={
                        "estimated_accuracy": calibrated.estimated_accuracy,
                        "reference_accuracy": calibrated.reference_accuracy,
                        "version": stream.version,
                    },
                )
                self._alarm(index, 2, stream, evidence)
            start = stop


def _chunk_room(calibrated: CalibratedEstimate) -> int:
    """How many predictions the calibrated estimate's current chunk takes before it closes."""
    return calibrated.chunk_size - calibrated.n_predictions % calibrated.chunk_size


def _held_now(join: LabelJoin, truth: GroundTruth) -> list[HeldPrediction]:
    """What ``truth`` joins before the model's predictions reach its time: its request's
    held predictions. A label naming only its entity matches the entity's latest
    prediction before it, which only the predictions reaching its time can tell, so it
    matches nothing early: it goes through the label wait."""
    if truth.request_id is None:
        return []
    return join.held.of_request(truth.request_id)


def _matches(join: LabelJoin, truth: GroundTruth) -> list[HeldPrediction]:
    if truth.request_id is not None:
        return join.held.of_request(truth.request_id)
    assert truth.entity_id is not None  # the contract requires one of the two
    return join.held.latest_of_entity(truth.entity_id, truth.label_at)


def _sampled(join: LabelJoin, truth: GroundTruth) -> bool:
    """Whether the prediction ``truth`` names is in the sample of held predictions, by its
    entity's hash. Every prediction has an entity, but a label naming only its request
    does not say which: while the sample holds less than everything, such a label that
    matches nothing is counted as left out by the sample, not as unmatched."""
    if truth.entity_id is None:
        return join.held.limit == EVERYTHING
    return join.held.samples(entity_hash(truth.entity_id))


def _advance(join: LabelJoin, at_ms: int) -> int:
    """Move the clock to ``at_ms`` if it is newer and expire what waited too long; how
    many expired."""
    if at_ms <= join.now_ms:
        return 0
    join.now_ms = at_ms
    if join.next_report_ms is None:
        join.next_report_ms = at_ms + join.settings.report_interval_ms
    expired = join.held.pop_older_than(at_ms - join.settings.ttl_ms)
    join.expired += expired
    return expired


def _held_output(output: Output, k: int) -> HeldOutput:
    if isinstance(output, Score):
        return output.score
    if isinstance(output, ClassProbabilities):
        return dict(output.probabilities)
    return tuple(output.items[:k])


def _stream(
    join: LabelJoin, role: str, version: str, output: HeldOutput, at_ms: int
) -> StreamPerformance:
    """The stream's detectors, built for the kind of its first output."""
    stream = join.streams.get((role, version))
    if stream is None:
        if len(join.streams) >= join.settings.max_streams:
            stale = min(join.streams, key=lambda k: join.streams[k].updated_at)
            del join.streams[stale]
            join.evicted_streams += 1
        if isinstance(output, tuple):
            kind = "ranking"
        elif isinstance(output, float) and join.settings.task == "regression":
            kind = "regression"
        elif isinstance(output, float) or len(output) == 2:
            kind = "binary"
        else:
            kind = "classes"
        stream = StreamPerformance(role, version, *_detectors(join.settings, kind))
        join.streams[(role, version)] = stream
    stream.updated_at = at_ms
    return stream


# What a stream's outputs are, for its detectors: ranked items, regression scores, binary
# scores or probabilities, more than two classes.
_DETECTORS = ("ranking", "regression", "binary", "classes")


def _detectors(
    settings: JoinSettings, kind: str
) -> tuple[
    ClassificationPerformance | RegressionPerformance | PrecisionAtK | None,
    EstimatedAccuracy | None,
    CalibratedEstimate | None,
]:
    """A new stream's metric, estimate and calibrated estimate for outputs of ``kind``."""
    s = settings.performance
    drop = PerformanceDrop(
        alpha=settings.performance_alpha,
        tolerance=s["tolerance"],
        baseline=s["baseline"],
        reference_size=s["reference_size"],
    )
    if kind == "ranking":
        return PrecisionAtK(s["k"], s["window"], drop), None, None
    if kind == "regression":
        return RegressionPerformance(s["error_cap"], s["window"], drop), None, None
    estimate = EstimatedAccuracy(
        window=s["window"],
        min_labels=s["min_labels"],
        alpha=settings.estimate_alpha,
        tolerance=s["tolerance"],
        reference_size=s["reference_size"],
    )
    if kind == "classes":
        return None, estimate, None
    calibrated = CalibratedEstimate(
        threshold=s["threshold"],
        chunk_size=s["window"],
        calibration_size=s["calibration_size"],
        min_labels=s["min_labels"],
        tolerance=s["tolerance"],
    )
    return ClassificationPerformance(s["window"], s["threshold"], drop), estimate, calibrated


def _positive_score(output: HeldOutput) -> float:
    """What ``CalibratedEstimate`` reads as the score of a binary output: P(class 1)."""
    if isinstance(output, dict):
        return output[sorted(output)[1]]
    assert isinstance(output, float)
    return output


def _metric_input(output: HeldOutput, label: Any) -> Any:
    """The pair the stream's metric reads; labels that do not fit become ignored inputs."""
    if isinstance(output, tuple):
        # A missing label is no evidence that nothing was relevant: the pair is ignored.
        return (output, {label}) if isinstance(label, str | int) else None
    if isinstance(output, float):
        return (label, output)
    return (_class_index(output, label), _positive_score(output))


def _probabilities(output: HeldOutput, task: str) -> float | list[float] | None:
    """What ``EstimatedAccuracy`` reads as ``p``: P(class 1), or every class's in sorted order."""
    if isinstance(output, float):
        return output if task == "classification" else None
    if isinstance(output, dict):
        return [output[name] for name in sorted(output)]
    return None


def _class_index(output: HeldOutput, label: Any) -> Any:
    """The label as the detectors read it: for class probabilities, its class's index."""
    if not isinstance(output, dict):
        # None would make the estimate read the label as a new prediction.
        return -1 if label is None else label
    classes = sorted(output)
    for name in _class_names(label):
        if name in output:
            return classes.index(name)
    return -1  # an index no class has: the detectors count the label as ignored


def _class_names(label: Any) -> tuple[str, ...]:
    """The class names a label may stand for; as in the shadow join, 1 and true are "1"."""
    if isinstance(label, bool):
        return (str(int(label)), str(label).lower())
    if isinstance(label, int | float) and float(label).is_integer():
        return (str(int(label)),)
    return (label,) if isinstance(label, str) else ()


def _report(join: LabelJoin) -> tuple[Point, ...]:
    """The performance points, when the clock has passed the next report time."""
    if join.next_report_ms is None or join.now_ms < join.next_report_ms:
        return ()
    at_ms = join.now_ms
    join.next_report_ms = at_ms + join.settings.report_interval_ms
    points = [
        point(
            "performance",
            {"model": join.model_id, "detector": "label_join"},
            {
                "held": len(join.held),
                "labels": join.labels,
                "joined": join.joined,
                "unmatched": join.unmatched,
                "unsampled_labels": join.unsampled_labels,
                "expired": join.expired,
                "evicted": join.evicted,
                "unsampled": join.held.unsampled,
                "sampled": join.held.fraction,
                "duplicates": join.duplicates,
                "evicted_streams": join.evicted_streams,
            },
            at_ms,
        )
    ]
    for (role, version), stream in join.streams.items():
        for detector, fields in _stream_fields(stream):
            tags = {"model": join.model_id, "version": version, "role": role, "detector": detector}
            points.append(point("performance", tags, fields, at_ms))
    return tuple(points)


def _stream_fields(stream: StreamPerformance) -> list[tuple[str, dict[str, FieldValue]]]:
    """The detector and fields of each of a stream's points: a field that is NaN is left
    out, and so is a point whose ``value`` is (``value == value`` is false for NaN only)."""
    rows: list[tuple[str, dict[str, FieldValue]]] = []
    metric = stream.metric
    if metric is not None:
        values: tuple[tuple[str, float], ...]
        if isinstance(metric, ClassificationPerformance):
            values = metric.metrics
        else:
            values = ((metric.primary, getattr(metric, metric.primary)),)
        labels, alarms = metric.n_labels, stream.alarms
        rows.extend(
            (name, {"value": value, "estimated": 0, "labels": labels, "alarms": alarms})
            for name, value in values
            if value == value
        )
    estimate = stream.estimate
    if estimate is not None:
        accuracy = estimate.accuracy
        if accuracy == accuracy:
            source = estimate.source
            fields: dict[str, FieldValue] = {
                "value": accuracy,
                "estimated": int(source == "estimated"),
                "source": source,
                "labels": estimate.n_labels,
                "alarms": stream.estimate_alarms,
            }
            rows.append(("estimated_accuracy", fields))
    calibrated = stream.calibrated
    if calibrated is not None:
        fields = {k: v for k, v in calibrated_fields(calibrated).items() if v == v}
        fields["alarms"] = stream.calibrated_alarms
        rows.append(("calibrated", fields))
    delay = stream.delay
    if delay.n_recent:  # so its quantiles are numbers
        p50, p90, p99 = delay.quantiles((0.5, 0.9, 0.99))
        rows.append(("label_delay", {"p50_s": p50, "p90_s": p90, "p99_s": p99, "labels": delay.n}))
    return rows


# ``calibrated_fields``' names of the estimated and the measured metrics, in ``METRICS`` order.
_ESTIMATED = tuple(f"estimated_{m}" for m in METRICS)
_MEASURED = tuple(f"measured_{m}" for m in METRICS)


def calibrated_fields(calibrated: CalibratedEstimate) -> dict[str, FieldValue]:
    """The calibrated estimate's metrics, estimated and measured side by side (NaN: none yet)."""
    fields: dict[str, FieldValue] = dict(
        zip(_ESTIMATED, calibrated.estimated.values(), strict=True)
    )
    fields.update(zip(_MEASURED, calibrated.measured.values(), strict=True))
    fields["reference_accuracy"] = calibrated.reference_accuracy
    fields["calibration_gap"] = calibrated.calibration_gap
    fields["chunks"] = calibrated.n_chunks
    fields["labels"] = calibrated.n_labels
    return fields


def describe_performance(join: LabelJoin) -> dict[str, dict[str, FieldValue | None]]:
    """Each binary stream's calibrated estimate and measured metrics, for
    ``/failsoft/models``, keyed ``role/version``; metrics not known yet are None."""
    return {
        f"{role}/{version}": {
            name: None if _is_nan(value) else value
            for name, value in calibrated_fields(stream.calibrated).items()
        }
        for (role, version), stream in join.streams.items()
        if stream.calibrated is not None
    }


def _is_nan(value: FieldValue) -> bool:
    return isinstance(value, float) and math.isnan(value)
