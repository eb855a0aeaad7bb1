"""One settings object for every failsoft process, read once from the environment.

Each field has exactly one environment variable, ``FAILSOFT_`` plus the field's name in
upper case. ``Settings.from_env()`` is called once at a process's entry point and the
object is passed down; nothing else reads the environment.

The local stack binds its servers to the ports named in the client addresses below, so
changing ``FAILSOFT_KAFKA_BOOTSTRAP`` moves both the broker and every client of it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streams.durations import parse_duration

ENV_PREFIX = "FAILSOFT_"
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Configuration of failsoft; see ``ENV_PREFIX`` for how fields map to the environment."""

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = 19093
    topic_prefix: str = "failsoft."
    # How every client (the worker's Faust app and ingest reader, the fleet client, the
    # admin and the simulator) talks to the brokers (README, "Security"). The protocol is
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; the SASL mechanism SCRAM-SHA-512,
    # SCRAM-SHA-256 or PLAIN. The CA file (PEM) verifies the brokers' certificates; empty:
    # the system's trust store, as for a managed Kafka.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)
    kafka_sasl_password_file: str = ""
    kafka_ssl_ca_file: str = ""
    # The local stack's SASL_SSL listener, beside the plaintext one of kafka_bootstrap, on
    # the same host.
    kafka_sasl_ssl_port: int = 19094

    # InfluxDB: the same four values address InfluxDB 1.8 (bucket "db/rp", token
    # "user:password"), 2.x and 3.x.
    influxdb_url: str = "http://127.0.0.1:18086"
    # The local stack's admin (streams/stack/influxdb.py); give workers its writer user.
    influxdb_token: str = dataclasses.field(
        default="failsoft:failsoft-local-stack-influxdb-0000", repr=False
    )
    influxdb_token_file: str = ""
    influxdb_org: str = "failsoft"
    influxdb_bucket: str = "failsoft/autogen"
    influxdb_rpc_port: int = 18088

    # Alerta, and the PostgreSQL database that the local stack gives it.
    alerta_endpoint: str = "http://127.0.0.1:18080"
    alerta_api_key: str = dataclasses.field(
        default="failsoft-local-stack-key-0000000000000000", repr=False
    )
    alerta_api_key_file: str = ""
    alerta_environment: str = "Development"
    # Alerta keeps one alert per environment, customer, resource and event, and the server
    # accepts only the environments it was started with: runs that share a server and
    # model ids (the demo, tests) keep their alerts apart by a customer of their own.
    # Empty: no customer.
    alerta_customer: str = ""
    # Wall-clock time an alert's severity must hold before it may change again other than
    # upwards (detectors.AlertDamping); 0 sends every change. A duration ("5m", "30s") or
    # a plain number of seconds.
    alert_damping: float = dataclasses.field(default=300.0, metadata={"duration": True})
    postgres_port: int = 15432

    # Control-command keys (schemas/signing.py), "key_id=<hex>" entries; none is built in.
    # Signers (workers, operators) hold one Ed25519 private key, inline or in a file: the
    # one secret that can command the fleet. Nodes hold the public keys they accept
    # (comma- or newline-separated, inline and/or in a file), several while keys rotate.
    control_private_key: str = dataclasses.field(default="", repr=False)
    control_private_key_file: str = ""
    control_public_keys: str = ""
    control_public_keys_file: str = ""
    # The earlier scheme's shared HMAC secrets ("key_id=secret"): a node verifies HMAC
    # commands only with control_accept_hmac on, for the migration in the README;
    # otherwise configuring them is an error. Nothing signs with HMAC any more.
    control_keys: str = dataclasses.field(default="", repr=False)
    control_keys_file: str = ""
    control_accept_hmac: bool = False

    # The Faust worker. Its app id is also its consumer group; workers that share it share
    # the partitions. Two workers on one host need their own web ports and data folders.
    # Tables live in RocksDB ("rocksdb://"); tests use "memory://".
    worker_app_id: str = "failsoft-worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 16066
    worker_data_dir: Path = Path.home() / ".local" / "state" / "failsoft" / "worker"
    worker_store: str = "rocksdb://"
    # Where the sinks spool what they buffer through an outage (streams.sinks.buffer);
    # empty: the worker's data folder's "spool". Workers of one app id that share it (on
    # one host, or a shared volume with working flock) deliver what one that left behind
    # spooled; each worker's own folder strands it until that worker comes back.
    worker_spool_dir: str = ""
    # Freeze what the worker holds once started, before it reads (modules, compiled loops,
    # the app), so full garbage collections scan only the monitors and what is in flight
    # (streams.worker.gcfreeze); off, they scan all of it too.
    worker_gc_freeze: bool = True
    # A model's monitor fed and not written to the state table for this long is written at
    # the next commit, and the input offsets it covers are committed: a crash rereads at
    # most this much of a model's traffic, and after traffic stops the committed offsets
    # reach the end within it. Shorter costs a checkpoint (a pickle of the monitor, 1 to
    # 2 MB for the demo's models) per fed model that often. A duration or seconds.
    worker_checkpoint_within: float = dataclasses.field(default=60.0, metadata={"duration": True})
    # The models the workers watch (see streams/portfolio.py); read once at start-up.
    portfolio_path: Path = Path("deploy/portfolio.example.toml")

    # Where the local stack caches downloads and builds, and keeps data and logs.
    cache_dir: Path = Path.home() / ".cache" / "failsoft"
    state_dir: Path = Path.home() / ".local" / "state" / "failsoft"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment).

        Raises
        ------
        ValueError
            When a variable cannot be parsed as its field's type; the message names it.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = env_name(field.name)
            if name in environ:
                if field.metadata.get("duration"):
                    values[field.name] = _seconds(name, environ[name])
                else:
                    values[field.name] = _parse(name, environ[name], field.default)
        return cls(**values)

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("kafka_security_protocol", self.kafka_security_protocol, KAFKA_SECURITY_PROTOCOLS),
            ("kafka_sasl_mechanism", self.kafka_sasl_mechanism, KAFKA_SASL_MECHANISMS),
        ):
            if value not in valid:
                raise ValueError(f"{env_name(name)}={value!r}: expected one of {', '.join(valid)}")

    def secret(self, name: str) -> str:
        """The secret setting ``name``, given inline or in the file of ``name + "_file"``
        (one line; its trailing newline dropped). Read when asked, so a rotated file is
        picked up by the next client made.

        Raises
        ------
        ValueError
            When both are set, or the file cannot be read; the message names the variable
            and the file, never the secret.
        """
        inline = getattr(self, name)
        path = getattr(self, name + "_file")
        if not path:
            return str(inline)
        variable = env_name(name + "_file")
        if inline and inline != _DEFAULTS[name]:
            raise ValueError(f"set {env_name(name)} or {variable}, not both")
        try:
            return Path(path).expanduser().read_text().rstrip("\r\n")
        except OSError as error:
            raise ValueError(f"{variable}={path!r}: {error.strerror or error}") from None

    @property
    def spool_dir(self) -> Path:
        """The sinks' spool folder: ``worker_spool_dir``, else in the worker's data folder."""
        if self.worker_spool_dir:
            return Path(self.worker_spool_dir).expanduser()
        return self.worker_data_dir / "spool"

    @property
    def kafka_port(self) -> int:
        return _port_of("//" + self.kafka_bootstrap.split(",")[0], "FAILSOFT_KAFKA_BOOTSTRAP")

    @property
    def influxdb_port(self) -> int:
        return _port_of(self.influxdb_url, "FAILSOFT_INFLUXDB_URL")

    @property
    def alerta_port(self) -> int:
        return _port_of(self.alerta_endpoint, "FAILSOFT_ALERTA_ENDPOINT")


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Settings)}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _parse(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name}={raw!r}: expected one of true, false, 1, 0, yes, no, on, off")
    if isinstance(default, int | float):
        try:
            return type(default)(raw)
        except ValueError:
            raise ValueError(f"{name}={raw!r}: expected a {type(default).__name__}") from None
    if isinstance(default, Path):
        return Path(raw).expanduser()
    return raw


def _seconds(name: str, raw: str) -> float:
    """A duration setting in seconds: a plain number is seconds, "5m" is 300."""
    try:
        number: object = float(raw)
    except ValueError:
        number = raw
    try:
        return parse_duration(number, allow_zero=True).total_seconds()
    except ValueError as error:
        raise ValueError(f"{name}={error}") from None


def _port_of(url: str, name: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{name}={url!r}: the address must name a port")
    return port
