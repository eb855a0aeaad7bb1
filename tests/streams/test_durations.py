"""The one duration parser and formatter (streams.durations), and the texts that use it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from streams.durations import format_duration, parse_duration
from streams.monitor.effects import escalation_alert
from streams.settings import Settings


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0 s"),
        (0.5, "0.5 s"),
        (45.0, "45 s"),
        (59.4, "59 s"),
        (60.0, "1 min"),
        (12 * 60.0, "12 min"),
        (99 * 60.0, "99 min"),
        (3 * 3600.0, "3.0 h"),
        (47 * 3600.0, "47.0 h"),
        (2.5 * 86_400, "2.5 d"),
    ],
)
def test_format_duration_picks_the_unit_a_person_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert format_duration(timedelta(seconds=seconds)) == text


def test_an_escalation_after_minutes_says_minutes() -> None:
    # It read "served its fallback for 0.0 h" for a two-minute limit (the trial scale).
    alert = escalation_alert("ranker", "team-search", timedelta(minutes=2))
    assert alert.text == "ranker has served its fallback for 2 min; team-search must look"
    assert alert.value == "2 min"


@pytest.mark.parametrize(
    "value", ["5x", "", "s", "5 parsecs", True, None, [5], float("nan"), -1, 0]
)
def test_parse_duration_refuses_with_an_example(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape('write e.g. "5s" or "15m"')):
        parse_duration(value)


def test_zero_is_a_duration_where_allowed() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta()
    assert parse_duration(0, allow_zero=True) == timedelta()


@pytest.mark.parametrize(
    ("raw", "seconds"), [("300", 300.0), ("5m", 300.0), ("1.5", 1.5), ("0", 0.0)]
)
def test_a_duration_setting_takes_a_string_or_seconds(raw: str, seconds: float) -> None:
    assert Settings.from_env({"FAILSOFT_ALERT_DAMPING": raw}).alert_damping == seconds


def test_a_bad_duration_setting_names_the_variable_the_value_and_an_example() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"FAILSOFT_ALERT_DAMPING": "5x"})
    assert str(caught.value) == (
        'FAILSOFT_ALERT_DAMPING="5x" is not a duration; write e.g. "5s" or "15m"'
    )
