"""The example recommender node: live answers, then the top 10 once told to fall back."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from schemas.contracts import Prediction
from streams.control import publish_command
from streams.settings import Settings
from tests.fleet.helpers import command, fleet_topics, node_settings, wait_for

pytestmark = pytest.mark.integration

APP = Path(__file__).parents[2] / "deploy" / "examples" / "recommender" / "app.py"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recommender_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_integration_takes_under_20_lines() -> None:
    lines, inside = [], False
    for line in APP.read_text().splitlines():
        if "# failsoft: begin" in line:
            inside = True
        elif "# failsoft: end" in line:
            inside = False
        elif inside and line.strip():
            lines.append(line)
    imports = [line for line in APP.read_text().splitlines() if "streams.fleet" in line]
    assert len(lines) + len(imports) < 20, lines


def test_recommender_serves_live_then_falls_back_to_the_top_10(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    with fleet_topics(stack_settings, kafka_bootstrap, unique_name) as settings:
        serve_live_then_fallback(settings)


def serve_live_then_fallback(settings: Settings) -> None:
    app = load_app()
    node = app.RecommenderNode(node_settings(settings), app.ShuffleModel(), app.POPULAR_FILE)
    server = app.make_server(node, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return json.load(response)

    try:
        assert node.listener.wait_bootstrapped(30)
        live = get("/recommend?user=u42")
        assert live["role"] == "live" and len(live["items"]) == 10
        assert get("/recommend?user=u42")["items"] == live["items"]

        publish_command(settings, command(settings, app.MODEL_ID, "fallback", 1_795_000_000_000))
        assert wait_for(lambda: get("/recommend?user=u42")["role"] == "fallback")
        cpu = get("/recommend?user=u7")
        assert (cpu["level"], cpu["items"]) == (1, node.cpu.recommend("u7"))
        publish_command(
            settings, command(settings, app.MODEL_ID, "fallback", 1_795_000_000_001, level=2)
        )
        assert wait_for(lambda: get("/recommend?user=u42")["level"] == 2)
        popular = json.loads(app.POPULAR_FILE.read_text())
        assert get("/recommend?user=u7")["items"] == popular[:10]

        assert node.logger.flush(10) == 0
        stats = get("/stats")
        assert (stats["modes"], stats["level"]) == ({app.MODEL_ID: "fallback"}, 2)
        assert stats["predictions"]["delivered"] >= 6
        assert stats["predictions"]["dropped"] == 0
    finally:
        server.shutdown()
        server.server_close()
        node.close()


def test_a_slow_live_model_is_given_up_at_the_deadline_then_short_circuited(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    with fleet_topics(stack_settings, kafka_bootstrap, unique_name) as settings:
        app = load_app()
        node = app.RecommenderNode(
            node_settings(settings), app.ShuffleModel(slow_ms=800), app.POPULAR_FILE
        )
        logged: list[Prediction] = []
        publish = node.logger.log

        def log(prediction: Prediction) -> bool:
            logged.append(prediction)
            return bool(publish(prediction))

        node.logger.log = log
        try:
            started = time.perf_counter()
            answers = [node.serve(f"u{i}") for i in range(7)]
            took_s = time.perf_counter() - started
        finally:
            node.close()
        # The breaker falls to level 1, the CPU model.
        assert [a["items"] for a in answers] == [node.cpu.recommend(f"u{i}") for i in range(7)]
        assert {(a["role"], a["level"]) for a in answers} == {("fallback", 1)}
        # Five calls wait for the 100 ms deadline, the two after the trip wait for nothing.
        assert 0.5 <= took_s < 0.8
        reasons = [p.fallback_reason for p in logged]
        assert reasons == ["timeout"] * 5 + ["breaker_open:timeouts"] * 2
        assert {p.role for p in logged} == {"fallback"}
        breaker = node.stats()["breaker"]
        assert (breaker["state"], breaker["trips"], breaker["timeouts"]) == ("open", 1, 5)
