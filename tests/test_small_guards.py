"""Issue 29's smaller holes (item 10): inputs that used to escape as raw exceptions, a tokenizer
probe answered oddly, and the config folder's mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm import ModelSpec, ProviderConfig
from tests.hostile_server import Reply, chat_events, hostile


@pytest.fixture
def provider() -> str:
    nbllm.get_store().add_provider(
        ProviderConfig(
            name="p", url="http://127.0.0.1:9/v1", auth="none", models={"m": {"caps": "json_schema"}}
        )
    )
    return "p/m"


@pytest.mark.parametrize(
    ("prompt", "options", "message"),
    [
        ("hi", {"json_schema": {"name": "s", "schema": {"enum": {"a", "b"}}}}, "json_schema cannot be sent"),
        (["first prompt", "second prompt"], {}, "a list prompt should hold messages"),
        ("half a character \ud800 here", {}, "lone surrogate"),
        ([{"role": "user", "content": float("nan")}], {}, "cannot be sent as JSON"),
    ],
    ids=["a-set-in-a-schema", "a-list-of-strings", "a-lone-surrogate", "nan-content"],
)
def test_inputs_that_cannot_go_on_the_wire_are_prompt_errors(
    prompt: Any, options: dict[str, Any], message: str, provider: str
) -> None:
    with pytest.raises(nbllm.PromptError, match=message):
        nbllm.chat(prompt, provider, **options)
    assert nbllm.history() == []  # refused before a call began: nothing was sent


ODD_TOKENIZERS: list[Reply] = [
    (200, "application/json", b"{}"),
    (200, "application/json", b'{"tokens": 5}'),
    (200, "application/json", b'{"count": "many"}'),
    (200, "application/json", b"[1, 2, 3]"),
    (200, "text/html", b"<html>tokenizer</html>"),
]


@pytest.mark.parametrize(
    "odd", ODD_TOKENIZERS, ids=["no-tokens", "tokens-not-a-list", "count-not-a-number", "a-list", "html"]
)
def test_a_tokenizer_probe_answered_oddly_falls_back_to_the_estimate(odd: Reply) -> None:
    def answer(path: str, headers: dict[str, str], body: Any) -> Reply:
        return odd if path.endswith("tokenize") else (200, "text/event-stream", chat_events("fine"))

    with hostile(answer) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(
                name="t", url=server.base_url, auth="none", models={"m": ModelSpec(context_window=1000)}
            )
        )
        # About 630 tokens of a 1,000-token window: near enough that the server's count is asked for.
        assert nbllm.chat("word " * 500, "t/m").text == "fine"
        assert any(seen.path.endswith("tokenize") for seen in server.seen)


def test_a_new_config_folder_is_the_owners_alone_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fresh" / "nbllm"
    monkeypatch.setenv("NBLLM_CONFIG_DIR", str(folder))
    nbllm.get_store().add_provider(
        ProviderConfig(name="s", url="http://127.0.0.1:9/v1", auth="none", models=["m"])
    )
    previous = os.umask(0o022)
    try:
        from nbllm._providers import persist

        persist.save(nbllm.get_store(), folder / "providers.yaml")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "providers.yaml").stat().st_mode) == 0o600
    assert "s" in json.dumps(str((folder / "providers.yaml").read_text()))


@pytest.mark.parametrize(
    "location", ["http://127.0.0.1:99999/v1/chat/completions", "http://[::1:99999/x", "ftp://127.0.0.1/x"]
)
def test_a_redirect_nowhere_is_an_nbllm_error_recorded_as_a_failure(location: str) -> None:
    """Issue 29, item 10: a redirect to a port outside 0-65535 escaped as a raw ExceptionGroup
    (an OverflowError inside the connect) and was recorded ok."""
    with hostile(lambda *_: (307, "text/plain", b"moved", {"location": location})) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="r", url=server.base_url, auth="none", models=["m"], retry={"max_retries": 0})
        )
        with pytest.raises(nbllm.APIError):
            nbllm.chat("q", "r/m")
    assert nbllm.history()[-1].status == "error"
