"""The Kafka security settings, as each client library is given them, and secret settings."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest

from streams.kafka_security import (
    aiokafka_security,
    describe,
    faust_credentials,
    librdkafka_security,
)
from streams.settings import Settings

PASSWORD = "s3cret-password-for-tests"


@pytest.fixture
def sasl_ssl(tmp_path: Path) -> Settings:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    return Settings(
        kafka_bootstrap="broker.example:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="failsoft-worker",
        kafka_sasl_password_file=str(password),
    )


def test_plaintext_adds_nothing_to_any_client() -> None:
    settings = Settings()
    assert librdkafka_security(settings) == {}
    assert aiokafka_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None
    assert describe(settings) == "Kafka at 127.0.0.1:19092"


def test_sasl_ssl_reaches_librdkafka_aiokafka_and_faust_alike(sasl_ssl: Settings) -> None:
    assert librdkafka_security(sasl_ssl) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "failsoft-worker",
        "sasl.password": PASSWORD,
    }
    arguments = aiokafka_security(sasl_ssl)
    context = arguments.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert arguments == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "failsoft-worker",
        "sasl_plain_password": PASSWORD,
    }
    credentials = faust_credentials(sasl_ssl)
    assert credentials is not None
    assert (credentials.protocol.value, credentials.mechanism.value) == (  # type: ignore[attr-defined]
        "SASL_SSL",
        "SCRAM-SHA-256",
    )
    assert PASSWORD not in repr(credentials)
    assert describe(sasl_ssl) == (
        "Kafka at broker.example:9094 (SASL_SSL SCRAM-SHA-256 as failsoft-worker)"
    )


def test_the_ca_file_is_given_to_librdkafka_only_with_tls(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    tls = Settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=ca)
    assert librdkafka_security(tls) == {"security.protocol": "SSL", "ssl.ca.location": ca}
    sasl = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="key",
        kafka_sasl_password="secret",
        kafka_ssl_ca_file=ca,
    )
    assert "ssl.ca.location" not in librdkafka_security(sasl)
    assert "ssl_context" not in aiokafka_security(sasl)


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("FAILSOFT_KAFKA_SECURITY_PROTOCOL", "TLS", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ("FAILSOFT_KAFKA_SASL_MECHANISM", "GSSAPI", "SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
    ],
)
def test_an_unknown_protocol_or_mechanism_names_the_valid_ones(
    name: str, value: str, valid: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name}='{value}': expected one of {valid}$"):
        Settings.from_env({name: value})


def test_no_secret_is_in_the_settings_repr(sasl_ssl: Settings) -> None:
    settings = dataclasses.replace(
        sasl_ssl,
        kafka_sasl_password_file="",
        kafka_sasl_password=PASSWORD,
        influxdb_token="writer:" + PASSWORD,
        alerta_api_key="key-" + PASSWORD,
        control_private_key="k1=" + PASSWORD,
    )
    assert PASSWORD not in repr(settings)


def test_a_secret_comes_inline_or_from_its_file_whose_newline_is_dropped(
    sasl_ssl: Settings, tmp_path: Path
) -> None:
    assert sasl_ssl.secret("kafka_sasl_password") == PASSWORD
    assert Settings(kafka_sasl_password=PASSWORD).secret("kafka_sasl_password") == PASSWORD
    # A file replaces the local stack's default token and key.
    token = tmp_path / "token"
    token.write_text("writer:pw\n")
    assert Settings(influxdb_token_file=str(token)).secret("influxdb_token") == "writer:pw"
    key = tmp_path / "key"
    key.write_text("alerta-key")
    assert Settings(alerta_api_key_file=str(key)).secret("alerta_api_key") == "alerta-key"


def test_a_secret_set_twice_or_unreadable_is_an_error_that_does_not_show_it(
    sasl_ssl: Settings, tmp_path: Path
) -> None:
    both = dataclasses.replace(sasl_ssl, kafka_sasl_password=PASSWORD)
    with pytest.raises(ValueError) as twice:
        both.secret("kafka_sasl_password")
    assert str(twice.value) == (
        "set FAILSOFT_KAFKA_SASL_PASSWORD or FAILSOFT_KAFKA_SASL_PASSWORD_FILE, not both"
    )
    missing = str(tmp_path / "absent")
    with pytest.raises(ValueError) as unreadable:
        Settings(kafka_sasl_password_file=missing).secret("kafka_sasl_password")
    assert str(unreadable.value) == (
        f"FAILSOFT_KAFKA_SASL_PASSWORD_FILE={missing!r}: No such file or directory"
    )
