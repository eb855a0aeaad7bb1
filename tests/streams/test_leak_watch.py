"""A model's leak watch as pure code: writes, predictions and labels in, effects out."""

from __future__ import annotations

import gc
import math
import operator
import pickle
import types
from collections.abc import Iterator, Mapping
from typing import Any, cast
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors._batch import SMALL_BATCH
from detectors.leaks.availability_gap import AvailabilityGap
from detectors.leaks.events import WriteColumns, request_hash, write_columns
from schemas.contracts import FeatureSeen, FeatureWrite, GroundTruth, Prediction, Score
from streams.monitor import leak_watch
from streams.monitor.batch import Batch
from streams.monitor.leak_watch import (
    _SUB,
    LeakEffects,
    LeakWatch,
    RequestMap,
    _lag_windows,
    _window_evidence,
    new_leak_watch,
    observe,
    observe_batch,
    observe_many,
)
from streams.monitor.watch import new_watch
from streams.portfolio import Model, PortfolioError, parse_portfolio
from tests.benchmarks.bench_monitor_replay import synthetic_portfolio
from tests.detectors.batching import state_difference

Record = FeatureWrite | Prediction | GroundTruth

CHURN = """
[models.churn]
owner = "team-retention"
tier = "cpu"
fallback = "keep_all"
label_delay = "1h"
[models.churn.features]
last_login_date = { kind = "numeric", write_lag_sla = "30s" }
plan = "categorical"
balance = "numeric"
"""


def churn_model(leaks: str = "") -> Model:
    model = parse_portfolio(CHURN + leaks).get("churn")
    assert model is not None
    return model


def write(entity: str, feature: str, value: object, event_at: float, written_at: float) -> Record:
    return FeatureWrite(
        schema_version=1,
        entity_id=entity,
        feature=feature,
        value=value,  # type: ignore[arg-type]
        event_at=int(event_at),
        written_at=int(written_at),
        source="store",
    )


def label(entity: str | None, value: object, label_at: float, request: str | None = None) -> Record:
    return GroundTruth(
        schema_version=1,
        model_id="churn",
        label=value,  # type: ignore[arg-type]
        label_at=int(label_at),
        entity_id=entity,
        request_id=request,
    )


def prediction(
    request: str, entity: str, at: float, seen: Mapping[str, tuple[object, float]]
) -> Record:
    return Prediction(
        schema_version=1,
        request_id=request,
        model_id="churn",
        model_version="v1",
        role="live",
        entity_id=entity,
        predicted_at=int(at),
        output=Score(score=0.5),
        features={name: FeatureSeen(v, int(w)) for name, (v, w) in seen.items()},  # type: ignore[arg-type]
        latency_ms=1.0,
    )


def churn_stream(seed: int, count: int, leak: bool = True) -> list[Record]:
    """Users log in at random; a churner's ``last_login_date`` is nulled when they cancel
    (if ``leak``); ``plan`` tells churners apart by value, not by when it is written."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    now = 1_000_000_000.0
    for _ in range(count):
        user = f"u{int(rng.integers(500))}"
        churner = int(user[1:]) % 3 == 0
        now += rng.exponential(60_000.0)
        if rng.random() < 0.8:
            records.append(write(user, "last_login_date", now, now, now + 1_000))
            records.append(write(user, "plan", "free" if churner else "pro", now, now + 1_000))
            continue
        if churner and leak:
            records.append(write(user, "last_login_date", None, now, now + 1_000))
        records.append(label(user, int(churner), now))
    return records


LEAKS = ("label_leak", "availability_gap")


def run(model: Model, watch: LeakWatch, records: list[Record]) -> list[tuple[int, LeakEffects]]:
    return [(n, e) for n, r in enumerate(records) if (e := observe(model, watch, r))]


def alerts_of(effects: list[tuple[int, LeakEffects]], event: str) -> list[tuple[int, str, str]]:
    return [
        (n, a.severity, a.attributes.get("feature", ""))
        for n, e in effects
        for a in e.alerts
        if a.event == event
    ]


def test_a_feature_nulled_at_label_time_is_flagged_by_name_and_an_honest_one_is_not() -> None:
    model = churn_model()
    watch = new_leak_watch(model)
    effects = run(model, watch, churn_stream(3, 3_000))
    assert alerts_of(effects, "label_leak") == [(643, "major", "last_login_date")]
    flags = [(n, e.feature) for n, eff in effects for e in eff.evidence if e.alarm]
    assert flags == [(643, "last_login_date")]
    evidence = next(e for n, eff in effects for e in eff.evidence if n == 643)
    assert (evidence.detector, evidence.critical, evidence.details["leak_class"]) == (
        "label_leak",
        False,
        1,
    )
    assert evidence.p_value is not None and evidence.p_value <= 0.01
    assert watch.coincidence.leaking_features == ("last_login_date",)
    assert not watch.coincidence.evidence["plan"].leaking
    # The flag writes its leak point at once; the cadence keeps writing the verdicts.
    flag_points = [p for n, e in effects if n == 643 for p in e.points if p.measurement == "leak"]
    assert {(p.tags["feature"], p.tags["detector"], p.fields["flagged"]) for p in flag_points} >= {
        ("last_login_date", "label_leak", 1)
    }
    points = [p for _, e in effects for p in e.points if p.measurement == "leak"]
    assert {p.tags["detector"] for p in points} == {"label_leak"}
    assert {(p.tags["feature"], p.fields["flagged"]) for p in points[-2:]} == {
        ("last_login_date", 1),
        ("plan", 0),
    }


def test_the_write_that_tips_label_leak_flags_it_at_its_own_time() -> None:
    # A churner's ``last_login_date`` is nulled just before the label arrives. Bins are
    # judged by the writes' time, so the write after the label that moves it past a bin's
    # due time completes the evidence, in one batch or many as one by one.
    rng = np.random.default_rng(0)
    records: list[Record] = []
    now = 1_000_000_000.0
    for _ in range(600):
        user = f"u{int(rng.integers(500))}"
        churner = int(user[1:]) % 3 == 0
        now += rng.exponential(60_000.0)
        if rng.random() < 0.8:
            records.append(write(user, "last_login_date", now, now, now + 1_000))
            continue
        if churner:
            records.append(write(user, "last_login_date", None, now, now + 1_000))
        records.append(label(user, int(churner), now))
    model = churn_model()
    for size in (1, 7, len(records)):
        watch = new_leak_watch(model)
        effects = [
            (start + n, found)
            for start in range(0, len(records), size)
            for n, found in observe_many(model, watch, records[start : start + size])
        ]
        flags = [(n, e) for n, eff in effects for e in eff.evidence if e.alarm]
        assert [(n, e.detector) for n, e in flags] == [(269, "label_leak")]
        assert isinstance(records[268], GroundTruth)
        assert flags[0][1].at == cast(FeatureWrite, records[269]).written_at / 1000


def test_without_the_trigger_nothing_is_flagged() -> None:
    model = churn_model()
    watch = new_leak_watch(model)
    effects = run(model, watch, churn_stream(3, 3_000, leak=False))
    assert not [a for _, e in effects for a in e.alerts]
    assert not [ev for _, e in effects for ev in e.evidence if ev.alarm]
    # The test did look: churners' labels were judged at the lag it reports.
    assert watch.coincidence.evidence["last_login_date"].labels[1] > 20


def test_points_come_on_the_event_time_cadence_not_per_event() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nreport_every = 600\n")
    watch = new_leak_watch(model)
    records = churn_stream(4, 2_000)
    effects = run(model, watch, records)
    rounds = sorted(
        {p.time_ms for _, e in effects for p in e.points if p.measurement == "write_lag"}
    )
    assert len(rounds) < len(records) / 10
    # At most one round per 10 minutes of event time.
    assert len({t // 600_000 for t in rounds}) == len(rounds)
    lag = next(p for _, e in effects for p in e.points if p.measurement == "write_lag")
    assert set(lag.tags) == {"model", "feature"}
    assert lag.fields["p50_ms"] == pytest.approx(1_000, rel=0.02)


def test_a_feature_training_sees_before_serving_could_is_flagged_as_a_gap() -> None:
    """``balance`` is computed for the end of each day but written six hours later; serving
    at 2am reads yesterday's value, training joins the new one."""
    # Windows of 16 predictions, tested every 2: the stream has 30.
    model = churn_model(
        "[models.churn.detectors.leaks]\ngap_min_predictions = 10\ngap_window = 16\n"
    )
    watch = new_leak_watch(model)
    hour = 3_600_000
    records: list[Record] = []
    for day in range(1, 31):
        midnight = day * 24 * hour
        served = {"balance": (1.0, midnight - 18 * hour), "plan": ("pro", midnight - 18 * hour)}
        records.append(prediction(f"r{day}", "acct-1", midnight + 2 * hour, served))
        records.append(write("acct-1", "balance", 2.0, midnight, midnight + 6 * hour))
        records.append(write("acct-1", "plan", "pro", midnight - 18 * hour, midnight - 18 * hour))
    effects = run(model, watch, records)
    assert alerts_of(effects, "availability_gap") == [(27, "major", "balance")]
    (evidence,) = [e for n, eff in effects if n == 27 for e in eff.evidence]
    assert (evidence.feature, evidence.details["predictions"], evidence.details["gap_rate"]) == (
        "balance",
        10,
        0.9,
    )
    assert evidence.at == cast(Prediction, records[27]).predicted_at / 1000
    lag = [p for _, e in effects for p in e.points if p.measurement == "write_lag"]
    assert {p.tags["feature"]: p.fields["gap_rate"] for p in lag[-2:]} == {
        "balance": 1.0,  # every day, once its late write arrived
        "plan": 0.0,
    }


def test_a_value_from_the_future_is_critical_evidence_with_an_alert_naming_it() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nskew_tolerance = 100\n")
    watch = new_leak_watch(model, future_values=True)
    honest = prediction("r1", "u1", 10_000, {"plan": ("pro", 9_000), "balance": (3.0, 10_050)})
    future = prediction("r2", "u2", 20_000, {"plan": ("pro", 9_000), "balance": (3.0, 25_000)})
    quiet, flagged = observe(model, watch, honest), observe(model, watch, future)
    assert not quiet.evidence and not quiet.alerts
    (evidence,) = flagged.evidence
    assert (evidence.detector, evidence.feature, evidence.critical, evidence.alarm) == (
        "future_values",
        "balance",
        True,
        True,
    )
    assert evidence.details == {"skew_ms": 5_000, "future_values": 1}
    (alert,) = flagged.alerts
    assert (alert.event, alert.severity, alert.attributes["feature"]) == (
        "future_values",
        "critical",
        "balance",
    )
    (point,) = [p for p in flagged.points if p.measurement == "leak"]
    assert (point.tags["feature"], point.fields["flagged"]) == ("balance", 1)


def test_leak_evidence_is_what_the_model_watchs_health_policy_reads() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nskew_tolerance = 100\n")
    watch = new_leak_watch(model, future_values=True)
    policy = new_watch(model).policy
    future = prediction("r2", "u2", 20_000, {"balance": (3.0, 25_000)})
    for evidence in observe(model, watch, future).evidence:
        policy.update(evidence)
    assert policy.action is not None
    assert (policy.state.value, policy.action.action, policy.action.detector) == (
        "fallback",
        "fallback",
        "future_values",
    )


def test_future_values_are_left_to_the_model_watch_by_default() -> None:
    model = churn_model()
    watch = new_leak_watch(model)
    future = prediction("r2", "u2", 20_000, {"balance": (3.0, 25_000)})
    assert not observe(model, watch, future).evidence


def test_write_lag_windows_give_sla_evidence_and_an_alert_that_closes() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nwrite_lag_window = 20\n")
    watch = new_leak_watch(model)
    rng = np.random.default_rng(8)
    lags = [
        *rng.uniform(1_000, 10_000, 40),
        *rng.uniform(40_000, 60_000, 20),
        *rng.uniform(1_000, 10_000, 20),
    ]
    records = [
        write("u1", "last_login_date", 1.0, i * 1e5, i * 1e5 + lag) for i, lag in enumerate(lags)
    ]
    effects = run(model, watch, records)
    verdicts = [(n, e.detector, e.alarm) for n, eff in effects for e in eff.evidence]
    assert verdicts == [
        (19, "write_lag_sla", False),
        (39, "write_lag_sla", False),
        (59, "write_lag_sla", True),
        (79, "write_lag_sla", False),
    ]
    assert alerts_of(effects, "write_lag_sla") == [
        (59, "warning", "last_login_date"),
        (79, "normal", ""),
    ]


def test_labels_with_only_a_request_id_find_their_entity_through_the_prediction() -> None:
    model = churn_model()
    watch = new_leak_watch(model)
    observe(model, watch, prediction("r1", "u1", 1_000, {"plan": ("pro", 500)}))
    observe(model, watch, label(None, True, 5_000, request="r1"))
    observe(model, watch, label(None, 1, 6_000, request="r-unknown"))
    observe(model, watch, label("u2", "churned", 7_000))
    assert (watch.labels_unresolved, watch.labels_unusable) == (1, 1)
    assert watch.coincidence.open_labels == 1


def test_writes_of_features_the_model_does_not_monitor_are_counted_and_ignored() -> None:
    model = churn_model()
    watch = new_leak_watch(model)
    assert not observe(model, watch, write("u1", "shoe_size", 42, 0, 10)).evidence
    assert watch.writes_ignored == 1 and "shoe_size" not in watch.write_lag


def test_the_request_map_is_bounded() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nmax_requests = 3\n")
    watch = new_leak_watch(model)
    for i in range(10):
        observe(model, watch, prediction(f"r{i}", f"u{i}", 1_000 * i, {"plan": ("pro", 0)}))
    assert [watch.entities.get(f"r{i}") for i in range(6, 10)] == [None, "u7", "u8", "u9"]
    assert len(watch.entities) == 3
    # Not a Python string per request: a worker's full collections need not walk them.
    assert not {"r9", "u9"} & strings_in(watch.entities)


def strings_in(root: object) -> set[str]:
    """The strings reachable from ``root``'s state: not through classes and modules, which
    reach every string the process holds (the whole test run's among them)."""
    seen: set[int] = set()
    todo, found = [root], set()
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType):
            continue
        seen.add(id(item))
        if isinstance(item, str):
            found.add(item)
        else:
            todo.extend(gc.get_referents(item))
    return found


def test_pickle_round_trip_mid_stream_continues_identically() -> None:
    model = churn_model()
    records = churn_stream(3, 3_000)
    straight = new_leak_watch(model)
    expected = run(model, straight, records)
    resumed = new_leak_watch(model)
    first = run(model, resumed, records[:100])
    resumed = pickle.loads(pickle.dumps(resumed, pickle.HIGHEST_PROTOCOL))
    rest = [(n + 100, e) for n, e in run(model, resumed, records[100:])]
    assert first + rest == expected
    assert pickle.loads(pickle.dumps(resumed)).alarming == straight.alarming


def steps(
    rng: np.random.Generator, count: int, spacing: float
) -> Iterator[tuple[int, float, str, float]]:
    """Per record to make: its index, its time (``spacing`` apart on average), its user
    (of a dozen) and a draw that picks its kind."""
    now = 1_000_000_000.0
    for i in range(count):
        now += rng.exponential(spacing)
        yield i, now, f"u{int(rng.integers(12))}", rng.random()


def mixed_stream(seed: int, count: int) -> list[Record]:
    """Writes (late ones, nulls, a feature not monitored, a few malformed), live predictions
    (some values written after them, some features left out) and labels (some by request
    only, some not binary), on a few entities so that the detectors flag and windows close."""
    rng = np.random.default_rng(seed)
    features = ("last_login_date", "plan", "balance")
    records: list[Record] = []
    for i, now, user, kind in steps(rng, count, 30_000.0):
        if kind < 0.55:
            feature = str(rng.choice([*features, "shoe_size"], p=[0.35, 0.3, 0.3, 0.05]))
            late = rng.random() < (0.5 if feature == "balance" else 0.2)
            lag = 400_000.0 if late else float(rng.uniform(0, 5_000))
            value = None if int(user[1:]) % 3 == 0 and rng.random() < 0.5 else 1.0
            records.append(write(user, feature, value, now, now + lag))
            if rng.random() < 0.01:
                bad = write(user, feature, 1.0, now, now)
                records.append(dataclasses_replace(bad, event_at=math.nan))
        elif kind < 0.85:
            served = {
                name: (1.0, now - float(rng.uniform(-3_000, 60_000)))
                for name in features
                if rng.random() < 0.8
            }
            records.append(prediction(f"r{i}", user, now, served))
        else:
            churner = int(user[1:]) % 3 == 0
            if churner:
                records.append(write(user, "last_login_date", None, now, now + 1_000))
            value = churner if rng.random() < 0.95 else "churned"
            by_request = rng.random() < 0.2
            records.append(label(None if by_request else user, value, now, request=f"r{i - 1}"))
    return records


def dataclasses_replace(record: Record, **changes: object) -> Record:
    return type(record)(**{**{f: getattr(record, f) for f in record.__struct_fields__}, **changes})


def mixed_replay(
    setting: str, future_values: bool
) -> tuple[Model, list[Record], LeakWatch, list[tuple[int, LeakEffects]]]:
    """``mixed_stream(5, 4_000)`` through a watch one record at a time, with ``setting``
    beside small windows: the model, the records, the watch and the effects."""
    model = churn_model(
        f"[models.churn.detectors.leaks]\n{setting}\ngap_min_predictions = 10\n"
        "gap_window = 16\ncoincidence_min_labels = 3\nskew_tolerance = 100\n"
    )
    records = mixed_stream(5, 4_000)
    one_by_one = new_leak_watch(model, future_values=future_values)
    return model, records, one_by_one, run(model, one_by_one, records)


@pytest.mark.parametrize("future_values", [False, True])
def test_a_batch_has_the_effects_and_state_of_its_records_one_by_one(future_values: bool) -> None:
    model, records, one_by_one, expected = mixed_replay("write_lag_window = 20", future_values)
    # The stream flags, closes windows and reports: each kind of effect is compared.
    detectors = {e.detector for _, eff in expected for e in eff.evidence}
    assert detectors == {
        "label_leak",
        "availability_gap",
        "write_lag_drift",
        "write_lag_sla",
        *(["future_values"] if future_values else []),
    }
    assert_batches_match(model, records, one_by_one, expected, future_values)
    accepted = {name: lag.write_lag[name].writes for name, lag in one_by_one.write_lag.items()}
    assert one_by_one.lag_writes == accepted


def assert_batches_match(
    model: Model,
    records: list[Record],
    one_by_one: LeakWatch,
    expected: list[tuple[int, LeakEffects]],
    future_values: bool,
) -> None:
    for size in (7, 500, len(records)):
        batched = new_leak_watch(model, future_values=future_values)
        found: list[tuple[int, LeakEffects]] = []
        for start in range(0, len(records), size):
            records_in = records[start : start + size]
            # Batches of 500 as the monitor hands them in; the others as records.
            if size == 500:
                batch = Batch.from_records(model.model_id, records_in)
                chunk = observe_batch(model, batched, batch)
            else:
                chunk = observe_many(model, batched, records_in)
            found += [(start + k, effects) for k, effects in chunk]
        assert found == expected
        assert state_difference(batched, one_by_one) is None


@pytest.mark.parametrize("future_values", [False, True])
def test_batches_through_halvings_of_the_sample_are_their_records_one_by_one(
    future_values: bool,
) -> None:
    # Room for 6 of the 12 users in label_leak: its sample halves, and the availability
    # gap reads only the users in it, as it was at each record.
    model, records, one_by_one, expected = mixed_replay("max_bytes = 2_500", future_values)
    # Halved at record 17, inside a batch of 7 and of 500; the leak is still found.
    assert one_by_one.coincidence.max_entities == 6
    assert (one_by_one.sample_fraction, one_by_one.coincidence.entities) == (0.5, 5)
    assert (one_by_one.coincidence.unsampled, one_by_one.values_unsampled) == (288, 2_854)
    # Room for 2 pairs, not the dozens 10 minutes bring: the gap's sample halves further.
    assert (one_by_one.gap.max_keys, one_by_one.gap_sample_fraction) == (2, 2**-8)
    flags = [(n, e.detector) for n, eff in expected for e in eff.evidence if e.detector in LEAKS]
    assert flags == [(1_596, "label_leak")]
    assert_batches_match(model, records, one_by_one, expected, future_values)


def test_lone_writes_between_rounds_are_their_batches() -> None:
    # A write alone, with no round due after it, takes its own way (``_lone_write``).
    # Rounds an hour of event time apart leave most writes alone; label_leak's sample
    # halves while the gap's own does not, so each write's gap sample is label_leak's
    # after it; flags and closed windows come at lone writes.
    lone = leak_watch._lone_write
    taken: list[int] = []

    def counted(model: Model, watch: LeakWatch, batch: Batch) -> object:
        found = lone(model, watch, batch)
        if found is not None:
            taken.append(len(found))
        return found

    with mock.patch.object(leak_watch, "_lone_write", counted):
        model, records, one_by_one, expected = mixed_replay(
            "max_bytes = 2_500\nreport_every = 3_600\ngap_max_keys = 10_000\nwrite_lag_window = 20",
            False,
        )
    writes = sum(isinstance(r, FeatureWrite) for r in records)
    assert len(taken) > 0.9 * writes
    assert one_by_one.gap_sample_bits == 0
    assert one_by_one.sample_fraction < 1.0
    at_writes = {
        e.detector
        for n, eff in expected
        if isinstance(records[n], FeatureWrite)
        for e in eff.evidence
    }
    assert {"label_leak", "write_lag_sla", "write_lag_drift"} <= at_writes
    assert sum(map(bool, taken)) >= 10
    assert_batches_match(model, records, one_by_one, expected, False)


@pytest.mark.parametrize("rounds", ["", "report_every = 3_600\n"])
def test_a_write_that_flags_and_closes_a_window_gives_the_flag_first(rounds: str) -> None:
    # Record 643, a write of last_login_date, flags it (as in the test above) and is its
    # 302nd write: the end of a window of 151. With rounds an hour apart, it is a lone
    # write between rounds (``_lone_write``).
    model = churn_model(f"[models.churn.detectors.leaks]\nwrite_lag_window = 151\n{rounds}")
    records = churn_stream(3, 3_000)
    for size in (1, 500):
        watch = new_leak_watch(model)
        found = [
            (start + k, [e.detector for e in effects.evidence])
            for start in range(0, len(records), size)
            for k, effects in observe_many(model, watch, records[start : start + size])
        ]
        assert (643, ["label_leak", "write_lag_sla"]) in found


def test_a_malformed_write_is_rejected_without_a_verdict() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nwrite_lag_window = 20\n")
    watch = new_leak_watch(model)
    bad = dataclasses_replace(write("u1", "last_login_date", 1.0, 0, 10), event_at=math.nan)
    assert not observe(model, watch, bad).evidence
    records = [write("u1", "last_login_date", 1.0, i * 1e5, i * 1e5 + 10) for i in range(20)]
    verdicts = [
        (n, e.detector) for n, eff in run(model, watch, [*records, bad]) for e in eff.evidence
    ]
    assert verdicts == [(19, "write_lag_sla")]
    assert watch.write_lag["last_login_date"].rejected == 2


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ("coincidence_alpha = 2.0", "detectors.leaks.coincidence"),
        ("gap_history = 0", "detectors.leaks.gap"),
        ("write_lag_window = 3", "detectors.leaks.write_lag"),
        ("write_lag_sla = 10", "detectors.leaks.write_lag_sla"),
        ("report_every = 0", "detectors.leaks.report_every"),
        ("max_requests = 0", "detectors.leaks.max_requests"),
        ("max_bytes = 0", "detectors.leaks.max_bytes"),
        ('max_bytes = "1MB"', "detectors.leaks.max_bytes"),
        ("tolerance = 5", "detectors.leaks.tolerance"),
    ],
)
def test_a_bad_setting_names_the_model_and_key(settings: str, key: str) -> None:
    with pytest.raises(PortfolioError) as caught:
        new_leak_watch(churn_model(f"[models.churn.detectors.leaks]\n{settings}\n"))
    assert (caught.value.model, caught.value.key) == ("churn", key)


def test_a_watch_of_twenty_features_past_its_caps_stays_within_its_bytes() -> None:
    # 3,000 users, each written to and predicted once, none labelled and none expired:
    # label_leak's table fills and its sample halves; the gap reads that sample.
    model = synthetic_portfolio(1, 20).get("m0000")
    assert model is not None
    names = [feature.name for feature in model.features]
    watch = new_leak_watch(model)
    records: list[Record] = []
    for n in range(3_000):
        records += [write(f"u{n}", name, 1.0, n * 100, n * 100) for name in names]
        served = {name: (1.0, n * 100) for name in names}
        records.append(prediction(f"r{n}", f"u{n}", n * 100 + 50, served))
    for start in range(0, len(records), 500):
        observe_many(model, watch, records[start : start + 500])
    coincidence, gap = watch.coincidence, watch.gap
    assert (coincidence.max_entities, gap.max_keys, watch.max_requests) == (200, 249, 350)
    assert (watch.sample_fraction, coincidence.entities, gap.keys) == (0.0625, 186, 240)
    # 12,000 pairs a minute would need 120,000 pairs for the gap's 10 minutes: its first
    # round halves its sample 11 times, and it reads about one user in 2,048.
    assert (watch.gap_sample_bits, watch.values_unsampled) == (11, 53_020)
    arrays = coincidence.state_bytes + sum(
        a.nbytes for a in vars(gap).values() if isinstance(a, np.ndarray)
    )
    assert arrays <= 280_000
    assert len(pickle.dumps(watch, pickle.HIGHEST_PROTOCOL)) <= 90_000
    # What a worker's full collections walk per model: a few objects per detector, not
    # per feature (the gap's counts, an object per feature and their dict, were 21 more).
    # The detectors' last batch's flags, halvings and new flags are tuples, untracked while
    # empty (as lists they were 4 more). The watch's fields are slots, and the detectors
    # keep their objects in slots and their numbers in an untracked dict (4 more dicts).
    restored = pickle.loads(pickle.dumps(watch, pickle.HIGHEST_PROTOCOL))
    gc.collect()
    assert tracked_in(restored) == 18


def test_features_of_the_same_sla_share_a_write_lag() -> None:
    model = churn_model("[models.churn.detectors.leaks]\nwrite_lag_window = 20\n")
    watch = new_leak_watch(model)
    sla, other = watch.write_lag["last_login_date"], watch.write_lag["plan"]
    assert watch.lag_detectors == (sla, other) and watch.write_lag["balance"] is other
    assert (sla.sla, other.sla) == (30_000.0, None)
    for n in range(30):
        observe(model, watch, write(f"u{n}", "plan", "pro", n * 1_000, n * 1_000 + 500))
    assert other.write_lag["plan"].writes == 30 and "balance" not in other.write_lag


def tracked_in(root: object) -> int:
    """The objects the garbage collector tracks reachable from ``root``, not through
    classes and modules."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType):
            continue
        if gc.is_tracked(item):
            seen.add(id(item))
            todo.extend(gc.get_referents(item))
    return len(seen)


def served_stream(seed: int, count: int, order: tuple[str, ...]) -> list[Record]:
    """Writes, labels and predictions that all serve ``order`` (so that a batch's live
    predictions go as runs), on a dozen users: requests put again, shadow predictions,
    labels by request only, malformed served values and times, and now and then a
    prediction serving fewer features (its batch goes one prediction at a time)."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    requests: list[str] = []
    for i, now, user, kind in steps(rng, count, 20_000.0):
        if kind < 0.4:
            feature = str(rng.choice([*order, "balance", "shoe_size"]))
            lag = 400_000.0 if rng.random() < 0.3 else float(rng.uniform(0, 5_000))
            value = None if int(user[1:]) % 3 == 0 and rng.random() < 0.5 else 1.0
            records.append(write(user, feature, value, now, now + lag))
        elif kind < 0.85:
            again = requests and rng.random() < 0.15
            request = str(rng.choice(requests)) if again else f"r{i}"
            requests.append(request)
            seen = {name: (1.0, now - float(rng.uniform(-3_000, 60_000))) for name in order}
            made = prediction(request, user, now, seen)
            roll = rng.random()
            if roll < 0.1:
                made = dataclasses_replace(made, role="shadow")
            elif roll < 0.13:
                # A value written at NaN, or at a float time.
                name = str(rng.choice(order))
                odd = math.nan if rng.random() < 0.5 else now - 0.5
                features = {**made.features, name: FeatureSeen(1.0, odd)}  # type: ignore[arg-type, union-attr]
                made = dataclasses_replace(made, features=features)
            elif roll < 0.14:
                made = dataclasses_replace(made, predicted_at=math.nan)
            elif roll < 0.145:
                features = dict(list(made.features.items())[1:])  # type: ignore[union-attr]
                made = dataclasses_replace(made, features=features)
            records.append(made)
        else:
            churner = int(user[1:]) % 3 == 0
            if churner:
                records.append(write(user, "last_login_date", None, now, now + 1_000))
            by_request = rng.random() < 0.3 and requests
            named = str(rng.choice(requests[-20:])) if by_request else None
            records.append(label(None if by_request else user, int(churner), now, named))
    return records


SERVED_ORDERS = (
    ("last_login_date", "plan", "balance"),
    ("balance", "last_login_date"),
    ("plan", "shoe_size", "balance"),
)
SERVED_SETTINGS = (
    "max_requests = 3",
    "max_bytes = 2_500",
    "gap_max_keys = 2\nreport_every = 30",
    "gap_max_features = 2\nreport_every = 30",
    "max_requests = 40\nreport_every = 600",
)


def served_model(setting: str) -> Model:
    return churn_model(
        f"[models.churn.detectors.leaks]\n{setting}\ngap_min_predictions = 10\n"
        "gap_window = 16\ncoincidence_min_labels = 3\n"
    )


def observe_cut(
    model: Model, watch: LeakWatch, records: list[Record], at: list[int], monitor: bool
) -> list[tuple[int, LeakEffects]]:
    """The records in batches cut at ``at``, as the monitor hands them in (``observe_batch``)
    or as records (``observe_many``)."""
    found: list[tuple[int, LeakEffects]] = []
    for start, stop in zip([0, *at], [*at, len(records)], strict=True):
        records_in = records[start:stop]
        if monitor:
            chunk = observe_batch(model, watch, Batch.from_records(model.model_id, records_in))
        else:
            chunk = observe_many(model, watch, records_in)
        found += [(start + k, effects) for k, effects in chunk]
    return found


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(SERVED_ORDERS),
    st.sampled_from(SERVED_SETTINGS),
    st.lists(st.integers(0, 600), max_size=6).map(sorted),
)
# A stream whose first record has no time: a round of points was due at a stream time of
# -inf, which has no timestamp (it raised on 9241fa9).
@example(382, ("last_login_date", "plan", "balance"), "max_requests = 3", [])
def test_runs_of_live_predictions_are_their_records_one_by_one(
    seed: int, order: tuple[str, ...], setting: str, at: list[int]
) -> None:
    model = served_model(setting)
    records = served_stream(seed, 600, order)
    one_by_one = new_leak_watch(model)
    expected = run(model, one_by_one, records)
    batched = new_leak_watch(model)
    assert observe_cut(model, batched, records, at, monitor=False) == expected
    assert state_difference(batched, one_by_one) is None
    # The monitor's batches leave out the predictions that are not live.
    chosen = [k for k, r in enumerate(records) if not isinstance(r, Prediction) or r.role == "live"]
    live = [records[k] for k in chosen]
    one_by_one = new_leak_watch(model)
    expected = [(chosen[k], effects) for k, effects in run(model, one_by_one, live)]
    batched = new_leak_watch(model)
    assert observe_cut(model, batched, records, at, monitor=True) == expected
    assert state_difference(batched, one_by_one) is None


@pytest.mark.parametrize("setting", SERVED_SETTINGS)
def test_the_served_streams_go_as_runs_and_reach_what_they_test(setting: str) -> None:
    # What the property above relies on: its batches' live predictions go as runs (the
    # gap's update_writes, the request map's compiled put_many), the request map wraps
    # around, labels find entities by request, values are rejected, and the samples halve.
    model = served_model(setting)
    records = served_stream(7, 3_000, SERVED_ORDERS[0])
    watch = new_leak_watch(model)
    runs, puts = [], []
    update_writes, put_many = AvailabilityGap.update_writes, RequestMap.put_many

    def counted_run(
        gap: AvailabilityGap, writes: Any, events: Any, places: Any, served: Any = None
    ) -> None:
        if served is not None:
            runs.append(len(served.entities))
        update_writes(gap, writes, events, places, served)

    def counted_put(requests: RequestMap, keys: Any, entity_ids: Any) -> None:
        puts.append(len(keys))
        put_many(requests, keys, entity_ids)

    with (
        mock.patch.object(AvailabilityGap, "update_writes", counted_run),
        mock.patch.object(RequestMap, "put_many", counted_put),
    ):
        observe_cut(model, watch, records, list(range(500, 3_000, 500)), monitor=True)
    assert runs and max(puts) > SMALL_BATCH
    assert watch.labels_unresolved > 0 and watch.entities._put > watch.max_requests
    if "max_bytes" in setting:
        assert watch.sample_fraction < 1 and watch.values_unsampled > 0
    elif "gap_max_keys" in setting:
        assert watch.gap_sample_bits > 0
    else:
        assert watch.gap.rejected > 0
    if "gap_max_features" in setting:
        assert len(watch.gap.evidence) == 2


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    # Up to 120 requests in at most 5 runs: most runs pass the length that goes to the
    # compiled loop.
    st.lists(st.tuples(st.integers(0, 9), st.text(max_size=4)), max_size=120),
    st.lists(st.integers(0, 120), max_size=4).map(sorted),
)
def test_put_many_is_put_one_by_one(
    capacity: int, requests: list[tuple[int, str]], at: list[int]
) -> None:
    # Few request ids, so that they are put again and wrap around a small map; entity
    # ids of any length and characters (lone surrogates, NULs).
    one, many = RequestMap(capacity), RequestMap(capacity)
    keys = [request_hash(f"r{n}") for n, _ in requests]
    for key, (_, entity_id) in zip(keys, requests, strict=True):
        one.put(key, entity_id)
    for start, stop in zip([0, *at], [*at, len(requests)], strict=True):
        many.put_many(keys[start:stop], [entity_id for _, entity_id in requests[start:stop]])
    assert pickle.dumps(many) == pickle.dumps(one)
    assert [many.get(f"r{n}") for n in range(10)] == [one.get(f"r{n}") for n in range(10)]


def lag_windows_feature_at_a_time(
    watch: LeakWatch, writes: WriteColumns
) -> list[tuple[int, int, str, Any]]:
    """``_lag_windows`` as it was: a ``WriteLag.update_writes`` call per feature, in order
    of first write."""
    found = []
    order = list(dict.fromkeys(writes.codes.tolist()))
    for code in order:
        feature = writes.features[code]
        rows = np.flatnonzero(writes.codes == code)
        watch.lag_writes[feature] = watch.lag_writes.get(feature, 0) + int(
            np.count_nonzero(writes.ok[rows])
        )
        lag = watch.write_lag[feature]
        lag.update_writes(writes, rows)
        for position, summary in lag.windows_closed:
            w = int(np.searchsorted(writes.positions, position))
            at = float(writes.written_at[w]) / 1000.0
            found.append((position * _SUB, 1, "", _window_evidence(lag, summary, at)))
    return found


first = operator.itemgetter(0)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["", "write_lag_window = 10\n", "write_lag_window = 25\n"]),
    # Runs of writes: each (feature, lag in ms, well-formed), the features the model
    # monitors (two of them share a WriteLag) in any order and mix; malformed writes
    # (mostly well-formed) in half the examples.
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["plan", "last_login_date", "balance"]),
                st.integers(0, 60_000),
                st.integers(0, 9).map(bool),
            ),
            max_size=80,
        ),
        max_size=5,
    ),
    st.booleans(),
)
# A feature's first write malformed, another's of the same WriteLag next: a call per
# feature made the first feature's row first, one by one makes the other's.
@example("", [[("plan", 0, False), ("balance", 0, True), ("plan", 0, True)]], True)
def test_lag_windows_are_a_call_per_feature_and_each_write_alone(
    window: str, runs: list[list[tuple[str, int, bool]]], malformed: bool
) -> None:
    # A detector's writes go in one call: the same verdicts and state as each write alone
    # (a feature's row made at its first well-formed write); and with no malformed write
    # the same pickle (its last windows those of its last feature) as a call per feature,
    # which made a feature's row at its first write, well-formed or not.
    model = churn_model(f"[models.churn.detectors.leaks]\n{window}")
    together, alone, apart = (new_leak_watch(model) for _ in range(3))
    now, well_formed = 1_000_000, True
    for records in runs:
        made = []
        for feature, lag, fine in records:
            now += 1_000
            made.append(write("u1", feature, 1.0, now, now + lag))
            if malformed and not fine:
                made[-1] = dataclasses_replace(made[-1], event_at=math.nan)
        positions = list(range(0, 2 * len(made), 2))
        writes = write_columns(made, positions)
        # By slot, as ``_effects`` sorts them (a write closes one feature's window).
        found = sorted(_lag_windows(together, writes), key=first)
        each = [
            closed
            for w in range(len(made))
            for closed in _lag_windows(alone, write_columns([made[w]], [positions[w]]))
        ]
        assert found == each
        assert state_difference(together, alone) is None
        # A call per feature parts from one by one at a malformed write.
        well_formed = well_formed and not (malformed and not all(f for _, _, f in records))
        if well_formed:
            assert found == sorted(lag_windows_feature_at_a_time(apart, writes), key=first)
            assert pickle.dumps(together) == pickle.dumps(apart)
