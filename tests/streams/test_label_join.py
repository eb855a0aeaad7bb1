"""The label join as pure code: predictions and labels in, evidence, counts and points out."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from detectors.performance.calibrated import METRICS
from detectors.performance.classification import ClassificationPerformance
from detectors.performance.ranking import PrecisionAtK
from detectors.performance.regression import RegressionPerformance
from schemas.contracts import ClassProbabilities, GroundTruth, Output, Prediction, Ranking, Score
from streams.monitor.held import entity_hash, request_hash
from streams.monitor.label_join import (
    JoinResult,
    LabelJoin,
    holds,
    new_join,
    observe,
    observe_label,
    observe_prediction,
)
from streams.portfolio import Model, PortfolioError, parse_portfolio
from tests.streams.test_watch import tracked

START_MS = 1_000_000
# label_delay 10 s: predictions wait LABEL_TTL_FACTOR * 10 s = 30 s for their label.
PORTFOLIO = """
[models.churn]
owner = "team-retention"
tier = "cpu"
fallback = "base_rate"
label_delay = "10s"
[models.churn.detectors.performance]
window = 500
reference_size = 500
labels_per_day = 2000
report_interval = 600
"""

Event = Prediction | GroundTruth


def model(extra: str = "") -> Model:
    found = parse_portfolio(PORTFOLIO + extra).get("churn")
    assert found is not None
    return found


def prediction(
    i: int,
    output: Output | float,
    *,
    role: str = "live",
    version: str = "v1",
    entity: str | None = None,
    at_ms: int | None = None,
) -> Prediction:
    return Prediction(
        schema_version=1,
        request_id=f"r{i}",
        model_id="churn",
        model_version=version,
        role=role,  # type: ignore[arg-type]
        entity_id=entity or f"u{i}",
        predicted_at=START_MS + i * 1000 if at_ms is None else at_ms,
        output=Score(score=output) if isinstance(output, float) else output,
        features={},
        latency_ms=1.0,
    )


def label(
    label_value: object,
    at_ms: int,
    *,
    request: int | None = None,
    entity: str | None = None,
) -> GroundTruth:
    return GroundTruth(
        schema_version=1,
        model_id="churn",
        label=label_value,  # type: ignore[arg-type]
        label_at=at_ms,
        request_id=None if request is None else f"r{request}",
        entity_id=entity,
    )


def classifier_stream(
    seed: int, n: int, shift_at: int, before: float = 0.1, after: float = 0.3
) -> list[Event]:
    """One prediction a second; its label 5 s later; the error rate rises at ``shift_at``."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    events: list[Event] = []
    for i in range(n):
        y = int(rng.random() < 0.5)
        wrong = rng.random() < (before if i < shift_at else after)
        confidence = float(np.clip(rng.normal(0.8, 0.1), 0.5, 0.999))
        events.append(prediction(i, confidence if (y == 1) != wrong else 1.0 - confidence))
        labels.append(y)
        if i >= 5:
            events.append(label(labels[i - 5], START_MS + i * 1000, request=i - 5))
    return events


def run(join: LabelJoin, events: list[Event]) -> list[tuple[int, JoinResult]]:
    return [(n, result) for n, event in enumerate(events) if (result := observe(join, event))]


def alarms(results: list[tuple[int, JoinResult]]) -> list[tuple[int, str]]:
    return [(n, e.detector) for n, result in results for e in result.evidence]


def test_a_rising_error_rate_raises_a_performance_drop_at_a_pinned_label() -> None:
    events = classifier_stream(seed=1, n=3000, shift_at=2000)
    join = new_join(model())
    results = run(join, events)
    # The error rate rises with prediction 2000 (event 3995); 100 labels later the alarm.
    assert alarms(results)[:2] == [(4204, "performance_drop"), (4204, "estimated_accuracy")]
    first = next(e for _, r in results for e in r.evidence)
    assert first.at == events[4204].label_at / 1000.0  # type: ignore[union-attr]
    assert first.alarm and first.alpha == pytest.approx(0.01 / 2 / 2000)
    assert first.details["metric"] == "accuracy" and first.details["version"] == "v1"
    assert first.details["value"] == pytest.approx(0.862)
    assert (join.joined, join.expired, join.unmatched, len(join.held)) == (2995, 0, 0, 5)


def test_silence_on_a_stationary_stream() -> None:
    join = new_join(model())
    assert alarms(run(join, classifier_stream(seed=2, n=6000, shift_at=10**9))) == []
    assert join.joined == 5995


def test_the_estimate_alarms_before_any_label_when_the_model_grows_unsure() -> None:
    rng = np.random.default_rng(5)
    confidences = np.concatenate([rng.uniform(0.85, 1.0, 1500), rng.uniform(0.5, 0.7, 500)])
    events: list[Event] = [prediction(i, float(c)) for i, c in enumerate(confidences)]
    found = [(n, e) for n, r in run(new_join(model()), events) for e in r.evidence]
    assert [(n, e.detector, e.details["source"]) for n, e in found][:1] == [
        (1520, "estimated_accuracy", "estimated")
    ]
    assert found[0][1].at == events[1520].predicted_at / 1000.0  # type: ignore[union-attr]


def test_ttl_expiry_is_counted_exactly() -> None:
    join = new_join(model())  # TTL 30 s
    events: list[Event] = [prediction(i, 0.9) for i in range(100)]  # t = 0 .. 99 s
    events.append(label(1, START_MS + 10_000, request=1))  # out of order: moves no clock
    run(join, events)
    # At t = 99 s the predictions of t < 69 s have waited more than 30 s.
    assert (join.expired, len(join.held), join.joined) == (69, 31, 0)
    observe_label(join, label(1, START_MS + 100_000, request=70))  # exactly the TTL: joins
    assert (join.expired, join.joined, join.unmatched) == (70, 1, 1)
    observe_prediction(join, prediction(5, 0.9))  # made at 5 s, arrives at 100 s
    assert (join.expired, len(join.held)) == (71, 29)


def test_unmatched_labels_are_counted() -> None:
    join = new_join(model())
    observe_prediction(join, prediction(0, 0.9, entity="alice"))
    observe_label(join, label(1, START_MS + 1000, request=7))  # no such request
    observe_label(join, label(1, START_MS + 1000, entity="bob"))  # no such entity
    observe_label(join, label(1, START_MS + 1000, request=0))  # joins
    observe_label(join, label(1, START_MS + 2000, request=0))  # already joined
    assert (join.labels, join.joined, join.unmatched) == (4, 1, 3)


def test_holds_says_whether_a_label_would_join_now_and_changes_nothing() -> None:
    join = new_join(model())
    observe_prediction(join, prediction(0, 0.9, entity="alice"))
    assert holds(join, label(1, START_MS + 1000, request=0))
    assert holds(join, label(1, START_MS + 1000, request=0, entity="alice"))
    # By entity alone, the latest prediction before the label may not have been read yet.
    assert not holds(join, label(1, START_MS + 1000, entity="alice"))
    assert not holds(join, label(1, START_MS + 1000, request=7))
    assert not holds(join, label(1, START_MS + 1000, request=7, entity="alice"))
    assert not holds(join, label(1, START_MS + 1000, entity="bob"))
    assert (join.labels, join.joined, join.unmatched, len(join.held)) == (0, 0, 0, 1)


def test_entity_labels_join_the_latest_prediction_made_before_them() -> None:
    join = new_join(model())
    for i, at in enumerate((1_000, 5_000, 9_000)):
        observe_prediction(join, prediction(i, 0.9, entity="alice", at_ms=START_MS + at))
    result = observe_label(join, label(1, START_MS + 6_000, entity="alice"))
    assert result.joined == 1
    r0, r2 = request_hash("r0"), request_hash("r2")
    assert [key[1] for key in join.held] == [r0, r2]  # r1 (5 s) was joined
    assert join.streams[("live", "v1")].delay.p50 == pytest.approx(1.0, rel=0.01)
    join = pickle.loads(pickle.dumps(join))  # the key index is rebuilt on load
    assert [h.request for h in join.held.of_entity("alice")] == [r0, r2]
    # A label naming a request nobody holds is that request's: it takes no prediction of
    # its entity's. One by entity before every prediction of the entity matches none.
    assert observe_label(join, label(1, START_MS + 9_500, request=99, entity="alice")).joined == 0
    assert observe_label(join, label(1, START_MS + 500, entity="alice")).joined == 0
    assert observe_label(join, label(1, START_MS + 9_600, entity="alice")).joined == 1
    assert (join.joined, join.unmatched, [k[1] for k in join.held]) == (2, 2, [r0])


def test_one_label_scores_every_role_separately_and_only_live_reaches_health() -> None:
    join = new_join(model())
    events: list[Event] = []
    rng = np.random.default_rng(3)
    for i in range(3000):
        y = int(rng.random() < 0.5)
        good = 0.9 if y else 0.1
        bad = good if (i < 2000 or rng.random() < 0.5) else 1.0 - good
        events.append(prediction(i, good))
        events.append(prediction(i, bad, role="shadow", version="v2"))
        events.append(label(y, START_MS + i * 1000 + 500, request=i))
    found = alarms(run(join, events))
    assert found == []  # the shadow got worse; the live model did not
    live, shadow = join.streams[("live", "v1")], join.streams[("shadow", "v2")]
    assert live.metric is not None and shadow.metric is not None
    assert (live.metric.n_labels, shadow.metric.n_labels, join.joined) == (3000, 3000, 6000)
    assert (live.alarms, shadow.alarms > 0) == (0, True)


def test_pickle_round_trip_mid_stream_continues_identically() -> None:
    events = classifier_stream(seed=1, n=3000, shift_at=2000)
    original = new_join(model())
    run(original, events[:3000])
    restored = pickle.loads(pickle.dumps(original, pickle.HIGHEST_PROTOCOL))
    after = run(restored, events[3000:])
    assert after == run(original, events[3000:])
    assert alarms(after)[0] == (1204, "performance_drop")  # event 4204 of the whole stream
    assert sum(bool(r.points) for _, r in after) == 2  # 1,500 s of events, one per 600 s


def test_memory_is_bounded_and_what_leaves_is_counted() -> None:
    join = new_join(model("max_held = 100\nmax_streams = 2\n"))
    run(join, [prediction(i, 0.9, at_ms=START_MS) for i in range(1000)])
    # Four halvings: a sixteenth of the entities is held, the others' predictions let go.
    assert (len(join.held), join.held.unsampled, join.evicted, join.expired) == (56, 944, 0, 0)
    assert len(list(join.held)) == 56 and join.held.fraction == 1 / 16
    assert observe_label(join, label(1, START_MS, request=999, entity="u999")).joined == 0
    assert observe_label(join, label(1, START_MS, request=983, entity="u983")).joined == 1
    assert observe_label(join, label(1, START_MS, request=983, entity="u983")).joined == 0
    assert (join.unsampled_labels, join.unmatched) == (1, 1)
    # One entity fills the table: no halving could make room, the oldest are evicted.
    one = new_join(model("max_held = 100\n"))
    run(one, [prediction(i, 0.9, entity="u", at_ms=START_MS) for i in range(300)])
    assert (len(one.held), one.evicted, one.held.unsampled, one.held.fraction) == (100, 200, 0, 1)
    small = len(pickle.dumps(join))
    run(join, [prediction(i, 0.9, at_ms=START_MS) for i in range(1000, 5000)])
    assert len(pickle.dumps(join)) < small * 1.2
    for n, version in enumerate(("v2", "v3", "v4")):
        observe_prediction(join, prediction(9000 + n, 0.9, version=version, at_ms=START_MS))
    assert (len(join.streams), join.evicted_streams) == (2, 2)


def test_a_redelivered_prediction_is_held_once() -> None:
    join = new_join(model())
    observe_prediction(join, prediction(0, 0.9))
    observe_prediction(join, prediction(0, 0.9))
    assert (len(join.held), join.duplicates) == (1, 1)


def test_points_on_a_cadence_with_the_documented_schema() -> None:
    join = new_join(model())
    results = run(join, classifier_stream(seed=2, n=1900, shift_at=10**9))
    reports = [(n, r.points) for n, r in results if r.points]
    # The clock starts at 0 s and reports every 600 s of event time.
    assert [points[0].time_ms - START_MS for _, points in reports] == [
        600_000,
        1_200_000,
        1_800_000,
    ]
    last = {p.tags["detector"]: p for p in reports[-1][1]}
    assert set(last) == {
        "label_join",
        "accuracy",
        "log_loss",
        "auc",
        "estimated_accuracy",
        "calibrated",
        "label_delay",
    }
    assert all(p.measurement == "performance" for p in last.values())
    assert last["label_join"].tags == {"model": "churn", "detector": "label_join"}
    assert last["label_join"].fields["joined"] == 1795
    assert last["accuracy"].tags == {
        "model": "churn",
        "version": "v1",
        "role": "live",
        "detector": "accuracy",
    }
    assert last["accuracy"].fields["labels"] == 1795
    assert 0.85 < float(last["accuracy"].fields["value"]) < 0.95
    assert last["estimated_accuracy"].fields["source"] == "measured"
    # The calibrated estimate, at the model's threshold, beside what labels measure.
    calibrated = last["calibrated"].fields
    metrics = ("accuracy", "precision", "recall", "f1", "auc")
    assert {f"{side}_{m}" for side in ("estimated", "measured") for m in metrics} <= set(calibrated)
    assert calibrated["estimated_accuracy"] == pytest.approx(
        calibrated["measured_accuracy"], abs=0.05
    )
    assert calibrated["measured_accuracy"] == pytest.approx(
        last["accuracy"].fields["value"], abs=0.05
    )
    assert (calibrated["labels"], calibrated["alarms"]) == (1795, 0)
    assert last["label_delay"].fields["p50_s"] == pytest.approx(5.0, rel=0.01)


def test_a_chunk_whose_calibrated_accuracy_drops_is_evidence_before_any_label() -> None:
    # Calibrated on confident, 90% right predictions; then the inputs move to where the
    # model is unsure (scores near 0.5) and no label arrives: only the estimate can tell.
    join = new_join(model())
    run(join, classifier_stream(seed=4, n=2000, shift_at=10**9))
    rng = np.random.default_rng(5)
    unsure = [
        prediction(2000 + i, float(rng.uniform(0.45, 0.55)), at_ms=START_MS + (2000 + i) * 1000)
        for i in range(1000)
    ]
    found = [(n, e) for n, result in run(join, unsure) for e in result.evidence]
    calibrated = [(n, e) for n, e in found if e.detector == "estimated_performance"]
    # The calibrated estimate speaks once per chunk of ``window`` (500) predictions.
    assert [n for n, _ in calibrated] == [499, 999]
    evidence = calibrated[0][1]
    assert evidence.alarm and evidence.alpha is None and not evidence.material
    assert evidence.details["estimated_accuracy"] < evidence.details["reference_accuracy"] - 0.02


def test_each_output_kind_gets_its_metric() -> None:
    join = new_join(model())
    probabilities = ClassProbabilities({"false": 0.2, "true": 0.8})
    observe_prediction(join, prediction(0, probabilities, version="binary"))
    observe_prediction(join, prediction(1, ClassProbabilities({"a": 0.1, "b": 0.2, "c": 0.7})))
    observe_prediction(
        join, prediction(2, Ranking(items=[f"i{k}" for k in range(50)]), role="shadow")
    )
    observe_label(join, label(True, START_MS + 3000, request=0))
    observe_label(join, label("c", START_MS + 3000, request=1))
    observe_label(join, label("i3", START_MS + 3000, request=2))
    binary, multi = join.streams[("live", "binary")], join.streams[("live", "v1")]
    ranking = join.streams[("shadow", "v1")]
    assert isinstance(binary.metric, ClassificationPerformance) and binary.metric.accuracy == 1.0
    assert multi.metric is None and multi.estimate is not None
    assert multi.estimate.observed_accuracy == 1.0
    assert isinstance(ranking.metric, PrecisionAtK)
    assert ranking.metric.precision_at_k == pytest.approx(0.1)  # 1 relevant item of k = 10
    assert len(join.held) == 0
    numbered = ClassProbabilities({"0": 0.3, "1": 0.7})
    for i, y in enumerate((1, True, "1", 1.0, "0", "yes", None)):
        observe_prediction(join, prediction(10 + i, numbered, version="numbered"))
        observe_label(join, label(y, START_MS + 20_000, request=10 + i))
    numbered_stream = join.streams[("live", "numbered")]
    assert isinstance(numbered_stream.metric, ClassificationPerformance)
    assert numbered_stream.estimate is not None
    assert (numbered_stream.metric.n_labels, numbered_stream.metric.accuracy) == (5, 0.8)
    assert (numbered_stream.metric.n_ignored, numbered_stream.estimate.n_ignored) == (2, 2)


def test_a_label_that_does_not_fit_the_output_is_ignored_not_raised() -> None:
    join = new_join(model())
    observe_prediction(join, prediction(0, 0.9))
    observe_label(join, label("churned", START_MS + 1000, request=0))
    stream = join.streams[("live", "v1")]
    assert stream.metric is not None and stream.estimate is not None
    assert (stream.metric.n_ignored, stream.estimate.n_ignored, join.joined) == (1, 1, 1)


@pytest.mark.parametrize("value", [None, float("nan"), "1", 2, 0.5])
def test_a_score_s_label_that_is_no_class_is_ignored_not_a_prediction(value: object) -> None:
    # A score's inputs take a short path of their own (``JoinBatch._enqueue``): a label
    # of None must not reach the estimates as a new prediction's (its own None).
    join = new_join(model())
    observe_prediction(join, prediction(0, 0.9))
    observe_label(join, label(value, START_MS + 1000, request=0))
    stream = join.streams[("live", "v1")]
    metric, estimate, calibrated = stream.metric, stream.estimate, stream.calibrated
    assert metric is not None and estimate is not None and calibrated is not None
    assert (metric.n_ignored, metric.n_labels) == (1, 0)
    assert (estimate.n_ignored, estimate.n_predictions, estimate.n_labels) == (1, 1, 0)
    assert (calibrated.n_ignored, calibrated.n_predictions, calibrated.n_labels) == (1, 1, 0)


def test_regression_task() -> None:
    join = new_join(model('task = "regression"\nerror_cap = 10.0\n'))
    observe_prediction(join, prediction(0, 12.0))
    observe_label(join, label(10.0, START_MS + 1000, request=0))
    stream = join.streams[("live", "v1")]
    assert stream.estimate is None
    assert isinstance(stream.metric, RegressionPerformance)
    assert stream.metric.mae == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('task = "ranking"\n', "detectors.performance.task"),
        ("max_held = 0\n", "detectors.performance.max_held"),
        ("tolerence = 0.1\n", "detectors.performance.tolerence"),
        ("tolerance = 2.0\n", "detectors.performance"),
        ("false_fallbacks_per_model_day = 1.5\n", "detectors.performance"),
    ],
)
def test_bad_settings_name_the_model_and_key(extra: str, key: str) -> None:
    with pytest.raises(PortfolioError) as raised:
        new_join(model(extra))
    assert (raised.value.model, raised.value.key) == ("churn", key)


def test_a_fresh_join_pickles_small() -> None:
    # Its detector prototypes preallocate windows and a 5,000-label calibration ring; the
    # zeros of rings not yet filled stay out of the checkpoint (114 KB before).
    assert len(pickle.dumps(new_join(model()), pickle.HIGHEST_PROTOCOL)) < 10_000


def test_a_join_holds_no_detector_before_its_first_stream() -> None:
    # The streams' detectors are built from the settings; prototypes of them, kept in the
    # state, took 7,039 bytes of its checkpoint.
    assert len(pickle.dumps(new_join(model()), pickle.HIGHEST_PROTOCOL)) < 2_000


def fast_stream(seed: int, n: int) -> list[Event]:
    """50 predictions a second, of entities drawn from 100,000, each labelled 10 s later by
    request and entity: 500 predictions wait for their labels at any time."""
    rng = np.random.default_rng(seed)
    entities = rng.integers(0, 100_000, n)
    events: list[Event] = []
    for i in range(n):
        at = START_MS + i * 20
        events.append(prediction(i, float(rng.random()), entity=f"u{entities[i]}", at_ms=at))
        if i >= 500:
            j = i - 500
            events.append(label(j % 2, at, request=j, entity=f"u{entities[j]}"))
    return events


def test_a_model_far_above_the_cap_keeps_joining_a_sample() -> None:
    join = new_join(model("max_held = 200\n"))
    run(join, fast_stream(seed=4, n=20_000))
    # Evicting the oldest held the last 4 s, and every label (10 s late) found its
    # prediction gone; the sample holds a quarter of the entities, whose labels all join.
    assert join.held.fraction == 0.25
    assert (join.labels, join.joined, join.unmatched, join.evicted) == (19_500, 4_869, 0, 0)
    assert join.unsampled_labels == 19_500 - 4_869
    assert join.streams[("live", "v1")].delay.n == 4_869


def test_labels_by_entity_match_the_right_prediction_under_sampling() -> None:
    join = new_join(model("max_held = 8\n"))
    # Two predictions of each of 12 entities, 12 s apart: the sample halves twice.
    run(join, [prediction(i, 0.9, entity=f"u{i % 12}") for i in range(24)])
    assert (join.held.fraction, join.held.unsampled, join.evicted) == (0.25, 20, 0)
    kept = [e for e in range(12) if join.held.samples(entity_hash(f"u{e}"))]
    assert kept == [2, 10]
    # Sampling by entity kept each entity's two predictions together, so a label by entity
    # matches the latest made at or before it: u2's at 5 s the first, u10's at 30 s the
    # second.
    assert observe_label(join, label(1, START_MS + 5_000, entity="u2")).joined == 1
    assert observe_label(join, label(1, START_MS + 30_000, entity="u10")).joined == 1
    assert [k[1] for k in join.held] == [request_hash("r10"), request_hash("r14")]
    assert observe_label(join, label(1, START_MS + 30_000, entity="u0")).joined == 0
    assert (join.joined, join.unsampled_labels, join.unmatched) == (2, 1, 0)


def test_a_restored_join_gives_the_garbage_collector_no_list_of_its_detectors() -> None:
    original = new_join(model())
    run(original, classifier_stream(seed=1, n=3000, shift_at=2000))
    restored = pickle.loads(pickle.dumps(original, pickle.HIGHEST_PROTOCOL))
    # The performance detectors' last batch's alarms and their drop alarms' CUSUMs and
    # bets are tuples, replaced per update: untracked, and then so are the four drop
    # alarms' dicts (as lists they were 14 objects more and kept those dicts tracked).
    # The lists left are the held predictions' table's. The join's fields are slots, and
    # the detectors and the table keep their objects in slots and their numbers in a dict
    # the collector stops tracking: the dict left is the join's of streams (there were 8).
    found = tracked(restored)
    assert (found["list"], found["dict"], found.total()) == (3, 1, 20)


def test_a_report_leaves_out_what_is_not_known_yet() -> None:
    """A metric whose value is NaN gives no point, and a field that is NaN is left out:
    before any label, no metric of labels and no label delay; with labels of one class,
    no ROC AUC."""
    for labelled, detectors in (
        (False, ["label_join", "estimated_accuracy", "calibrated"]),
        (
            True,
            [
                "label_join",
                "accuracy",
                "log_loss",
                "estimated_accuracy",
                "calibrated",
                "label_delay",
            ],
        ),
    ):
        join = new_join(model())
        events: list[Event] = []
        for i in range(700):  # past the first report, at 600 s
            events.append(prediction(i, 0.9))
            if labelled and i >= 5:
                events.append(label(1, START_MS + i * 1000, request=i - 5))
        points = [p for _, result in run(join, events) for p in result.points]
        assert [p.tags["detector"] for p in points] == detectors
        assert all(value == value for p in points for value in p.fields.values())
        calibrated = next(p.fields for p in points if p.tags["detector"] == "calibrated")
        known = [f"{side}_{m}" for side in ("estimated", "measured") for m in METRICS if m != "auc"]
        assert list(calibrated) == [
            *([*known, "reference_accuracy", "calibration_gap"] if labelled else []),
            "chunks",
            "labels",
            "alarms",
        ]
