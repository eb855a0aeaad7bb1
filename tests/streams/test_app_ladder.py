"""A fallback ladder end to end on the real stack: the worker steps a GPU model's fleet
down to the static default when its CPU fallback model drifts too, then back up one level
at a time, with signed commands in seq that a node's router follows."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import threading
from typing import Any

import aiohttp
import msgspec
import pytest

from schemas.signing import Keyring
from streams.fleet import ControlListener, ModeChange
from streams.portfolio import parse_portfolio
from streams.settings import Settings
from streams.topics import CONTROL
from streams.worker.app import create_app
from tests.streams.test_app_drift import (
    KEYS,
    PORTFOLIO,
    PUBLIC_KEYS,
    TIMEOUT_S,
    predictions,
    produce,
    read_commands,
)

pytestmark = pytest.mark.integration


async def test_the_worker_steps_down_the_ladder_and_climbs_back_by_signed_commands(
    worker_settings: Settings,
    unique_name: str,
    confluent_producer_config: dict[str, Any],
    confluent_consumer_config: dict[str, Any],
) -> None:
    settings = dataclasses.replace(worker_settings, control_private_key=KEYS)
    gpu, cpu = unique_name, f"{unique_name}-cpu"
    text = PORTFOLIO.format(model=gpu).replace(
        'fallback = "top_n_popular"', f'fallback = ["{cpu}", "top_n_popular"]'
    ) + PORTFOLIO.format(model=cpu)
    portfolio = parse_portfolio(text)
    # The GPU model drifts from 2,000 s to 5,000 s (fallback at 2,999 s, restore at
    # 6,199 s); the CPU model from 2,500 s to 3,500 s (fallback at 3,499 s, restore at
    # 4,699 s), while the GPU model is on it. A replay is read far faster than event time
    # passes, and one model's records may all be fed before the other's: the worker hears
    # of a level's health when the level's monitor gets there. So the records go in four
    # phases, each read before the next is produced, with one model's transitions per
    # phase. (Had the GPU model been restored while the CPU model was still bad, the
    # climb would have skipped level 1.)
    streams = [
        predictions(gpu, seed=7, shifted=3000, after=3000),
        predictions(cpu, seed=8, shifted=1000, after=5000),
    ]
    # Both start about 8,000 s before now; the CPU model's starts 500 s after the GPU's.
    offset = streams[0][0].predicted_at - streams[1][0].predicted_at + 500_000
    streams[1] = [
        msgspec.structs.replace(p, predicted_at=p.predicted_at + offset) for p in streams[1]
    ]
    merged = list(heapq.merge(*streams, key=lambda p: p.predicted_at))
    start_ms = streams[0][0].predicted_at
    phases = [
        [p for p in merged if low <= (p.predicted_at - start_ms) / 1000 < high]
        for low, high in [(0, 3_250), (3_250, 4_000), (4_000, 5_500), (5_500, 1e9)]
    ]
    assert sum(map(len, phases)) == len(merged)

    changes: list[ModeChange] = []
    back = threading.Event()
    listener = ControlListener(settings)
    listener.on_change(changes.append)
    listener.on_change(lambda c: back.set() if c.model_id == gpu and c.new == "live" else None)
    listener.start()
    app = create_app(settings, portfolio)
    await app.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        produced = 0
        for phase in phases:
            produce(confluent_producer_config, settings, phase)
            produced += len(phase)
            while sum(app.counters.consumed.values()) < produced:
                assert loop.time() < deadline, (dict(app.counters.consumed), changes)
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # past the reader's batching delay (50 ms)
        while not back.is_set():
            assert loop.time() < deadline, (dict(app.counters.consumed), changes)
            await asyncio.sleep(0.2)
        models_url = f"http://127.0.0.1:{settings.worker_web_port}/failsoft/models"
        async with aiohttp.ClientSession() as session, session.get(models_url) as response:
            view = {entry["model_id"]: entry for entry in (await response.json())["models"]}
    finally:
        await app.stop()
        listener.stop()

    commands = read_commands(confluent_consumer_config, CONTROL.name(settings), expected=6)
    ladder = [(c.action, c.level) for c in commands if c.model_id == gpu]
    assert ladder == [("fallback", 1), ("fallback", 2), ("fallback", 1), ("restore", 0)]
    assert [(c.action, c.level) for c in commands if c.model_id == cpu] == [
        ("fallback", None),
        ("restore", None),
    ]
    keyring = Keyring.parse(public_keys=PUBLIC_KEYS)
    assert all(keyring.verify(c) for c in commands)
    seqs = [c.seq for c in commands if c.model_id == gpu]
    assert seqs == sorted(set(seqs))
    assert [(c.new, c.level) for c in changes if c.model_id == gpu] == [
        ("fallback", 1),
        ("fallback", 2),
        ("fallback", 1),
        ("live", 0),
    ]
    assert view[gpu]["ladder"] == {"levels": [cpu, "top_n_popular"], "level": 0, "skipped": []}
    assert "ladder" not in view[cpu]
