"""The label join alone, no monitor: records per CPU-second.

The synthetic replay's predictions and labels (``bench_monitor_replay.synthetic``: per
model, a prediction a second and the label of each an hour later, five predictions to three
labels), grouped per model in batches of ``--batch`` records and joined as the monitor
joins them while no label waits: the batch as one run through ``JoinBatch.observe_run``
(all the labels are held), with the predictions' request hashes made in one pass
(``request_hashes``, as ``Batch`` makes them), the batch's ``caused`` at its end. Each round
starts from
fresh joins; the rate is of the fastest and the median round, since on a shared machine
the fastest is the least disturbed.

``--per-record``: the join's own cost per record, without the detectors: one model's first
5,000 predictions, then 3,000 labels of them, all in one batch and with reports pushed past
the end (so that nothing is fed to the detectors until the end), CPU microseconds per
prediction (one run, request hashes and columns included) and per label (one run, its
columns included; a label not held only looked up, as the monitor would make it wait), of
the fastest round each.

Run from the repository root::

    python -m tests.benchmarks.bench_label_join --models 20 --per-model 500 --batch 500
    python -m tests.benchmarks.bench_label_join --per-record
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from detectors.leaks.events import request_hashes
from schemas.contracts import GroundTruth, Prediction
from streams.monitor import label_join
from streams.monitor.batch import Record
from streams.portfolio import Model, Portfolio
from tests.benchmarks.bench_monitor_replay import batches, synthetic, synthetic_portfolio


def join_seconds(portfolio: Portfolio, grouped: Sequence[tuple[str, list[Record]]]) -> float:
    """CPU seconds to join every batch, on fresh joins."""
    joins = {model.model_id: label_join.new_join(model) for model in portfolio}
    start = time.process_time()
    for model_id, records in grouped:
        batch = label_join.JoinBatch(joins[model_id])
        _observe_run(batch, records)
        batch.caused()
    return time.process_time() - start


def _observe_run(
    batch: label_join.JoinBatch, records: Sequence[Record], unheld: bool = True
) -> None:
    """The records as the monitor joins them while no label waits; a label the join does
    not hold, which the monitor would make wait, joined at once if ``unheld``, else
    left out."""
    joined = [r for r in records if isinstance(r, Prediction | GroundTruth)]
    hashes = iter(request_hashes(r.request_id for r in joined if isinstance(r, Prediction)))
    requests = [next(hashes) if isinstance(r, Prediction) else None for r in joined]
    run = label_join.join_run(joined, requests)
    at = 0
    while at < len(joined):
        at = batch.observe_run(joined, requests, at, run)
        if at < len(joined):
            if unheld:
                batch.observe(joined[at])
            at += 1


def per_record_us(model: Model, records: Sequence[Record]) -> tuple[float, float]:
    """CPU microseconds per prediction and per label, joined without a report."""
    predictions = [r for r in records if isinstance(r, Prediction)][:5000]
    labels = [r for r in records if isinstance(r, GroundTruth)][:3000]
    join = label_join.new_join(model)
    join.next_report_ms = 2**62  # no report, so no detector is fed before the end
    batch = label_join.JoinBatch(join)
    start = time.process_time()
    _observe_run(batch, predictions)
    held = time.process_time()
    _observe_run(batch, labels, unheld=False)
    end = time.process_time()
    batch.caused()
    return (held - start) / len(predictions) * 1e6, (end - held) / len(labels) * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--per-model", type=int, default=500, help="synthetic records per model")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-record", action="store_true", help="CPU us per record instead")
    args = parser.parse_args(argv)
    if args.per_record:
        portfolio = synthetic_portfolio(1, features=20)
        model = next(iter(portfolio))
        records = [record for _, record in synthetic(portfolio, 20_000, seed=1)]
        timed = [per_record_us(model, records) for _ in range(args.rounds)]
        prediction_us, label_us = (min(column) for column in zip(*timed, strict=True))
        print(
            f"label join, per record, fastest of {args.rounds}: "
            f"{prediction_us:.2f} us per prediction, {label_us:.2f} us per label"
        )
        return
    portfolio = synthetic_portfolio(args.models, features=20)
    routed = [
        (model_id, record)
        for model_id, record in synthetic(portfolio, args.per_model, seed=args.models)
        if isinstance(record, Prediction | GroundTruth)
    ]
    grouped = list(batches(routed, args.batch))
    rates = [len(routed) / join_seconds(portfolio, grouped) for _ in range(args.rounds)]
    print(
        f"label join, {args.models} models, batch {args.batch}: {len(routed):,d} records, "
        f"{max(rates):,.0f} records/CPU-s fastest, {statistics.median(rates):,.0f} median "
        f"of {args.rounds}"
    )


if __name__ == "__main__":
    main()
