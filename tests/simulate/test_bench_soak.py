"""The soak benchmark's pure parts (tests/benchmarks/bench_soak.py): its portfolio and
scenario, and how it reads /proc, /metrics and the broker's folder and sums up."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from streams.simulate.run import SimulationRun
from streams.simulate.scenario import load_scenario
from tests.benchmarks.bench_soak import (
    MIB,
    SCENARIO,
    Sample,
    committed_lag,
    descendants,
    error_lines,
    metric_sum,
    parent_and_cpu_of_stat,
    soak_portfolio,
    summarize,
    topic_bytes,
    trailing_rate,
)


def test_soak_traffic_is_steady_and_carries_every_feature() -> None:
    portfolio = soak_portfolio(6, 20)
    run = SimulationRun.prepare(
        load_scenario(SCENARIO),
        start_ms=0,
        portfolio=portfolio,
        duration=timedelta(seconds=20),
        rate=30.0,
    )
    assert run.timeline() == []
    events = list(run.events())
    predictions = [e.record for e in events if e.topic == "predictions"]
    writes = [e for e in events if e.topic == "feature-writes"]
    assert predictions
    assert all(len(p.features) == 20 for p in predictions)
    assert all(name.startswith(p.model_id + ".f") for p in predictions for name in p.features)
    # A request writes each of its model's features at least once.
    assert len(writes) >= 20 * sum(1 for p in predictions if p.role == "live")


def test_soak_portfolio_refuses_no_features() -> None:
    with pytest.raises(ValueError, match="features"):
        soak_portfolio(3, 0)


def test_stat_fields_count_after_the_last_parenthesis() -> None:
    # A command name may hold ") S 1 ", which a plain split would take for fields.
    text = "77 (a) S 1 (b) R 5 77 77 0 -1 0 9 9 9 9 400 100 0 0 20 0"
    assert parent_and_cpu_of_stat(text, ticks=100) == (5, 5.0)


def test_descendants_follow_grandchildren_only_below_the_root() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 1, 14: 12}
    assert descendants(parents, 11) == {11, 12, 14}
    assert descendants(parents, 99) == {99}


def test_topic_bytes_counts_log_segments_of_named_topics_only() -> None:
    entries = [
        ("app-model-monitor-changelog-0/0.log", 100),
        ("app-model-monitor-changelog-0/0.index", 10_485_760),
        ("app-model-monitor-changelog-5/9.log", 40),
        ("app-model-monitor-changelog-x/0.log", 1),
        ("app-model-monitor-changelog2-0/0.log", 7),
    ]
    assert topic_bytes(entries, ["app-model-monitor-changelog"]) == 140


def test_metric_sum_adds_labels_of_one_name() -> None:
    text = (
        "# HELP failsoft_messages_consumed_total Records.\n"
        'failsoft_messages_consumed_total{topic="p"} 10.0\n'
        'failsoft_messages_consumed_total{topic="g"} 5.0\n'
        'failsoft_messages_consumed_created{topic="p"} 1.7e9\n'
    )
    assert metric_sum(text, "failsoft_messages_consumed_total") == 15


def test_committed_lag_counts_uncommitted_partitions_from_their_low_mark() -> None:
    # A partition whose old records were deleted lags from its low mark, not from 0.
    assert committed_lag([(40, 100, -1001), (0, 10, 10), (0, 10, 12)]) == 60


def test_trailing_rate_spans_the_window_not_the_last_gap() -> None:
    # Uneven samples: over the minute, not between two samples; across a gap longer than
    # the minute (65 to 130 s), over the gap rather than nothing.
    times = [0.0, 5.0, 12.0, 60.0, 65.0, 130.0]
    cpu = [0.0, 1.0, 3.0, 15.0, 16.0, 30.0]
    assert trailing_rate(times, cpu, 60.0) == [0.0, 0.2, 0.25, 0.25, 0.25, 14.0 / 65.0]


def test_error_lines() -> None:
    log = "[warning] slow\n[ERROR] sink down\nall good\nTraceback (most recent call last):\n"
    assert error_lines(log) == ["[ERROR] sink down", "Traceback (most recent call last):"]


def _sample(t_s: float, rss_mib: float, **changes: object) -> Sample:
    sample = Sample(t_s, "play", int(rss_mib * MIB), 0.0, 0.0, 1.0, 3.0, 0, 0.0, 0, 0, 0, 0, 0, 0)
    return dataclasses.replace(sample, **changes)


def test_summary_takes_rss_marks_from_the_start_of_traffic() -> None:
    # Traffic starts at 100 s; samples every 60 s to 35 minutes of traffic.
    samples = [_sample(0.0, 50.0, phase="start")]
    samples += [_sample(100.0 + 60 * k, 100.0 + k) for k in range(36)]
    summary = summarize(samples, 100.0, 100.0 + 30 * 60)
    assert summary["rss_mib"] == {
        "max": 135.0,
        "at_5_min": 105.0,
        "at_10_min": 110.0,
        "at_20_min": 120.0,
        "at_30_min": 130.0,
    }
    assert summary["rss_growth_after_5_min"] == round(135 / 105 - 1, 4)


def test_summary_changelog_rate_is_over_the_traffic_and_notes_compaction() -> None:
    samples = [
        _sample(0.0, 1.0, changelog_bytes=0, changelog_offsets=0),
        _sample(10.0, 1.0, changelog_bytes=1_000, changelog_offsets=2, consumed=100),
        _sample(110.0, 1.0, changelog_bytes=6_000, changelog_offsets=12, consumed=1_100),
        _sample(120.0, 1.0, changelog_bytes=5_000, changelog_offsets=13, consumed=1_200),
    ]
    changelog = summarize(samples, 10.0, 110.0)["changelog"]
    assert changelog["bytes_per_s"] == 50.0
    assert changelog["records_per_s"] == 0.1
    assert changelog["bytes_per_record"] == round(4_000 / 1_100, 2)
    assert changelog["shrank"] is True
