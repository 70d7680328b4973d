"""The endpoint doctor (`%llm_provider test`) and model discovery (`%llm_provider discover`).

The doctor checks, in order, what usually goes wrong with a new endpoint: the
URL's shape, the key, ``GET /models``, for a model flagged for embeddings one text through
``/embeddings``, and a one-token streaming call (time to first token, whether usage is
reported). Each finding says what to do next.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from nbllm._calls.attempt import CallOptions
from nbllm._calls.call import run_call
from nbllm._calls.client import send
from nbllm._calls.embed import EmbedRequest, run_embed
from nbllm._calls.errors import (
    dns_hint,
    error_from_response,
    proxy_error,
    tls_error,
    tls_failure,
    unresolved_host,
)
from nbllm._calls.pool import lease
from nbllm._calls.request import ChatRequest
from nbllm._calls.wire.headers import protocol_headers
from nbllm._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    EmptyReplyError,
    MissingKeyError,
    NbllmError,
    ThinkingBudgetError,
)
from nbllm._providers.auth import auth_headers, key_status, security_warnings
from nbllm._providers.config import ProviderConfig
from nbllm._providers.models import ModelSpec
from nbllm._providers.network import environment_proxy_url
from nbllm._providers.resolved import Resolved
from nbllm._providers.store import Store
from nbllm._providers.urls import CHAT_SUFFIX, chat_url, embeddings_url, models_url

Verdict = Literal["ok", "warn", "fail"]
MARKS = {"ok": "\N{CHECK MARK}", "warn": "!", "fail": "\N{BALLOT X}"}


@dataclass
class Finding:
    check: str
    verdict: Verdict
    detail: str
    hint: str = ""


@dataclass
class DoctorReport:
    target: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.verdict != "fail" for f in self.findings)

    def add(self, check: str, verdict: Verdict, detail: str, hint: str = "") -> None:
        self.findings.append(Finding(check, verdict, detail, hint))

    def __repr__(self) -> str:
        lines = [f"Endpoint check: {self.target}"]
        for f in self.findings:
            lines.append(f"  {MARKS[f.verdict]} {f.check}: {f.detail}")
            if f.hint:
                lines.append(f"      hint: {f.hint}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{MARKS[f.verdict]}</td><td>{html.escape(f.check)}</td>"
            f"<td style='text-align:left'>{html.escape(f.detail)}"
            + (f"<br><i>{html.escape(f.hint)}</i>" if f.hint else "")
            + "</td></tr>"
            for f in self.findings
        )
        return f"<b>Endpoint check: {html.escape(self.target)}</b><table class='nbllm-doctor'>{rows}</table>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def looks_like_embeddings(model_id: str) -> bool:
    """Whether an id names an embedding model by the usual naming (text-embedding-3-small,
    nomic-embed-text, mxbai-embed-large): discovery suggests the ``embeddings`` flag for it."""
    return "embed" in model_id.lower()


async def list_models(
    provider: ProviderConfig, transport: httpx.AsyncBaseTransport | None = None
) -> list[str]:
    """The model ids the endpoint lists at ``GET /models``."""
    url = models_url(provider.url, auth=provider.auth, api_version=provider.api_version, api=provider.api)
    listing = Resolved(provider, "(models)", ModelSpec())  # what the error helpers take
    try:
        wire = models_url(
            provider.wire_url(), auth=provider.auth, api_version=provider.api_version, api=provider.api
        )
        async with lease(provider, transport) as client:
            request = client.build_request(
                "GET", wire, headers=auth_headers(provider) | protocol_headers(provider)
            )
            response = await send(client, request)  # resent once if the pooled connection was dead
            await response.aread()
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"GET {url} timed out", hint="check the host and port") from exc
    except (httpx.TransportError, ssl.SSLError) as exc:
        failure = tls_failure(exc)
        raise (
            proxy_error(exc, listing, url)
            or (tls_error(failure, listing, urlsplit(url).netloc) if failure else None)
            or APIConnectionError(
                f"GET {url} failed: {type(exc).__name__}",
                hint=dns_hint(provider.url) if unresolved_host(exc) else "check that the server is running",
            )
        ) from exc
    if response.status_code >= 300:
        raise error_from_response(response.status_code, response.text, response.headers, listing, url)
    try:
        payload = response.json()
        entries = payload["data"] if isinstance(payload, dict) else payload
        return [str(entry["id"]) for entry in entries]
    except (ValueError, KeyError, TypeError):
        raise APIError(
            f"GET {url} did not return an OpenAI model list",
            hint="this server may not offer /models; declare models with --model ID",
        ) from None


async def diagnose(
    store: Store, target: str, transport: httpx.AsyncBaseTransport | None = None
) -> DoctorReport:
    """Check provider `target` (``NAME`` or ``NAME/MODEL``) end to end."""
    name, _, model = target.partition("/")
    provider = store.provider(name)
    model = model or next(iter(provider.models), "")
    report = DoctorReport(f"{name}/{model}" if model else name)
    _check_url(provider, report)
    _check_key(provider, report)
    _check_network(provider, report)
    served = await _check_models(provider, model, report, transport)
    if not model:
        report.add(
            "chat",
            "warn",
            "no model declared, so no test call was made",
            f"add one with %llm_provider model {name} add {served[0] if served else 'MODEL_ID'}",
        )
        return report
    resolved = store.resolve(f"{name}/{model}")
    if resolved.spec.capabilities.embeddings:
        await _check_embeddings(resolved, report, transport)
    await _check_call(resolved, report, transport, embedding_model=resolved.spec.capabilities.embeddings)
    return report


def _check_url(provider: ProviderConfig, report: DoctorReport) -> None:
    path = urlsplit(provider.url).path
    sample_model = next(iter(provider.models), "MODEL")
    chat = chat_url(
        provider.url, sample_model, auth=provider.auth, api_version=provider.api_version, api=provider.api
    )
    if (
        provider.is_azure
        or provider.api == "anthropic"
        or path.endswith(CHAT_SUFFIX)
        or re.search(r"/v\d", path)
    ):
        report.add("url", "ok", f"posts to {chat}")
    else:
        report.add(
            "url",
            "warn",
            f"posts to {chat}; the base URL has no version segment",
            "most servers want a base URL ending in /v1 (http://host:8000/v1); keep it if yours does not",
        )


def _check_key(provider: ProviderConfig, report: DoctorReport) -> None:
    status = key_status(provider)
    if status.startswith("missing"):
        declared = provider.key_env or provider.key_keyring or provider.is_azure
        report.add(
            "key",
            "fail" if declared else "warn",
            status,
            "local servers often need none; otherwise add --key-env VAR or --key-prompt",
        )
    else:
        report.add("key", "ok", f"{status}, sent as {provider.auth}")
    for warning in security_warnings(provider):
        report.add("transport", "warn", warning)


def _check_network(provider: ProviderConfig, report: DoctorReport) -> None:
    """What the connection will trust, which proxy it goes through, and how it authenticates."""
    url = models_url(provider.url, auth=provider.auth, api_version=provider.api_version, api=provider.api)
    proxy = provider.proxy_for(url)
    try:
        tls = (
            f"TLS trusting {provider.network_trust().description}"
            if url.startswith("https://")
            else "plain HTTP"
        )
    except NbllmError as exc:
        report.add("network", "fail", f"the TLS settings do not load: {exc.message}", exc.hint or "")
        return
    via = f"through the proxy {proxy}" if proxy else "directly (no proxy)"
    report.add("network", "ok", f"connects {via}; {tls}; auth {provider.auth}")


async def _failing_step(provider: ProviderConfig, url: str) -> tuple[str, str, str | None]:
    """Which step of reaching `url` fails: DNS, TCP, proxy, TLS or HTTP, what it said, and a
    hint of that step's own where the connection error's hint would point the wrong way."""
    target = urlsplit(url)
    proxy = provider.proxy_for(url)
    reach = urlsplit(provider.proxy_url() or environment_proxy_url(url) or url) if proxy else target
    host = reach.hostname or ""
    port = reach.port or (443 if reach.scheme == "https" else 80)
    try:
        await asyncio.to_thread(socket.getaddrinfo, host, port)
    except OSError as exc:
        return "DNS", f"{host} does not resolve ({exc})", dns_hint(provider.url, proxy=bool(proxy))
    try:
        connection = await asyncio.to_thread(
            socket.create_connection, (host, port), provider.connect_timeout_s
        )
    except OSError as exc:
        what = "the proxy" if proxy else "the server"
        hint = f"check that {what} is running at {host}:{port}, and that no firewall blocks the port"
        return "TCP", f"cannot connect to {what} at {host}:{port} ({exc.strerror or exc})", hint
    with connection:
        if proxy:
            return "proxy", f"the proxy {proxy} answers; the request through it failed", None
        if target.scheme != "https":
            return "HTTP", "the server accepts connections; the HTTP exchange failed", None
        try:
            context = provider.network_trust().verify
            if isinstance(context, ssl.SSLContext):
                await asyncio.to_thread(_handshake, context, connection, host)
        except (ssl.SSLError, OSError) as exc:
            return (
                "TLS",
                f"the TLS handshake with {host} failed ({getattr(exc, 'verify_message', None) or exc})",
                None,
            )
    return "HTTP", "DNS, TCP and TLS succeed; the HTTP exchange failed", None


def _handshake(context: ssl.SSLContext, connection: socket.socket, host: str) -> None:
    with context.wrap_socket(connection, server_hostname=host):
        pass


async def _check_models(
    provider: ProviderConfig, model: str, report: DoctorReport, transport: httpx.AsyncBaseTransport | None
) -> list[str]:
    try:
        served = await list_models(provider, transport)
    except MissingKeyError as exc:
        report.add("models", "fail", exc.message, exc.hint or "")
        return []
    except (APIConnectionError, APITimeoutError) as exc:
        url = models_url(provider.url, auth=provider.auth, api_version=provider.api_version, api=provider.api)
        step, detail, hint = await _failing_step(provider, url)
        report.add("connection", "fail", f"{step}: {detail}", hint or exc.hint or "")
        report.add("models", "fail", f"GET /models: {exc.message}")
        return []
    except APIError as exc:
        verdict: Verdict = "fail" if exc.status in (401, 403, 407) else "warn"
        report.add("models", verdict, f"GET /models: {exc.message}", exc.hint or "")
        return []
    shown = ", ".join(served[:8]) + (" ..." if len(served) > 8 else "")
    report.add("models", "ok", f"{len(served)} listed: {shown}")
    if model and served and model not in served:
        report.add(
            "model id",
            "warn",
            f"{model!r} is not among the listed ids",
            "ids are matched exactly; some servers answer any id with their one loaded model",
        )
    return served


async def _check_embeddings(
    resolved: Resolved, report: DoctorReport, transport: httpx.AsyncBaseTransport | None
) -> None:
    """One text through ``/embeddings``: a vector back, how long, and how many dimensions."""
    try:
        result = await run_embed(EmbedRequest(["OK"]), resolved, CallOptions(transport=transport))
    except NbllmError as exc:
        report.add("embeddings", "fail", str(exc).split("\n")[0], exc.hint or "")
        return
    took = f"{result.latency_s:.2f} s" if result.latency_s is not None else "?"
    provider = resolved.provider
    url = embeddings_url(provider.url, resolved.model, auth=provider.auth, api_version=provider.api_version)
    detail = f"one text gave a {result.dimensions}-dimensional vector in {took} (from {url})"
    report.add("embeddings", "ok", detail)


async def _check_call(
    resolved: Resolved,
    report: DoctorReport,
    transport: httpx.AsyncBaseTransport | None,
    *,
    embedding_model: bool = False,
) -> None:
    """A one-token call. For a model flagged for embeddings, a failure only warns: most
    embedding models do not chat."""
    request = ChatRequest(messages=[{"role": "user", "content": "Say OK."}], max_tokens=1)
    failed: Verdict = "warn" if embedding_model else "fail"
    also = " (expected of an embedding-only model)" if embedding_model else ""
    try:
        result = await run_call(request, [resolved], CallOptions(transport=transport))
        ttft = f"{result.ttft_s:.2f} s" if result.ttft_s is not None else "no token"
        report.add("chat", "ok", f"one-token streaming call answered; first token after {ttft}")
    except EmptyReplyError as exc:
        if exc.result is None or exc.result.finish_reason != "length":
            report.add("chat", failed, str(exc).split("\n")[0] + also, exc.hint or "")
            return
        # One token can hold no text (part of a multi-byte character, or thinking): an answer.
        result = exc.result
        report.add("chat", "ok", "one-token streaming call answered (the token held no text)")
    except ThinkingBudgetError as exc:
        if exc.result is None:
            report.add("chat", failed, str(exc).split("\n")[0] + also, exc.hint or "")
            return
        # A reasoning model thinks first: its one token was thinking, which is an answer here.
        result = exc.result
        report.add("chat", "ok", "one-token streaming call answered (the token was thinking)")
    except NbllmError as exc:
        report.add("chat", failed, str(exc).split("\n")[0] + also, exc.hint or "")
        return
    if result.usage.estimated:
        report.add(
            "usage",
            "warn",
            "the server sent no token usage; nbllm estimates counts (marked ~)",
            "harmless; if the server ever rejects stream_options, set --caps no-include_usage",
        )
    else:
        report.add("usage", "ok", f"reported ({result.usage.prompt_tokens} prompt tokens)")
