"""The worker freezes what it holds once started, and full collections skip it
(``streams.worker.gcfreeze``)."""

from __future__ import annotations

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
    collections = FullCollections(freeze=True)
    yield collections
    collections.remove()


def test_what_is_alive_at_the_start_is_frozen_and_skipped(freezing: FullCollections) -> None:
    before = Node()
    assert not gc.get_freeze_count()
    freezing.install()
    assert freezing.frozen == gc.get_freeze_count() > 0
    assert all(found is not before for found in gc.get_objects()), "a collection skips it"
    # The trade-off: a start-up object that becomes cyclic garbage stays.
    kept = weakref.ref(before)
    del before
    gc.collect()
    assert kept() is not None


def test_garbage_of_the_start_is_collected_not_frozen(freezing: FullCollections) -> None:
    dropped = weakref.ref(Node())
    freezing.install()
    assert dropped() is None


def test_what_comes_after_the_start_is_collected_and_counted(freezing: FullCollections) -> None:
    freezing.install()
    frozen = gc.get_freeze_count()
    later = weakref.ref(Node())
    gc.collect(1)
    assert later() is None, "a younger collection frees it too"
    assert freezing.pauses.total == 0, "only full collections are timed"
    again = weakref.ref(Node())
    gc.collect()
    assert again() is None
    # At least the Node: its __dict__ counts too only where Python made one (3.11 keeps an
    # instance's attributes inline until something asks for the dict), which depends on
    # what ran before in the process.
    assert freezing.collected >= 1
    assert freezing.pauses.total == 1
    assert gc.get_freeze_count() == frozen, "nothing is frozen after the start"


def test_removed_it_unfreezes_and_no_longer_times(freezing: FullCollections) -> None:
    freezing.install()
    freezing.remove()
    assert (gc.get_freeze_count(), freezing.frozen) == (0, 0)
    gc.collect()
    assert freezing.pauses.total == 0


def test_off_it_only_times_full_collections() -> None:
    collections = FullCollections(freeze=False)
    collections.install()
    try:
        gc.collect()
        gc.collect()
        assert (gc.get_freeze_count(), collections.frozen) == (0, 0)
        assert collections.pauses.total == 2
    finally:
        collections.remove()
    gc.collect()
    assert collections.pauses.total == 2, "removed, it no longer counts"


def test_metrics_count_pauses_and_the_frozen() -> None:
    collections = FullCollections(True, buckets=(0.01, 1.0))
    collections.pauses.counts = [3, 1, 0]
    collections.pauses.sum = 0.5
    collections.longest = 0.25
    collections.collected = 70
    collections.frozen = 190_000
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
        "failsoft_gc_frozen_at_start 190000.0",
    ]


async def test_the_worker_freezes_once_started_and_before_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(
        Settings.from_env({}),
        portfolio_path=ROOT / "deploy" / "portfolio.example.toml",
        worker_data_dir=tmp_path,
        worker_store="memory://",
    )
    app = create_app(settings)
    assert app.full_collections.freeze
    order: list[str] = []

    async def reader_start() -> None:
        order.append(f"reader starts, {gc.get_freeze_count() > 0} frozen")

    monkeypatch.setattr(app.reader, "start", reader_start)
    try:
        await app.on_started()
    finally:
        app.full_collections.remove()
    assert order == ["reader starts, True frozen"]
    off = create_app(dataclasses.replace(settings, worker_gc_freeze=False))
    assert not off.full_collections.freeze
