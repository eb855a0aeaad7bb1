"""The watch's batch paths give exactly what one prediction at a time gives."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any
from unittest import mock

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.drift.bernoulli_cusum import BernoulliCUSUM
from detectors.drift.residual_cusum import ResidualCUSUM
from detectors.health.evidence import Evidence
from schemas.contracts import FeatureSeen
from streams.monitor import Batch, Monitor
from streams.monitor import watch as watch_module
from streams.monitor.watch import (
    OUTPUT_REPORT_EVERY,
    OutputDetector,
    ScoreDetector,
    detect,
    new_watch,
    observe,
)
from streams.portfolio import parse_portfolio
from tests.detectors.batching import attributes, batches, cuts, same_state, state_difference
from tests.streams.test_watch import (
    SMALL,
    few_scores_a_clear_after,
    score_episode_outlasting_its_fallback,
    shifted_then_normal,
    small_model,
    stream,
    with_future_value,
)


def score_detector() -> ScoreDetector:
    # A short reference and a loose level: alarms, episodes and renewals within a few
    # hundred scores.
    return ScoreDetector(ResidualCUSUM(alpha=1e-4, warm_up=30, max_reference=60, refit_every=5))


def score_stream(
    seed: int, size: int, shift_at: int, shift: float, holes: list[int]
) -> list[float]:
    """Normal scores shifted by ``shift`` from ``shift_at`` on, with NaN and infinities at
    ``holes``, and a stuck stretch (all equal) after the shift."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, size) + np.where(np.arange(size) >= shift_at, shift, 0.0)
    values[shift_at + 100 : shift_at + 160] = 0.5
    out = values.tolist()
    for n, hole in enumerate(holes):
        out[hole % size] = (math.nan, math.inf, -math.inf)[n % 3]
    return out


def judged_one_by_one(detector: ScoreDetector, values: list[float]) -> list[Evidence | None]:
    found = []
    for n, value in enumerate(values):
        read = detector.feed(value)
        found.append(None if read is None else detector.judge("score", read, float(n)))
    return found


def judged_in_batches(
    detector: ScoreDetector, values: list[float], at: list[int]
) -> list[Evidence | None]:
    found: list[Evidence | None] = []
    for batch in batches(values, at):
        reads = detector.feed_many(list(batch), range(len(batch)))
        for k in range(len(batch)):
            read = reads.get(k)
            n = float(len(found))
            found.append(None if read is None else detector.judge("score", read, n))
    return found


def running(detector: ScoreDetector) -> dict[str, Any]:
    """The score detector's state, less the positions of the last batch's alarms."""
    state = attributes(detector)
    state["detector"] = {
        k: v for k, v in attributes(detector.detector).items() if k != "_detections"
    }
    return state


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    size=st.integers(OUTPUT_REPORT_EVERY - 200, OUTPUT_REPORT_EVERY + 200),
    shift_at=st.integers(20, 650),
    shift=st.sampled_from([0.0, 0.6, 3.0, -2.0]),
    holes=st.lists(st.integers(0, 10_000), max_size=8),
    data=st.data(),
)
def test_scores_fed_in_any_batches_are_judged_as_one_by_one(
    seed: int, size: int, shift_at: int, shift: float, holes: list[int], data: st.DataObject
) -> None:
    values = score_stream(seed, size, shift_at, shift, holes)
    at = data.draw(cuts(size))
    expected = score_detector()
    one_by_one = judged_one_by_one(expected, values)
    batched = score_detector()
    assert judged_in_batches(batched, values, at) == one_by_one
    assert same_state(running(batched), running(expected)), state_difference(
        running(batched), running(expected)
    )


def test_a_score_stream_in_batches_reports_alarms_and_renews_as_one_by_one() -> None:
    # Shifted by three standard deviations at 560, stuck from 660.
    values = score_stream(3, 700, 560, 3.0, [5, 300, 301, 640])
    one_by_one = judged_one_by_one(score_detector(), values)
    found = [(n, e.alarm, e.details.get("cause")) for n, e in enumerate(one_by_one) if e]
    # The report of the 500th score (three holes before it), read at the end of a stretch.
    assert found[0] == (502, False, None)
    alarms = [(n, cause) for n, alarm, cause in found if alarm and cause != "sustained"]
    assert alarms == [(566, "mean_up"), (663, "mean_down")]
    for at in ([], [20, 100, 502, 503, 600], [560, 570, 571]):
        assert judged_in_batches(score_detector(), values, at) == one_by_one, at


def test_a_monitor_holds_heartbeats_only_while_they_change_nothing_but_time() -> None:
    """A model that falls back, probes and is restored: the monitor's batches leave its
    policy and every effect as ``observe`` one prediction at a time does."""
    model = small_model()
    records = shifted_then_normal(7)
    watch = new_watch(model)
    expected = [(n, o) for n, p in enumerate(records) if (o := observe(watch, p))]
    transitions = [t for _, o in expected for t in o.transitions]
    assert [t.to_state.value for t in transitions] == ["degraded", "fallback", "probing", "healthy"]
    monitor = Monitor(model)
    seen = []
    for start in range(0, len(records), 300):
        effects = monitor.observe(Batch.from_records(model.model_id, records[start : start + 300]))
        seen += effects.transitions
    assert seen == transitions
    assert same_state(monitor.watch.policy, watch.policy), state_difference(
        monitor.watch.policy, watch.policy
    )
    assert monitor.watch.policy.since == watch.policy.since
    # Nothing held is left for a checkpoint.
    assert "_held" not in pickle.loads(monitor.dumps()).__dict__


def test_a_restore_inside_a_batch_ends_the_held_heartbeats_there() -> None:
    predictions = score_episode_outlasting_its_fallback(2000)
    model = small_model()
    watch = new_watch(model)
    expected = [o for p in predictions if (o := observe(watch, p))]
    assert [a.action for o in expected for a in o.actions] == ["fallback", "restore"]
    monitor = Monitor(model)
    commands = []
    for start in range(0, len(predictions), 500):
        batch = Batch.from_records(model.model_id, predictions[start : start + 500])
        commands += monitor.observe(batch).commands
    assert [(c.action, c.issued_at) for c in commands] == [
        (a.action, int(a.at * 1000)) for o in expected for a in o.actions
    ]
    assert same_state(monitor.watch.policy, watch.policy)
    assert same_state(running(monitor.watch.output.score), running(watch.output.score))


def test_heartbeats_held_from_a_quiet_batch_leave_the_policy_as_one_by_one() -> None:
    """The first heartbeat starts the policy's clock; a late prediction's critical
    evidence counts at the latest time the heartbeats before it reached."""
    model = small_model()
    normal = stream(np.random.default_rng(3), 0, 100, 0.0)
    late = msgspec.structs.replace(normal[99], predicted_at=normal[0].predicted_at - 50_000)
    records = with_future_value([*normal[:99], late], 99, skew_ms=3_600_000)
    watch = new_watch(model)
    expected = [o for p in records if (o := observe(watch, p))]
    [fallback] = [a for o in expected for a in o.actions]
    assert fallback.at * 1000 == normal[98].predicted_at
    monitor = Monitor(model)
    quiet = monitor.observe(Batch.from_records(model.model_id, records[:50]))
    assert not quiet.transitions
    assert monitor.watch.policy.since == normal[0].predicted_at / 1000
    effects = monitor.observe(Batch.from_records(model.model_id, records[50:]))
    assert [c.issued_at for c in effects.commands] == [normal[98].predicted_at]
    assert same_state(monitor.watch.policy, watch.policy)


@settings(max_examples=40, deadline=None)
@given(
    futures=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(["age", "country"])), max_size=6
    ),
    reordered=st.lists(st.integers(0, 59), max_size=2),
    at=cuts(60, 4),
)
def test_values_from_the_future_in_batches_are_the_evidence_one_by_one(
    futures: list[tuple[int, str]], reordered: list[int], at: list[int]
) -> None:
    # Values from the future in either feature (the grid of a batch whose predictions
    # serve the same features in the same order), and predictions that serve them in
    # the other order (the rows of one).
    records = stream(np.random.default_rng(5), 0, 60, 0.0)
    for n, name in futures:
        p = records[n]
        seen = FeatureSeen(p.features[name].value, p.predicted_at + 3_600_000 + n)
        records[n] = msgspec.structs.replace(p, features=p.features | {name: seen})
    for n in reordered:
        records[n] = msgspec.structs.replace(
            records[n], features=dict(reversed(records[n].features.items()))
        )
    one = new_watch(small_model())
    expected = [observe(one, p).evidence for p in records]
    watch = new_watch(small_model())
    found: list[tuple[Evidence, ...]] = []
    for number, batch in enumerate(batches(records, at)):
        # Every other batch with the features its predictions all serve, as the monitor
        # hands them in (``Batch.served_features``).
        every = Batch.from_records("m", batch).served_features if number % 2 else None
        share = detect(watch, list(batch), every)
        found.extend(observe(watch, p, share.share(k)).evidence for k, p in enumerate(batch))
    assert found == expected
    # A batch's last value from the future holds its timestamps as numpy's ints.
    assert watch.future.last_future_value == one.future.last_future_value
    watch.future._last = one.future._last
    assert same_state(watch, one), state_difference(watch, one)


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.lists(st.booleans(), max_size=30),
    values=st.lists(st.booleans(), max_size=120),
    rate=st.sampled_from([None, 0.1, 0.3]),
    every=st.integers(1, 40),
)
def test_the_error_rate_takes_a_run_up_to_its_first_evidence_as_one_by_one(
    prefix: list[bool], values: list[bool], rate: float | None, every: int
) -> None:
    # A short warm-up, a low threshold and frequent reports: runs end at the warm-up's
    # end, at alarms (each bringing the frozen detector back) and at reports.
    with mock.patch.object(watch_module, "OUTPUT_REPORT_EVERY", every):
        one = OutputDetector(
            BernoulliCUSUM(warm_up=10, odds_ratio=4.0, threshold=2.0, reference_rate=rate)
        )
        for x in prefix:
            one.update("error_rate", x, 0.0)
        many = copy.deepcopy(one)
        rest = np.array(values, dtype=bool)
        while True:
            fed = many.update_many(rest)
            assert [one.update("error_rate", x, 0.0) for x in values[:fed]] == [None] * fed
            assert same_state(many, one), state_difference(many, one)
            if fed == len(rest):
                break
            # The input the run stopped at gives its evidence through ``update``.
            evidence = many.update("error_rate", values[fed], 0.0)
            assert evidence is not None
            assert evidence == one.update("error_rate", values[fed], 0.0)
            values, rest = values[fed + 1 :], rest[fed + 1 :]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    missing=st.lists(st.integers(0, 119), max_size=12),
    at=st.one_of(cuts(120), st.just(list(range(1, 120)))),
)
def test_drift_in_batches_of_detect_is_each_feature_one_by_one(
    seed: int, missing: list[int], at: list[int]
) -> None:
    # Windows of 20 after a reference of 30, a shift halfway: alarms within 120
    # predictions. A batch of one prediction takes its own path (a value per feature, no
    # columns), so the batches are also all of one; a feature a prediction does not carry
    # is None to its test.
    small = SMALL.replace(
        "window_size = 500\nreference_size = 1000", "window_size = 20\nreference_size = 30"
    )
    model = parse_portfolio(small).models["ranker"]
    rng = np.random.default_rng(seed)
    predictions = stream(rng, 0, 60, 0.0) + stream(rng, 60, 60, 15.0)
    for n in missing:
        dropped = ("age", "country")[n % 2]
        features = {k: v for k, v in predictions[n].features.items() if k != dropped}
        predictions[n] = msgspec.structs.replace(predictions[n], features=features)
    one = new_watch(model).drift
    expected = []
    for n, prediction in enumerate(predictions):
        for name in list(one.features):
            seen = prediction.features.get(name)
            windows = one.update(name, None if seen is None else seen.value)
            expected += [(n, name, statistic, drift) for _, statistic, _, drift, _ in windows]
    assert expected, "the shift must complete windows, or the batches are compared on nothing"
    watch = new_watch(model)
    found = []
    start = 0
    for batch in batches(predictions, at):
        after = detect(watch, list(batch)).after
        for k in range(len(batch)):
            found += [
                (start + k, e.feature, e.details["statistic"], e.alarm) for e in after.get(k, ())
            ]
        start += len(batch)
    assert found == expected
    assert watch.drift.skipped_values() == one.skipped_values()


def test_batches_of_a_few_scores_a_clear_after_look_as_one_by_one() -> None:
    # The score's looks that half a clear_after brings, in an episode, as one by one.
    records = few_scores_a_clear_after()
    model = small_model()
    watch = new_watch(model)
    expected = [(a.action, a.at) for p in records if (o := observe(watch, p)) for a in o.actions]
    assert expected == [("fallback", records[3023].predicted_at / 1000.0)]
    for size in (7, 64, 500):
        monitor = Monitor(model)
        commands = [
            command
            for start in range(0, len(records), size)
            for command in monitor.observe(
                Batch.from_records(model.model_id, records[start : start + size])
            ).commands
        ]
        assert [(c.action, c.issued_at / 1000.0) for c in commands] == expected
        assert same_state(monitor.watch.policy, watch.policy)
        assert monitor.watch.output is not None and watch.output is not None
        assert same_state(running(monitor.watch.output.score), running(watch.output.score))
