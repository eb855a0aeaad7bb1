"""The worker logs at the level it is given (Faust's spinner must not lower the root's), and
what it logs there: at info the story of each model, at warning what needs a human."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from streams.monitor.effects import Alert
from streams.portfolio import Model, Portfolio
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.cli import faust_worker
from streams.worker.readers import TopicLag
from streams.worker.shell import Monitors
from tests.streams.test_app_drift import KEYS
from tests.streams.test_watch import small_model, stream, with_future_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.parametrize(
    ("loglevel", "level"), [("warning", logging.WARNING), ("info", logging.INFO)]
)
def test_the_root_logger_keeps_the_level_asked_for(
    root_logger: logging.Logger, tmp_path: Path, loglevel: str, level: int
) -> None:
    settings = dataclasses.replace(
        Settings.from_env({}),
        portfolio_path=REPO / "deploy" / "portfolio.example.toml",
        worker_data_dir=tmp_path,
    )
    worker = faust_worker(create_app(settings), loglevel)
    # What the worker does once mode has configured logging at the level asked for (the
    # whole set-up would also redirect this process's stdout and stderr).
    root_logger.handlers[:] = [logging.NullHandler(level)]
    root_logger.setLevel(level)
    worker.on_setup_root_logger(root_logger, level)
    assert root_logger.level == level
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)


class SentCommands:
    """Stands in for the control topic: what was sent, by key."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.alerts: list[Alert] = []  # and the alerts, as the Alerta sink got them

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append(key)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)  # as the broker's ack, which the shell awaits
        return delivered


def monitors_of(
    tmp_path: Path, control_private_key: str, model: Model | None = None
) -> tuple[Monitors, SentCommands, Model]:
    model = model or small_model()
    settings = dataclasses.replace(
        Settings.from_env({}), worker_data_dir=tmp_path, control_private_key=control_private_key
    )
    app = create_app(settings, Portfolio({model.model_id: model}))
    control = SentCommands()
    alerts: list[Alert] = []
    app.alerta.enqueue = alerts.append  # type: ignore[method-assign,assignment]
    control.alerts = alerts
    # A dict for the table: outside an agent, Faust refuses table writes.
    return Monitors(app, {}, control), control, model  # type: ignore[arg-type]


async def play(monitors: Monitors, model: Model) -> None:
    # A value written an hour after its prediction: an immediate fallback, then quiet.
    normal = stream(np.random.default_rng(3), 0, 4000, 0.0)
    records = with_future_value(normal, 1500, skew_ms=3_600_000)
    for start in range(0, len(records), 500):
        await monitors.feed(model, records[start : start + 500], {})


async def test_info_tells_transitions_commands_and_alerts_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitors, control, model = monitors_of(tmp_path, KEYS)
    with caplog.at_level(logging.INFO, logger="streams.worker.shell"):
        await play(monitors, model)
    quiet = "no alarm for 600 s"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "ranker: health healthy -> fallback (critical: future_values)"),
        (
            "INFO",
            "ranker: alert future_values opened (critical): ranker: future_values alarms on age",
        ),
        (
            "INFO",
            "ranker: alert ModelFallback opened (major): "
            "ranker is fallback (future_values): critical: future_values",
        ),
        (
            "INFO",
            "ranker: command fallback seq 2500000 by future_values sent: critical: future_values",
        ),
        ("INFO", f"ranker: health fallback -> probing ({quiet})"),
        ("INFO", f"ranker: alert ModelProbing opened (minor): ranker is probing (health): {quiet}"),
        ("INFO", f"ranker: health probing -> healthy ({quiet})"),
        ("INFO", f"ranker: alert ModelHealthy closed: ranker is healthy (health): {quiet}"),
        (
            "INFO",
            "ranker: alert future_values closed: "
            "ranker: future_values is quiet again; ranker is restored",
        ),
        ("INFO", f"ranker: command restore seq 3700000 by health sent: {quiet}"),
    ]
    assert control.sent == [b"ranker", b"ranker"]
    # Logged and sent: every alert line is an alert the sink got.
    assert [a.event for a in control.alerts] == [
        "future_values",
        "ModelFallback",
        "ModelProbing",
        "ModelHealthy",
        "future_values",
    ]
    assert monitors.summary() == (
        "summary: records none yet; models healthy 1; "
        "commands 2 sent, 0 withheld, 0 skipped as sent"
    )
    monitors.app.counters.consumed["p.predictions"] += 4000
    monitors.app.counters.dead_lettered["p.predictions", "unknown model"] += 3
    assert monitors.summary().startswith("summary: records p.predictions 4000 (3 dead-lettered);")
    # The reader is 50 records behind, and the last it read was written 2.5 s ago.
    reader = monitors.app.reader
    reader.lag = lambda: {"p.predictions": TopicLag(50, 50, 2.5)}  # type: ignore[method-assign]
    assert monitors.summary() == (
        "summary: records p.predictions 4000 (3 dead-lettered, lag 50 records, 2.5 s); "
        "models healthy 1; "
        "commands 2 sent, 0 withheld, 0 skipped as sent"
    )


async def test_warning_is_only_what_needs_a_human(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Twenty minutes on fallback: past a ten-minute limit, on-call must look.
    model = dataclasses.replace(small_model(), escalation_limit=timedelta(minutes=10))
    monitors, control, model = monitors_of(tmp_path, "", model)
    with caplog.at_level(logging.WARNING, logger="streams.worker.shell"):
        await play(monitors, model)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "ranker: command fallback seq 2500000 by future_values withheld: no signing key "
            "(FAILSOFT_CONTROL_PRIVATE_KEY_FILE); critical: future_values",
        ),
        (
            "WARNING",
            "ranker: alert FallbackEscalated opened (critical): "
            "ranker has served its fallback for 10 min; team-search must look",
        ),
        (
            "WARNING",
            "ranker: command restore seq 3700000 by health withheld: no signing key "
            "(FAILSOFT_CONTROL_PRIVATE_KEY_FILE); no alarm for 600 s",
        ),
    ]
    assert control.sent == []


async def test_a_worker_that_takes_a_model_over_sends_its_health_alert_again(
    tmp_path: Path,
) -> None:
    # Seed 11 of the chaos run: a worker was SIGKILLed 4 s after its fallback command left,
    # with the ModelFallback alert still in its Alerta sink's memory; the worker after it
    # restored the model already in fallback, so nothing paged on-call.
    monitors, control, model = monitors_of(tmp_path, KEYS)
    normal = stream(np.random.default_rng(3), 0, 4000, 0.0)
    records = with_future_value(normal, 1500, skew_ms=3_600_000)
    await monitors.feed(model, records[:2000], {})
    assert control.sent == [b"ranker"]
    assert [a.event for a in control.alerts if a.group == "health"] == ["ModelFallback"]
    taker, taker_control, _ = monitors_of(tmp_path, KEYS, model)
    taker.table = monitors.table
    restored = taker.peek(model)
    assert restored is not None and restored.watch.policy.state.value == "fallback"
    assert [(a.event, a.severity, a.text) for a in taker_control.alerts] == [
        ("ModelFallback", "major", "ranker is fallback (future_values): critical: future_values")
    ]
    assert taker_control.sent == []
    # Held in memory from then on: read again, it says nothing more.
    assert taker.peek(model) is restored and len(taker_control.alerts) == 1


async def test_a_healthy_model_taken_over_sends_no_alert(tmp_path: Path) -> None:
    monitors, _, model = monitors_of(tmp_path, KEYS)
    await monitors.feed(model, stream(np.random.default_rng(3), 0, 600, 0.0), {})
    monitors.save(model.model_id)
    assert model.model_id in monitors.table
    taker, taker_control, _ = monitors_of(tmp_path, KEYS, model)
    taker.table = monitors.table
    assert taker.peek(model) is not None
    assert taker_control.alerts == []
