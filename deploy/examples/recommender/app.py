"""An example serving node: recommendations over HTTP that fail soft to the 10 most popular.

    GET /recommend?user=u42   -> {"items": [...], "role": "live" | "fallback", "request_id": ...}
    GET /stats                -> the failsoft client's counters

The "live model" is a stand-in (a per-user shuffle of a catalogue) and can be made to
fail with ``--fail-rate`` or slow with ``--slow-ms``. Everything failsoft needs sits
between the two ``failsoft:`` markers, under 20 lines: a ``ControlListener`` that obeys
the control topic, a ``PopularItems`` fallback that follows ``popular.json``, a
``Router`` that picks one by the model's mode and puts the live model behind a breaker
(a 100 ms deadline, a 50 ms p99 SLO), and a ``PredictionLogger`` that publishes what was
served, a fallback with why it served (see ``streams.fleet.router``).

Run (after ``failsoft stack up`` and ``failsoft topics create``)::

    failsoft control keygen ~/.config/failsoft/control.key    # and control.key.pub
    export FAILSOFT_CONTROL_PUBLIC_KEYS_FILE=~/.config/failsoft/control.key.pub
    .venv/bin/python deploy/examples/recommender/app.py --port 8000 &   # public key only
    export FAILSOFT_CONTROL_PRIVATE_KEY_FILE=~/.config/failsoft/control.key   # to sign
    curl 'localhost:8000/recommend?user=u42'
    failsoft control fallback home-recs --reason "try it"
    curl 'localhost:8000/recommend?user=u42'       # now the top 10, role "fallback"

With ``--slow-ms 800`` every call misses the deadline: the top 10 answer after 100 ms, and
after 5 such calls the breaker opens and answers at once (``/stats`` shows it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from schemas.contracts import SCHEMA_VERSION, FeatureSeen, Prediction, Ranking
from streams.fleet import BreakerSettings, ControlListener, PopularItems, PredictionLogger, Router
from streams.settings import Settings

MODEL_ID = "home-recs"
MODEL_VERSION = "example-1"
CATALOGUE = [f"item-{i}" for i in range(200)]
POPULAR_FILE = Path(__file__).with_name("popular.json")


class ShuffleModel:
    """The stand-in live model: ten items per user, stable for a user, failing or slow on
    demand."""

    def __init__(self, fail_rate: float = 0.0, slow_ms: float = 0.0) -> None:
        self.fail_rate = fail_rate
        self.slow_ms = slow_ms
        # When the (stand-in) segment table was built: the write time of every segment.
        self.segments_written_at = time.time_ns() // 10**6

    def segment(self, user_id: str) -> int:
        return hashlib.sha256(user_id.encode()).digest()[0] % 8

    def recommend(self, user_id: str) -> list[str]:
        if random.random() < self.fail_rate:
            raise RuntimeError("model server timed out")
        if self.slow_ms:
            time.sleep(self.slow_ms / 1e3)
        return random.Random(f"{self.segment(user_id)}:{user_id}").sample(CATALOGUE, 10)


class RecommenderNode:
    def __init__(self, settings: Settings, model: ShuffleModel, popular: Path) -> None:
        self.model = model
        # failsoft: begin (setup)
        self.listener = ControlListener(settings).start()
        self.logger = PredictionLogger(settings)
        self.popular = PopularItems(popular, n=10)
        router = Router(self.listener)
        breaker = BreakerSettings(deadline_ms=100.0, slo_p99_ms=50.0)
        self.recommend = router.register(
            MODEL_ID, live=model.recommend, fallback=self.popular.top, breaker=breaker
        )
        # failsoft: end

    def serve(self, user_id: str) -> dict[str, Any]:
        started, request_id = time.perf_counter(), uuid.uuid4().hex
        # failsoft: begin (per request)
        served = self.recommend.route(user_id)
        took_ms, now_ms = (time.perf_counter() - started) * 1e3, time.time_ns() // 10**6
        seen = {"segment": FeatureSeen(self.model.segment(user_id), self.model.segments_written_at)}
        ids = (SCHEMA_VERSION, request_id, MODEL_ID, MODEL_VERSION, served.role, user_id)
        self.logger.log(Prediction(*ids, now_ms, Ranking(served.value), seen, took_ms, *served[2:]))
        # failsoft: end
        return {"items": served.value, "role": served.role, "request_id": request_id}

    def stats(self) -> dict[str, Any]:
        breaker = self.recommend.breaker
        return {
            "modes": dict(self.listener.modes),
            "listener": msgspec.to_builtins(self.listener.stats()),
            "predictions": msgspec.to_builtins(self.logger.stats()),
            "live_errors": self.recommend.errors,
            "breaker": None if breaker is None else msgspec.to_builtins(breaker.stats()),
        }

    def close(self) -> None:
        self.listener.stop()
        self.logger.close(timeout=5)


def make_server(node: RecommenderNode, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/recommend":
                user = parse_qs(url.query).get("user", [""])[0]
                if not user:
                    return self._reply(400, {"error": "user: required query parameter"})
                return self._reply(200, node.serve(user))
            if url.path == "/stats":
                return self._reply(200, node.stats())
            return self._reply(404, {"error": f"{url.path}: not found"})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the node's own log

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--popular", type=Path, default=POPULAR_FILE)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="live model failures")
    parser.add_argument("--slow-ms", type=float, default=0.0, help="live model latency, ms")
    args = parser.parse_args()
    model = ShuffleModel(args.fail_rate, args.slow_ms)
    node = RecommenderNode(Settings.from_env(), model, args.popular)
    server = make_server(node, args.port)
    # Stop on SIGTERM as on Ctrl-C, so the predictions still queued are flushed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"recommender on http://127.0.0.1:{server.server_port}/recommend?user=u42")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        node.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
