"""The topic catalogue: names under the prefix, keys, and the compacted control topic."""

from __future__ import annotations

import pytest

from schemas.codec import BATCHES
from schemas.contracts import CONTRACTS
from streams.cli import main
from streams.settings import Settings
from streams.topics import CATALOGUE, CONTROL


def test_every_topic_has_a_contract_a_key_and_a_cleanup_policy() -> None:
    settings = Settings(topic_prefix="acme.")
    names = [spec.name(settings) for spec in CATALOGUE]
    assert names == [
        "acme.predictions",
        "acme.feature-writes",
        "acme.ground-truth",
        "acme.control",
        "acme.dead-letters",
    ]
    # Every contract is a topic's, or the batch form of a topic's record contract.
    contracts = {spec.contract for spec in CATALOGUE}
    batched = {f"{name}_batch" for name in contracts if CONTRACTS[name] in BATCHES}
    assert contracts | batched == set(CONTRACTS)
    for spec in CATALOGUE:
        assert spec.key and spec.partitions >= 1
        assert spec.configs["cleanup.policy"] in {"delete", "compact"}
        if spec.configs["cleanup.policy"] == "delete":
            assert int(spec.configs["retention.ms"]) > 0


def test_control_is_compacted_and_keyed_by_model() -> None:
    assert CONTROL.configs["cleanup.policy"] == "compact"
    assert CONTROL.key == "model_id"
    assert "retention.ms" not in CONTROL.configs


def test_topics_list_prints_the_catalogue(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAILSOFT_TOPIC_PREFIX", "acme.")
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    assert "acme.control  key=model_id  contract=control_command  partitions=1" in out
    assert "cleanup.policy=compact" in out


def test_a_worker_creates_its_internal_topic_with_the_catalogue() -> None:
    from streams.topics import PREDICTIONS, worker_topics
    from streams.worker.app import writes_by_model_topic

    settings = Settings(topic_prefix="acme.", worker_app_id="fs-1")
    specs = worker_topics(settings)
    assert specs[: len(CATALOGUE)] == CATALOGUE
    internal = specs[len(CATALOGUE)]
    assert internal.name(settings) == writes_by_model_topic(settings)
    assert internal.name(settings) == "acme.fs-1-feature-writes-by-model"
    # Forwarded on the model's partition number, like the model's predictions.
    assert internal.partitions == PREDICTIONS.partitions
