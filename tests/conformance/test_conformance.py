"""One suite against every real server that runs here (see ``servers.py``), through nbllm's public
surface only: magics in a real IPython shell, and the Python API.

Every server is expected to behave the same. Where one deviates from OpenAI's API, nbllm must
still get the reply right or raise an error that names the real cause; the test then records
the deviation (``FINDINGS.deviation``) instead of skipping. The "Compatibility" page's table is
made from these findings, and the last test checks that the committed table matches this run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import nbllm
from nbllm._constants import REASONING_STYLES
from nbllm._replay.recording import GATEWAY_COST_HEADER
from tests.conformance import table
from tests.conformance.conftest import SERVER_NAMES
from tests.conformance.findings import (
    ANTHROPIC_BEHAVIOURS,
    ANTHROPIC_SERVERS,
    BEHAVIOUR_IDS,
    EMBEDDING_SERVERS,
    FINDINGS,
    GATEWAY_ONLY,
    INTERRUPTING_BEHAVIOURS,
    INTERRUPTING_SERVERS,
    RESPONSES_BEHAVIOURS,
    RESPONSES_SERVERS,
)
from tests.conformance.servers import (
    CANNED_TEXT,
    CONTEXT_WINDOW,
    GATEWAY_CANNED,
    GATEWAY_DEAD_UPSTREAM,
    GATEWAY_EMBEDDER,
    GATEWAY_PRICED,
    GATEWAY_RATE_LIMITED,
    GATEWAY_THINKER,
    THINKER_ANSWER,
    THINKER_THOUGHT,
    Server,
)

KEY_ENV = "CONFORMANCE_KEY"
WRONG_KEY_ENV = "CONFORMANCE_WRONG_KEY"
UNKNOWN_MODEL = "no-such-model"
QUESTION = "What is the capital of France? Answer in one sentence."
WEATHER_PROMPT = "What is the weather in Paris? Use the get_weather tool."
# More than 2,048 tokens in any tokenizer (about 2,300 words), yet quick to read for a CPU.
OVER_WINDOW_PROMPT = "Summarise this: " + "the quick brown fox jumps over the lazy dog. " * 260

SEEN: dict[str, list[str]] = defaultdict(list)
"""Every text a server's tests were shown (outputs, errors, reprs), for the key check."""


def get_weather(city: str) -> str:
    """Current weather for a city.

    city: the city's name, e.g. Paris.
    """
    return f"Sunny and 21 degrees in {city}."


@dataclass
class Outcome:
    text: str
    """Everything the magic printed or displayed, and its error."""
    error: str | None


def run_magic(ip: Any, server: Server, magic: str, line: str, cell: str | None = None) -> Outcome:
    with capture_output() as out:
        try:
            if cell is None:
                ip.run_line_magic(magic, line)
            else:
                ip.run_cell_magic(magic, line, cell)
            error = None
        except UsageError as exc:
            error = str(exc)
    texts = [out.stdout, out.stderr, *(str(v) for o in out.outputs for v in o.data.values())]
    outcome = Outcome("\n".join([*texts, error or ""]), error)
    SEEN[server.name].append(outcome.text)
    return outcome


def seen_error(server: Server, error: BaseException) -> BaseException:
    SEEN[server.name].append(f"{error}\n{getattr(error, 'hint', '')}\n{error!r}")
    return error


@pytest.fixture(autouse=True)
def shell_shows_text(ip: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """%%chat prints as in a terminal; displays are captured as text and HTML."""
    magics = ip.magics_manager.registry["ChatMagics"]
    monkeypatch.setattr(magics, "display_mode", "terminal")
    monkeypatch.setattr(ip.display_formatter, "active_types", ["text/plain", "text/html"])
    yield


@pytest.fixture
def provider(ip: Any, server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """`server` registered as a user would: its key in an environment variable."""
    return register(ip, server, monkeypatch)


def register(ip: Any, server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv(KEY_ENV, server.key)
    models = " ".join(f"--model {m}" for m in [f"{server.model}={CONTEXT_WINDOW}", *server.gateway_models])
    outcome = run_magic(
        ip,
        server,
        "llm_provider",
        f"add {server.name} --url {server.base_url} --key-env {KEY_ENV} {models} --caps tools,json",
    )
    assert outcome.error is None, outcome.text
    return server


def qualified(server: Server, model: str | None = None) -> str:
    return f"{server.name}/{model or server.model}"


# -- registration and the endpoint check ------------------------------------------------------


def test_register(ip: Any, provider: Server) -> None:
    shown = run_magic(ip, provider, "llm_provider", f"show {provider.name}")
    assert shown.error is None and KEY_ENV in shown.text and provider.base_url in shown.text
    assert nbllm.get_store().resolve(qualified(provider)).spec.context_window == CONTEXT_WINDOW
    FINDINGS.ok(provider.name, "register")


def doctor_lines(text: str) -> dict[str, tuple[str, str]]:
    """check -> (mark, detail) from the report's plain-text form."""
    found = {}
    for match in re.finditer(r"^  (\S) ([\w ]+): (.*)$", text, re.MULTILINE):
        found[match.group(2)] = (match.group(1), match.group(3))
    return found


def test_doctor(ip: Any, provider: Server) -> None:
    outcome = run_magic(ip, provider, "llm_provider", f"test {qualified(provider)}")
    checks = doctor_lines(outcome.text)
    assert outcome.error is None and checks, outcome.text
    assert checks["chat"][0] == "\N{CHECK MARK}", outcome.text
    assert checks["models"][0] == "\N{CHECK MARK}", outcome.text
    if checks["usage"][0] == "!":
        FINDINGS.deviation(provider.name, "doctor", NO_STREAMED_USAGE)
    else:
        FINDINGS.ok(provider.name, "doctor")


def test_discover(ip: Any, provider: Server) -> None:
    outcome = run_magic(ip, provider, "llm_provider", f"discover {provider.name}")
    assert outcome.error is None, outcome.text
    listed = re.findall(r"^  (\S+)    \(", outcome.text, re.MULTILINE)
    assert provider.model in listed, outcome.text
    assert f"{provider.model}    (registered)" in outcome.text
    FINDINGS.ok(provider.name, "discover")


# -- replies ------------------------------------------------------------------------------------


def chat_cell(
    ip: Any, server: Server, options: str, cell: str = QUESTION
) -> tuple[Outcome, nbllm.ChatResult]:
    outcome = run_magic(ip, server, "chat", f"{qualified(server)} -t 0 --seed 1 {options}", cell)
    result = nbllm.last()
    assert result is not None
    SEEN[server.name].append(repr(result) + result.footer())
    return outcome, result


NO_STREAMED_USAGE = (
    "Sends no token usage in a stream, even when asked (`stream_options.include_usage`); nbllm "
    "estimates the counts and marks them ~ (footer, history, panel), and `%llm_provider test` says so."
)


def test_streamed_reply(ip: Any, provider: Server) -> None:
    outcome, result = chat_cell(ip, provider, "--max-tokens 24")
    assert outcome.error is None, outcome.text
    assert result.status == "ok" and "Paris" in result.text
    assert outcome.text.startswith(result.text)  # streamed to the output, then the footer
    assert result.ttft_s is not None and 0 < result.ttft_s <= result.latency_s  # type: ignore[operator]
    record = nbllm.history()[-1]
    assert record.status == "ok" and record.ttft_s == result.ttft_s
    FINDINGS.measure(provider.name, "stream_ttft_s", result.ttft_s)
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    notes = [] if ends_with_done(provider) else [NO_DONE]
    if result.usage.estimated:
        notes.append(NO_STREAMED_USAGE)
    if notes:
        FINDINGS.deviation(provider.name, "stream", " ".join(notes))
    else:
        FINDINGS.ok(provider.name, "stream")


NO_DONE = "Ends a stream without `data: [DONE]`; nbllm takes the finish reason as the end."


def ends_with_done(server: Server) -> bool:
    """Whether the server's own stream ends with ``data: [DONE]`` (read raw, outside nbllm)."""
    body = {
        "model": server.model,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 4,
        "stream": True,
    }
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=body,
        headers={"Authorization": f"Bearer {server.key}"}, timeout=120,
    ) as response:  # fmt: skip
        data = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    assert data, "the server streamed no events"
    return data[-1] == "[DONE]"


def test_whole_reply(ip: Any, provider: Server) -> None:
    outcome, result = chat_cell(ip, provider, "--max-tokens 24 --no-stream")
    assert outcome.error is None, outcome.text
    assert result.status == "ok" and "Paris" in result.text and result.finish_reason is not None
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    if result.usage.estimated:
        FINDINGS.deviation(
            provider.name, "whole", "Sends no token usage in a whole reply; nbllm estimates the counts (~)."
        )
    else:
        FINDINGS.ok(provider.name, "whole")


# -- errors ---------------------------------------------------------------------------------------


def test_wrong_key(ip: Any, provider: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "sk-wrong-" + provider.key[::-1]
    monkeypatch.setenv(WRONG_KEY_ENV, wrong)
    added = run_magic(
        ip, provider, "llm_provider",
        f"add wrong --url {provider.base_url} --key-env {WRONG_KEY_ENV} --model {provider.model}",
    )  # fmt: skip
    assert added.error is None
    outcome = run_magic(ip, provider, "chat", f"wrong/{provider.model} --max-tokens 4", QUESTION)
    assert wrong not in outcome.text
    if outcome.error is None:  # the server checks no key at all
        assert nbllm.history()[-1].status == "ok"
        FINDINGS.deviation(
            provider.name,
            "wrong_key",
            "Has no authentication: any key, or none, is accepted. nbllm cannot tell; keep such a "
            "server on loopback or behind a gateway.",
        )
        return
    with pytest.raises(nbllm.APIError) as info:
        nbllm.chat(QUESTION, f"wrong/{provider.model}", max_tokens=4)
    error = seen_error(provider, info.value)
    assert isinstance(error, nbllm.AuthenticationError), f"{type(error).__name__}: {error}"
    assert WRONG_KEY_ENV in f"{error} {error.hint}", "the error should name the key's variable"
    assert wrong not in str(error)
    assert nbllm.history()[-1].status == "error"
    if error.status == 401:
        FINDINGS.ok(provider.name, "wrong_key")
    else:
        FINDINGS.deviation(
            provider.name,
            "wrong_key",
            f"Answers a wrong key with {error.status}, not 401; nbllm recognises the server's "
            "message and raises AuthenticationError naming the key's variable.",
        )


def test_unknown_model(ip: Any, provider: Server) -> None:
    run_magic(ip, provider, "llm_provider", f"model {provider.name} add {UNKNOWN_MODEL}")
    try:
        result = nbllm.chat(QUESTION, qualified(provider, UNKNOWN_MODEL), max_tokens=8)
    except nbllm.APIError as exc:
        error = seen_error(provider, exc)
        assert isinstance(error, nbllm.APIError)
        said = f"{error} {error.hint}"
        assert UNKNOWN_MODEL in said and "discover" in said, said
        if isinstance(error, nbllm.ModelNotFoundError) and error.status == 404:
            FINDINGS.ok(provider.name, "unknown_model")
        else:
            FINDINGS.deviation(
                provider.name,
                "unknown_model",
                f"Answers an unknown model id with {error.status}, not 404; nbllm reads the "
                f"server's message and raises {type(error).__name__} naming the id, with a hint "
                "to run `%llm_provider discover`.",
            )
        return
    # The server answered anyway: the one model it has loaded replied under the asked-for id.
    assert result.status == "ok" and result.text
    doctor = run_magic(ip, provider, "llm_provider", f"test {qualified(provider, UNKNOWN_MODEL)}")
    assert doctor_lines(doctor.text).get("model id", ("?",))[0] == "!", doctor.text
    FINDINGS.deviation(
        provider.name,
        "unknown_model",
        "Answers any model id with the model it has loaded (200, no error); nbllm returns that "
        "reply, and `%llm_provider test` warns that the id is not among the served models.",
    )


def test_over_window_is_stopped_before_sending(provider: Server) -> None:
    with pytest.raises(nbllm.ContextTooLongError) as info:
        nbllm.chat(OVER_WINDOW_PROMPT, qualified(provider), max_tokens=16)
    error = seen_error(provider, info.value)
    assert "nothing was sent" in str(error) and f"{CONTEXT_WINDOW:,}" in str(error)
    record = nbllm.history()[-1]
    assert record.status == "error" and record.attempts == [], "the prompt should not have been sent"
    FINDINGS.ok(provider.name, "over_window_preflight")
    counted_by_server = "server's tokenizer" in str(error)
    FINDINGS.measure(provider.name, "over_window_counted_by_server", float(counted_by_server))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_over_window_sent_anyway(provider: Server, stream: bool) -> None:
    behaviour = "over_window_stream" if stream else "over_window_whole"
    try:
        result = nbllm.chat(
            OVER_WINDOW_PROMPT, qualified(provider), max_tokens=16, stream=stream, check_context=False
        )
    except nbllm.APIError as exc:
        error = seen_error(provider, exc)
    else:
        assert result.status == "ok" and result.text
        FINDINGS.deviation(
            provider.name,
            behaviour,
            "Enforces no context window of its own and answers a prompt longer than the one "
            "declared; only nbllm's pre-flight check (the row above) stops it.",
        )
        return
    assert isinstance(error, nbllm.ContextTooLongError), f"{type(error).__name__}: {error}"
    assert nbllm.history()[-1].status == "error"
    if error.status == 400:
        FINDINGS.ok(provider.name, behaviour)
    elif error.status is not None:
        FINDINGS.deviation(
            provider.name,
            behaviour,
            f"Refuses an over-long prompt with {error.status}, not 400; nbllm reads the message and "
            "raises ContextTooLongError.",
        )
    else:
        FINDINGS.deviation(
            provider.name,
            behaviour,
            "Answers an over-long prompt with an empty 200 reply, no error; nbllm raises "
            "ContextTooLongError (the prompt fills the window) instead of returning an empty reply.",
        )


# -- tools --------------------------------------------------------------------------------------


WEATHER_TOOL = nbllm.tool_schema(get_weather)


def check_tool_call(server: Server, result: nbllm.ChatResult) -> None:
    (call,) = result.tool_calls
    assert call.name == "get_weather" and call.id
    assert "city" in call.parsed_arguments()


IGNORED_TOOL_CHOICE = (
    "Ignores `tool_choice` (named or required) with this model and answers in text; nbllm raises "
    "ToolChoiceIgnoredError saying so, with the text on the error's result."
)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_named_tool_choice(provider: Server, stream: bool) -> None:
    behaviour = "tool_named_stream" if stream else "tool_named_whole"
    try:
        result = nbllm.chat(
            WEATHER_PROMPT, qualified(provider), tools=[WEATHER_TOOL], tool_choice="get_weather",
            stream=stream, temperature=0, max_tokens=32,
        )  # fmt: skip
    except nbllm.ToolChoiceIgnoredError as exc:
        error = seen_error(provider, exc)
        assert isinstance(error, nbllm.ToolChoiceIgnoredError) and error.result is not None
        assert error.result.text and nbllm.history()[-1].status == "error"
        FINDINGS.deviation(provider.name, behaviour, IGNORED_TOOL_CHOICE)
        return
    check_tool_call(provider, result)
    FINDINGS.ok(provider.name, behaviour)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_auto_tool_choice(provider: Server, stream: bool) -> None:
    """With `auto` the model may call the tool or answer in text; both are replies. SmolLM2's
    choice between them can flip with the server's prompt cache (llama-cpp-python serves the
    gateway too), so a streamed probe is asked up to three times for the empty stream."""
    behaviour = "tool_auto_stream" if stream else "tool_auto_whole"
    for _ in range(3 if stream else 1):
        result = nbllm.chat(
            WEATHER_PROMPT, qualified(provider), tools=[WEATHER_TOOL], tool_choice="auto",
            stream=stream, temperature=0, max_tokens=32,
        )  # fmt: skip
        assert result.status == "ok" and (result.tool_calls or result.text)
        if result.tool_calls:
            check_tool_call(provider, result)
        first_attempt = nbllm.history()[-1].attempts[0]
        if first_attempt.outcome == "EmptyReplyError":
            break
    if stream and first_attempt.outcome == "EmptyReplyError":
        assert result.retries == 1, nbllm.history()[-1].attempts
        FINDINGS.deviation(
            provider.name,
            behaviour,
            "Streams nothing (200, no text, no tool call) for `tool_choice` auto; nbllm asks again "
            "unstreamed, shows that as a retry, and returns the reply.",
        )
    elif stream and result.tool_calls and result.finish_reason != "tool_calls":
        FINDINGS.deviation(
            provider.name,
            behaviour,
            f"Ends a tool call with finish_reason {result.finish_reason!r}, not 'tool_calls'; nbllm "
            "goes by the tool calls it received.",
        )
    else:
        FINDINGS.ok(provider.name, behaviour)


def test_chat_tools_runs_the_tool(ip: Any, provider: Server) -> None:
    ip.user_ns["get_weather"] = get_weather
    options = "--tools get_weather --tool-choice get_weather --max-tokens 32"
    outcome, result = chat_cell(ip, provider, options, WEATHER_PROMPT)
    if outcome.error is not None and "ToolChoiceIgnoredError" in outcome.error:
        assert "ignored tool_choice" in outcome.text and result.text in outcome.text
        FINDINGS.deviation(provider.name, "chat_tools", IGNORED_TOOL_CHOICE)
        return
    assert outcome.error is None, outcome.text
    assert "[tool] get_weather(" in outcome.text and "Sunny and 21 degrees in Paris" in outcome.text
    assert result.status == "ok" and result.text, "after the tool ran, the model should answer"
    FINDINGS.ok(provider.name, "chat_tools")


# -- JSON, cancelling, concurrency ------------------------------------------------------------


def test_json_mode(ip: Any, provider: Server) -> None:
    outcome, result = chat_cell(
        ip, provider, "--json --max-tokens 32 -o answer",
        'Give the capital of France as a JSON object like {"capital": "..."}.',
    )  # fmt: skip
    assert outcome.error is None, outcome.text
    assert isinstance(ip.user_ns["answer"], dict | list) and result.parsed == ip.user_ns["answer"]
    FINDINGS.ok(provider.name, "json_mode")


class Capital(pydantic.BaseModel):
    city: str
    country: str


def test_typed_reply(provider: Server) -> None:
    """With the model flagged json_schema, the schema goes as response_format and the server
    should constrain its reply to it; nbllm validates it into the pydantic model."""
    nbllm.get_store().update_model(provider.name, provider.model, flags={"json_schema": True})
    prompt = "What is the capital of France? Give the city and the country."
    try:
        result = nbllm.chat(prompt, qualified(provider), schema=Capital, max_tokens=48, temperature=0)
    except nbllm.IncompleteStreamError as error:
        seen_error(provider, error)
        assert "cut off at the token limit" in error.message and error.result.finish_reason == "length"
        refused = [r for r in nbllm.history() if r.error_class == "BadRequestError"]
        assert refused, "only the prompt-and-JSON-mode fallback was expected to run long"
        FINDINGS.deviation(
            provider.name,
            "schema",
            "Refuses a JSON schema in `response_format` (a validation error, as HTTP 500); nbllm asks "
            "again with the schema in the prompt and JSON mode, where SmolLM2 (135M) copies the "
            "schema's shape and runs to max_tokens: nbllm says the reply was cut off at the token limit.",
        )
        return
    except nbllm.SchemaMismatchError as error:
        seen_error(provider, error)
        assert "Capital" in error.message and error.result.text
        FINDINGS.deviation(
            provider.name,
            "schema",
            "Does not hold the reply to the JSON schema in `response_format`; nbllm asks once more "
            "with the validation errors, then raises SchemaMismatchError with the reply.",
        )
        return
    assert isinstance(result.parsed, Capital) and result.parsed.city
    refused = [r for r in nbllm.history() if r.error_class == "BadRequestError"]
    if refused:
        assert "response_format" in (refused[0].error_message or "")
        FINDINGS.deviation(
            provider.name,
            "schema",
            "Refuses a JSON schema in `response_format` (a validation error); nbllm asks again with "
            "the schema in the prompt and JSON mode, and does so for the rest of the session.",
        )
        return
    FINDINGS.ok(provider.name, "schema")


def test_map_rows(provider: Server) -> None:
    rows = [{"n": n} for n in range(8)]
    started = time.perf_counter()
    out = nbllm.map(
        "Say the number {n}.", rows, model=qualified(provider), concurrency=4, max_tokens=12,
        checkpoint=False, progress=False,
    )  # fmt: skip
    FINDINGS.measure(provider.name, "map_8_rows_s", time.perf_counter() - started)
    assert [row["status"] for row in out] == ["ok"] * 8, [row["error"] for row in out]
    assert all(row["output"] and row["tokens"] > 0 for row in out)
    assert sum(1 for record in nbllm.history() if record.status == "ok") == 8
    FINDINGS.ok(provider.name, "map")


# -- reasoning --------------------------------------------------------------------------------


def test_effort_in_each_reasoning_style(provider: Server) -> None:
    """SmolLM2 does not think, but the server must take (or clearly refuse) the fields --effort
    adds in each style; a refusal's error must name the field and the style to change."""
    refused: dict[str, str] = {}
    statuses: set[int] = set()
    # --effort needs the reasoning flag (refused before sending otherwise, on every entry point):
    # flagged here so the fields reach the server, which is what this row tests.
    nbllm.get_store().update_model(provider.name, provider.model, flags={"reasoning": True})
    try:
        for style in REASONING_STYLES:
            nbllm.get_store().update_provider(provider.name, reasoning_style=style)
            try:
                result = nbllm.chat(QUESTION, qualified(provider), effort="low", max_tokens=8, temperature=0)
            except nbllm.BadRequestError as error:
                seen_error(provider, error)
                assert error.hint is not None and f"reasoning style ({style})" in error.hint, error
                refused[style] = error.hint.split("'")[1]  # the field the hint names
                statuses.add(error.status or 0)
                continue
            assert result.status == "ok" and result.text
    finally:
        nbllm.get_store().update_provider(provider.name, reasoning_style=None)
        nbllm.get_store().update_model(provider.name, provider.model, flags={"reasoning": False})
    if not refused:
        FINDINGS.ok(provider.name, "effort")
        return
    fields = " and ".join(f"`{field}` (style {style})" for style, field in refused.items())
    status = "/".join(str(s) for s in sorted(statuses))
    FINDINGS.deviation(
        provider.name,
        "effort",
        f"Refuses {fields} with HTTP {status}; nbllm's error names the field and says to change "
        "`--reasoning-style`.",
    )


async def test_think_tags_through_a_gateway(
    ip: Any, gateway: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiteLLM's mock model streams its content three characters at a time, so the tags arrive
    split (``<th``, ``ink``, ``>Th``), as from any gateway relaying a model without a reasoning
    parser."""
    register(ip, gateway, monkeypatch)
    model = qualified(gateway, GATEWAY_THINKER)
    events = [event async for event in nbllm.astream(QUESTION, model)]
    thoughts = [e.text for e in events if isinstance(e, nbllm.ReasoningEvent)]
    streamed = events[-1].result  # type: ignore[union-attr]
    assert len(thoughts) > 1 and "".join(thoughts).strip() == THINKER_THOUGHT  # it came in pieces
    assert (streamed.reasoning, streamed.text) == (THINKER_THOUGHT, THINKER_ANSWER)
    whole = await nbllm.achat(QUESTION, model, stream=False)
    assert (whole.reasoning, whole.text) == (THINKER_THOUGHT, THINKER_ANSWER)
    FINDINGS.ok(gateway.name, "think_tags")


# -- Anthropic Messages -------------------------------------------------------------------------


def register_api(ip: Any, server: Server, api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`server` registered a second time, speaking `api`; returns the model's name."""
    monkeypatch.setenv(KEY_ENV, server.key)
    name = f"{server.name}-{api}"
    line = (
        f"add {name} --api {api} --url {server.base_url} --key-env {KEY_ENV} "
        f"--model {server.model}={CONTEXT_WINDOW} --caps tools"
    )
    outcome = run_magic(ip, server, "llm_provider", line)
    assert outcome.error is None, outcome.text
    return f"{name}/{server.model}"


@pytest.fixture
def messages_provider(ip: Any, messages_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """A server that serves Anthropic Messages, registered a second time, speaking them."""
    register_api(ip, messages_server, "anthropic", monkeypatch)
    return messages_server


def messages_model(server: Server) -> str:
    return f"{server.name}-anthropic/{server.model}"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_anthropic_messages_reply(messages_provider: Server, stream: bool) -> None:
    server = messages_provider
    result = nbllm.chat(QUESTION, messages_model(server), stream=stream, max_tokens=24, temperature=0)
    assert result.status == "ok" and "Paris" in result.text and result.finish_reason in ("stop", "length")
    assert nbllm.history()[-1].attempts[-1].host in server.base_url
    assert result.usage.completion_tokens > 0 and not result.usage.estimated
    FINDINGS.ok(server.name, "anthropic_stream" if stream else "anthropic_whole")


CONTENTLESS_TOOL_TURN = (
    "Calls the tool, but hands the next round's tool-calling turn to its upstream without `content`, "
    "which llama-cpp-python's chat template cannot render (HTTP 500); nbllm shows the tool's result "
    "and the server's error, and leaves the conversation as it was."
)
SPLIT_TOOL_BLOCKS = (
    "Streams each fragment of a tool call's arguments as a content block of its own, all with the "
    "call's id; nbllm joins them by id into one call."
)


def test_anthropic_messages_tools(ip: Any, messages_provider: Server) -> None:
    server = messages_provider
    ip.user_ns["get_weather"] = get_weather
    line = f"{messages_model(server)} -t 0 --tools get_weather --tool-choice get_weather --max-tokens 32"
    outcome = run_magic(ip, server, "chat", line, WEATHER_PROMPT)
    result = nbllm.last()
    assert result is not None
    if outcome.error is not None and "ToolChoiceIgnoredError" in outcome.error:
        assert "ignored tool_choice" in outcome.text and result.text in outcome.text
        FINDINGS.deviation(server.name, "anthropic_tools", IGNORED_TOOL_CHOICE)
        return
    assert "[tool] get_weather(" in outcome.text and "Sunny and 21 degrees in Paris" in outcome.text
    calls = [c for c in result.tool_calls if c.name == "get_weather"]
    assert len(calls) == 1 and calls[0].parsed_arguments().get("city")  # one call, however it was split
    notes = [SPLIT_TOOL_BLOCKS] if _tool_blocks_per_call(server) > 1 else []
    if outcome.error is not None and "has no attribute 'content'" in outcome.text:  # in the card
        assert "ServerError" in outcome.error and "not added to conversation" in outcome.text
        notes.append(CONTENTLESS_TOOL_TURN)
    else:
        assert outcome.error is None, outcome.text
    if notes:
        FINDINGS.deviation(server.name, "anthropic_tools", " ".join(notes))
    else:
        FINDINGS.ok(server.name, "anthropic_tools")


def _tool_blocks_per_call(server: Server) -> int:
    """How many tool_use blocks the server streams for one call (1, as Anthropic does), seen
    on the wire directly: what nbllm hides from its user is what the table reports."""
    body = {
        "model": server.model,
        "max_tokens": 32,
        "stream": True,
        "temperature": 0,
        "messages": [{"role": "user", "content": WEATHER_PROMPT}],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    headers = {"x-api-key": server.key, "anthropic-version": "2023-06-01"}
    url = server.base_url.removesuffix("/v1") + "/v1/messages"
    text = httpx.post(url, json=body, headers=headers, timeout=60).text
    starts = re.findall(r'"content_block_start".*?"type": ?"tool_use", ?"id": ?"([^"]+)"', text)
    return max((starts.count(i) for i in set(starts)), default=0)


# -- OpenAI Responses ---------------------------------------------------------------------------


FORWARDS_RESPONSES = (
    "Forwards `/v1/responses` for an `openai/` model to its upstream's `/v1/responses`, which "
    "llama-cpp-python lacks (HTTP 404, reported as LiteLLM's own); nbllm's error says so and "
    "points to `--api auto`, which then keeps to Chat Completions."
)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_responses_reply(
    ip: Any, responses_server: Server, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = responses_server
    behaviour = "responses_stream" if stream else "responses_whole"
    model = register_api(ip, server, "responses", monkeypatch)
    try:
        result = nbllm.chat(QUESTION, model, stream=stream, max_tokens=24, temperature=0)
    except nbllm.NotFoundError as error:
        seen_error(server, error)
        assert "LiteLLM's upstream answered 404" in (error.hint or ""), error
        FINDINGS.deviation(server.name, behaviour, FORWARDS_RESPONSES)
        return
    assert result.status == "ok" and "Paris" in result.text and not result.usage.estimated
    assert nbllm.history()[-1].attempts[-1].http_status == 200
    FINDINGS.ok(server.name, behaviour)


def test_api_auto(ip: Any, provider: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    model = register_api(ip, provider, "auto", monkeypatch)
    first = nbllm.chat(QUESTION, model, max_tokens=24, temperature=0)
    first_attempts = nbllm.history()[-1].attempts
    second = nbllm.chat(QUESTION, model, max_tokens=24, temperature=0)
    assert first.status == second.status == "ok" and "Paris" in first.text and "Paris" in second.text
    if first_attempts[0].http_status == 404:
        assert first.retries >= 1 and len(nbllm.history()[-1].attempts) == 1  # learned: no second try
        FINDINGS.deviation(
            provider.name,
            "responses_auto",
            "Has no Responses API for this model (HTTP 404 at `/v1/responses`); nbllm falls back to "
            "Chat Completions and keeps to it for the session.",
        )
    else:
        FINDINGS.ok(provider.name, "responses_auto")


# -- embeddings -------------------------------------------------------------------------------

SENTENCES = [
    "The cat sat on the mat.",
    "A dog slept on the rug.",
    "Stock prices fell sharply today.",
    "Paris is the capital of France.",
    "Rain is expected tomorrow.",
]
PER_TOKEN = (
    "Has no pooling setting, so a model whose GGUF names none (SmolLM2) gets one vector per token; "
    "nbllm refuses the reply with an error that names the missing pooling (no silent wrong shapes), "
    "and `%llm_provider test` fails the embeddings check with it."
)
NO_EMBEDDINGS = (
    "Has no `/v1/embeddings` (HTTP 404); nbllm's error says the server serves no embeddings, and "
    "`%llm_provider test` fails the embeddings check with it."
)
IGNORES_DIMENSIONS = (
    "Ignores `dimensions` and sends full-length vectors; nbllm raises an error that says so instead "
    "of returning vectors of the wrong length."
)


REFUSES_DIMENSIONS = (
    "Refuses `dimensions` for a model it forwards as `openai/` (HTTP 400, UnsupportedParamsError); "
    "nbllm's error says to leave the option out."
)


def register_embedder(ip: Any, column: str, server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server registered as a user registers an embedding model: flagged ``embeddings``."""
    monkeypatch.setenv(KEY_ENV, server.key)
    name = f"{column}_emb"
    model = GATEWAY_EMBEDDER if column == "litellm" else server.model
    added = run_magic(ip, server, "llm_provider", f"add {name} --url {server.base_url} --key-env {KEY_ENV}")
    flagged = run_magic(ip, server, "llm_provider", f"model {name} add {model} --caps embeddings")
    assert added.error is None and flagged.error is None, added.text + flagged.text
    return f"{name}/{model}"


def test_embeddings(ip: Any, embeddings_server: tuple[str, Server], monkeypatch: pytest.MonkeyPatch) -> None:
    column, server = embeddings_server
    model = register_embedder(ip, column, server, monkeypatch)
    checked = run_magic(ip, server, "llm_provider", f"test {model}")
    check = doctor_lines(checked.text).get("embeddings")
    assert check is not None, checked.text
    try:
        vectors = nbllm.embed(SENTENCES, model, batch_size=2)
    except nbllm.ProtocolError as exc:
        seen_error(server, exc)
        assert column == "llamacpp_python", exc
        assert "one per token" in str(exc) and "--pooling mean" in (exc.hint or "")
        assert check[0] == "✗" and "one per token" in check[1], checked.text
        FINDINGS.deviation(column, "embed", PER_TOKEN)
        return
    except nbllm.NotFoundError as exc:
        seen_error(server, exc)
        assert column == "transformers", exc
        assert "serves no embeddings" in (exc.hint or "")
        assert check[0] == "✗", checked.text
        FINDINGS.deviation(column, "embed", NO_EMBEDDINGS)
        return
    finally:
        shown = "\n".join(SEEN[server.name])
        assert server.key not in shown + checked.text + repr(nbllm.history())
    assert check[0] == "✓", checked.text
    assert vectors.dtype == "float32" and vectors.shape[0] == len(SENTENCES) and vectors.shape[1] > 0
    assert bool((abs(vectors).sum(axis=1) > 0).all())
    record = nbllm.history()[-1]
    assert (record.kind, record.texts, record.status, len(record.attempts)) == ("embed", 5, "ok", 3)
    assert record.prompt_tokens > 0
    # Batches are put back in order: a text embedded alone gets the vector it got in its batch.
    alone = nbllm.embed(SENTENCES[3], model)
    assert float(abs(alone - vectors[3]).max()) < 1e-3
    FINDINGS.ok(column, "embed")


def test_embedding_dimensions(
    ip: Any, pooled_embeddings_server: tuple[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    column, server = pooled_embeddings_server
    model = register_embedder(ip, column, server, monkeypatch)
    full = nbllm.embed(["a short text"], model).shape[1]
    try:
        shorter = nbllm.embed(["a short text"], model, dimensions=8)
    except nbllm.ProtocolError as exc:
        seen_error(server, exc)
        assert f"{full}-dimensional vectors although 8 dimensions" in str(exc)
        FINDINGS.deviation(column, "embed_dimensions", IGNORES_DIMENSIONS)
        return
    except nbllm.BadRequestError as exc:
        seen_error(server, exc)
        assert "refused dimensions=" in (exc.hint or ""), exc
        FINDINGS.deviation(column, "embed_dimensions", REFUSES_DIMENSIONS)
        return
    assert shorter.shape == (1, 8)
    FINDINGS.ok(column, "embed_dimensions")


async def test_cancel_mid_stream_then_call_again(provider: Server) -> None:
    events = nbllm.astream("Count from 1 to 200, one number per line.", qualified(provider), max_tokens=120)
    tokens = 0
    async for event in events:
        if isinstance(event, nbllm.TokenEvent):
            tokens += 1
            if tokens == 3:
                break
    await events.aclose()  # type: ignore[attr-defined]
    assert nbllm.history()[-1].status == "cancelled"
    started = time.perf_counter()
    again = await nbllm.achat(QUESTION, qualified(provider), max_tokens=16, temperature=0)
    FINDINGS.measure(provider.name, "call_after_cancel_s", time.perf_counter() - started)
    assert again.status == "ok" and again.text
    FINDINGS.ok(provider.name, "cancel")


async def test_sixteen_concurrent_streams(provider: Server) -> None:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(nbllm.achat(f"Say the number {n}.", qualified(provider), max_tokens=12) for n in range(16))
    )
    FINDINGS.measure(provider.name, "sixteen_concurrent_s", time.perf_counter() - started)
    assert [r.status for r in results] == ["ok"] * 16
    assert all(r.text for r in results)
    assert sum(1 for record in nbllm.history() if record.status == "ok") == 16
    FINDINGS.ok(provider.name, "concurrent")


async def test_sixteen_concurrent_streams_to_a_server_that_interrupts(
    interrupting_server: tuple[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 29, item 9: the server drops all but the newest reply; nbllm learns to send it one
    request at a time, says so once, and asks again for every dropped reply."""
    column, server = interrupting_server
    monkeypatch.setenv(KEY_ENV, server.key)
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(
            name=server.name, url=server.base_url, key_env=KEY_ENV, models={server.model: CONTEXT_WINDOW}
        )
    )
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        results = await asyncio.gather(
            *(nbllm.achat(f"Say the number {n}.", qualified(server), max_tokens=12) for n in range(16))
        )
    FINDINGS.measure(column, "sixteen_concurrent_interrupting_s", time.perf_counter() - started)
    assert [r.status for r in results] == ["ok"] * 16
    assert all(r.text for r in results)
    told = [str(w.message) for w in said if "one request at a time" in str(w.message)]
    assert len(told) == 1 and "--interrupt_requests False" in told[0]
    attempts = [attempt for record in nbllm.history() for attempt in record.attempts]
    assert any(attempt.error == "dropped for another request" for attempt in attempts), (
        "the default server should have dropped some replies"
    )
    FINDINGS.deviation(
        column,
        "concurrent_interrupting",
        "Drops the reply in progress when another request arrives; nbllm asks again for each dropped "
        "reply once the server is free, and sends it one request at a time from then on (saying so once)",
    )


# -- fallbacks through the gateway ------------------------------------------------------------


def test_fallback_after_rate_limit(ip: Any, gateway: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    register(ip, gateway, monkeypatch)
    outcome = run_magic(
        ip, gateway, "chat",
        f"{qualified(gateway, GATEWAY_RATE_LIMITED)} --fallback {qualified(gateway, GATEWAY_CANNED)}",
        QUESTION,
    )  # fmt: skip
    result = nbllm.last()
    assert outcome.error is None, outcome.text
    assert result is not None and result.text == CANNED_TEXT
    assert result.model == qualified(gateway, GATEWAY_CANNED)
    assert result.fallbacks == [qualified(gateway, GATEWAY_RATE_LIMITED)]
    record = nbllm.history()[-1]
    assert record.attempts[0].http_status == 429 and record.attempts[-1].outcome == "ok"
    FINDINGS.ok(gateway.name, "fallback_rate_limited")


def test_fallback_after_dead_upstream(ip: Any, gateway: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    register(ip, gateway, monkeypatch)
    result = nbllm.chat(
        QUESTION,
        qualified(gateway, GATEWAY_DEAD_UPSTREAM),
        fallback=qualified(gateway),
        max_tokens=24,
        temperature=0,
    )
    assert result.status == "ok" and "Paris" in result.text
    assert result.model == qualified(gateway) and result.fallbacks == [
        qualified(gateway, GATEWAY_DEAD_UPSTREAM)
    ]
    FINDINGS.ok(gateway.name, "fallback_dead_upstream")


def test_fallback_across_protocols(ip: Any, gateway: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's rate-limited model asked in Anthropic's protocol, falling back to a model
    asked in OpenAI's: one call, two protocols, one history record."""
    register(ip, gateway, monkeypatch)
    line = (
        f"add {gateway.name}-messages --api anthropic --url {gateway.base_url} --key-env {KEY_ENV} "
        f"--model {GATEWAY_RATE_LIMITED}"
    )
    assert run_magic(ip, gateway, "llm_provider", line).error is None
    result = nbllm.chat(
        QUESTION,
        f"{gateway.name}-messages/{GATEWAY_RATE_LIMITED}",
        fallback=qualified(gateway, GATEWAY_CANNED),
    )
    assert result.status == "ok" and result.text == CANNED_TEXT
    assert result.fallbacks == [f"{gateway.name}-messages/{GATEWAY_RATE_LIMITED}"]
    record = nbllm.history()[-1]
    assert record.attempts[0].http_status == 429 and record.attempts[-1].outcome == "ok"
    FINDINGS.ok(gateway.name, "fallback_across_protocols")


def test_gateway_reported_cost(ip: Any, gateway: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM prices a call with its own prices and reports the figure: that is the call's
    cost, over the (deliberately different) price nbllm was given."""
    register(ip, gateway, monkeypatch)
    model = qualified(gateway, GATEWAY_PRICED)
    line = f"model {gateway.name} set {GATEWAY_PRICED} --price 500,500"
    assert run_magic(ip, gateway, "llm_provider", line).error is None
    whole = nbllm.chat(QUESTION, model, stream=False)
    assert whole.cost_reported and whole.cost == pytest.approx(gateway_cost(gateway, stream=False))
    assert nbllm.history()[-1].cost == whole.cost
    streamed = nbllm.chat(QUESTION, model)
    assert streamed.cost_reported and streamed.cost == pytest.approx(gateway_cost(gateway, stream=True))
    FINDINGS.ok(gateway.name, "gateway_cost")


def gateway_cost(gateway: Server, *, stream: bool) -> float:
    """What the gateway bills for `QUESTION` to its priced model, asked with httpx alone: for a
    whole reply in the ``x-litellm-response-cost`` header, for a stream in its usage chunk's
    ``cost`` (it counts a stream's tokens itself, a whole mock reply's by the mock's usage)."""
    asked: dict[str, Any] = {"model": GATEWAY_PRICED, "messages": [{"role": "user", "content": QUESTION}]}
    asked |= {"stream": True, "stream_options": {"include_usage": True}} if stream else {"stream": False}
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json=asked,
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=60,
    )
    if not stream:
        return float(response.headers[GATEWAY_COST_HEADER])
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    return float(next(chunk["usage"]["cost"] for chunk in chunks if chunk.get("usage")))


# -- last: the key, and the table -------------------------------------------------------------


def test_key_never_shown(ip: Any, provider: Server) -> None:
    for line in ("list", f"show {provider.name}"):
        run_magic(ip, provider, "llm_provider", line)
    seen = SEEN[provider.name]
    assert len(seen) > 5, "the suite's other tests should have run first"
    seen += [repr(provider_config) for provider_config in nbllm.get_store().providers.values()]
    leaks = [text for text in seen if provider.key in text]
    assert leaks == [], "\n---\n".join(leaks)
    FINDINGS.ok(provider.name, "key_hidden")


def test_the_compatibility_page_matches_this_run() -> None:
    expected_rows = {name: set(BEHAVIOUR_IDS) - GATEWAY_ONLY for name in SERVER_NAMES}
    expected_rows["litellm"] = set(BEHAVIOUR_IDS)
    for name in set(SERVER_NAMES) - ANTHROPIC_SERVERS:
        expected_rows[name] -= ANTHROPIC_BEHAVIOURS
    for name in set(SERVER_NAMES) - RESPONSES_SERVERS:
        expected_rows[name] -= RESPONSES_BEHAVIOURS
    for name in set(SERVER_NAMES) - EMBEDDING_SERVERS:
        expected_rows[name] -= {"embed_dimensions"}
    for name in set(SERVER_NAMES) - INTERRUPTING_SERVERS:
        expected_rows[name] -= INTERRUPTING_BEHAVIOURS
    found = {server: set(rows) for server, rows in FINDINGS.results.items()}
    if found != expected_rows:
        pytest.skip("only part of the conformance suite ran, so the table cannot be checked")
    fresh = table.render(FINDINGS.to_json())
    committed = table.page_table(table.PAGE.read_text())
    assert committed == fresh, (
        "docs/compatibility.md's table differs from this run; update it with "
        "`python tests/conformance/table.py --write` (the run wrote tests/results/conformance.json)"
    )
