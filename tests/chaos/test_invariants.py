"""The chaos run's checks, on hand-made observations: each can fail."""

from __future__ import annotations

from streams.demo.report import InjectedIncident
from tests.chaos.invariants import (
    ControlRecord,
    Window,
    books_balance,
    commands_once,
    extended_bounds_s,
    overlap_ms,
    serving_p99,
)


def test_overlap_counts_the_union_of_windows_once() -> None:
    windows = [Window("a", 0, 10_000), Window("b", 2_000, 4_000), Window("c", 8_000, 12_000)]
    assert overlap_ms(windows, 0, 20_000) == 12_000
    assert overlap_ms(windows, 11_000, 20_000) == 1_000
    assert overlap_ms(windows, 12_000, 20_000) == 0


def test_a_bound_grows_by_downtime_that_the_grown_bound_reaches() -> None:
    incidents = [InjectedIncident("broken_model", "m", None, 0, None)]
    # 30 s bound; the first window (20-40 s) lengthens it to 50 s, which reaches the
    # second (45-60 s): 30 + 20 + 15.
    windows = [Window("a", 20_000, 40_000), Window("b", 45_000, 60_000)]
    assert extended_bounds_s(incidents, {"broken_model": 30.0}, windows) == {"broken_model": 65.0}
    assert extended_bounds_s(incidents, {"broken_model": 30.0}, []) == {"broken_model": 30.0}


def test_a_repeated_command_or_a_seq_going_back_fails() -> None:
    fine = [
        ControlRecord("m", "fallback", 3, 10),
        ControlRecord("n", "fallback", 1, 11),
        ControlRecord("m", "restore", 4, 12),
    ]
    assert commands_once(fine).passed
    replayed = [*fine, ControlRecord("m", "restore", 4, 13)]
    verdict = commands_once(replayed)
    assert not verdict.passed
    assert verdict.numbers["seq_not_increasing"] == [
        {"model": "m", "seq": 4, "after_seq": 4, "offset": 13}
    ]
    assert verdict.numbers["repeated_actions"] == [
        {"model": "m", "action": "restore", "offset": 13}
    ]


def test_books_fail_on_the_scrape_that_does_not_balance() -> None:
    good = {"p": {"consumed": 10.0, "processed": 7.0, "dead_lettered": 3.0}}
    bad = {"p": {"consumed": 11.0, "processed": 7.0, "dead_lettered": 3.0}}
    assert books_balance([good, good]) == (2, [])
    assert books_balance([good, bad]) == (2, [{"topic": "p", **bad["p"]}])


def test_serving_fails_on_a_slow_window_and_on_a_window_without_calls() -> None:
    calls = {100: [1.0] * 1000, 101: [1.0] * 190 + [30.0] * 10, 102: [1.0] * 1000}
    quick = serving_p99(calls, [Window("a", 100_000, 100_999)], goal_us=20.0)
    assert quick.passed
    slow = serving_p99(calls, [Window("b", 101_000, 101_500)], goal_us=20.0)
    assert not slow.passed and slow.numbers["windows"][0]["p99_us"] == 30.0
    silent = serving_p99(calls, [Window("c", 200_000, 201_000)], goal_us=20.0)
    assert not silent.passed and silent.numbers["windows"][0]["calls"] == 0
