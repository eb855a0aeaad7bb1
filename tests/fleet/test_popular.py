"""PopularItems: the top N from a file, re-read when it changes, last good list kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.fleet import PopularItems


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, items: list[str], mtime_ns: int) -> None:
    path.write_text(json.dumps(items))
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_top_n_follows_the_file_and_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "popular.json"
    _write(path, [f"item-{i}" for i in range(20)], 1_000)
    clock = Clock()
    popular = PopularItems(path, n=3, check_every_s=5.0, clock=clock)
    assert popular.top("any", user="args") == ["item-0", "item-1", "item-2"]

    _write(path, ["new-1", "new-2"], 2_000)
    clock.now = 4.9
    assert popular.top() == ["item-0", "item-1", "item-2"]  # not checked yet
    clock.now = 5.0
    assert popular.top() == ["new-1", "new-2"]

    path.write_text("{half a file")
    os.utime(path, ns=(3_000, 3_000))
    clock.now = 10.0
    assert popular.top() == ["new-1", "new-2"]
    assert not popular.refresh()


def test_a_node_does_not_start_without_its_fallback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a readable JSON array"):
        PopularItems(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="n=0"):
        PopularItems(tmp_path / "missing.json", n=0)


def test_a_caller_editing_its_answer_does_not_change_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "popular.json"
    _write(path, ["a", "b", "c"], 1_000)
    popular = PopularItems(path, n=3)
    popular.top().remove("a")
    assert popular.top() == ["a", "b", "c"]
