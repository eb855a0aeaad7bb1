"""The local stack: real Kafka, InfluxDB, PostgreSQL and Alerta servers, without Docker.

``failsoft stack up|down|status`` drives it; tests and tools use the same functions:

- :func:`up`, :func:`down`, :func:`status` act on the servers a :class:`Settings` names;
- ``SERVERS[name].start(settings)`` / ``.stop(settings)`` act on one server, so a test can
  run a private broker from :func:`private_settings` and stop and restart it.

Every module here imports only the standard library at import time.
"""

from streams.stack.base import Server, ServerStatus
from streams.stack.command import register
from streams.stack.control import SERVERS, down, private_settings, status, up
from streams.stack.process import StackError, free_port

__all__ = [
    "SERVERS",
    "Server",
    "ServerStatus",
    "StackError",
    "down",
    "free_port",
    "private_settings",
    "register",
    "status",
    "up",
]
