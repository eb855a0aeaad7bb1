"""The analysts' notebooks, executed against the real stack after a short simulated run.

One module-wide run: ``failsoft simulate`` plays the short scenario (every incident kind)
onto topics of this run's own, and a ``failsoft worker`` process of its own reads them and
writes its series into an InfluxDB database of this run's own, dropped afterwards. Each
notebook then runs in a fresh kernel of this virtualenv with its parameters set to the
run's time range, and must run clean.

The synthetic portfolio's default detectors need more predictions than a six-second run
has, so the fixture gives it short drift windows and health dwell times (see
``TUNING``); the scenario runs at a higher rate than its own for the same reason.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pytest

from streams.analysis import ANALYST_USER, SeriesReader, Window
from streams.demo.run import settings_env
from streams.settings import Settings
from streams.simulate.scenario import SCENARIOS
from tests.conftest import StackGuard
from tests.streams.proxy import free_port
from tests.streams.test_worker_restart import WorkerProcess

pytestmark = pytest.mark.integration

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KEYS = "k1=" + "0b" * 32  # the worker's Ed25519 private key
RATE = 2000  # live requests per second: about 1,500 predictions per model in 6 s
TUNING = """
[defaults.detectors.drift]
window_size = 100

[defaults.detectors.health]
confirm = 2
min_dwell = 0.1
clear_after = 1.0
"""
# An upper bound, for a loaded machine: the worker usually reads the run well within it.
CONSUME_TIMEOUT_S = 240.0
KERNEL_NAME = "failsoft-notebooks"
CELL_TIMEOUT_S = 120
PRODUCED = re.compile(r"^\s+(\S+): produced (\d+), delivered (\d+), failed 0$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class SimulatedRun:
    settings: Settings
    start: datetime
    stop: datetime
    timeline: Path
    models: frozenset[str]


def influxql(settings: Settings, statement: str) -> None:
    data = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{settings.influxdb_url}/query", data=data, method="POST")
    # InfluxDB 1.8 takes the token's user and password this way too.
    request.add_header("Authorization", f"Token {settings.secret('influxdb_token')}")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert "error" not in answer["results"][0], answer


def consumed_per_topic(settings: Settings) -> dict[str, int]:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = re.findall(r'failsoft_messages_consumed_total\{topic="([^"]+)"\} (\S+)', text)
    return {topic: int(float(count)) for topic, count in found}


@pytest.fixture(scope="module")
def simulated_run(
    stack: StackGuard, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatedRun]:
    from confluent_kafka.admin import AdminClient

    stack.ensure("influxdb")
    name = f"failsoft-test-notebooks-{uuid.uuid4().hex[:8]}"
    database = name.replace("-", "_")
    folder = tmp_path_factory.mktemp("notebook-run")
    settings = dataclasses.replace(
        stack.settings,
        topic_prefix=f"{name}.",
        worker_app_id=name,
        worker_store="memory://",
        worker_data_dir=folder / "worker",
        worker_web_port=free_port(),
        portfolio_path=folder / "portfolio.toml",
        control_private_key=KEYS,
        influxdb_bucket=f"{database}/autogen",
    )
    influxql(settings, f'CREATE DATABASE "{database}"')
    # The notebooks read as the stack's analysts do; dropping the database drops the grant.
    influxql(settings, f'GRANT READ ON "{database}" TO "{ANALYST_USER}"')
    try:
        yield play(settings, folder)
    finally:
        influxql(settings, f'DROP DATABASE "{database}"')
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        ours = [topic for topic in admin.list_topics(timeout=30).topics if name in topic]
        for future in admin.delete_topics(ours).values():
            future.result(timeout=30)


def play(settings: Settings, folder: Path) -> SimulatedRun:
    """The short scenario through ``failsoft simulate`` and a ``failsoft worker`` that
    reads all of it; the worker is stopped (its points flushed) when this returns."""
    start = datetime.now(UTC).replace(microsecond=0)
    timeline = folder / "timeline.jsonl"
    simulate = subprocess.run(
        [
            *(sys.executable, "-m", "streams.cli", "simulate", "--fast"),
            *("--scenario", str(SCENARIOS / "short.toml"), "--rate", str(RATE)),
            *("--start", start.isoformat(), "--timeline", str(timeline)),
            *("--write-portfolio", str(settings.portfolio_path)),
        ],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert simulate.returncode == 0, simulate.stdout + simulate.stderr
    produced = {topic: int(count) for topic, count, _ in PRODUCED.findall(simulate.stdout)}
    assert len(produced) == 3, simulate.stdout
    portfolio = settings.portfolio_path.read_text()
    # Tables must follow the top-level keys: the tuning goes right after schema_version.
    head, version, models_part = portfolio.partition("schema_version = 1\n")
    assert version, portfolio[:500]
    settings.portfolio_path.write_text(head + version + TUNING + models_part)
    models = frozenset(re.findall(r"^\[models\.([^.\]]+)\]$", portfolio, re.MULTILINE))

    worker = WorkerProcess(settings, folder / "worker.log")
    try:
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while (consumed := consumed_per_topic(settings)) != produced:
            log = (folder / "worker.log").read_text(errors="replace")[-2000:]
            assert worker.process.poll() is None, log
            assert time.monotonic() < deadline, (consumed, produced, log)
            time.sleep(0.5)
    finally:
        worker.stop()  # SIGTERM: the worker flushes its InfluxDB points before it exits
    # The short scenario lasts 6 s of (compressed) event time; its labels follow within 6 s.
    return SimulatedRun(settings, start, start + timedelta(seconds=15), timeline, models)


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A kernelspec for this interpreter, so that notebooks run in this virtualenv whatever
    kernels the user or the system has registered."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(path=str(kernels / KERNEL_NAME))
    return [str(kernels)]


def execute(
    notebook: str, parameters: dict[str, Any], run: SimulatedRun, kernel_dirs: list[str]
) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Runs ``notebook`` with ``parameters`` set after its parameters cell, as papermill
    does; returns the executed notebook and its summary. Raises on any failing cell."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    [index] = [
        i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])
    ]
    assignments = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(assignments))
    manager = KernelManager(
        kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs)
    )
    client = NotebookClient(
        nb,
        km=manager,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    # The client shuts down only kernels of managers it made itself, unless told to.
    client.execute(env=settings_env(run.settings), cleanup_kc=True)
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    printed = "".join(output.get("text", "") for output in outputs)
    # As the read-only user, not with the default token, which is the stack's admin's.
    assert f" as {ANALYST_USER}, bucket " in printed, printed[:500]
    summaries = [
        output.data["application/json"]
        for output in outputs
        if output.output_type == "display_data" and "application/json" in output.data
    ]
    assert len(summaries) == 1, summaries
    print(notebook, json.dumps(summaries[0], default=str))
    return nb, summaries[0]


def range_of(run: SimulatedRun) -> dict[str, str]:
    return {"START": run.start.isoformat(), "STOP": run.stop.isoformat()}


def test_portfolio_health_finds_the_health_series_of_the_run(
    simulated_run: SimulatedRun, kernel_dirs: list[str], tmp_path: Path
) -> None:
    run = simulated_run
    figure = tmp_path / "portfolio-health.png"
    _, summary = execute(
        "01-portfolio-health.ipynb",
        {**range_of(run), "MODEL": "", "FIGURE_PATH": str(figure)},
        run,
        kernel_dirs,
    )
    reader = SeriesReader.from_settings(run.settings)
    try:
        expected = reader.rows("health", Window.of(run.start, run.stop))
    finally:
        reader.close()
    assert expected, "the worker wrote no health transition during the run"
    assert summary["health_points"] == len(expected)
    assert summary["models_with_transitions"] == sorted({row["model"] for row in expected})
    assert set(summary["models"]) <= run.models
    assert set(summary["models_with_transitions"]) <= set(summary["models"])
    assert "health" not in summary["empty"]
    assert figure.stat().st_size > 10_000


def test_model_incident_reads_the_drifted_models_series(
    simulated_run: SimulatedRun, kernel_dirs: list[str]
) -> None:
    run = simulated_run
    # fraud-001: the short scenario's abrupt drift, on fraud-001.amount.
    _, summary = execute(
        "02-model-incident.ipynb",
        {**range_of(run), "MODEL": "fraud-001", "TIMELINE": str(run.timeline)},
        run,
        kernel_dirs,
    )
    assert summary["model"] == "fraud-001"
    assert summary["drift_points"] > 0


def test_model_incident_without_a_model_picks_the_longest_on_fallback(
    simulated_run: SimulatedRun, kernel_dirs: list[str]
) -> None:
    run = simulated_run
    _, summary = execute("02-model-incident.ipynb", {**range_of(run)}, run, kernel_dirs)
    assert summary["model"] in run.models


@pytest.mark.parametrize("notebook", ["03-write-lag-and-leaks.ipynb", "04-shadow-vs-live.ipynb"])
def test_notebook_runs_clean(
    simulated_run: SimulatedRun, kernel_dirs: list[str], notebook: str
) -> None:
    _, summary = execute(notebook, range_of(simulated_run), simulated_run, kernel_dirs)
    assert set(summary["empty"]) <= {"write_lag", "leak", "shadow"}


def test_notebooks_are_committed_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), path
