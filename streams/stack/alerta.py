"""Alerta (alerta-server under gunicorn) on the stack's PostgreSQL, with an API key required.

The key is ``settings.alerta_api_key``, created by ``alertad key`` (idempotent), so the
failsoft processes that read the same settings can post alerts. It is an admin's key.
Two more keys of narrower scope are made on first start, each kept in a file of the state
folder readable by its owner only (``scoped_key_file``): the workers' key, which may send
alerts and heartbeats (and read them) but not delete an alert (``DELETE_SCOPES`` asks
``admin:alerts`` for that), and an analyst's read-only key.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import Server, host_of, http_status, render, write_private
from streams.stack.postgres import HOST as POSTGRES_HOST
from streams.stack.postgres import SUPERUSER, database_url
from streams.stack.process import Command, run_logged, spawn

DATABASE = "alerta"
ADMIN_USER = "admin@failsoft.local"
WORKERS = 2
KEY_TIMEOUT_S = 60.0
# The scoped keys, by name: what each may do.
SCOPED_KEYS = {
    "worker": ("write:alerts", "write:heartbeats"),
    "reader": ("read",),
}


class AlertaServer(Server):
    name = "alerta"
    requires = ("postgres",)

    def address(self, settings: Settings) -> str:
        return settings.alerta_endpoint

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        return [(host_of(settings.alerta_endpoint), settings.alerta_port)]

    def install(self, settings: Settings) -> None:
        # alerta-server is a Python package of the [stack] extra, in this interpreter's env.
        missing = [tool for tool in ("alertad", "gunicorn") if not _tool(tool).exists()]
        if missing:
            raise self.fail(
                settings,
                f"{' and '.join(missing)} not installed beside {sys.executable} "
                "(pip install 'failsoft[stack]')",
                self.install_log(settings),
            )

    def launch(self, settings: Settings) -> int:
        _create_database(settings)
        env = {**os.environ, "ALERTA_SVR_CONF_FILE": str(self._config(settings))}
        log = self.log(settings)
        # The admin's key, well known unless FAILSOFT_ALERTA_API_KEY(_FILE) sets another.
        code = _make_key(settings.secret("alerta_api_key"), "failsoft local stack", (), env, log)
        if code != 0:
            raise self.fail(settings, f"alertad key failed (exit {code})")
        for name, key in ensure_scoped_keys(settings).items():
            code = _make_key(key, f"failsoft {name}", SCOPED_KEYS[name], env, log)
            if code != 0:
                raise self.fail(settings, f"alertad key for the {name} key failed (exit {code})")
        bind = f"{host_of(settings.alerta_endpoint)}:{settings.alerta_port}"
        command: Command = [_tool("gunicorn"), "alerta:create_app()", "--bind", bind]
        # gunicorn 25+ opens a control socket under $HOME unless told not to.
        command += ["--workers", str(WORKERS), "--no-control-socket", "--timeout", "60"]
        return spawn(command, log, env=env).pid

    def healthy(self, settings: Settings) -> bool:
        return http_status(f"{settings.alerta_endpoint}/management/gtg") == 200

    def _config(self, settings: Settings) -> Path:
        environments = sorted({"Production", "Development", settings.alerta_environment})
        return render(
            "alerta/alertad.conf",
            self.data_dir(settings) / "alertad.conf",
            database_url=repr(database_url(settings, DATABASE)),
            database_name=repr(DATABASE),
            admin_user=repr(ADMIN_USER),
            # Signs login tokens only; API keys are how failsoft authenticates.
            secret_key=repr(f"failsoft-local-stack-{settings.alerta_port}"),
            allowed_environments=repr(environments),
            environment=repr(settings.alerta_environment),
        )


def ensure_scoped_keys(settings: Settings) -> dict[str, str]:
    """Each of ``SCOPED_KEYS``' key, made (in ``scoped_key_file``) if missing."""
    keys = {}
    for name in SCOPED_KEYS:
        path = scoped_key_file(settings, name)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(30).encode() + b"\n")
        keys[name] = path.read_text().strip()
    return keys


def scoped_key_file(settings: Settings, name: str) -> Path:
    """The file holding the local Alerta's key ``name`` of ``SCOPED_KEYS``, for
    ``FAILSOFT_ALERTA_API_KEY_FILE``."""
    return settings.state_dir / "alerta" / "keys" / f"{name}.key"


def _make_key(key: str, text: str, scopes: tuple[str, ...], env: dict[str, str], log: Path) -> int:
    """``alertad key`` for ``key`` (it keeps a key it already has); its exit code. It
    prints the key, so the log shows its command line and output with the key masked."""
    command: Command = [_tool("alertad"), "key", "--username", ADMIN_USER, "--text", text]
    command += ["--key", key]
    for scope in scopes:
        command += ["--scope", scope]
    return run_logged(command, log, timeout=KEY_TIMEOUT_S, env=env, secret_arguments=[key])


def _tool(name: str) -> Path:
    return Path(sys.executable).parent / name


def _create_database(settings: Settings) -> None:
    import psycopg2  # the [stack] extra, like alerta-server itself

    connection = psycopg2.connect(
        host=POSTGRES_HOST, port=settings.postgres_port, user=SUPERUSER, dbname="postgres"
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        connection.close()
