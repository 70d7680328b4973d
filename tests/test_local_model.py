"""The bundled local model against the real llama-cpp-python server (the `local` extra).

In CI the extra is installed and these tests must run; on a developer machine without
the 7-minute llama.cpp build they are skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm._providers import local as local_module
from nbllm._providers.local import get_local_model

if not local_module.extra_installed():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install the local extra: " + local_module.INSTALL_COMMAND)
    pytest.importorskip("llama_cpp", reason="the local extra is not installed")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def local_server() -> Iterator[local_module.LocalServer]:
    server = get_local_model().start(store=nbllm.get_store())
    yield server
    get_local_model().stop()


@pytest.fixture
def local(local_server: local_module.LocalServer) -> local_module.LocalServer:
    """The module's server, registered again in this test's (cleared) store."""
    spec = nbllm.ModelSpec(
        context_window=local_server.context_window, capabilities=local_module.LOCAL_CAPABILITIES
    )
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(
            name="local", url=local_server.base_url, key=local_server.key, models={"smollm2": spec}
        )
    )
    return local_server


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[1].split()[0] == "Z")


def test_chat_streams_a_real_reply_with_estimated_usage(ip: Any, local: Any, capsys: Any) -> None:
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "terminal"
    try:
        ip.run_cell_magic("chat", "local/smollm2 -t 0 --max-tokens 40", "What is the capital of France?")
    finally:
        magics.display_mode = "auto"
    out = capsys.readouterr().out
    result = nbllm.last()
    assert result is not None and result.status == "ok" and "Paris" in result.text
    assert out.startswith(result.text) and "~" in out.splitlines()[-1]  # tokens marked estimated
    assert result.usage.estimated and result.usage.completion_tokens > 0
    record = nbllm.history()[-1]
    assert record.model == "local/smollm2" and record.ttft_s is not None and record.ttft_s > 0


async def test_sixteen_concurrent_calls_all_get_whole_replies(local: Any) -> None:
    """The server is started with --interrupt_requests False: by default a new request
    aborts the reply in progress (14 of 16 dropped)."""
    results = await asyncio.gather(
        *(nbllm.achat(f"Name a city, number {i}.", max_tokens=8, temperature=0) for i in range(16)),
        return_exceptions=True,
    )
    assert [r.status if isinstance(r, nbllm.ChatResult) else repr(r) for r in results] == ["ok"] * 16
    assert all(r.text for r in results if isinstance(r, nbllm.ChatResult))


async def test_tokens_arrive_as_a_stream(local: Any) -> None:
    pieces = [
        e.text
        async for e in nbllm.astream("Count from one to ten.", max_tokens=40)
        if isinstance(e, nbllm.TokenEvent)
    ]
    assert len(pieces) > 3 and "".join(pieces)


def test_wrong_key_is_an_authentication_error_with_a_hint(local: Any) -> None:
    store = nbllm.get_store()
    store.update_provider("local", key="wrong-key")
    with pytest.raises(nbllm.AuthenticationError) as caught:
        nbllm.chat("hi", max_tokens=5)
    assert caught.value.status == 401 and caught.value.hint and "key" in caught.value.hint
    assert "wrong-key" not in str(caught.value)
    store.update_provider("local", key=local.key)
    assert nbllm.chat("Say OK.", max_tokens=5).status == "ok"  # still usable


def test_too_long_prompt_is_refused_before_sending_with_the_servers_count(local: Any) -> None:
    long_prompt = "word " * 3000
    with pytest.raises(nbllm.ContextTooLongError, match="counted by the server's tokenizer") as refused:
        nbllm.chat(long_prompt, max_tokens=5)
    assert "nothing was sent" in str(refused.value) and "check_context=False" in str(refused.value)
    # Sent anyway, the server's own error (whole reply) ...
    with pytest.raises(nbllm.ContextTooLongError) as caught:
        nbllm.chat(long_prompt, max_tokens=5, stream=False, check_context=False)
    assert "maximum context length is 2048" in str(caught.value) and caught.value.hint
    # ... and, streamed, this server sends nothing at all: with a prompt near the window, that is
    # the likely cause, so it is named (it was an IncompleteStreamError before issue 14).
    with pytest.raises(nbllm.ContextTooLongError, match="empty reply to a prompt of about") as streamed:
        nbllm.chat(long_prompt, max_tokens=5, check_context=False)
    assert "--no-stream" in str(streamed.value) and nbllm.history()[-1].status == "error"
    assert nbllm.chat("Say OK.", max_tokens=5).status == "ok"


def test_invalid_parameter_gets_the_servers_message(local: Any) -> None:
    # nbllm checks its own options before sending (issue 14), so the server's message is shown
    # for a field it passes through unchecked: the provider's extra_body.
    nbllm.get_store().update_provider("local", extra_body={"top_p": "hot"})
    with pytest.raises(nbllm.StatusError) as caught:
        nbllm.chat("hi", max_tokens=5)
    assert "top_p" in str(caught.value) and "valid number" in str(caught.value)
    assert caught.value.hint


def test_named_tool_choice_returns_a_whole_tool_call(local: Any) -> None:
    result = nbllm.chat(
        "What is the weather in Paris?", tools=[WEATHER_TOOL], tool_choice="get_weather", temperature=0
    )
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "get_weather" and isinstance(call.parsed_arguments(), dict)
    assert "city" in call.parsed_arguments()


def test_capabilities_match_the_server(local: Any, ip: Any, capsys: Any) -> None:
    asked: list[str] = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        asked.append(city)
        return "sunny"

    ip.user_ns["get_weather"] = get_weather
    magics = ip.magics_manager.registry["ChatMagics"]
    magics.display_mode = "terminal"
    try:
        # An automatic choice: the model may answer in text or call the tool (when it calls it,
        # the server streams nothing and nbllm asks unstreamed; see tests/conformance). A
        # named choice makes it call the tool.
        for choice in ("auto", "get_weather"):
            ip.run_cell_magic(
                "chat",
                f"local/smollm2 --tools get_weather --tool-choice {choice} -t 0 --max-tokens 32 --new",
                "What is the weather in Paris?",
            )
            result = nbllm.last()
            assert result is not None and result.status == "ok" and result.text
    finally:
        magics.display_mode = "auto"
    assert asked and "[tool] get_weather(" in capsys.readouterr().out
    ip.run_cell_magic(
        "chat", "local/smollm2 --json -o data -t 0", "Reply with a JSON object with key city and value Paris."
    )
    assert isinstance(ip.user_ns["data"], (dict, list))


def test_start_stop_restart_leave_no_process(ip: Any, local_server: Any) -> None:
    model = get_local_model()
    ip.run_line_magic("llm_provider", "local stop")
    assert not alive(local_server.process.pid)
    ip.run_line_magic("llm_provider", "local start --ctx 1024")
    first = model.server
    assert (
        first is not None
        and first.running
        and nbllm.get_store().resolve("local/smollm2").spec.context_window == 1024
    )
    ip.run_line_magic("llm_provider", "local start")  # a restart replaces the server
    second = model.server
    assert second is not None and second.running and not alive(first.process.pid)
    ip.run_line_magic("llm_provider", "local stop")
    assert not alive(second.process.pid) and "local" not in nbllm.get_store().providers
    assert model.server is None
    local_server.start()  # the module's server again, for any later test
    model.server = local_server


def test_quickstart_notebook_runs_headless(capsys: Any) -> None:
    from nbllm.cli import main

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "01-quickstart.ipynb"
    assert main(["run", str(notebook)]) == 0
    out = capsys.readouterr().out
    assert "starting the bundled local model" in out
    assert out.count("[local/smollm2 · first token") == 2  # both %%chat cells answered
    assert "is running at http://127.0.0.1:" in out


def test_the_random_key_is_not_in_the_process_list_or_listings(ip: Any, local: Any, capsys: Any) -> None:
    import subprocess

    key = local.key.get_secret_value()
    assert key not in subprocess.run(["ps", "auxww"], capture_output=True, text=True, check=True).stdout
    ip.run_line_magic("llm_provider", "show local")
    ip.run_line_magic("llm_provider", "list")
    ip.run_cell_magic("chat", "local/smollm2 --dry-run", "hi")
    assert key not in capsys.readouterr().out
