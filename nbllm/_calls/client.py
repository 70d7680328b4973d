"""One HTTP attempt at a chat completion: build the request, send it, read the
reply (streamed or not), and translate failures into nbllm's error tree.

Retries, fallbacks, rate limits and the history live in `call`; this module
does exactly one exchange and records what it saw in a `ReplyState`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from nbllm._calls.results import TokenEvent, ToolCall, Usage
from nbllm._calls.retry import parse_retry_after
from nbllm._calls.sse import SSEDecoder
from nbllm._constants import VERSION
from nbllm._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContextTooLongError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StatusError,
    StreamError,
)
from nbllm._providers.auth import auth_headers, find_key, mask_headers
from nbllm._providers.config import expand_vars
from nbllm._providers.resolved import Resolved

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-ms-request-id", "cf-ray")
MAX_REDIRECTS = 5
UPSTREAM_TEXT_LIMIT = 500


@dataclass
class ChatRequest:
    """What to ask: the messages and the request options (None means "server default")."""

    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | None = None
    """auto, required, none, or the name of one function."""
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None
    stream: bool | None = None
    """None: stream when the model's capabilities allow it."""


@dataclass
class PreparedRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    secrets: set[str] = field(default_factory=set)

    def masked_headers(self) -> dict[str, str]:
        """The headers for display, every secret replaced by a mask."""
        return mask_headers(self.headers, self.secrets)


def prepare(resolved: Resolved, request: ChatRequest) -> PreparedRequest:
    """The exact URL, headers and JSON body a call will send."""
    provider, caps = resolved.provider, resolved.spec.capabilities
    stream = caps.streaming if request.stream is None else request.stream
    body: dict[str, Any] = {"model": resolved.model, "messages": request.messages, "stream": stream}
    if stream and caps.include_usage:
        body["stream_options"] = {"include_usage": True}
    for name in ("temperature", "max_tokens", "stop", "seed", "tools"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            choice
            if choice in ("auto", "required", "none")
            else {"type": "function", "function": {"name": choice}}
        )
    if request.json_schema is not None:
        schema = request.json_schema
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": schema if "schema" in schema else {"name": "reply", "schema": schema},
        }
    elif request.json_mode:
        body["response_format"] = {"type": "json_object"}
    body.update(provider.extra_body)
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": f"nbllm/{VERSION}",
    }
    for name, template in provider.header_templates().items():
        headers[name] = expand_vars(template, f"header {name}")
    credentials = auth_headers(provider)  # one key lookup per attempt (a keyring read can be slow)
    headers.update(credentials)
    secrets = set(credentials.values()) | {headers[name] for name in provider.unsaved_headers()}
    return PreparedRequest(resolved.chat_url, headers, body, secrets)


class _ToolCallAssembler:
    """Joins streamed tool-call deltas by index: the id, type and name arrive once (some
    servers repeat them), the arguments as string fragments to concatenate."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, delta: Mapping[str, Any]) -> None:
        index = int(delta.get("index", len(self._calls)))
        call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if delta.get("id"):
            call["id"] = str(delta["id"])
        function = delta.get("function") or {}
        if function.get("name"):
            call["name"] = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send an object, not a string
            call["arguments"] = json.dumps(arguments)
        elif arguments:
            call["arguments"] += str(arguments)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"])
            for i, c in sorted(self._calls.items())
        ]


@dataclass
class ReplyState:
    """What one attempt has received so far."""

    started: float = field(default_factory=time.perf_counter)
    pieces: list[str] = field(default_factory=list)
    """The reply's text as it arrived (joined once, by `text`: appending to one string per
    token would copy the whole reply each time)."""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    saw_done: bool = False
    events: int = 0
    """Server-sent events received (0 for an empty stream)."""
    first_token_at: float | None = None
    request_id: str | None = None
    http_status: int | None = None
    server: str | None = None
    """The response's Server header (``uvicorn`` for llama-cpp-python and other FastAPI servers)."""
    tools: _ToolCallAssembler = field(default_factory=_ToolCallAssembler)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def shown(self) -> bool:
        """Whether content reached the consumer (after which a retry would repeat it)."""
        return self.first_token_at is not None

    @property
    def complete(self) -> bool:
        return self.saw_done or self.finish_reason is not None


async def send(
    client: httpx.AsyncClient, resolved: Resolved, prepared: PreparedRequest, state: ReplyState
) -> AsyncIterator[TokenEvent]:
    """Perform one attempt, yielding text as it arrives; raise an `APIError` on failure."""
    url, headers = prepared.url, dict(prepared.headers)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request("POST", url, headers=headers, json=prepared.body)
            response = await client.send(request, stream=True)
            try:
                state.http_status = response.status_code
                state.request_id = _request_id(response.headers)
                state.server = response.headers.get("server")
                if response.status_code in (307, 308) and "location" in response.headers:
                    target = str(response.url.join(response.headers["location"]))
                    headers = _redirect_headers(headers, url, target, prepared)
                    url = target
                    continue
                if response.status_code >= 300:
                    body = (await response.aread()).decode("utf-8", errors="replace")
                    raise error_from_response(response.status_code, body, response.headers, resolved, url)
                if prepared.body.get("stream"):
                    async for event in _read_stream(response, resolved, state):
                        yield event
                else:
                    async for event in _read_whole(response, resolved, state):
                        yield event
                return
            finally:
                await response.aclose()
        raise APIConnectionError(
            f"too many redirects from {resolved.chat_url}",
            hint="register the URL the server finally redirects to",
        )
    except httpx.TimeoutException as exc:
        raise _timeout_error(exc, resolved) from exc
    except httpx.TransportError as exc:
        if state.http_status is not None:
            raise APIConnectionError(
                f"the connection to {urlsplit(url).netloc} dropped mid-reply ({_transport_reason(exc)})",
                hint=_dropped_hint(state),
                request_id=state.request_id,
            ) from exc
        raise APIConnectionError(
            f"connection to {urlsplit(url).netloc} failed: {_transport_reason(exc)}",
            hint="check that the server is running and the URL's host and port are right "
            f"({resolved.provider.url})",
        ) from exc


def _dropped_hint(state: ReplyState) -> str:
    hint = "the server or a proxy closed the connection; any text shown is partial"
    if (state.server or "").lower().startswith("uvicorn"):
        # llama-cpp-python's server (a uvicorn app) aborts a reply when another request comes
        # in, unless it was started with --interrupt_requests False.
        hint += (
            ". If this is llama-cpp-python's server, another request made it drop this reply: "
            "start it with --interrupt_requests False to serve concurrent calls one after another"
        )
    return hint


def _redirect_headers(
    headers: dict[str, str], source: str, target: str, prepared: PreparedRequest
) -> dict[str, str]:
    """Keep credentials only when the redirect stays on the same origin."""
    a, b = urlsplit(source), urlsplit(target)
    if (a.scheme, a.netloc) == (b.scheme, b.netloc):
        return headers
    return {k: v for k, v in headers.items() if k.lower() != "authorization" and v not in prepared.secrets}


async def _read_stream(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent]:
    """Decode the stream as its bytes arrive. The text of every event in one network read goes
    out as one `TokenEvent` (a consumer's per-event cost is then paid per read, not per token),
    and nothing waits between reads: how often the screen changes is the renderer's business."""
    decoder = SSEDecoder()
    async for chunk in response.aiter_bytes():
        pieces: list[str] = []
        failure: StreamError | None = None
        for event in decoder.feed(chunk):
            state.events += 1
            data = event.data
            if data == "[DONE]" or (data[:1] != "{" and data.strip() == "[DONE]"):
                state.saw_done = True
                continue
            try:
                payload = _parse_chunk(data, resolved, state)
            except StreamError as error:
                failure = error
                break
            if event.event == "error" or "error" in payload:
                failure = _stream_error(payload, resolved, state)
                break
            _apply_chunk(payload, state, pieces)
        if pieces:  # text that arrived before a bad event is still shown
            text = pieces[0] if len(pieces) == 1 else "".join(pieces)
            state.pieces.append(text)
            yield TokenEvent(text)
        if failure is not None:
            raise failure
    decoder.close()


async def _read_whole(
    response: httpx.Response, resolved: Resolved, state: ReplyState
) -> AsyncIterator[TokenEvent]:
    text = (await response.aread()).decode("utf-8", errors="replace")
    payload = _parse_chunk(text, resolved, state)
    if "error" in payload:
        raise _stream_error(payload, resolved, state)
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    state.finish_reason = choices[0].get("finish_reason")
    for delta in message.get("tool_calls") or []:
        state.tools.add(delta)
    state.reasoning = str(message.get("reasoning_content") or message.get("reasoning") or "")
    _apply_usage(payload, state)
    content = message.get("content") or ""
    if content:
        state.pieces.append(content)
        state.first_token_at = time.perf_counter()
        yield TokenEvent(content)


def _parse_chunk(data: str, resolved: Resolved, state: ReplyState) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError:
        raise StreamError(
            f"{resolved.qualified_name} sent a chunk that is not JSON: {data[:120]!r}",
            hint="the server is not speaking the OpenAI streaming format; check the URL, or try --no-stream",
            request_id=state.request_id,
        ) from None
    if not isinstance(payload, dict):
        raise StreamError(f"{resolved.qualified_name} sent a chunk that is not a JSON object")
    return payload


def _apply_chunk(payload: dict[str, Any], state: ReplyState, pieces: list[str]) -> None:
    """Take one chunk's usage, text, reasoning, tool-call deltas and finish reason; its text
    goes to `pieces` (the caller's batch for this read)."""
    if "usage" in payload:
        _apply_usage(payload, state)
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            if state.first_token_at is None:
                state.first_token_at = time.perf_counter()
            pieces.append(content)
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            state.reasoning += str(reasoning)
        tool_deltas = delta.get("tool_calls")
        if tool_deltas:
            if state.first_token_at is None:
                state.first_token_at = time.perf_counter()
            for tool_delta in tool_deltas:
                state.tools.add(tool_delta)
        if choice.get("finish_reason"):
            state.finish_reason = choice["finish_reason"]


def _apply_usage(payload: dict[str, Any], state: ReplyState) -> None:
    usage = payload.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        state.usage = Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )


def _stream_error(payload: dict[str, Any], resolved: Resolved, state: ReplyState) -> StreamError:
    upstream = _upstream_message(payload) or json.dumps(payload)[:UPSTREAM_TEXT_LIMIT]
    model = resolved.qualified_name
    return StreamError(
        f"{model} reported an error mid-stream: {upstream}",
        hint="if it concerns tools, JSON mode or usage reporting, turn that capability off: "
        f"%llm_provider model {resolved.provider.name} set {resolved.model} --caps no-include_usage",
        upstream_message=upstream,
        request_id=state.request_id,
        body=payload,
    )


def _request_id(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        if name in headers:
            return headers[name]
    return None


def _upstream_message(payload: Any) -> str | None:
    """The server's own words, from the error shapes seen in the wild."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg")
        return str(message) if message else json.dumps(error)[:UPSTREAM_TEXT_LIMIT]
    if isinstance(error, str):
        return error
    detail = payload.get("detail")  # FastAPI servers (llama-cpp-python, transformers serve)
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    message = payload.get("message")
    return str(message) if message else None


_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "exceeds the context",
    "prompt is too long",
    "n_ctx",
)
_MODEL_WORDS = (
    "model_not_found",
    "does not exist",
    "not found",
    "unknown model",
    "no such model",
    "invalid model",
    "not a valid model",
    "is not served",
    "model not",
)


def error_from_response(
    status: int, body: str, headers: Mapping[str, str], resolved: Resolved, url: str
) -> StatusError:
    """The nbllm error for an HTTP error status, with the upstream's message and a hint."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    upstream = _upstream_message(payload) or body.strip()[:UPSTREAM_TEXT_LIMIT] or "(empty body)"
    lowered = upstream.lower()
    request_id = _request_id(httpx.Headers(dict(headers)))
    provider, model = resolved.provider, resolved.model
    common: dict[str, Any] = {
        "status": status,
        "upstream_message": upstream,
        "request_id": request_id,
        "body": payload,
    }
    prefix = f"{resolved.qualified_name}: HTTP {status}: {upstream}"
    mentions_model = "model" in lowered and any(w in lowered for w in _MODEL_WORDS)
    if status == 401:
        _, origin = find_key(provider)
        return AuthenticationError(
            prefix,
            hint=f"the key was rejected (key {origin}, sent as {_auth_shown(provider.auth)}). Check the key, "
            "or the header style: --auth azure for Azure, --auth header:NAME for gateways that want "
            "another header",
            **common,
        )
    if status == 403:
        return PermissionDeniedError(
            prefix,
            hint=f"the key is valid but may not use {model!r} here; check the key's "
            "permissions or the model's access settings at the provider",
            **common,
        )
    if status == 429:
        wait = parse_retry_after(headers)
        return RateLimitError(
            prefix,
            retry_after_s=wait,
            hint="the provider is rate limiting; wait, lower --rps, or add --fallback models",
            **common,
        )
    if status in (400, 404, 422) and mentions_model:
        return ModelNotFoundError(
            prefix,
            hint=f"the server does not serve the id {model!r}; ids are matched exactly, "
            f"list the ones it serves with %llm_provider discover {provider.name}",
            **common,
        )
    if status == 404:
        return NotFoundError(
            prefix,
            hint=f"nothing at {url}; most servers want a base URL ending in /v1 "
            "(http://host:8000/v1), or give the full .../chat/completions path",
            **common,
        )
    if status in (400, 413, 422) and any(w in lowered for w in _CONTEXT_WORDS):
        window = resolved.spec.context_window
        return ContextTooLongError(
            prefix,
            hint="shorten the prompt or the conversation (start over with --new), or lower "
            f"--max-tokens{f'; the model window is {window:,} tokens' if window else ''}",
            **common,
        )
    if status == 408:
        return StatusError(prefix, hint="the server timed out reading the request; try again", **common)
    if status >= 500:
        return ServerError(
            prefix, hint="the server failed; try again later, or add --fallback models", **common
        )
    if status in (400, 422):
        return BadRequestError(
            prefix,
            hint="the server refused a field of the request. If it names stream_options, turn usage "
            f"reporting off: %llm_provider model {provider.name} set {model} --caps no-include_usage; "
            "see the exact request with %%chat --dry-run",
            **common,
        )
    if 300 <= status < 400:
        return StatusError(
            prefix,
            hint=f"the server redirects to {headers.get('location', '?')}; register that URL instead",
            **common,
        )
    return BadRequestError(prefix, hint="see the server's message above", **common)


def _auth_shown(auth: str) -> str:
    return {"bearer": "Authorization: Bearer", "azure": "api-key header", "none": "no header"}.get(
        auth, auth.replace("header:", "header ")
    )


def _timeout_error(exc: httpx.TimeoutException, resolved: Resolved) -> APITimeoutError:
    provider = resolved.provider
    if isinstance(exc, httpx.ConnectTimeout):
        return APITimeoutError(
            f"connecting to {urlsplit(provider.url).netloc} timed out after {provider.connect_timeout_s:g} s",
            hint="check the host and port, and that the server is reachable from this kernel",
        )
    return APITimeoutError(
        f"{resolved.qualified_name} sent nothing for {provider.read_timeout_s:g} s",
        hint="the server stalled; a slow model may need a longer --timeout",
    )


def _transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0][:200]
