"""A monitor's dropped inputs and bounded structures, and how /metrics sums them."""

from __future__ import annotations

import math

import msgspec

from schemas.contracts import GroundTruth, Score
from streams.monitor import Batch, Monitor
from streams.monitor.gauges import StateGauges, state_gauges
from streams.worker.ingest import PipelineCounters
from streams.worker.metrics import WorkerCollector, render
from tests.streams.test_ingest import Ingest
from tests.streams.test_watch import prediction, small_model

HELD = "\n[models.ranker.detectors.performance]\nmax_held = 100\n"


def fed_monitor() -> Monitor:
    """1,500 predictions of as many entities (ages missing at every 100th from the second, NaN
    at every 10th from 1,100, after the reference of 1,000; scores NaN at every 25th) held
    100 at most, then a label no prediction of which is held."""
    records = []
    for n in range(1500):
        age = math.nan if n >= 1100 and n % 10 == 0 else 40.0 + n % 7
        record = prediction(n, age, "de")
        if n % 100 == 1:
            record = msgspec.structs.replace(
                record, features={"country": record.features["country"]}
            )
        if n % 25 == 0:
            record = msgspec.structs.replace(record, output=Score(score=math.nan))
        records.append(record)
    label = GroundTruth(
        schema_version=1, model_id="ranker", label=1, label_at=2_000_000, request_id="nowhere"
    )
    monitor = Monitor(small_model(HELD))
    monitor.observe(Batch.from_records("ranker", records))
    monitor.observe(Batch.from_records("ranker", [label]))
    return monitor


def test_every_dropped_input_is_counted_by_part_and_reason() -> None:
    gauges = state_gauges(fed_monitor())
    # 15 ages missing, 10 of them while the reference filled, and 40 NaN.
    assert gauges.unused["feature_drift", "invalid"] == 55
    assert gauges.unused["score", "invalid"] == 60
    # Four halvings of the sample let 1,403 predictions go (a sixteenth of the entities
    # is held), none evicted; the label, naming only a request, cannot tell unmatched from
    # left out while the sample is partial.
    assert gauges.unused["label_join", "unsampled"] == 1403
    assert gauges.unused["label_join", "evicted"] == 0
    assert gauges.unused["label_join", "unsampled_labels"] == 1
    assert gauges.unused["label_join", "unmatched"] == 0
    assert gauges.filled["label_join.held"] == (97, 100)
    assert gauges.filled["label_wait.labels"] == (0, 10_000)
    shown = gauges.as_json()
    assert shown["unused"]["label_join"]["unsampled"] == 1403
    assert shown["filled"]["label_join.held"] == {"entries": 97, "cap": 100}
    # label_leak's table is not full: it keeps every entity. A new entity per prediction
    # would need more pairs than the gap's cap: it reads a sixty-fourth of them. The join
    # holds a sixteenth.
    assert shown["sampled"] == {
        "label_join.held": 0.0625,
        "leak_watch.entities": 1.0,
        "leak_watch.keys": 0.015625,
    }


def test_gauges_survive_a_checkpoint() -> None:
    monitor = fed_monitor()
    restored = Monitor.restore(monitor.model, monitor.dumps())
    assert state_gauges(restored) == state_gauges(monitor)


class Monitors:
    def __init__(self, *gauges: StateGauges) -> None:
        self._gauges = list(gauges)

    def gauges(self) -> list[StateGauges]:
        return self._gauges


def test_metrics_sum_the_models_and_count_those_at_a_cap() -> None:
    full = StateGauges(
        unused={("label_join", "evicted"): 7, ("score", "invalid"): 2},
        filled={"label_join.held": (100, 100), "leak_watch.keys": (3, 10)},
        sampled={"leak_watch.entities": 0.25},
    )
    filling = StateGauges(
        unused={("label_join", "evicted"): 0, ("score", "invalid"): 1},
        filled={"label_join.held": (40, 100), "leak_watch.keys": (10, 10)},
        sampled={"leak_watch.entities": 1.0},
    )
    collector = WorkerCollector(PipelineCounters(), [], Ingest(), Monitors(full, filling))
    text = render(collector).decode()
    assert 'failsoft_monitor_inputs_unused{part="label_join",reason="evicted"} 7.0' in text
    assert 'failsoft_monitor_inputs_unused{part="score",reason="invalid"} 3.0' in text
    assert 'failsoft_monitor_state_entries{structure="label_join.held"} 140.0' in text
    assert 'failsoft_monitor_state_cap{structure="label_join.held"} 200.0' in text
    assert 'failsoft_monitor_models_at_cap{structure="label_join.held"} 1.0' in text
    assert 'failsoft_monitor_models_at_cap{structure="leak_watch.keys"} 1.0' in text
    assert 'failsoft_monitor_sample_fraction_min{structure="leak_watch.entities"} 0.25' in text
    assert 'failsoft_monitor_models_sampled{structure="leak_watch.entities"} 1.0' in text
