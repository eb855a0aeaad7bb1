"""What the trial profile detects in a run of minutes, with no setting changed by hand.

A scenario (``--scenario``, default ``short``: ``deploy/scenarios/short.toml``, 8 models,
one incident of each kind over 12 nominal hours) is played for ``--minutes`` of
compressed time at ``--time-scale`` (default 1440, a nominal day a minute: the demo's
clock, whose settings the trial profile is, and at which the simulator's portfolio
declares a shadow's one-day stable period as the profile's minute; 240 puts the short
scenario's 12 nominal hours into 3 minutes, 7200 is its own), and its records go to one
``streams.monitor.Monitor`` per model, as the worker feeds them: each model's records of
every ``--every-ms`` of event time as one batch, feature writes routed to the models that
monitor their feature.
The portfolio is the simulator's (what ``failsoft simulate --write-portfolio`` writes)
with only

    [defaults]
    profile = "trial"

added. Printed, per incident: when it started (seconds of the run) and the first alarm
that detects it, by the demo report's rule (``streams.demo.report.detects``: a fallback
command, or a detector alert above informational, or a shadow verdict, of a detector
that fits the incident's kind), at any time up to the end of the run, and the model's
alarms of any detector before the incident began (false alarms). A missed incident
is printed with what the run held for it: the model's live predictions before it (a
drift that begins before the drift reference is full becomes part of the reference), the
model's labels that arrived within the run (label-based detectors decide nothing without
them) and, for a shadow, the stable period its portfolio table declares. Then per model
the first commands and non-health alerts. No stack, no Kafka; the run is seeded
(``--seed``, default the scenario's), so a repeat differs only in CPU time.

Run from the repository root::

    python -m tests.benchmarks.bench_trial_profile --minutes 3
    python -m tests.benchmarks.bench_trial_profile --minutes 3 --time-scale 240
    python -m tests.benchmarks.bench_trial_profile --scenario default
"""

from __future__ import annotations

import argparse
import bisect
import collections
import time
from datetime import timedelta

from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams.demo.report import QUIET_SEVERITIES, VERDICT_EVENTS, detects
from streams.monitor import Batch, Effects, Monitor
from streams.portfolio import parse_portfolio
from streams.simulate.population import portfolio_toml
from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario


def alarms(effects: Effects) -> list[str]:
    """The detectors whose alarms in ``effects`` can detect an incident, as the demo's
    report names them (a verdict with its value, e.g. ``shadow_verdict:promote``)."""
    found = [c.detector for c in effects.commands if c.action == "fallback"]
    for alert in effects.alerts:
        if alert.group != "detector":
            continue
        if alert.event in VERDICT_EVENTS:
            found.append(f"{alert.event}:{alert.value}")
        elif alert.severity not in QUIET_SEVERITIES:
            found.append(alert.event)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="short", help="a name in deploy/scenarios")
    parser.add_argument("--time-scale", type=float, default=1440.0)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, help="default: the scenario's")
    parser.add_argument("--every-ms", type=int, default=500)
    parser.add_argument("--shown", type=int, default=6, help="events shown per model")
    args = parser.parse_args()

    run = SimulationRun.prepare(
        load_scenario(SCENARIOS / f"{args.scenario}.toml"),
        start_ms=0,
        duration=timedelta(minutes=args.minutes),
        time_scale=args.time_scale,
        seed=args.seed,
    )
    text = portfolio_toml(run.portfolio, run.time_scale) + '\n[defaults]\nprofile = "trial"\n'
    portfolio = parse_portfolio(text)
    monitors = {model.model_id: Monitor(model) for model in portfolio}
    numeric = {
        model.model_id: frozenset(f.name for f in model.features if f.kind == "numeric")
        for model in portfolio
    }
    found: dict[str, list[tuple[object, ...]]] = collections.defaultdict(list)
    detections: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    labels: collections.Counter[str] = collections.Counter()
    predicted: dict[str, list[int]] = collections.defaultdict(list)
    first_label: dict[str, int] = {}
    pending: dict[str, list[Prediction | GroundTruth | FeatureWrite]] = collections.defaultdict(
        list
    )

    def flush(at_ms: int) -> None:
        for model_id in list(pending):
            records = pending.pop(model_id)
            batch = Batch.from_records(model_id, records, numeric[model_id])
            effects = monitors[model_id].observe(batch)
            detections[model_id] += [(at_ms, detector) for detector in alarms(effects)]
            at = round(at_ms / 1000.0, 1)
            found[model_id] += [(at, c.action, c.detector) for c in effects.commands]
            found[model_id] += [(at, f"{a} withheld") for a in effects.withheld]
            found[model_id] += [
                (at, a.event, a.severity)
                for a in effects.alerts
                if a.group != "health" and a.severity not in ("normal", "ok")
            ]

    started = time.process_time()
    count, last = 0, 0
    for event in run.events():
        count += 1
        record = event.record
        if isinstance(record, FeatureWrite):
            for model_id in portfolio.models_monitoring(record.feature):
                pending[model_id].append(record)
        else:
            pending[record.model_id].append(record)
            if isinstance(record, Prediction) and record.role == "live":
                predicted[record.model_id].append(event.at)
            if isinstance(record, GroundTruth):
                labels[record.model_id] += 1
                first_label.setdefault(record.model_id, event.at)
        if event.at - last >= args.every_ms:
            flush(event.at)
            last = event.at
    flush(last)
    cpu = time.process_time() - started

    print(
        f"scenario {run.scenario.name}, time scale {run.time_scale:g}, {args.minutes:g} min "
        f"(seed {run.seed}): {count} records in {cpu:.0f} CPU-seconds"
    )
    timeline = run.timeline()
    detected = 0
    for incident in timeline:
        kind, model_id = incident["kind"], incident["model"]
        at_ms = round(incident["at_epoch"] * 1000)
        first = next(
            ((t, d) for t, d in detections[model_id] if t >= at_ms and detects(kind, d)), None
        )
        line = f"incident {kind:<17} {model_id:<11} at {at_ms / 1000:5.0f} s: "
        early = [(t, d) for t, d in detections[model_id] if t < at_ms]
        if early:
            line += f"{len(early)} alarms BEFORE it, the first at {early[0][0] / 1000:.1f} s "
            line += f"by {early[0][1]}; "
        if first is not None:
            detected += 1
            print(line + f"detected at {first[0] / 1000:.1f} s by {first[1]}")
            continue
        model = portfolio.get(model_id)
        assert model is not None
        arrived = labels[model_id]
        facts = [
            f"{bisect.bisect_left(predicted[model_id], at_ms)} predictions before it",
            f"label_delay {model.label_delay.total_seconds():g} s",
            f"{arrived} labels in the run"
            + (f", the first at {first_label[model_id] / 1000:.1f} s" if arrived else ""),
        ]
        if kind.startswith("drift"):
            reference = model.detector_settings("drift").get("reference_size")
            facts.append(f"drift reference_size {reference}")
        if model.shadow is not None and kind.startswith("shadow"):
            period = model.shadow.min_stable_period.total_seconds()
            facts.append(f"shadow.min_stable_period {period:g} s")
        print(line + "MISSED (" + "; ".join(facts) + ")")
    print(f"detected {detected} of {len(timeline)}")
    for model_id in sorted(found):
        print(model_id, found[model_id][: args.shown])


if __name__ == "__main__":
    main()
