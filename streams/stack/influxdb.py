"""InfluxDB 1.8, built from the Go module proxy, with Flux and the /api/v2 write endpoint."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import Server, host_of, http_status, render
from streams.stack.process import run_logged, spawn

INFLUXDB_VERSION = "1.8.10"
INFLUXD_MODULE = "github.com/influxdata/influxdb/cmd/influxd"
BUILD_TIMEOUT_S = 30 * 60.0
# Where Go finds a toolchain on these machines when it is not on PATH.
GO_FALLBACK = Path("/usr/local/go/bin/go")


class InfluxDBServer(Server):
    name = "influxdb"

    def __init__(self, version: str = INFLUXDB_VERSION) -> None:
        self.version = version

    def address(self, settings: Settings) -> str:
        return settings.influxdb_url

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        host = host_of(settings.influxdb_url)
        return [(host, settings.influxdb_port), (host, settings.influxdb_rpc_port)]

    def binary(self, settings: Settings) -> Path:
        return settings.cache_dir / "influxdb" / self.version / "bin" / "influxd"

    def needs_install(self, settings: Settings) -> bool:
        return not self.binary(settings).exists()

    def install(self, settings: Settings) -> None:
        if not self.needs_install(settings):
            return
        binary = self.binary(settings)
        log = self.install_log(settings)
        go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
        if go is None:
            raise self.fail(settings, "go is not on PATH (install Go to build influxd)", log)
        go_cache = settings.cache_dir / "go"
        env = {
            **os.environ,
            "GOBIN": str(binary.parent),
            "GOMODCACHE": str(go_cache / "mod"),
            "GOCACHE": str(go_cache / "build"),
            # Writable module files, so the cache folder can simply be deleted.
            "GOFLAGS": "-modcacherw",
            # Pure Go: the 1.8 line keeps Flux's Rust parser behind a build tag.
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
        }
        code = run_logged(
            [go, "install", f"{INFLUXD_MODULE}@v{self.version}"],
            log,
            timeout=BUILD_TIMEOUT_S,
            env=env,
        )
        if code != 0 or not binary.exists():
            raise self.fail(
                settings, f"build of influxd {self.version} failed (go exit {code})", log
            )

    def launch(self, settings: Settings) -> int:
        home = self.data_dir(settings)
        host = host_of(settings.influxdb_url)
        config = render(
            "influxdb/influxdb.conf",
            home / "influxdb.conf",
            host=host,
            http_port=settings.influxdb_port,
            rpc_port=settings.influxdb_rpc_port,
            data_dir=home,
        )
        return spawn([self.binary(settings), "run", "-config", config], self.log(settings)).pid

    def healthy(self, settings: Settings) -> bool:
        return http_status(f"{settings.influxdb_url}/ping") == 204

    def after_start(self, settings: Settings) -> None:
        database = settings.influxdb_bucket.split("/")[0]
        query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'})
        code = http_status(f"{settings.influxdb_url}/query?{query}", method="POST")
        if code != 200:
            raise self.fail(settings, f"CREATE DATABASE {database} answered HTTP {code}")
