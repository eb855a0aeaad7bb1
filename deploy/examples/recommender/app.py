"""An example serving node: recommendations over HTTP that fail soft down a ladder, from a
GPU model to a CPU model to the 10 most popular items.

    GET /recommend?user=u42   -> {"items": [...], "role": "live" | "fallback", "level": 0,
                                  "request_id": ...}
    GET /stats                -> the failsoft client's counters

The models are stand-ins: the "GPU model" (``home-recs``, tier gpu) a per-user shuffle of
a catalogue, which can be made to fail with ``--fail-rate`` or slow with ``--slow-ms``; the
"CPU model" (level 1 of the ladder) a per-segment shuffle, cheaper and coarser, which can
be made to fail with ``--cpu-fail-rate``; the static default (level 2) the top 10 of
``popular.json``. Everything failsoft needs sits between the two ``failsoft:`` markers,
under 20 lines: a ``ControlListener`` that obeys the control topic, a ``PopularItems``
default that follows ``popular.json``, a ``Router`` that picks a level of the ladder by
the model's mode and level and puts the GPU model behind a breaker (a 100 ms deadline, a
50 ms p99 SLO), and a ``PredictionLogger`` that publishes what was served, a fallback with
why it served and which level did (see ``streams.fleet.router``).

Run (after ``failsoft stack up`` and ``failsoft topics create``)::

    failsoft control keygen ~/.config/failsoft/control.key    # and control.key.pub
    export FAILSOFT_CONTROL_PUBLIC_KEYS_FILE=~/.config/failsoft/control.key.pub
    .venv/bin/python deploy/examples/recommender/app.py --port 8000 &   # public key only
    export FAILSOFT_CONTROL_PRIVATE_KEY_FILE=~/.config/failsoft/control.key   # to sign
    curl 'localhost:8000/recommend?user=u42'
    failsoft control fallback home-recs --reason "try it"
    curl 'localhost:8000/recommend?user=u42'       # the CPU model, role "fallback", level 1
    failsoft control fallback home-recs --level 2 --reason "CPU model broken too"
    curl 'localhost:8000/recommend?user=u42'       # the top 10, level 2

With ``--slow-ms 800`` every call misses the deadline: the CPU model answers after 100 ms,
and after 5 such calls the breaker opens and it answers at once (``/stats`` shows it).
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


class SegmentModel:
    """The stand-in CPU model: ten items per user segment, failing on demand."""

    def __init__(self, gpu: ShuffleModel, fail_rate: float = 0.0) -> None:
        self.gpu = gpu
        self.fail_rate = fail_rate

    def recommend(self, user_id: str) -> list[str]:
        if random.random() < self.fail_rate:
            raise RuntimeError("CPU model failed")
        return random.Random(self.gpu.segment(user_id)).sample(CATALOGUE, 10)


class RecommenderNode:
    def __init__(
        self,
        settings: Settings,
        model: ShuffleModel,
        popular: Path,
        cpu: SegmentModel | None = None,
    ) -> None:
        self.model = model
        self.cpu = cpu or SegmentModel(model)
        # failsoft: begin (setup)
        self.listener = ControlListener(settings).start()
        self.logger = PredictionLogger(settings)
        self.popular = PopularItems(popular, n=10)
        router = Router(self.listener)
        breaker = BreakerSettings(deadline_ms=100.0, slo_p99_ms=50.0)
        ladder = [self.cpu.recommend, self.popular.top]  # level 1: CPU model, 2: static default
        self.recommend = router.register(
            MODEL_ID, live=model.recommend, fallback=ladder, breaker=breaker
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
        return {
            "items": served.value,
            "role": served.role,
            "level": served.level,
            "request_id": request_id,
        }

    def stats(self) -> dict[str, Any]:
        breaker = self.recommend.breaker
        return {
            "modes": dict(self.listener.modes),
            "level": self.listener.level(MODEL_ID),
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
    parser.add_argument("--cpu-fail-rate", type=float, default=0.0, help="CPU model failures")
    args = parser.parse_args()
    model = ShuffleModel(args.fail_rate, args.slow_ms)
    cpu = SegmentModel(model, args.cpu_fail_rate)
    node = RecommenderNode(Settings.from_env(), model, args.popular, cpu)
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
