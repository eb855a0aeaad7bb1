"""The shell around the monitors: one state table of them, batches in, effects carried out.

``Monitors`` keeps the ``streams.monitor.Monitor`` of each model whose partitions this
worker holds, in memory, backed by one changelog table keyed by model_id whose values are
``Monitor.dumps()``. It feeds each model's records as one ``Batch`` and carries out what
comes back: points to InfluxDB, alerts to Alerta, commands signed with the worker's
keyring and sent on the control topic keyed by model (counted as withheld without a
signing key), and the monitor written to its table when its effects ask for a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TableT

from schemas.codec import encode
from streams.monitor import Batch, Effects, Monitor
from streams.monitor.batch import Record
from streams.monitor.label_join import describe_performance
from streams.monitor.watch import describe
from streams.portfolio import Model

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp

__all__ = ["Monitors"]


class Monitors:
    """The monitors of this worker's models, and what their effects ask for."""

    def __init__(self, app: FailsoftApp, table: TableT[str, bytes], control: faust.TopicT) -> None:
        self.app = app
        self.table = table
        self.control = control
        self.cache: dict[str, Monitor] = {}
        # Models fed since their monitor was last written to the table.
        self.unsaved: set[str] = set()
        self.numeric = {
            model.model_id: frozenset(f.name for f in model.features if f.kind == "numeric")
            for model in app.portfolio
        }

    def forget(self) -> None:
        """Drop the monitors held in memory (their partitions moved): the next use rereads
        each from the table."""
        self.cache.clear()
        self.unsaved.clear()

    def save(self, model_id: str) -> None:
        """Write the model's monitor to the table if it was fed since it was last written,
        with its partition's event current (``streams.worker.readers``): before its
        partition is handed over or the worker stops, so that the offsets committed then
        lose none of its records."""
        if model_id in self.unsaved:
            self.table[model_id] = self.cache[model_id].dumps()
            self.unsaved.discard(model_id)

    def peek(self, model: Model) -> Monitor | None:
        """The newest monitor this worker holds for the model, if any."""
        monitor = self.cache.get(model.model_id)
        if monitor is None:
            stored = self.table.get(model.model_id)
            if stored is not None:
                monitor = self.cache[model.model_id] = Monitor.restore(model, stored)
        return monitor

    def describe(self, model: Model) -> dict[str, Any]:
        """The model's entry in ``/failsoft/models``: its health (``describe``) and, per
        binary stream, the calibrated estimate beside what labels measured."""
        monitor = self.peek(model)
        if monitor is None:
            return describe(model, None)
        return describe(model, monitor.watch) | {"performance": describe_performance(monitor.join)}

    async def feed(self, model: Model, records: Iterable[Record]) -> None:
        """Feed ``records`` of ``model`` to its monitor as one batch; carry out the effects."""
        monitor = self.peek(model)
        if monitor is None:
            monitor = self.cache[model.model_id] = Monitor(model)
        effects = monitor.observe(
            Batch.from_records(model.model_id, records, self.numeric[model.model_id])
        )
        await self._carry_out(model, monitor, effects)
        if effects.checkpoint:
            self.unsaved.discard(model.model_id)
        else:
            self.unsaved.add(model.model_id)

    async def _carry_out(self, model: Model, monitor: Monitor, effects: Effects) -> None:
        app = self.app
        for point in effects.points:
            app.influx.enqueue(point)
        for alert in effects.alerts:
            app.alerta.enqueue(alert)
        counters = app.counters
        for command in effects.commands:
            if app.keyring.signing_key_id is None:
                counters.commands_withheld[command.action] += 1
                continue
            signed = command.signed(app.keyring)
            await self.control.send(key=model.model_id.encode(), value=encode(signed))
            counters.commands_sent[command.action] += 1
        for action in effects.withheld:
            counters.commands_withheld[action] += 1
        # After the commands: a crash before this write makes the same commands again
        # (same seq), which the fleet drops as replays.
        if effects.checkpoint:
            self.table[model.model_id] = monitor.dumps()
