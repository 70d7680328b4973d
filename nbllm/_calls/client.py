"""One HTTP exchange: send a prepared request, follow same-protocol redirects (credentials
only to the same origin), hand the reply to its wire protocol, and translate every failure
into nbllm's error tree.

Retries, fallbacks, rate limits and the history live in `call`; this module does exactly one
exchange and records what it saw in a `ReplyState`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

from nbllm._calls.errors import (
    clip,
    dns_hint,
    dropped_hint,
    error_from_response,
    protocol_error,
    proxy_error,
    request_id_of,
    timeout_error,
    tls_error,
    tls_failure,
    transport_reason,
    unresolved_host,
)
from nbllm._calls.protocol_choice import WireProtocol
from nbllm._calls.reply_state import ReplyState
from nbllm._calls.request import PreparedRequest
from nbllm._calls.results import ReasoningEvent, TokenEvent
from nbllm._exceptions import (
    APIConnectionError,
)
from nbllm._providers.resolved import Resolved
from nbllm._replay.recording import GATEWAY_COST_HEADER, KEEP_EXTENSION, REPLAYED_HEADER

MAX_REDIRECTS = 5


def read_reply(
    response: httpx.Response,
    protocol: WireProtocol,
    resolved: Resolved,
    prepared: PreparedRequest,
    state: ReplyState,
) -> AsyncIterator[TokenEvent | ReasoningEvent]:
    """The reply's text and thinking as they arrive, read by the wire protocol (streamed or whole). The
    protocol's own generator, not a wrapper: every layer between the socket and the consumer
    costs per token."""
    return protocol.reader(stream=bool(prepared.body.get("stream")))(response, resolved, state)


@contextlib.asynccontextmanager
async def exchange(
    client: httpx.AsyncClient, resolved: Resolved, prepared: PreparedRequest, state: ReplyState
) -> AsyncIterator[httpx.Response]:
    """One attempt: send, follow redirects, and hand over the 2xx response to read inside the
    ``async with``. Any failure, while sending or while reading, leaves as an `APIError`."""
    url, headers = prepared.url, dict(prepared.headers)
    crossed: str | None = None  # the other origin a redirect led to, where no credentials went
    try:
        for _ in range(MAX_REDIRECTS + 1):
            request = client.build_request("POST", url, headers=headers, json=prepared.body)
            response = await send(client, request)
            try:
                state.http_status = response.status_code
                state.request_id = request_id_of(response.headers)
                state.server = response.headers.get("server")
                state.replayed = response.headers.get(REPLAYED_HEADER)
                state.keep = response.extensions.get(KEEP_EXTENSION)
                _take_gateway_cost(response.headers, state)
                if response.status_code in (307, 308) and "location" in response.headers:
                    target = _redirect_target(response)
                    if urlsplit(target).scheme not in ("http", "https"):
                        raise protocol_error(
                            resolved, state, f"redirected to a non-HTTP URL ({clip(target, 80)})"
                        )
                    if not _same_origin(url, target):
                        headers = {k: v for k, v in prepared.headers.items() if k in prepared.own_headers}
                        crossed = urlsplit(target).netloc
                    url = target
                    continue
                if response.status_code >= 300:
                    body = (await response.aread()).decode("utf-8", errors="replace")
                    shown = (prepared.shown_url or url) if url == prepared.url else url
                    error = error_from_response(response.status_code, body, response.headers, resolved, shown)
                    if crossed and response.status_code in (401, 403):
                        error.hint = (
                            f"the request was redirected to another host ({crossed}), and nbllm sends "
                            "neither the key nor the provider's headers to another host. If you trust "
                            "it, register that URL as the provider's URL"
                        )
                    raise error
                yield response
                return
            finally:
                await response.aclose()
        raise APIConnectionError(
            f"too many redirects from {resolved.chat_url}",
            hint="register the URL the server finally redirects to",
        )
    except httpx.TimeoutException as exc:
        raise timeout_error(exc, resolved) from exc
    except httpx.InvalidURL as exc:  # httpx parses a redirect's Location even when not following it
        raise protocol_error(
            resolved,
            state,
            f"redirected to a URL nbllm cannot follow, not an HTTP URL ({clip(str(exc), 80)})",
        ) from exc
    except (httpx.DecodingError, httpx.UnsupportedProtocol) as exc:
        raise protocol_error(
            resolved, state, f"sent a reply nbllm cannot decode ({transport_reason(exc)})"
        ) from exc
    except (httpx.TransportError, ssl.SSLError) as exc:
        # httpx lets some TLS alerts through raw: TLS 1.3 reports a missing client certificate
        # at the first read, after the handshake seemed to succeed.
        if state.http_status is None and isinstance(exc, Exception):
            through_proxy = proxy_error(exc, resolved, url)
            if through_proxy is not None:
                raise through_proxy from exc
        failure = tls_failure(exc)
        if failure is not None and state.http_status is None:
            raise tls_error(failure, resolved, urlsplit(url).netloc) from exc
        if state.http_status is not None:
            raise APIConnectionError(
                f"the connection to {urlsplit(url).netloc} dropped mid-reply ({transport_reason(exc)})",
                hint=dropped_hint(state),
                request_id=state.request_id,
            ) from exc
        if unresolved_host(exc):
            raise APIConnectionError(
                f"the host name {urlsplit(url).hostname} does not resolve ({transport_reason(exc)})",
                hint=dns_hint(resolved.provider.url),
            ) from exc
        hint = "check that the server is running and the URL's host and port are right "
        hint += f"({resolved.provider.url})"
        closed = isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError)
        if closed and url.startswith("https://") and not resolved.provider.client_cert:
            # A server that requires mutual TLS may just close the connection on a client without one.
            hint += "; a gateway that closes HTTPS connections at once may require a client certificate "
            hint += "(--client-cert PATH)"
        raise APIConnectionError(
            f"connection to {urlsplit(url).netloc} failed: {transport_reason(exc)}", hint=hint
        ) from exc


def _take_gateway_cost(headers: httpx.Headers, state: ReplyState) -> None:
    """A gateway's report of what the call cost. LiteLLM's proxy sends it for a whole reply (a
    stream's cost is not known when its headers go out), and sends 0 for a model it has no
    price for: that is no report, and the model's own price, if one is set, stands."""
    text = headers.get(GATEWAY_COST_HEADER)
    try:
        dollars = float(text) if text else 0.0
    except ValueError:
        return
    if dollars > 0:
        state.report_cost(dollars)


async def send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send; once more at once when the pooled connection turns out to be closed.

    A kept-alive connection can die while idle in the pool: servers close idle ones, and
    llama-cpp-python's leaves one broken after a stream that failed inside the server. The
    request then fails before any byte of a response. Browsers and urllib3 resend in that case;
    so does nbllm, once, on a new connection (the pool drops the dead one), before its own retries."""
    try:
        return await client.send(request, stream=True)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        return await client.send(request, stream=True)


def _redirect_target(response: httpx.Response) -> str:
    location = response.headers["location"]
    try:
        return str(response.url.join(location))
    except httpx.InvalidURL:  # "data:,x" and the like: refused as non-HTTP below
        return location


def _same_origin(source: str, target: str) -> bool:
    a, b = urlsplit(source), urlsplit(target)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
