"""The per-model monitor: batches in, effects out, the same whatever the batch size."""

from __future__ import annotations

import gc
import pickle
from collections.abc import Sequence
from unittest import mock

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.leaks.events import request_hashes
from schemas.contracts import FeatureWrite, GroundTruth, Prediction, Score
from schemas.signing import Keyring
from streams.monitor import (
    STATE_FORMAT,
    Batch,
    CommandToSign,
    Effects,
    Monitor,
    StateFormatError,
    label_join,
)
from streams.monitor import monitor as monitor_module
from streams.monitor import watch as watch_module
from streams.monitor.batch import Record
from streams.monitor.held import request_hash
from streams.monitor.label_wait import LabelWait
from streams.portfolio import Model, Portfolio, parse_portfolio
from tests.benchmarks.bench_monitor_replay import batches, scenario
from tests.detectors import batching
from tests.streams.test_serving_watch import slo_model
from tests.streams.test_watch import prediction, shifted_then_normal, small_model

KEYRING = Keyring.parse(private_key="k1=" + "3c" * 32)
Detection = tuple[str, str, float]


@pytest.fixture(scope="module")
def demo() -> tuple[Portfolio, list[tuple[str, Record]]]:
    """The default scenario's portfolio (as the demo writes it) and its records, each with
    the model it goes to (feature writes to every model that monitors the feature)."""
    return scenario()


def replay(
    portfolio: Portfolio, routed: list[tuple[str, Record]], size: int
) -> tuple[list[Detection], list[tuple[str, str, int, int]]]:
    """Detections (model, detector, event time) and commands (model, action, issued_at,
    seq) of the records fed in batches of up to ``size`` records of one model."""
    monitors = {model.model_id: Monitor(model) for model in portfolio}
    detections: list[Detection] = []
    commands: list[tuple[str, str, int, int]] = []
    for model_id, records in batches(routed, size):
        effects = monitors[model_id].observe(Batch.from_records(model_id, records))
        detections.extend((model_id, e.detector, e.at) for e in effects.alarms)
        commands.extend((c.model_id, c.action, c.issued_at, c.seq) for c in effects.commands)
    return sorted(detections), sorted(commands)


def test_the_demo_replay_detects_the_same_in_batches_as_one_record_at_a_time(demo: tuple) -> None:
    portfolio, routed = demo
    # The scenario's first 120,000 routed records: the whole replay takes minutes one
    # record at a time; tests/benchmarks/bench_monitor_replay.py replays it all.
    routed = routed[:120_000]
    one_by_one = replay(portfolio, routed, 1)
    detections, _ = one_by_one
    assert "label_leak" in {d for _, d, _ in detections}
    assert replay(portfolio, routed, 500) == one_by_one


def test_batch_columns_follow_the_records() -> None:
    predictions = shifted_then_normal(3)[:4]
    batch = Batch.from_records("ranker", predictions, numeric=("age",))
    assert len(batch) == 4
    assert batch.kind.tolist() == [0, 0, 0, 0]
    assert batch.at_ms.tolist() == [p.predicted_at for p in predictions]
    ages = [p.features["age"].value for p in predictions]
    assert batch.values["age"].tolist() == ages
    assert batch.values["country"].dtype == object
    assert np.isnan(batch.score).tolist() == [False] * 4


def test_commands_carry_the_monitors_seq_and_a_restored_monitor_makes_the_same_one() -> None:
    model = small_model()
    records = shifted_then_normal(7)
    monitor = Monitor(model)
    saved = None
    made: list[CommandToSign] = []
    for n in range(0, len(records), 100):
        before = monitor.dumps()
        effects = monitor.observe(Batch.from_records(model.model_id, records[n : n + 100]))
        if effects.commands and saved is None:
            saved = before, n, effects.commands
        made += effects.commands
        # A transition, an action or an alarm must survive a crash.
        assert effects.checkpoint or not (effects.transitions or effects.alarms)
    assert [c.action for c in made] == ["fallback", "restore"]
    assert made[0].seq == made[0].issued_at < made[1].seq
    assert all(KEYRING.verify(c.signed(KEYRING)) for c in made)
    # Restored from the checkpoint before the fallback, it makes the very same command.
    assert saved is not None
    state, n, commands = saved
    restored = Monitor.restore(model, state)
    again = restored.observe(Batch.from_records(model.model_id, records[n : n + 100]))
    assert again.commands == commands
    assert commands[0].signed(KEYRING) == again.commands[0].signed(KEYRING)


def test_a_monitor_pickles_without_its_model() -> None:
    model = small_model()
    monitor = Monitor(model)
    monitor.observe(Batch.from_records(model.model_id, shifted_then_normal(1)[:50]))
    state = pickle.loads(monitor.dumps()).__dict__
    assert "model" not in state
    assert Monitor.restore(model, monitor.dumps()).watch.policy.state == monitor.watch.policy.state


def test_a_restored_monitor_adds_no_buffer_views_for_the_collector_to_track() -> None:
    # A protocol-5 checkpoint restored each numpy array over a memoryview and its managed
    # buffer: two tracked objects per array, for every full garbage collection to walk.
    model = small_model()
    monitor = Monitor(model)
    monitor.observe(Batch.from_records(model.model_id, shifted_then_normal(1)[:300]))
    data = monitor.dumps()
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    restored = Monitor.restore(model, data)
    views = [o for o in gc.get_objects() if id(o) not in before and isinstance(o, memoryview)]
    assert restored.watch.policy.state == monitor.watch.policy.state
    assert views == []


def test_periodic_checkpoint_after_checkpoint_every_records() -> None:
    model = small_model()
    monitor = Monitor(model, checkpoint_every=30)
    quiet = shifted_then_normal(1)[:100]
    due = [
        monitor.observe(Batch.from_records(model.model_id, quiet[n : n + 10])).checkpoint
        for n in range(0, 100, 10)
    ]
    assert due == [False, False, True] * 3 + [False]
    with pytest.raises(ValueError, match="checkpoint_every"):
        Monitor(model, checkpoint_every=0)


def test_a_checkpoint_of_another_state_format_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = small_model()
    monitor = Monitor(model)
    monitor.observe(Batch.from_records(model.model_id, shifted_then_normal(1)[:50]))
    assert "state_format" not in Monitor.restore(model, monitor.dumps()).__dict__
    with monkeypatch.context() as older_worker:
        older_worker.setattr(monitor_module, "STATE_FORMAT", STATE_FORMAT - 1)
        older = monitor.dumps()
    with pytest.raises(StateFormatError, match=f"this worker reads format {STATE_FORMAT}"):
        Monitor.restore(model, older)


def test_a_batch_hashes_its_requests_once_for_the_join_and_the_leak_watch() -> None:
    # A fallback prediction before a live one: the leak watch remembers only the live
    # one's request, under its own hash, and the join holds both, each under its own.
    fallback, live = prediction(1, 40.0, "de", role="fallback"), prediction(2, 40.0, "fr")
    monitor = Monitor(small_model())
    monitor.observe(Batch.from_records("ranker", [fallback, live]))
    assert monitor.leaks is not None
    assert (monitor.leaks.entities.get("r1"), monitor.leaks.entities.get("r2")) == (None, "u2")
    assert len(monitor.leaks.entities) == 1
    held = monitor.join.held
    assert [h.request for h in held.of_request("r1") + held.of_request("r2")] == [
        request_hash("r1"),
        request_hash("r2"),
    ]


@given(st.lists(st.text(max_size=6), max_size=3))
def test_a_batch_hashes_none_or_one_request_as_it_hashes_many(ids: list[str]) -> None:
    # A batch of none or one prediction hashes it on its own: the same hashes.
    made = [
        msgspec.structs.replace(prediction(n, 40.0, "de"), request_id=request)
        for n, request in enumerate(ids)
    ]
    assert Batch.from_records("ranker", made).request_hashes == request_hashes(ids)


# A record of the mixed stream below: kind (0 prediction, 1 label, 2 write), entity, the
# prediction's role, a value.
Step = tuple[int, int, str, float]
steps = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 3),
        st.sampled_from(["live", "live", "fallback", "shadow"]),
        st.floats(-1e3, 1e3),
    ),
    max_size=40,
)


def mixed(drawn: list[Step]) -> list[Record]:
    """Predictions of every role, labels of earlier ones, and writes of both features, a
    second of event time apart."""
    records: list[Record] = []
    made: list[Prediction] = []
    for n, (kind, entity, role, value) in enumerate(drawn):
        at = 1_000_000 + n * 1000
        if kind == 0 or (kind == 1 and not made):
            made.append(
                msgspec.structs.replace(
                    prediction(n, value, "de", role),
                    entity_id=f"u{entity}",
                    output=Score(score=min(max(value / 1e3 + 0.5, 0.0), 1.0)),
                    latency_ms=abs(value) % 100,
                )
            )
            records.append(made[-1])
        elif kind == 1:
            earlier = made[entity % len(made)]
            records.append(
                GroundTruth(
                    schema_version=1,
                    model_id="ranker",
                    label=int(value > 0),
                    label_at=at,
                    request_id=earlier.request_id,
                    entity_id=earlier.entity_id,
                )
            )
        else:
            records.append(
                FeatureWrite(
                    schema_version=1,
                    entity_id=f"u{entity}",
                    feature="age" if value > 0 else "country",
                    value=value if value > 0 else "fr",
                    event_at=at - 100,
                    written_at=at,
                    source="test",
                )
            )
    return records


def outcomes(effects: list[Effects]) -> tuple[list[object], ...]:
    """Everything the effects ask, in order, whatever the batches were: all but the
    serving watch's points, one per batch of predictions."""
    points = [p for e in effects for p in e.points if p.measurement != "serving"]
    return points, *(
        [x for e in effects for x in getattr(e, name)]
        for name in ("alerts", "commands", "withheld", "alarms", "transitions")
    )


@settings(max_examples=60, deadline=None)
@given(steps, st.data())
def test_batches_of_one_record_do_what_any_batches_do(
    drawn: list[Step], data: st.DataObject
) -> None:
    # Batches of one record skip what a batch without predictions (or without fallback and
    # shadow predictions) does not need: the same effects and the same state as the same
    # records in batches of any size.
    records = mixed(drawn)
    # With a latency SLO, for the serving watch as well.
    one, cut = Monitor(slo_model()), Monitor(slo_model())
    each = [one.observe(Batch.from_records("ranker", [r])) for r in records]
    at = data.draw(batching.cuts(len(records)))
    batched = [cut.observe(Batch.from_records("ranker", b)) for b in batching.batches(records, at)]
    assert outcomes(each) == outcomes(batched)
    for monitor in (one, cut):
        monitor.unsaved = 0  # reset by each checkpoint due, which batches move
    assert batching.state_difference(one, cut) is None


def test_the_joins_take_the_records_as_the_label_wait_releases_them() -> None:
    # A run of predictions moves the wait's clock to its latest, and a prediction that
    # releases a label has the results of both: the label join's points (one report a
    # second) are those of the records in the order the wait lets them through.
    model = small_model("[models.ranker.detectors.performance]\nreport_interval = 1.0\n")

    def truth(request: int, at_ms: int) -> GroundTruth:
        return GroundTruth(
            schema_version=1, model_id="ranker", label=1, label_at=at_ms, request_id=f"r{request}"
        )

    def made(n: int) -> Prediction:
        return msgspec.structs.replace(prediction(n, 40.0, "de"), output=Score(score=n / 40))

    records: list[Record] = [made(n) for n in range(10)]
    # Ahead of its prediction but behind the run's latest: joined at once, unmatched.
    records += [truth(20, 1_005_000), truth(3, 1_012_000)]
    # Ahead of every prediction: waits for the next one, which releases it.
    records += [truth(21, 1_015_000), *(made(n) for n in range(20, 30))]
    effects = Monitor(model).observe(Batch.from_records("ranker", records))

    join, wait = label_join.new_join(model), LabelWait()
    expected: list[object] = []
    for record in records:
        if isinstance(record, Prediction):
            released = [record, *wait.advance(record.predicted_at)]
        else:
            assert isinstance(record, GroundTruth)
            released = [record] if label_join.holds(join, record) else wait.add(record)
        for taken in released:
            expected.extend(label_join.observe(join, taken).points)
    assert expected
    assert [p for p in effects.points if p.measurement == "performance"] == expected


# A request of the stream below: its entity, role, version, score, label delay (seconds),
# how its label names it (0: no label, 1: request and entity, 2: request, 3: entity), and
# whether it redelivers the request before it.
Request = tuple[int, str, str, float, int, int, bool]
request_drawn = st.tuples(
    st.integers(0, 5),
    st.sampled_from(["live", "live", "live", "fallback", "shadow"]),
    st.sampled_from(["v1", "v1", "v1", "v2"]),
    st.floats(0.0, 1.0),
    st.integers(0, 25),
    st.integers(0, 3),
    st.booleans(),
)
requests_drawn = st.lists(request_drawn, max_size=60)
# Labels within 20 s of their prediction, a TTL of a minute, few held predictions and a
# report every two seconds: expiry, sampling and reports happen among the waits.
# The ranker of these tests, its label delay to add.
RANKER = """
[models.ranker]
owner = "team-search"
tier = "cpu"
fallback = "top_n_popular"
features = { age = "numeric", country = "categorical" }
"""
AHEAD_MODEL = f"""{RANKER}label_delay = "20s"
[models.ranker.detectors.performance]
max_held = 12
report_interval = 2.0
"""


# The same with v2 as its shadow: the shadow join takes the records the label join took.
SHADOW_AHEAD_MODEL = AHEAD_MODEL.replace(
    'label_delay = "20s"\n',
    'label_delay = "20s"\nshadow = { version = "v2", min_stable_period = "2h" }\n',
)
assert SHADOW_AHEAD_MODEL != AHEAD_MODEL


def labels_ahead(
    drawn: list[Request], ahead: int | Sequence[int], start: int = 1_000_000
) -> list[Record]:
    """Predictions a second apart from ``start``, a write after each, and each label
    ``ahead`` requests before its prediction: ground truth read ahead of the predictions
    (``ahead`` negative: after them; a sequence: request n's is ``ahead[n % len(ahead)]``)."""
    placed: list[tuple[int, int, Record]] = []
    for n, (entity, role, version, score, delay, named, again) in enumerate(drawn):
        at = start + n * 1000
        request = f"r{n - 1 if again and n else n}"
        made = msgspec.structs.replace(
            prediction(n, score * 100, "de", role),
            predicted_at=at,
            request_id=request,
            entity_id=f"u{entity}",
            model_version=version,
            output=Score(score=score),
        )
        placed.append((n, 1, made))
        placed.append((n, 2, FeatureWrite(1, f"u{entity}", "age", score, at - 100, at, "test")))
        if named:
            truth = GroundTruth(
                schema_version=1,
                model_id="ranker",
                label=int(score > 0.5),
                label_at=at + delay * 1000,
                request_id=request if named < 3 else None,
                entity_id=f"u{entity}" if named != 2 else None,
            )
            placed.append(
                (n - (ahead if isinstance(ahead, int) else ahead[n % len(ahead)]), 0, truth)
            )
    return [record for _, _, record in sorted(placed, key=lambda x: x[:2])]


@settings(max_examples=80, deadline=None)
@given(requests_drawn, st.integers(0, 20), st.integers(1, 12), st.data())
def test_labels_ahead_of_their_predictions_join_in_any_batches_as_one_by_one(
    drawn: list[Request], ahead: int, max_waiting: int, data: st.DataObject
) -> None:
    # Labels read ahead of their predictions wait, and the batches' compiled loop
    # releases them: the same effects and state as one record at a time, where each goes
    # through the label wait's own add and advance.
    records = labels_ahead(drawn, ahead)
    model = parse_portfolio(AHEAD_MODEL).models["ranker"]
    at = data.draw(batching.cuts(len(records)))
    assert_batches_as_one_by_one(model, records, at, max_waiting)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(request_drawn, min_size=30, max_size=60),
    st.lists(st.integers(-30, 20), min_size=1, max_size=4),
    st.data(),
)
def test_labels_behind_their_predictions_join_in_any_batches_as_one_by_one(
    drawn: list[Request], ahead: list[int], data: st.DataObject
) -> None:
    # Labels read after their predictions, some among others read ahead: those the
    # prediction clock reached are released by the wait at once, whether or not others
    # wait, the rest wait. With a dozen held at most, the sample halves and the TTL
    # expires predictions, so many find nothing held, which the batches' compiled loop
    # joins as one record at a time does, and passes to the shadow join in its place.
    records = labels_ahead(drawn, ahead)
    model = parse_portfolio(SHADOW_AHEAD_MODEL).models["ranker"]
    at = data.draw(batching.cuts(len(records)))
    assert_batches_as_one_by_one(model, records, at)


def test_labels_of_entities_the_sample_left_out_join_in_the_compiled_loop() -> None:
    # A busy model: 40 entities and a dozen predictions held at most, labels 20 requests
    # after their prediction (and two seconds after its time), so the sample holds a
    # fraction of the entities and most labels find nothing held. The wait releases each
    # at once, and the batches' compiled loop counts it, not the join's Python a label
    # at a time.
    drawn = [(n % 40, "live", "v1", (n % 10) / 10, 2, 1, False) for n in range(300)]
    one, batched, alone, added = in_hundreds(
        parse_portfolio(AHEAD_MODEL).models["ranker"], labels_ahead(drawn, -20)
    )
    for monitor in (one, batched):
        monitor.unsaved = 0
    assert batching.state_difference(one, batched) is None
    join = batched.join
    assert join.held.fraction < 0.5
    assert join.unsampled_labels > 200 and join.labels > 290  # the last waits
    # Were they not joined in the loop, the join's Python would take 288 labels and the
    # wait 221; what is left are the records it leaves one at a time after a call of
    # the loop that halved the sample within a few records, as a dozen held makes it.
    assert alone < 50 and added < 40


def in_hundreds(model: Model, records: list[Record]) -> tuple[Monitor, Monitor, int, int]:
    """``records`` one at a time and in batches of 100, each to a fresh monitor, with the
    same outcomes: the two monitors, and how many labels the batches' label join took in
    its Python (``JoinBatch._label``) and the label wait in its own (``LabelWait.add``)."""
    one, batched = Monitor(model), Monitor(model)
    each = [one.observe(Batch.from_records("ranker", [r])) for r in records]
    alone = 0
    label = label_join.JoinBatch._label

    def counted(self: label_join.JoinBatch, *args: object) -> None:
        nonlocal alone
        alone += 1
        label(self, *args)  # type: ignore[arg-type]

    with (
        mock.patch.object(label_join.JoinBatch, "_label", counted),
        mock.patch.object(LabelWait, "add", autospec=True, side_effect=LabelWait.add) as add,
    ):
        effects = [
            batched.observe(Batch.from_records("ranker", records[n : n + 100]))
            for n in range(0, len(records), 100)
        ]
    assert outcomes(each) == outcomes(effects)
    return one, batched, alone, add.call_count


@pytest.mark.parametrize("cuts", [[], [4, 9, 30], list(range(1, 80))])
@pytest.mark.parametrize("label_after", [False, True])
def test_labels_ahead_of_a_join_whose_clock_never_moved_join_as_one_by_one(
    cuts: list[int], label_after: bool
) -> None:
    # The join's clock starts at 0, so a prediction made at 0 is held without moving it
    # and sets no report time. The compiled loop takes the labels that wait while no
    # report time is set (a backlog's ground truth read first), and leaves the Python
    # every prediction and every label it holds predictions for: one record at a time,
    # the first of them to move the clock sets the report time. That is the next
    # prediction, or (``label_after``) request 0's label right after its prediction,
    # which matches it while the other labels wait.
    drawn = [(n % 6, "live", "v1", (n % 10) / 10, 3, 2, False) for n in range(40)]
    records = labels_ahead(drawn, 5, start=0)
    if label_after:
        [label] = [r for r in records if isinstance(r, GroundTruth) and r.request_id == "r0"]
        records.remove(label)
        made = next(n for n, r in enumerate(records) if isinstance(r, Prediction))
        records.insert(made + 1, label)
    model = parse_portfolio(AHEAD_MODEL).models["ranker"]
    assert_batches_as_one_by_one(model, records, cuts, max_waiting=12)


def made_for(n: int) -> Prediction:
    """Request ``n`` of entity ``u{n % 3}``, a second after request ``n - 1``."""
    return msgspec.structs.replace(
        prediction(n, 40.0, "de"), entity_id=f"u{n % 3}", output=Score(score=n / 60)
    )


def label_for(n: int, request: bool) -> GroundTruth:
    """Request ``n``'s label, half a second after it, naming its request or only its entity."""
    return GroundTruth(
        schema_version=1,
        model_id="ranker",
        label=1,
        label_at=made_for(n).predicted_at + 500,
        request_id=f"r{n}" if request else None,
        entity_id=f"u{n % 3}",
    )


@pytest.mark.parametrize("size", [1, 7, 1000])
@pytest.mark.parametrize("request_named", [True, False])
def test_labels_read_ahead_of_their_predictions_join_their_own(
    size: int, request_named: bool
) -> None:
    # A worker catching up reads the ground truth ahead of the predictions: a label comes
    # before its prediction while earlier, never labelled predictions of its entity are
    # held. It must wait for its own prediction, not take the entity's latest held one (a
    # wrong pair: a healthy model's accuracy fell to chance in the pipeline benchmark). A
    # label by entity alone is the entity's latest prediction before it, which only the
    # predictions reaching its time can tell.
    odd = range(1, 60, 2)
    # Requests 0 to 29 and then their labels; the other labels, then their predictions.
    records: list[Record] = [made_for(n) for n in range(30)]
    records += [label_for(n, request_named) for n in odd if n < 30]
    records += [label_for(n, request_named) for n in odd if n >= 30]
    records += [made_for(n) for n in range(30, 61)]
    monitor = Monitor(small_model())
    for part in batching.batches(records, list(range(size, len(records), size))):
        monitor.observe(Batch.from_records("ranker", part))
    join = monitor.join
    assert (join.labels, join.joined, join.unmatched) == (30, 30, 0)
    # Exactly the requests without a label are still held.
    assert sorted(key[1] for key in join.held) == sorted(
        request_hash(f"r{n}") for n in range(0, 61, 2)
    )


def assert_batches_as_one_by_one(
    model: Model, records: list[Record], at: list[int], max_waiting: int | None = None
) -> None:
    """One record at a time, in batches cut ``at`` and all at once: the same outcomes and
    state (``max_waiting``: the label wait's, if given)."""
    one, cut, whole = Monitor(model), Monitor(model), Monitor(model)
    for monitor in (one, cut, whole):
        if max_waiting is not None:
            monitor.label_wait.max_waiting = max_waiting
    each = [one.observe(Batch.from_records("ranker", [r])) for r in records]
    batched = [cut.observe(Batch.from_records("ranker", b)) for b in batching.batches(records, at)]
    at_once = [whole.observe(Batch.from_records("ranker", records))]
    assert outcomes(each) == outcomes(batched) == outcomes(at_once)
    for monitor in (one, cut, whole):
        monitor.unsaved = 0  # reset by each checkpoint due, which batches move
    assert batching.state_difference(one, cut) is None
    assert batching.state_difference(one, whole) is None


def test_a_table_compacted_as_its_sample_halves_is_indexed_whatever_the_batches() -> None:
    # A case Hypothesis found: a full table halves its entity sample, compacts, and the
    # label join refuses the record that made room. One record at a time nothing read the
    # index after that; a whole batch's compiled run indexed the table at its start.
    live: list[tuple[int, int, bool]] = [
        (0, 0, False), (0, 0, False), (0, 0, False), (0, 0, False), (0, 0, True),
        (0, 1, False), (3, 0, False), (0, 0, True), (1, 0, False), (1, 0, False),
        (1, 0, False), (0, 0, False), (0, 1, True), (0, 0, False), (0, 0, False),
        (0, 0, False), (0, 0, False), (0, 0, True), (0, 1, False), (0, 1, False),
        (0, 1, False), (1, 1, False), (0, 3, False), (0, 0, False), (0, 1, False),
        (3, 0, False),
    ]  # fmt: skip
    drawn = [
        (entity, "fallback" if n == 20 else "live", "v1", 0.0, 0, named, again)
        for n, (entity, named, again) in enumerate(live)
    ]
    records = labels_ahead(drawn, 11)
    model = parse_portfolio(AHEAD_MODEL).models["ranker"]
    assert_batches_as_one_by_one(model, records, [], max_waiting=1)


def test_the_compiled_loop_releases_the_labels_that_wait() -> None:
    # Labels by request ten requests ahead: each waits for the predictions to reach its
    # time, and the compiled loop joins it as they do, not the join's Python one label at
    # a time.
    drawn = [(n % 6, "live", "v1", (n % 10) / 10, 5, 2, False) for n in range(200)]
    model = parse_portfolio(AHEAD_MODEL).models["ranker"]
    one, batched, alone, _ = in_hundreds(model, labels_ahead(drawn, 10))
    assert one.join.joined == batched.join.joined > 150
    assert alone < 10


def test_a_backlog_of_labels_before_any_prediction_waits_through_the_compiled_loop() -> None:
    # A worker starting on a backlog may read a model's ground truth before any of its
    # predictions: its join has no report time yet, and its labels that wait go through
    # the compiled loop, not the label wait's Python one at a time.
    drawn = [(n % 6, "live", "v1", (n % 10) / 10, 5, 2, False) for n in range(120)]
    records = labels_ahead(drawn, 120)
    labels = sum(isinstance(r, GroundTruth) for r in records)
    assert all(isinstance(r, GroundTruth) for r in records[:labels])
    model = parse_portfolio(AHEAD_MODEL).models["ranker"]
    one, batched = Monitor(model), Monitor(model)
    each = [one.observe(Batch.from_records("ranker", [r])) for r in records[:labels]]
    with mock.patch.object(LabelWait, "add", autospec=True, side_effect=LabelWait.add) as add:
        effects = [batched.observe(Batch.from_records("ranker", records[:labels]))]
    assert add.call_count == 1  # the first, after which the labels wait
    for monitor in (one, batched):
        monitor.unsaved = 0
    # The same state, down to the held table left unindexed while it holds nothing.
    assert batching.state_difference(one, batched) is None
    each += [one.observe(Batch.from_records("ranker", [r])) for r in records[labels:]]
    effects.append(batched.observe(Batch.from_records("ranker", records[labels:])))
    assert outcomes(each) == outcomes(effects)
    assert one.join.joined == batched.join.joined > 100


# Errors and stuck scores alarm within a few predictions, the policy falls back at the
# first alarm and is restored four quiet seconds later, with a grace of three: every
# path of a run of quiet predictions within a few dozen records.
QUIET_MODEL = f"""{RANKER}label_delay = "1h"
[models.ranker.detectors.health]
confirm = 1
min_dwell = 0
clear_after = 4
[models.ranker.detectors.output]
false_fallbacks_per_model_day = 0.5
predictions_per_day = 100
restore_grace = 3
error_warm_up = 10
error_odds_ratio = 4.0
score_warm_up = 10
score_max_reference = 20
"""
# A run of the stream below: its length, its predictions' role, whether their score is
# stuck, and what follows it (0 nothing, 1 a label, 2 a write).
Run = tuple[int, str, bool, int]
runs_drawn = st.lists(
    st.tuples(
        st.integers(1, 30),
        st.sampled_from(["live", "live", "fallback", "shadow"]),
        st.booleans(),
        st.integers(0, 2),
    ),
    max_size=12,
)


def quiet_runs(drawn: list[Run], seed: int) -> list[Record]:
    """Runs of predictions a second apart, normal or stuck scores, each run followed by
    a label of an earlier prediction or a write."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    n = 0
    for count, role, stuck, after in drawn:
        for _ in range(count):
            score = 0.9 if stuck else float(rng.uniform(0.0, 1.0))
            made = msgspec.structs.replace(
                prediction(n, float(rng.normal(40.0, 5.0)), "de", role), output=Score(score=score)
            )
            records.append(made)
            n += 1
        at = 1_000_000 + n * 1000
        if after == 1:
            records.append(GroundTruth(1, "ranker", label=1, label_at=at, request_id=f"r{n // 2}"))
        elif after == 2:
            records.append(FeatureWrite(1, f"u{n // 2}", "age", 40.0, at - 100, at, "test"))
    return records


@settings(max_examples=80, deadline=None)
@given(runs_drawn, st.integers(0, 2**16), st.integers(1, 12), st.integers(0, 3), st.data())
def test_runs_of_quiet_predictions_in_any_batches_do_what_one_by_one_does(
    drawn: list[Run], seed: int, every: int, shortest: int, data: st.DataObject
) -> None:
    # Runs of fallback predictions (errors), stuck scores (alarms), restores with their
    # grace and reports every few inputs: a batch's runs of predictions end where one by
    # one the watch finds something, and leave the same effects and state.
    records = quiet_runs(drawn, seed)
    model = parse_portfolio(QUIET_MODEL).models["ranker"]
    with (
        mock.patch.object(watch_module, "OUTPUT_REPORT_EVERY", every),
        mock.patch.object(monitor_module, "QUIET_RUN", shortest),
    ):
        assert_batches_as_one_by_one(model, records, data.draw(batching.cuts(len(records))))


def test_a_run_of_quiet_predictions_ends_at_errors_alarms_restores_and_reports() -> None:
    # A stream of the test above that reaches each way a run ends: error alarms, score
    # alarms and their episode, restores and their grace, reports every eight inputs.
    drawn: list[Run] = [
        (30, "live", False, 2),
        (20, "fallback", False, 1),
        (25, "live", False, 0),
        (25, "live", True, 2),
        (30, "live", False, 1),
        (20, "shadow", False, 0),
        (10, "fallback", False, 0),
        (30, "live", False, 0),
    ]
    records = quiet_runs(drawn, 3)
    model = parse_portfolio(QUIET_MODEL).models["ranker"]
    ended = []
    quiet = Monitor._quiet

    def counted(monitor: Monitor, found: object, start: int, stop: int) -> int:
        end = quiet(monitor, found, start, stop)  # type: ignore[arg-type]
        ended.append((start, end, stop))
        return end

    with (
        mock.patch.object(watch_module, "OUTPUT_REPORT_EVERY", 8),
        mock.patch.object(monitor_module, "QUIET_RUN", 2),
    ):
        one = Monitor(model)
        each = [one.observe(Batch.from_records("ranker", [r])) for r in records]
        whole = Monitor(model)
        with mock.patch.object(Monitor, "_quiet", counted):
            at_once = whole.observe(Batch.from_records("ranker", records))
    actions = [c.action for e in each for c in e.commands]
    assert actions == ["fallback", "restore"] * 4
    assert {e.detector for effects in each for e in effects.alarms} == {"error_rate", "score"}
    assert outcomes(each) == outcomes([at_once])
    one.unsaved = whole.unsaved = 0
    assert batching.state_difference(one, whole) is None
    # Runs taken whole, and runs that ended where the watch found something.
    assert any(start < end == stop for start, end, stop in ended)
    assert any(start < end < stop for start, end, stop in ended)
