"""`failsoft worker` refuses to start, with one clear line, on what it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from tests.streams.proxy import free_port


def test_missing_portfolio_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FAILSOFT_PORTFOLIO_PATH", str(tmp_path / "absent.toml"))
    assert main(["worker"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "absent.toml" in error and "cannot be read" in error


def test_invalid_model_settings_name_model_and_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    portfolio = tmp_path / "portfolio.toml"
    portfolio.write_text(
        '[models.ranker]\nowner = "a"\ntier = "cpu"\nfallback = "x"\nlabel_delay = 60\n'
        'features = { age = "numeric" }\n[models.ranker.detectors.drift]\nmethod = "chi_square"\n'
    )
    monkeypatch.setenv("FAILSOFT_PORTFOLIO_PATH", str(portfolio))
    assert main(["worker"]) == 2
    assert "model 'ranker', key 'detectors.drift.method'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FAILSOFT_CONTROL_PRIVATE_KEY", "k1=short", "FAILSOFT_CONTROL_PRIVATE_KEY, key 'k1'"),
        ("FAILSOFT_CONTROL_KEYS", "k1=legacy-secret-0123456789", "FAILSOFT_CONTROL_ACCEPT_HMAC"),
    ],
)
def test_a_malformed_or_legacy_control_key_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv("FAILSOFT_PORTFOLIO_PATH", "deploy/portfolio.example.toml")
    monkeypatch.setenv(name, value)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert message in err and value.partition("=")[2] not in err


def test_unreachable_kafka_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there once the probe socket closed
    monkeypatch.setenv("FAILSOFT_PORTFOLIO_PATH", "deploy/portfolio.example.toml")
    monkeypatch.setenv("FAILSOFT_KAFKA_BOOTSTRAP", closed)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["worker"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"Kafka at {closed}:" in error
