"""The local broker's SASL_SSL listener: its CA and certificate, its SCRAM users, their ACLs.

Made on the broker's first start, in its data folder: a CA and a broker certificate for
127.0.0.1 and localhost (PEM; the broker reads its key and chain from one PEM file), and
a random password per principal, each file readable by its owner only. The users are
created when the storage is formatted (``--add-scram``), and again, if missing, by the
admin API on every start: a data folder formatted by an older failsoft has none.

The plaintext listener keeps working as before: its principal, ``User:ANONYMOUS``, is a
super user, so every client that does not authenticate keeps full access. That listener
stands for the trusted operator on the broker's own host; the SASL_SSL listener is what
a serving node or a worker elsewhere would use, and there each principal may do only
what ``acl_bindings`` grants it (least privilege; Kafka denies what no ACL allows).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.settings import Settings
from streams.stack.base import write_private
from streams.topics import (
    CONTROL,
    DEAD_LETTERS,
    FEATURE_WRITES,
    GROUND_TRUTH,
    PREDICTIONS,
    TopicSpec,
)

if TYPE_CHECKING:
    from confluent_kafka.admin import AclBinding, AdminClient

# Every principal of the SASL_SSL listener, by what it stands for.
WORKER = "failsoft-worker"
FLEET = "failsoft-fleet"
WRITERS = "failsoft-writers"
# The simulator stands in for the fleet and the feature store's writers at once.
SIMULATOR = "failsoft-simulator"
PRINCIPALS = (WORKER, FLEET, WRITERS, SIMULATOR)
# Both SCRAM mechanisms, so a client may pick either.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# The fleet's control listeners carry a group id of this prefix (streams.fleet.kafka_config).
FLEET_LISTENER_GROUPS = "failsoft-fleet-listener-"
CERTIFICATE_DAYS = 3650


@dataclasses.dataclass(frozen=True)
class BrokerSecrets:
    """Where the local broker's TLS material and users' passwords live."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The CA's certificate: what clients trust (``FAILSOFT_KAFKA_SSL_CA_FILE``)."""
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's private key and certificate chain, for ``ssl.keystore.type=PEM``."""
        return self.folder / "broker.pem"

    def password_file(self, principal: str) -> Path:
        return self.folder / "users" / f"{principal}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text().strip()

    def ensure(self, hosts: Iterable[str]) -> None:
        """Make what is missing: the CA and broker certificate, and each user's password."""
        if not (self.ca_file.exists() and self.keystore.exists()):
            ca, keystore = make_certificates(sorted(set(hosts)))
            write_private(self.keystore, keystore)
            self.ca_file.write_bytes(ca)
        for principal in PRINCIPALS:
            path = self.password_file(principal)
            if not path.exists():
                write_private(path, secrets.token_urlsafe(24).encode() + b"\n")

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every user."""
        arguments = []
        for principal in PRINCIPALS:
            for mechanism in SCRAM_MECHANISMS:
                credential = f"{mechanism}=[name={principal},password={self.password(principal)}]"
                arguments += ["--add-scram", credential]
        return arguments


def make_certificates(hosts: list[str]) -> tuple[bytes, bytes]:
    """A new CA's certificate, and a PEM keystore (unencrypted PKCS#8 key, then the chain)
    of a broker certificate that the CA signed for ``hosts`` (names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    validity = (
        now - datetime.timedelta(minutes=5),
        now + datetime.timedelta(days=CERTIFICATE_DAYS),
    )
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "failsoft local stack CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    broker = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    keystore = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keystore += broker.public_bytes(pem) + ca.public_bytes(pem)
    return ca.public_bytes(pem), keystore


def client_settings(settings: Settings, principal: str) -> Settings:
    """``settings`` for a client of the local broker's SASL_SSL listener as ``principal``:
    what a deployment sets through ``FAILSOFT_KAFKA_*`` (the password by file)."""
    broker_secrets = BrokerSecrets(secrets_folder(settings))
    host = settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]
    return dataclasses.replace(
        settings,
        kafka_bootstrap=f"{host}:{settings.kafka_sasl_ssl_port}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=principal,
        kafka_sasl_password="",
        kafka_sasl_password_file=str(broker_secrets.password_file(principal)),
        kafka_ssl_ca_file=str(broker_secrets.ca_file),
    )


def secrets_folder(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "secrets"


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """Least privilege for the topics and groups of ``settings`` (its topic prefix and
    worker app id): what each principal needs, nothing more.

    - the worker reads the inputs, writes control commands and dead letters, checks the
      catalogue's configs (``ensure_topics``), owns its app's internal topics and
      changelogs (``<prefix><app id>-``) and uses its groups (``<app id>``...);
    - the fleet reads control (in groups of its listeners' prefix) and writes predictions;
    - the writers write feature writes and ground truth;
    - the simulator writes the three inputs.
    """
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    bindings: list[AclBinding] = []

    def allow(
        principal: str,
        kind: Any,
        name: str,
        operations: Iterable[Any],
        pattern: Any = ResourcePatternType.LITERAL,
    ) -> None:
        for operation in operations:
            bindings.append(
                AclBinding(
                    kind,
                    name,
                    pattern,
                    f"User:{principal}",
                    "*",
                    operation,
                    AclPermissionType.ALLOW,
                )
            )

    def topic(principal: str, spec: TopicSpec, *operations: Any) -> None:
        allow(principal, ResourceType.TOPIC, spec.name(settings), operations)

    read, write = AclOperation.READ, AclOperation.WRITE
    describe_configs = AclOperation.DESCRIBE_CONFIGS
    for spec in (PREDICTIONS, GROUND_TRUTH, FEATURE_WRITES):
        topic(WORKER, spec, read, describe_configs)
    for spec in (CONTROL, DEAD_LETTERS):
        topic(WORKER, spec, write, describe_configs)
    app_prefix = f"{settings.topic_prefix}{settings.worker_app_id}-"
    prefixed = ResourcePatternType.PREFIXED
    allow(WORKER, ResourceType.TOPIC, app_prefix, [AclOperation.ALL], prefixed)
    allow(WORKER, ResourceType.GROUP, settings.worker_app_id, [read], prefixed)
    topic(FLEET, CONTROL, read)
    topic(FLEET, PREDICTIONS, write)
    allow(FLEET, ResourceType.GROUP, FLEET_LISTENER_GROUPS, [read], prefixed)
    for spec in (FEATURE_WRITES, GROUND_TRUTH):
        topic(WRITERS, spec, write)
    for spec in (PREDICTIONS, FEATURE_WRITES, GROUND_TRUTH):
        topic(SIMULATOR, spec, write)
    return bindings


def grant(admin: AdminClient, settings: Settings, timeout: float = 30.0) -> None:
    """Create ``acl_bindings(settings)`` (idempotent) with a super user's ``admin``, and
    return once the broker applies them: the controller acknowledges them first, and a
    client let in at once was refused (seen in about one try of three here)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    bindings = acl_bindings(settings)
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout=timeout)
    # None matches any name, principal and host (confluent-kafka's documentation; its
    # type stubs say str).
    anything: Any = None
    every = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    wanted = {str(binding) for binding in bindings}
    deadline = time.monotonic() + timeout
    while True:
        applied = admin.describe_acls(every, request_timeout=timeout).result(timeout=timeout)
        missing = wanted - {str(binding) for binding in applied}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(missing)} ACLs not applied within {timeout:g} s")
        time.sleep(0.1)


def revoke(admin: AdminClient, settings: Settings, timeout: float = 30.0) -> None:
    """Delete ``acl_bindings(settings)`` but those every prefix shares: a test's topic
    prefix leaves none behind."""
    from confluent_kafka.admin import AclBindingFilter

    filters = [
        AclBindingFilter(
            binding.restype,
            binding.name,
            binding.resource_pattern_type,
            binding.principal,
            binding.host,
            binding.operation,
            binding.permission_type,
        )
        for binding in acl_bindings(settings)
        # Shared by every topic prefix: the fleet's listener groups.
        if binding.name != FLEET_LISTENER_GROUPS
    ]
    for future in admin.delete_acls(filters, request_timeout=timeout).values():
        future.result(timeout=timeout)


def ensure_users(admin: AdminClient, broker_secrets: BrokerSecrets, timeout: float = 30.0) -> int:
    """Create the users that the broker lacks; how many were missing."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    described = admin.describe_user_scram_credentials(list(PRINCIPALS), request_timeout=timeout)
    assert isinstance(described, dict)  # a list of users gives a future per user
    known = {user for user, future in described.items() if _described(future, timeout)}
    missing = [principal for principal in PRINCIPALS if principal not in known]
    # One request per mechanism: the broker refuses a user altered twice in one request.
    for mechanism in SCRAM_MECHANISMS:
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                principal,
                ScramCredentialInfo(getattr(ScramMechanism, mechanism.replace("-", "_")), 4096),
                broker_secrets.password(principal).encode(),
            )
            for principal in missing
        ]
        if upserts:
            altered = admin.alter_user_scram_credentials(upserts, request_timeout=timeout)
            for future in altered.values():
                future.result(timeout=timeout)
    return len(missing)


def _described(future: Any, timeout: float) -> bool:
    from confluent_kafka import KafkaException

    try:
        return bool(future.result(timeout=timeout).scram_credential_infos)
    except KafkaException:  # RESOURCE_NOT_FOUND: no such user
        return False
