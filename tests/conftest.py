"""Shared fixtures: every test gets an empty store, its own config dir and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbllm

SENTINEL_KEY = "NBLLM-TEST-KEY-7f3a9c41d2"
"""A key that must never appear in any output, error, repr or file."""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NBLLM_CONFIG_DIR", str(tmp_path / "config"))
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.startswith("NBLLM_TEST"):
            monkeypatch.delenv(name)
    monkeypatch.setattr("nbllm._providers.auth.keyring_module", lambda: None)
    nbllm.get_store().clear()
    yield
    nbllm.get_store().clear()


@pytest.fixture(scope="session")
def ip():  # type: ignore[no-untyped-def]
    """A real IPython shell with the extension loaded (the same one for the whole session)."""
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "nbllm")
    return shell


class FakeKeyring:
    """An in-memory stand-in for the ``keyring`` module's two calls we use."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, user: str, password: str) -> None:
        self.entries[(service, user)] = password

    def get_password(self, service: str, user: str) -> str | None:
        return self.entries.get((service, user))


@pytest.fixture(autouse=True)
def fresh_history() -> Iterator[None]:
    from nbllm._cells.conversation import get_conversations

    nbllm.get_history().clear()
    get_conversations().clear()
    yield
