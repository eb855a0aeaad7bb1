"""streams.analysis without a server: the Flux it writes, the time range, the health shapes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streams.analysis import (
    ANALYST_USER,
    Window,
    analyst_settings,
    flux_select,
    format_table,
    latest,
    state_intervals,
    time_in_state,
)
from streams.settings import Settings
from streams.stack.influxdb import user_token_file

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_window_takes_durations_now_and_iso_times_in_any_zone() -> None:
    assert Window.of("-90m", "-1h30m") == Window("-90m", "-1h30m")
    plus_two = datetime(2026, 11, 28, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert Window.of(plus_two).start == "2026-11-28T12:00:00.000Z"
    assert Window.of("2026-11-28T12:00:00").start == "2026-11-28T12:00:00.000Z"
    assert Window.of("-1d", "now()").stop_time(T0) == T0
    assert Window.of("-1d", "-30m").stop_time(T0) == at(-1800)
    assert Window.of("-1d", "2026-11-28T13:00:00Z").stop_time(T0) == at(3600)


@pytest.mark.parametrize("bad", ["yesterday", "1 hour", "now", "-6 h", ""])
def test_window_refuses_what_flux_would_not_read_and_names_the_parameter(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^stop="):
        Window.of("-1h", bad)


def test_flux_select_filters_tags_and_fields_and_escapes_values() -> None:
    flux = flux_select(
        "db/rp", "performance", Window("-1h"), {"role": "fallback"}, ["value", "labels"]
    )
    assert '|> filter(fn: (r) => r["role"] == "fallback")' in flux
    assert '|> filter(fn: (r) => r._field == "value" or r._field == "labels")' in flux
    hostile = flux_select("db", "health", Window("-1h"), {"model": 'x") or true or ("'})
    assert 'r["model"] == "x\\") or true or (\\""' in hostile


def test_flux_select_refuses_names_outside_the_schema() -> None:
    with pytest.raises(ValueError, match="measurement 'healht'"):
        flux_select("db", "healht", Window("-1h"))
    with pytest.raises(ValueError, match="tag 'agent' is not one of"):
        flux_select("db", "health", Window("-1h"), {"agent": "ingest"})


def test_state_intervals_per_model_in_time_order_until_stop() -> None:
    rows = [
        {"model": "b", "state": "degraded", "time": at(5)},
        {"model": "a", "state": "fallback", "time": at(10)},
        {"model": "a", "state": "degraded", "time": at(0)},
        {"model": "a", "state": "probing", "time": at(40)},
    ]
    intervals = state_intervals(rows, stop=at(100))
    assert [(i.model, i.state, i.seconds) for i in intervals] == [
        ("a", "degraded", 10.0),
        ("a", "fallback", 30.0),
        ("a", "probing", 60.0),
        ("b", "degraded", 95.0),
    ]
    assert time_in_state(intervals) == {
        "a": {"degraded": 10.0, "fallback": 30.0, "probing": 60.0},
        "b": {"degraded": 95.0},
    }


def test_a_transition_after_stop_lasts_no_negative_time() -> None:
    [interval] = state_intervals([{"model": "a", "state": "fallback", "time": at(50)}], at(10))
    assert interval.seconds == 0.0


def test_latest_keeps_the_last_row_per_key_and_table_shows_missing_values() -> None:
    rows = [
        {"feature": "f", "detector": "d", "score": 0.9, "time": at(2)},
        {"feature": "f", "detector": "d", "score": 0.1, "time": at(1)},
        {"feature": "g", "detector": "d", "time": at(1)},
    ]
    last = latest(rows, ["feature", "detector"])
    assert [row.get("score") for row in last] == [0.9, None]
    assert format_table(last, ["feature", "score", "time"]).splitlines() == [
        "feature  score  time",
        "f        0.9    2026-11-28T12:00:02.000Z",
        "g        -      2026-11-28T12:00:01.000Z",
    ]


def test_a_watched_model_is_healthy_from_first_seen_until_its_first_transition() -> None:
    rows = [{"model": "a", "state": "fallback", "time": at(10)}]
    first_seen = {"a": at(4), "b": at(0), "c": at(30)}
    intervals = state_intervals(rows, stop=at(20), first_seen=first_seen)
    assert [(i.model, i.state, i.start, i.seconds) for i in intervals] == [
        ("a", "healthy", at(4), 6.0),
        ("a", "fallback", at(10), 10.0),
        ("b", "healthy", at(0), 20.0),
        ("c", "healthy", at(30), 0.0),
    ]
    # Seen only after its first transition: nothing is assumed before that transition.
    late = state_intervals(rows, stop=at(20), first_seen={"a": at(15)})
    assert [(i.state, i.seconds) for i in late] == [("fallback", 10.0)]


def test_analysts_read_as_the_stacks_reader_unless_given_a_token(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    # No reader made (no local stack): the settings as they are.
    assert analyst_settings(settings) == settings
    reader = user_token_file(settings, ANALYST_USER)
    reader.parent.mkdir(parents=True)
    reader.write_text(f"{ANALYST_USER}:its-password\n")
    assert analyst_settings(settings).secret("influxdb_token") == f"{ANALYST_USER}:its-password"
    given = dataclasses.replace(settings, influxdb_token="analyst:given")
    assert analyst_settings(given) == given
    (tmp_path / "token").write_text("analyst:from-file\n")
    from_file = dataclasses.replace(settings, influxdb_token_file=str(tmp_path / "token"))
    assert analyst_settings(from_file) == from_file
