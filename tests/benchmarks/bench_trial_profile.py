"""What the trial profile detects in a run of minutes, with no setting changed by hand.

The short scenario (``deploy/scenarios/short.toml``: 8 models, one incident of each kind
over 12 nominal hours) is played for ``--minutes`` of compressed time at ``--time-scale``
(240 puts its 12 hours into 3 minutes), and its records go to one
``streams.monitor.Monitor`` per model, as the worker feeds them: each model's records of
every ``--every-ms`` of event time as one batch, feature writes routed to the models that
monitor their feature. The portfolio is the simulator's with only

    [defaults]
    profile = "trial"

added. Printed: each incident (when it started, in seconds of the run), and per model the
first commands and the non-health alerts it raised, with their times. No stack, no Kafka.

Run from the repository root::

    python -m tests.benchmarks.bench_trial_profile --time-scale 240 --minutes 3
"""

from __future__ import annotations

import argparse
import collections
import time
from datetime import timedelta

from schemas.contracts import FeatureWrite, GroundTruth, Prediction
from streams.monitor import Batch, Monitor
from streams.portfolio import parse_portfolio
from streams.simulate.population import portfolio_toml
from streams.simulate.run import SCENARIOS, SimulationRun, load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=240.0)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--every-ms", type=int, default=500)
    parser.add_argument("--shown", type=int, default=6, help="events shown per model")
    args = parser.parse_args()

    run = SimulationRun.prepare(
        load_scenario(SCENARIOS / "short.toml"),
        start_ms=0,
        duration=timedelta(minutes=args.minutes),
        time_scale=args.time_scale,
    )
    text = portfolio_toml(run.portfolio, run.time_scale) + '\n[defaults]\nprofile = "trial"\n'
    portfolio = parse_portfolio(text)
    monitors = {model.model_id: Monitor(model) for model in portfolio}
    numeric = {
        model.model_id: frozenset(f.name for f in model.features if f.kind == "numeric")
        for model in portfolio
    }
    found: dict[str, list[tuple[object, ...]]] = collections.defaultdict(list)
    pending: dict[str, list[Prediction | GroundTruth | FeatureWrite]] = collections.defaultdict(
        list
    )

    def flush(at_ms: int) -> None:
        for model_id in list(pending):
            records = pending.pop(model_id)
            batch = Batch.from_records(model_id, records, numeric[model_id])
            effects = monitors[model_id].observe(batch)
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
        if event.at - last >= args.every_ms:
            flush(event.at)
            last = event.at
    flush(last)
    cpu = time.process_time() - started

    print(f"{count} records in {cpu:.0f} CPU-seconds")
    for incident in run.timeline():
        kind, model, at = incident["kind"], incident["model"], incident["at_epoch"]
        print(f"incident {kind:<17} {model:<11} at {at:.0f} s")
    for model_id in sorted(found):
        print(model_id, found[model_id][: args.shown])


if __name__ == "__main__":
    main()
