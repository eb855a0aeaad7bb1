"""The shell around the monitors: one state table of them, batches in, effects carried out.

``Monitors`` keeps the ``streams.monitor.Monitor`` of each model whose partitions this
worker holds, in memory, backed by one changelog table keyed by model_id whose values are
``Monitor.dumps()``. It feeds each model's records as one ``Batch`` and carries out what
comes back: points to InfluxDB, alerts to Alerta, commands signed with the worker's
keyring and sent on the control topic keyed by model (counted as withheld without a
signing key, and skipped when the topic already holds its seq: ``streams.worker.control``),
and the monitor written to its table when its effects ask for a checkpoint.

Logs (logger ``streams.worker.shell``): at info, one line per health transition, command
sent or skipped as sent, and alert opened or closed, and a summary every ``SUMMARY_EVERY``
seconds (records and lag per topic, models per state, commands); at warning only what
needs a human: an escalation, and a command withheld for want of a signing key.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event
from faust.types import TableT

from schemas.codec import encode
from streams.monitor import Batch, Effects, Monitor, StateFormatError
from streams.monitor.batch import Record
from streams.monitor.gauges import StateGauges, state_gauges
from streams.monitor.label_join import describe_performance
from streams.monitor.watch import describe, standing_alert
from streams.portfolio import Model
from streams.topics import CONTROL
from streams.worker.control import SentCommands

if TYPE_CHECKING:
    from streams.worker.app import FailsoftApp

__all__ = ["SUMMARY_EVERY", "Monitors", "model_partition"]

log = logging.getLogger(__name__)
SUMMARY_EVERY = 60.0


def model_partition(model_id: str, count: int) -> int:
    """The partition of ``model_id``'s records in each model-keyed topic of ``count``
    partitions: Kafka's default partitioner, which every producer of them uses
    (``streams.topics.KEY_PARTITIONER``)."""
    return (murmur2(model_id.encode()) & 0x7FFFFFFF) % count


class Monitors:
    """The monitors of this worker's models, and what their effects ask for."""

    def __init__(self, app: FailsoftApp, table: TableT[str, bytes], control: faust.TopicT) -> None:
        self.app = app
        self.table = table
        self.control = control
        self.sent = SentCommands(app.settings, CONTROL.name(app.settings))
        self.cache: dict[str, Monitor] = {}
        # A monitor of every model, built now so that a setting its detectors refuse stops
        # the worker at its start (PortfolioError), and kept for the model's first batch
        # if the table holds none: that batch built it again, 0.4 to 0.6 ms a model, over
        # half of the ingest's CPU for 1,000 models of 50 records each (README, "The
        # worker at 1,000 models against 20"). Those of models on other workers'
        # partitions are let go at each rebalance (``restored``).
        self.fresh: dict[str, Monitor] = {model.model_id: Monitor(model) for model in app.portfolio}
        # Models fed since their monitor was last written to the table.
        self.unsaved: set[str] = set()
        # Models whose monitor the table lacked when looked up since it was last restored:
        # the reader looks a model up for each partition and read until its first batch
        # (``IngestReader._read_to``) and once more to feed it: about 4 misses a model on the
        # pipeline benchmark, each a search of every partition's store.
        self.absent: set[str] = set()
        self.numeric = {
            model.model_id: frozenset(f.name for f in model.features if f.kind == "numeric")
            for model in app.portfolio
        }

        async def log_summary() -> None:
            log.info("%s", self.summary())

        app.timer(SUMMARY_EVERY, name="log-summary")(log_summary)

    def forget(self) -> None:
        """Drop the monitors held in memory (their partitions moved): the next use rereads
        each from the table."""
        self.cache.clear()
        self.unsaved.clear()
        self.absent.clear()

    def restored(self, partitions: frozenset[int], count: int | None) -> None:
        """Faust has restored the table for ``partitions`` of the ``count`` of each
        model-keyed topic (None: not known yet): which models it lacks is looked up again,
        and the monitors kept for the first records of models on other partitions
        (``model_partition``) are let go."""
        self.absent.clear()
        if count:
            self.fresh = {
                model_id: monitor
                for model_id, monitor in self.fresh.items()
                if model_partition(model_id, count) in partitions
            }

    def save(self, model_id: str) -> None:
        """Write the model's monitor to the table if it was fed since it was last written,
        with its partition's event current (``streams.worker.readers``): before its
        partition is handed over or the worker stops, so that the offsets committed then
        lose none of its records."""
        if model_id in self.unsaved:
            self.table[model_id] = self.cache[model_id].dumps()
            self.unsaved.discard(model_id)

    def summary(self) -> str:
        """One line: records consumed and dead-lettered per topic, the models this worker
        holds per health state, and the commands sent, withheld and skipped as sent."""
        counters = self.app.counters
        lag = self.app.reader.lag()
        topics = ", ".join(
            f"{topic} {consumed} ({counters.dead_lettered_total(topic)} dead-lettered"
            + (
                f", lag {lag[topic].records} records, {lag[topic].seconds:.1f} s)"
                if topic in lag
                else ")"
            )
            for topic, consumed in sorted(counters.consumed.items())
        )
        states = collections.Counter(m.watch.policy.state.value for m in self.cache.values())
        models = ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "none yet"
        sent = sum(counters.commands_sent.values())
        withheld = sum(counters.commands_withheld.values())
        skipped = sum(counters.commands_skipped_as_sent.values())
        return (
            f"summary: records {topics or 'none yet'}; models {models}; "
            f"commands {sent} sent, {withheld} withheld, {skipped} skipped as sent"
        )

    def peek(self, model: Model) -> Monitor | None:
        """The newest monitor this worker holds for the model, if any."""
        monitor = self.cache.get(model.model_id)
        if monitor is None and model.model_id not in self.absent:
            stored = self._stored(model.model_id)
            if stored is None:
                self.absent.add(model.model_id)
            else:
                try:
                    monitor = Monitor.restore(model, stored)
                except StateFormatError as error:
                    # Written by another version of failsoft: its detectors' state would
                    # not fit this one's, so the model is learnt again.
                    log.warning("%s; its monitor starts afresh", error)
                    monitor = self._fresh(model)
                else:
                    # The worker before may have died after the command left and before
                    # Alerta had the alert (a SIGKILL; Alerta's sink holds it in memory):
                    # on-call must not miss the page. Alerta counts a repeat as a duplicate.
                    standing = standing_alert(model, monitor.watch)
                    if standing is not None:
                        self.app.alerta.enqueue(standing)
                    self.fresh.pop(model.model_id, None)
                self.cache[model.model_id] = monitor
        return monitor

    def _stored(self, model_id: str) -> bytes | None:
        """The model's checkpoint in the table, on whichever partition this worker holds it.

        Looked up with no event current: with one, Faust's RocksDB store looks in that
        event's partition only, and the reader feeds a batch under its model's partition
        (``readers._on_partition``), from which a ladder's level or dependent on another
        partition is looked up (``_learn_levels``, ``_tell_ladders``), and would be missed.
        """
        token = _current_event.set(None)
        try:
            stored: bytes | None = self.table.get(model_id)
        finally:
            _current_event.reset(token)
        return stored

    def describe(self, model: Model) -> dict[str, Any]:
        """The model's entry in ``/failsoft/models``: its health (``describe``), per
        binary stream the calibrated estimate beside what labels measured, and its dropped
        inputs and bounded structures (``streams.monitor.gauges``)."""
        monitor = self.peek(model)
        if monitor is None:
            return describe(model, None)
        entry = describe(model, monitor.watch) | {
            "performance": describe_performance(monitor.join),
            "gauges": state_gauges(monitor).as_json(),
        }
        ladder = monitor.ladder
        if ladder is not None:
            # The level the fleet was last told to serve, and the levels it skips.
            entry["ladder"] = {
                "levels": list(ladder.levels),
                "level": ladder.level,
                "skipped": sorted(ladder.bad),
            }
        return entry

    def gauges(self) -> list[StateGauges]:
        """The gauges of the monitors this worker holds in memory."""
        return [state_gauges(monitor) for monitor in self.cache.values()]

    async def feed(
        self, model: Model, records: Iterable[Record], read_to: Mapping[tuple[str, int], int]
    ) -> None:
        """Feed ``records`` of ``model`` to its monitor as one batch; carry out the effects.
        ``read_to``: per input (topic, partition) they came from, the offset after the last
        of them, which the monitor's checkpoints carry (``Monitor.read_to``)."""
        monitor = self.peek(model)
        if monitor is None:
            monitor = self.cache[model.model_id] = self._fresh(model)
            self._learn_levels(monitor)
        monitor.read_to.update(read_to)
        effects = monitor.observe(
            Batch.from_records(model.model_id, records, self.numeric[model.model_id])
        )
        await self._carry_out(model, monitor, effects)
        self._note_saved(model.model_id, effects)
        await self._tell_ladders(model, effects)

    def _fresh(self, model: Model) -> Monitor:
        """A new monitor of ``model``: the one kept since the start, if still kept."""
        monitor = self.fresh.pop(model.model_id, None)
        return Monitor(model) if monitor is None else monitor

    def _note_saved(self, model_id: str, effects: Effects) -> None:
        if effects.checkpoint:
            self.unsaved.discard(model_id)
        else:
            self.unsaved.add(model_id)

    def _learn_levels(self, monitor: Monitor) -> None:
        """A new monitor's ladder learns which of its levels this worker holds as serving
        their own fallback now (later changes come through ``_tell_ladders``)."""
        if monitor.ladder is None:
            return
        for level_id in monitor.ladder.levels:
            level = self.app.portfolio.get(level_id)
            held = None if level is None else self.peek(level)
            if held is not None and held.watch.policy.on_fallback:
                monitor.ladder.bad.add(level_id)

    async def _tell_ladders(self, model: Model, effects: Effects) -> None:
        """When ``model`` starts or stops serving its own fallback, the models whose ladder
        has it as a level may step: their monitors held by this worker are told. (A model
        and its ladder's levels are best kept on one worker: a level held by another
        worker is not heard of here.)"""
        portfolio = self.app.portfolio
        for t in effects.transitions:
            if t.from_state.serves_fallback == t.to_state.serves_fallback:
                continue
            for dependent_id in portfolio.ladders_through(model.model_id):
                dependent = portfolio.get(dependent_id)
                monitor = None if dependent is None else self.peek(dependent)
                if dependent is None or monitor is None:
                    continue
                found = monitor.level_health(model.model_id, t.to_state.serves_fallback, t.at)
                # The table writes by the current record's partition, ``model``'s: the
                # dependent's checkpoint is due with its own next batch (or a handover).
                found.checkpoint = False
                await self._carry_out(dependent, monitor, found)
                self.unsaved.add(dependent_id)

    async def _carry_out(self, model: Model, monitor: Monitor, effects: Effects) -> None:
        app = self.app
        model_id = model.model_id
        for t in effects.transitions:
            log.info(
                "%s: health %s -> %s (%s)", model_id, t.from_state.value, t.to_state.value, t.reason
            )
        for point in effects.points:
            app.influx.enqueue(point)
        for alert in effects.alerts:
            app.alerta.enqueue(alert)
            closed = alert.severity in ("normal", "ok")
            # An escalation is the one alert that says a human has not looked yet.
            level = logging.WARNING if alert.group == "escalation" and not closed else logging.INFO
            what = "closed" if closed else f"opened ({alert.severity})"
            log.log(level, "%s: alert %s %s: %s", model_id, alert.event, what, alert.text)
        counters = app.counters
        for command in effects.commands:
            line = (model_id, command.action, command.seq, command.detector, command.reason)
            if self.sent.sent(model_id, command.seq):
                # Made again by a monitor restored from a checkpoint older than the command.
                counters.commands_skipped_as_sent[command.action] += 1
                log.info("%s: command %s seq %d by %s skipped: already sent: %s", *line)
                continue
            if app.keyring.signing_key_id is None:
                counters.commands_withheld[command.action] += 1
                log.warning(
                    "%s: command %s seq %d by %s withheld: no signing key "
                    "(FAILSOFT_CONTROL_PRIVATE_KEY_FILE); %s",
                    *line,
                )
                continue
            signed = command.signed(app.keyring)
            # Wait for the broker's ack: the reader's batches keep the event loop busy, so a
            # command only buffered would leave with the next pause, tens of ms later.
            delivery = await self.control.send(key=model_id.encode(), value=encode(signed))
            await delivery
            self.sent.note(model_id, command.seq)
            counters.commands_sent[command.action] += 1
            log.info("%s: command %s seq %d by %s sent: %s", *line)
        for action in effects.withheld:
            counters.commands_withheld[action] += 1
            log.info("%s: command %s withheld: the model is alert_only", model_id, action)
        # After the commands: a crash before this write makes the same commands again
        # (same seq), which ``self.sent`` skips once the restarted worker has read them.
        if effects.checkpoint:
            self.table[model.model_id] = monitor.dumps()
