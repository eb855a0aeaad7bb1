"""PostgreSQL from Debian's package, as a private cluster (initdb and pg_ctl, not systemd).

PostgreSQL refuses to run as root, so as root the cluster runs as user ``postgres`` and
lives under that user's home (root's own home is closed to it); the state folder links to
it. Run as anyone else, the cluster is simply in the state folder.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import Server
from streams.stack.process import Command, group_alive, run_logged

HOST = "127.0.0.1"
SUPERUSER = "postgres"
PG_ROOT = Path("/usr/lib/postgresql")
PG_CTL_TIMEOUT_S = 60


class PostgresServer(Server):
    name = "postgres"

    def address(self, settings: Settings) -> str:
        return f"{HOST}:{settings.postgres_port}"

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        return [(HOST, settings.postgres_port)]

    def install(self, settings: Settings) -> None:
        if _bin_dir() is None:
            raise self.fail(
                settings,
                f"no PostgreSQL server under {PG_ROOT} (apt-get install postgresql)",
                self.install_log(settings),
            )

    def cluster_dir(self, settings: Settings) -> Path:
        """The cluster's own folder: ``data/`` plus the server log."""
        link = self.data_dir(settings)
        if os.geteuid() != 0:
            return link
        state_key = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
        real = Path(pwd.getpwnam(SUPERUSER).pw_dir) / "failsoft" / state_key
        real.mkdir(parents=True, exist_ok=True)
        os.chown(real, *_postgres_ids())
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(real, target_is_directory=True)
        return real

    def launch(self, settings: Settings) -> int:
        bin_dir = _bin_dir()
        assert bin_dir is not None  # install() checked
        cluster = self.cluster_dir(settings)
        data = cluster / "data"
        server_log = cluster / "server.log"
        log = self.log(settings)
        if not server_log.exists():
            server_log.touch()
            if os.geteuid() == 0:
                os.chown(server_log, *_postgres_ids())
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.resolve() != server_log.resolve():
            log.unlink(missing_ok=True)
            log.symlink_to(server_log)
        if not (data / "PG_VERSION").exists():
            initdb: Command = [bin_dir / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust"]
            initdb += ["-E", "UTF8", "--locale=C.UTF-8"]
            if self._run(initdb, settings) != 0:
                raise self.fail(settings, "initdb failed")
        options = f"-c listen_addresses={HOST} -p {settings.postgres_port} -k {cluster}"
        start: Command = [bin_dir / "pg_ctl", "-D", data, "-l", server_log, "-w"]
        start += ["-t", str(PG_CTL_TIMEOUT_S), "-o", options, "start"]
        if self._run(start, settings) != 0:
            raise self.fail(settings, "pg_ctl start failed")
        return int((data / "postmaster.pid").read_text().split()[0])

    def healthy(self, settings: Settings) -> bool:
        bin_dir = _bin_dir()
        if bin_dir is None:
            return False
        probe: Command = [
            bin_dir / "pg_isready",
            "-q",
            "-h",
            HOST,
            "-p",
            str(settings.postgres_port),
        ]
        return subprocess.run(probe, check=False, timeout=10).returncode == 0

    def halt(self, settings: Settings, pid: int) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        data = self.cluster_dir(settings) / "data"
        stop: Command = [bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w"]
        self._run([*stop, "-t", str(PG_CTL_TIMEOUT_S), "stop"], settings)
        if group_alive(pid):
            super().halt(settings, pid)

    def _run(self, command: Command, settings: Settings) -> int:
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        return run_logged(command, self.log(settings), timeout=PG_CTL_TIMEOUT_S + 30)


def database_url(settings: Settings, database: str) -> str:
    return f"postgres://{SUPERUSER}@{HOST}:{settings.postgres_port}/{database}"


def _bin_dir() -> Path | None:
    """The newest installed server's binaries, e.g. ``/usr/lib/postgresql/15/bin``."""
    found = [path.parent for path in PG_ROOT.glob("*/bin/pg_ctl")]
    return max(found, key=lambda path: int(path.parent.name), default=None)


def _postgres_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(SUPERUSER)
    return entry.pw_uid, entry.pw_gid
