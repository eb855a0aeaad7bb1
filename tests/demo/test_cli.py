"""``failsoft report`` prints a saved report again; the demo's own set-up helpers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from schemas.signing import KeyPair, Keyring, signed_command
from streams.cli import main
from streams.demo.report import Report, Switch, build_report
from streams.demo.run import ensure_control_key, node_settings, settings_env
from streams.settings import Settings
from tests.demo.test_report import END, T0, at, fallback, incident

COMMAND = {
    "model_id": "m",
    "action": "fallback",
    "reason": "test",
    "detector": "test",
    "issued_at": 1_795_000_000_000,
}


def saved_report(tmp_path: Path) -> tuple[Path, Report]:
    report = build_report(
        [incident("drift_abrupt", "fraud-001", 45, 100)],
        [fallback("fraud-001", 66)],
        [Switch("fraud-001", "fallback", at(66.012))],
        [],
        scenario="default",
        started_at=T0,
        ended_at=END,
    )
    path = tmp_path / "report.json"
    path.write_text(report.dumps())
    return path, report


def test_report_prints_a_saved_report_as_markdown_or_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, report = saved_report(tmp_path)
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out == report.to_markdown()
    assert main(["report", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == report.to_json()


def test_report_of_a_missing_or_broken_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "none.json")]) == 1
    assert "none.json" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"incidents": []}))
    assert main(["report", str(broken)]) == 1
    assert capsys.readouterr().err.strip().endswith("report: missing field 'started_at'")


def test_a_control_key_pair_is_written_once_to_the_state_folder_when_none_is_configured(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    settings = ensure_control_key(Settings(state_dir=tmp_path), said.append)
    key_file = tmp_path / "control.key"
    assert settings.control_private_key_file == str(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    signer = Keyring.from_settings(settings)
    assert signer.signing_key_id == "demo"
    again = ensure_control_key(Settings(state_dir=tmp_path), said.append)
    assert again.control_private_key_file == str(key_file) and len(said) == 1
    other = KeyPair.generate("k")
    configured = Settings(state_dir=tmp_path / "other", control_private_key=other.private_line())
    assert ensure_control_key(configured, said.append) is configured


def test_the_demo_node_gets_the_public_keys_and_not_the_private_key(tmp_path: Path) -> None:
    settings = ensure_control_key(Settings(state_dir=tmp_path), lambda line: None)
    node = Keyring.from_settings(node_settings(settings))
    signer = Keyring.from_settings(settings)
    assert node.signing_key is None
    assert node.verify(signed_command(signer, **COMMAND))  # type: ignore[arg-type]


def test_children_get_the_same_settings_through_their_environment() -> None:
    settings = dataclasses.replace(Settings(), topic_prefix="x.", worker_web_port=1234)
    assert Settings.from_env(settings_env(settings)) == settings


def test_a_batch_size_below_one_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "argument --batch-size: expected 1 or more, got 0" in capsys.readouterr().err
