"""``run_logged``: what a stack's set-up command prints reaches the log, its secrets masked."""

from __future__ import annotations

import sys
from pathlib import Path

from streams.stack.process import run_logged

# A command that echoes its argument, as ``alertad key`` prints the key it makes.
ECHO = [sys.executable, "-c", "import sys; print('made', sys.argv[1])"]


def test_a_secret_argument_is_masked_in_the_command_line_and_in_the_output(
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "alerta.log"
    secret = "failsoft-local-stack-key-0000000000000000"
    assert run_logged([*ECHO, secret], log, timeout=30, secret_arguments=[secret]) == 0
    text = log.read_text()
    assert secret not in text
    assert text.endswith(" ***\nmade ***\n"), text
    # The unmasked output passed through a file of its own, gone afterwards.
    assert sorted(path.name for path in log.parent.iterdir()) == ["alerta.log"]


def test_a_command_without_secrets_writes_its_output_as_it_is(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    assert run_logged([*ECHO, "users"], log, timeout=30) == 0
    assert log.read_text().endswith("users\nmade users\n")
