"""Bring the local stack, or some of its servers, up and down, in dependency order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from streams.settings import Settings
from streams.stack.alerta import AlertaServer
from streams.stack.base import Server, ServerStatus
from streams.stack.influxdb import InfluxDBServer
from streams.stack.kafka import KafkaServer
from streams.stack.postgres import PostgresServer
from streams.stack.process import free_port

# Start order; stop order is the reverse.
SERVERS: dict[str, Server] = {
    server.name: server
    for server in (KafkaServer(), InfluxDBServer(), PostgresServer(), AlertaServer())
}


def resolve(names: Iterable[str] | None) -> list[Server]:
    """The named servers plus those they require, in start order.

    Raises
    ------
    ValueError
        For a name that is not a server; the message lists the valid names.
    """
    wanted = set(SERVERS) if names is None else set(names)
    unknown = wanted - set(SERVERS)
    if unknown:
        raise ValueError(
            f"unknown server(s) {', '.join(sorted(unknown))}; valid: {', '.join(SERVERS)}"
        )
    pending = list(wanted)
    while pending:
        for required in SERVERS[pending.pop()].requires:
            if required not in wanted:
                wanted.add(required)
                pending.append(required)
    return [server for name, server in SERVERS.items() if name in wanted]


def up(
    settings: Settings,
    names: Iterable[str] | None = None,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Start the named servers (default: all) unless running; one line per server.

    ``report`` gets each line as it happens, and a notice before a first-time download.
    Raises :class:`~streams.stack.process.StackError` on the first server that fails.
    """
    lines = []
    for server in resolve(names):
        lines.append(server.start(settings, report))
        if report is not None:
            report(lines[-1])
    return lines


def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop the named servers (default: all), dependants first; one line per server."""
    chosen = None if names is None else set(names)
    servers = [s for s in resolve(chosen) if chosen is None or s.name in chosen]
    return [server.stop(settings) for server in reversed(servers)]


def status(settings: Settings) -> list[ServerStatus]:
    return [server.status(settings) for server in SERVERS.values()]


def private_settings(base: Settings, state_dir: Path) -> Settings:
    """Settings for a throwaway stack kept in ``state_dir``, on ports free right now.

    It shares ``base``'s cache, so nothing is downloaded or built again.
    """
    ports: set[int] = set()
    while len(ports) < 7:
        ports.add(free_port())
    kafka, controller, sasl_ssl, influxdb, influxdb_rpc, alerta, postgres = sorted(ports)
    return dataclasses.replace(
        base,
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        kafka_controller_port=controller,
        kafka_sasl_ssl_port=sasl_ssl,
        influxdb_url=f"http://127.0.0.1:{influxdb}",
        influxdb_rpc_port=influxdb_rpc,
        alerta_endpoint=f"http://127.0.0.1:{alerta}",
        postgres_port=postgres,
        state_dir=state_dir,
    )
