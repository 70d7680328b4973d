"""A deliberately small, standard-library HTTP server for attack tests: each POST is answered by
a function of (path, headers, body) that returns (status, content type, body bytes or a list of
SSE events). Not `nbllm.testing`: a double we did not write for nbllm's convenience, so what
nbllm does with odd replies is tested against replies shaped by the test alone."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, str, bytes | list[str]] | tuple[int, str, bytes | list[str], dict[str, str]]
"""(status, content type, a body or SSE events[, more headers])."""
Answer = Callable[[str, dict[str, str], Any], Reply]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Hostile:
    answer: Answer
    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def chat_events(text: str, *, done: bool = True, finish: str | None = "stop") -> list[str]:
    """A Chat Completions stream of `text` (one event per word), optionally cut short."""
    events = [
        json.dumps({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        for word in re.findall(r"\S+\s*", text)
    ]
    if finish:
        events.append(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    if done:
        events.append("[DONE]")
    return events


def chat_reply(text: str, body: Any) -> Reply:
    """`text` as the request asked for it: a stream of events, or one Chat Completions body."""
    if isinstance(body, dict) and body.get("stream") is False:
        whole = {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }
        return 200, "application/json", json.dumps(whole).encode()
    return 200, "text/event-stream", chat_events(text)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # sixteen calls at once must not find the backlog (5) full


@contextmanager
def hostile(answer: Answer) -> Iterator[Hostile]:
    state = Hostile(answer)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._answer(headers, body)

        def do_GET(self) -> None:  # `/models` and the other probes: no body
            self._answer({k.lower(): v for k, v in self.headers.items()}, None)

        def _answer(self, headers: dict[str, str], body: Any) -> None:
            state.seen.append(Seen(self.path, headers, body))
            status, content_type, payload, *more = state.answer(self.path, headers, body)
            self.send_response(status)
            self.send_header("content-type", content_type)
            for name, value in (more[0] if more else {}).items():
                self.send_header(name, value)
            if isinstance(payload, list):  # server-sent events, one chunk each, as real servers send
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for event in payload:
                    data = f"data: {event}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

    server = _Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    # A short poll: shutdown() waits up to one poll interval, and the tests start many servers.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
