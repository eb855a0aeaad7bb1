"""Leak benchmark: label-coincident writes and availability gaps among honest features.

A seeded churn world of 2,000 users over 30 days; a quarter of them churn. Every user gets
one label at a random moment from day 2 on: 1 when they cancel, 0 when they renew. Labels
arrive 2 s after the outcome. 8,000 predictions at random users and times read, for every
feature, the newest value already written.

50 honest features, many of them correlated with the label:

- ``sessions_7d`` and ``activity_00`` .. ``activity_18``: written at logins (three activity
  features per login); churners log in 40% as often and stop at their cancellation, and
  half the activity values depend on the class;
- ``batch_00`` .. ``batch_09``: a weekly batch at 02:00, written 30 s later; half correlated;
- ``nullable_00`` .. ``nullable_09``: written every five days or so, null for 40% of the
  churners' writes and 10% of the others';
- ``profile_00`` .. ``profile_08``: rare writes whose value tells the classes apart;
- ``last_billing_event_at``: written at every label, renewal or cancellation alike (its
  write times are tied to the label, but not to one class).

3 label-coincident leaks:

- ``last_login_date``: written at logins, nulled by a trigger when a user cancels;
- ``days_since_last_order``: set to the sentinel -1 at cancellation, written 5-60 s after
  the outcome, i.e. after the label message arrived;
- ``support_tickets_open``: written by the cancellation flow up to 50 s before the cancel,
  for 60% of cancellations only.

6 late leaks, each written with its own event time (nothing in the write points back at
the outcome), on fields that are also written honestly every ten days or so:

- ``account_state_1m``, ``_1h``, ``_1d``, ``_7d``: set to "closed" 1 minute, 1 hour,
  1 day or 7 days (each +-10%) after a cancellation;
- ``refund_requested``: written 1-3 hours after 30% of cancellations only (a partial leak);
- ``closure_reason``: typed in 2-6 hours after a cancellation, and never written before
  one: the field is first written after many labels.

2 availability-gap features:

- ``balance_eod``: the end-of-day balance (event time midnight) written six hours later;
- ``credit_score``: refreshed every two days or so, written about two hours after its event
  time (log-normal).

All writes of honest and leaking features land within a second or so of their event time.

The detectors run at their defaults, except ``LabelCoincidentWrites(sentinels=(-1,))`` (a
platform declares its sentinels) and ``WriteLag(sla=5 minutes)``. A feature counts as
flagged if ``LabelCoincidentWrites`` or ``AvailabilityGap`` flags it; ``WriteLag`` and
``FutureValues`` are reported beside. "Needed" is how many labels had been judged at the
lag where the feature was first flagged (for gaps: how many predictions had used it), and,
in brackets, how many labels had arrived by then: a week's lag is judged a week after the
outcome, with control windows from days before it.

Run::

    .venv/bin/python -m tests.benchmarks.bench_leaks              # seed 0, the README table
    .venv/bin/python -m tests.benchmarks.bench_leaks --seeds 5    # plus a summary per seed
    .venv/bin/python -m tests.benchmarks.bench_leaks --memory     # a leak watch at its caps
    .venv/bin/python -m tests.benchmarks.bench_leaks --backlog    # one call over a backlog
    .venv/bin/python -m tests.benchmarks.bench_leaks --entity-budgets 500 250 --seeds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import pickle
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors import AvailabilityGap, FutureValues, LabelCoincidentWrites, WriteLag
from detectors.leaks import FeatureWrite, Label, ServedFeature
from detectors.leaks.events import entity_hash

SECOND = 1_000.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

ACTIVITY = ["sessions_7d", *(f"activity_{i:02d}" for i in range(19))]
BATCH = [f"batch_{i:02d}" for i in range(10)]
NULLABLE = [f"nullable_{i:02d}" for i in range(10)]
PROFILE = [f"profile_{i:02d}" for i in range(9)]
HONEST = [*ACTIVITY, *BATCH, *NULLABLE, *PROFILE, "last_billing_event_at"]
COINCIDENT = ["last_login_date", "days_since_last_order", "support_tickets_open"]
LATE_LAGS = {"1m": MINUTE, "1h": HOUR, "1d": DAY, "7d": 7 * DAY}
LATE = [
    *(f"account_state_{name}" for name in LATE_LAGS),
    "refund_requested",
    "closure_reason",
]
GAPPED = ["balance_eod", "credit_score"]
LEAKS = {
    **dict.fromkeys(COINCIDENT, "label-coincident"),
    **dict.fromkeys(LATE, "late"),
    **dict.fromkeys(GAPPED, "gap"),
}


@dataclasses.dataclass
class World:
    """The events in arrival order, as (arrival time, event)."""

    events: list[tuple[float, Any]] = dataclasses.field(default_factory=list)

    def write(
        self, user: int, feature: str, value: Any, event_at: float, written_at: float
    ) -> None:
        self.events.append((written_at, FeatureWrite(user, feature, value, event_at, written_at)))


def simulate(seed: int, users: int = 2_000, days: int = 30, predictions: int = 8_000) -> list[Any]:
    """The seeded world's events, sorted by arrival."""
    rng = np.random.default_rng(seed)
    world = World()
    end = days * DAY

    def times(rate_per_day: float, until: float) -> np.ndarray:
        return np.sort(rng.uniform(0.0, until, rng.poisson(rate_per_day * until / DAY)))

    def lag() -> float:
        return float(rng.exponential(200.0))

    for user in range(users):
        churner = rng.random() < 0.25
        label_at = float(rng.uniform(2 * DAY, end))
        world.events.append((label_at + 2 * SECOND, Label(user, int(churner), label_at)))
        world.write(user, "last_billing_event_at", label_at, label_at, label_at + lag())
        active_until = label_at if churner else end
        for login in times(0.4 if churner else 1.0, active_until).tolist():
            world.write(user, "last_login_date", login, login, login + lag())
            world.write(
                user, "sessions_7d", float(rng.poisson(3 + 2 * churner)), login, login + lag()
            )
            for i in rng.choice(19, 3, replace=False).tolist():
                value = float(rng.normal(churner if i < 10 else 0.0))
                world.write(user, f"activity_{i:02d}", value, login, login + lag())
        for week in range(days // 7 + 1):
            run = week * 7 * DAY + 2 * HOUR + float(rng.integers(7)) * DAY
            for i, feature in enumerate(BATCH):
                value = float(rng.normal(churner if i < 5 else 0.0))
                world.write(user, feature, value, run, run + 30 * SECOND)
        for feature in NULLABLE:
            for at in times(0.2, end).tolist():
                nulled = rng.random() < (0.4 if churner else 0.1)
                world.write(user, feature, None if nulled else float(rng.normal()), at, at + lag())
        for feature in PROFILE:
            for at in [0.0, *times(0.1, end).tolist()]:
                world.write(user, feature, float(rng.normal(2.0 * churner)), at, at + lag())
        for at in times(1 / 6, end).tolist():
            world.write(user, "days_since_last_order", float(rng.integers(30)), at, at + lag())
        for at in times(1 / 15, end).tolist():
            world.write(user, "support_tickets_open", int(rng.integers(3)), at, at + lag())
        for feature in [*LATE[:-1]]:
            for at in times(0.1, end).tolist():
                world.write(user, feature, "open", at, at + lag())
        if churner:
            for name, late in LATE_LAGS.items():
                at = label_at + late * float(rng.uniform(0.9, 1.1))
                world.write(user, f"account_state_{name}", "closed", at, at + lag())
            if rng.random() < 0.3:
                at = label_at + float(rng.uniform(1, 3)) * HOUR
                world.write(user, "refund_requested", "yes", at, at + lag())
            at = label_at + float(rng.uniform(2, 6)) * HOUR
            world.write(user, "closure_reason", str(rng.choice(["price", "moved"])), at, at)
            world.write(user, "last_login_date", None, label_at, label_at + lag())
            written = label_at + float(rng.uniform(5 * SECOND, 60 * SECOND))
            world.write(user, "days_since_last_order", -1, label_at, written)
            if rng.random() < 0.6:
                at = label_at - float(rng.uniform(0.0, 50 * SECOND))
                world.write(user, "support_tickets_open", int(rng.integers(1, 4)), at, at + lag())
        for day in range(days):
            midnight = day * DAY
            written = midnight + 6 * HOUR + float(rng.exponential(10 * MINUTE))
            world.write(user, "balance_eod", float(rng.normal()), midnight, written)
        for at in times(0.5, end).tolist():
            written = at + float(rng.lognormal(np.log(2 * HOUR), 0.5))
            world.write(user, "credit_score", float(rng.normal()), at, written)
    for at in rng.uniform(DAY, end, predictions).tolist():
        world.events.append((at, int(rng.integers(users))))
    world.events.sort(key=lambda item: item[0])
    return _serve(world.events)


def _serve(timeline: list[tuple[float, Any]]) -> list[Any]:
    """Replaces each prediction (a bare user id) by the values serving could read then."""
    newest: dict[tuple[Any, str], tuple[Any, float]] = {}
    events: list[Any] = []
    for at, event in timeline:
        if isinstance(event, FeatureWrite):
            newest[event.entity_id, event.feature] = (event.value, event.written_at)
        elif isinstance(event, int):
            for feature in [*HONEST, *COINCIDENT, *LATE, *GAPPED]:
                if (event, feature) in newest:
                    value, written_at = newest[event, feature]
                    events.append(ServedFeature(event, feature, value, written_at, at))
            continue
        events.append(event)
    return events


@dataclasses.dataclass
class Flag:
    detector: str
    needed: int
    labels_arrived: int
    p_value: float
    evidence: str


@dataclasses.dataclass
class Outcome:
    flags: dict[str, Flag]
    # Per detector: the honest feature with the smallest p-value at the end, and that p-value.
    closest_honest: dict[str, tuple[str, float]]
    future_values: int
    sla_breaches: tuple[str, ...]
    micros: dict[str, tuple[float, float]]
    labels: int
    events: int


def _first_flags(
    events: list[Any], max_entities: int | None = None
) -> tuple[dict[str, Flag], int, dict[str, tuple[str, float]]]:
    coincidence = LabelCoincidentWrites(
        sentinels=(-1,), **({} if max_entities is None else {"max_entities": max_entities})
    )
    gap = AvailabilityGap()
    flags: dict[str, Flag] = {}
    labels = 0
    for i, event in enumerate(events):
        if isinstance(event, Label):
            labels += 1
        if not isinstance(event, ServedFeature):
            coincidence.update(event)
            if len(coincidence.detections):
                for feature in coincidence.leaking_features:
                    if feature not in flags:
                        e = coincidence.evidence[feature]
                        kind = "nulls" if e.nulls else "writes"
                        flags[feature] = Flag(
                            "LabelCoincidentWrites",
                            sum(e.labels),
                            labels,
                            e.p_value,
                            f"lag {_duration(e.lag[0])} to {_duration(e.lag[1])}: "
                            f"labels {e.labels}, near {kind} {e.near_writes}, "
                            f"control {e.control_writes}, score {e.score:.2f}",
                        )
        if not isinstance(event, Label):
            gap.update(event)
            if i % 50 == 0:
                for feature in gap.gapped_features:
                    if feature not in flags:
                        g = gap.evidence[feature]
                        flags[feature] = Flag(
                            "AvailabilityGap",
                            g.predictions,
                            labels,
                            g.p_value,
                            f"gaps {g.gaps} of {g.predictions} predictions",
                        )
    closest = {
        "LabelCoincidentWrites": min(
            ((f, e.p_value) for f, e in coincidence.evidence.items() if f in HONEST),
            key=lambda item: item[1],
        ),
        "AvailabilityGap": min(
            ((f, e.p_value) for f, e in gap.evidence.items() if f in HONEST),
            key=lambda item: item[1],
        ),
    }
    return flags, labels, closest


def _duration(ms: float) -> str:
    """A lag in its natural unit: -1 min, 16 min, 4.3 h, 2.8 d."""
    for unit, size in (("d", DAY), ("h", HOUR), ("min", MINUTE)):
        if abs(ms) >= size:
            return f"{ms / size:.3g} {unit}"
    return f"{ms / SECOND:.3g} s"


BATCH_SIZE = 500


def _cost(events: list[Any]) -> dict[str, tuple[float, float]]:
    """Microseconds of CPU per update, each detector over the events it reads: one by one,
    and (for the detectors whose ``update_many`` takes events) in batches of ``BATCH_SIZE``.

    CPU time rather than wall time: the machine is shared, and waiting is not cost.
    """
    micros = {}
    for make, reads in (
        (lambda: LabelCoincidentWrites(sentinels=(-1,)), (FeatureWrite, Label)),
        (AvailabilityGap, (FeatureWrite, ServedFeature)),
        (lambda: WriteLag(sla=5 * MINUTE), (FeatureWrite,)),
        (FutureValues, (ServedFeature,)),
    ):
        mine = [e for e in events if isinstance(e, reads)]
        detector = make()
        start = time.process_time()
        for event in mine:
            detector.update(event)
        one = (time.process_time() - start) / len(mine) * 1e6
        batched = math.nan
        if isinstance(detector, LabelCoincidentWrites | AvailabilityGap):
            detector = make()
            start = time.process_time()
            for at in range(0, len(mine), BATCH_SIZE):
                detector.update_many(mine[at : at + BATCH_SIZE])
            batched = (time.process_time() - start) / len(mine) * 1e6
        micros[type(detector).__name__] = (one, batched)
    return micros


def run(seed: int) -> Outcome:
    events = simulate(seed)
    flags, labels, closest = _first_flags(events)
    lag = WriteLag(sla=5 * MINUTE)
    future = FutureValues()
    breaches: set[str] = set()
    for event in events:
        if isinstance(event, FeatureWrite):
            lag.update(event)
            breaches.update(lag.sla_breaches)
        elif isinstance(event, ServedFeature):
            future.update(event)
    return Outcome(
        flags,
        closest,
        future.future_values,
        tuple(sorted(breaches)),
        _cost(events),
        labels,
        len(events),
    )


def entity_budget(seed: int, entities: int, users: int = 2_000) -> dict[str, str]:
    """``LabelCoincidentWrites`` holding about ``entities`` users of the world two ways:
    capped at ``entities`` (at its cap it keeps a hash sample of the users, halved each
    time the table fills), and with room for all but fed only the users whose id hashes
    below ``entities / users`` of the hash range (every event of a user it keeps). What
    each flagged among the leaks it looks for (label-coincident and late), and falsely."""
    events = simulate(seed, users=users)
    looked_for = set(COINCIDENT) | set(LATE)
    threshold = entities / users * 2.0**64
    sampled = [e for e in events if entity_hash(e.entity_id) < threshold]
    found = {}
    for name, kept, cap in (
        ("capped, sample halved", events, entities),
        ("hash sample", sampled, None),
    ):
        flags, labels, _ = _first_flags(kept, cap)
        flagged = {f for f, flag in flags.items() if flag.detector == "LabelCoincidentWrites"}
        found[name] = (
            f"{len(flagged & looked_for)} of {len(looked_for)} leaks, "
            f"{len(flagged - looked_for)} honest, {labels} labels"
        )
    return found


def scores(outcome: Outcome) -> tuple[float, float, int]:
    """Precision, recall, and how many honest features were flagged."""
    found = set(outcome.flags) & set(LEAKS)
    precision = len(found) / len(outcome.flags) if outcome.flags else 1.0
    return precision, len(found) / len(LEAKS), len(set(outcome.flags) - set(LEAKS))


def table(outcome: Outcome, seed: int) -> str:
    precision, recall, false_flags = scores(outcome)
    lines = [
        f"Seed {seed}: {outcome.events:,} events, {outcome.labels:,} labels; "
        f"precision {precision:.2f}, recall {recall:.2f}, "
        f"honest features flagged {false_flags} of {len(HONEST)}; "
        f"values from the future {outcome.future_values}; "
        f"write-lag SLA (5 min) breaches: {', '.join(outcome.sla_breaches) or 'none'}. "
        "Smallest p-value of an honest feature at the end: "
        + ", ".join(
            f"{detector} {p:.2g} ({feature})"
            for detector, (feature, p) in outcome.closest_honest.items()
        )
        + ".",
        "",
        "| feature | planted | flagged by | needed (labels arrived) | p-value | evidence |",
        "|---|---|---|---|---|---|",
    ]
    for feature in [*COINCIDENT, *LATE, *GAPPED, *sorted(set(outcome.flags) - set(LEAKS))]:
        flag = outcome.flags.get(feature)
        planted = LEAKS.get(feature, "honest")
        if flag is None:
            lines.append(f"| {feature} | {planted} | missed | - | - | - |")
            continue
        needed = (
            f"{flag.needed} predictions"
            if flag.detector == "AvailabilityGap"
            else f"{flag.needed} labels ({flag.labels_arrived})"
        )
        lines.append(
            f"| {feature} | {planted} | {flag.detector} | {needed} | {flag.p_value:.1e} "
            f"| {flag.evidence} |"
        )
    lines += ["", f"| detector | µs per update | in batches of {BATCH_SIZE} |", "|---|---|---|"]
    lines += [
        f"| {name} | {one:.1f} | {'' if math.isnan(batched) else f'{batched:.1f}'} |"
        for name, (one, batched) in outcome.micros.items()
    ]
    return "\n".join(lines)


def summary(outcomes: dict[int, Outcome]) -> str:
    lines = [
        "| seed | precision | recall | honest flagged | "
        + " | ".join(f"{f} needed" for f in [*COINCIDENT, *LATE, *GAPPED])
        + " |",
        "|---" * (4 + len(LEAKS)) + "|",
    ]
    for seed, outcome in outcomes.items():
        precision, recall, false_flags = scores(outcome)
        needed = [
            str(outcome.flags[f].needed) if f in outcome.flags else "missed"
            for f in [*COINCIDENT, *LATE, *GAPPED]
        ]
        lines.append(
            f"| {seed} | {precision:.2f} | {recall:.2f} | {false_flags} | {' | '.join(needed)} |"
        )
    medians = [
        statistics.median([o.flags[f].needed for o in outcomes.values() if f in o.flags] or [0])
        for f in [*COINCIDENT, *LATE, *GAPPED]
    ]
    lines.append("| median | | | | " + " | ".join(f"{m:g}" for m in medians) + " |")
    return "\n".join(lines)


WATCH_PORTFOLIO = """
[models.churn]
owner = "team-retention"
tier = "cpu"
fallback = "keep_all"
label_delay = "1h"
[models.churn.features]
last_login_date = "numeric"
plan = "categorical"
balance = "numeric"
sessions_7d = "numeric"
"""


def watch_memory(entities: int = 12_000, writes: int = 4) -> dict[str, float]:
    """A model's leak watch (4 features) once its entity caps (10,000) are reached.

    Each entity gets ``writes`` writes per feature a second apart, one live prediction and
    one label, so every per-entity structure is full. Returns the pickled bytes, the bytes
    Python allocated for the watch (tracemalloc, after a full collection), and the pickle
    and restore times in milliseconds (CPU).
    """
    from schemas.contracts import GroundTruth
    from streams.monitor.leak_watch import new_leak_watch, observe
    from streams.portfolio import parse_portfolio
    from tests.streams.test_leak_watch import label, prediction, write

    model = parse_portfolio(WATCH_PORTFOLIO).get("churn")
    assert model is not None
    features = [feature.name for feature in model.features]
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    watch = new_leak_watch(model)
    now = 1_000_000_000.0
    for i in range(entities):
        entity = f"user-{i}"
        for _ in range(writes):
            now += 1_000.0
            for feature in features:
                observe(model, watch, write(entity, feature, 1.0, now, now))
        seen = {feature: (1.0, now) for feature in features}
        observe(model, watch, prediction(f"r{i}", entity, now, seen))
        truth: GroundTruth = label(entity, i % 2, now)  # type: ignore[assignment]
        observe(model, watch, truth)
    gc.collect()
    in_memory = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    start = time.process_time()
    data = pickle.dumps(watch)
    dumped = time.process_time()
    pickle.loads(data)
    loaded = time.process_time()
    return {
        "pickled_mb": len(data) / 1e6,
        "in_memory_mb": in_memory / 1e6,
        "pickle_ms": (dumped - start) * 1e3,
        "restore_ms": (loaded - dumped) * 1e3,
    }


def backlog_events(seed: int, users: int, features: int = 20) -> tuple[list[Any], list[Any]]:
    """A seeded backlog: ``users`` users write ``features`` features (``last_login_date``
    among them; 20, as the synthetic portfolio's models) a few times over two days, and each
    gets a label on day 1 or 2 (every fourth user a 1, whose ``last_login_date`` is nulled
    then: a leak); then, a week later, ``BATCH_SIZE`` writes a second apart, after which
    every open label's later lag bins are due at once. The two parts, in order."""
    rng = np.random.default_rng(seed)
    timeline: list[tuple[float, Any]] = []
    names = ["last_login_date", *(f"feature_{i:02d}" for i in range(1, features))]
    for user in range(users):
        churner = user % 4 == 0
        for at in rng.uniform(0.0, 2 * DAY, rng.poisson(6)).tolist():
            feature = names[int(rng.integers(len(names)))]
            timeline.append((at, FeatureWrite(user, feature, float(rng.normal()), at, at)))
        label_at = float(rng.uniform(DAY, 2 * DAY))
        timeline.append((label_at, Label(user, int(churner), label_at)))
        if churner:
            timeline.append(
                (label_at, FeatureWrite(user, "last_login_date", None, label_at, label_at))
            )
    timeline.sort(key=lambda item: item[0])
    later = 9 * DAY + np.arange(BATCH_SIZE) * SECOND
    jump = [FeatureWrite(int(rng.integers(users)), names[-1], 1.0, at, at) for at in later.tolist()]
    return [event for _, event in timeline], jump


def backlog(seed: int = 0, users: int = 20_000, features: int = 20) -> dict[str, float]:
    """CPU seconds of one ``LabelCoincidentWrites.update_many`` call over a backlog
    (``backlog_events``):

    - ``jump``: the detector read the first part in batches of ``BATCH_SIZE``; one call
      reads the writes a week later, as a worker restored from a checkpoint meets records
      a week on, and judges every open label's remaining lag bins;
    - ``whole``: a new detector reads both parts in one call.

    Also the labels open before the jump, the lag bins it judged, and the features flagged.
    """
    events, jump = backlog_events(seed, users, features)
    detector = LabelCoincidentWrites(sentinels=(-1,))
    for at in range(0, len(events), BATCH_SIZE):
        detector.update_many(events[at : at + BATCH_SIZE])
    open_labels, judged = detector.open_labels, int(detector._next_bin.sum())
    start = time.process_time()
    detector.update_many(jump)
    jump_s = time.process_time() - start
    whole = LabelCoincidentWrites(sentinels=(-1,))
    start = time.process_time()
    whole.update_many(events + jump)
    whole_s = time.process_time() - start
    assert whole.leaking_features == detector.leaking_features
    return {
        "open_labels": open_labels,
        "jump_bins_judged": int(detector._next_bin.sum()) - judged,
        "jump_s": jump_s,
        "whole_events": len(events) + len(jump),
        "whole_s": whole_s,
        "flagged": len(detector.leaking_features),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeded worlds to run")
    parser.add_argument(
        "--memory", action="store_true", help="only the leak watch's size at its caps"
    )
    parser.add_argument(
        "--backlog", action="store_true", help="only one update_many over a backlog"
    )
    parser.add_argument("--users", type=int, default=20_000, help="users of --backlog")
    parser.add_argument("--features", type=int, default=20, help="features of --backlog")
    parser.add_argument(
        "--entity-budgets",
        type=int,
        nargs="+",
        help="only label coincidence holding this many users, capped or hash-sampled",
    )
    args = parser.parse_args(argv)
    if args.entity_budgets:
        for seed in range(args.seeds):
            for entities in args.entity_budgets:
                for way, found in entity_budget(seed, entities).items():
                    print(f"seed {seed}, {entities} users, {way}: {found}")
        return 0
    if args.backlog:
        print(
            " ".join(
                f"{key} {value:.4g}" for key, value in backlog(0, args.users, args.features).items()
            )
        )
        return 0
    if args.memory:
        print(" ".join(f"{key} {value:.2f}" for key, value in watch_memory().items()))
        return 0
    outcomes = {seed: run(seed) for seed in range(args.seeds)}
    print(table(outcomes[0], 0))
    if args.seeds > 1:
        print()
        print(summary(outcomes))
    return 0


def test_every_leak_found_and_no_honest_feature_flagged() -> None:
    outcome = run(0)
    print(table(outcome, 0))
    assert scores(outcome) == (1.0, 1.0, 0)
    assert outcome.future_values == 0


if __name__ == "__main__":
    sys.exit(main())
