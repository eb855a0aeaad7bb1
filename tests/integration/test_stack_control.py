"""``failsoft stack``: idempotent start, status, stop without leftovers, and failures that
end in one clear line instead of a hang. Runs on private ports and state folders, so the
shared stack is never disturbed."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings, env_name
from streams.stack import StackError, private_settings
from streams.stack.base import Server
from streams.stack.influxdb import InfluxDBServer
from streams.stack.kafka import KafkaServer
from streams.stack.process import group_alive, spawn
from tests.conftest import PrivateKafka

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 180.0


def failsoft(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``failsoft`` command line with ``settings`` passed through the environment."""
    env = dict(os.environ)
    for field in dataclasses.fields(settings):
        env[env_name(field.name)] = str(getattr(settings, field.name))
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def processes_mentioning(text: str) -> list[str]:
    listing = subprocess.run(
        ["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listing.splitlines() if text in line and " -eww " not in line]


@pytest.fixture
def private(stack_settings: Settings, tmp_path: Path) -> Settings:
    return private_settings(stack_settings, tmp_path / "stack")


def test_cli_up_twice_status_and_down_leave_no_process(private: Settings) -> None:
    first = failsoft(private, "stack", "up", "kafka")
    assert first.returncode == 0, first.stderr
    assert "kafka: started at" in first.stdout

    second = failsoft(private, "stack", "up", "kafka")
    assert second.returncode == 0, second.stderr
    assert "kafka: already running" in second.stdout
    assert "already up, nothing to do" in second.stdout

    status = failsoft(private, "stack", "status")
    lines = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()}
    assert lines == {
        "kafka": "healthy",
        "influxdb": "stopped",
        "postgres": "stopped",
        "alerta": "stopped",
    }
    assert status.returncode == 3  # not every server is healthy
    assert processes_mentioning(str(private.state_dir))

    down = failsoft(private, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert "kafka: stopped" in down.stdout
    assert processes_mentioning(str(private.state_dir)) == []


def test_private_kafka_keeps_its_data_across_stop_and_restart(
    private_kafka: PrivateKafka, unique_name: str
) -> None:
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": private_kafka.bootstrap})
    producer.produce(unique_name, value=b"before restart")
    assert producer.flush(30) == 0

    assert private_kafka.stop().startswith("kafka: stopped")
    assert not private_kafka.running
    assert processes_mentioning(str(private_kafka.settings.state_dir)) == []

    assert private_kafka.start().startswith("kafka: started")
    assert private_kafka.start().startswith("kafka: already running")

    consumer = Consumer(
        {
            "bootstrap.servers": private_kafka.bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([unique_name])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.value() == b"before restart"
    finally:
        consumer.close()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_taken_port_ends_in_one_line_naming_server_cause_and_log(
    private: Settings, taken_port: int
) -> None:
    settings = dataclasses.replace(private, kafka_bootstrap=f"127.0.0.1:{taken_port}")
    result = failsoft(settings, "stack", "up", "kafka")

    log = settings.state_dir / "logs" / "kafka.log"
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"failsoft stack: kafka: port 127.0.0.1:{taken_port} is taken by another process "
        f"(log: {log})"
    )
    assert "is taken" in log.read_text()


@pytest.mark.parametrize(
    ("server", "cause"),
    [
        (KafkaServer(version="0.0.0-failsoft-missing"), "download of kafka_2.13"),
        (InfluxDBServer(version="0.0.0"), "build of influxd 0.0.0 failed"),
    ],
    ids=["kafka", "influxdb"],
)
def test_failed_download_ends_in_one_line_naming_server_cause_and_log(
    server: Server, cause: str, private: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    # A cache of its own (no stray version folders in the shared one) that reuses the
    # shared Maven repository, so only the missing artifact is asked for.
    cache = tmp_path / "cache"
    cache.mkdir()
    (stack_settings.cache_dir / "maven").mkdir(parents=True, exist_ok=True)
    (cache / "maven").symlink_to(stack_settings.cache_dir / "maven")
    settings = dataclasses.replace(private, cache_dir=cache)

    with pytest.raises(StackError) as failure:
        server.start(settings)

    log = settings.state_dir / "logs" / f"{server.name}-install.log"
    message = str(failure.value)
    assert message.startswith(f"{server.name}: {cause}")
    assert message.endswith(f"(log: {log})")
    assert "\n" not in message
    assert server.pid_file(settings).live_pid() is None


class ScriptServer(Server):
    """A stand-in process (a shell script) for the start-up machinery's failure paths."""

    name = "script"
    start_timeout_s = 1.0
    stop_timeout_s = 1.0

    def __init__(self, script: str) -> None:
        self.script = script
        self.pid: int | None = None

    def address(self, settings: Settings) -> str:
        return "nowhere"

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        return []

    def install(self, settings: Settings) -> None:
        return None

    def launch(self, settings: Settings) -> int:
        self.pid = spawn(["sh", "-c", self.script], self.log(settings)).pid
        return self.pid

    def healthy(self, settings: Settings) -> bool:
        return False


def test_a_server_never_healthy_fails_after_its_bounded_wait_and_is_killed(
    private: Settings,
) -> None:
    server = ScriptServer("trap '' TERM; sleep 600 & wait")
    with pytest.raises(StackError, match=r"^script: not healthy within 1 s \(log: "):
        server.start(private)
    assert server.pid is not None and not group_alive(server.pid)


def test_a_server_that_exits_at_start_up_says_so(private: Settings) -> None:
    server = ScriptServer("echo 'cannot open data folder' >&2; exit 3")
    with pytest.raises(StackError, match="the process exited during start-up") as failure:
        server.start(private)
    assert "cannot open data folder" in failure.value.log.read_text()
