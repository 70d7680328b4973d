"""``${VAR}`` in a URL's query and in `extra_body` stays a reference (issue 29, item 4): the value
goes on the wire and nowhere else, neither the saved file, `show`, a dry run, the doctor, an
error nor a cassette. Against servers written for these tests (`tests/hostile_server.py`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig
from nbllm._calls.doctor import list_models
from nbllm._providers import persist
from tests.hostile_server import Reply, chat_events, hostile

QUERY_KEY = "gemini-style-key-5a4b3c2d1e"
BODY_TOKEN = "body-token-9f8e7d6c5b"
SSE = "text/event-stream"


@pytest.fixture(autouse=True)
def variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_QUERY_KEY", QUERY_KEY)
    monkeypatch.setenv("NBLLM_TEST_BODY_TOKEN", BODY_TOKEN)
    monkeypatch.setenv("NBLLM_TEST_PORT", "8123")


def provider(base_url: str, **fields: Any) -> ProviderConfig:
    return ProviderConfig(
        name="ref",
        url=f"{base_url}?key=${{NBLLM_TEST_QUERY_KEY}}",
        auth="none",
        extra_body={"metadata": {"token": "${NBLLM_TEST_BODY_TOKEN}"}, "plain": "kept"},
        models=["m"],
        retry={"max_retries": 0},
        **fields,
    )


def no_secret(text: str) -> None:
    assert QUERY_KEY not in text and BODY_TOKEN not in text


def test_references_stay_references_in_the_config_the_saved_file_and_show(ip: Any, tmp_path: Path) -> None:
    config = provider("http://127.0.0.1:${NBLLM_TEST_PORT}/v1")
    # The host and path say where requests go and are expanded (and checked) at once.
    assert config.url == "http://127.0.0.1:8123/v1?key=${NBLLM_TEST_QUERY_KEY}"
    assert config.extra_body["metadata"]["token"] == "${NBLLM_TEST_BODY_TOKEN}"
    store = nbllm.get_store()
    store.add_provider(config)
    persist.save(store, tmp_path / "providers.yaml")
    saved = (tmp_path / "providers.yaml").read_text()
    no_secret(saved)
    assert "key=${NBLLM_TEST_QUERY_KEY}" in saved and "${NBLLM_TEST_BODY_TOKEN}" in saved
    with capture_output() as shown:
        ip.run_line_magic("llm_provider", "show ref")
    text = shown.stdout + "".join(str(o.data) for o in shown.outputs)
    no_secret(text)
    assert "key=${NBLLM_TEST_QUERY_KEY}" in text
    no_secret(repr(config))


def test_the_values_go_on_the_wire_and_nowhere_else() -> None:
    def answer(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, SSE, chat_events("fine")

    with hostile(answer) as server:
        nbllm.get_store().add_provider(provider(server.base_url))
        result = nbllm.chat("q", "ref/m")
        sent = server.seen[-1]
    assert result.text == "fine"
    assert sent.path.endswith(f"/chat/completions?key={QUERY_KEY}")
    assert sent.body["metadata"] == {"token": BODY_TOKEN} and sent.body["plain"] == "kept"
    no_secret(str(nbllm.history()[-1]))


@pytest.mark.parametrize("status", [404, 500])
def test_an_error_that_echoes_the_request_shows_neither_value(status: int) -> None:
    def echo(path: str, headers: dict[str, str], body: Any) -> Reply:
        return status, "application/json", json.dumps({"error": {"message": f"{path} {body}"}}).encode()

    with hostile(echo) as server:
        nbllm.get_store().add_provider(provider(server.base_url))
        with pytest.raises(nbllm.APIError) as caught:
            nbllm.chat("q", "ref/m")
    error = caught.value
    no_secret(f"{error}\n{error.hint}\n{getattr(error, 'upstream_message', '')}\n{error.__dict__!r}")
    no_secret(str(nbllm.history()[-1]))
    if status == 404:  # the hint names the URL as written
        assert "key=${NBLLM_TEST_QUERY_KEY}" in str(error.hint)


def test_the_dry_run_shows_the_references(ip: Any) -> None:
    nbllm.get_store().add_provider(provider("http://127.0.0.1:9/v1"))
    with capture_output() as captured:
        ip.run_cell_magic("chat", "ref/m --dry-run", "hello")
    text = captured.stdout + "".join(str(o.data) for o in captured.outputs)
    no_secret(text)
    assert "?key=${NBLLM_TEST_QUERY_KEY}" in text and "${NBLLM_TEST_BODY_TOKEN}" in text


def test_the_doctor_asks_with_the_value_and_shows_the_reference() -> None:
    def listing(path: str, headers: dict[str, str], body: Any) -> Reply:
        if path.startswith("/v1/models"):
            return 403, "text/plain", f"no models for {path}".encode()
        return 404, "text/plain", b"no"

    with hostile(listing) as server:
        config = provider(server.base_url)
        nbllm.get_store().add_provider(config)
        with pytest.raises(nbllm.APIError) as caught:
            asyncio.run(list_models(config))
        assert server.seen[-1].path == f"/v1/models?key={QUERY_KEY}"
    no_secret(f"{caught.value}\n{caught.value.hint}")


def test_an_unset_variable_is_a_clear_failure_on_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBLLM_TEST_QUERY_KEY")
    with hostile(lambda *_: (200, SSE, chat_events("never"))) as server:
        nbllm.get_store().add_provider(provider(server.base_url))  # creating it needs no value
        with pytest.raises(nbllm.ConfigError, match="NBLLM_TEST_QUERY_KEY is not set"):
            nbllm.chat("q", "ref/m")
        assert server.seen == []
    assert nbllm.history()[-1].status == "error"


@pytest.mark.parametrize("kind", ["cassette", "cache"])
def test_referenced_values_never_reach_a_cassette_or_the_cache(kind: str, tmp_path: Path) -> None:
    def echo(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, SSE, chat_events(f"you sent {path} with {body['metadata']['token']}")

    stored = tmp_path / ("calls.yaml" if kind == "cassette" else "cache.sqlite")
    with hostile(echo) as server:
        nbllm.get_store().add_provider(provider(server.base_url))
        tape: Any = (
            nbllm.cassette(stored, mode="record") if kind == "cassette" else nbllm.response_cache(stored)
        )
        active = tape.activate()
        try:
            nbllm.chat("q", "ref/m", temperature=0)
        finally:
            active.deactivate()
    data = stored.read_bytes()
    assert QUERY_KEY.encode() not in data and BODY_TOKEN.encode() not in data
