"""The conformance suite's servers (one set per session) and its record of what it found.

In CI every server must run (a missing install fails the run). On a developer machine without
``python tests/conformance/install_servers.py`` the suite is skipped, saying what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbllm._providers import local as local_module
from tests.conformance import servers as servers_module
from tests.conformance.findings import (
    ANTHROPIC_SERVERS,
    EMBEDDING_SERVERS,
    FINDINGS,
    INTERRUPTING_SERVERS,
    RESPONSES_SERVERS,
    ServerInfo,
)
from tests.conformance.servers import Server

SERVER_NAMES = ["llamacpp_python", "llama_server", "litellm", "transformers"]
INSTALL_HINT = "python tests/conformance/install_servers.py"


def _missing() -> list[str]:
    missing = servers_module.missing_installs()
    if not local_module.extra_installed():
        missing.append("the local extra (" + local_module.INSTALL_COMMAND + ")")
    return missing


class Fleet:
    """The servers, each started on first use and all stopped at the end of the session."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, Server] = {}

    def get(self, name: str) -> Server:
        if name not in self.running:
            self.running[name] = self._start(name)
            server = self.running[name]
            if name in SERVER_NAMES:  # a table column (the embedding instances are not)
                FINDINGS.servers[name] = ServerInfo(name, server.label)
        return self.running[name]

    def _start(self, name: str) -> Server:
        if name.startswith("llamacpp_python"):
            embeddings, interrupting = name.endswith("_embeddings"), name.endswith("_interrupting")
            server = servers_module.start_llamacpp_python(
                self.logs, embeddings=embeddings, interrupting=interrupting
            )
        elif name.startswith("llama_server"):
            server = servers_module.start_llama_server(self.logs, embeddings=name.endswith("_embeddings"))
        elif name == "transformers":
            server = servers_module.start_transformers(self.logs)
        else:
            server = servers_module.start_litellm(
                self.logs,
                upstream=self.get("llamacpp_python"),
                embeddings_upstream=self.get("llama_server_embeddings"),
            )
        servers_module.wait_ready(server)
        return server

    def stop_all(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    missing = _missing()
    if missing:
        message = f"conformance servers not installed: {', '.join(missing)}; run {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    fleet = Fleet(tmp_path_factory.mktemp("servers"))
    yield fleet
    fleet.stop_all()


@pytest.fixture(params=SERVER_NAMES)
def server(request: pytest.FixtureRequest, fleet: Fleet) -> Server:
    return fleet.get(request.param)


@pytest.fixture(params=sorted(ANTHROPIC_SERVERS))
def messages_server(request: pytest.FixtureRequest, fleet: Fleet) -> Server:
    """The servers that also serve Anthropic's /v1/messages."""
    return fleet.get(request.param)


@pytest.fixture(params=sorted(RESPONSES_SERVERS))
def responses_server(request: pytest.FixtureRequest, fleet: Fleet) -> Server:
    """The servers that also serve OpenAI's /v1/responses."""
    return fleet.get(request.param)


def _embeddings_server(column: str, fleet: Fleet) -> tuple[str, Server]:
    if column in ("llamacpp_python", "llama_server"):
        return column, fleet.get(f"{column}_embeddings")
    return column, fleet.get(column)


@pytest.fixture(params=SERVER_NAMES)
def embeddings_server(request: pytest.FixtureRequest, fleet: Fleet) -> tuple[str, Server]:
    """Per table column, the server that answers embeddings there: the llama.cpp servers'
    embedding instances, the gateway (its embedding model forwards to llama-server's), and
    transformers serve itself (which has no embeddings endpoint)."""
    return _embeddings_server(request.param, fleet)


@pytest.fixture(params=sorted(EMBEDDING_SERVERS))
def pooled_embeddings_server(request: pytest.FixtureRequest, fleet: Fleet) -> tuple[str, Server]:
    """The columns whose server makes one vector per text of SmolLM2."""
    return _embeddings_server(request.param, fleet)


@pytest.fixture(params=sorted(INTERRUPTING_SERVERS))
def interrupting_server(request: pytest.FixtureRequest, fleet: Fleet) -> tuple[str, Server]:
    """Per column whose server can drop a reply for a newer request: an instance with that
    server's defaults (the chat rows' instance is started so that it does not)."""
    return request.param, fleet.get(f"{request.param}_interrupting")


@pytest.fixture
def gateway(fleet: Fleet) -> Server:
    return fleet.get("litellm")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if FINDINGS.results:
        FINDINGS.write()
