"""The loopback server itself: its state (`LoopbackServer`), the HTTP handler, the scripted
reply every protocol shares, and the faults; `chat_completions`, `anthropic` and `responses`
write the reply in each protocol's shapes, `embeddings` answers ``/embeddings``."""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nbllm.testing.anthropic_writer import send_anthropic
from nbllm.testing.chat_completions_writer import send_chat_completion
from nbllm.testing.embeddings_writer import send_embeddings
from nbllm.testing.responses_writer import responses_as_chat, send_responses

FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "server_error",
        "reset",
        "stall",
        "malformed",
        "error_event",
        "no_done",
        "finish_no_done",
        "crlf",
        "byte_writes",
        "slow_first_byte",
        "unknown_model",
    }
)


SHUTDOWN_POLL_S = 0.05
"""How often the serving thread checks for shutdown. The standard library's default, 0.5 s,
made every `serve()` block wait about that long to end (half the test suite's time)."""

FRAMINGS = ("chunked", "bytes", "body")

REASONING_SHAPES = ("reasoning_content", "reasoning", "openrouter", "details", "think_tags")
"""The wire shapes of a model's thinking that the server can send (see the module docstring)."""

CHAT_PATH_RE = re.compile(r"^(/v1|/openai/deployments/[^/]+)/chat/completions$")
"""OpenAI's path, and Azure OpenAI's (deployment in the path), so it can stand in for both."""
MESSAGES_PATH = "/v1/messages"
"""Anthropic's Messages path: the same scripted model answers in Anthropic's shapes there."""
EMBEDDINGS_PATH_RE = re.compile(r"^(/v1|/openai/deployments/[^/]+)/embeddings$")
"""OpenAI's and Azure OpenAI's embeddings paths."""
RESPONSES_PATH = "/v1/responses"
"""OpenAI's Responses path (served unless ``responses=False``, to stand in for servers without it)."""


@dataclass(frozen=True)
class Fault:
    """A fault to inject into one request; `kind` is one of `FAULT_KINDS` (see the module's
    docstring for each kind and the fields it reads)."""

    kind: str
    status: int = 500
    retry_after: str | None = None
    retry_after_ms: int | None = None
    after_chunks: int = 0
    seconds: float = 0.0
    message: str = "injected fault"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose from {', '.join(sorted(FAULT_KINDS))}")

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``"rate_limit; retry_after=2"`` -> ``Fault("rate_limit", retry_after="2")``."""
        kind, *pairs = [p.strip() for p in text.split(";") if p.strip()]
        fields: dict[str, Any] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            key = key.strip()
            if key in ("status", "after_chunks", "retry_after_ms"):
                fields[key] = int(value)
            elif key == "seconds":
                fields[key] = float(value)
            else:
                fields[key] = value.strip()
        return cls(kind, **fields)


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the server replies with: the function's name and its arguments (a dict, or a
    JSON string sent as is)."""

    name: str
    arguments: dict[str, Any] | str


@dataclass
class RecordedRequest:
    """A request the server received: method, path, headers (lower-cased), the decoded JSON body
    (None if it was not JSON), and the monotonic time it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    done_at: float | None = None
    """When the server finished writing its reply (None while writing, or if it never did)."""


ReplyFunction = Callable[[dict[str, Any]], "str | list[ScriptedToolCall]"]


class _ClientGone(Exception):
    pass


@dataclass
class _Script:
    """One reply as the server sends it."""

    answer: str | list[ScriptedToolCall]
    deltas: list[dict[str, Any]]
    thinking_tokens: int
    finish: str


def split_tokens(text: str) -> list[str]:
    """Words with their trailing space: the server's notion of a token."""
    return re.findall(r"\S+\s*|\s+", text)


class _Listener(ThreadingHTTPServer):
    # The standard library listens with a backlog of 5: a client opening 32 connections at
    # once (a batch run) had some reset before the accept loop took them.
    request_queue_size = 128


class LoopbackServer:
    """The server's state; create it with `serve`."""

    def __init__(
        self,
        reply: str | Sequence[str] | ReplyFunction = "Hello!",
        *,
        echo: bool = False,
        tool_calls: Sequence[ScriptedToolCall] | None = None,
        tool_reply: str = "Done.",
        tokens_per_s: float | None = None,
        api_key: str | None = None,
        models: Sequence[str] = ("test-model",),
        usage: bool = True,
        framing: str = "chunked",
        stamp_tokens: bool = False,
        reasoning: str | None = None,
        reasoning_shape: str = "reasoning_content",
        chunk_chars: int | None = None,
        responses: bool = True,
        embedding_dimensions: int = 16,
        honours_dimensions: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        usage_cost: float | None = None,
        latency_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; choose from {', '.join(FRAMINGS)}")
        if reasoning_shape not in REASONING_SHAPES:
            raise ValueError(
                f"unknown reasoning shape {reasoning_shape!r}; choose from {', '.join(REASONING_SHAPES)}"
            )
        if chunk_chars is not None and chunk_chars < 1:
            raise ValueError("chunk_chars should be at least 1")
        self.reasoning = reasoning
        """Thinking every reply starts with (None: the model does not think)."""
        self.reasoning_shape = reasoning_shape
        self.chunk_chars = chunk_chars
        self.responses = responses
        if embedding_dimensions < 1:
            raise ValueError("embedding_dimensions should be at least 1")
        self.embedding_dimensions = embedding_dimensions
        """The length of the vectors ``/v1/embeddings`` answers with."""
        self.honours_dimensions = honours_dimensions
        """Whether a request's ``dimensions`` shortens them (False: ignored, as llama.cpp does)."""
        """Whether ``/v1/responses`` is served (False: it answers 404, as most servers do)."""
        self.usage_cost = usage_cost
        """Dollars each reply's usage reports as ``cost`` (OpenRouter's field); None: no cost."""
        if latency_s < 0:
            raise ValueError("latency_s cannot be negative")
        self.latency_s = latency_s
        """Seconds the server thinks before the first byte of every chat reply (a model's queue
        and prompt processing), for batch-run measurements."""
        self.reply = reply
        self.echo = echo
        self.tool_calls = list(tool_calls or [])
        self.tool_reply = tool_reply
        self.tokens_per_s = tokens_per_s
        self.api_key = api_key
        self.models = list(models)
        self.usage = usage
        self.framing = framing
        self.stamp_tokens = stamp_tokens
        """Each streamed token is the server's ``time.monotonic()`` as it writes it (a decimal
        string and a space): for measuring the delay from the wire to the consumer."""
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        self.disconnects: list[float] = []
        """Monotonic times at which a client went away mid-reply."""
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._reply_index = 0
        handler = type("Handler", (_Handler,), {"state": self})
        self._httpd = _Listener((host, port), handler)
        self.tls = ssl_context is not None
        """Whether it serves HTTPS (``ssl_context``: a server-side context with its certificate)."""
        if ssl_context is not None:
            # The handshake happens in the request's thread, so a client that fails it does not
            # hold up the accept loop.
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_S,), name="nbllm-testing", daemon=True
        )

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by the OS when started with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL to register, ``http://127.0.0.1:PORT/v1`` (the host it
        listens on; ``https`` with an ``ssl_context``)."""
        host = str(self._httpd.server_address[0])
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/v1"

    def enqueue(self, *faults: Fault | str) -> None:
        """Faults for the next requests, one per request, in order."""
        with self._lock:
            self._faults.extend(f if isinstance(f, Fault) else Fault.parse(f) for f in faults)

    def start(self) -> LoopbackServer:
        """Start serving on a background thread; returns the server."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_fault(self, headers: dict[str, str]) -> Fault | None:
        """The fault for the next request: the one its ``x-nbllm-fault`` header asks for, else the
        oldest enqueued one, else None."""
        asked = headers.get("x-nbllm-fault")
        if asked:
            return Fault.parse(asked)
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def answer_for(self, body: dict[str, Any]) -> str | list[ScriptedToolCall]:
        """What to reply to a request body: the reply function's answer, scripted tool calls, the
        tool reply after a tool result, the echoed prompt, or the next scripted reply."""
        if callable(self.reply):  # a reply function decides everything, tool calls included
            return self.reply(body)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        # After tool results (and whatever a client sends with them, such as the images a tool
        # returned, in a user message): the tool reply, not the same calls again.
        after_tools = False
        for message in reversed(messages):
            if message.get("role") == "assistant":
                break
            after_tools = after_tools or message.get("role") == "tool"
        if self.tool_calls and body.get("tools") and not after_tools:
            return self.tool_calls
        if after_tools:
            return self.tool_reply
        if self.echo:
            content = last.get("content", "")
            return content if isinstance(content, str) else json.dumps(content)
        if isinstance(self.reply, str):
            return self.reply
        with self._lock:
            index = min(self._reply_index, len(self.reply) - 1)
            self._reply_index += 1
        return self.reply[index]


class _Handler(BaseHTTPRequestHandler):
    state: LoopbackServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as uvicorn does: a small event is sent at once, not batched

    def setup(self) -> None:
        super().setup()
        with self.state._lock:
            self.state.connections += 1

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records instead
        return

    # -- plumbing ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req-{len(self.state.requests)}")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._write(data)

    def _token_count(self, text: str) -> int:
        return len(split_tokens(text))

    def _error(self, status: int, message: str, code: str, extra: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": code, "code": code}}, extra)

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice at once when the client hangs up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        raise _ClientGone
                except OSError:
                    raise _ClientGone from None

    def _write(self, data: bytes, one_byte_at_a_time: bool = False) -> None:
        try:
            if one_byte_at_a_time:
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
            else:
                self.wfile.write(data)
        except OSError:
            raise _ClientGone from None

    def _reset(self) -> None:
        """Close with RST, as a crashed server or a proxy timeout does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    # -- routes --------------------------------------------------------------------

    def do_GET(self) -> None:
        headers = self._headers()
        self.state.requests.append(RecordedRequest("GET", self.path, headers, None))
        if not self._authorised(headers):
            return
        if self.path.split("?")[0] == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "nbllm-testing"} for m in self.state.models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._error(404, f"Not found: {self.path}", "not_found")

    def do_POST(self) -> None:
        headers = self._headers()
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        record = RecordedRequest("POST", self.path, headers, body)
        self.state.requests.append(record)
        path = self.path.split("?")[0]
        anthropic = path == MESSAGES_PATH
        responses = path == RESPONSES_PATH and self.state.responses
        embeddings = EMBEDDINGS_PATH_RE.match(path) is not None
        if not (anthropic or responses or embeddings or CHAT_PATH_RE.match(path)):
            self._error(404, f"Not found: {self.path}", "not_found")
            return
        if not self._authorised(headers):
            return
        if embeddings:
            self._embeddings(body, headers, record)
            return
        if responses and isinstance(body, dict) and isinstance(body.get("input"), list | str):
            body = responses_as_chat(body)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "'messages' is a required property", "invalid_request_error")
            return
        if anthropic and not isinstance(body.get("max_tokens"), int):
            self._error(400, "max_tokens: Field required", "invalid_request_error")
            return
        fault = self.state.next_fault(headers)
        try:
            if fault and fault.kind == "slow_first_byte":
                self._wait(fault.seconds)
            if fault and self._status_fault(fault, body):
                return
            if self.state.latency_s:
                self._wait(self.state.latency_s)
            if anthropic:
                send_anthropic(self, body, fault)
            elif responses:
                send_responses(self, body, fault)
            else:
                send_chat_completion(self, body, fault)
            record.done_at = time.monotonic()
        except _ClientGone:
            self.state.disconnects.append(time.monotonic())
            self.close_connection = True

    def _embeddings(self, body: Any, headers: dict[str, str], record: RecordedRequest) -> None:
        fault = self.state.next_fault(headers)
        try:
            if fault and fault.kind == "slow_first_byte":
                self._wait(fault.seconds)
            if fault and self._status_fault(fault, body if isinstance(body, dict) else {}):
                return
            send_embeddings(self, body, fault)
            record.done_at = time.monotonic()
        except _ClientGone:
            self.state.disconnects.append(time.monotonic())
            self.close_connection = True

    def _authorised(self, headers: dict[str, str]) -> bool:
        key = self.state.api_key
        if key is None:
            return True
        if (
            key in (headers.get("api-key"), headers.get("x-api-key"))
            or headers.get("authorization") == f"Bearer {key}"
        ):
            return True
        self._error(401, "Incorrect API key provided.", "invalid_api_key")
        return False

    def _status_fault(self, fault: Fault, body: dict[str, Any]) -> bool:
        if fault.kind == "rate_limit":
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = fault.retry_after
            if fault.retry_after_ms is not None:
                extra["retry-after-ms"] = str(fault.retry_after_ms)
            self._error(429, "Rate limit reached; please retry later.", "rate_limit_exceeded", extra)
        elif fault.kind == "server_error":
            self._error(fault.status, f"The server had an error ({fault.message}).", "server_error")
        elif fault.kind == "unknown_model":
            model = body.get("model")
            self._error(404, f"The model `{model}` does not exist.", "model_not_found")
        else:
            return False
        return True

    # -- replies -------------------------------------------------------------------

    def _usage(self, body: dict[str, Any], completion: int, thinking: int = 0) -> dict[str, Any]:
        prompt = sum(len(split_tokens(str(m.get("content") or ""))) + 4 for m in body["messages"])
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.state.usage_cost is not None:
            usage["cost"] = self.state.usage_cost
        if self.state.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": thinking}
        return usage

    def _pieces(self, text: str) -> list[str]:
        """The server's tokens: words, or `chunk_chars` characters each."""
        size = self.state.chunk_chars
        if size is None:
            return split_tokens(text)
        return [text[i : i + size] for i in range(0, len(text), size)]

    def _thinking_deltas(self, thinking: str) -> list[dict[str, Any]]:
        shape = self.state.reasoning_shape
        deltas: list[dict[str, Any]] = []
        for piece in self._pieces(thinking):
            if shape == "reasoning_content":
                deltas.append({"reasoning_content": piece})
            elif shape == "reasoning":
                deltas.append({"reasoning": piece})
            elif shape == "openrouter":
                detail = {"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}
                deltas.append({"reasoning": piece, "reasoning_details": [detail]})
            else:  # details only: a summary, as OpenAI's models behind OpenRouter send
                deltas.append({"reasoning_details": [{"type": "reasoning.summary", "summary": piece}]})
        if shape == "details" and deltas:
            deltas.append({"reasoning_details": [{"type": "reasoning.encrypted", "data": "gAAAA-opaque"}]})
        return deltas

    def _script(self, body: dict[str, Any]) -> _Script:
        """The reply to `body` as stream deltas: thinking first, then the text or tool calls,
        cut at the request's ``max_tokens`` (one delta is one token)."""
        answer = self.state.answer_for(body)
        thinking = self.state.reasoning
        deltas: list[dict[str, Any]] = []
        if thinking and self.state.reasoning_shape == "think_tags":
            deltas = [{"content": p} for p in self._pieces(f"<think>\n{thinking}\n</think>\n\n")]
        elif thinking:
            deltas = self._thinking_deltas(thinking)
        thinking_count = len(deltas)
        if isinstance(answer, str):
            deltas += [{"content": token} for token in self._pieces(answer)]
        else:
            for index, call in enumerate(answer):
                arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
                head = {"index": index, "id": f"call_{index}", "type": "function"}
                deltas.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
                for start in range(0, len(arguments), 7):  # argument JSON split mid-token, as servers do
                    piece = arguments[start : start + 7]
                    deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        finish = "stop" if isinstance(answer, str) else "tool_calls"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(deltas):
            deltas, finish = deltas[:limit], "length"
        return _Script(answer, deltas, min(thinking_count, len(deltas)), finish)

    def whole_reply_fault(self, fault: Fault | None, malformed: bytes) -> bool:
        """Act out `fault` for a whole (unstreamed) JSON reply: a reset, a stall before the reply,
        a body that is not JSON, an error object with status 200. True when the reply is sent."""
        kind = fault.kind if fault else None
        if kind == "reset":
            self._reset()
            return True
        if kind == "stall":
            self._wait(fault.seconds if fault else 0)
        if kind == "malformed":
            self._send_raw(200, malformed, "application/json")
            return True
        if kind == "error_event":
            error = {"message": fault.message if fault else "", "type": "server_error"}
            self._send_json(200, {"error": error})
            return True
        return False


@contextmanager
def serve(reply: str | Sequence[str] | ReplyFunction = "Hello!", **options: Any) -> Iterator[LoopbackServer]:
    """Run a loopback server for the duration of a ``with`` block."""
    server = LoopbackServer(reply, **options).start()
    try:
        yield server
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m nbllm.testing``: serve until interrupted, printing the base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m nbllm.testing",
        description="A loopback OpenAI-compatible server for tests, tutorials and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--reply", default="Hello!")
    parser.add_argument("--echo", action="store_true", help="reply with the last user message")
    parser.add_argument("--tokens-per-s", type=float)
    parser.add_argument("--api-key")
    parser.add_argument("--model", action="append", dest="models", help="a model id for /models")
    parser.add_argument("--framing", choices=FRAMINGS, default="chunked", help="how a stream is framed")
    parser.add_argument(
        "--stamp-tokens", action="store_true", help="send each token as the server's monotonic clock"
    )
    parser.add_argument(
        "--embedding-dimensions", type=int, default=16, help="the length of /v1/embeddings vectors"
    )
    args = parser.parse_args(argv)
    server = LoopbackServer(
        args.reply,
        echo=args.echo,
        tokens_per_s=args.tokens_per_s,
        api_key=args.api_key,
        models=args.models or ["test-model"],
        framing=args.framing,
        stamp_tokens=args.stamp_tokens,
        embedding_dimensions=args.embedding_dimensions,
        host=args.host,
        port=args.port,
    )
    print(f"nbllm.testing serving on http://{args.host}:{server.port}/v1", flush=True)
    try:
        server._httpd.serve_forever(SHUTDOWN_POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
