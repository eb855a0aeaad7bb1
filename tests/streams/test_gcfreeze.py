"""The worker freezes what survives each full garbage collection and unfreezes it all at a
handover (``streams.worker.gcfreeze``)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.gcfreeze import FullCollections
from streams.worker.metrics import render

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """A cycle of one, which only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.fixture
def freezing() -> Iterator[FullCollections]:
    # Installed by each test on its own loop (an async fixture's may be another).
    collections = FullCollections(freeze=True)
    yield collections
    collections.remove()


async def test_what_survives_a_full_collection_is_frozen_at_the_next_turn(
    freezing: FullCollections,
) -> None:
    freezing.install(asyncio.get_running_loop())
    gc.collect(1)
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == 0, "a younger collection does not freeze"
    gc.collect()
    assert gc.get_freeze_count() == 0, "not inside the collector's callback"
    await asyncio.sleep(0)
    assert gc.get_freeze_count() > 0
    assert (freezing.freezes, freezing.pauses.total) == (1, 1)
    # The next full collection scans and collects what is newer than the freeze.
    new = weakref.ref(Node())
    gc.collect()
    assert new() is None
    # At least the Node: its __dict__ counts too only where Python made one (3.11 keeps an
    # instance's attributes inline until something asks for the dict), which depends on
    # what ran before in the process.
    assert freezing.collected >= 1


async def test_frozen_cycles_are_kept_until_a_handover(freezing: FullCollections) -> None:
    freezing.install(asyncio.get_running_loop())
    old = Node()
    kept = weakref.ref(old)
    gc.collect()
    await asyncio.sleep(0)
    del old
    gc.collect()
    await asyncio.sleep(0)
    assert kept() is not None, "the trade-off: frozen cyclic garbage stays"
    await freezing.handover()
    assert gc.get_freeze_count() == 0
    assert freezing.unfreezes == 1
    gc.collect()
    assert kept() is None


async def test_a_handover_cancels_a_freeze_asked_for_before_it(freezing: FullCollections) -> None:
    freezing.install(asyncio.get_running_loop())
    gc.collect()
    # Monitors dropped now must not be frozen by the turn the collection asked for.
    await freezing.handover()
    await asyncio.sleep(0)
    assert gc.get_freeze_count() == 0
    assert freezing.freezes == 0


async def test_off_it_only_times_full_collections() -> None:
    collections = FullCollections(freeze=False)
    collections.install(asyncio.get_running_loop())
    try:
        gc.collect()
        gc.collect()
        await asyncio.sleep(0)
        assert gc.get_freeze_count() == 0
        assert (collections.freezes, collections.pauses.total) == (0, 2)
    finally:
        collections.remove()
    gc.collect()
    assert collections.pauses.total == 2, "removed, it no longer counts"


def test_metrics_count_pauses_freezes_and_unfreezes() -> None:
    collections = FullCollections(True, buckets=(0.01, 1.0))
    collections.pauses.counts = [3, 1, 0]
    collections.pauses.sum = 0.5
    collections.longest = 0.25
    collections.freezes, collections.unfreezes = 4, 1
    collections.collected = 70
    lines = [
        line
        for line in render(collections).decode().splitlines()
        if line.startswith("failsoft_gc") and "_created" not in line
    ]
    assert lines == [
        'failsoft_gc_full_collection_seconds_bucket{le="0.01"} 3.0',
        'failsoft_gc_full_collection_seconds_bucket{le="1.0"} 4.0',
        'failsoft_gc_full_collection_seconds_bucket{le="+Inf"} 4.0',
        "failsoft_gc_full_collection_seconds_count 4.0",
        "failsoft_gc_full_collection_seconds_sum 0.5",
        "failsoft_gc_full_collection_longest_seconds 0.25",
        "failsoft_gc_full_collection_collected_total 70.0",
        "failsoft_gc_freezes_total 4.0",
        "failsoft_gc_unfreezes_total 1.0",
    ]


async def test_the_worker_unfreezes_when_partitions_are_revoked(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        Settings.from_env({}),
        portfolio_path=ROOT / "deploy" / "portfolio.example.toml",
        worker_data_dir=tmp_path,
        worker_store="memory://",
    )
    app = create_app(settings)
    assert app.full_collections.freeze
    gc.freeze()
    await app.on_partitions_revoked.send()
    assert gc.get_freeze_count() == 0
    gc.freeze()
    await app.on_rebalance_complete.send()
    assert gc.get_freeze_count() == 0
    off = create_app(dataclasses.replace(settings, worker_gc_freeze=False))
    assert not off.full_collections.freeze
