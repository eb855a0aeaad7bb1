"""Restart: SIGKILL a `failsoft worker` mid-incident and start it again.

The worker runs as its own process with RocksDB tables. It is killed while the model is on
fallback, then restarted. If its watch were not restored from the changelog, it would
learn a new reference from the drifted stream, never restore, and fall back again when
the stream returns to normal. Restored, it sends exactly one fallback and one restore.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.contracts import Prediction
from schemas.signing import Keyring
from streams.settings import Settings, env_name
from streams.topics import CONTROL, PREDICTIONS
from tests.streams.proxy import free_port
from tests.streams.test_app_drift import (
    KEYS,
    PORTFOLIO,
    PUBLIC_KEYS,
    predictions,
    produce,
    read_commands,
)

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 90.0
FALLBACK_AT = 2999  # the event the fallback is issued at
KILL_AT = 3300  # after the fallback, before the stream returns (4,000)
STOP_AT = 1500  # before the drift (2,000), and before any checkpoint


@pytest.fixture
def restart_settings(worker_settings: Settings, unique_name: str, tmp_path: Path) -> Settings:
    """The test's worker with RocksDB tables, a portfolio file and a signing key."""
    portfolio = tmp_path / "portfolio.toml"
    portfolio.write_text(PORTFOLIO.format(model=unique_name))
    return dataclasses.replace(
        worker_settings,
        worker_store="rocksdb://",
        portfolio_path=portfolio,
        control_private_key=KEYS,
    )


class WorkerProcess:
    """`failsoft worker` in a process of its own, configured through the environment."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = dict(os.environ)
        for field in dataclasses.fields(settings):
            env[env_name(field.name)] = str(getattr(settings, field.name))
        self.settings = settings
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def metric(self, sample: str) -> int | None:
        """A sample of the worker's /metrics, e.g. ``name{label="value"}``; None until it
        serves, 0 while the sample is absent."""
        url = f"http://127.0.0.1:{self.settings.worker_web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    def consumed(self) -> int | None:
        """Predictions consumed so far; None until the worker serves."""
        topic = PREDICTIONS.name(self.settings)
        return self.metric(f'failsoft_messages_consumed_total{{topic="{topic}"}}')

    def assigned(self) -> int:
        """Partitions of each input topic the worker reads (0 before its first rebalance)."""
        return self.metric("failsoft_partitions_assigned") or 0

    def wait_consumed(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (self.consumed() or 0) < count:
            assert self.process.poll() is None, f"worker exited with {self.process.returncode}"
            assert time.monotonic() < deadline, f"consumed {self.consumed()} of {count}"
            time.sleep(0.2)

    def tail(self, chars: int = 3000) -> str:
        """The end of the worker's log, for a failure's message."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_all(
    workers: list[WorkerProcess],
    read: Callable[[WorkerProcess], int | None],
    done: Callable[[list[int]], bool],
    timeouts: int,
) -> None:
    """Until ``done`` holds for what ``read`` gives of each worker (None as 0), within
    ``timeouts`` times ``START_TIMEOUT_S``, every worker still running."""
    deadline = time.monotonic() + START_TIMEOUT_S * timeouts
    while not done([read(worker) or 0 for worker in workers]):
        assert all(w.process.poll() is None for w in workers), [
            (w.process.returncode, w.tail()) for w in workers
        ]
        assert time.monotonic() < deadline, [read(worker) for worker in workers]
        time.sleep(0.5)


def restarted(
    settings: Settings,
    stream: list[Prediction],
    at: int,
    end: Callable[[WorkerProcess], None],
    log: Path,
    producer_config: dict[str, Any],
    consumer_config: dict[str, Any],
) -> list[str]:
    """A worker reads ``stream[:at]`` and is ended by ``end``; a second reads the rest.
    The actions of the commands the first sent."""
    produce(producer_config, settings, stream[:at])
    first = WorkerProcess(settings, log)
    try:
        first.wait_consumed(at)
        end(first)
    finally:
        first.stop()
    before = read_commands(consumer_config, CONTROL.name(settings), expected=int(at > FALLBACK_AT))
    produce(producer_config, settings, stream[at:])
    second = WorkerProcess(settings, log)
    try:
        second.wait_consumed(len(stream) - at)
        time.sleep(3)
    finally:
        second.stop()
    return [command.action for command in before]


def kill_after_commit(worker: WorkerProcess) -> None:
    # Let the offset commit (every second) and the changelog catch up, then kill -9.
    time.sleep(5)
    worker.kill()


@pytest.mark.parametrize(
    ("at", "end"),
    [(KILL_AT, kill_after_commit), (STOP_AT, WorkerProcess.stop)],
    ids=["sigkill-on-fallback", "sigterm-before-any-checkpoint"],
)
def test_a_restart_restores_state_and_neither_loses_nor_repeats_a_command(
    restart_settings: Settings,
    unique_name: str,
    tmp_path: Path,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
    at: int,
    end: Callable[[WorkerProcess], None],
) -> None:
    """Killed on fallback, the restarted worker restores from the fallback's checkpoint.
    Stopped (SIGTERM) before the monitor asked for any checkpoint, the worker writes it to
    the table as it stops, before it commits its offsets; without that, the next worker
    would start from a fresh monitor at event 1,500, learn its reference from the drifted
    stream (2,000 to 4,000), fall back only once the stream returns to normal and never
    restore."""
    settings = restart_settings
    stream = predictions(unique_name, seed=7)
    log = tmp_path / "worker.log"
    before = restarted(
        settings, stream, at, end, log, confluent_producer_config, confluent_consumer_config
    )
    assert before == ["fallback"] * (at > FALLBACK_AT)

    commands = read_commands(confluent_consumer_config, CONTROL.name(settings), expected=2)
    tail = log.read_text(errors="replace")[-3000:]
    assert [(c.action, c.issued_at) for c in commands][:1] == [
        ("fallback", stream[FALLBACK_AT].predicted_at)
    ], tail
    assert [c.action for c in commands] == ["fallback", "restore"], tail
    # The restore comes from the restored policy: after the stream returned at 4,000 and
    # two quiet periods of 600 s, well before a fresh watch could have alarmed again.
    assert stream[4000].predicted_at < commands[1].issued_at < stream[6000].predicted_at
    assert len({c.seq for c in commands}) == 2 and commands[0].seq < commands[1].seq
    assert all(Keyring.parse(public_keys=PUBLIC_KEYS).verify(c) for c in commands)


def test_two_workers_share_the_partitions_and_each_model_gets_its_commands_once(
    restart_settings: Settings,
    tmp_path: Path,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    # Fixed model names, so that their partitions (and the split between the two workers)
    # are the same in every run; the topics are the test's own.
    models = [f"model-{n}" for n in range(4)]
    portfolio = tmp_path / "portfolio.toml"
    portfolio.write_text("".join(PORTFOLIO.format(model=model) for model in models))
    first_settings = dataclasses.replace(restart_settings, portfolio_path=portfolio)
    second_settings = dataclasses.replace(
        first_settings, worker_web_port=free_port(), worker_data_dir=tmp_path / "worker-2"
    )
    streams = [predictions(model, seed=n) for n, model in enumerate(models)]
    total = sum(len(stream) for stream in streams)

    workers = [
        WorkerProcess(first_settings, tmp_path / "worker-1.log"),
        WorkerProcess(second_settings, tmp_path / "worker-2.log"),
    ]
    try:
        # Both in the group, with the partitions split between them, before the data: a
        # worker that joins later finds the offsets committed past what it would have read.
        # Waiting a fixed 5 s once let the first worker read all of it on a loaded machine.
        half = PREDICTIONS.partitions // 2
        wait_all(workers, WorkerProcess.assigned, lambda counts: counts == [half, half], 1)
        for stream in streams:
            produce(confluent_producer_config, first_settings, stream)
        wait_all(workers, WorkerProcess.consumed, lambda counts: sum(counts) >= total, 2)
        # With events read twice, the sum can reach the total before every event was read:
        # wait for the commands while the workers still run.
        commands = read_commands(confluent_consumer_config, CONTROL.name(first_settings), 8)
        consumed = [worker.consumed() or 0 for worker in workers]
    finally:
        for worker in workers:
            worker.stop()

    # At least once: a rebalance while a worker reads hands the uncommitted tail of its
    # partitions to the other, which reads it again (each worker's books still balance).
    assert sum(consumed) >= total, consumed
    assert all(count > 0 for count in consumed), consumed  # both workers hold partitions
    # Read again or not, each model's incident gives one fallback and one restore.
    by_model = {model: [c.action for c in commands if c.model_id == model] for model in models}
    assert by_model == {model: ["fallback", "restore"] for model in models}
