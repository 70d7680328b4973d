"""Failures of one exchange, in nbllm's error tree: an HTTP error status becomes the matching
`StatusError` with the upstream's own words and a hint for the next step; httpx's transport
errors become `APIConnectionError` / `APITimeoutError`. Server text quoted in errors is capped."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from nbllm._calls.reply_state import ReplyState
from nbllm._calls.retry import parse_retry_after
from nbllm._calls.wire.reasoning import style_for
from nbllm._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextTooLongError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StatusError,
    StreamError,
)
from nbllm._providers.auth import find_key
from nbllm._providers.resolved import Resolved
from nbllm._providers.secret_registry import provider_secrets
from nbllm._providers.secret_text import mask_json, mask_values

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-ms-request-id", "cf-ray")


UPSTREAM_TEXT_LIMIT = 2000
"""The most characters of server text an error quotes (a hostile server once sent 200,000)."""

SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError, OverflowError, RecursionError)
"""What reading a reply of the wrong shape raises (a list where an object should be, a number
where text should be): `protocol_error` turns each into an nbllm error."""


def clip(text: str, limit: int = UPSTREAM_TEXT_LIMIT) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\N{HORIZONTAL ELLIPSIS} ({len(text) - limit:,} more characters)"


def request_id_of(headers: Mapping[str, str]) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return clip(value, 200)
    return None


def protocol_error(
    resolved: Resolved, state: ReplyState, what: str, *, not_json: bool = False
) -> ProtocolError:
    """The server's reply is not OpenAI Chat Completions; `what` says how ("sent ...")."""
    hint = "the server is not speaking the OpenAI chat completions format"
    if not_json:
        hint += "; check that the URL is the API's (not a web page or a proxy's), or try --no-stream"
    what = mask_values(what, provider_secrets(resolved.provider))  # `what` may quote the reply
    return ProtocolError(f"{resolved.qualified_name} {what}", hint=hint, request_id=state.request_id)


def upstream_message(payload: Any) -> str | None:
    """The server's own words, from the error shapes seen in the wild."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg")
        return clip(str(message)) if message else clip(json.dumps(error))
    if isinstance(error, str):
        return clip(error)
    detail = payload.get("detail")  # FastAPI servers (llama-cpp-python, transformers serve)
    if isinstance(detail, str):
        return clip(detail)
    if isinstance(detail, list) and detail:
        return clip("; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail))
    message = payload.get("message")
    return clip(str(message)) if message else None


STREAM_ERROR_KINDS: dict[str, tuple[type[StatusError], int, str]] = {
    # An error event's type that means what an HTTP status means: retried like that status
    # while nothing was shown (Anthropic sends these mid-stream; OpenAI-style servers may too).
    "overloaded_error": (
        ServerError,
        529,
        "the server is overloaded; try again later, or name another model with --fallback PROVIDER/MODEL",
    ),
    "rate_limit_error": (
        RateLimitError,
        429,
        "the provider is rate limiting; wait, or name another model with --fallback PROVIDER/MODEL",
    ),
}


def stream_error(
    payload: dict[str, Any], resolved: Resolved, state: ReplyState, error: Any = None
) -> StreamError | StatusError:
    """The one error for an error the server reports inside a 2xx reply, whatever the
    protocol: `error` is the error object the protocol found (``payload["error"]`` when not
    given). An overloaded or rate-limit kind is a `ServerError` or `RateLimitError`, retried as
    its status would be; anything else ends the reply as a `StreamError`."""
    secrets = provider_secrets(resolved.provider)
    payload = mask_json(payload, secrets)
    error = payload.get("error") if error is None else mask_json(error, secrets)
    kind = str(error.get("type") or error.get("code") or "") if isinstance(error, dict) else ""
    upstream = clip(upstream_message({"error": error}) or json.dumps(payload), UPSTREAM_TEXT_LIMIT)
    message = f"{resolved.qualified_name} reported an error mid-stream: {upstream}"
    common: dict[str, Any] = {"upstream_message": upstream, "request_id": state.request_id, "body": payload}
    if kind in STREAM_ERROR_KINDS:
        error_type, status, hint = STREAM_ERROR_KINDS[kind]
        return error_type(message, status=status, hint=hint, **common)
    provider, model = resolved.provider.name, resolved.model
    return StreamError(
        message,
        hint="if it concerns tools, JSON mode or usage reporting, turn that capability off, e.g. "
        f"%llm_provider model {provider} set {model} --caps no-include_usage",
        **common,
    )


def json_object(text: str, resolved: Resolved, state: ReplyState, what: str) -> dict[str, Any]:
    """`text` decoded as a JSON object, or the `ProtocolError` that says it is not one."""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise protocol_error(
            resolved, state, f"sent a {what} that is not JSON: {clip(text, 120)!r}", not_json=True
        ) from None
    if not isinstance(payload, dict):
        raise protocol_error(resolved, state, f"sent a {what} that is not a JSON object: {clip(text, 120)!r}")
    return payload


_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "exceeds the context",
    "context size",  # llama.cpp's llama-server: "exceeds the available context size"
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
    "pinned to",  # transformers serve: "Server is pinned to X; requested Y"
)


_EFFORT_FIELD_RE = re.compile(r"\b(reasoning_effort|chat_template_kwargs|thinking|reasoning)\b")
"""The request fields --effort adds (see `nbllm._calls.wire.reasoning`), as a refusal names them."""


def _litellm_forwarding_hint(api: str) -> str:
    """LiteLLM's 404 that is its upstream's, for a path the upstream lacks, not the model."""
    fix = (
        "set use_chat_completions_url_for_anthropic_messages: true under litellm_settings in its config"
        if api == "anthropic"
        else "use --api auto, which then keeps to Chat Completions"
    )
    return (
        "LiteLLM's upstream answered 404 for the path LiteLLM forwarded to, not for the model: LiteLLM "
        "sends /v1/messages and /v1/responses for openai/ models on to the upstream's /v1/responses, "
        f"which most OpenAI-compatible servers lack. {fix[0].upper()}{fix[1:]}, or talk to LiteLLM "
        "with --api chat"
    )


def error_from_response(
    status: int, body: str, headers: Mapping[str, str], resolved: Resolved, url: str
) -> StatusError:
    """The nbllm error for an HTTP error status, with the upstream's message and a hint. A
    server that quotes the key back (some do, for a rejected one) has it masked."""
    body = mask_values(body, provider_secrets(resolved.provider))
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    upstream = upstream_message(payload) or clip(body.strip()) or "(empty body)"
    lowered = upstream.lower()
    request_id = request_id_of(headers)
    provider, model = resolved.provider, resolved.model
    common: dict[str, Any] = {
        "status": status,
        "upstream_message": upstream,
        "request_id": request_id,
        "body": payload,
    }
    prefix = f"{resolved.qualified_name}: HTTP {status}: {upstream}"
    mentions_model = ("model" in lowered or "pinned to" in lowered) and any(
        w in lowered for w in _MODEL_WORDS
    )
    # LiteLLM's proxy without a database answers a key that is not its master key this way.
    litellm_wrong_key = status == 400 and "no connected db" in lowered
    if status == 401 or litellm_wrong_key:
        _, origin = find_key(provider)
        if litellm_wrong_key:
            prefix += " (LiteLLM's proxy says this for a key that is not its master key)"
        return AuthenticationError(
            prefix,
            hint=f"the key was rejected (key {origin}, sent as {_auth_shown(provider.auth)}). Check the key, "
            "or the header style: --auth azure for Azure, --auth header:NAME for gateways that want "
            "another header",
            **common,
        )
    if status == 407:
        return AuthenticationError(
            f"{prefix} (the proxy on the way, not the server, refused)",
            hint="the proxy asks for credentials: --proxy http://USER:${PROXY_PASSWORD}@HOST:PORT, "
            "or put them in $HTTP_PROXY",
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
            hint=f"{provider.name} is rate limiting: run it again in a while, add --fallback "
            f"PROVIDER/MODEL to the cell, or pace every call to it by registering it with --rps N "
            f"(%llm_provider add {provider.name} --url ... --rps 1)",
            **common,
        )
    if status == 404 and provider.api != "chat" and "openaiexception" in lowered and "not found" in lowered:
        return NotFoundError(prefix, hint=_litellm_forwarding_hint(provider.api), **common)
    if status in (400, 404, 422) and mentions_model:
        return ModelNotFoundError(
            prefix,
            hint=f"the server does not serve the id {model!r}; ids are matched exactly, "
            f"list the ones it serves with %llm_provider discover {provider.name}",
            **common,
        )
    if status == 404 and url.endswith("/responses"):
        return NotFoundError(
            prefix,
            hint=f"nothing at {url}: the server has no Responses API. Use --api chat, or --api auto to "
            "try Responses first and keep to Chat Completions where it is missing",
            **common,
        )
    if status in (404, 405) and url.split("?")[0].endswith("/embeddings"):
        return NotFoundError(
            prefix,
            hint=f"nothing at {url}: the server serves no embeddings (or not under this base URL). "
            "Serve an embedding model, e.g. with llama.cpp's llama-server --embeddings",
            **common,
        )
    if status == 404:
        return NotFoundError(
            prefix,
            hint=f"nothing at {url}; most servers want a base URL ending in /v1 "
            "(http://host:8000/v1), or give the full .../chat/completions path",
            **common,
        )
    if status in (400, 422, 500) and "response_format" in body and "json_schema" in body:
        # llama-cpp-python's server refuses the json_schema type with a validation error, as a
        # 500 (and LiteLLM passes it on): the same request would fail the same way.
        return BadRequestError(
            prefix,
            hint=f"the server does not take a JSON schema in response_format (structured outputs); "
            f"turn the flag off: %llm_provider model {provider.name} set {model} --caps no-json_schema "
            "(schema= then puts the schema in the prompt)",
            **common,
        )
    if "too large to process" in lowered:
        # llama.cpp's llama-server, for a text longer than its compute batch (embeddings), as a 500:
        # retrying cannot help.
        return ContextTooLongError(
            prefix,
            hint="the input does not fit the server's batch: shorten it, or start llama-server with "
            "larger --batch-size and --ubatch-size",
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
            prefix,
            hint="the server failed; try again later, or name another model to try next with "
            "--fallback PROVIDER/MODEL (in %%chat) or fallback=[...] (in nbllm.chat)",
            **common,
        )
    if status in (400, 422):
        effort_field = _EFFORT_FIELD_RE.search(body)
        if url.split("?")[0].endswith("/embeddings") and "dimensions" in lowered:
            hint = (
                "the server refused dimensions=: leave it out (the model, or the gateway's entry for "
                "it, does not take a vector length)"
            )
        elif "stream_options" in body or "include_usage" in body:  # the message, or FastAPI's "loc"
            hint = (
                "the server does not take stream_options; turn usage reporting off: "
                f"%llm_provider model {provider.name} set {model} --caps no-include_usage"
            )
        elif effort_field:
            hint = (
                f"the server refused {effort_field.group(1)!r}, which --effort adds in this provider's "
                f"reasoning style ({style_for(provider)}); choose a style the server takes (openai "
                "sends reasoning_effort) in the panel or with --reasoning-style, or leave out --effort"
            )
        else:
            hint = "the server refused a field of the request; see the exact request with %%chat --dry-run"
        return BadRequestError(prefix, hint=hint, **common)
    if 300 <= status < 400:
        return StatusError(
            prefix,
            hint=f"the server redirects to {clip(headers.get('location', '?'), 200)}; "
            "register that URL instead",
            **common,
        )
    return BadRequestError(prefix, hint="see the server's message above", **common)


def _auth_shown(auth: str) -> str:
    return {"bearer": "Authorization: Bearer", "azure": "api-key header", "none": "no header"}.get(
        auth, auth.replace("header:", "header ")
    )


def timeout_error(exc: httpx.TimeoutException, resolved: Resolved) -> APITimeoutError:
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


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(10):  # httpx -> httpcore -> ssl, without looping on a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_error(failure: ssl.SSLError, resolved: Resolved, host: str) -> APIConnectionError:
    """A failed TLS handshake: which store was trusted (or which client certificate was
    shown), and what to try."""
    provider = resolved.provider
    try:
        trusted = provider.network_trust().description
    except ConfigError as exc:
        trusted = f"(settings that do not load: {exc.message})"
    if isinstance(failure, ssl.SSLCertVerificationError):
        reason = failure.verify_message or failure.reason or str(failure)
        return APIConnectionError(
            f"the TLS certificate of {host} was not accepted ({reason}); nbllm trusted {trusted}",
            hint="behind a company proxy that inspects TLS, trust its root certificate: --trust system "
            "(the OS store, where IT installs it) or --ca-bundle PATH (a PEM file from IT); "
            "$SSL_CERT_FILE and $REQUESTS_CA_BUNDLE are honoured too. --insecure is for local testing only",
        )
    shown = (
        f"the client certificate {provider.client_cert}" if provider.client_cert else "no client certificate"
    )
    return APIConnectionError(
        f"the TLS handshake with {host} failed ({failure.reason or failure}); nbllm trusted {trusted} "
        f"and showed {shown}",
        hint="a gateway that requires mutual TLS needs --client-cert PATH (and --client-key PATH); "
        "check too that the URL is https:// for a TLS port",
    )


def proxy_error(exc: Exception, resolved: Resolved, url: str) -> APIConnectionError | None:
    """A failure of the proxy rather than the server, said as such; None when no proxy was in
    the way."""
    proxy = resolved.provider.proxy_for(url)
    if proxy is None:
        return None
    host = urlsplit(url).netloc
    text = str(exc)
    where = "--proxy" if resolved.provider.proxy else "$HTTPS_PROXY / $HTTP_PROXY"
    if "407" in text:
        return APIConnectionError(
            f"the proxy {proxy} ({where}) asks for credentials (407 Proxy Authentication Required)",
            hint="put them in the proxy URL, the password from the environment: "
            "--proxy http://USER:${PROXY_PASSWORD}@HOST:PORT (or in $HTTPS_PROXY)",
        )
    if isinstance(exc, httpx.ProxyError):
        return APIConnectionError(
            f"the proxy {proxy} ({where}) would not connect to {host}: {clip(text, 200)}",
            hint=f"check that the proxy allows {host}; hosts to reach directly go in $NO_PROXY",
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return APIConnectionError(
            f"could not reach the proxy {proxy} ({where}) on the way to {host}: {transport_reason(exc)}",
            hint="check the proxy's address and port; unset it (or add the host to $NO_PROXY) to "
            "connect directly",
        )
    return None


def unresolved_host(exc: BaseException) -> bool:
    """Whether a transport failure was a host name that does not resolve (a `socket.gaierror`
    somewhere under httpx's and httpcore's wrappers)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, socket.gaierror):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def dns_hint(url: str, *, proxy: bool = False) -> str:
    """What to try when a host name does not resolve."""
    if proxy:
        return "check the proxy's host name (--proxy, or $HTTPS_PROXY / $HTTP_PROXY)"
    return (
        f"check the host name in the URL ({url}); a company host may resolve only on its VPN, "
        "or only through the company's proxy (set $HTTPS_PROXY, or --proxy URL)"
    )


def transport_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0][:200]


def dropped_hint(state: ReplyState) -> str:
    hint = "the server or a proxy closed the connection; any text shown is partial"
    if (state.server or "").lower().startswith("uvicorn"):
        # llama-cpp-python's server (a uvicorn app) aborts a reply when another request comes
        # in, unless it was started with --interrupt_requests False.
        hint += (
            ". If this is llama-cpp-python's server, another request made it drop this reply: "
            "start it with --interrupt_requests False to serve concurrent calls one after another"
        )
    return hint
