"""Bring the local stack, or some of its servers, up and down, in dependency order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from streams.settings import Settings
from streams.stack.alerta import AlertaServer, ensure_scoped_keys
from streams.stack.base import Server, ServerStatus, host_of, write_private
from streams.stack.influxdb import READER, WRITER, InfluxDBServer, ensure_user_passwords
from streams.stack.kafka import KafkaServer
from streams.stack.kafka_auth import BrokerSecrets, secrets_folder
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


def compose_secrets(settings: Settings) -> Path:
    """Make the stack's secrets that are missing, as ``up`` would, without starting any
    server, and write the variables ``deploy/compose.secured.yaml`` reads to a file of
    the state folder readable by its owner only; its path.

    The file is for ``docker compose --env-file``: the compose file's ``${...}`` take
    their values from it, and no secret needs to be in the shell's environment.
    """
    host = host_of(settings.kafka_bootstrap)
    BrokerSecrets(secrets_folder(settings)).ensure([host, "127.0.0.1", "localhost"])
    admin, _, admin_password = settings.secret("influxdb_token").partition(":")
    users = ensure_user_passwords(settings)
    keys = ensure_scoped_keys(settings)
    variables = {
        "FAILSOFT_COMPOSE_SECRETS_DIR": str(secrets_folder(settings)),
        "FAILSOFT_COMPOSE_INFLUXDB_ADMIN_USER": admin,
        "FAILSOFT_COMPOSE_INFLUXDB_ADMIN_PASSWORD": admin_password,
        "FAILSOFT_COMPOSE_INFLUXDB_WRITER_PASSWORD": users[WRITER],
        "FAILSOFT_COMPOSE_INFLUXDB_READER_PASSWORD": users[READER],
        "FAILSOFT_COMPOSE_ALERTA_ADMIN_KEY": settings.secret("alerta_api_key"),
        "FAILSOFT_COMPOSE_ALERTA_WORKER_KEY": keys["worker"],
        "FAILSOFT_COMPOSE_ALERTA_READER_KEY": keys["reader"],
    }
    lines = []
    for name, value in variables.items():
        # Single quotes: compose takes the value as it is, with no interpolation.
        if "'" in value or "\n" in value:
            raise ValueError(f"{name}: a value with a quote or a line break cannot be written")
        lines.append(f"{name}='{value}'\n")
    path = settings.state_dir / "compose.env"
    write_private(path, "".join(lines).encode())
    return path


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
