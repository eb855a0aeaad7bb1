"""The local broker's TLS material and least-privilege ACLs, without a broker."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from cryptography import x509

from streams.settings import Settings
from streams.stack.kafka_auth import (
    FLEET,
    PRINCIPALS,
    SIMULATOR,
    WORKER,
    WRITERS,
    BrokerSecrets,
    acl_bindings,
    make_certificates,
)

SETTINGS = Settings(topic_prefix="p.", worker_app_id="app")


def grants() -> dict[str, set[tuple[str, str, str]]]:
    """Per principal: (resource, name with * for a prefix, operation)."""
    found: dict[str, set[tuple[str, str, str]]] = {}
    for binding in acl_bindings(SETTINGS):
        principal = binding.principal.removeprefix("User:")
        prefixed = binding.resource_pattern_type == ResourcePatternType.PREFIXED
        name = binding.name + ("*" if prefixed else "")
        kind = "topic" if binding.restype == ResourceType.TOPIC else "group"
        operation = AclOperation(binding.operation).name
        found.setdefault(principal, set()).add((kind, name, operation))
    return found


def test_each_principal_is_granted_exactly_what_it_needs() -> None:
    assert grants() == {
        WORKER: {
            ("topic", "p.predictions", "READ"),
            ("topic", "p.predictions", "DESCRIBE_CONFIGS"),
            ("topic", "p.ground-truth", "READ"),
            ("topic", "p.ground-truth", "DESCRIBE_CONFIGS"),
            ("topic", "p.feature-writes", "READ"),
            ("topic", "p.feature-writes", "DESCRIBE_CONFIGS"),
            ("topic", "p.control", "WRITE"),
            ("topic", "p.control", "DESCRIBE_CONFIGS"),
            ("topic", "p.dead-letters", "WRITE"),
            ("topic", "p.dead-letters", "DESCRIBE_CONFIGS"),
            ("topic", "p.app-*", "ALL"),
            ("group", "app*", "READ"),
        },
        FLEET: {
            ("topic", "p.control", "READ"),
            ("topic", "p.predictions", "WRITE"),
            ("group", "failsoft-fleet-listener-*", "READ"),
        },
        WRITERS: {("topic", "p.feature-writes", "WRITE"), ("topic", "p.ground-truth", "WRITE")},
        SIMULATOR: {
            ("topic", "p.predictions", "WRITE"),
            ("topic", "p.feature-writes", "WRITE"),
            ("topic", "p.ground-truth", "WRITE"),
        },
    }


def test_the_broker_certificate_is_the_ca_s_for_the_hosts_and_private_files_are_0600(
    tmp_path: Path,
) -> None:
    secrets = BrokerSecrets(tmp_path / "secrets")
    secrets.ensure(["127.0.0.1", "localhost"])
    ca = x509.load_pem_x509_certificate(secrets.ca_file.read_bytes())
    keystore = secrets.keystore.read_bytes()
    assert keystore.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    broker, chained_ca = x509.load_pem_x509_certificates(keystore)
    assert chained_ca == ca
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    private = [secrets.keystore, *(secrets.password_file(p) for p in PRINCIPALS)]
    assert {stat.S_IMODE(path.stat().st_mode) for path in private} == {0o600}
    assert len({secrets.password(p) for p in PRINCIPALS}) == len(PRINCIPALS)
    # A second start keeps what the first made.
    before = [path.read_bytes() for path in private]
    secrets.ensure(["127.0.0.1", "localhost"])
    assert [path.read_bytes() for path in private] == before


def test_each_start_of_a_new_stack_makes_a_new_ca() -> None:
    first, _ = make_certificates(["127.0.0.1"])
    second, _ = make_certificates(["127.0.0.1"])
    assert first != second
