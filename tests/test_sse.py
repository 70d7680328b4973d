from __future__ import annotations

import pytest

from nbllm._calls.sse import ServerSentEvent, SSEDecoder

STREAM = (
    "\ufeff: keep-alive comment\r\n"
    'data: {"a": 1}\n\n'
    "event: error\r"
    "data: line one\r"
    "data:line two\r\r"
    "id: 42\r\n"
    "data:  two spaces, one kept\r\n"
    "retry: 1500\r\n"
    "\r\n"
    "data\n\n"
    "data: caf\u00e9 \u2603\n"
    "unknown: ignored\n\n"
    "event: only-type\n\n"
    "data: [DONE]\n\n"
    "data: never ended"
).encode()

EXPECTED = [
    ServerSentEvent('{"a": 1}'),
    ServerSentEvent("line one\nline two", event="error"),
    ServerSentEvent(" two spaces, one kept", id="42", retry_ms=1500),
    ServerSentEvent("", id="42", retry_ms=1500),
    ServerSentEvent("caf\u00e9 \u2603", id="42", retry_ms=1500),
    ServerSentEvent("[DONE]", id="42", retry_ms=1500),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_three_way_splits_around_crlf() -> None:
    for i in range(1, len(STREAM) - 1, 3):
        for j in range(i + 1, min(i + 6, len(STREAM))):
            assert decode([STREAM[:i], STREAM[i:j], STREAM[j:]]) == EXPECTED


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    assert decode([b"data: x\r", b"\n\r", b"\n"]) == [ServerSentEvent("x")]
    assert decode([b"data: x\r", b"\r"]) == [ServerSentEvent("x")]
