"""Durations as people write and read them: ``"500ms"``, ``"5s"``, ``"15m"``, ``"3d"``.

One parser for the portfolio file and the settings, and one formatter for every message
that shows a duration to a person (alert texts, shadow verdicts, logs). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

__all__ = ["DURATION_EXAMPLE", "format_duration", "parse_duration", "shown"]

# Quoted in errors, so that the fix is one copy away.
DURATION_EXAMPLE = 'write e.g. "5s" or "15m"'

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def parse_duration(
    value: object, number_unit: timedelta = timedelta(seconds=1), *, allow_zero: bool = False
) -> timedelta:
    """A duration from a string such as ``"1h30m"`` or a plain number of ``number_unit``.

    Units: ms, s, m, h, d, w. A number means ``number_unit`` (seconds unless the key says
    otherwise); a duration must be positive unless ``allow_zero``.

    Raises
    ------
    ValueError
        Saying what the value is and how to write a valid one.

    Examples
    --------
    >>> parse_duration("1h30m"), parse_duration(90)
    (datetime.timedelta(seconds=5400), datetime.timedelta(seconds=90))
    >>> parse_duration(500, timedelta(milliseconds=1)).total_seconds()
    0.5
    >>> parse_duration("5x")
    Traceback (most recent call last):
    ...
    ValueError: "5x" is not a duration; write e.g. "5s" or "15m"
    """
    not_one = ValueError(f"{shown(value)} is not a duration; {DURATION_EXAMPLE}")
    if isinstance(value, bool):
        raise not_one
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise not_one
        duration = value * number_unit
    elif isinstance(value, str):
        text = value.replace(" ", "")
        parts = _PART.findall(text)
        if not parts or _PART.sub("", text):
            raise not_one
        duration = sum((float(number) * _UNITS[unit] for number, unit in parts), timedelta())
    else:
        raise not_one
    if duration < timedelta() or (duration == timedelta() and not allow_zero):
        bound = "0 or more" if allow_zero else "positive"
        raise ValueError(f"{shown(value)}: the duration must be {bound}; {DURATION_EXAMPLE}")
    return duration


def shown(value: object) -> str:
    """A value as it is written in a TOML file or an environment variable: strings in
    double quotes.

    >>> shown("5x"), shown(5), shown(True)
    ('"5x"', '5', 'true')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def format_duration(duration: timedelta | float) -> str:
    """A duration (or a number of seconds) in the unit a person reads it in.

    Under a minute in seconds, under 100 minutes in minutes, under two days in hours, then
    in days: never "0.0 h" for a few minutes.

    >>> [format_duration(s) for s in (0.25, 45, 720, 10_800, 216_000)]
    ['0.25 s', '45 s', '12 min', '3.0 h', '2.5 d']
    >>> format_duration(timedelta(minutes=90))
    '90 min'
    """
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 100 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
