"""The public functions: `chat` (sync), `achat` (async), `astream` (events), `history`, `panel`.

Every request option is an explicit keyword, checked before anything is sent: a wrong type or
range, or an unknown name, is a `PromptError` that names it. The panel is imported when
first used, so a plain script never loads ipywidgets.
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypedDict

from typing_extensions import Unpack

from nbllm._calls.call import plan_routes, run_call, run_call_sync, stream_call, to_messages
from nbllm._calls.history import CallRecord, get_history
from nbllm._calls.request import TOOL_CHOICES, ChatRequest
from nbllm._calls.results import ChatEvent, ChatResult
from nbllm._cells.tools import Tool
from nbllm._exceptions import PromptError
from nbllm._providers.resolved import Resolved

Prompt = str | Sequence[dict[str, Any]]
ToolSpec = Callable[..., Any] | dict[str, Any]


class RequestOptions(TypedDict, total=False):
    """The keyword options of `chat`, `achat` and `astream` (one definition, so the three
    cannot drift apart; type checkers see each name through ``Unpack``)."""

    system: str | None
    fallback: str | Sequence[str] | None
    temperature: float | None
    max_tokens: int | None
    stop: str | Sequence[str] | None
    seed: int | None
    tools: Sequence[ToolSpec] | None
    tool_choice: str | None
    json: bool
    json_schema: dict[str, Any] | None
    stream: bool | None
    effort: str | None
    check_context: bool


OPTION_NAMES = tuple(RequestOptions.__annotations__)
DEFAULTS: RequestOptions = {"json": False, "check_context": True}


def tool_schema(function: Callable[..., Any], name: str | None = None) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for a Python function: its JSON schema comes from the
    signature's type hints and the docstring (the same description ``%%chat --tools`` sends)."""
    return Tool.from_callable(function, name).schema()


def _build(prompt: Prompt, model: str | None, given: RequestOptions) -> tuple[ChatRequest, list[Resolved]]:
    unknown = [name for name in given if name not in OPTION_NAMES]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        raise PromptError(
            f"unknown option {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            hint="the options are " + ", ".join(OPTION_NAMES),
        )
    if not (isinstance(prompt, str) or (isinstance(prompt, Sequence) and not isinstance(prompt, bytes))):
        raise PromptError(f"the prompt should be text or a list of messages, not {type(prompt).__name__}")
    if not prompt or (isinstance(prompt, str) and not prompt.strip()):
        raise PromptError("there is nothing to send: give a prompt or at least one message")
    if model is not None and not isinstance(model, str):
        raise PromptError(f"model should be a name such as 'provider/model', not {model!r}")
    options: dict[str, Any] = {name: None for name in OPTION_NAMES} | dict(DEFAULTS) | dict(given)
    system, fallback = options.pop("system"), options.pop("fallback")
    if system is not None and not isinstance(system, str):
        raise PromptError(f"system should be text, not {type(system).__name__}")
    if fallback is not None and not (
        isinstance(fallback, str)
        or (isinstance(fallback, Sequence) and all(isinstance(f, str) for f in fallback))
    ):
        raise PromptError(f"fallback should be model names ('a/m1,b/m2' or a list), not {fallback!r}")
    stop = options.pop("stop")
    tools = options.pop("tools")
    json_mode = options.pop("json")
    if not isinstance(options["check_context"], bool):
        raise PromptError(f"check_context should be True or False, not {options['check_context']!r}")
    request = ChatRequest(
        messages=to_messages(prompt, system),
        stop=[stop] if isinstance(stop, str) else stop,
        tools=_tool_schemas(tools, options.get("tool_choice")),
        json_mode=json_mode,
        **options,
    )
    return request, plan_routes(model, fallback)


def _tool_schemas(tools: Sequence[ToolSpec] | None, choice: str | None) -> list[dict[str, Any]] | None:
    if tools is None:
        if choice is not None and choice not in TOOL_CHOICES:
            raise PromptError(f"tool_choice {choice!r} names a tool, but no tools were given")
        return None
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, Sequence):
        raise PromptError("tools should be a list of Python functions or OpenAI tool schemas")
    schemas = [tool if isinstance(tool, dict) else tool_schema(tool) for tool in tools]
    names = [s.get("function", {}).get("name") for s in schemas]
    if choice is not None and choice not in TOOL_CHOICES and choice not in names:
        raise PromptError(
            f"tool_choice {choice!r} names no tool given; the tools are {', '.join(map(str, names))}"
        )
    return schemas


def chat(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> ChatResult:
    """Ask `model` and wait for the whole reply. Safe inside a running kernel (the call runs
    on a background event loop); an interrupt closes the connection and leaves the partial
    reply in `nbllm.last()`.

    Options (keyword only, see `RequestOptions`): system, fallback, temperature, max_tokens,
    stop, seed, tools, tool_choice, json, json_schema, stream, effort, check_context.
    `tools` are Python functions (described from their signature and docstring, see
    `tool_schema`) or OpenAI tool schemas; the model's calls are on ``result.tool_calls``.
    `json=True` asks for JSON and decodes it into ``result.parsed``. `stream=None` streams
    when the model is flagged for it. `effort` ("none", "low", "medium", "high") tells a
    reasoning model how hard to think, in the shape its provider expects (its
    ``reasoning_style``); the thinking is on ``result.reasoning``, apart from ``result.text``.
    A prompt that does not fit the model's declared context
    window is refused before sending (`ContextTooLongError`) unless `check_context=False`.
    Raises an `nbllm.NbllmError` subclass on failure; the partial result is on the error's
    ``result``."""
    request, routes = _build(prompt, model, options)
    return run_call_sync(request, routes)


async def achat(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> ChatResult:
    """`chat`, awaited on the caller's event loop."""
    request, routes = _build(prompt, model, options)
    return await run_call(request, routes)


def astream(
    prompt: Prompt,
    model: str | None = None,
    **options: Unpack[RequestOptions],
) -> AsyncIterator[ChatEvent]:
    """Yield `TokenEvent`, `ReasoningEvent` (thinking), `StatusEvent` and `ToolCallEvent` as
    the reply arrives, then
    `DoneEvent`. The options are `chat`'s, checked here, before the first event."""
    request, routes = _build(prompt, model, options)
    return stream_call(request, routes)


def history() -> list[CallRecord]:
    """Every recorded call of this session, oldest first."""
    return get_history().records()


def panel() -> Any:
    """The ipywidgets panel over providers, models and the call history (see `nbllm._panel`)."""
    from nbllm._panel import Panel

    return Panel()
