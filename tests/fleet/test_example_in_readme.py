"""The README's serving-node integration is the example recommender's own code, line for line."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).parents[2]
APP = REPO / "deploy" / "examples" / "recommender" / "app.py"
README = REPO / "README.md"


def app_integration_lines() -> list[str]:
    """The app's failsoft imports and the code between its ``# failsoft:`` markers."""
    lines, inside = [], False
    for line in APP.read_text(encoding="utf-8").splitlines():
        if "# failsoft: begin" in line:
            inside = True
        elif "# failsoft: end" in line:
            inside = False
        elif inside or line.startswith(("from schemas.", "from streams.fleet")):
            lines.append(line.strip())
    return [line for line in lines if line]


def readme_integration_lines() -> list[str]:
    """The code lines of the first Python block under "Integrate a serving node"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Integrate a serving node") :]
    block = section[section.index("```python\n") + len("```python\n") :]
    block = block[: block.index("```")]
    return [
        line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")
    ]


def test_the_readme_shows_the_examples_integration_verbatim() -> None:
    assert readme_integration_lines() == app_integration_lines()
