"""The README's worker section tells an operator what it must set and what it must know."""

from __future__ import annotations

from pathlib import Path

from streams.portfolio import parse_portfolio
from streams.settings import Settings, env_name

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_worker_section_names_every_control_key_setting() -> None:
    worker = section("The worker")
    names = [env_name(name) for name in vars(Settings()) if name.startswith("control_")]
    assert names
    for name in names:
        assert f"`{name}`" in worker


def test_feature_names_are_global_unless_namespaced_as_the_readme_says() -> None:
    assert "Feature names are global across the portfolio" in section("The worker")
    portfolio = parse_portfolio(
        """
        [defaults]
        tier = "cpu"
        fallback = "top_n_popular"
        label_delay = "1h"
        [models.ranker]
        owner = "search"
        features = { country = "categorical", "ranker.device" = "categorical" }
        [models.churn]
        owner = "growth"
        features = { country = "categorical", "churn.device" = "categorical" }
        """
    )
    assert portfolio.models_monitoring("country") == ("ranker", "churn")
    assert portfolio.models_monitoring("ranker.device") == ("ranker",)
    assert portfolio.models_monitoring("device") == ()
