"""Shared fixtures: every test gets an empty store, its own config dir and working directory,
and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# hypothesis's pytest plugin imports hypothesis at the terminal summary when no test used it;
# CPython 3.11.7's parser can then fail with "AST constructor recursion depth mismatch" under
# pytest's assertion rewriting. Importing it here, at collection, avoids that late import.
import hypothesis  # noqa: F401
import pytest

import nbllm
import nbllm._session

SLOW_FILES = frozenset(
    {
        "test_browser.py",  # JupyterLab and Notebook 7 in Chromium
        "test_kernel_chat.py",  # real ipykernels
        "test_kernel_map.py",
        "test_kernel_no_widgets.py",
        "test_kernel_context.py",
        "test_kernel_tools.py",
        "test_kernel_mcp.py",
        "test_kernel_log.py",  # two kernels writing one log; an exported notebook under nbval
        "test_mcp_http.py",  # a real MCP server over HTTP
        "test_local_model.py",  # the bundled model on llama.cpp
        "test_notebooks.py",  # whole notebooks executed in kernels
        "test_fuzz.py",  # hypothesis against the magics
        "test_conformance.py",  # four real third-party servers
    }
)
"""Test files that need a real kernel, browser, model or server, or run for long: the `slow`
tier. `python -m pytest -m "not slow"` is the everyday run; CI runs everything."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES or item.path.suffix == ".ipynb":  # the tutorials, under nbval
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBLLM_CONFIG_DIR", str(tmp_path / "config"))
    # A relative path a test writes (the fuzz suite's `%llm_provider save <text>`) lands here,
    # not in the checkout, where two such files were once committed.
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.startswith("NBLLM_TEST"):
            monkeypatch.delenv(name)
    monkeypatch.setattr("nbllm._providers.auth.keyring_module", lambda: None)
    yield


@pytest.fixture(scope="session")
def ip():  # type: ignore[no-untyped-def]
    """A real IPython shell with the extension loaded (the same one for the whole session)."""
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "nbllm")
    # The tests of the tool loop are not about approval (tests/test_approval.py is): in this
    # shell, with no one at a prompt, every tool would be denied.
    shell.run_line_magic("config", "ChatMagics.tool_approval = 'auto'")
    return shell


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    """Each test starts in a new session: no providers, history, conversations, last result,
    pacing, learned facts, calls in flight or cassette/cache slots (see `nbllm._session`). And
    leaves one behind: a module-scoped fixture set up before the next test's own fixtures must
    not see this test's providers."""
    nbllm._session.new_session()
    yield
    nbllm._session.new_session()
