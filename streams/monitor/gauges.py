"""What a monitor could not use, and how full its bounded parts are, as plain numbers.

Each input a part of the monitor drops is counted where it is dropped: a detector's
``n_skipped``, ``n_ignored`` or ``rejected`` (a value that is missing, malformed or not
finite), a join's evictions at its cap and its expiries. ``unused`` gathers those counts
by part and reason. Structures that grow until a cap (the label join's held predictions,
the labels waiting for their predictions, the leak watch's remembered requests, entities
and keys, the shadow join's waiting lists) report their entries beside their cap in
``filled``: a model at a cap forgets the oldest, which costs its detectors power, and an
operator should see that before wondering why a leak went unflagged. A structure that keeps
a sample of entities instead (the leak watch's, and the label join's held predictions)
reports the fraction it keeps in ``sampled``.

The worker shows them per model in ``/failsoft/models`` and summed over its models in
``/metrics`` (``streams.worker.metrics``). Reading them walks the monitor's parts once and
changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.monitor.monitor import Monitor

__all__ = ["StateGauges", "state_gauges"]


@dataclasses.dataclass(frozen=True)
class StateGauges:
    """One model's dropped inputs and the fill of its bounded structures.

    Attributes
    ----------
    unused
        ``(part, reason) -> count`` since the monitor was made: inputs the part could not
        use (``invalid``) or let go of (``evicted``, ``expired``, ...).
    filled
        ``structure -> (entries, cap)`` for each structure that grows until a cap.
    sampled
        ``structure -> fraction`` of the entities' hash range a structure keeps at its cap
        (1.0 until it first fills).
    """

    unused: Mapping[tuple[str, str], int]
    filled: Mapping[str, tuple[int, int]]
    sampled: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The gauges as ``/failsoft/models`` shows them."""
        unused: dict[str, dict[str, int]] = {}
        for (part, reason), count in sorted(self.unused.items()):
            unused.setdefault(part, {})[reason] = count
        filled = {name: {"entries": n, "cap": cap} for name, (n, cap) in self.filled.items()}
        return {"unused": unused, "filled": filled, "sampled": dict(self.sampled)}


def state_gauges(monitor: Monitor) -> StateGauges:
    """The gauges of ``monitor`` now."""
    unused: dict[tuple[str, str], int] = {}
    filled: dict[str, tuple[int, int]] = {}
    sampled: dict[str, float] = {}

    watch = monitor.watch
    unused["feature_drift", "invalid"] = watch.drift.skipped_values()
    unused["future_values", "invalid"] = watch.future.rejected
    if watch.output is not None:
        unused["score", "invalid"] = watch.output.score.detector.n_skipped
        unused["error_rate", "invalid"] = watch.output.error_rate.detector.n_skipped

    join = monitor.join
    performance = 0
    for stream in join.streams.values():
        performance += stream.delay.n_ignored
        for detector in (stream.metric, stream.estimate, stream.calibrated):
            if detector is not None:
                performance += detector.n_ignored
    unused["performance", "invalid"] = performance
    for reason in (
        "unmatched",
        "unsampled_labels",
        "expired",
        "evicted",
        "duplicates",
        "evicted_streams",
    ):
        unused["label_join", reason] = getattr(join, reason)
    unused["label_join", "unsampled"] = join.held.unsampled
    filled["label_join.held"] = (len(join.held), join.settings.max_held)
    sampled["label_join.held"] = join.held.fraction
    filled["label_join.streams"] = (len(join.streams), join.settings.max_streams)

    wait = monitor.label_wait
    unused["label_wait", "released_early"] = wait.released_early
    filled["label_wait.labels"] = (wait.waiting, wait.max_waiting)

    leaks = monitor.leaks
    if leaks is not None:
        unused["leak_watch", "labels_unusable"] = leaks.labels_unusable
        unused["leak_watch", "labels_unresolved"] = leaks.labels_unresolved
        unused["leak_watch", "writes_ignored"] = leaks.writes_ignored
        # Outside the sample of entities a full label_leak table keeps (and the gap reads).
        unused["label_coincidence", "unsampled"] = leaks.coincidence.unsampled
        unused["availability_gap", "unsampled"] = leaks.values_unsampled
        unused["availability_gap", "evicted"] = leaks.gap.evicted
        unused["label_coincidence", "invalid"] = leaks.coincidence.rejected
        unused["availability_gap", "invalid"] = leaks.gap.rejected
        unused["write_lag", "invalid"] = sum(lag.rejected for lag in leaks.lag_detectors)
        if leaks.future is not None:
            unused["future_values", "invalid"] += leaks.future.rejected
        filled["leak_watch.requests"] = (len(leaks.entities), leaks.max_requests)
        coincidence = leaks.coincidence
        filled["leak_watch.entities"] = (coincidence.entities, coincidence.max_entities)
        filled["leak_watch.keys"] = (leaks.gap.keys, leaks.gap.max_keys)
        sampled["leak_watch.entities"] = leaks.sample_fraction
        sampled["leak_watch.keys"] = leaks.gap_sample_fraction

    shadow = monitor.shadow
    if shadow is not None:
        for reason, count in shadow.counts.items():
            unused["shadow_join", reason] = count
        filled["shadow_join.halves"] = (len(shadow.halves), shadow.max_pending)
        filled["shadow_join.pairs"] = (len(shadow.pairs), shadow.max_pending)
    return StateGauges(unused=unused, filled=filled, sampled=sampled)
