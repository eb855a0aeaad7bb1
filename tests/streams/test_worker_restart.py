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
from pathlib import Path
from typing import Any

import pytest

from schemas.signing import Keyring
from streams.settings import Settings, env_name
from streams.topics import CONTROL, PREDICTIONS
from tests.streams.test_app_drift import KEYS, PORTFOLIO, predictions, produce, read_commands

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 90.0
KILL_AT = 3300  # after the fallback (event 2,999), before the stream returns (4,000)


@pytest.fixture
def restart_settings(worker_settings: Settings, unique_name: str, tmp_path: Path) -> Settings:
    """The test's worker with RocksDB tables, a portfolio file and a signing key."""
    portfolio = tmp_path / "portfolio.toml"
    portfolio.write_text(PORTFOLIO.format(model=unique_name))
    return dataclasses.replace(
        worker_settings,
        worker_store="rocksdb://",
        portfolio_path=portfolio,
        control_keys=KEYS,
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

    def consumed(self) -> int | None:
        """Predictions consumed so far, from the worker's /metrics; None until it serves."""
        url = f"http://127.0.0.1:{self.settings.worker_web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        topic = re.escape(PREDICTIONS.name(self.settings))
        found = re.search(rf'failsoft_messages_consumed_total\{{topic="{topic}"\}} (\S+)', text)
        return int(float(found.group(1))) if found else 0

    def wait_consumed(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (self.consumed() or 0) < count:
            assert self.process.poll() is None, f"worker exited with {self.process.returncode}"
            assert time.monotonic() < deadline, f"consumed {self.consumed()} of {count}"
            time.sleep(0.2)

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


def test_sigkill_and_restart_restores_state_and_neither_loses_nor_repeats_a_command(
    restart_settings: Settings,
    unique_name: str,
    tmp_path: Path,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    settings = restart_settings
    stream = predictions(unique_name, seed=7)
    produce(confluent_producer_config, settings, stream[:KILL_AT])

    first = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        first.wait_consumed(KILL_AT)
        # Let the offset commit (every 2.8 s) and the changelog catch up, then kill -9.
        time.sleep(5)
        first.kill()
    finally:
        first.stop()
    before = read_commands(confluent_consumer_config, CONTROL.name(settings), expected=1)
    assert [c.action for c in before] == ["fallback"]

    produce(confluent_producer_config, settings, stream[KILL_AT:])
    second = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        second.wait_consumed(len(stream) - KILL_AT)
        time.sleep(3)
    finally:
        second.stop()

    commands = read_commands(confluent_consumer_config, CONTROL.name(settings), expected=2)
    log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert [(c.action, c.issued_at) for c in commands][:1] == [
        ("fallback", stream[2999].predicted_at)
    ], log
    assert [c.action for c in commands] == ["fallback", "restore"], log
    # The restore comes from the restored policy: after the stream returned at 4,000 and
    # two quiet periods of 600 s, well before a fresh watch could have alarmed again.
    assert stream[4000].predicted_at < commands[1].issued_at < stream[6000].predicted_at
    assert len({c.seq for c in commands}) == 2 and commands[0].seq < commands[1].seq
    assert all(Keyring.parse(KEYS).verify(c) for c in commands)
