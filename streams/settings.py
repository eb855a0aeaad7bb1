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

ENV_PREFIX = "FAILSOFT_"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Configuration of failsoft; see ``ENV_PREFIX`` for how fields map to the environment."""

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_controller_port: int = 19093
    topic_prefix: str = "failsoft."

    # InfluxDB: the same four values address InfluxDB 1.8 (bucket "db/rp", token
    # "user:password"), 2.x and 3.x.
    influxdb_url: str = "http://127.0.0.1:18086"
    influxdb_token: str = ":"
    influxdb_org: str = "failsoft"
    influxdb_bucket: str = "failsoft/autogen"
    influxdb_rpc_port: int = 18088

    # Alerta, and the PostgreSQL database that the local stack gives it.
    alerta_endpoint: str = "http://127.0.0.1:18080"
    alerta_api_key: str = "failsoft-local-stack-key-0000000000000000"
    alerta_environment: str = "Development"
    # Alerta keeps one alert per environment, customer, resource and event, and the server
    # accepts only the environments it was started with: runs that share a server and
    # model ids (the demo, tests) keep their alerts apart by a customer of their own.
    # Empty: no customer.
    alerta_customer: str = ""
    # Seconds of wall-clock time an alert's severity must hold before it may change again
    # other than upwards (detectors.AlertDamping); 0 sends every change.
    alert_damping: float = 300.0
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
                values[field.name] = _parse(name, environ[name], field.default)
        return cls(**values)

    @property
    def kafka_port(self) -> int:
        return _port_of("//" + self.kafka_bootstrap.split(",")[0], "FAILSOFT_KAFKA_BOOTSTRAP")

    @property
    def influxdb_port(self) -> int:
        return _port_of(self.influxdb_url, "FAILSOFT_INFLUXDB_URL")

    @property
    def alerta_port(self) -> int:
        return _port_of(self.alerta_endpoint, "FAILSOFT_ALERTA_ENDPOINT")


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


def _port_of(url: str, name: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{name}={url!r}: the address must name a port")
    return port
