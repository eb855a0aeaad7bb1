"""Apache Kafka as a single KRaft node, from Maven Central's jars, with a log4j2 backend."""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from pathlib import Path

from streams.settings import Settings
from streams.stack.base import DEPLOY_DIR, Server, host_of, render
from streams.stack.process import run_logged, spawn

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HEAP = "-Xmx512m"
DOWNLOAD_TIMEOUT_S = 15 * 60.0
FORMAT_TIMEOUT_S = 120.0


class KafkaServer(Server):
    name = "kafka"

    def __init__(self, version: str = KAFKA_VERSION) -> None:
        self.version = version

    def address(self, settings: Settings) -> str:
        return settings.kafka_bootstrap.split(",")[0]

    def ports(self, settings: Settings) -> list[tuple[str, int]]:
        host = host_of(settings.kafka_bootstrap)
        return [(host, settings.kafka_port), (host, settings.kafka_controller_port)]

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
        config = render(
            "kafka/server.properties",
            home / "server.properties",
            host=host_of(settings.kafka_bootstrap),
            kafka_port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            data_dir=data,
        )
        classpath = f"{self.lib_dir(settings)}/*"
        log = self.log(settings)
        if not (data / "meta.properties").exists():
            command = [java, "-cp", classpath, "kafka.tools.StorageTool", "format"]
            command += ["-t", cluster_id(), "-c", str(config)]
            code = run_logged(command, log, timeout=FORMAT_TIMEOUT_S)
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

        quiet = logging.getLogger("failsoft.stack.kafka.probe")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap}, logger=quiet)
        try:
            metadata = admin.list_topics(timeout=2.0)
        except Exception:  # KafkaException while the broker is not up yet
            return False
        return bool(metadata.brokers)


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, url-safe base64 without padding, no leading '-'."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded
