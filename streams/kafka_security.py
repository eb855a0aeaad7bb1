"""How every Kafka client reaches the brokers: one set of settings, three client libraries.

The settings (``kafka_security_protocol``, ``kafka_sasl_mechanism``,
``kafka_sasl_username``, ``kafka_sasl_password``/``_file``, ``kafka_ssl_ca_file``) become
librdkafka properties for confluent-kafka (the fleet client, the admin, the simulator),
keyword arguments for aiokafka (the worker's ingest reader) and credentials for Faust
(the worker's app). With the default, PLAINTEXT, nothing is added.

``probe`` asks the brokers for their metadata once, and turns a failure into one line
that names the server and the cause (a refused password, a certificate that does not
verify), where a client would otherwise retry for as long as it lives.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
from typing import TYPE_CHECKING, Any

from streams.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

__all__ = [
    "aiokafka_security",
    "describe",
    "faust_credentials",
    "librdkafka_security",
    "probe",
    "quiet_logger",
]

# librdkafka's error codes that no retry will cure: the broker refused the credentials,
# or the TLS handshake failed (an untrusted certificate, a plaintext port).
_FATAL_CODES = frozenset({"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL"})
# "sasl_ssl://127.0.0.1:19094/bootstrap: " or ".../1: ", before librdkafka's cause.
_BROKER_PREFIX = re.compile(r"^[a-z_]+://[^/\s]+/[^:\s]+: ")


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL")


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol.endswith("SSL")


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """The security properties of a confluent-kafka client (none for PLAINTEXT)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol}
    if _uses_sasl(settings):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.secret("kafka_sasl_password")
    if _uses_tls(settings) and settings.kafka_ssl_ca_file:
        config["ssl.ca.location"] = settings.kafka_ssl_ca_file
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the brokers' certificates and host names against the CA file, or the
    system's trust store without one."""
    return ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of an aiokafka client."""
    arguments: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _uses_sasl(settings):
        arguments["sasl_mechanism"] = settings.kafka_sasl_mechanism
        arguments["sasl_plain_username"] = settings.kafka_sasl_username
        arguments["sasl_plain_password"] = settings.secret("kafka_sasl_password")
    if _uses_tls(settings):
        arguments["ssl_context"] = ssl_context(settings)
    return arguments


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` (None for PLAINTEXT); its repr names no secret."""
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(ssl_context(settings))
    credentials = SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.secret("kafka_sasl_password"),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )
    return credentials


def describe(settings: Settings) -> str:
    """Where and as whom clients connect, for messages: "Kafka at <servers>", and unless
    plaintext " (<protocol> <mechanism> as <user>)"."""
    where = f"Kafka at {settings.kafka_bootstrap}"
    how = settings.kafka_security_protocol
    if how == "PLAINTEXT":
        return where
    if _uses_sasl(settings):
        how += f" {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username or '(no user)'}"
    return f"{where} ({how})"


def quiet_logger(name: str) -> logging.Logger:
    """A logger for librdkafka's own lines that shows nothing unless the application
    configures logging: its failures reach us as errors, which we report once."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def probe(settings: Settings, timeout: float) -> str | None:
    """None when the brokers answer a metadata request within ``timeout`` seconds;
    otherwise one line: where (``describe``) and why.

    A refused password or a certificate that does not verify ends the wait at once
    instead of after ``timeout``.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    fatal: list[str] = []
    failed = threading.Event()

    def on_error(error: Any) -> None:
        if error.name() in _FATAL_CODES and not fatal:
            fatal.append(_cause(error.str()))
            failed.set()

    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        **librdkafka_security(settings),
        "error_cb": on_error,
    }
    admin = AdminClient(
        config,
        logger=quiet_logger("failsoft.kafka.probe"),
    )
    # list_topics blocks in librdkafka and does not serve error callbacks meanwhile:
    # short requests, with the errors polled between them.
    step = 0.5
    waited = 0.0
    cause = "no answer"
    while waited < timeout:
        try:
            admin.list_topics(timeout=min(step, timeout - waited))
            return None
        except KafkaException as error:
            cause = _cause(str(error.args[0].str() if error.args else error))
        admin.poll(0)
        if failed.is_set():
            return f"{describe(settings)}: {fatal[0]}"
        waited += step
    return f"{describe(settings)}: {cause} within {timeout:g} s"


def _cause(text: str) -> str:
    """librdkafka's message without the broker prefix we already name and its counters:
    "sasl_ssl://h:p/bootstrap: SASL authentication error: ... (after 3ms in state ...)"."""
    text = _BROKER_PREFIX.sub("", text, count=1)
    return text.split(" (after ", 1)[0]
