"""A serving node's install: `pip install failsoft` without extras, in a fresh virtualenv.

The project is installed (not in editable mode) from a copy of its packages into a venv
under the test's tmp folder; pip may use its cache. The example recommender then runs in
that venv, against the shared local Kafka, on topics of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from schemas.codec import decode_batch
from schemas.contracts import Prediction
from streams.control import publish_command
from streams.settings import Settings, env_name
from streams.topics import PREDICTIONS
from tests.fleet.helpers import command, fleet_topics, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
APP = REPO / "deploy" / "examples" / "recommender" / "app.py"
MODEL_ID = "home-recs"
WORKER_ONLY = ("faust", "aiokafka", "river", "rocksdict", "numpy", "influxdb_client", "rich")
# Creating the venv and installing into it: minutes on a cold pip cache.
INSTALL_TIMEOUT_S = 900


def site_packages_bytes(venv: Path) -> int:
    """The bytes under the venv's site-packages (pip and setuptools included)."""
    (site,) = venv.glob("lib/python*/site-packages")
    return sum(path.stat().st_size for path in site.rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def fleet_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install <copy of the repo>``: no extras."""
    root = tmp_path_factory.mktemp("fleet-only")
    source = root / "failsoft"
    # A copy, so that the build's own folders (build/, *.egg-info) never land in the repo.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("streams", "schemas", "detectors"):
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / file, source / file)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=INSTALL_TIMEOUT_S)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", source],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    print(f"fleet-only site-packages: {site_packages_bytes(venv) / 1e6:.1f} MB")
    return venv


def venv_environment() -> dict[str, str]:
    """This process's environment without PYTHONPATH, which would put a checkout's
    packages before the installed ones (tests run from a worktree set it)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def in_venv(venv: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    # Outside the repo, so that the installed packages are imported, not the repo's.
    return subprocess.run(
        [venv / "bin" / "python", *args],
        capture_output=True,
        text=True,
        cwd=venv,
        env=venv_environment(),
        **kwargs,
    )


def test_the_plain_install_has_the_fleet_client_and_none_of_the_worker(fleet_venv: Path) -> None:
    probe = (
        "import importlib.util, json, streams.fleet, schemas.signing;"
        f"names = {(*WORKER_ONLY, 'confluent_kafka', 'msgspec', 'cryptography')!r};"
        "print(json.dumps({'origin': streams.fleet.__file__,"
        " 'found': [n for n in names if importlib.util.find_spec(n) is not None]}))"
    )
    result = in_venv(fleet_venv, "-c", probe, check=True)
    report = json.loads(result.stdout)
    assert report["origin"].startswith(str(fleet_venv))
    assert report["found"] == ["confluent_kafka", "msgspec", "cryptography"]


@pytest.mark.parametrize("argv", [["worker"], ["simulate", "--scenario", "short"], ["demo"]])
def test_a_worker_command_names_the_extra_it_needs_in_one_line(
    fleet_venv: Path, argv: list[str]
) -> None:
    result = subprocess.run(
        [fleet_venv / "bin" / "failsoft", *argv],
        capture_output=True,
        text=True,
        cwd=fleet_venv,
        env=venv_environment(),
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"failsoft {argv[0]}: needs the worker extra (")
    assert result.stderr.endswith("pip install 'failsoft[worker]'\n")


def node_environment(settings: Settings) -> dict[str, str]:
    """The settings a serving node needs: the broker, the topic prefix and the public keys."""
    fields = ("kafka_bootstrap", "topic_prefix", "control_public_keys", "control_public_keys_file")
    return {**venv_environment(), **{env_name(field): getattr(settings, field) for field in fields}}


def test_the_example_node_obeys_a_command_and_its_predictions_reach_the_topic(
    fleet_venv: Path, stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    with fleet_topics(stack_settings, kafka_bootstrap, unique_name) as settings:
        run_example_node(fleet_venv, settings)


def run_example_node(fleet_venv: Path, node_settings: Settings) -> None:
    node = subprocess.Popen(
        [fleet_venv / "bin" / "python", "-u", APP, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=fleet_venv,
        env=node_environment(node_settings),
    )
    try:
        assert node.stdout is not None
        url = node.stdout.readline().split()[-1]  # ".../recommend?user=u42"
        base = url.partition("/recommend")[0]

        def get(path: str) -> Any:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return json.load(response)

        assert wait_for(lambda: get("/stats")["listener"]["bootstrapped"])
        assert get("/recommend?user=u42")["role"] == "live"
        publish_command(
            node_settings, command(node_settings, MODEL_ID, "fallback", 1_795_000_000_000)
        )
        assert wait_for(lambda: get("/recommend?user=u42")["role"] == "fallback")
        assert get("/stats")["modes"] == {MODEL_ID: "fallback"}
    finally:
        # SIGTERM makes the node flush the predictions it still holds, then exit.
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    served = read_predictions(node_settings, at_least=3)
    assert {p.model_id for p in served} == {MODEL_ID}
    assert served[0].role == "live" and served[-1].role == "fallback"


def read_predictions(
    settings: Settings, at_least: int, timeout_s: float = 30.0
) -> list[Prediction]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.topic_prefix}reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([PREDICTIONS.name(settings)])
    found: list[Prediction] = []
    try:
        wait_for(lambda: _take(consumer, found) >= at_least, timeout=timeout_s)
    finally:
        consumer.close()
    return found


def _take(consumer: Consumer, found: list[Prediction]) -> int:
    message = consumer.poll(0.2)
    if message is not None and message.error() is None:
        # The node's logger sends one batch message per model and flush.
        for prediction in decode_batch(Prediction, message.value()):
            assert isinstance(prediction, Prediction), prediction
            found.append(prediction)
    return len(found)
