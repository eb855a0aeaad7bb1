"""Faults for one local server, by its pid file: kill it hard, pause it, resume it.

The chaos run (``tests/chaos``) uses these beside ``SERVERS[name].stop`` (a clean
SIGTERM) and ``.start``: a server is found through its pid file in the settings' state
folder, never by its process name, so another stack on the same machine is never hit.
Signals go to the server's whole process group (gunicorn's workers, a JVM's threads).
"""

from __future__ import annotations

import os
import signal
import time

from streams.settings import Settings
from streams.stack.control import SERVERS
from streams.stack.process import StackError, group_alive, port_is_free, reap

__all__ = ["kill", "pause", "resume"]

KILL_TIMEOUT_S = 10.0


def _pid(settings: Settings, name: str) -> int:
    server = SERVERS[name]
    pid = server.pid_file(settings).live_pid()
    if pid is None:
        raise server.fail(settings, "not running, so it cannot be signalled")
    return pid


def kill(settings: Settings, name: str) -> int:
    """SIGKILL the server's process group and wait until none of it is left and its ports
    are free again (the kernel lets go of them a moment after); its pid.

    The pid file stays, as after a crash: ``start`` sees that its process is gone.

    Raises
    ------
    StackError
        When it is not running, or a process of its group outlives ``KILL_TIMEOUT_S``.
    """
    pid = _pid(settings, name)
    # A stopped process dies of SIGKILL too, so a paused server can be killed.
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while group_alive(pid):
        reap(pid)
        if time.monotonic() > deadline:
            raise StackError(name, f"pid {pid} survived SIGKILL", SERVERS[name].log(settings))
        time.sleep(0.05)
    server = SERVERS[name]
    while not all(port_is_free(host, port) for host, port in server.ports(settings)):
        if time.monotonic() > deadline:
            raise StackError(name, "its ports are still taken after SIGKILL", server.log(settings))
        time.sleep(0.05)
    return pid


def pause(settings: Settings, name: str) -> int:
    """SIGSTOP the server's process group (it holds its sockets and answers nothing); its pid."""
    pid = _pid(settings, name)
    os.killpg(pid, signal.SIGSTOP)
    return pid


def resume(settings: Settings, name: str) -> int:
    """SIGCONT the server's process group after :func:`pause`; its pid."""
    pid = _pid(settings, name)
    os.killpg(pid, signal.SIGCONT)
    return pid
