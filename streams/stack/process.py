"""Start, watch and stop one local server process, with bounded waits and clear failures.

A server's long-running process is identified by a pid file holding its pid and its start
time (from ``/proc``), so a recycled pid is never mistaken for the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

LOG_TAIL_LINES = 25

# A program and its arguments, paths allowed.
Command = list[str | os.PathLike[str]]


class StackError(Exception):
    """A server could not be installed, started or stopped.

    ``str()`` is one line naming the server, the cause and the log file to read.
    """

    def __init__(self, server: str, cause: str, log: Path) -> None:
        super().__init__(server, cause, log)
        self.server = server
        self.cause = cause
        self.log = log

    def __str__(self) -> str:
        return f"{self.server}: {self.cause} (log: {self.log})"


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Without SO_REUSEADDR a port in TIME_WAIT from a just-stopped server reads as
        # taken, although the server itself (which sets it) could bind it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields after it do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


class PidFile:
    """The pid and start time of a server's process, kept in its state folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        started = _start_time(pid)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid} {started}\n")

    def live_pid(self) -> int | None:
        """The recorded pid if that very process still runs, else None."""
        try:
            pid_text, started_text = self.path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        started = _start_time(pid)
        if started is None or str(started) != started_text:
            return None
        return pid

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(
    command: Sequence[str | os.PathLike[str]],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, detached from the caller's terminal.

    Its own session makes it the leader of a process group, so stopping it also stops its
    children (gunicorn's workers), and it outlives the ``failsoft`` command that started it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [os.fspath(part) for part in command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def run_logged(
    command: Sequence[str | os.PathLike[str]],
    log: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    secret_arguments: Sequence[str] = (),
) -> int:
    """Run ``command`` to completion with its output appended to ``log``; its exit code.

    The log shows the command line and the output with ``secret_arguments`` replaced by
    ``***``. A command that outlives ``timeout`` is killed, with its children, and
    reported as exit code -9.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = ["***" if part in secret_arguments else os.fspath(part) for part in command]
    with log.open("a") as out:
        out.write(f"$ {' '.join(shown)}\n")
    # A command given a secret may print it (``alertad key`` prints the key it makes), so
    # its output goes to a file only its owner may read, and reaches the log masked.
    output = log.with_name(f"{log.name}.unmasked") if secret_arguments else log
    if secret_arguments:
        os.close(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    process = spawn(command, output, env=env, cwd=cwd)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        terminate_group(process.pid, timeout=5.0)
        code = None
    if secret_arguments:
        text = output.read_text(errors="replace")
        output.unlink()
        for secret in filter(None, secret_arguments):
            text = text.replace(secret, "***")
        with log.open("a") as out:
            out.write(text)
    if code is None:
        with log.open("a") as out:
            out.write(f"timed out after {timeout:.0f} s\n")
        return -signal.SIGKILL
    return code


def wait_until(
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
) -> str | None:
    """Poll ``ready`` until it holds; the reason it never did, or None once it does."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return None
        if not alive():
            return "the process exited during start-up"
        if time.monotonic() >= deadline:
            return f"not healthy within {timeout:.0f} s"
        time.sleep(interval)


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it leaves no zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate_group(pid: int, timeout: float) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout``; True if gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap(pid)
            if not group_alive(pid):
                return True
            time.sleep(0.1)
    return not group_alive(pid)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    return any(True for _ in group_members(pgid))


def group_members(pgid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in {"Z", "X"} and int(fields[2]) == pgid:
            yield int(entry.name)
