"""The soak: one real worker under steady traffic for a long time; its memory, lag, CPU
and changelog writes over time.

On the stack the ``FAILSOFT_*`` settings name (started if down; give it a stack of its
own: the run is long and loads the broker), through ``streams.demo.run.DemoRun`` (a key
pair, topics and an app id of the run's own, deleted at the end):

1. a portfolio of ``--models`` models of ``streams.simulate.population.synthetic_portfolio``
   (use cases, label delays, shadows and fallback ladders as there), each with
   ``--features`` numeric features ``<model>.fNN`` instead of its use case's; the worker
   reads it with its durations compressed and the demo's detector settings
   (``DEMO_DETECTOR_DEFAULTS``), as the demo's worker does, and keeps its state table in
   memory (``memory://``, the demo's store: the table's pickled monitors are in its RSS);
2. one ``failsoft worker`` (a child process), then ``failsoft simulate`` playing
   ``tests/benchmarks/soak.toml`` (steady healthy traffic, no incident) over that
   portfolio at ``--rate`` live requests per second for ``--duration``, in batch messages
   of up to ``--batch-size`` records. A request of a model with F features makes F
   feature writes, its prediction (and its shadow's, for every fourth model) and, for
   most, a label a compressed label delay later: about F + 2.2 records;
3. every ``--every`` seconds, from the worker's start until the simulator has ended and
   the worker has caught up (or ``DRAIN_TIMEOUT_S`` passed): the RSS and CPU time of the
   worker's process tree (``/proc``), its lag, the records it consumed, its full garbage
   collections (``streams.worker.gcfreeze``) and its monitors' bounded structures
   (entries, caps, models at cap; all on its ``/metrics``), the bytes of the state
   table's changelog, of the worker's internal topic and of the input topics in the
   broker's log folder (``.log`` segments; index files are preallocated), the
   changelog's end offsets, the machine's busy cores (``/proc/stat``) and its load
   average; then the worker is stopped (SIGTERM, as a supervisor would) and the
   changelog measured again: a stopping worker checkpoints every monitor it holds, which
   a worker whose models each see fewer than ``streams.monitor.CHECKPOINT_EVERY``
   records (and no alarm) never did before;
4. ``soak.csv`` (the samples), ``soak.json`` (settings, command, summary, samples) and
   ``soak.png`` (RSS, lag, CPU and the structures' fill over time) in ``--out``; the
   worker's and simulator's logs stay in the run folder under the stack's state folder,
   and the summary counts the worker log's error lines.

The summary: the worker's RSS at most, at 5, 10, 20 and 30 minutes of traffic, its growth
after the first 5 minutes; its lag (records, seconds) at most and by the end; the
changelog's write rate (bytes and records per second of traffic, and bytes per record
consumed) and what the stop wrote; the worker's CPU (cores used on average) and its
records per CPU-second; its full garbage collections (how many, their pauses, the objects
they freed) over the run and after its first 2 minutes; each bounded structure's entries
at 5 minutes and at the end, and from which minute it stayed at least 95% full; the
machine's busy cores and load average over the run. The machine is shared: a lag that
grows while the worker gets less CPU than its records need is the machine, not the
worker; compare its CPU share with its records per CPU-second.

Run from the repository root::

    python -m tests.benchmarks.bench_soak --models 20 --features 20 --rate 40 \\
        --duration 2m --out /tmp/soak-short
    python -m tests.benchmarks.bench_soak --models 1000 --features 20 --rate 45 \\
        --duration 30m --out tests/benchmarks/figures/soak-1000x20
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams.demo.run import DemoOptions, DemoRun, lag_of, settings_env
from streams.kafka_security import librdkafka_security
from streams.portfolio import Feature, Portfolio
from streams.settings import Settings
from streams.simulate.population import portfolio_toml, synthetic_portfolio
from streams.stack import SERVERS
from streams.topics import (
    FEATURE_WRITES,
    GROUND_TRUTH,
    PREDICTIONS,
    STATE_TABLE,
    changelog,
    writes_by_model,
)

SCENARIO = Path(__file__).with_name("soak.toml")
# After the simulator ends, the worker is given this long to work off its backlog.
DRAIN_TIMEOUT_S = 600.0
# Records still unread by the worker that count as caught up.
DRAINED_LAG = 50
# Minutes of traffic at which the summary gives the RSS; growth is measured after the first.
RSS_MARKS_MIN = (5, 10, 20, 30)
# The worker's CPU in the plot: cores used over the minute before each sample.
CPU_WINDOW_S = 60.0
SIMULATOR_DONE = re.compile(r"^failsoft simulate: done in ([0-9.]+) s, ([0-9]+) records", re.M)
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|^Traceback ")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the worker and the broker; ``t_s`` from the worker's start."""

    t_s: float
    phase: str
    rss_bytes: int
    worker_cpu_s: float
    simulator_cpu_s: float
    machine_busy_cores: float
    load1: float
    lag_records: int | None
    lag_seconds: float | None
    # Input records (the internal topic's included) after the ingest group's commits.
    committed_lag: int | None
    consumed: int | None
    changelog_bytes: int
    changelog_offsets: int
    internal_bytes: int
    input_bytes: int
    # The worker's full garbage collections (``gc_of_metrics``) and bounded structures
    # (``state_of_metrics``) on its /metrics; None when it did not answer (or an older run).
    gc: dict[str, Any] | None = None
    state: dict[str, list[int]] | None = None
    # Its ``failsoft_effect_latency_seconds`` histogram (``latency_of_metrics``).
    latency: dict[str, int] | None = None
    # The worker's main thread (its event loop): CPU seconds, and seconds it was ready to
    # run but waited for a CPU the machine gave others (``run_and_wait_of_schedstat``).
    loop_cpu_s: float | None = None
    loop_wait_s: float | None = None


def soak_portfolio(models: int, features: int) -> Portfolio:
    """The synthetic portfolio of ``models`` models, each with ``features`` numeric
    features named after it (so a write routes to one model).

    >>> portfolio = soak_portfolio(3, 2)
    >>> [(m.model_id, [f.name for f in m.features]) for m in portfolio][:2]
    [('churn-000', ['churn-000.f00', 'churn-000.f01']), ('fraud-001', ['fraud-001.f00', \
'fraud-001.f01'])]
    """
    if features < 1:
        raise ValueError(f"features: expected at least 1, got {features}")
    return Portfolio(
        {
            model.model_id: dataclasses.replace(
                model,
                features=tuple(
                    Feature(f"{model.model_id}.f{k:02d}", "numeric") for k in range(features)
                ),
            )
            for model in synthetic_portfolio(models)
        }
    )


# Pure helpers: /proc, /metrics and the broker's log folder, parsed.


def rss_of_status(text: str) -> int:
    """Bytes of ``VmRSS`` in a ``/proc/<pid>/status`` text (0 for a zombie, which has none).

    >>> rss_of_status("Name:\\tpython\\nVmRSS:\\t  2048 kB\\nThreads:\\t4\\n")
    2097152
    """
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def parent_and_cpu_of_stat(text: str, ticks: int = CLOCK_TICKS) -> tuple[int, float]:
    """The parent pid and the CPU seconds (user + system) in a ``/proc/<pid>/stat`` text.

    The command name, in parentheses, may hold spaces and parentheses: fields are counted
    after its last ``)``.

    >>> parent_and_cpu_of_stat("42 (python (x) y) S 7 42 42 0 -1 0 1 2 3 4 250 50 0 0", 100)
    (7, 3.0)
    """
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state, ppid, ..., utime (the 12th) and stime (the 13th).
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def run_and_wait_of_schedstat(text: str) -> tuple[float, float]:
    """A thread's seconds on a CPU and seconds runnable but waiting in a run queue, from
    its ``/proc/<pid>/task/<tid>/schedstat`` text (nanoseconds).

    >>> run_and_wait_of_schedstat("2500000000 500000000 1234\\n")
    (2.5, 0.5)
    """
    run_ns, wait_ns, _ = text.split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def descendants(parents: Mapping[int, int], root: int) -> set[int]:
    """``root`` and every process below it, from each process's parent.

    >>> sorted(descendants({2: 1, 3: 2, 4: 1, 5: 3, 6: 9}, 2))
    [2, 3, 5]
    """
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def busy_and_total_of_proc_stat(text: str) -> tuple[int, int]:
    """Busy and total jiffies of all CPUs in a ``/proc/stat`` text (idle and iowait are
    not busy).

    >>> busy_and_total_of_proc_stat("cpu  10 2 8 70 5 1 1 3 0 0\\ncpu0 1 1 1 1 1 1 1 1 0 0\\n")
    (25, 100)
    """
    first = text.splitlines()[0].split()
    assert first[0] == "cpu", "the first line of /proc/stat sums every CPU"
    # user nice system idle iowait irq softirq steal (guest times are inside user and nice)
    values = [int(v) for v in first[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def metric_sum(metrics: str, name: str) -> int:
    """The sum of a metric over its labels in a Prometheus text.

    >>> metric_sum('x_total{topic="a"} 3.0\\nx_total{topic="b"} 4.0\\nx_created 9.0\\n', "x_total")
    7
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples = (s for f in text_string_to_metric_families(metrics) for s in f.samples)
    return int(sum(sample.value for sample in samples if sample.name == name))


def _families(metrics: str) -> Iterable[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return (
        sample for family in text_string_to_metric_families(metrics) for sample in family.samples
    )


def gc_of_metrics(metrics: str) -> dict[str, Any]:
    """The worker's full garbage collections so far (``streams.worker.gcfreeze``): how
    many, their seconds, how many ended under each bound (seconds), the longest, and the
    objects frozen at the worker's start.

    >>> text = ('failsoft_gc_full_collection_seconds_bucket{le="0.05"} 3.0\\n'
    ...         'failsoft_gc_full_collection_seconds_bucket{le="+Inf"} 5.0\\n'
    ...         'failsoft_gc_full_collection_seconds_count 5.0\\n'
    ...         'failsoft_gc_full_collection_seconds_sum 2.5\\n'
    ...         'failsoft_gc_full_collection_longest_seconds 1.5\\n'
    ...         'failsoft_gc_frozen_at_start 9.0\\n')
    >>> gc_of_metrics(text)
    {'count': 5, 'seconds': 2.5, 'under': {'0.05': 3, '+Inf': 5}, 'longest_s': 1.5, 'frozen': 9, \
'collected': 0}
    """
    found: dict[str, Any] = {"count": 0, "seconds": 0.0, "under": {}, "longest_s": 0.0}
    found["frozen"] = found["collected"] = 0
    for sample in _families(metrics):
        if sample.name == "failsoft_gc_full_collection_seconds_bucket":
            found["under"][sample.labels["le"]] = int(sample.value)
        elif sample.name == "failsoft_gc_full_collection_seconds_count":
            found["count"] = int(sample.value)
        elif sample.name == "failsoft_gc_full_collection_seconds_sum":
            found["seconds"] = round(sample.value, 4)
        elif sample.name == "failsoft_gc_full_collection_longest_seconds":
            found["longest_s"] = round(sample.value, 4)
        elif sample.name == "failsoft_gc_frozen_at_start":
            found["frozen"] = int(sample.value)
        elif sample.name == "failsoft_gc_full_collection_collected_total":
            found["collected"] = int(sample.value)
    return found


def state_of_metrics(metrics: str) -> dict[str, list[int]]:
    """Per bounded structure of the worker's monitors: [entries, cap, models at cap].

    >>> state_of_metrics('failsoft_monitor_state_entries{structure="a"} 5.0\\n'
    ...                  'failsoft_monitor_state_cap{structure="a"} 20.0\\n'
    ...                  'failsoft_monitor_models_at_cap{structure="a"} 1.0\\n')
    {'a': [5, 20, 1]}
    """
    columns = {
        "failsoft_monitor_state_entries": 0,
        "failsoft_monitor_state_cap": 1,
        "failsoft_monitor_models_at_cap": 2,
    }
    state: dict[str, list[int]] = {}
    for sample in _families(metrics):
        if sample.name in columns:
            row = state.setdefault(sample.labels["structure"], [0, 0, 0])
            row[columns[sample.name]] = int(sample.value)
    return state


def latency_of_metrics(metrics: str) -> dict[str, int]:
    """The worker's effect-latency histogram so far: the records handed over within each
    bound (seconds), cumulative as in Prometheus.

    >>> latency_of_metrics('failsoft_effect_latency_seconds_bucket{le="0.15"} 7.0\\n'
    ...                    'failsoft_effect_latency_seconds_bucket{le="+Inf"} 9.0\\n')
    {'0.15': 7, '+Inf': 9}
    """
    return {
        sample.labels["le"]: int(sample.value)
        for sample in _families(metrics)
        if sample.name == "failsoft_effect_latency_seconds_bucket"
    }


def latency_between(
    first: Mapping[str, int], last: Mapping[str, int], quantiles: Sequence[float] = (0.5, 0.99)
) -> dict[str, Any]:
    """The records timed from one sample's effect-latency histogram to a later one's, and
    each quantile twice: the upper bound of the bucket holding it (at most that; ``inf``
    above the last bound) and linearly interpolated inside that bucket, as Prometheus's
    ``histogram_quantile`` does (an estimate; the first bucket starts at 0).

    >>> first = {"0.05": 10, "0.1": 10, "0.15": 10, "+Inf": 10}
    >>> latency_between(first, {"0.05": 60, "0.1": 100, "0.15": 109, "+Inf": 110})
    {'records': 100, 'p50_le_s': 0.05, 'p50_s': 0.05, 'p99_le_s': 0.15, 'p99_s': 0.15}
    >>> latency_between(first, {"0.05": 30, "0.1": 50, "0.15": 110, "+Inf": 110})["p99_s"]
    0.1492
    >>> latency_between(first, {"0.05": 10, "0.1": 10, "0.15": 10, "+Inf": 20})["p99_le_s"]
    inf
    """
    bounds = sorted(last, key=float)
    counts = [last[b] - first.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    found: dict[str, Any] = {"records": total}
    for q in quantiles:
        name = f"p{round(q * 100)}"
        if not total:
            found[f"{name}_le_s"] = found[f"{name}_s"] = None
            continue
        rank = q * total
        i = next(i for i, count in enumerate(counts) if count >= rank)
        upper = float(bounds[i])
        lower, below = (float(bounds[i - 1]), counts[i - 1]) if i else (0.0, 0)
        found[f"{name}_le_s"] = upper
        found[f"{name}_s"] = (
            upper
            if upper == float("inf")
            else round(lower + (upper - lower) * (rank - below) / (counts[i] - below), 4)
        )
    return found


def gc_between(first: Mapping[str, Any], last: Mapping[str, Any]) -> dict[str, Any]:
    """The full collections from one sample's ``gc`` to a later one's: how many, their mean
    pause, how many ended under each bound (seconds) and the objects they freed.

    >>> gc_between({"count": 2, "seconds": 3.0, "under": {"0.05": 0, "+Inf": 2}},
    ...            {"count": 6, "seconds": 3.1, "under": {"0.05": 3, "+Inf": 6}, "collected": 9})
    {'count': 4, 'mean_s': 0.025, 'under': {'0.05': 3, '+Inf': 4}, 'collected': 9}
    """
    count = last["count"] - first["count"]
    return {
        "count": count,
        "mean_s": round((last["seconds"] - first["seconds"]) / count, 4) if count else None,
        "under": {bound: n - first["under"].get(bound, 0) for bound, n in last["under"].items()},
        "collected": last.get("collected", 0) - first.get("collected", 0),
    }


def topic_bytes(entries: Iterable[tuple[str, int]], topics: Iterable[str]) -> int:
    """Bytes of the ``.log`` segments of ``topics``, from (path relative to the broker's
    log folder, size) entries; a partition's folder is ``<topic>-<partition>``.

    >>> entries = [("t-0/00.log", 10), ("t-0/00.index", 99), ("t-1/00.log", 5),
    ...            ("t-x-0/00.log", 7), ("u-0/00.log", 1)]
    >>> topic_bytes(entries, ["t", "t-x"])
    22
    """
    wanted = set(topics)
    total = 0
    for path, size in entries:
        folder, _, file = path.partition("/")
        topic, _, partition = folder.rpartition("-")
        if topic in wanted and partition.isdigit() and file.endswith(".log"):
            total += size
    return total


def committed_lag(partitions: Iterable[tuple[int, int, int]]) -> int:
    """Records after a group's commits, from each partition's (low, high, committed)
    offsets; a partition without a commit (a negative offset) lags from its low mark.

    >>> committed_lag([(0, 100, 90), (5, 50, -1001), (0, 0, -1001)])
    55
    """
    return sum(max(0, high - (done if done >= 0 else low)) for low, high, done in partitions)


def trailing_rate(times: Sequence[float], totals: Sequence[float], window_s: float) -> list[float]:
    """Per second, how fast a running total grew since the last time at least ``window_s``
    before each time (since the first time, early on; 0 at the first time).

    >>> trailing_rate([0, 5, 10, 15, 20], [0, 1, 4, 4, 10], 10)
    [0.0, 0.2, 0.4, 0.3, 0.6]
    """
    rates, first = [], 0
    for i, now in enumerate(times):
        while first + 1 < i and times[first + 1] <= now - window_s:
            first += 1
        span = now - times[first]
        rates.append((totals[i] - totals[first]) / span if span > 0 else 0.0)
    return rates


def simulator_done(text: str) -> dict[str, float] | None:
    """The simulator's own account of its run, from its log's last summary line: the
    seconds it took and the records it produced (None if it has none).

    >>> simulator_done("  5.0 s ...\\nfailsoft simulate: done in 120.4 s, 9000 records (75/s)\\n")
    {'elapsed_s': 120.4, 'records': 9000}
    """
    found = SIMULATOR_DONE.findall(text)
    if not found:
        return None
    elapsed, records = found[-1]
    return {"elapsed_s": float(elapsed), "records": int(records)}


def error_lines(text: str) -> list[str]:
    """The lines of a log that report an error.

    >>> error_lines("[W] slow\\n[2026-12-04 ERROR] boom\\nTraceback (most recent call last):\\n")
    ['[2026-12-04 ERROR] boom', 'Traceback (most recent call last):']
    """
    return [line for line in text.splitlines() if ERROR_LINE.search(line)]


def value_at(samples: Sequence[Sample], t_s: float) -> Sample | None:
    """The last sample at or before ``t_s``; None if there is none or it is stale (more than
    a minute old: the run ended before)."""
    before = [s for s in samples if s.t_s <= t_s]
    if not before or t_s - before[-1].t_s > 60.0:
        return None
    return before[-1]


def rate_per_s(first: Sample, last: Sample, field: str) -> float:
    """How fast ``field`` grew from one sample to another, per second.

    >>> a = Sample(10.0, "play", 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, 100, 0, 0, 0)
    >>> rate_per_s(a, dataclasses.replace(a, t_s=30.0, changelog_bytes=500), "changelog_bytes")
    20.0
    """
    elapsed = last.t_s - first.t_s
    return (getattr(last, field) - getattr(first, field)) / elapsed if elapsed > 0 else 0.0


def summarize(samples: Sequence[Sample], play_start_s: float, play_end_s: float) -> dict[str, Any]:
    """The soak's figures from its samples; times of traffic count from ``play_start_s``.

    >>> def s(t, phase, rss, lag, cl, consumed, cpu):
    ...     return Sample(t, phase, rss * MIB, cpu, 0.0, 1.0, 2.0, lag, lag / 10, lag, consumed,
    ...                   cl, cl // 100, 0, 0)
    >>> run = [s(0, "start", 100, 0, 0, 0, 0.0), s(60, "play", 200, 10, 0, 0, 1.0),
    ...        s(360, "play", 300, 20, 1000, 600, 11.0), s(660, "play", 330, 5, 4000, 1200, 21.0),
    ...        s(720, "drain", 320, 0, 4100, 1300, 22.0)]
    >>> summary = summarize(run, 60.0, 660.0)
    >>> summary["rss_mib"]
    {'max': 330.0, 'at_5_min': 300.0, 'at_10_min': 330.0, 'at_20_min': None, 'at_30_min': None}
    >>> summary["rss_growth_after_5_min"], summary["lag"]["max_records"]
    (0.1, 20)
    >>> summary["changelog"]["bytes_per_s"], summary["changelog"]["bytes_per_record"]
    (6.67, 3.15)
    >>> summary["worker"]["cores"], summary["worker"]["records_per_cpu_s"]
    (0.032, 61.9)
    """
    playing = [s for s in samples if play_start_s <= s.t_s]
    start = value_at(samples, play_start_s) or playing[0]
    end = value_at(samples, play_end_s) or samples[-1]
    last = samples[-1]
    rss: dict[str, float | None] = {"max": max(s.rss_bytes for s in samples) / MIB}
    for minutes in RSS_MARKS_MIN:
        mark = value_at(samples, play_start_s + minutes * 60)
        rss[f"at_{minutes}_min"] = None if mark is None else mark.rss_bytes / MIB
    after_first = value_at(samples, play_start_s + RSS_MARKS_MIN[0] * 60)
    later = [s.rss_bytes for s in samples if after_first is not None and s.t_s > after_first.t_s]
    growth = (
        None
        if after_first is None or not later
        else round(max(later) / after_first.rss_bytes - 1, 4)
    )
    lags = [s for s in playing if s.lag_records is not None]
    consumed = (last.consumed or 0) - (start.consumed or 0)
    cpu = last.worker_cpu_s - start.worker_cpu_s
    answered = [s for s in samples if s.gc is not None]
    after_2 = [s for s in answered if s.t_s >= play_start_s + 120]
    collections = (
        None
        if not answered
        else {
            "whole_run": gc_between(_NO_GC, answered[-1].gc or _NO_GC),
            "after_2_min": gc_between(after_2[0].gc or _NO_GC, answered[-1].gc or _NO_GC)
            if after_2
            else None,
            "longest_s": answered[-1].gc["longest_s"] if answered[-1].gc else None,
            "frozen": answered[-1].gc["frozen"] if answered[-1].gc else None,
        }
    )
    changelog_bytes = last.changelog_bytes - start.changelog_bytes
    return {
        "traffic_s": round(play_end_s - play_start_s, 1),
        "rss_mib": {k: None if v is None else round(v, 1) for k, v in rss.items()},
        "rss_growth_after_5_min": growth,
        "lag": {
            "max_records": max((s.lag_records or 0 for s in lags), default=None),
            "max_seconds": max((s.lag_seconds or 0.0 for s in lags), default=None),
            "at_traffic_end_records": end.lag_records,
            "at_traffic_end_seconds": end.lag_seconds,
            "final_records": last.lag_records,
            "max_committed_records": max(
                (s.committed_lag for s in playing if s.committed_lag is not None), default=None
            ),
            "at_traffic_end_committed_records": end.committed_lag,
            "final_committed_records": last.committed_lag,
            "unanswered_samples": sum(1 for s in playing if s.lag_records is None),
        },
        "changelog": {
            # Written while the traffic played (what it caused per second of it).
            "bytes_per_s": round(rate_per_s(start, end, "changelog_bytes"), 2),
            "records_per_s": round(rate_per_s(start, end, "changelog_offsets"), 2),
            # Through the end of the drain, per input record the worker consumed.
            "bytes_per_record": round(changelog_bytes / consumed, 2) if consumed else None,
            "bytes_total": last.changelog_bytes,
            "shrank": any(b.changelog_bytes < a.changelog_bytes for a, b in _pairs(samples)),
        },
        "internal_topic_bytes_per_s": round(rate_per_s(start, end, "internal_bytes"), 2),
        "input_bytes_per_s": round(rate_per_s(start, end, "input_bytes"), 2),
        "worker": {
            "records_consumed": consumed,
            "records_per_s": round(consumed / (last.t_s - start.t_s), 1)
            if last.t_s > start.t_s
            else None,
            "cpu_s": round(cpu, 1),
            "cores": round(cpu / (last.t_s - start.t_s), 3) if last.t_s > start.t_s else None,
            "records_per_cpu_s": round(consumed / cpu, 1) if cpu > 0 else None,
        },
        "simulator_cpu_s": round(last.simulator_cpu_s, 1),
        "gc_full_collections": collections,
        "state": state_summary(samples, play_start_s),
        "machine": {
            "busy_cores_median": round(statistics.median(s.machine_busy_cores for s in playing), 2),
            "load1_median": round(statistics.median(s.load1 for s in playing), 2),
            "load1_max": round(max(s.load1 for s in playing), 2),
        },
    }


_NO_GC: dict[str, Any] = {"count": 0, "seconds": 0.0, "under": {}}


def state_summary(samples: Sequence[Sample], play_start_s: float) -> dict[str, Any] | None:
    """Per bounded structure: its entries and cap at 5 minutes of traffic and at the last
    sample, and the minute of traffic from which it stayed at least 95% full (None if it
    did not), summed over the models.

    >>> def s(t, n):
    ...     return Sample(t, "play", 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0,
    ...                   state={"a": [n, 100, 0]})
    >>> state_summary([s(0, 10), s(60, 96), s(300, 100), s(360, 100)], 0.0)
    {'a': {'at_5_min': [100, 100], 'last': [100, 100], 'full_from_min': 1.0}}
    """
    known = [s for s in samples if s.state]
    if not known:
        return None
    at_5 = value_at(known, play_start_s + RSS_MARKS_MIN[0] * 60)
    last = known[-1]
    summary: dict[str, Any] = {}
    for structure, (entries, cap, _) in sorted((last.state or {}).items()):
        full_from = None
        for sample in known:
            n, c, _ = (sample.state or {}).get(structure, (0, 0, 0))
            if c and n >= 0.95 * c:
                full_from = full_from if full_from is not None else sample.t_s
            else:
                full_from = None
        mark = (at_5.state or {}).get(structure) if at_5 is not None else None
        summary[structure] = {
            "at_5_min": None if mark is None else mark[:2],
            "last": [entries, cap],
            "full_from_min": None
            if full_from is None
            else round((full_from - play_start_s) / 60, 1),
        }
    return summary


def _pairs(samples: Sequence[Sample]) -> Iterable[tuple[Sample, Sample]]:
    return itertools.pairwise(samples)


# The side effects: reading /proc, the worker's /metrics and the broker's folder.


def _read(path: str) -> str | None:
    try:
        with open(path) as stream:
            return stream.read()
    except OSError:  # the process ended between listing and reading
        return None


def process_tree(root: int) -> tuple[int, float]:
    """RSS bytes and CPU seconds of ``root`` and its descendants now."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            text = _read(f"/proc/{entry}/stat")
            if text is not None:
                parents[int(entry)], cpu[int(entry)] = parent_and_cpu_of_stat(text)
    tree = descendants(parents, root) & cpu.keys()
    rss = sum(rss_of_status(_read(f"/proc/{pid}/status") or "") for pid in tree)
    return rss, sum(cpu[pid] for pid in tree)


def log_entries(folder: Path) -> list[tuple[str, int]]:
    """(path relative to ``folder``, size) of the files in its partition folders."""
    entries = []
    for partition in folder.iterdir():
        if partition.is_dir():
            for file in partition.iterdir():
                try:
                    entries.append((f"{partition.name}/{file.name}", file.stat().st_size))
                except FileNotFoundError:  # a segment deleted by retention meanwhile
                    continue
    return entries


class Sampler:
    def __init__(self, run: DemoRun, simulator: Callable[[], int | None]) -> None:
        settings = run.settings
        self.run = run
        self.simulator = simulator
        self.log_folder = SERVERS["kafka"].data_dir(settings) / "data"
        self.changelog = changelog(settings, STATE_TABLE).name(settings)
        self.internal = writes_by_model(settings).name(settings)
        self.inputs = [spec.name(settings) for spec in (PREDICTIONS, FEATURE_WRITES, GROUND_TRUTH)]
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        # The CPU of the worker processes sampled before the current one (a restart).
        self._worker_pid = run.worker_pid
        self._earlier_cpu_s = 0.0
        self._machine = busy_and_total_of_proc_stat(_read("/proc/stat") or "")
        self._offsets = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                **librdkafka_security(settings),
                # The reader's offsets group, which it never joins; read, never committed.
                "group.id": f"{settings.worker_app_id}-ingest",
                "enable.auto.commit": False,
            }
        )
        self._partitions: dict[str, list[int]] = {}

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def sample(self, phase: str) -> Sample:
        # The time of the CPU reading: /metrics and the broker may take seconds to answer.
        at_s = self.now_s()
        if self.run.worker_pid != self._worker_pid:
            self._worker_pid = self.run.worker_pid
            self._earlier_cpu_s = self.samples[-1].worker_cpu_s if self.samples else 0.0
        rss, cpu = process_tree(self._worker_pid)
        cpu += self._earlier_cpu_s
        # Per worker process (a restart starts them again), as its latency histogram.
        schedstat = _read(f"/proc/{self._worker_pid}/task/{self._worker_pid}/schedstat")
        loop = None if not schedstat else run_and_wait_of_schedstat(schedstat)
        simulator_pid = self.simulator()
        # Cumulative: once the simulator has exited (its tree is empty), its last figure.
        simulator_cpu = max(
            self.samples[-1].simulator_cpu_s if self.samples else 0.0,
            0.0 if simulator_pid is None else process_tree(simulator_pid)[1],
        )
        busy, total = busy_and_total_of_proc_stat(_read("/proc/stat") or "")
        cores = (busy - self._machine[0]) / max(total - self._machine[1], 1) * (os.cpu_count() or 1)
        self._machine = (busy, total)
        metrics = _metrics(self.run)
        lag = None if metrics is None else lag_of(metrics)
        entries = log_entries(self.log_folder)
        try:
            offsets = self._changelog_offsets()
            behind: int | None = self._committed_lag([*self.inputs, self.internal])
        except KafkaException:
            # A slow broker, or topics just created whose leaders it has not elected yet
            # (the first sample): asked again at the next sample.
            offsets = self.samples[-1].changelog_offsets if self.samples else 0
            behind = None
        sample = Sample(
            t_s=round(at_s, 2),
            phase=phase,
            rss_bytes=rss,
            worker_cpu_s=round(cpu, 2),
            simulator_cpu_s=round(simulator_cpu, 2),
            machine_busy_cores=round(cores, 3),
            load1=os.getloadavg()[0],
            lag_records=None if lag is None else lag.records,
            lag_seconds=None if lag is None else lag.seconds,
            committed_lag=behind,
            consumed=None
            if metrics is None
            else metric_sum(metrics, "failsoft_messages_consumed_total"),
            changelog_bytes=topic_bytes(entries, [self.changelog]),
            changelog_offsets=offsets,
            internal_bytes=topic_bytes(entries, [self.internal]),
            input_bytes=topic_bytes(entries, self.inputs),
            gc=None if metrics is None else gc_of_metrics(metrics),
            state=None if metrics is None else state_of_metrics(metrics),
            latency=None if metrics is None else latency_of_metrics(metrics),
            loop_cpu_s=None if loop is None else round(loop[0], 3),
            loop_wait_s=None if loop is None else round(loop[1], 3),
        )
        self.samples.append(sample)
        return sample

    def changelog_now(self) -> tuple[int, int]:
        """The changelog's bytes (its ``.log`` segments) and its records (end offsets)."""
        entries = log_entries(self.log_folder)
        return topic_bytes(entries, [self.changelog]), self._changelog_offsets()

    def _changelog_offsets(self) -> int:
        return sum(high for _, high in self._watermarks(self.changelog).values())

    def _watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        if not self._partitions.get(topic):
            metadata = self._offsets.list_topics(topic, timeout=10).topics[topic]
            self._partitions[topic] = sorted(metadata.partitions)
        return {
            partition: self._offsets.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5
            )
            for partition in self._partitions[topic]
        }

    def _committed_lag(self, topics: Sequence[str]) -> int:
        marks = {(t, p): lh for t in topics for p, lh in self._watermarks(t).items()}
        committed = self._offsets.committed([TopicPartition(t, p) for t, p in marks], timeout=10)
        return committed_lag((*marks[(tp.topic, tp.partition)], tp.offset) for tp in committed)

    def close(self) -> None:
        self._offsets.close()


def _metrics(run: DemoRun) -> str | None:
    url = f"http://127.0.0.1:{run.settings.worker_web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
    except OSError:
        return None
    return text


def plot(samples: Sequence[Sample], play_start_s: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [(s.t_s - play_start_s) / 60 for s in samples]
    fig, (ax_rss, ax_lag, ax_cpu, ax_state) = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    ax_rss.plot(minutes, [s.rss_bytes / MIB for s in samples], color="tab:blue")
    ax_rss.set_ylabel("worker RSS (MiB)")
    ax_rss.set_ylim(bottom=0)
    ax_rss.grid(alpha=0.3)
    lagged = [(m, s) for m, s in zip(minutes, samples, strict=True) if s.lag_records is not None]
    ax_lag.plot(
        [m for m, _ in lagged],
        [s.lag_records for _, s in lagged],
        color="tab:red",
        label="the reader's (/metrics)",
    )
    committed = [
        (m, s) for m, s in zip(minutes, samples, strict=True) if s.committed_lag is not None
    ]
    ax_lag.plot(
        [m for m, _ in committed],
        [s.committed_lag for _, s in committed],
        color="tab:purple",
        lw=0.8,
        label="after the ingest group's commits",
    )
    ax_lag.legend(loc="upper left", fontsize="small")
    ax_lag.set_ylabel("lag (records)", color="tab:red")
    ax_lag.grid(alpha=0.3)
    ax_age = ax_lag.twinx()
    ax_age.plot([m for m, _ in lagged], [s.lag_seconds for _, s in lagged], color="tab:orange")
    ax_age.set_ylabel("lag (seconds)", color="tab:orange")
    times = [s.t_s for s in samples]
    worker_cores = trailing_rate(times, [s.worker_cpu_s for s in samples], CPU_WINDOW_S)
    ax_cpu.plot(minutes, worker_cores, color="tab:green", label="worker (cores, 1-min mean)")
    ax_cpu.plot(
        minutes, [s.machine_busy_cores for s in samples], color="grey", label="machine busy"
    )
    ax_cpu.set_ylabel("cores")
    ax_cpu.set_ylim(0, (os.cpu_count() or 1) + 0.2)
    ax_cpu.legend(loc="center left", fontsize="small")
    ax_load = ax_cpu.twinx()
    ax_load.plot(minutes, [s.load1 for s in samples], color="black", ls=":", lw=0.8)
    ax_load.set_ylabel("load average, 1 min (dotted)")
    ax_load.set_ylim(bottom=0)
    ax_cpu.grid(alpha=0.3)
    filled = [(m, s.state) for m, s in zip(minutes, samples, strict=True) if s.state]
    for structure in sorted(filled[-1][1] if filled else ()):
        ax_state.plot(
            [m for m, _ in filled],
            [
                100 * state.get(structure, [0, 1])[0] / max(state.get(structure, [0, 1])[1], 1)
                for _, state in filled
            ],
            label=structure,
            lw=1,
        )
    ax_state.set_ylabel("entries (% of cap)")
    ax_state.set_ylim(0, 105)
    ax_state.set_xlabel("minutes of traffic")
    ax_state.grid(alpha=0.3)
    if filled:
        ax_state.legend(loc="upper left", fontsize="x-small", ncol=3)
    for axis in (ax_rss, ax_lag, ax_cpu, ax_state):
        axis.axvline(0, color="grey", lw=0.8)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def soak(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    run_id = time.strftime("soak-%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = settings.state_dir / "soak" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    nominal = run_dir / "portfolio.nominal.toml"
    nominal.write_text(portfolio_toml(soak_portfolio(args.models, args.features), 1.0))
    options = DemoOptions(
        scenario=SCENARIO,
        run_id=run_id,
        run_dir=run_dir,
        portfolio=nominal,
        duration=args.duration,
        rate=args.rate,
    )
    run = DemoRun(settings, options)
    simulator: subprocess.Popen[bytes] | None = None
    sampler: Sampler | None = None
    try:
        run.prepare()
        run.start_worker()
        started = time.monotonic()
        sampler = Sampler(run, lambda: None if simulator is None else simulator.pid)

        def sample(phase: str) -> Sample:
            assert sampler is not None
            taken = sampler.sample(phase)
            print(
                f"  {taken.t_s:7.1f} s {phase:6} rss {taken.rss_bytes / MIB:7.1f} MiB  "
                f"lag {taken.lag_records} rec {taken.lag_seconds} s  "
                f"cpu {taken.worker_cpu_s:7.1f} s  changelog {taken.changelog_bytes / MIB:.1f} MiB"
                f"  load {taken.load1:.1f}",
                flush=True,
            )
            return taken

        sample("start")
        run.wait_worker_ready()
        print(f"soak: worker ready in {time.monotonic() - started:.1f} s", flush=True)
        sample("ready")

        def play(duration: str, rate: float, phase: str) -> tuple[float, float]:
            """The simulator's traffic, sampled; its start and end (``now_s``)."""
            nonlocal simulator
            assert sampler is not None
            with (run_dir / "simulate.log").open("ab") as log:
                simulator = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "streams.cli",
                        "simulate",
                        "--scenario",
                        str(SCENARIO),
                        "--portfolio",
                        str(nominal),
                        "--duration",
                        duration,
                        "--rate",
                        str(rate),
                        "--batch-size",
                        str(args.batch_size),
                    ],
                    env=settings_env(run.settings),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            begun = sampler.now_s()
            next_at = time.monotonic()
            while simulator.poll() is None:
                next_at += args.every
                time.sleep(max(0.0, next_at - time.monotonic()))
                sample(phase)
            if simulator.returncode != 0:
                raise RuntimeError(f"the simulator exited with {simulator.returncode}; see its log")
            return begun, sampler.now_s()

        def drain(phase: str) -> None:
            drain_until = time.monotonic() + DRAIN_TIMEOUT_S
            while time.monotonic() < drain_until:
                time.sleep(args.every)
                taken = sample(phase)
                if taken.lag_records is not None and taken.lag_records <= DRAINED_LAG:
                    return

        measured_from = 0
        warm_rate = args.warm_rate or args.rate
        if args.warm is not None:
            # A worker in production restarts onto the state its changelog holds: fill it,
            # then measure a worker restored from it, as a rolling restart leaves one.
            play(args.warm, warm_rate, "warm")
            drain("warm")
            run.stop_worker()
            run.start_worker()
            restarting = time.monotonic()
            run.wait_worker_ready()
            print(f"soak: restarted worker ready in {time.monotonic() - restarting:.1f} s")
            measured_from = len(sampler.samples)
            sample("ready")
        play_start, play_end = play(args.duration, args.rate, "play")
        drain("drain")
        samples = list(sampler.samples[measured_from:])
        warm_samples = list(sampler.samples[:measured_from])
        # A stopping worker checkpoints every monitor it holds: the changelog's other writes.
        before = sampler.changelog_now()
        stopping = time.monotonic()
        run.stop_worker()
        stopped_s = time.monotonic() - stopping
        after = sampler.changelog_now()
        at_stop = {
            "stop_s": round(stopped_s, 1),
            "changelog_bytes": after[0] - before[0],
            "changelog_records": after[1] - before[1],
        }
        print(f"soak: worker stopped: {at_stop}", flush=True)
    finally:
        if simulator is not None and simulator.poll() is None:
            simulator.terminate()
        if sampler is not None:
            sampler.close()
        worker_log = run_dir / "worker.log"
        run.close()
    errors = error_lines(worker_log.read_text(errors="replace")) if worker_log.exists() else []
    print(f"soak: logs in {run_dir}", flush=True)
    summary = summarize(samples, play_start, play_end)
    summary["changelog"]["at_stop"] = at_stop
    summary["worker_log_error_lines"] = len(errors)
    summary["worker_log_first_errors"] = errors[:5]
    simulator_log = run_dir / "simulate.log"
    summary["simulator"] = (
        simulator_done(simulator_log.read_text(errors="replace"))
        if simulator_log.exists()
        else None
    )
    return {
        "settings": {
            "models": args.models,
            "features": args.features,
            "rate_requests_per_s": args.rate,
            "duration": args.duration,
            "batch_size": args.batch_size,
            "every_s": args.every,
            "warm": args.warm,
            "warm_rate_requests_per_s": warm_rate if args.warm else None,
            "store": run.settings.worker_store,
            "cpus": os.cpu_count(),
        },
        "command": shareable_command("tests.benchmarks.bench_soak", sys.argv[1:]),
        "play_start_s": round(play_start, 2),
        "play_end_s": round(play_end, 2),
        "summary": summary,
        "samples": [dataclasses.asdict(s) for s in samples],
        "warm_samples": [dataclasses.asdict(s) for s in warm_samples],
    }


def shareable_command(module: str, argv: Sequence[str]) -> str:
    """The command that ran ``module`` with ``argv``, its output folder as ``<folder>``:
    the JSON goes into the repository, and a folder of the machine that ran it means
    nothing elsewhere.

    >>> shareable_command("m", ["--models", "20", "--out", "/x/y", "--every=5"])
    'python -m m --models 20 --out <folder> --every=5'
    >>> shareable_command("m", ["--out=/x/y"])
    'python -m m --out=<folder>'
    """
    shared = list(argv)
    for n, argument in enumerate(shared):
        if argument.startswith("--out="):
            shared[n] = "--out=<folder>"
        elif argument == "--out" and n + 1 < len(shared):
            shared[n + 1] = "<folder>"
    return " ".join(["python -m", module, *shared])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--features", type=int, default=20, help="numeric features per model")
    parser.add_argument(
        "--rate", type=float, default=40.0, help="live requests per second, whole portfolio"
    )
    parser.add_argument("--duration", default="2m", help="traffic's wall-clock length, e.g. 30m")
    parser.add_argument("--batch-size", type=int, default=50, help="records per message, at most")
    parser.add_argument(
        "--warm",
        help="first play this long (e.g. 15m), let the worker catch up, restart it onto its "
        "changelog, then measure the restored worker",
    )
    parser.add_argument(
        "--warm-rate", type=float, help="live requests per second while warming (default --rate)"
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV, JSON, PNG")
    parser.add_argument(
        "--replot", type=Path, help="only draw the PNG again from a soak.json this wrote"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot is not None:
        draw(json.loads(args.replot.read_text()), args.out / "soak.png")
        return 0
    # A SIGTERM stops the run like Ctrl-C: its worker, simulator and topics go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = soak(args, Settings.from_env())
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    with (args.out / "soak.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[f.name for f in dataclasses.fields(Sample)])
        writer.writeheader()
        writer.writerows([*result["warm_samples"], *result["samples"]])
    draw(result, args.out / "soak.png")
    print(json.dumps(result["summary"], indent=1))
    return 0


def draw(result: dict[str, Any], path: Path) -> None:
    settings, summary = result["settings"], result["summary"]
    warmed = (
        f"after {settings['warm']} at {settings['warm_rate_requests_per_s']:g}/s and a restart, "
        if settings.get("warm")
        else ""
    )
    title = (
        f"soak: {settings['models']} models x {settings['features']} features, "
        f"{settings['rate_requests_per_s']:g} requests/s\n{warmed}"
        f"{summary['worker']['records_per_s']} records/s consumed, {settings['duration']}; "
        f"max RSS {summary['rss_mib']['max']} MiB"
    )
    samples = [*result.get("warm_samples", ()), *result["samples"]]
    plot([Sample(**s) for s in samples], result["play_start_s"], title, path)


if __name__ == "__main__":
    raise SystemExit(main())
