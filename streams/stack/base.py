"""What every local server shares: its folders, pid file, idempotent start, status and stop.

A server subclass says how to install itself (a cached download or build), how to launch
its process, and how to tell that it is healthy; :class:`Server` does the rest the same
way for all four.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import string
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from streams.settings import Settings
from streams.stack.process import (
    PidFile,
    StackError,
    group_alive,
    port_is_free,
    terminate_group,
    wait_until,
)

# The configuration templates live beside the other deployment files, in the checkout.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    log: Path

    def describe(self) -> str:
        if self.pid is None:
            state, pid = "stopped", "-"
        else:
            state, pid = ("healthy" if self.healthy else "UNHEALTHY"), f"pid {self.pid}"
        return f"{self.name:<9} {state:<9} {self.address:<24} {pid:<11} log: {self.log}"


class Server(ABC):
    """One local server, addressed through a :class:`Settings`."""

    name: ClassVar[str]
    # Names of servers that must be healthy before this one starts.
    requires: ClassVar[tuple[str, ...]] = ()
    start_timeout_s: ClassVar[float] = 60.0
    # How long a SIGTERM may take before SIGKILL follows.
    stop_timeout_s: ClassVar[float] = 30.0

    @abstractmethod
    def address(self, settings: Settings) -> str:
        """Where clients reach it, for messages."""

    @abstractmethod
    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        """Every (host, port) it binds, checked before it starts."""

    @abstractmethod
    def install(self, settings: Settings) -> None:
        """Download or build what it runs, unless cached; raises :class:`StackError`."""

    @abstractmethod
    def launch(self, settings: Settings) -> int:
        """Prepare its data folder and start it; the pid of its process group's leader."""

    @abstractmethod
    def healthy(self, settings: Settings) -> bool:
        """Whether it answers its health check now (never blocks for long)."""

    def needs_install(self, settings: Settings) -> bool:
        """Whether :meth:`install` has a download or build to do (nothing cached yet)."""
        return False

    def after_start(self, settings: Settings) -> None:  # noqa: B027 (optional hook)
        """Create what clients expect once it is healthy (a database, a key)."""

    def halt(self, settings: Settings, pid: int) -> None:
        terminate_group(pid, self.stop_timeout_s)

    def data_dir(self, settings: Settings) -> Path:
        return settings.state_dir / self.name

    def log(self, settings: Settings) -> Path:
        return settings.state_dir / "logs" / f"{self.name}.log"

    def install_log(self, settings: Settings) -> Path:
        return settings.state_dir / "logs" / f"{self.name}-install.log"

    def pid_file(self, settings: Settings) -> PidFile:
        return PidFile(settings.state_dir / "run" / f"{self.name}.pid")

    def fail(self, settings: Settings, cause: str, log: Path | None = None) -> StackError:
        """A :class:`StackError` for ``cause``, which is also appended to the log it names."""
        log = self.log(settings) if log is None else log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"failsoft stack: {self.name}: {cause}\n")
        return StackError(self.name, cause, log)

    def status(self, settings: Settings) -> ServerStatus:
        pid = self.pid_file(settings).live_pid()
        healthy = pid is not None and self.healthy(settings)
        return ServerStatus(self.name, self.address(settings), pid, healthy, self.log(settings))

    def start(self, settings: Settings, report: Callable[[str], None] | None = None) -> str:
        """Start it unless it already runs; a line saying what happened.

        ``report`` is told before a long first-time download or build begins.

        Raises
        ------
        StackError
            When a port is taken, the install fails, or it is not healthy in time.
        """
        with self._locked(settings):
            pid_file = self.pid_file(settings)
            pid = pid_file.live_pid()
            if pid is not None:
                self._wait_healthy(settings, pid_file, f"running as pid {pid} but ")
                return f"{self.name}: already running at {self.address(settings)} (pid {pid})"
            for host, port in self.ports(settings):
                if not port_is_free(host, port):
                    raise self.fail(settings, f"port {host}:{port} is taken by another process")
            if report is not None and self.needs_install(settings):
                log = self.install_log(settings)
                report(f"{self.name}: first start, downloading and building (log: {log})")
            self.install(settings)
            began = time.monotonic()
            pid = self.launch(settings)
            pid_file.write(pid)
            try:
                self._wait_healthy(settings, pid_file, "")
            except StackError:
                self.halt(settings, pid)
                pid_file.remove()
                raise
            self.after_start(settings)
            took = time.monotonic() - began
            return f"{self.name}: started at {self.address(settings)} in {took:.1f} s (pid {pid})"

    def stop(self, settings: Settings) -> str:
        """Stop it if it runs, and make sure no process of its group is left."""
        with self._locked(settings):
            pid_file = self.pid_file(settings)
            pid = pid_file.live_pid()
            if pid is None:
                pid_file.remove()
                return f"{self.name}: not running"
            self.halt(settings, pid)
            if group_alive(pid):
                raise self.fail(settings, f"pid {pid} or its children still run after stop")
            pid_file.remove()
            return f"{self.name}: stopped (pid {pid})"

    def _wait_healthy(self, settings: Settings, pid_file: PidFile, prefix: str) -> None:
        reason = wait_until(
            lambda: self.healthy(settings),
            lambda: pid_file.live_pid() is not None,
            self.start_timeout_s,
        )
        if reason is not None:
            raise self.fail(settings, prefix + reason)

    @contextlib.contextmanager
    def _locked(self, settings: Settings) -> Iterator[None]:
        """Serialise starts and stops of this server across processes (two test sessions)."""
        lock_path = settings.state_dir / "run" / f"{self.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only (a key, a password), in a
    folder that only its owner may list."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def render(template: str, destination: Path, **values: object) -> Path:
    """Write ``deploy/local/<template>`` with ``${name}`` placeholders filled in."""
    text = (DEPLOY_DIR / template).read_text()
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(string.Template(text).substitute(values))
    return destination


def host_of(url: str) -> str:
    return urlsplit(url if "//" in url else "//" + url).hostname or "127.0.0.1"


def http_status(url: str, method: str = "GET", timeout: float = 2.0) -> int | None:
    """The HTTP status of one request, or None if nothing answered."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None
