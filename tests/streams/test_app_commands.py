"""A command the control topic already holds is not sent again.

A worker restored from a checkpoint taken before a command it sent decides the same
transition again, with the same seq. Here the control topic holds that command before the
worker starts (as the killed worker left it): the worker reads the topic first, skips the
command it makes again and counts it, so the topic keeps one command for the decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from schemas.codec import encode
from schemas.signing import Keyring
from streams.monitor import Batch, Monitor
from streams.portfolio import parse_portfolio
from streams.settings import Settings
from streams.topics import CONTROL
from streams.worker.app import create_app
from streams.worker.metrics import render
from tests.streams.test_app_drift import (
    KEYS,
    PORTFOLIO,
    TIMEOUT_S,
    predictions,
    produce,
    read_commands,
)

pytestmark = pytest.mark.integration

# After the fallback (at the 3,000th prediction), before the stream returns to normal.
PREDICTIONS_READ = 3300


async def test_a_command_already_on_the_control_topic_is_skipped_and_counted(
    worker_settings: Settings,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    from confluent_kafka import Producer

    settings = dataclasses.replace(worker_settings, control_private_key=KEYS)
    model = unique_name
    portfolio = parse_portfolio(PORTFOLIO.format(model=model))
    spec = portfolio.models[model]
    stream = predictions(model, seed=7)[:PREDICTIONS_READ]
    # The fallback the model's monitor decides on this stream, as the killed worker sent it.
    numeric = frozenset(f.name for f in spec.features if f.kind == "numeric")
    (sent,) = Monitor(spec).observe(Batch.from_records(model, stream, numeric)).commands
    assert sent.action == "fallback"
    producer = Producer(confluent_producer_config)
    signed = sent.signed(Keyring.from_settings(settings))
    producer.produce(CONTROL.name(settings), key=model, value=encode(signed))
    assert producer.flush(30) == 0
    produce(confluent_producer_config, settings, stream)

    app = create_app(settings, portfolio)
    await app.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        counters = app.counters
        while (
            sum(counters.consumed.values()) < len(stream) or not counters.commands_skipped_as_sent
        ):
            assert loop.time() < deadline, (dict(counters.consumed), counters.commands_sent)
            await asyncio.sleep(0.2)
        metrics = render(app.collector).decode()
    finally:
        await app.stop()

    assert dict(counters.commands_skipped_as_sent) == {"fallback": 1}
    assert dict(counters.commands_sent) == {}
    assert 'failsoft_commands_skipped_as_sent_total{action="fallback"} 1.0' in metrics
    # Read back after a second without another message: one command, the first one.
    assert read_commands(confluent_consumer_config, CONTROL.name(settings), expected=1) == [signed]
