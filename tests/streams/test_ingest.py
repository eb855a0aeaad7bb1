"""Ingest as pure code: validation outcomes, reason labels, the books, and their metrics."""

from __future__ import annotations

import collections
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.contracts import DecodeError, FeatureWrite, GroundTruth, Prediction
from streams.monitor.gauges import StateGauges
from streams.portfolio import load_portfolio
from streams.sinks.alerta import AlertaSink, Heartbeat, detector_alert
from streams.sinks.influx import InfluxSink, point
from streams.worker.ingest import INPUTS, PipelineCounters, admit, reason_label
from streams.worker.metrics import Histogram, WorkerCollector, render
from streams.worker.readers import BATCH_SIZE_BUCKETS, EFFECT_LATENCY_BUCKETS, TopicLag

ROOT = Path(__file__).resolve().parents[2]
PORTFOLIO = load_portfolio(ROOT / "deploy" / "portfolio.example.toml")


def example(name: str, **changes: Any) -> bytes:
    document = json.loads((ROOT / "schemas" / f"{name}.example.json").read_text())
    return json.dumps(document | changes).encode()


@pytest.mark.parametrize(
    ("suffix", "raw", "expected"),
    [
        ("predictions", example("prediction", model_id="card-fraud"), Prediction),
        ("ground-truth", example("ground_truth", model_id="card-fraud"), GroundTruth),
        # Feature writes name no model; one that no model monitors is still processed.
        ("feature-writes", example("feature_write", feature="unmonitored"), FeatureWrite),
    ],
)
def test_valid_records_pass(suffix: str, raw: bytes, expected: type) -> None:
    (record,), errors = admit(INPUTS[suffix], raw, PORTFOLIO)
    assert isinstance(record, expected) and errors == []


@pytest.mark.parametrize(
    ("suffix", "raw", "field", "label"),
    [
        ("predictions", example("prediction"), "model_id", "unknown model"),
        ("ground-truth", example("ground_truth"), "model_id", "unknown model"),
        ("predictions", b"{", "$", "malformed"),
        ("predictions", None, "$", "malformed"),
        ("feature-writes", example("feature_write", written_at=-1), "written_at", None),
        ("ground-truth", example("ground_truth", model_id="card-fraud", label_at="x"), None, None),
    ],
)
def test_invalid_records_become_errors_with_bounded_labels(
    suffix: str, raw: bytes | None, field: str | None, label: str | None
) -> None:
    records, (outcome,) = admit(INPUTS[suffix], raw, PORTFOLIO)
    assert records == [] and isinstance(outcome, DecodeError)
    if field is not None:
        assert outcome.field == field
    assert reason_label(outcome) == (label or f"invalid {outcome.field}")


def test_books_count_each_record_once_by_outcome() -> None:
    counters = PipelineCounters()
    counters.count("p", 1)
    counters.count("p", 1, [DecodeError("$", "bad"), DecodeError("model_id", "unknown model")])
    counters.count("g", 0, [DecodeError("$", "bad")])
    assert counters.consumed == {"p": 4, "g": 1}
    assert counters.processed == {"p": 2}
    assert counters.dead_lettered == {
        ("p", "malformed"): 1,
        ("p", "unknown model"): 1,
        ("g", "malformed"): 1,
    }
    assert counters.dead_lettered_total("p") == 2
    assert counters.dead_lettered_total("absent") == 0


def test_metrics_render_books_and_sink_state() -> None:
    counters = PipelineCounters()
    counters.count("t", 0, [DecodeError("$", "bad")])
    sink = AlertaSink("http://127.0.0.1:9", "key", "Development", capacity=1)
    sink.enqueue(object())  # type: ignore[arg-type]
    sink.enqueue(object())  # type: ignore[arg-type]
    text = render(WorkerCollector(counters, [sink], Ingest(), NoMonitors())).decode()
    assert 'failsoft_messages_consumed_total{topic="t"} 1.0' in text
    assert 'failsoft_messages_processed_total{topic="t"} 0.0' in text
    assert 'failsoft_messages_dead_lettered_total{reason="malformed",topic="t"} 1.0' in text
    assert 'failsoft_messages_received_total{topic="t"} 1.0' in text
    assert 'failsoft_lag_records{topic="t"} 40.0' in text
    assert 'failsoft_lag_messages{topic="t"} 20.0' in text
    assert "failsoft_partitions_assigned 2.0" in text
    assert 'failsoft_lag_seconds{topic="t"} 2.5' in text
    # Micro-batches of 3, 3 and 700 records: two of at most 4, none above 1,024.
    assert 'failsoft_micro_batch_records_bucket{le="1"} 0.0' in text
    assert 'failsoft_micro_batch_records_bucket{le="4"} 2.0' in text
    assert 'failsoft_micro_batch_records_bucket{le="+Inf"} 3.0' in text
    assert "failsoft_micro_batch_records_sum 706.0" in text
    # 505 records: 500 within 10 ms, 3 within 150 ms, 2 above it.
    assert 'failsoft_effect_latency_seconds_bucket{le="0.01"} 500.0' in text
    assert 'failsoft_effect_latency_seconds_bucket{le="0.15"} 503.0' in text
    assert 'failsoft_effect_latency_seconds_bucket{le="0.25"} 505.0' in text
    assert "failsoft_effect_latency_seconds_count 505.0" in text
    assert 'failsoft_sink_buffered{sink="alerta"} 1.0' in text
    assert 'failsoft_sink_dropped_total{sink="alerta"} 1.0' in text
    assert 'failsoft_sink_spooling{sink="alerta"} 0.0' in text


def test_metrics_render_what_a_sink_holds_that_its_spool_would_not_keep() -> None:
    alerta = AlertaSink("http://127.0.0.1:9", "key", "Development")
    for severity in ("minor", "major", "normal"):
        alerta.enqueue(detector_alert("ranker", "team-search", "drift", severity, "psi"))
    for _ in range(2):
        alerta.enqueue(Heartbeat(origin="w/a:1", timeout=timedelta(seconds=90)))
    influx = InfluxSink("http://127.0.0.1:9", "token", "org", "bucket")
    for time_ms in range(4):
        influx.enqueue(point("pipeline", {"sink": "alerta"}, {"buffered": 5}, time_ms))
    collector = WorkerCollector(PipelineCounters(), [alerta, influx], Ingest(), NoMonitors())
    text = render(collector).decode()
    # The heartbeats: a spool keeps alerts only, and every point.
    assert 'failsoft_sink_buffered{sink="alerta"} 5.0' in text
    assert 'failsoft_sink_buffered_not_spooled{sink="alerta"} 2.0' in text
    assert 'failsoft_sink_buffered{sink="influxdb"} 4.0' in text
    assert 'failsoft_sink_buffered_not_spooled{sink="influxdb"} 0.0' in text


async def test_metrics_render_what_a_sink_restored_from_the_spool_it_was_left(
    tmp_path: Path,
) -> None:
    left = tmp_path / "alerta.gone-worker.jsonl"
    sink = AlertaSink("http://127.0.0.1:9", "key", "Development", spool=tmp_path)
    alert = detector_alert("ranker", "team-search", "drift", "minor", "psi 0.4 on age")
    left.write_text(json.dumps(sink.encode_item(alert)) + "\n", encoding="utf-8")
    sink.start()
    try:
        text = render(WorkerCollector(PipelineCounters(), [sink], Ingest(), NoMonitors())).decode()
        # Queued first, and spooled still: nothing of it was delivered yet.
        assert 'failsoft_sink_restored_total{sink="alerta"} 1.0' in text
        assert 'failsoft_sink_spooling{sink="alerta"} 1.0' in text
        assert 'failsoft_sink_buffered{sink="alerta"} 1.0' in text
    finally:
        await sink.stop(timeout=0.05)
    # Adopted: in the sink's own spool, which its stop left for the next adopter.
    [spool] = tmp_path.glob("alerta.*jsonl")
    assert spool != left
    lines = spool.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(json.dumps(sink.encode_item(alert)))]


class NoMonitors:
    def gauges(self) -> list[StateGauges]:
        return []


class Ingest:
    """What the collector reads of an ingest reader."""

    def __init__(self) -> None:
        self.messages = collections.Counter({"t": 1})
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        for size in (3, 3, 700):
            self.batch_sizes.observe(size)
        self.effect_latency = Histogram(EFFECT_LATENCY_BUCKETS)
        self.effect_latency.observe(0.004, count=500)
        self.effect_latency.observe(0.12, count=3)
        self.effect_latency.observe(0.2, count=2)
        self.partitions = frozenset({0, 3})

    def lag(self) -> dict[str, TopicLag]:
        return {"t": TopicLag(20, 40, 2.5)}
