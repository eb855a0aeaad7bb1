"""InfluxDB 1.8, built from the Go module proxy, with Flux and the /api/v2 write endpoint.

Authentication is on. The user and password of ``FAILSOFT_INFLUXDB_TOKEN``
(``user:password``) are the stack's admin, created once the server is up (InfluxDB lets
the first admin be created without credentials); two more users get a random password
each, in a file of the state folder readable by its owner only (``user_token_file``):
the writer, for workers, may write the database and not read it; the reader, for
analysts and notebooks, may read it and not write.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import Server, host_of, http_status, render, write_private
from streams.stack.process import run_logged, spawn

INFLUXDB_VERSION = "1.8.10"
INFLUXD_MODULE = "github.com/influxdata/influxdb/cmd/influxd"
BUILD_TIMEOUT_S = 30 * 60.0
# Where Go finds a toolchain on these machines when it is not on PATH.
GO_FALLBACK = Path("/usr/local/go/bin/go")
# The users besides the admin, by name: what each may do on the database.
WRITER = "failsoft-writer"
READER = "failsoft-reader"
USERS = {WRITER: "WRITE", READER: "READ"}


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
        admin, _, password = settings.secret("influxdb_token").partition(":")
        create_admin = (
            f"CREATE USER {_name(admin)} WITH PASSWORD {_text(password)} WITH ALL PRIVILEGES"
        )
        # Without credentials while no user exists; with them once one does.
        if self._query(settings, create_admin, None) != 200:
            self._require(settings, create_admin, (admin, password), "creating its admin")
        statements = [f"CREATE DATABASE {_name(database)}"]
        for user, user_password in ensure_user_passwords(settings).items():
            privilege = USERS[user]
            statements.append(f"CREATE USER {_name(user)} WITH PASSWORD {_text(user_password)}")
            statements.append(f"GRANT {privilege} ON {_name(database)} TO {_name(user)}")
        for statement in statements:
            self._require(settings, statement, (admin, password), statement.split(" WITH ")[0])

    def _require(
        self, settings: Settings, statement: str, credentials: tuple[str, str], what: str
    ) -> None:
        code = self._query(settings, statement, credentials)
        if code != 200:
            raise self.fail(settings, f"{what} answered HTTP {code}")

    @staticmethod
    def _query(settings: Settings, statement: str, credentials: tuple[str, str] | None) -> int:
        """The HTTP status of one InfluxQL statement; 400 as well for an error in the
        answer (InfluxDB reports a failed statement inside a 200)."""
        request = urllib.request.Request(
            f"{settings.influxdb_url}/query",
            data=urllib.parse.urlencode({"q": statement}).encode(),
            method="POST",
        )
        if credentials is not None:
            # InfluxDB reads u and p from the URL only; a header keeps them out of URLs.
            basic = base64.b64encode(":".join(credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            return error.code
        return 400 if any("error" in result for result in answer.get("results", [])) else 200


def ensure_user_passwords(settings: Settings) -> dict[str, str]:
    """Each of ``USERS``' password, made (in ``user_token_file``) if missing."""
    passwords = {}
    for user in USERS:
        path = user_token_file(settings, user)
        if not path.exists():
            write_private(path, f"{user}:{secrets.token_urlsafe(24)}\n".encode())
        passwords[user] = path.read_text().strip().partition(":")[2]
    return passwords


def user_token_file(settings: Settings, user: str) -> Path:
    """The file of ``user``'s ``user:password`` token, for ``FAILSOFT_INFLUXDB_TOKEN_FILE``."""
    return settings.state_dir / "influxdb" / "users" / f"{user}.token"


def _name(identifier: str) -> str:
    return '"' + identifier.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
