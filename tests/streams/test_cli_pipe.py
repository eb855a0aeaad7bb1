"""``failsoft topics list | head`` ends quietly when the reader goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_a_closed_pipe_ends_the_listing_without_a_traceback() -> None:
    read, write = os.pipe()
    # The reader is gone before the first line, as ``head -1`` is after its line.
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "topics", "list"],
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 0
