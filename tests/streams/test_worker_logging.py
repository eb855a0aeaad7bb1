"""The worker logs at the level it is given: Faust's spinner must not lower the root's."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.cli import faust_worker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.parametrize(
    ("loglevel", "level"), [("warning", logging.WARNING), ("info", logging.INFO)]
)
def test_the_root_logger_keeps_the_level_asked_for(
    root_logger: logging.Logger, tmp_path: Path, loglevel: str, level: int
) -> None:
    settings = dataclasses.replace(
        Settings.from_env({}),
        portfolio_path=REPO / "deploy" / "portfolio.example.toml",
        worker_data_dir=tmp_path,
    )
    worker = faust_worker(create_app(settings), loglevel)
    # What the worker does once mode has configured logging at the level asked for (the
    # whole set-up would also redirect this process's stdout and stderr).
    root_logger.handlers[:] = [logging.NullHandler(level)]
    root_logger.setLevel(level)
    worker.on_setup_root_logger(root_logger, level)
    assert root_logger.level == level
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
