"""One model's monitor: everything failsoft keeps about a model, fed a batch at a time.

Pure: no Faust, no Kafka, no sink, no clock. A ``Monitor`` holds the model's watch
(feature drift, values from the future, output monitoring and the health policy,
``streams.monitor.watch``), its label join and estimate (``streams.monitor.label_join``),
its shadow join when the portfolio pairs a shadow (``streams.monitor.shadow_join``), its
leak watch when it has features (``streams.monitor.leak_watch``) and its label wait
(``streams.monitor.label_wait``). ``observe(batch)`` takes a ``Batch`` of the model's
records in arrival order and returns ``Effects``: points, alerts, commands to sign, and
whether the state must be checkpointed now.

Each record goes where the worker sent it before this class existed, in the same order:

- a prediction feeds the watch (and the health policy its evidence), then the label join
  and the shadow join, then (``live`` only) the leak watch, and releases the labels that
  waited for the model's predictions to reach them;
- a label feeds the leak watch at once (it weighs labels against writes, not
  predictions), then the joins if the label join holds its prediction, else it waits;
- a feature write feeds the leak watch.

Evidence of the label join and the leak watch goes to the health policy as drift's does.

Only the records something was found at take a step of their own. Nearly every
prediction causes nothing in the joins and the leak watch, and nothing in the watch
either: while the policy is healthy, the predictions between two records that cause
something go in runs (``watch.observe_quiet``: the error rate fed their roles at once,
the scores counted), each run ending where one by one the watch would find something,
and their heartbeats are held (``_prediction``).

State. ``dumps()`` pickles the monitor without its ``Model`` (the portfolio's, which the
shell holds); ``Monitor.restore(model, data)`` brings it back. Labels still waiting are
part of it. A checkpoint is due when a transition, an action, an alarm or an alert
happened, and at least every ``checkpoint_every`` records otherwise, so a crash loses at
most that many records of window filling, never a transition, an alert or a command's seq.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import pickle
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np

from detectors._batch import SMALL_BATCH
from detectors.health.evidence import Evidence
from detectors.health.heartbeat import Heartbeat
from detectors.health.state import HealthState
from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams.monitor import label_join, leak_watch, serving_watch, shadow_join
from streams.monitor import ladder as fallback_ladder
from streams.monitor.batch import Batch
from streams.monitor.effects import CommandToSign, Effects
from streams.monitor.held import KIND_PREDICTION, JoinRun
from streams.monitor.label_wait import LabelWait
from streams.monitor.watch import (
    Found,
    ModelWatch,
    Observation,
    Share,
    consequences,
    detect,
    new_watch,
    observe_evidence,
    observe_quiet,
    prediction_evidence,
)
from streams.portfolio import Model

# What a record the label join took caused there (None: nothing) and in the shadow join
# (None: the model has no shadow join).
Joined = tuple[label_join.JoinResult | None, shadow_join.ShadowEffects | None]

__all__ = ["CHECKPOINT_EVERY", "STATE_FORMAT", "Monitor", "StateFormatError"]

# A monitor with a leak watch pickles to 1 to 2 MB (40 to 140 ms, the default scenario's
# models): written every 1,000 records, its checkpoints cost about as much as its records.
CHECKPOINT_EVERY = 10_000
# The version of what a checkpoint holds. Raise it when a detector's private state changes
# in a way an older pickle would not restore into (2: the numpy batch state of the leak
# detectors; 3: the score's ResidualCUSUM; 4: the label join's held predictions in numpy
# columns and the availability gap's numpy rows; 5: the windowed test a degraded model's
# health policy awaits; 6: the label-coincidence detector's and its key table's compact
# checkpoints; 7: ResidualCUSUM's older references for its slow check; 8: the batch events
# of the performance detectors; 9: ResidualCUSUM's count of skipped inputs, the
# calibrated estimate's binned counts and window of recent labels, and the batch events of
# ShadowPromotion and WriteLag; 10: the availability gap's key table, expiry times and
# windows of recent predictions; 11: the numeric windowed tests' in-control windows; 12:
# the input offsets the state holds; 13: a numeric windowed test's frozen reference held
# once, not beside a sorted copy, the held predictions' ids as 64-bit hashes, and the label
# join's settings without detector prototypes; 14: the leak watch's sample of entities;
# 15: the label join's sample of held predictions, its limit and counts; 16: the leak
# watch's WriteLag shared by the features of an SLA, its state in arrays; the drift watch's
# slotted classes, the output detectors' recent values in arrays, ResidualCUSUM's residuals
# in a tuple and its score table left out, the windowed tests' batch events in a tuple; 17:
# FutureValues' counts as two dicts of ints, the leak and performance detectors' batch
# events, halvings, flags, CUSUMs and bets in tuples, a categorical test's empty rare tail
# None); 18: AvailabilityGap's per-feature counts and blocks as columns of arrays and a
# dict of names to columns; 19: the drift watch's tests in one DriftTests, a spec per
# feature kind, a built test kept alone, the output detectors' recent values in a Window;
# 20: ResidualCUSUM's fitted residuals in an array, for its compiled run; 21: the label
# wait's count of arrivals an int, its labels' request hashes beside them; 22: a windowed
# test's batch events as arrays, ResidualCUSUM's sums, starts and detections in tuples; 23:
# the shadow trial's confidence sequence keeps its bounds after every value, without the
# count they were found at; 24: the detectors' and the held table's objects in slots beside
# an attribute dict of numbers, the label join's, leak watch's, label wait's and request
# map's fields in slots; 25: the label wait's labels as columns; 26: the label wait's
# labels' entity hashes beside them; 27: the PSI tests' alpha, the score
# episode's time of its last look), so that a worker
# upgraded mid-stream starts the model afresh instead of failing on a half-restored
# detector later.
STATE_FORMAT = 27
_CHECKPOINT_PROTOCOL = 4
# What ``detect`` finds in a batch without predictions (read-only).
_NOTHING_FOUND = Found({}, {})
# Predictions at most this many in a row go one by one: a run's arrays cost more.
QUIET_RUN = SMALL_BATCH


class StateFormatError(ValueError):
    """A checkpoint written by a worker with another ``STATE_FORMAT``."""


def _latest_prediction(
    records: Sequence[Prediction | GroundTruth], run: JoinRun | None, start: int, stop: int
) -> int | None:
    """The latest ``predicted_at`` among ``records[start:stop]`` (None: no prediction), read
    from the run's columns when there are some."""
    if run is None:
        return max(
            (r.predicted_at for r in records[start:stop] if isinstance(r, Prediction)),
            default=None,
        )
    made = run.at[start:stop][run.kinds[start:stop] == KIND_PREDICTION]
    return int(made.max()) if len(made) else None


def check_models(models: Iterable[Model]) -> None:
    """Build each model's monitor once and drop it, so that a setting its detectors refuse
    stops a worker at its start rather than at the model's first record.

    Raises
    ------
    PortfolioError
        Naming the first model whose detector settings do not fit the detectors, and the
        key.
    """
    for model in models:
        Monitor(model)


class Monitor:
    """Everything failsoft keeps about one model.

    Raises
    ------
    PortfolioError
        When the model's detector settings do not fit the detectors.
    """

    # During ``observe``: the event time (seconds) of the heartbeats held back from a
    # healthy policy (None: none), fed to it before anything else reaches it.
    _held: float | None = None

    def __init__(self, model: Model, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
            raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
        self.model = model
        self.checkpoint_every = checkpoint_every
        self.watch: ModelWatch = new_watch(model)
        self.join = label_join.new_join(model)
        self.leaks = leak_watch.new_leak_watch(model) if model.features else None
        self.shadow = shadow_join.new_shadow_join(model) if model.shadow is not None else None
        self.label_wait = LabelWait()
        self.ladder = fallback_ladder.new_ladder(model, self.watch.policy.min_dwell)
        self.serving = serving_watch.new_serving_watch(model)
        # Records observed since the state was last due for a checkpoint.
        self.unsaved = 0
        # Per input (topic, partition): the offset after the last record this state holds.
        # The worker's, kept here so that each checkpoint carries it: a worker that
        # restores the monitor skips the records it holds when it reads them again.
        self.read_to: dict[tuple[str, int], int] = {}

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["model"]
        state.pop("_held", None)
        state["state_format"] = STATE_FORMAT
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def dumps(self) -> bytes:
        """The monitor's state, without its model."""
        # Protocol 4, not 5: a protocol-5 pickle restores each numpy array as a view of a
        # buffer, two more objects the garbage collector tracks per array (a memoryview and
        # its managed buffer), 316 of a 20-feature model's 801 at its caps; protocol 4
        # restores arrays that own their data, and restores faster.
        return pickle.dumps(self, _CHECKPOINT_PROTOCOL)

    @classmethod
    def restore(cls, model: Model, data: bytes) -> Monitor:
        """The monitor ``dumps`` wrote, for ``model`` (a new shadow version gets a new join).

        Raises ``StateFormatError`` for a checkpoint of another ``STATE_FORMAT``.
        """
        monitor: Monitor = pickle.loads(data)
        written = monitor.__dict__.pop("state_format", 1)
        if written != STATE_FORMAT:
            raise StateFormatError(
                f"{model.model_id}: checkpoint of state format {written}; "
                f"this worker reads format {STATE_FORMAT}"
            )
        monitor.model = model
        ladder = monitor.ladder
        if ladder is None or ladder.levels != model.fallback.ladder:
            # No ladder before, or the portfolio's ladder changed: start it anew.
            monitor.ladder = fallback_ladder.new_ladder(model, monitor.watch.policy.min_dwell)
        serving = monitor.serving
        if serving is None or serving.slo != model.slo:
            monitor.serving = serving_watch.new_serving_watch(model)
        if model.shadow is None:
            monitor.shadow = None
        elif monitor.shadow is None or monitor.shadow.version != model.shadow.version:
            monitor.shadow = shadow_join.new_shadow_join(model)
        return monitor

    def observe(self, batch: Batch) -> Effects:
        """Feed a batch of this model's records; what the worker must do about them."""
        effects = Effects()
        predictions = batch.predictions
        # The detectors that read neither the policy nor other records go a batch at a time
        # (a batch of labels and writes gives them nothing: most batches of one record).
        found = (
            detect(self.watch, predictions, batch.served_features)
            if predictions
            else _NOTHING_FOUND
        )
        leaks = self._leak_effects(batch)
        slo = self._serving_effects(predictions, effects)
        # Neither join reads feature writes: a batch of writes alone (most batches of one
        # record) causes nothing there and changes nothing.
        writes_only = all(isinstance(record, FeatureWrite) for record in batch.records)
        joins = {} if writes_only else self._join_results(batch)
        # Only the records something was found at take a step here, in order; the
        # predictions between them go in runs (``_predictions``).
        records = batch.records
        placed = batch.prediction_index
        found_at = itertools.chain(found.before, found.after, slo)
        n = 0
        for i in sorted({*leaks, *joins, *(placed[k] for k in found_at)}):
            # The predictions before the record, then the record.
            m = bisect.bisect_left(placed, i, n)
            self._predictions(predictions, found, n, m, effects)
            n = m
            record = records[i]
            if isinstance(record, Prediction):
                self._prediction(record, found.share(m), joins.get(i, ()), leaks.get(i), effects)
                for evidence in slo.get(m, ()):
                    observation = self._evidence([evidence], evidence.at)
                    self._act(dataclasses.replace(observation, evidence=(evidence,)), effects)
                n = m + 1
            else:
                self._leaks(leaks.get(i), effects)
                for joined in joins.get(i, ()):
                    self._joined(*joined, effects)
        self._predictions(predictions, found, n, len(predictions), effects)
        self._beat()
        if self.serving is not None and predictions:
            self._hold_restore(predictions[-1].predicted_at / 1000.0, effects)
        if self.ladder is not None and predictions:
            at = predictions[-1].predicted_at / 1000.0
            self._ladder_step(self.ladder.tick(at), effects)
        self.unsaved += len(batch)
        if self.unsaved >= self.checkpoint_every:
            effects.checkpoint = True
        if effects.checkpoint:
            self.unsaved = 0
        return effects

    def _serving_effects(
        self, predictions: Sequence[Prediction], effects: Effects
    ) -> dict[int, list[Evidence]]:
        """The serving watch's points and alerts into ``effects``; its latency evidence by
        position among the batch's predictions, for the policy in turn. It reads nothing
        else of the monitor, so it takes the batch at once (and one without predictions,
        which changes nothing there, not at all)."""
        if self.serving is None or not predictions:
            return {}
        found = serving_watch.observe_many(self.model, self.serving, predictions)
        effects.points.extend(found.points)
        effects.alerts.extend(found.alerts)
        effects.checkpoint = effects.checkpoint or bool(found.alerts)
        by_position: dict[int, list[Evidence]] = {}
        for n, evidence in found.evidence:
            by_position.setdefault(n, []).append(evidence)
        return by_position

    def _hold_restore(self, at: float, effects: Effects) -> None:
        """While the model is on fallback and its breakers still trip, its restore waits
        (``serving_watch.hold_restore``)."""
        assert self.serving is not None
        on_fallback = self.watch.policy.on_fallback
        found = serving_watch.hold_restore(self.model, self.serving, on_fallback, at)
        effects.alerts.extend(found.alerts)
        effects.checkpoint = effects.checkpoint or bool(found.alerts)
        hold = [evidence for _, evidence in found.evidence]
        if hold:
            # Not an alarm of ``effects``: it recurs with every batch of the hold, and one
            # lost to a crash is found again from the replayed records, so it needs no
            # checkpoint of its own (its alert's start and end do).
            self._act(self._evidence(hold, at), effects)

    def _leak_effects(self, batch: Batch) -> dict[int, leak_watch.LeakEffects]:
        """What the leak watch makes of the batch's writes, labels and live predictions,
        by position in the batch: it reads nothing else of the monitor, so it takes them
        all at once."""
        if self.leaks is None:
            return {}
        return dict(leak_watch.observe_batch(self.model, self.leaks, batch))

    def _join_results(self, batch: Batch) -> dict[int, list[Joined]]:
        """What the label join makes of the batch's predictions and labels, by position in
        the batch of the records whose joins caused something (nearly none), in the
        order they reach it: a prediction, then the labels it releases
        from the label wait; a label the join holds a prediction for, else those the wait
        releases (while labels wait, the compiled loop releases them: ``observe_waiting``).
        Neither reads anything else of the monitor, so the batch goes at once;
        the shadow join takes the same records in the same order, and reads nothing else
        either. The batch's predictions come with their request hashes, made once for
        the leak watch as well."""
        joins = label_join.JoinBatch(self.join)
        wait = self.label_wait
        everything = batch.records
        # Neither join reads feature writes (a batch's records are of the three types).
        positions = [i for i, record in enumerate(everything) if type(record) is not FeatureWrite]
        records = cast(
            list[Prediction | GroundTruth],
            [everything[i] for i in positions]
            if len(positions) < len(everything)
            else list(everything),
        )
        hashes = iter(batch.request_hashes)
        requests = [next(hashes) if type(record) is Prediction else None for record in records]
        run = (
            label_join.join_run(records, requests)
            if len(records) >= label_join.FEWEST_AT_ONCE
            else None
        )
        # What the joins took, in order, and each one's position in the batch.
        fed: list[Prediction | GroundTruth] = []
        fed_at: list[int] = []
        k, end = 0, len(records)
        while k < end:
            i, record = positions[k], records[k]
            released: list[GroundTruth]
            if wait.waiting and run is not None:
                # Labels wait: the compiled loop releases them as predictions come.
                taken, by = joins.observe_waiting(records, requests, k, run, wait)
                fed += taken
                fed_at += [positions[b] for b in by]
                break
            if not wait.waiting:
                # While no label waits, a prediction releases none: the join takes the
                # records up to the first label it holds no prediction for that the wait
                # keeps (its time past the prediction clock) or that names only its
                # entity, the wait the latest prediction time among them.
                stop = joins.observe_run(records, requests, k, run, wait.prediction_clock)
                fed += records[k:stop]
                fed_at += positions[k:stop]
                latest = _latest_prediction(records, run, k, stop)
                if latest is not None:
                    wait.advance(latest)
                if stop == end:
                    break
                k = stop
                i, record = positions[k], records[k]
                assert isinstance(record, GroundTruth)
                released = wait.add(record)
            elif isinstance(record, Prediction):
                request = requests[k]
                assert request is not None
                joins.observe(record, request)
                fed.append(record)
                fed_at.append(i)
                released = wait.advance(record.predicted_at)
            elif joins.observe_held(record):
                fed.append(record)
                fed_at.append(i)
                k += 1
                continue
            else:
                released = wait.add(record)
            k += 1
            for truth in released:
                joins.observe(truth)
                fed.append(truth)
                fed_at.append(i)
        caused = joins.caused()
        busy = {fed_at[k] for k in caused}
        shadow: Sequence[shadow_join.ShadowEffects | None] = ()
        if self.shadow is not None:
            shadow = shadow_join.observe_many(self.model, self.shadow, fed)
            busy.update(itertools.compress(fed_at, shadow))
        # The records whose joins caused something, with everything they fed (in order:
        # ``fed_at`` does not decrease); the others caused nothing and need no step.
        by_position: dict[int, list[Joined]] = {}
        for i in busy:
            span = range(bisect.bisect_left(fed_at, i), bisect.bisect_right(fed_at, i))
            by_position[i] = [(caused.get(k), shadow[k] if shadow else None) for k in span]
        return by_position

    def _predictions(
        self,
        predictions: Sequence[Prediction],
        found: Found,
        start: int,
        stop: int,
        effects: Effects,
    ) -> None:
        """The batch's predictions ``start`` to ``stop``, at which nothing was found
        outside the watch: in runs while the watch finds nothing in them either
        (``_quiet``), each one it finds something in on its own."""
        while start < stop:
            start = self._quiet(found, start, stop)
            if start < stop:
                self._prediction(predictions[start], found.share(start), (), None, effects)
                start += 1

    def _quiet(self, found: Found, start: int, stop: int) -> int:
        """Predictions ``start`` to ``stop`` of the batch, at which nothing was found
        outside the watch, at once while the watch finds nothing in them and the policy
        is healthy (``observe_quiet``): their heartbeats are held (``_prediction``). The
        first it does not take (``stop``: none); a short run is left to ``_prediction``.
        """
        policy = self.watch.policy
        if stop - start <= QUIET_RUN or policy.state is not HealthState.HEALTHY:
            return start
        if policy.since is None:
            return start
        at = found.columns[0]
        # A prediction whose time is no number is no heartbeat: ``_prediction`` takes it.
        timeless = found.timeless
        first = int(np.searchsorted(timeless, start))
        if first < timeless.size:
            stop = min(stop, int(timeless[first]))
        stop = observe_quiet(self.watch, found, start, stop)
        if stop > start:
            latest = float(at[start:stop].max())
            held = self._held
            self._held = latest if held is None or latest > held else held
        return stop

    def _prediction(
        self,
        prediction: Prediction,
        found: Share,
        joins: Sequence[Joined],
        leaks: leak_watch.LeakEffects | None,
        effects: Effects,
    ) -> None:
        """The prediction's watch, then its join (``joins[0]``; none: it caused nothing
        there, nor any label it released), its leaks, and the joins of the labels it
        released.

        Most predictions carry no evidence, and a healthy policy's heartbeat only moves
        its event time: those heartbeats are held back and fed as one at their latest
        time (``_beat``) before anything else reaches the policy, which leaves it exactly
        as they would one by one."""
        at = prediction.predicted_at / 1000.0
        watch = self.watch
        evidence = prediction_evidence(watch, prediction, found, at)
        policy = watch.policy
        if (
            not evidence
            and policy.state is HealthState.HEALTHY
            and policy.since is not None
            and math.isfinite(at)
        ):
            held = self._held
            self._held = at if held is None or at > held else held
        else:
            observation = self._evidence(evidence, at)
            self._act(dataclasses.replace(observation, evidence=tuple(evidence)), effects)
        if joins:
            self._joined(*joins[0], effects)
        self._leaks(leaks, effects)
        for joined in joins[1:]:
            self._joined(*joined, effects)

    def _beat(self) -> None:
        """Feed the policy the heartbeat held back, if any (see ``_prediction``)."""
        if self._held is not None:
            self.watch.policy.update(Heartbeat(at=self._held))
            self._held = None

    def _evidence(self, evidence: Sequence[Evidence], at: float) -> Observation:
        """``observe_evidence`` after the heartbeat held back."""
        self._beat()
        return observe_evidence(self.watch, evidence, at)

    def _leaks(self, found: leak_watch.LeakEffects | None, effects: Effects) -> None:
        """Carry a record's leak effects (None: it had none) into ``effects``."""
        if found is None:
            return
        effects.points.extend(found.points)
        effects.alerts.extend(found.alerts)
        # Points and window verdicts recur; a flag (its alert) is what must not be lost.
        effects.checkpoint = effects.checkpoint or bool(found.alerts)
        if found.evidence:
            at = found.evidence[-1].at
            self._act(self._evidence(found.evidence, at), effects, found.evidence)

    def _joined(
        self,
        result: label_join.JoinResult | None,
        found: shadow_join.ShadowEffects | None,
        effects: Effects,
    ) -> None:
        """A record's label join result (None: it caused nothing there) into ``effects``,
        then its shadow join's."""
        if result is not None:
            effects.points.extend(result.points)
            if result.evidence:
                observation = self._evidence(result.evidence, result.at)
                self._act(observation, effects, result.evidence)
        if found is not None:
            effects.points.extend(found.points)
            effects.alerts.extend(found.alerts)
            effects.checkpoint = effects.checkpoint or bool(found.alerts)
            for change in found.promotions:
                self._promote(change, effects)

    def _act(self, observation: Observation, effects: Effects, found: tuple[Any, ...] = ()) -> None:
        """Carry ``observation``'s consequences into ``effects``; ``found`` is the evidence
        another part found (its points and alerts are that part's)."""
        alarms = [e for e in (*observation.evidence, *found) if e.alarm]
        if observation:
            done = consequences(self.model, self.watch, observation)
            effects.points.extend(done.points)
            effects.alerts.extend(done.alerts)
            commands = list(done.commands)
            if self.ladder is not None:
                commands = fallback_ladder.relevel(self.ladder, commands)
                effects.points.extend(
                    fallback_ladder.step_point(self.ladder, c)
                    for c in commands
                    if c.level is not None
                )
            effects.commands.extend(commands)
            effects.withheld.extend(action.action for action in done.withheld)
            effects.transitions.extend(observation.transitions)
        effects.alarms.extend(alarms)
        # A window that ended quietly recurs; a transition, an action or an alarm must not
        # be lost (an alarm's alert is sent once, when it starts).
        if observation.transitions or observation.actions or observation.escalation_due or alarms:
            effects.checkpoint = True

    def level_health(self, level_id: str, serves_fallback: bool, at: float) -> Effects:
        """A level of this model's fallback ladder, a monitored model, started or stopped
        serving its own fallback at event time ``at`` (seconds): the ladder may step."""
        effects = Effects()
        if self.ladder is not None:
            self._ladder_step(self.ladder.level_health(level_id, serves_fallback, at), effects)
        if effects.checkpoint:
            # A caller that cannot write the checkpoint now (the worker, while another
            # model's partition is current) gets it due with this model's next batch.
            self.unsaved = max(self.unsaved, self.checkpoint_every)
        return effects

    def _ladder_step(self, step: fallback_ladder.Step | None, effects: Effects) -> None:
        if step is None or self.ladder is None:
            return
        command = fallback_ladder.step_command(self.ladder, step, self.watch.last_seq)
        effects.points.append(fallback_ladder.step_point(self.ladder, command))
        effects.checkpoint = True
        self.watch.last_seq = command.seq
        effects.commands.append(command)

    def _promote(self, change: shadow_join.VerdictChange, effects: Effects) -> None:
        if not self.model.fallback.automatic:
            effects.withheld.append("promote_shadow")
            return
        command = CommandToSign.after(
            self.watch.last_seq,
            model_id=self.model_id,
            action="promote_shadow",
            reason=change.reason,
            detector="shadow_verdict",
            issued_at=int(change.at * 1000),
        )
        self.watch.last_seq = command.seq
        effects.commands.append(command)
        effects.checkpoint = True
