"""A model looked up from another model's partition (a ladder's level from its dependent's
batch, a dependent from its level's) is found in the state table, not taken as absent."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from streams.monitor import Monitor
from streams.portfolio import Fallback, Portfolio
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.readers import _on_partition
from streams.worker.shell import Monitors
from tests.streams.test_watch import small_model, stream


class StoreTable:
    """The app's Faust table (its RocksDB store) read as the worker reads it; writes go to
    the store of the current event's partition without a changelog (no Kafka here)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table.data[key] = value


async def test_a_level_looked_up_from_its_dependents_partition_keeps_its_checkpoint(
    tmp_path: Path,
) -> None:
    base = small_model()
    # murmur2: "ranker" on partition 4 of 6, "ranker-cpu" on 3 (both held by this worker).
    ranker = dataclasses.replace(
        base, fallback=Fallback(strategy="ranker-cpu", below=("top_n_popular",))
    )
    level = dataclasses.replace(base, model_id="ranker-cpu")
    portfolio = Portfolio({m.model_id: m for m in (ranker, level)})
    settings = dataclasses.replace(Settings.from_env({}), worker_data_dir=tmp_path)
    assert settings.worker_store.startswith("rocksdb")
    app = create_app(settings, portfolio)
    changelog = app.monitor_table.changelog_topic.get_topic_name()
    monitors = Monitors(app, StoreTable(app.monitor_table), app.topic("control"))  # type: ignore[arg-type]
    # Faust restored the level's checkpoint into partition 3's store.
    checkpoint = Monitor(level)
    checkpoint.read_to[("predictions", 3)] = 40
    with _on_partition(changelog, 3):
        app.monitor_table.data[level.model_id] = checkpoint.dumps()
    monitors.restored(frozenset({3, 4}), 6)
    assert monitors.peek(level) is not None
    monitors.forget()
    monitors.restored(frozenset({3, 4}), 6)
    # The dependent's first batch, on its partition, asks for the level (_learn_levels).
    with _on_partition(changelog, 4):
        await monitors.feed(ranker, stream(np.random.default_rng(3), 0, 50, 0.0), {})
    # Found there, on its own partition's store: the ladder learns its state.
    assert level.model_id in monitors.cache
    # The level's own records: the reader asks what its checkpoint read to (no event), and
    # its batch is fed on its partition.
    held = monitors.peek(level)
    assert held is not None and held.read_to == {("predictions", 3): 40}
