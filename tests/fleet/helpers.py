"""Shared by the fleet's unit, integration and benchmark code: settings, keys and waiting."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from schemas.contracts import Action, ControlCommand
from schemas.signing import KeyPair, Keyring, signed_command
from streams.settings import Settings
from streams.topics import CATALOGUE, CONTROL, PREDICTIONS, TopicSpec, admin_client, ensure_topics


def fleet_settings(base: Settings, bootstrap: str, prefix: str) -> Settings:
    """``base`` on ``bootstrap`` with topics under ``prefix`` and a fresh key pair: the
    private key signs the test's commands, the public key is what nodes accept."""
    pair = KeyPair.generate("test")
    return dataclasses.replace(
        base,
        kafka_bootstrap=bootstrap,
        topic_prefix=f"{prefix}.",
        control_private_key=pair.private_line(),
        control_private_key_file="",
        control_public_keys=pair.public_line(),
        control_public_keys_file="",
        control_keys="",
        control_keys_file="",
        control_accept_hmac=False,
    )


def node_settings(settings: Settings) -> Settings:
    """``settings`` as a serving node holds them: the public keys and no private key."""
    return dataclasses.replace(settings, control_private_key="", control_private_key_file="")


@contextmanager
def catalogue_topics(
    settings: Settings, catalogue: tuple[TopicSpec, ...] = CATALOGUE
) -> Iterator[None]:
    """The catalogue's topics under ``settings.topic_prefix``, deleted afterwards."""
    ensure_topics(settings, catalogue)
    try:
        yield
    finally:
        names = [spec.name(settings) for spec in catalogue]
        admin = admin_client(settings)
        for future in admin.delete_topics(names).values():
            future.result(timeout=30)


@contextmanager
def fleet_topics(
    base: Settings,
    bootstrap: str,
    prefix: str,
    catalogue: tuple[TopicSpec, ...] = (CONTROL, PREDICTIONS),
) -> Iterator[Settings]:
    """``fleet_settings`` with the fleet's topics created for the block, deleted after."""
    settings = fleet_settings(base, bootstrap, prefix)
    with catalogue_topics(settings, catalogue):
        yield settings


def command(
    settings: Settings, model_id: str, action: Action, seq: int, **overrides: object
) -> ControlCommand:
    """A command signed with the settings' key whose seq is exactly ``seq``."""
    return signed_command(
        Keyring.from_settings(settings),
        model_id=model_id,
        action=action,
        reason=f"test {action}",
        detector="test",
        issued_at=seq,
        **overrides,  # type: ignore[arg-type]
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``samples`` (nearest rank), and how many there were."""
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]

    return {"n": len(ordered), "p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1]}
