"""The response cache answers only the caller who asked the very same thing with the same right
to it, and keeps only replies that earned `ok` (issue 29, item 1), against servers written for
these tests (`tests/hostile_server.py`), not nbllm's own loopback server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig
from tests.hostile_server import Reply, chat_events, hostile

SSE = "text/event-stream"
KEY_A = "NBLLM-CACHE-KEY-A-5d2c90e1f7"
KEY_B = "NBLLM-CACHE-KEY-B-8a61b4c3e2"


def register(name: str, url: str, **fields: Any) -> str:
    nbllm.get_store().add_provider(
        ProviderConfig(name=name, url=url, models=["m"], retry={"max_retries": 0}, **fields), replace=True
    )
    return f"{name}/m"


def ask(model: str) -> str:
    return nbllm.chat("What is 2+2?", model, temperature=0).text


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Any]:
    active = nbllm.response_cache(tmp_path / "cache.sqlite").activate()
    yield active
    active.deactivate()


def test_two_servers_on_different_ports_do_not_share_answers(cache: Any) -> None:
    with (
        hostile(lambda *_: (200, SSE, chat_events("from A"))) as a,
        hostile(lambda *_: (200, SSE, chat_events("from B"))) as b,
    ):
        assert ask(register("a", a.base_url, auth="none")) == "from A"
        assert ask(register("b", b.base_url, auth="none")) == "from B"
        assert ask(register("a", a.base_url, auth="none")) == "from A" and cache.hits == 1


def test_a_second_key_does_not_get_the_first_keys_answer(cache: Any, tmp_path: Path) -> None:
    def by_key(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, SSE, chat_events(f"for {headers['authorization'][-2:]}")

    with hostile(by_key) as server:
        assert ask(register("p", server.base_url, key=KEY_A)) == "for f7"
        assert ask(register("p", server.base_url, key=KEY_B)) == "for e2"
        assert ask(register("p", server.base_url, key=KEY_A)) == "for f7"
        assert len(server.seen) == 2 and cache.hits == 1
    stored = (tmp_path / "cache.sqlite").read_bytes()
    assert KEY_A.encode() not in stored and KEY_B.encode() not in stored


def test_providers_that_differ_by_a_tenant_header_do_not_share_answers(cache: Any) -> None:
    def by_tenant(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, SSE, chat_events(f"tenant {headers.get('x-tenant')}")

    with hostile(by_tenant) as server:
        assert ask(register("t", server.base_url, auth="none", headers={"x-tenant": "red"})) == "tenant red"
        assert ask(register("t", server.base_url, auth="none", headers={"x-tenant": "blue"})) == "tenant blue"
        assert len(server.seen) == 2


BROKEN: list[tuple[str, Reply, type[nbllm.NbllmError]]] = [
    (
        "truncated stream",
        (200, SSE, chat_events("half an", done=False, finish=None)),
        nbllm.IncompleteStreamError,
    ),
    ("empty stream", (200, SSE, []), nbllm.NbllmError),
    ("error event", (200, SSE, [json.dumps({"error": {"message": "upstream exploded"}})]), nbllm.StreamError),
    (
        "html login page",
        (200, "text/html", b"<html><body>Please sign in to the proxy</body></html>"),
        nbllm.NbllmError,
    ),
    (
        "200 with an error body",
        (200, "application/json", b'{"error": {"message": "quota"}}'),
        nbllm.NbllmError,
    ),
]


@pytest.mark.parametrize(("what", "broken", "error"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_failure_is_never_kept(what: str, broken: Reply, error: type[nbllm.NbllmError], cache: Any) -> None:
    replies = iter([broken, (200, SSE, chat_events("recovered answer"))])
    with hostile(lambda *_: next(replies, (500, "text/plain", b"only two replies"))) as server:
        model = register("p", server.base_url, auth="none")
        with pytest.raises(error):
            ask(model)
        assert nbllm.history()[-1].status != "ok"
        assert ask(model) == "recovered answer"  # the server was asked again: nothing was kept
        assert ask(model) == "recovered answer" and len(server.seen) == 2 and cache.hits == 1


def test_a_cache_file_locked_by_another_process_is_bypassed_with_a_warning(
    cache: Any, tmp_path: Path
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(tmp_path / 'cache.sqlite')!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with hostile(lambda *_: (200, SSE, chat_events("straight from the server"))) as server:
            model = register("p", server.base_url, auth="none")
            with pytest.warns(UserWarning, match="could not read"):
                assert ask(model) == "straight from the server"
        assert nbllm.history()[-1].status == "ok"
    finally:
        holder.kill()
        holder.wait()
