"""Fuzzing with hypothesis, bounded to keep CI short: magic lines, YAML, and replies from a
raw-socket server that sends random and mutated OpenAI replies and headers.

The rule checked on every input: the outcome is a result or an nbllm error (a plain
`UsageError` from a magic), never a foreign exception; the history records what happened (a
call that raised is never recorded as ok); no message holds the key; messages stay small; and
nothing hangs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

import nbllm
from nbllm._providers.yaml_text import load_yaml
from tests.helpers import SENTINEL_KEY

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MESSAGE_LIMIT = 4000


# -- magic lines --------------------------------------------------------------------------

OPTION_WORDS = [
    "add",
    "list",
    "show",
    "remove",
    "default",
    "model",
    "test",
    "save",
    "load",
    "set",
    "--url",
    "--key",
    "--key-env",
    "--key-prompt",
    "--model",
    "--caps",
    "--auth",
    "--api-version",
    "--header",
    "--rps",
    "--timeout",
    "--connect-timeout",
    "--fallback",
    "--privacy",
    "--ke",
    "--api",
    "--ctx",
    "http://127.0.0.1:9/v1",
    "https://",
    "a/b:c",
    "=",
    "m=100",
    "m=-1",
    "nan",
    "1e-300",
    "'",
    '"',
    "${X}",
    "tools,json",
    "no-tools",
    "header:X",
    "Authorization=Bearer",
    SENTINEL_KEY,
    f"--key={SENTINEL_KEY}",
    f"--ke={SENTINEL_KEY}",
]
CHAT_WORDS = [
    "-t",
    "nan",
    "2.5",
    "-1",
    "--max-tokens",
    "0",
    "--seed",
    "x",
    "--json",
    "--tools",
    "f",
    "--tool-choice",
    "auto",
    "--compare",
    "a,b",
    "--fallback",
    "-o",
    "1x",
    "--new",
    "-c",
    "--system",
    "--dry-run",
    "--no-stream",
    "--no-interp",
    "--max-tool-rounds",
    "--ma",
    SENTINEL_KEY,
    "'",
    "p/m",
]


def lines(words: list[str]) -> st.SearchStrategy[str]:
    word = st.one_of(st.sampled_from(words), st.text(max_size=12))
    return st.lists(word, max_size=8).map(" ".join)


def assert_clean(message: str) -> None:
    assert SENTINEL_KEY not in message and len(message) < MESSAGE_LIMIT


@FUZZ
@given(line=lines(OPTION_WORDS))
def test_provider_lines_end_in_a_usage_error_or_success(ip: Any, line: str) -> None:
    try:
        ip.run_line_magic("llm_provider", line)
    except UsageError as exc:
        assert_clean(str(exc))
    finally:
        nbllm.get_store().clear()


@FUZZ
@given(line=lines(CHAT_WORDS))
def test_chat_lines_end_in_a_usage_error_or_a_dry_run(ip: Any, line: str) -> None:
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(name="p", url="http://127.0.0.1:9/v1", key=SENTINEL_KEY, models=["m"])
    )
    try:
        # --dry-run on every line: the fuzz is about parsing, and nothing should be sent.
        ip.run_cell_magic("chat", f"{line} --dry-run", "hello {{x}}")
    except UsageError as exc:
        assert_clean(str(exc))
    finally:
        nbllm.get_store().clear()


# -- YAML ---------------------------------------------------------------------------------

YAML_PIECES = [
    "name: p\n",
    "url: http://127.0.0.1:9/v1\n",
    f"key: {SENTINEL_KEY}\n",
    "models:\n",
    "  m: 100\n",
    "  - m\n",
    "headers: {X: ${Y}}\n",
    "&a [1, 2]\n",
    "*a\n",
    "[" * 40,
    "]" * 40,
    "{",
    "}",
    ": ",
    "- ",
    "\t",
    "'",
    '"',
    "!!python/object:os.system\n",
    "version: 99\n",
    "9" * 5000,
    "\x00",
    "é☃",
]


@FUZZ
@given(pieces=st.lists(st.one_of(st.sampled_from(YAML_PIECES), st.text(max_size=20)), max_size=12))
def test_yaml_cells_end_in_a_usage_error_or_a_provider(ip: Any, pieces: list[str]) -> None:
    try:
        ip.run_cell_magic("llm_provider", "", "".join(pieces))
    except UsageError as exc:
        assert_clean(str(exc))
    finally:
        nbllm.get_store().clear()


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_loads_as_yaml_or_is_a_config_error(text: str) -> None:
    try:
        load_yaml(text, "the file")
    except nbllm.ConfigError as exc:
        assert_clean(str(exc))


# -- replies from a hostile server --------------------------------------------------------


class RawServer:
    """Answers every connection with the bytes of `reply`, then closes it."""

    def __init__(self) -> None:
        self.reply = b""
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)  # the request; its body is not needed
                    connection.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def chunks(draw: Any) -> str:
    """One SSE data payload: a valid chunk, a mutated one, or anything at all."""
    kind = draw(st.sampled_from(["valid", "mutated", "json", "text", "done", "usage", "error"]))
    if kind == "valid":
        return json.dumps({"choices": [{"index": 0, "delta": {"content": draw(st.text(max_size=5))}}]})
    if kind == "mutated":
        delta = {draw(st.sampled_from(["content", "tool_calls", "reasoning", "role"])): draw(JSON_VALUES)}
        choice = {
            "delta": delta,
            "finish_reason": draw(st.none() | st.sampled_from(["stop", "length"]) | JSON_VALUES),
        }
        return json.dumps({"choices": draw(st.sampled_from([[choice], choice, [[choice]], None]))})
    if kind == "json":
        return json.dumps(draw(JSON_VALUES))
    if kind == "usage":
        return json.dumps(
            {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": draw(JSON_VALUES)}}
        )
    if kind == "error":
        return json.dumps({"error": draw(JSON_VALUES)})
    if kind == "done":
        return "[DONE]"
    return draw(st.text(max_size=20))


@st.composite
def replies(draw: Any) -> bytes:
    status = draw(
        st.sampled_from([200, 200, 200, 200, 204, 302, 307, 308, 400, 401, 404, 422, 429, 500, 503])
    )
    headers = [
        (
            "Content-Type",
            draw(st.sampled_from(["text/event-stream", "application/json", "text/html", "x/é"])),
        ),
    ]
    if draw(st.booleans()):
        headers.append(
            ("Content-Encoding", draw(st.sampled_from(["gzip", "deflate", "br", "identity", "zz"])))
        )
    if status in (302, 307, 308) or draw(st.booleans()):
        headers.append(
            ("Location", draw(st.sampled_from(["data:,x", "http://other.invalid/v1", "/v2", "::", ""])))
        )
    if draw(st.booleans()):
        headers.append(
            ("Retry-After", draw(st.sampled_from(["0", "1e999", "nan", "Wed, 21 Oct 2015", "-5"])))
        )
    if draw(st.booleans()):
        headers.append(("Server", "café ☃"))
    events = draw(st.lists(chunks(), max_size=6))
    if draw(st.booleans()):
        events.append("[DONE]")
    body = "".join(f"data: {e}\n\n" for e in events).encode()
    if headers[0][1] == "application/json" and events:
        body = events[0].encode()
    framing = draw(st.sampled_from(["length", "close", "chunked", "bad-length"]))
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
    elif framing == "bad-length":
        headers.append(("Content-Length", str(len(body) + draw(st.integers(-5, 50)))))
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in body.splitlines(keepends=True)) + b"0\r\n\r\n"
    head = (
        f"HTTP/1.1 {status} X\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers)
        + "Connection: close\r\n\r\n"
    )
    return head.encode("utf-8") + body


@FUZZ
@given(reply=replies(), stream=st.booleans())
def test_any_reply_ends_in_a_result_or_an_nbllm_error(
    raw_server: RawServer, reply: bytes, stream: bool
) -> None:
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(
            name="raw",
            url=raw_server.url,
            key=SENTINEL_KEY,
            read_timeout_s=1.0,
            connect_timeout_s=1.0,
            retry={"max_retries": 0},
            models=["m"],
        ),
        replace=True,
    )
    raw_server.reply = reply
    before = len(nbllm.history())
    started = time.perf_counter()
    try:
        result = nbllm.chat("hi", model="raw/m", stream=stream, check_context=False)
    except nbllm.NbllmError as exc:
        assert_clean(str(exc))
        assert nbllm.history()[-1].status in ("error", "incomplete")
    else:
        assert result.status == "ok" and (result.text or result.tool_calls)
        assert nbllm.history()[-1].status == "ok"
    assert len(nbllm.history()) == before + 1
    assert time.perf_counter() - started < 10


# -- the response cache's key and cassette loading (issue 29) -------------------------------

header_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)


@FUZZ
@given(
    port=st.integers(1, 65535),
    other_port=st.integers(1, 65535),
    key=header_values,
    other_key=header_values,
    tenant=header_values,
    body=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=4),
)
def test_the_cache_key_tells_callers_apart_and_never_holds_a_credential(
    port: int, other_port: int, key: str, other_key: str, tenant: str, body: dict[str, Any]
) -> None:
    import httpx

    from nbllm._replay.recording import identity

    def request(port: int, key: str) -> httpx.Request:
        headers = {"Authorization": f"Bearer {key}", "X-Tenant": tenant}
        return httpx.Request(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", headers=headers, json=body
        )

    mine = identity(request(port, key), {key, f"Bearer {key}"})
    assert identity(request(port, key), {key, f"Bearer {key}"}) == mine  # stable
    if (other_port, other_key) != (port, key):
        assert identity(request(other_port, other_key), {other_key, f"Bearer {other_key}"}) != mine
    if len(key) >= 8:
        assert key not in mine


entry_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=4)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
    ),
    max_leaves=12,
)


@FUZZ
@given(entry=st.fixed_dictionaries({"request": entry_values, "response": entry_values}) | entry_values)
def test_any_cassette_entry_loads_or_is_refused_with_a_value_error(entry: Any) -> None:
    from nbllm._replay.recording import Recording

    try:
        loaded = Recording.from_dict(entry)
    except ValueError as error:
        assert str(error).startswith("not a recorded exchange")
        return
    assert 200 <= loaded.status <= 599


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_as_a_cassette_loads_or_is_a_config_file_error(text: str, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("cassette") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        cassette = nbllm.cassette(path, mode="replay")
    except nbllm.ConfigFileError as error:  # CassetteError is one
        assert "cassette" in str(error) or "YAML" in str(error)
    else:
        assert all(200 <= r.status <= 599 for r in cassette.recordings)
