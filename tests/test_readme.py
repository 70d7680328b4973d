"""The README says true things: its test command is exactly what CI runs, and the help it
points at exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from IPython.utils.capture import capture_output

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_commands = [b for b in blocks if "pytest" in b and "install" in b]
    assert len(test_commands) == 1
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci_lines
    assert f"```bash\n{test_commands[0]}\n```" in (ROOT / "CONTRIBUTING.md").read_text()


def test_the_readme_gives_the_fast_tier_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert 'python -m pytest -m "not slow"' in readme


def test_every_help_command_the_readme_names_shows_help(ip: Any) -> None:
    """`%chat?` once stood in the README, which IPython answers with "Object not found"."""
    readme = (ROOT / "README.md").read_text()
    asked = sorted(set(re.findall(r"`(%%?\w+\?)`", readme)))
    assert "%%chat?" in asked and "%llm_provider?" in asked
    for question in asked:
        with capture_output() as captured:
            ip.run_cell(question)
        assert "not found" not in captured.stdout and "Docstring" in captured.stdout, question


def test_getting_started_gives_the_readme_quickstart_command() -> None:
    """The site's first page and the README install the same way."""

    def quickstart(text: str) -> str:
        blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
        return next(b for b in blocks if "nbllm run notebooks/01-quickstart.ipynb" in b)

    readme = (ROOT / "README.md").read_text()
    assert quickstart(readme) == quickstart((ROOT / "docs" / "getting-started.md").read_text())
