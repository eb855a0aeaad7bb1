"""Kafka over SASL_SSL on the real local broker: least privilege, refusals and clear errors.

The local stack's broker has a SASL_SSL listener beside the plaintext one, with a SCRAM
user per principal and ACLs for a topic prefix (``streams.stack.kafka_auth``). Each test
works under a prefix and app id of its own, whose topics it creates and whose ACLs it
grants through the plaintext listener (a super user's), and removes both afterwards.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from schemas.contracts import Prediction
from streams.control import publish_command
from streams.demo.run import DemoOptions, DemoRun, settings_env
from streams.fleet import ControlListener, PredictionLogger
from streams.kafka_security import probe
from streams.settings import Settings
from streams.stack.alerta import SCOPED_KEYS, scoped_key_file
from streams.stack.influxdb import USERS, user_token_file
from streams.stack.kafka_auth import (
    FLEET,
    PRINCIPALS,
    SIMULATOR,
    WORKER,
    WRITERS,
    BrokerSecrets,
    client_settings,
    grant,
    make_certificates,
    revoke,
    secrets_folder,
)
from streams.topics import CATALOGUE, CONTROL, PREDICTIONS, admin_client, ensure_topics
from tests.conftest import PrivateKafka
from tests.fleet.helpers import command, fleet_settings, node_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEQ = 1_796_000_000_000
# The acceptance bound for a refused password or an untrusted certificate.
ONE_LINE_WITHIN_S = 15.0

# The end-to-end test's run (tests/integration/test_end_to_end.py), with its abrupt drift
# alone: it must bring a fallback command, sent by the worker principal and obeyed by a
# node of the fleet principal, and a restore once it ends.
SCENARIO = """
schema_version = 1
name = "secured-loop"
description = "One abrupt drift, over SASL_SSL"

[run]
models = 8
seed = 11
time_scale = 1440
duration = "90s"
rate = 400

[[incidents]]
kind = "drift_abrupt"
model = "fraud-001"
feature = "fraud-001.amount"
at = "10h"
until = "20h"
shift = 3.0
"""


@pytest.fixture
def plain(stack_settings: Settings, kafka_bootstrap: str, unique_name: str) -> Iterator[Settings]:
    """Settings of the test's own prefix and app id on the plaintext listener, with the
    catalogue's topics created and every principal's ACLs granted for them."""
    settings = dataclasses.replace(
        fleet_settings(stack_settings, kafka_bootstrap, unique_name),
        worker_app_id=f"failsoft-{unique_name}",
    )
    admin = admin_client(settings)
    ensure_topics(settings, CATALOGUE, admin=admin)
    grant(admin, settings)
    try:
        yield settings
    finally:
        _remove(admin, settings)


def _remove(admin: AdminClient, settings: Settings) -> None:
    """Revoke the ACLs of ``settings``' prefix and delete its topics."""
    revoke(admin, settings)
    topics = admin.list_topics(timeout=30).topics
    names = [name for name in topics if name.startswith(settings.topic_prefix)]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)


def test_the_fleet_principal_reads_control_and_writes_predictions_but_cannot_command(
    plain: Settings,
) -> None:
    fleet = client_settings(plain, FLEET)
    publish_command(plain, command(plain, "recs", "fallback", SEQ))
    logger = PredictionLogger(fleet, linger_ms=0)
    try:
        with ControlListener(node_settings(fleet)) as listener:
            assert listener.wait_bootstrapped(30)
            assert listener.mode("recs") == "fallback"
            assert logger.log(_prediction("recs"))
            assert logger.flush(30) == 0
            assert logger.stats().delivered == 1

            # A node's credentials cannot write a command, even one genuinely signed and
            # sent through the node's own producer, which counts the broker's refusal.
            restore = command(plain, "recs", "restore", SEQ + 1)
            with pytest.raises(KafkaException) as refused:
                publish_command(fleet, restore, producer=logger.producer)
            assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
            assert logger.stats().refused == {
                CONTROL.name(fleet): {"TOPIC_AUTHORIZATION_FAILED": 1}
            }
            time.sleep(1.0)
            assert listener.mode("recs") == "fallback"
            assert listener.stats().applied == 1
    finally:
        logger.close()


def test_a_principal_refused_a_topic_is_counted_on_the_node(plain: Settings) -> None:
    # The writers may not write predictions: a node given their credentials by mistake
    # loses its predictions to the broker's refusal, and counts them.
    logger = PredictionLogger(client_settings(plain, WRITERS), linger_ms=0)
    try:
        for _ in range(3):
            assert logger.log(_prediction("recs"))
        logger.flush(30)
        stats = logger.stats()
        assert (stats.delivered, stats.failed, stats.in_flight) == (0, 3, 0)
        assert "TOPIC_AUTHORIZATION_FAILED" in (stats.last_loss or "")
        assert stats.refused == {logger.topic: {"TOPIC_AUTHORIZATION_FAILED": stats.batches}}
    finally:
        logger.close()


def test_the_worker_principal_writes_commands_but_not_predictions(plain: Settings) -> None:
    worker = client_settings(plain, WORKER)
    publish_command(worker, command(plain, "recs", "fallback", SEQ))
    logger = PredictionLogger(worker, linger_ms=0)
    try:
        assert logger.log(_prediction("recs"))
        logger.flush(30)
        assert (logger.stats().delivered, logger.stats().failed) == (0, 1)
    finally:
        logger.close()


def test_stack_grant_gives_a_new_prefix_its_principals_rights(
    stack_settings: Settings, kafka_bootstrap: str, unique_name: str
) -> None:
    settings = dataclasses.replace(
        fleet_settings(stack_settings, kafka_bootstrap, unique_name),
        worker_app_id=f"failsoft-{unique_name}",
    )
    admin = admin_client(settings)
    ensure_topics(settings, CATALOGUE, admin=admin)
    try:
        assert _fleet_predictions_refused(settings) == {
            PREDICTIONS.name(settings): {"TOPIC_AUTHORIZATION_FAILED": 1}
        }
        run = subprocess.run(
            [sys.executable, "-m", "streams.cli", "stack", "grant"],
            env=settings_env(settings),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert f"prefix {settings.topic_prefix!r}" in run.stdout
        assert _fleet_predictions_refused(settings) == {}
    finally:
        _remove(admin, settings)


def _fleet_predictions_refused(settings: Settings) -> dict[str, dict[str, int]]:
    """What the broker refuses of one prediction that the fleet principal logs."""
    logger = PredictionLogger(client_settings(settings, FLEET), linger_ms=0)
    try:
        assert logger.log(_prediction("recs"))
        assert logger.flush(30) == 0
        stats = logger.stats()
        assert stats.delivered + stats.failed == 1
        return {topic: dict(causes) for topic, causes in stats.refused.items()}
    finally:
        logger.close()


@pytest.mark.parametrize("command_line", [["worker"], ["topics", "create"]])
@pytest.mark.parametrize("fault", ["wrong password", "untrusted CA"])
def test_a_refused_password_or_an_untrusted_certificate_is_one_line_and_exit_1(
    plain: Settings, tmp_path: Path, fault: str, command_line: list[str]
) -> None:
    settings = dataclasses.replace(
        client_settings(plain, WORKER),
        worker_store="memory://",
        worker_data_dir=tmp_path / "worker",
    )
    if fault == "wrong password":
        wrong = tmp_path / "password"
        wrong.write_text("not-the-password\n")
        settings = dataclasses.replace(settings, kafka_sasl_password_file=str(wrong))
        cause = "Authentication failed"
    else:
        other_ca, _ = make_certificates(["127.0.0.1"])
        (tmp_path / "other-ca.pem").write_bytes(other_ca)
        settings = dataclasses.replace(settings, kafka_ssl_ca_file=str(tmp_path / "other-ca.pem"))
        cause = "certificate verify failed"
    began = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command_line],
        env=settings_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began
    print(f"{' '.join(command_line)}, {fault}: exit {run.returncode} in {took:.1f} s")
    assert run.returncode == 1, run.stderr
    assert took < ONE_LINE_WITHIN_S
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert f"Kafka at {settings.kafka_bootstrap} (SASL_SSL SCRAM-SHA-512 as {WORKER})" in lines[0]
    assert cause in lines[0]
    assert run.stdout.count("\n") <= 1  # the worker's line on its portfolio, at most
    assert _leaked(settings, run.stdout + run.stderr) == set()


def test_the_loop_runs_over_sasl_ssl_with_least_privilege_principals(
    stack_settings: Settings,
    kafka_bootstrap: str,
    alerta_client: object,
    influxdb_client: object,
    unique_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = tmp_path / "secured-loop.toml"
    scenario.write_text(SCENARIO)
    options = DemoOptions(scenario=scenario, run_id=unique_name, run_dir=tmp_path / "run")
    keys = fleet_settings(stack_settings, kafka_bootstrap, "unused")
    run = SecuredRun(
        dataclasses.replace(keys, topic_prefix=stack_settings.topic_prefix), options, say=print
    )
    # The run's own prefix and app id: grant them too.
    admin = admin_client(run.settings)
    grant(admin, run.settings)
    try:
        run.prepare()
        run.start_worker()
        run.wait_worker_ready()
        run.start_node()
        run.start_taps(None, None)
        run.start_simulator()
        run.play()
        report = run.finish()
    finally:
        run.close()
        revoke(admin, run.settings)
    (row,) = report.incidents
    assert row.detected_at is not None, report.to_markdown()
    assert row.alert_id is not None, row
    assert row.command_at is not None and row.switched_at is not None, row
    assert row.recovered, row
    assert report.false_fallbacks == ()
    logs = "".join(path.read_text(errors="replace") for path in options.run_dir.glob("*.log"))
    for server in ("kafka", "alerta", "influxdb"):
        server_log = stack_settings.state_dir / "logs" / f"{server}.log"
        logs += server_log.read_text(errors="replace")
    logs += capsys.readouterr().out
    assert _leaked(run.settings, logs) == set()
    print(report.to_markdown())  # after the output was searched, for the run's log


class SecuredRun(DemoRun):
    """The demo's run, with the worker, the simulator and the node each on the SASL_SSL
    listener as its own principal; the run's set-up and its observers stay on the
    plaintext listener, as an operator's would."""

    PRINCIPAL_OF: ClassVar[dict[str, str]] = {"worker": WORKER, "simulate": SIMULATOR}

    def _spawn(self, name: str, args: list[str]) -> None:  # type: ignore[override]
        plain = self.settings
        self.settings = client_settings(plain, self.PRINCIPAL_OF[name])
        if name == "worker":
            # InfluxDB's writer user, which may write the database and not read it.
            writer = str(user_token_file(plain, "failsoft-writer"))
            self.settings = dataclasses.replace(self.settings, influxdb_token_file=writer)
        try:
            super()._spawn(name, args)
        finally:
            self.settings = plain

    def start_node(self) -> None:
        plain = self.settings
        self.settings = client_settings(plain, FLEET)
        try:
            super().start_node()
        finally:
            self.settings = plain


def _prediction(model_id: str) -> Prediction:
    from tests.fleet.test_prediction_logger import example_prediction

    return msgspec.structs.replace(example_prediction(), model_id=model_id)


def _leaked(settings: Settings, text: str) -> set[str]:
    """Which secrets of the run ``text`` holds: the principals' passwords, the Alerta
    keys (the admin's, well known in the local stack, too) and the control private key,
    by whom they belong to."""
    broker = BrokerSecrets(secrets_folder(settings))
    secrets = {principal: broker.password(principal) for principal in PRINCIPALS}
    for user in USERS:
        secrets[f"InfluxDB user {user}"] = user_token_file(settings, user).read_text().strip()
    secrets["Alerta admin key"] = settings.secret("alerta_api_key")
    for name in SCOPED_KEYS:
        path = scoped_key_file(settings, name)
        if path.exists():
            secrets[f"Alerta key {name}"] = path.read_text().strip()
    key_id, _, key = settings.control_private_key.partition("=")
    if key:
        secrets[f"control key {key_id}"] = key
    return {name for name, secret in secrets.items() if secret in text}


def test_a_broker_that_lacks_its_users_gets_them_at_the_next_start(
    private_kafka: PrivateKafka,
) -> None:
    # As a data folder formatted before the SASL_SSL listener existed: no SCRAM users.
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

    settings = private_kafka.settings
    writers = client_settings(settings, WRITERS)
    admin = admin_client(settings)
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        deletion = UserScramCredentialDeletion(WRITERS, mechanism)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            future.result(timeout=30)
    refused = probe(writers, 10.0)
    assert refused is not None and "Authentication failed" in refused
    private_kafka.stop()
    private_kafka.start()
    assert probe(writers, 10.0) is None
