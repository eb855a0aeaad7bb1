"""``failsoft simulate`` refuses bad input with one line naming what is wrong, before any
message is produced (no broker is needed to see it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from streams.simulate.scenario import SCENARIOS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "missing.toml"], "scenario: key 'missing.toml': cannot be read"),
        (["--duration", "soon"], '"soon" is not a duration; write e.g. "5s"'),
        (["--duration", "1s"], "incident 1, key 'at'"),
        (["--models", "3"], "incident 2, key 'model': 'ltv-003' is not in the portfolio"),
        (["--rate", "0"], "rate: expected a positive number"),
        (["--time-scale", "nan"], "time_scale: expected a positive number, got nan"),
        (["--start", "yesterday"], "--start: expected ISO 8601"),
        (["--models", "20", "--portfolio", "p.toml"], "--models and --portfolio"),
        (["--batch-size", "0"], "--batch-size: expected 1 or more, got 0"),
        (["--linger-ms", "-1"], "--linger-ms: expected 0 or more, got -1"),
    ],
)
def test_bad_arguments_end_with_one_clear_line_and_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    timeline = tmp_path / "timeline.jsonl"
    code = main(
        [
            "simulate",
            "--scenario",
            str(SCENARIOS / "short.toml"),
            *args,
            "--timeline",
            str(timeline),
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("failsoft simulate: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert not timeline.exists()
