"""A plain install has the fleet client; a command that needs an extra names it in one line."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from streams.cli import EXTRA_OF_MODULE, main, missing_extra

REPO = Path(__file__).parents[2]
FIRST_PARTY = {"streams", "detectors", "schemas"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def third_party_imports() -> set[str]:
    """The top-level names of every third-party module the shipped packages import."""
    found: set[str] = set()
    for package in FIRST_PARTY:
        for source in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found.update(alias.name.partition(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.partition(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names)


def distributions(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def providers(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (the dev install has them all)."""
    return {
        canonicalize_name(name)
        for name in importlib.metadata.packages_distributions().get(module, [])
    }


def plain_install_modules() -> set[str]:
    plain = distributions(PYPROJECT["dependencies"])
    return {module for module in third_party_imports() if providers(module) & plain}


def test_every_third_party_import_is_in_the_plain_install_or_mapped_to_its_extra() -> None:
    assert plain_install_modules() == {"confluent_kafka", "cryptography", "msgspec"}
    assert third_party_imports() - plain_install_modules() == set(EXTRA_OF_MODULE)


@pytest.mark.parametrize(("module", "extra"), sorted(EXTRA_OF_MODULE.items()))
def test_each_mapped_module_is_installed_by_its_extra(module: str, extra: str) -> None:
    assert providers(module) & distributions(PYPROJECT["optional-dependencies"][extra])


def test_dev_installs_the_worker_and_the_stack() -> None:
    assert "failsoft[worker,stack]" in PYPROJECT["optional-dependencies"]["dev"]


def test_a_command_without_its_extra_names_the_extra_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a plain install: Faust cannot be imported, so neither can the worker's app.
    monkeypatch.setitem(sys.modules, "faust", None)
    monkeypatch.delitem(sys.modules, "streams.worker.app", raising=False)
    assert main(["worker"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "failsoft worker: needs the worker extra (faust is not installed): "
        "pip install 'failsoft[worker]'\n"
    )


@pytest.mark.parametrize(
    ("module", "extra"),
    [("faust", "worker"), ("psycopg2", "stack"), ("faust.absent", None), ("absent", None)],
)
def test_only_an_absent_module_of_an_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, extra: str | None
) -> None:
    """A missing submodule of an installed package is a bug or a broken install: it raises."""
    monkeypatch.setitem(sys.modules, module, None)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        assert missing_extra(error) == extra
    else:
        pytest.fail(f"{module} imported")
