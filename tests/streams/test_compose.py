"""deploy/compose.secured.yaml, which no machine of this project can run (no Docker engine):
what can be checked without running it. It parses; every file it mounts exists; every
variable it reads is one ``failsoft stack secrets`` writes, and the reverse; and its
listener, users, keys and scopes are the local stack's, by the names the code uses."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from streams.stack.alerta import ADMIN_USER, SCOPED_KEYS
from streams.stack.base import DEPLOY_DIR
from streams.stack.control import compose_secrets
from streams.stack.influxdb import USERS
from streams.stack.kafka_auth import BrokerSecrets, secrets_folder

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECURED = DEPLOY / "compose.secured.yaml"
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[?-][^}]*)?\}")


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags, kept as the value they tag."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(tag, _tagged)


def load(path: Path) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def secured() -> dict[str, Any]:
    return load(SECURED)["services"]


def kafka_property(variable: str) -> str:
    """The broker property the apache/kafka image makes of ``variable``
    (KafkaDockerWrapper: ``___`` is ``-``, ``__`` is ``_``, ``_`` is ``.``)."""
    name = variable.removeprefix("KAFKA_").lower().replace("_", ".")
    return name.replace("...", "-").replace("..", "_")


def local_properties() -> dict[str, str]:
    text = (DEPLOY_DIR / "kafka" / "server.properties").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_both_files_parse_and_the_secured_one_changes_only_services_of_the_base() -> None:
    base = load(DEPLOY / "compose.yaml")["services"]
    services = load(SECURED)["services"]
    assert set(services) - set(base) == {"alerta-keys"}


def test_every_file_it_mounts_from_the_repository_exists(secured: dict[str, Any]) -> None:
    mounted = [
        volume.split(":")[0]
        for service in secured.values()
        for volume in service.get("volumes", [])
    ]
    local = [source for source in mounted if source.startswith("./")]
    assert len(local) == 3
    for source in local:
        assert (DEPLOY / source).is_file(), source


def test_its_variables_are_exactly_those_stack_secrets_writes(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    env_file = compose_secrets(settings)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = dict(
        re.fullmatch(r"([A-Z0-9_]+)='([^']*)'", line).groups()  # type: ignore[union-attr]
        for line in env_file.read_text().splitlines()
    )
    assert set(VARIABLE.findall(SECURED.read_text())) == set(written)
    # None of them is a setting of failsoft's own, which they might be mistaken for.
    assert not set(written) & {f"FAILSOFT_{name.upper()}" for name in vars(settings)}
    # What it mounts from the secrets folder is there.
    folder = Path(written["FAILSOFT_COMPOSE_SECRETS_DIR"])
    assert folder == secrets_folder(settings)
    assert BrokerSecrets(folder).keystore == folder / "broker.pem"
    assert (folder / "broker.pem").is_file()
    admin = settings.secret("influxdb_token")
    assert (
        written["FAILSOFT_COMPOSE_INFLUXDB_ADMIN_USER"]
        + ":"
        + written["FAILSOFT_COMPOSE_INFLUXDB_ADMIN_PASSWORD"]
        == admin
    )
    assert written["FAILSOFT_COMPOSE_ALERTA_ADMIN_KEY"] == settings.secret("alerta_api_key")
    # Made once: a second run writes the same secrets.
    assert compose_secrets(settings).read_text() == env_file.read_text()


def test_the_brokers_secured_listener_is_the_local_stacks(secured: dict[str, Any]) -> None:
    settings = Settings()
    environment = secured["kafka"]["environment"]
    properties = {kafka_property(name): str(value) for name, value in environment.items()}
    local = local_properties()
    # The listener's own settings, under its name here (SECURED) and there (SASL_SSL).
    ours = {
        key.replace("listener.name.secured.", ""): value
        for key, value in properties.items()
        if key.startswith("listener.name.secured.")
    }
    theirs = {
        key.replace("listener.name.sasl_ssl.", ""): value
        for key, value in local.items()
        if key.startswith("listener.name.sasl_ssl.")
    }
    assert set(ours) == set(theirs)
    for key in ("sasl.enabled.mechanisms", "ssl.keystore.type"):
        assert ours[key] == theirs[key]
    for mechanism in ("scram-sha-256", "scram-sha-512"):
        key = f"{mechanism}.sasl.jaas.config"
        assert ours[key] == theirs[key]
    for key in ("authorizer.class.name", "super.users", "allow.everyone.if.no.acl.found"):
        assert properties[key] == local[key], key
    assert "SECURED:SASL_SSL" in properties["listener.security.protocol.map"]
    port = settings.kafka_sasl_ssl_port
    assert f"SECURED://127.0.0.1:{port}" in properties["advertised.listeners"]
    assert f"127.0.0.1:{port}:{port}" in secured["kafka"]["ports"]
    mount = secured["kafka"]["volumes"][0].rsplit(":", 2)[1]
    assert ours["ssl.keystore.location"] == mount


def test_influxdb_has_the_local_stacks_users_with_their_rights(secured: dict[str, Any]) -> None:
    environment = secured["influxdb"]["environment"]
    assert environment["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    by_right = {right: user for user, right in USERS.items()}
    assert environment["INFLUXDB_WRITE_USER"] == by_right["WRITE"]
    assert environment["INFLUXDB_READ_USER"] == by_right["READ"]


def test_alerta_makes_the_local_stacks_keys_and_reads_no_key_from_its_environment(
    secured: dict[str, Any],
) -> None:
    assert secured["alerta"]["environment"] == {}
    (script,) = secured["alerta-keys"]["command"]
    made = re.findall(r"--text '([^']+)'\s+--key \"\$\$(\w+)\"((?:\s+--scope \S+)*)", script)
    scopes = {text: tuple(re.findall(r"--scope (\S+)", rest)) for text, _, rest in made}
    assert scopes == {
        "failsoft local stack": (),
        **{f"failsoft {name}": key_scopes for name, key_scopes in SCOPED_KEYS.items()},
    }
    assert script.count("> /dev/null") == len(made)
    assert script.count(f"--username {ADMIN_USER} ") == len(made)
    server = (DEPLOY / "compose" / "alertad.conf").read_text()
    local = (DEPLOY_DIR / "alerta" / "alertad.conf").read_text()
    delete_scopes = re.compile(r"^DELETE_SCOPES = .*$", re.MULTILINE)
    assert delete_scopes.findall(server) == delete_scopes.findall(local)
    assert f"ADMIN_USERS = ['{ADMIN_USER}']" in server
    assert "key" not in (DEPLOY / "compose" / "alerta.conf").read_text().split("[DEFAULT]")[1]
