"""Size guards before sending (issue 29, item 8): a placeholder that renders to megabytes, or a
request past any model's window, is refused before anything is sent, naming its size; the
thinking a saved notebook keeps is capped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm import ProviderConfig
from nbllm._constants import MAX_PLACEHOLDER_CHARS, MAX_SHOWN_THINKING_CHARS
from nbllm._views.thinking import thinking_markdown
from tests.hostile_server import chat_events, hostile


def test_a_placeholder_that_renders_to_megabytes_is_summarised_or_refused(ip: Any) -> None:
    """Issue 30: a value that would render to megabytes is summarised, never sent raw; with
    --context full it is refused before sending, with its size."""
    with hostile(lambda *_: (200, "text/event-stream", chat_events("never"))) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="s", url=server.base_url, auth="none", models=["m"])
        )
        ip.user_ns["log"] = "line of a log\n" * 400_000  # 5.6 MB
        with pytest.raises(UsageError, match=r"\{log\} renders to 5,600,000 characters.*nothing was sent"):
            ip.run_cell_magic("chat", "s/m --context full", "What went wrong? {log}")
        assert server.seen == []
        ip.run_cell_magic("chat", "s/m", "What went wrong? {log}")
        sent = json.dumps(server.seen[-1].body)
        assert "characters of `log` left out" in sent and len(sent) < 20_000
        ip.user_ns["log"] = "x" * MAX_PLACEHOLDER_CHARS  # at the limit: it goes whole
        ip.run_cell_magic("chat", "s/m --context full", "What went wrong? {log}")
        assert len(server.seen) == 2 and len(json.dumps(server.seen[-1].body)) > MAX_PLACEHOLDER_CHARS


def test_a_request_past_any_window_is_refused_even_without_a_declared_window() -> None:
    with hostile(lambda *_: (200, "text/event-stream", chat_events("never"))) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(name="s", url=server.base_url, auth="none", models=["m"])
        )
        with pytest.raises(
            nbllm.PromptError, match=r"9,000,000 characters .* past any model's context window"
        ):
            nbllm.chat("y" * 9_000_000, "s/m")
        assert server.seen == []


def test_the_thinking_a_saved_notebook_keeps_is_capped() -> None:
    result = nbllm.ChatResult(text="answer", model="p/m", reasoning="hmm " * 50_000)
    shown = thinking_markdown(result, open_=False)
    assert len(shown) < MAX_SHOWN_THINKING_CHARS * 1.3
    assert "180,000 more characters in nbllm.last().reasoning" in shown
