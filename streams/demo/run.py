"""One demo run: the whole loop on this machine, from a scenario to its report.

``DemoRun`` does, in order (each step a method, so the end-to-end test drives the same
code): start the local stack's servers that are down; make a control key pair when no
private key is configured (the worker signs with it; the node gets only public keys);
create the run's own topics (prefix ``failsoft.<run id>.``), so a run never reads an
earlier run's commands or detector state, and name an Alerta customer of its own
(``alerta_customer``: the tap skips alerts of other customers); write the
simulated portfolio with detector settings for compressed time; start one worker
(``failsoft worker``, a child process) and the example serving node (in this process, so
its switches are timed on its listener thread); play the scenario (``failsoft
simulate``, a child process); then build the report from what the taps saw.

``close()`` undoes what the run started, whatever happened before: the children are
terminated (their process groups, SIGTERM then SIGKILL), the node flushes, the run's
topics are deleted, and the servers the run started are stopped, unless the stack is
kept.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from streams.demo.observe import AlertaTap, ControlTap, SwitchTap
from streams.demo.report import (
    EffectLatency,
    InjectedIncident,
    Report,
    WorkerLag,
    build_report,
    simulator_behind_of,
)
from streams.settings import Settings, env_name
from streams.simulate.scenario import load_scenario

__all__ = [
    "DEMO_DETECTOR_DEFAULTS",
    "DETECTION_BOUNDS_S",
    "HEALTH_POLL_S",
    "DemoError",
    "DemoOptions",
    "DemoRun",
    "default_run_id",
    "ensure_control_key",
    "lag_of",
    "node_settings",
]

EXAMPLE_NODE = Path(__file__).parents[2] / "deploy" / "examples" / "recommender" / "app.py"

# The synthetic portfolio's detectors tuned for a run of minutes: drift windows of 300
# predictions (10 to 40 s of a model's traffic at the default rate), a reference of the
# first 600, and a health policy whose dwell and quiet times (event-time seconds) are as
# compressed as the scenario's clock. With 10 bins, a PSI above 0.2 between windows of
# 300 and 600 stationary values is about a 1 in 100,000 chance per window and feature.
# Leak watch (durations in event-time milliseconds, on the compressed clock): a write
# within a second (24 nominal minutes) of a label is near it, lags are judged up to eight
# nominal days after it (480 s here, as a week's lag is in production), and a lag bin is
# judged three seconds after it closed, once its writes are in. Replayed offline (the
# worker's pure code over the default scenario), a 1% tolerated gap rate flagged a healthy
# model's naturally late feature, 5% flagged only the late upstream. Leak points every 5 s.
# The compressed clock puts a nominal day's entities in a minute: the leak watch's caps
# are those of a watch holding hours of them (a worker lagging 80 s behind credit-004's
# writes in the chaos run needs about 17,000 gap pairs), not the memory budget's.
# Output detectors: a nominal day is a minute here, about 1,200 predictions of a model
# at 20 a second. Their references freeze after 400 predictions (20 s at that rate, under
# a minute for the quietest model), so before any incident that moves a model's output.
# The score threshold is the product's default: an alarm of a healthy model against a
# reference that short moves its score less than the effect-size floor, so it moves no
# model. Replayed offline, the default scenario made the same fallbacks as with the
# threshold at 40 (none false; ltv-003's drift 8 s later). Nodes obey a restore within a
# second, not a minute.
DEMO_DETECTOR_DEFAULTS = """
[defaults.detectors.drift]
window_size = 300
reference_size = 600

[defaults.detectors.health]
confirm = 2
min_dwell = 5
clear_after = 10

[defaults.detectors.output]
predictions_per_day = 1200
score_warm_up = 400
error_warm_up = 400
restore_grace = 5.0

[defaults.detectors.leaks]
coincidence_tolerance = 1000
coincidence_max_lag = 480000
coincidence_lateness = 3000
gap_max_gap_rate = 0.05
report_every = 5
coincidence_max_entities = 10000
gap_max_keys = 50000
"""

# How long (wall-clock seconds) after its injection each incident kind may take to be
# detected: two drift windows to confirm, plus the ramp of a gradual drift; a broken
# model's output or error CUSUM alarms within seconds; a shadow's verdict waits for
# labels and for the shadow's min_stable_period (the offline replay reached it after 60 s
# for the better and 97 s for the worse shadow); a slow model's breakers trip within its
# first calls past the deadline, and their fallbacks raise the error CUSUM within seconds,
# as a broken model's errors do. Kinds not named get the report's default bound.
DETECTION_BOUNDS_S = {
    "drift_abrupt": 60.0,
    "drift_gradual": 90.0,
    "broken_model": 30.0,
    "latency_jump": 30.0,
    "shadow_better": 150.0,
    "shadow_worse": 150.0,
}

WORKER_READY_TIMEOUT_S = 240.0
CHILD_STOP_TIMEOUT_S = 30.0
HEALTH_POLL_S = 2.0
# After the simulator ends, the worker is given this long to work off its backlog.
DRAIN_TIMEOUT_S = 180.0
# Records of the input topics the worker may still have to read to count as caught up.
DRAINED_LAG = 50


class DemoError(Exception):
    """A step of the demo failed; the message says which and where its log is."""


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """What to play, and how; ``None`` takes the scenario's ``[run]`` value."""

    scenario: Path
    run_id: str
    run_dir: Path
    models: int | None = None
    # A portfolio file to play instead of a synthetic one of ``models`` models; its
    # durations are nominal, as ``failsoft simulate --portfolio`` reads them.
    portfolio: Path | None = None
    seed: int | None = None
    duration: str | None = None
    time_scale: float | None = None
    rate: float | None = None
    # Records per message (``failsoft simulate --batch-size``).
    batch_size: int = 1
    keep_stack: bool = False
    # Once the worker caught up: time for the last commands, switches and alerts.
    settle_s: float = 10.0
    bounds_s: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DETECTION_BOUNDS_S))


def ensure_control_key(settings: Settings, say: Callable[[str], None]) -> Settings:
    """``settings``, with a key pair in the state folder when no private key is configured;
    the worker signs with it (see ``node_settings`` for the node)."""
    from streams.control import public_key_path, write_key_pair

    if settings.control_private_key or settings.control_private_key_file:
        return settings
    path = settings.state_dir / "control.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if write_key_pair(path, "demo"):
        say(f"demo: wrote a control key pair to {path} and {public_key_path(path).name}")
    return dataclasses.replace(settings, control_private_key_file=str(path))


def node_settings(settings: Settings) -> Settings:
    """What a serving node is given: the public keys (the signer's included), never the
    private key, so that the demo's node is as unable to command the fleet as a real one."""
    from schemas.signing import Keyring

    return dataclasses.replace(
        settings,
        control_private_key="",
        control_private_key_file="",
        control_public_keys=Keyring.from_settings(settings).public_keys_text(),
        control_public_keys_file="",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = dict(os.environ)
    for field in dataclasses.fields(settings):
        env[env_name(field.name)] = str(getattr(settings, field.name))
    return env


class DemoRun:
    def __init__(
        self, settings: Settings, options: DemoOptions, say: Callable[[str], None] = print
    ) -> None:
        self.options = options
        self.say = say
        self.base_settings = settings
        run_dir = options.run_dir
        self.settings = dataclasses.replace(
            settings,
            topic_prefix=f"{settings.topic_prefix}{options.run_id}.",
            worker_app_id=f"failsoft-{options.run_id}",
            alerta_customer=f"failsoft-{options.run_id}",
            worker_data_dir=run_dir / "worker",
            worker_store="memory://",
            worker_web_port=_free_port(),
            portfolio_path=run_dir / "portfolio.toml",
        )
        self.scenario = load_scenario(options.scenario)
        self.models: list[str] = []
        self.timeline: list[dict[str, Any]] = []
        self.duration_ms = 0
        self.phase = "starting"
        self.started_ms = 0
        self.ended_ms = 0
        self.switches = SwitchTap(None)
        self.control: ControlTap | None = None
        self.alerta: AlertaTap | None = None
        self.started_servers: list[str] = []
        self.max_lag: WorkerLag | None = None
        self.effect_latency: EffectLatency | None = None
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._node: Any = None
        self._server: Any = None
        self._topics_created = False
        self._admin: Any = None

    # The steps, in order.

    def prepare(self) -> None:
        """Stack, key, topics and the portfolio file."""
        from streams.portfolio import load_portfolio, parse_duration
        from streams.simulate.population import portfolio_toml
        from streams.simulate.run import SimulationRun
        from streams.stack import SERVERS, up
        from streams.topics import admin_client, ensure_topics

        options = self.options
        options.run_dir.mkdir(parents=True, exist_ok=True)
        before = {name for name, server in SERVERS.items() if server.status(self.settings).healthy}
        up(self.settings, report=self.say)
        self.started_servers = [name for name in SERVERS if name not in before]
        self.settings = ensure_control_key(self.settings, self.say)
        # One admin client for the run: librdkafka logs a line for every one dropped.
        self._admin = admin_client(self.settings)
        ensure_topics(self.settings, admin=self._admin)
        self._topics_created = True
        self.say(f"demo: topics {self.settings.topic_prefix}* created")
        run = SimulationRun.prepare(
            self.scenario,
            start_ms=0,
            portfolio=None if options.portfolio is None else load_portfolio(options.portfolio),
            models=options.models,
            seed=options.seed,
            duration=None if options.duration is None else parse_duration(options.duration),
            rate=options.rate,
            time_scale=options.time_scale,
        )
        self.duration_ms = run.duration_ms
        self.models = [model.model_id for model in run.portfolio]
        text = portfolio_toml(run.portfolio, run.time_scale)
        if "[defaults" not in text:
            text += DEMO_DETECTOR_DEFAULTS
        self.settings.portfolio_path.write_text(text)

    def start_worker(self) -> None:
        self._spawn("worker", ["worker", "--loglevel", "warning"])

    def stop_worker(self) -> None:
        """Stop the worker as a supervisor would (SIGTERM, then SIGKILL if it hangs): it
        checkpoints every monitor it holds and commits before it exits."""
        child = self._children.pop("worker", None)
        if child is not None:
            _terminate(child)

    @property
    def worker_pid(self) -> int:
        """The worker process's id (its children, if any, are in its process group)."""
        return self._children["worker"].pid

    def wait_worker_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        """Until the worker answers on its web port and its consumer group is stable."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive("worker")
            if self.worker_models() is not None and self._group_stable():
                return
            time.sleep(1.0)
        raise DemoError(
            f"the worker was not ready within {timeout_s:.0f} s; see {self._log('worker')}"
        )

    def start_node(self) -> None:
        """The example recommender node, in this process, with its HTTP port open."""
        app = _load_example_node()
        node = node_settings(self.settings)
        self._node = app.RecommenderNode(node, app.ShuffleModel(), app.POPULAR_FILE)
        self._node.listener.on_change(self.switches.on_change)
        self._server = app.make_server(self._node, 0)
        threading.Thread(target=self._server.serve_forever, name="demo-node", daemon=True).start()
        if not self._node.listener.wait_bootstrapped(30.0):
            raise DemoError("the example node did not read the control topic within 30 s")
        self.say(f"demo: example node on http://127.0.0.1:{self._server.server_port}/stats")

    def start_taps(
        self, on_command: Callable[[Any], None] | None, on_alert: Callable[[Any], None] | None
    ) -> None:
        self.started_ms = time.time_ns() // 1_000_000
        self.control = ControlTap(self.settings, on_command).start()
        self.alerta = AlertaTap(self.settings, self.models, self.started_ms, on_alert).start()

    def start_simulator(self, timeout_s: float = 60.0) -> list[InjectedIncident]:
        """Start playing the scenario; returns its incidents once the timeline is written."""
        options = self.options
        timeline = options.run_dir / "timeline.jsonl"
        timeline.unlink(missing_ok=True)
        summary = self._simulator_summary()
        summary.unlink(missing_ok=True)
        args = ["simulate", "--scenario", str(options.scenario), "--timeline", str(timeline)]
        args += ["--summary", str(summary)]
        for flag, value in (
            ("--models", options.models),
            ("--portfolio", options.portfolio),
            ("--seed", options.seed),
            ("--duration", options.duration),
            ("--time-scale", options.time_scale),
            ("--rate", options.rate),
            ("--batch-size", options.batch_size),
        ):
            if value is not None:
                args += [flag, str(value)]
        self._spawn("simulate", args)
        deadline = time.monotonic() + timeout_s
        while not timeline.exists() or not timeline.read_text().endswith("\n"):
            self._check_alive("simulate", finished_ok=True)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no timeline within {timeout_s:.0f} s; see {self._log('simulate')}"
                )
            time.sleep(0.2)
        self.timeline = [json.loads(line) for line in timeline.read_text().splitlines()]
        return [InjectedIncident.from_record(record) for record in self.timeline]

    def play(self, tick: Callable[[], None] | None = None, every_s: float = 0.5) -> None:
        """Until the simulator is done, the worker has caught up with its predictions and
        ``settle_s`` more have passed; ``tick`` meanwhile. ``phase`` says which.

        Raises
        ------
        DemoError
            When the worker or the simulator fails.
        """
        self.phase = "playing the scenario"
        settled_at: float | None = None
        drain_until = 0.0
        while settled_at is None or time.monotonic() < settled_at:
            if tick is not None:
                tick()
            self._check_alive("worker")
            self._check_alive("simulate", finished_ok=True)
            metrics = self.worker_metrics()
            lag = None
            if metrics is not None:
                lag = lag_of(metrics, time.time_ns() // 1_000_000)
                self.max_lag = lag.worse(self.max_lag)
                # Cumulative since the worker started: the last reading covers the run.
                self.effect_latency = EffectLatency.from_metrics(metrics) or self.effect_latency
            if settled_at is None and self._children["simulate"].poll() == 0:
                if not drain_until:
                    drain_until = time.monotonic() + DRAIN_TIMEOUT_S
                self.phase = "scenario played; waiting for the worker to catch up"
                drained = lag is not None and lag.records <= DRAINED_LAG
                if drained or time.monotonic() > drain_until:
                    self.phase = "the worker caught up; waiting for the last alerts"
                    settled_at = time.monotonic() + self.options.settle_s
            time.sleep(every_s)
        self.phase = "done"

    def worker_metrics(self) -> str | None:
        """The worker's ``/metrics`` text; None while it does not answer."""
        url = f"http://127.0.0.1:{self.settings.worker_web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def worker_models(self) -> list[dict[str, Any]] | None:
        """The worker's ``/failsoft/models``, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.settings.worker_web_port}/failsoft/models"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                models: list[dict[str, Any]] = json.load(response)["models"]
        except (OSError, ValueError, KeyError):
            return None
        return models

    def finish(self) -> Report:
        """Stop watching and build the report of what was seen."""
        if self.alerta is not None:
            self.alerta.stop()
            try:
                self.alerta.poll()  # whatever arrived since the last poll
            except OSError as error:
                self.say(f"demo: Alerta's last poll failed: {error}")
        if self.control is not None:
            self.control.stop()
        self.ended_ms = time.time_ns() // 1_000_000
        return build_report(
            self.timeline,
            self.control.snapshot() if self.control else [],
            self.switches.snapshot(),
            self.alerta.snapshot() if self.alerta else [],
            scenario=self.scenario.name,
            started_at=self.started_ms,
            ended_at=self.ended_ms,
            bounds_s=self.options.bounds_s,
            worker_max_lag=self.max_lag,
            effect_latency=self.effect_latency,
            simulator_behind=self._simulator_behind(),
        )

    def _simulator_summary(self) -> Path:
        return self.options.run_dir / "simulate-summary.json"

    def _simulator_behind(self) -> tuple[tuple[int, float], ...] | None:
        """The simulator's ``behind``; None when it did not finish (a demo stopped early)."""
        try:
            return simulator_behind_of(json.loads(self._simulator_summary().read_text())["behind"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        """Undo what the run started; safe to call at any point, and more than once."""
        for name in ("simulate", "worker"):
            child = self._children.pop(name, None)
            if child is not None:
                _terminate(child)
        for tap in (self.alerta, self.control):
            if tap is not None:
                tap.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._node is not None:
            self._node.close()
            self._node = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self.options.keep_stack:
            return
        if self._topics_created:
            self._delete_topics()
            self._topics_created = False
        if self.started_servers:
            from streams.stack import down

            for line in down(self.settings, self.started_servers):
                self.say(line)
            self.started_servers = []

    # Helpers.

    def _spawn(self, name: str, args: Sequence[str]) -> None:
        log = self._log(name).open("ab")
        self._logs.append(log)
        self._children[name] = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A group of its own: Ctrl-C reaches the demo only, which stops it in order.
            start_new_session=True,
        )

    def _log(self, name: str) -> Path:
        return self.options.run_dir / f"{name}.log"

    def _check_alive(self, name: str, *, finished_ok: bool = False) -> None:
        code = self._children[name].poll()
        if code is not None and not (finished_ok and code == 0):
            raise DemoError(f"{name} exited with code {code}; see {self._log(name)}")

    def _group_stable(self) -> bool:
        from confluent_kafka import ConsumerGroupState, KafkaException

        group = self.settings.worker_app_id
        try:
            futures = self._admin.describe_consumer_groups([group])
            description = futures[group].result(timeout=5)
        except (KafkaException, TimeoutError):
            return False  # not known yet, or the broker is slow: asked again
        return bool(description.state == ConsumerGroupState.STABLE and description.members)

    def _delete_topics(self) -> None:
        from confluent_kafka import KafkaException

        prefixes = (self.settings.topic_prefix, self.settings.worker_app_id)
        try:
            topics = self._admin.list_topics(timeout=10).topics
            names = [name for name in topics if name.startswith(prefixes)]
            for future in self._admin.delete_topics(names, operation_timeout=30).values():
                future.result(timeout=30)
        except KafkaException as error:
            self.say(f"demo: could not delete the run's topics: {error}")


def lag_of(metrics: str, at_ms: int | None = None) -> WorkerLag:
    """The worker's lag in its ``/metrics`` text, read at ``at_ms``: records summed over
    its input topics, and the largest age.

    >>> lag_of('failsoft_lag_records{topic="p"} 12.0\\nfailsoft_lag_seconds{topic="p"} 0.5\\n'
    ...        'failsoft_lag_records{topic="g"} 3.0\\nfailsoft_lag_seconds{topic="g"} 1.25')
    WorkerLag(records=15, seconds=1.25, at_ms=None)
    """
    records, seconds = 0, 0.0
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("failsoft_lag_records{"):
            records += int(float(value))
        elif name.startswith("failsoft_lag_seconds{"):
            seconds = max(seconds, float(value))
    return WorkerLag(records, seconds, at_ms)


def _terminate(child: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, CHILD_STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


def _load_example_node() -> ModuleType:
    if not EXAMPLE_NODE.exists():
        raise DemoError(f"the example serving node is missing: {EXAMPLE_NODE}")
    spec = importlib.util.spec_from_file_location("failsoft_example_recommender", EXAMPLE_NODE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    from streams.stack import free_port

    return free_port()


def default_run_id() -> str:
    return time.strftime("demo-%Y%m%dT%H%M%SZ", time.gmtime())
