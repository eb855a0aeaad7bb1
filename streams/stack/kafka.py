"""Apache Kafka as a single KRaft node, from Maven Central's jars, with a log4j2 backend."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

from streams.kafka_security import quiet_logger
from streams.settings import Settings
from streams.stack.base import DEPLOY_DIR, Server, host_of, render
from streams.stack.kafka_auth import BrokerSecrets, ensure_users, grant, secrets_folder
from streams.stack.process import run_logged, spawn

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HEAP = "-Xmx512m"
DOWNLOAD_TIMEOUT_S = 15 * 60.0
FORMAT_TIMEOUT_S = 120.0


class KafkaServer(Server):
    name = "kafka"
    # A start after a crash waits out the dead incarnation's session (30 s, see
    # broker.session.timeout.ms in deploy/local/kafka/server.properties) on top of the
    # broker's own start, which took up to 50 s on the loaded development machine.
    start_timeout_s = 150.0

    def __init__(self, version: str = KAFKA_VERSION) -> None:
        self.version = version

    def address(self, settings: Settings) -> str:
        return settings.kafka_bootstrap.split(",")[0]

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        host = host_of(settings.kafka_bootstrap)
        return [
            (host, settings.kafka_port),
            (host, settings.kafka_controller_port),
            (host, settings.kafka_sasl_ssl_port),
        ]

    def lib_dir(self, settings: Settings) -> Path:
        return settings.cache_dir / "kafka" / self.version / "lib"

    def needs_install(self, settings: Settings) -> bool:
        return not (self.lib_dir(settings) / ".complete").exists()

    def install(self, settings: Settings) -> None:
        if not self.needs_install(settings):
            return
        lib = self.lib_dir(settings)
        log = self.install_log(settings)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise self.fail(settings, "mvn is not on PATH (install Maven)", log)
        work = lib.parent
        partial = work / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        pom = work / "pom.xml"
        render("kafka/pom.xml", pom, kafka_version=self.version, log4j_version=LOG4J_VERSION)
        code = run_logged(
            [
                mvn,
                "--batch-mode",
                "--no-transfer-progress",
                f"-Dmaven.repo.local={settings.cache_dir / 'maven'}",
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={partial}",
                "-DincludeScope=runtime",
            ],
            log,
            timeout=DOWNLOAD_TIMEOUT_S,
            cwd=work,
        )
        if code != 0:
            raise self.fail(
                settings, f"download of kafka_2.13 {self.version} failed (mvn exit {code})", log
            )
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        (lib / ".complete").touch()

    def launch(self, settings: Settings) -> int:
        java = shutil.which("java")
        if java is None:
            raise self.fail(settings, "java is not on PATH (install a JDK 17 or newer)")
        home = self.data_dir(settings)
        data = home / "data"
        host = host_of(settings.kafka_bootstrap)
        broker_secrets = BrokerSecrets(secrets_folder(settings))
        broker_secrets.ensure([host, "127.0.0.1", "localhost"])
        config = render(
            "kafka/server.properties",
            home / "server.properties",
            host=host,
            kafka_port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            sasl_ssl_port=settings.kafka_sasl_ssl_port,
            keystore=broker_secrets.keystore,
            data_dir=data,
        )
        classpath = f"{self.lib_dir(settings)}/*"
        log = self.log(settings)
        if not (data / "meta.properties").exists():
            command = [java, "-cp", classpath, "kafka.tools.StorageTool", "format"]
            command += ["-t", cluster_id(), "-c", str(config)]
            users = broker_secrets.scram_arguments()
            command += users
            code = run_logged(command, log, timeout=FORMAT_TIMEOUT_S, secret_arguments=users[1::2])
            if code != 0:
                raise self.fail(settings, f"formatting the storage failed (exit {code})")
        process = spawn(
            [
                java,
                HEAP,
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                config,
            ],
            log,
        )
        return process.pid

    def healthy(self, settings: Settings) -> bool:
        # Imported here: the CLI must not load confluent-kafka for unrelated commands.
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": settings.kafka_bootstrap},
            logger=quiet_logger("failsoft.stack.kafka.probe"),
        )
        try:
            metadata = admin.list_topics(timeout=2.0)
        except Exception:  # KafkaException while the broker is not up yet
            return False
        return bool(metadata.brokers)

    def after_start(self, settings: Settings) -> None:
        """The SASL_SSL listener's users (a data folder formatted before it existed has
        none) and the least-privilege ACLs of the settings' topic prefix and app id."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": settings.kafka_bootstrap},
            logger=quiet_logger("failsoft.stack.kafka.admin"),
        )
        ensure_users(admin, BrokerSecrets(secrets_folder(settings)))
        grant(admin, settings)


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, url-safe base64 without padding, no leading '-'."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded
