"""One model's shadow join: live against shadow by request_id, then against the labels.

Pure code, no Faust. The ``streams.monitor.Monitor`` of a model that pairs a shadow
(``Model.shadow`` in the portfolio) holds one ``ShadowJoin`` and calls
``observe_many(model, join, records)`` with a batch of the model's predictions and ground
truths (``observe`` takes one). What comes back per record (``ShadowEffects``) is
InfluxDB points, Alerta alerts and, when the portfolio asks for it, the promotions to send
as ``promote_shadow`` commands.

Pairing. A ``live`` prediction and a ``shadow`` prediction of the shadow's version with the
same request_id make a pair; shadow predictions of another version (a stale candidate)
and ``fallback`` predictions are counted and left out. A pair feeds
``detectors.ShadowAgreement`` with both models' scores at once, before any label. It then
waits for the request's ``GroundTruth`` (joined by request_id; a label with only an
entity_id cannot be joined and is counted), which feeds ``detectors.ShadowPromotion``
with ``(predicted_at in seconds, live_loss, shadow_loss)``.

Scores and losses. Both read an output as class probabilities: a ``Score`` in [0, 1] is
the probability of class ``"1"`` (a score outside [0, 1] is not a probability), a
``ClassProbabilities`` is itself, a ``Ranking`` has none; such predictions are counted as
``unscored`` and not paired. The agreement score is the probability of class ``"1"``. The
label's class is its string (``true``/``false`` and 1/0 are ``"1"``/``"0"``). The loss is
the Brier score halved: ``sum((p_k - [k == label])**2) / 2`` over the classes, which is in
[0, 1] for probabilities that sum to at most 1 and is the usual binary Brier score
``(p - y)**2`` for a ``Score``. A loss outside [0, 1] (probabilities that sum to more than
1) is ignored by the detector and counted in its ``n_ignored``.

Bounds. Requests waiting for their other half wait at most ``pair_ttl`` of event time,
pairs waiting for their label at most ``label_ttl`` (default the model's ``label_ttl``);
each waiting list holds at most ``max_pending``, the oldest evicted first. Expired and
evicted requests are counted (``expired_halves``, ``expired_pairs``, ``evicted_halves``,
``evicted_pairs``) and written with the shadow points. A waiting pair costs about 95
bytes of the pickled join (10,000 waiting pairs measured at 0.95 MB), so the agent
should write the join to its table every so many records, as it does the model watch,
rather than after each one.

Verdict. ``ShadowPromotion``'s verdict may change back; the join acts on its first change
away from ``keep_watching`` and ends the trial there: one ``VerdictChange`` (promote or
reject) per shadow version. It becomes an alert, event ``shadow_verdict`` (severity
``informational`` for promote, ``warning`` for reject), and for a promotion, when
``[detectors.shadow] promote_command = true``, an entry of ``promotions``: the monitor makes
it a ``promote_shadow`` command (``CommandToSign``, detector ``shadow_verdict``, issued at
``change.at``) with the next of the model watch's seqs, as the control topic's seq is per
model.
By default a promotion is an alert only: a human flips the fleet. ``min_stable_period`` is
the portfolio's ``shadow.min_stable_period``. A new shadow version in the portfolio needs
a new join (``join.version != model.shadow.version``).

Divergence. On each report the join also reads ``ShadowAgreement.diverged`` (the shadow
ranks requests unlike live: more often broken than better); a change raises or closes an
alert, event ``shadow_divergence``.

Points, measurement ``shadow`` (tags model, version), every ``report_every`` seconds of event
time and at the verdict: ``agreement``, ``delta_p05``, ``delta_p50``, ``delta_p95`` (shadow
minus live scores), ``spearman``, ``n_pairs`` (pairs seen), ``labelled_pairs``,
``loss_delta`` (mean shadow minus live loss: below zero the shadow loses less), ``lower``
and ``upper`` (the confidence sequence of ``loss_delta``), ``mean_improvement`` (live
minus shadow loss, the detector's sign), ``stable_for_s``, ``verdict``, and the counts
above. Undefined numbers (NaN before enough pairs) are left out.

Settings ``[detectors.shadow]``: ``pair_ttl``, ``label_ttl``, ``report_every`` (seconds),
``max_pending``, ``promote_command``, and the detectors' arguments as
``agreement_<argument>`` and ``promotion_<argument>`` (``max_trial_period`` in seconds).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from detectors.shadow.agreement import ShadowAgreement
from detectors.shadow.promotion import ShadowPromotion
from schemas.contracts import (
    ClassProbabilities,
    GroundTruth,
    Output,
    Prediction,
    Scalar,
    Score,
)
from streams.durations import format_duration
from streams.monitor.effects import Alert, FieldValue, Point, detector_alert, point
from streams.monitor.leak_watch import build_detector, split_settings
from streams.portfolio import Model, PortfolioError

__all__ = [
    "ShadowEffects",
    "ShadowJoin",
    "VerdictChange",
    "new_shadow_join",
    "observe",
    "observe_many",
]

DEFAULT_PAIR_TTL = 60.0
DEFAULT_REPORT_EVERY = 60.0
DEFAULT_MAX_PENDING = 10_000
_OWN_KEYS = ("pair_ttl", "label_ttl", "report_every", "max_pending", "promote_command")
VERDICT_SEVERITIES: Mapping[str, str] = {"promote": "informational", "reject": "warning"}

Probabilities = dict[str, float]


@dataclasses.dataclass
class _Request:
    """A request waiting for its other half, or, once paired, for its label."""

    predicted_at: float
    live: Probabilities | None = None
    shadow: Probabilities | None = None


@dataclasses.dataclass(frozen=True)
class VerdictChange:
    """The trial's decision: promote or reject the shadow, at event time ``at`` (seconds)."""

    at: float
    verdict: Literal["promote", "reject"]
    version: str
    lower: float
    upper: float
    mean_improvement: float
    labelled_pairs: int
    reason: str


@dataclasses.dataclass
class ShadowJoin:
    """Everything the shadow join remembers about one model; pickled into a table value."""

    model_id: str
    version: str
    agreement: ShadowAgreement
    promotion: ShadowPromotion
    pair_ttl_ms: float
    label_ttl_ms: float
    report_every_ms: float
    max_pending: int
    promote_command: bool
    # request_id -> request, in arrival order: waiting for the other half / for the label.
    halves: collections.OrderedDict[str, _Request] = dataclasses.field(
        default_factory=collections.OrderedDict
    )
    pairs: collections.OrderedDict[str, _Request] = dataclasses.field(
        default_factory=collections.OrderedDict
    )
    stream_time: float = -math.inf
    next_report_at: float = -math.inf
    decision: VerdictChange | None = None
    diverged: bool = False
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass(frozen=True)
class ShadowEffects:
    """What one record caused: points, alerts, and promotions to send as commands."""

    points: tuple[Point, ...] = ()
    alerts: tuple[Alert, ...] = ()
    promotions: tuple[VerdictChange, ...] = ()
    verdict: VerdictChange | None = None

    def __bool__(self) -> bool:
        return bool(self.points or self.alerts or self.promotions)


# What most records cause (read-only).
_NOTHING = ShadowEffects()


def new_shadow_join(model: Model) -> ShadowJoin:
    """A fresh join for ``model`` and its shadow.

    Raises
    ------
    PortfolioError
        When the model pairs no shadow, or its ``[detectors.shadow]`` settings do not fit.
    """
    key = "detectors.shadow"
    if model.shadow is None:
        raise PortfolioError(model.model_id, "shadow", "the model pairs no shadow")
    own, arguments = split_settings(model, "shadow", _OWN_KEYS, ("agreement", "promotion"))
    if "min_stable_period" in arguments["promotion"]:
        raise PortfolioError(
            model.model_id, f"{key}.promotion_min_stable_period", "set shadow.min_stable_period"
        )
    promotion = {
        **arguments["promotion"],
        "min_stable_period": model.shadow.min_stable_period.total_seconds(),
    }
    durations = {
        name: _seconds(model, f"{key}.{name}", own.get(name, default))
        for name, default in (
            ("pair_ttl", DEFAULT_PAIR_TTL),
            ("label_ttl", model.label_ttl.total_seconds()),
            ("report_every", DEFAULT_REPORT_EVERY),
        )
    }
    max_pending = own.get("max_pending", DEFAULT_MAX_PENDING)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise PortfolioError(model.model_id, f"{key}.max_pending", "expected an integer >= 1")
    promote_command = own.get("promote_command", False)
    if not isinstance(promote_command, bool):
        raise PortfolioError(model.model_id, f"{key}.promote_command", "expected true or false")
    return ShadowJoin(
        model_id=model.model_id,
        version=model.shadow.version,
        agreement=build_detector(
            model, f"{key}.agreement", ShadowAgreement, arguments["agreement"]
        ),
        promotion=build_detector(model, f"{key}.promotion", ShadowPromotion, promotion),
        pair_ttl_ms=durations["pair_ttl"] * 1000.0,
        label_ttl_ms=durations["label_ttl"] * 1000.0,
        report_every_ms=durations["report_every"] * 1000.0,
        max_pending=max_pending,
        promote_command=promote_command,
    )


def _seconds(model: Model, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise PortfolioError(model.model_id, key, f"expected seconds > 0, got {value!r}")
    return float(value)


def observe(model: Model, join: ShadowJoin, record: Prediction | GroundTruth) -> ShadowEffects:
    """Feed one prediction or ground truth of ``model``; returns what it caused.

    Mutates ``join``; the caller stores it back in the table.
    """
    return observe_many(model, join, [record])[0]


def observe_many(
    model: Model, join: ShadowJoin, records: Sequence[Prediction | GroundTruth]
) -> list[ShadowEffects]:
    """Feed a batch of ``model``'s predictions and ground truths; what each caused, as
    ``observe`` one by one gives it.

    The agreement detector is read only by a report, so its pairs wait for the next
    report, or the batch's end, and go in at once. The promotion's verdict is read after
    each of its labels until the trial is decided, so it takes them one by one; once it
    is decided, only a report reads it, and its labels wait and go in at once too.
    Mutates ``join``.
    """
    caused: list[ShadowEffects] = []
    pairs: list[tuple[float, float]] = []
    labels: list[tuple[float, float, float]] = []
    # Whether the verdict may have changed since it was last read: only a label fed to
    # the promotion changes it (and the first record reads it, as one by one).
    scored = True
    for record in records:
        # Expiry first, so that a request that timed out is not evicted for this one.
        if isinstance(record, Prediction):
            at = float(record.predicted_at)
            if at > join.stream_time:
                join.stream_time = at
            _expire(join)
            unused = _prediction(join, record, pairs)
        else:
            at = float(record.label_at)
            if at > join.stream_time:
                join.stream_time = at
            _expire(join)
            unused = _label(join, record, labels)
            scored = scored or unused is None
        if unused is not None:
            join.counts[unused] += 1
        change = None
        if scored:
            scored = False
            if join.decision is None and join.promotion.verdict != "keep_watching":
                change = join.decision = _decision(join)
        if change is None and join.stream_time < join.next_report_at:
            caused.append(_NOTHING)
            continue
        caused.append(_effects(model, join, pairs, labels, change))
    _feed(join, pairs, labels)
    return caused


def _effects(
    model: Model,
    join: ShadowJoin,
    pairs: list[tuple[float, float]],
    labels: list[tuple[float, float, float]],
    change: VerdictChange | None,
) -> ShadowEffects:
    """What a record that decided the trial (``change``) or reached the report time caused."""
    alerts: list[Alert] = []
    if change is not None:
        text = f"{model.model_id}: shadow {join.version}: {change.reason}"
        severity = VERDICT_SEVERITIES[change.verdict]
        alerts.append(
            detector_alert(
                model.model_id, model.owner, "shadow_verdict", severity, text, None, change.verdict
            )
        )
    _feed(join, pairs, labels)
    points = _report(join)
    step = join.report_every_ms
    join.next_report_at = (join.stream_time // step + 1) * step
    diverged = join.agreement.diverged
    if diverged != join.diverged:
        join.diverged = diverged
        alerts.append(_divergence_alert(model, join))
    promotions = (
        (change,) if change and change.verdict == "promote" and join.promote_command else ()
    )
    return ShadowEffects(tuple(points), tuple(alerts), promotions, change)


def _feed(
    join: ShadowJoin, pairs: list[tuple[float, float]], labels: list[tuple[float, float, float]]
) -> None:
    """Feed the pairs made since the agreement was last read to it, and the labels scored
    since the decided promotion was last read to it."""
    if pairs:
        join.agreement.update_many(pairs)
        pairs.clear()
    if labels:
        join.promotion.update_many(labels)
        labels.clear()


def _prediction(
    join: ShadowJoin, prediction: Prediction, pairs: list[tuple[float, float]]
) -> str | None:
    """Pairs ``prediction`` (a pair's scores go to ``pairs``, for the agreement); the name
    of the count it goes to when it cannot be paired."""
    role = prediction.role
    if role == "fallback":
        return None
    if role == "shadow" and prediction.model_version != join.version:
        return "other_versions"
    probabilities = _probabilities(prediction.output)
    if probabilities is None:
        return "unscored"
    request_id = prediction.request_id
    request = join.halves.get(request_id)
    if request is None and request_id in join.pairs:
        return "duplicates"
    if request is None:
        request = _Request(float(prediction.predicted_at))
        _add(join, join.halves, request_id, request, "evicted_halves")
    if getattr(request, role) is not None:
        return "duplicates"
    setattr(request, role, probabilities)
    if request.live is not None and request.shadow is not None:
        del join.halves[request_id]
        _add(join, join.pairs, request_id, request, "evicted_pairs")
        pairs.append((_positive(request.live), _positive(request.shadow)))
    return None


def _add(
    join: ShadowJoin,
    waiting: collections.OrderedDict[str, _Request],
    request_id: str,
    request: _Request,
    evicted: str,
) -> None:
    waiting[request_id] = request
    if len(waiting) > join.max_pending:
        waiting.popitem(last=False)
        join.counts[evicted] += 1


def _label(
    join: ShadowJoin, truth: GroundTruth, labels: list[tuple[float, float, float]]
) -> str | None:
    """Scores the pair ``truth`` labels (for the promotion, or for ``labels`` once the
    trial is decided); the name of the count it goes to when it cannot."""
    request = None if truth.request_id is None else join.pairs.pop(truth.request_id, None)
    if request is None or request.live is None or request.shadow is None:
        return "labels_unmatched"
    label = _label_class(truth.label)
    if label is None:
        return "labels_unusable"
    scored = (
        request.predicted_at / 1000.0,
        _loss(request.live, label),
        _loss(request.shadow, label),
    )
    if join.decision is None:
        join.promotion.update(scored)
    else:
        labels.append(scored)
    return None


def _expire(join: ShadowJoin) -> None:
    """Drops requests that waited longer than their TTL, oldest first."""
    # The oldest of each read here first: most records expire nothing.
    now, halves, pairs = join.stream_time, join.halves, join.pairs
    if halves and not next(iter(halves.values())).predicted_at + join.pair_ttl_ms >= now:
        _expire_from(join, halves, join.pair_ttl_ms, "expired_halves")
    if pairs and not next(iter(pairs.values())).predicted_at + join.label_ttl_ms >= now:
        _expire_from(join, pairs, join.label_ttl_ms, "expired_pairs")


def _expire_from(
    join: ShadowJoin, waiting: collections.OrderedDict[str, _Request], ttl: float, counter: str
) -> None:
    now = join.stream_time
    while waiting:
        request = next(iter(waiting.values()))
        if request.predicted_at + ttl >= now:
            break
        waiting.popitem(last=False)
        join.counts[counter] += 1


def _probabilities(output: Output) -> Probabilities | None:
    if isinstance(output, Score):
        score = output.score
        return {"0": 1.0 - score, "1": score} if 0.0 <= score <= 1.0 else None
    if isinstance(output, ClassProbabilities):
        return dict(output.probabilities)
    return None


def _positive(probabilities: Probabilities) -> float:
    return probabilities.get("1", math.nan)


def _label_class(label: Scalar) -> str | None:
    if isinstance(label, bool):
        return str(int(label))
    if isinstance(label, int | float) and float(label).is_integer():
        return str(int(label))
    if isinstance(label, str):
        return label
    return None


def _loss(probabilities: Probabilities, label: str) -> float:
    """Half the Brier score: in [0, 1], and (p - y)**2 for a binary score."""
    squares = sum((p - (k == label)) ** 2 for k, p in probabilities.items())
    if label not in probabilities:
        squares += 1.0
    return squares / 2.0


def _decision(join: ShadowJoin) -> VerdictChange:
    promotion = join.promotion
    verdict = promotion.verdict
    assert verdict != "keep_watching"
    lower, upper = promotion.lower, promotion.upper
    stable_for = format_duration(promotion.stable_for)
    if verdict == "promote":
        reason = (
            f"promote: loses less than live by {lower:.4f} to {upper:.4f} (Brier) "
            f"over {promotion.n_pairs} labelled requests and {stable_for}"
        )
    else:
        reason = (
            f"reject: improves on live by at most {upper:.4f} (Brier) "
            f"after {promotion.n_pairs} labelled requests and {stable_for}"
        )
    return VerdictChange(
        at=join.stream_time / 1000.0,
        verdict=verdict,
        version=join.version,
        lower=lower,
        upper=upper,
        mean_improvement=promotion.mean_improvement,
        labelled_pairs=promotion.n_pairs,
        reason=reason,
    )


def _report(join: ShadowJoin) -> list[Point]:
    agreement, promotion = join.agreement, join.promotion
    if not agreement.n_pairs and not promotion.n_pairs:
        return []
    numbers: dict[str, float] = {
        "agreement": agreement.agreement,
        "delta_p05": agreement.delta_p05,
        "delta_p50": agreement.delta_p50,
        "delta_p95": agreement.delta_p95,
        "spearman": agreement.spearman,
        "loss_delta": -promotion.mean_improvement,
        "lower": -promotion.upper,
        "upper": -promotion.lower,
        "mean_improvement": promotion.mean_improvement,
        "stable_for_s": promotion.stable_for,
    }
    fields: dict[str, FieldValue] = {k: v for k, v in numbers.items() if math.isfinite(v)}
    fields |= {
        "n_pairs": agreement.n_pairs,
        "labelled_pairs": promotion.n_pairs,
        "waiting_halves": len(join.halves),
        "waiting_pairs": len(join.pairs),
        "verdict": promotion.verdict if join.decision is None else join.decision.verdict,
        **join.counts,
    }
    tags = {"model": join.model_id, "version": join.version}
    return [point("shadow", tags, fields, int(join.stream_time))]


def _divergence_alert(model: Model, join: ShadowJoin) -> Alert:
    if join.diverged:
        spearman = join.agreement.spearman
        text = (
            f"{model.model_id}: shadow {join.version} ranks requests unlike live "
            f"(Spearman {spearman:.3f})"
        )
        return detector_alert(model.model_id, model.owner, "shadow_divergence", "warning", text)
    text = f"{model.model_id}: shadow {join.version} follows live again"
    return detector_alert(model.model_id, model.owner, "shadow_divergence", "normal", text)
