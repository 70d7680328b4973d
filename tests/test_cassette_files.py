"""Cassettes nbllm writes, nbllm reads back; cassettes nbllm did not write are refused clearly
(issue 29, item 2). Recorded from servers written for these tests (`tests/hostile_server.py`)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig
from nbllm._replay import recording
from tests.hostile_server import Reply, chat_events, hostile

SSE = "text/event-stream"


def register(url: str) -> str:
    nbllm.get_store().add_provider(ProviderConfig(name="c", url=url, auth="none", models=["m"]))
    return "c/m"


def test_a_cassette_of_long_replies_over_a_megabyte_replays(tmp_path: Path) -> None:
    # Three streamed 2,500-event replies, as a long answer is: over a megabyte of cassette.
    long_reply = ("x" * 130 + " ") * 2_500
    path = tmp_path / "long.yaml"
    with hostile(lambda *_: (200, SSE, chat_events(long_reply))) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            for n in range(3):
                assert nbllm.chat(f"q{n}", model).text == long_reply
    assert path.stat().st_size > 1_000_000
    with nbllm.cassette(path, mode="replay"):
        assert nbllm.chat("q2", model).text == long_reply


def test_a_gzip_encoded_reply_replays(tmp_path: Path) -> None:
    body = "".join(f"data: {event}\n\n" for event in chat_events("Compressed but fine.")).encode()

    def compressed(path: str, headers: dict[str, str], request: Any) -> Reply:
        return 200, SSE, gzip.compress(body), {"content-encoding": "gzip"}  # though asked for identity

    path = tmp_path / "gz.yaml"
    with hostile(compressed) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            assert nbllm.chat("q", model).text == "Compressed but fine."
    with nbllm.cassette(path, mode="replay"):
        assert nbllm.chat("q", model).text == "Compressed but fine."


def test_recording_writes_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writers: list[str] = []
    save = nbllm.Cassette._save

    def watched(self: Any, recordings: Any) -> None:
        writers.append(threading.current_thread().name)
        save(self, recordings)

    monkeypatch.setattr(nbllm.Cassette, "_save", watched)
    with hostile(lambda *_: (200, SSE, chat_events("ok"))) as server:
        model = register(server.base_url)
        with nbllm.cassette(tmp_path / "w.yaml", mode="record"):
            nbllm.chat("q", model)
    assert writers and all(name.startswith("nbllm-cassette") for name in writers)
    assert "ok" in (tmp_path / "w.yaml").read_text()  # flushed when the block ended


ENTRY = """version: 1
interactions:
- request: {{method: POST, url: 'http://127.0.0.1/v1/chat/completions', body: {body}}}
  response:
    status: {status}
    headers: {{content-type: text/event-stream}}
    events:
    - {{at: {at}, data: 'data: [DONE]'}}
"""

HOSTILE = [
    ("a YAML date", {"body": "2024-01-01"}, "date"),
    ("a set", {"body": "!!set {a, b}"}, "set"),
    ("binary", {"body": "!!binary aGk="}, "bytes"),
    ("a key that is not text", {"body": "{1: x}"}, "not text"),
    ("status 0", {"status": "0"}, "status 0"),
    ("status 101", {"status": "101"}, "status 101"),
    ("an infinite time", {"at": ".inf"}, r"response\.events\[0\]\.at is inf"),
    ("a NaN time", {"at": ".nan"}, r"response\.events\[0\]\.at is nan"),
]


@pytest.mark.parametrize(("what", "fields", "named"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_cassette_is_a_cassette_error_naming_the_entry(
    what: str, fields: dict[str, str], named: str, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(ENTRY.format(**({"body": "{}", "status": "200", "at": "0.1"} | fields)))
    with pytest.raises(nbllm.CassetteError, match=rf"entry 1 of 1 .*{named}"):
        nbllm.cassette(path, mode="replay")


def test_playing_at_the_recorded_pace_caps_every_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def noted(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(recording.asyncio, "sleep", noted)
    played = recording._PlayedEvents([(5e6, "data: [DONE]")], "recorded")

    async def drain() -> list[bytes]:
        return [chunk async for chunk in played]

    assert asyncio.run(drain()) == [b"data: [DONE]\n\n"]
    assert waits == [recording.MAX_REPLAY_WAIT_S]
