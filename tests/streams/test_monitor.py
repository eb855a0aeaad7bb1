"""The per-model monitor: batches in, effects out, the same whatever the batch size."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from schemas.signing import Keyring
from streams.monitor import STATE_FORMAT, Batch, CommandToSign, Monitor, StateFormatError
from streams.monitor import monitor as monitor_module
from streams.monitor.batch import Record
from streams.monitor.held import request_hash
from streams.portfolio import Portfolio
from tests.benchmarks.bench_monitor_replay import batches, scenario
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
