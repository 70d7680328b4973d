"""Recorded HTTP exchanges, shared by cassettes and the response cache: what one request and
its response were (`Recording`), how a live response is recorded as it streams through, how a
recording is played back as an `httpx.Response`, and how requests are matched.

A recording holds what replaying needs and a reviewer can read: the method, the URL and the
JSON body nbllm sent, and the response's status, the headers that change nbllm's behaviour,
and its body: a server-sent event stream as one entry per event with the time it arrived (in
seconds after the request), anything else as JSON (or text). Never a request header, and never
a secret: every value that was sent as a credential, and any resolved key, is masked wherever
it appears, and query parameters that carry keys are dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from nbllm._constants import MAX_REPLAY_WAIT_S
from nbllm._providers.config import is_sensitive_header
from nbllm._providers.secret_registry import QUERY_CREDENTIALS, session_secrets
from nbllm._providers.secret_text import mask_json, mask_values
from nbllm._providers.urls import is_loopback

GATEWAY_COST_HEADER = "x-litellm-response-cost"
"""LiteLLM's proxy reports a whole reply's cost in dollars here (see `client.exchange`)."""

REPLAYED_HEADER = "x-nbllm-replayed"
"""Set on a played-back response: ``cassette`` or ``cache`` (the footer and history say so)."""

KEPT_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "retry-after-ms",
    "location",
    "x-request-id",
    "request-id",
    "apim-request-id",
    "x-ms-request-id",
    "server",
    GATEWAY_COST_HEADER,
)
"""The response headers nbllm reads; the others are not recorded."""

ADDED_BODY_FIELDS = ("stream_options",)
"""Request fields nbllm adds by itself, which do not change the answer: ignored in matching."""

SSE_TYPES = ("text/event-stream",)


@dataclass
class Recording:
    """One request and its response, as stored."""

    method: str
    url: str
    body: Any
    status: int
    headers: dict[str, str]
    events: list[tuple[float, str]] | None = None
    """For an event stream: (seconds after the request, the event's text), in order."""
    content: Any = None
    """For anything else: the decoded JSON (or the text when it is not JSON)."""

    def to_dict(self) -> dict[str, Any]:
        response: dict[str, Any] = {"status": self.status, "headers": self.headers}
        if self.events is not None:
            response["events"] = [{"at": round(at, 4), "data": text} for at, text in self.events]
        else:
            response["body"] = self.content
        return {"request": {"method": self.method, "url": self.url, "body": self.body}, "response": response}

    @classmethod
    def from_dict(cls, data: Any) -> Recording:
        """The recording in `data` (a cassette entry); raises ValueError when it is not one: a
        value of no JSON type (a YAML date, set or binary; a key that is not text), a status
        that is no final HTTP status, or an event time that is not a finite number of seconds."""
        try:
            _only_json(data)
            request, response = data["request"], data["response"]
            status = response["status"]
            if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
                raise ValueError(f"status {status!r} is not an HTTP status nbllm replays (200-599)")
            events = response.get("events")
            played = None
            if events is not None:
                played = [(float(e["at"]), str(e["data"])) for e in events]
                if any(not math.isfinite(at) or at < 0 for at, _ in played):
                    raise ValueError("an event's time ('at') is not a finite number of seconds")
            return cls(
                method=str(request["method"]).upper(),
                url=str(request["url"]),
                body=request.get("body"),
                status=status,
                headers={str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()},
                events=played,
                content=response.get("body"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a recorded exchange ({exc})") from None

    def match_key(self) -> str:
        return match_key(self.method, self.url, self.body)

    def response(self, request: httpx.Request, source: str, speed: str = "fast") -> httpx.Response:
        """The recorded response, played back for `request` (events at their recorded times
        when `speed` is ``recorded``)."""
        headers = {**self.headers, REPLAYED_HEADER: source}
        if self.events is None:
            if isinstance(self.content, str):
                content = self.content.encode()
            else:
                content = json.dumps(self.content).encode()
            return httpx.Response(self.status, headers=headers, content=content, request=request)
        return httpx.Response(
            self.status, headers=headers, stream=_PlayedEvents(self.events, speed), request=request
        )


def _only_json(value: Any, where: str = "") -> None:
    """Raise ValueError unless `value` is made of JSON's types only (what nbllm writes);
    `where` is the path to it (``response.events[0].at``)."""
    shown = where or "the entry"
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{shown} is {value!r}, which is not a JSON number")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _only_json(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{shown} has a key {key!r} that is not text")
            _only_json(item, f"{where}.{key}" if where else key)
        return
    raise ValueError(f"{shown} holds a {type(value).__name__}, which is not a JSON type")


class _PlayedEvents(httpx.AsyncByteStream):
    def __init__(self, events: list[tuple[float, str]], speed: str) -> None:
        self.events, self.speed = events, speed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        started = time.monotonic()
        for at, text in self.events:
            if self.speed == "recorded":
                wait = at - (time.monotonic() - started)
                if wait > 0:  # capped: a hand-edited time must not hang the cell
                    await asyncio.sleep(min(wait, MAX_REPLAY_WAIT_S))
            yield (text + "\n\n").encode()


@dataclass(frozen=True)
class ScrubbedRequest:
    """A live request as recordings see it: its secrets, and its URL and body with them masked;
    `key` is what it matches (see `match_key`)."""

    method: str
    url: str
    body: Any
    secrets: frozenset[str]

    @classmethod
    def of(cls, request: httpx.Request) -> ScrubbedRequest:
        secrets = frozenset(secrets_of(request, session_secrets()))
        url = scrub_url(str(request.url), secrets)
        return cls(request.method, url, scrub_json(request_body(request), secrets), secrets)

    @property
    def key(self) -> str:
        return match_key(self.method, self.url, self.body)


def secrets_of(request: httpx.Request, known: Iterable[str] = ()) -> set[str]:
    """The values to mask: the `known` secrets (the session's registry, `session_secrets`) and
    the value of every header whose name is a credential's, with a bearer token's token alone.
    Other header values are not secrets (``X-Title: final`` must not mask "final")."""
    found = set(known)
    for name, value in request.headers.items():
        if is_sensitive_header(name):
            found |= {value, value.partition(" ")[2]}
    return {value for value in found if value}


def scrub_url(url: str, secrets: Iterable[str]) -> str:
    """`url` without credential query parameters and with every secret masked."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in QUERY_CREDENTIALS
    ]
    return mask_values(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), "")), secrets)


def scrub_json(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (decoded JSON) with every secret masked in its strings (keys and values), never
    in its structure or numbers."""
    secrets = list(secrets)
    return mask_json(value, secrets) if secrets else value


def match_key(method: str, url: str, body: Any) -> str:
    """What two requests must share to be the same: the method, the URL (a loopback server's
    port aside, as it changes from run to run), and the body without the fields nbllm adds,
    keys in order."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "") if is_loopback(url) else parts.netloc
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ADDED_BODY_FIELDS}
    shown_body = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return f"{method.upper()} {parts.scheme}://{netloc}{parts.path}?{query}\n{shown_body}"


VOLATILE_HEADERS = frozenset(
    {"host", "content-length", "accept-encoding", "connection", "user-agent", "traceparent", "tracestate"}
)
"""Request headers that say nothing about the answer or the right to it (the host is in the URL)."""

KEEP_EXTENSION = "nbllm_keep"
"""Where a recorded response carries its `keep` (see `recording_response`)."""


def identity(request: httpx.Request, secrets: Iterable[str]) -> str:
    """Everything that can change a request's answer or the right to it, for the response
    cache: the method, the full URL (scheme, host, port, path, query), the body and every sent
    header that is not volatile. Credentials appear only as one-way fingerprints; the whole is
    digested again before it is stored (`digest`)."""
    secret_values = set(secrets)

    def shown(value: str) -> str:
        hidden = value in secret_values or value.partition(" ")[2] in secret_values
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest() if hidden else value

    parts = urlsplit(str(request.url))
    query = sorted((k, shown(v)) for k, v in parse_qsl(parts.query, keep_blank_values=True))
    headers = sorted(
        (name.lower(), shown(value))
        for name, value in request.headers.items()
        if name.lower() not in VOLATILE_HEADERS
    )
    body = request_body(request)
    return json.dumps(
        [request.method.upper(), parts.scheme, parts.hostname, parts.port, parts.path, query, headers, body],
        sort_keys=True,
        ensure_ascii=False,
    )


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def request_body(request: httpx.Request) -> Any:
    """The request's JSON body, decoded (its text when it is not JSON; None when empty)."""
    raw = request.content
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


class Recorder(httpx.AsyncByteStream):
    """Passes a live response's body through while recording it; `on_complete` gets the
    recording once the body was read to its end (a reply abandoned half-way is not recorded)."""

    def __init__(self, response: httpx.Response, request: ScrubbedRequest, on_complete: Any) -> None:
        self.response, self.request, self.on_complete = response, request, on_complete
        self.started = time.monotonic()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        streaming = self.response.headers.get("content-type", "").startswith(SSE_TYPES)
        events: list[tuple[float, str]] = []
        buffer = b""
        whole = bytearray()
        # A server may compress although asked not to: the raw bytes pass on (httpx decodes
        # them for the reader); the recording holds them decoded, as it drops the header.
        decoder = _decoder(self.response.headers.get("content-encoding", ""))
        async for raw in self.response.aiter_raw():
            yield raw
            chunk = decoder.decompress(raw) if decoder is not None else raw
            if streaming:
                buffer += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if event.strip():
                        events.append((time.monotonic() - self.started, event.decode("utf-8", "replace")))
            else:
                whole += chunk
        if streaming and buffer.strip():
            events.append((time.monotonic() - self.started, buffer.decode("utf-8", "replace").rstrip("\n")))
        self.on_complete(self._recording(events if streaming else None, bytes(whole)))

    async def aclose(self) -> None:
        await self.response.aclose()

    def _recording(self, events: list[tuple[float, str]] | None, whole: bytes) -> Recording:
        secrets = self.request.secrets
        content: Any = None
        if events is None:
            text = whole.decode("utf-8", errors="replace")
            try:
                content = scrub_json(json.loads(text), secrets)
            except ValueError:
                content = mask_values(text, secrets)
        headers = {
            name: mask_values(value, secrets)
            for name, value in self.response.headers.items()
            if name.lower() in KEPT_RESPONSE_HEADERS
        }
        return Recording(
            method=self.request.method,
            url=self.request.url,
            body=self.request.body,
            status=self.response.status_code,
            headers=headers,
            events=None if events is None else [(at, mask_values(text, secrets)) for at, text in events],
            content=content,
        )


def _decoder(encoding: str) -> Any:
    """A zlib decoder for a gzip or deflate body (None for an uncompressed one)."""
    if encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib, told from the header
    return None


def recording_response(
    response: httpx.Response,
    request: httpx.Request,
    scrubbed: ScrubbedRequest,
    on_complete: Any,
    keep: Any = None,
) -> httpx.Response:
    """`response` with its body recorded as it is read (see `Recorder`). The headers pass
    unchanged, so a compressed body stays compressed for httpx to decode. `keep`, when given,
    rides on the response (`KEEP_EXTENSION`) for the attempt engine to call once the reply
    passed every check: a recording that ends a failed attempt is never kept."""
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=Recorder(response, scrubbed, on_complete),
        request=request,
        extensions={**response.extensions, KEEP_EXTENSION: keep} if keep else response.extensions,
    )
