"""The worker's monitors before their models' first records: built once, at the start, and
the table's misses remembered until Faust restores it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.monitor import Monitor
from streams.portfolio import Portfolio
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.shell import Monitors
from tests.streams.test_watch import small_model, stream


class CountingTable(dict[str, bytes]):
    """A table that counts its lookups."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)


def portfolio_of(count: int) -> Portfolio:
    """``small_model``'s ranker and ``count - 1`` models like it."""
    model = small_model()
    models = [model, *(dataclasses.replace(model, model_id=f"m{n}") for n in range(1, count))]
    return Portfolio({m.model_id: m for m in models})


def monitors_of(tmp_path: Path, portfolio: Portfolio, table: dict[str, bytes]) -> Monitors:
    settings = dataclasses.replace(Settings.from_env({}), worker_data_dir=tmp_path)
    app = create_app(settings, portfolio)
    return Monitors(app, table, app.topic("control"))  # type: ignore[arg-type]


async def test_a_models_first_batch_goes_to_the_monitor_built_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    portfolio = portfolio_of(2)
    settings = dataclasses.replace(Settings.from_env({}), worker_data_dir=tmp_path)
    app = create_app(settings, portfolio)
    built: list[str] = []
    init = Monitor.__init__

    def counted(self: Monitor, model: Any, *args: Any) -> None:
        built.append(model.model_id)
        init(self, model, *args)

    monkeypatch.setattr(Monitor, "__init__", counted)
    monitors = Monitors(app, {}, app.topic("control"))  # type: ignore[arg-type]
    assert sorted(built) == ["m1", "ranker"]
    kept = monitors.fresh["ranker"]
    ranker = portfolio.models["ranker"]
    await monitors.feed(ranker, stream(np.random.default_rng(3), 0, 50, 0.0), {})
    assert monitors.peek(ranker) is kept
    assert sorted(built) == ["m1", "ranker"] and set(monitors.fresh) == {"m1"}


def test_a_rebalance_lets_go_of_the_monitors_kept_for_models_of_other_partitions(
    tmp_path: Path,
) -> None:
    portfolio = portfolio_of(12)
    monitors = monitors_of(tmp_path, portfolio, {})
    monitors.restored(frozenset({0, 2}), None)  # the partition count not known yet
    assert len(monitors.fresh) == 12
    monitors.restored(frozenset({0, 2}), 6)
    # Where aiokafka's producer, Faust's, puts each model's records.
    partitioner = DefaultPartitioner()
    ours = {m for m in portfolio.models if partitioner(m.encode(), list(range(6)), []) in {0, 2}}
    assert set(monitors.fresh) == ours and 0 < len(ours) < 12


def test_a_model_the_table_lacks_is_looked_up_again_only_once_the_table_is_restored(
    tmp_path: Path,
) -> None:
    model = small_model()
    table = CountingTable()
    monitors = monitors_of(tmp_path, Portfolio({model.model_id: model}), table)
    assert monitors.peek(model) is None and monitors.peek(model) is None
    assert table.lookups == 1
    # Faust restores the model's checkpoint with its partition, at a rebalance.
    table[model.model_id] = Monitor(model).dumps()
    monitors.restored(frozenset({0}), None)
    assert monitors.peek(model) is not None and table.lookups == 2
    # Revoked, then restored without it (another worker's now): not held here.
    monitors.forget()
    del table[model.model_id]
    assert monitors.peek(model) is None and monitors.peek(model) is None
    assert table.lookups == 3
    table[model.model_id] = Monitor(model).dumps()
    monitors.forget()
    assert monitors.peek(model) is not None
