"""Alerta (alerta-server under gunicorn) on the stack's PostgreSQL, with an API key required.

The key is ``settings.alerta_api_key``, created by ``alertad key`` (idempotent), so the
failsoft processes that read the same settings can post alerts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import Server, host_of, http_status, render
from streams.stack.postgres import HOST as POSTGRES_HOST
from streams.stack.postgres import SUPERUSER, database_url
from streams.stack.process import Command, run_logged, spawn

DATABASE = "alerta"
ADMIN_USER = "admin@failsoft.local"
WORKERS = 2
KEY_TIMEOUT_S = 60.0


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
        key: Command = [_tool("alertad"), "key", "--username", ADMIN_USER]
        key += ["--key", settings.secret("alerta_api_key"), "--text", "failsoft local stack"]
        code = run_logged(key, log, timeout=KEY_TIMEOUT_S, env=env)
        if code != 0:
            raise self.fail(settings, f"alertad key failed (exit {code})")
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
