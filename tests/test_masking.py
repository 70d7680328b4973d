"""Secrets are masked by value, from one registry, at token boundaries (issue 29, item 3):
plain header values are not secrets and never corrupt a reply; real secrets a server echoes
back (plainly, JSON-escaped, URL-encoded, shortened) never show. Against servers written for
these tests (`tests/hostile_server.py`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbllm
from nbllm import ProviderConfig
from nbllm._providers.secret_registry import provider_secrets
from nbllm._providers.secret_text import MASK, mask_values
from tests.hostile_server import Reply, chat_events, hostile

KEY = "sk-hostile-1f2e3d4c5b6a7980"
TENANT = "tenant-5e6f7a8b9c0d"
SSE = "text/event-stream"


@pytest.fixture(params=["cassette", "cache"])
def tape(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "cassette":
        active = nbllm.cassette(tmp_path / "calls.yaml", mode="record").activate()
    else:
        active = nbllm.response_cache(tmp_path / "cache.sqlite").activate()
    yield active
    active.deactivate()


def test_plain_header_values_never_corrupt_a_recorded_reply(tape: Any) -> None:
    reply = "The final answer is true, and the data is final."
    with hostile(lambda *_: (200, SSE, chat_events(reply))) as server:
        headers = {"X-Title": "final", "Helicone-Cache-Enabled": "true", "X-Data": "data"}
        nbllm.get_store().add_provider(
            ProviderConfig(name="h", url=server.base_url, key=KEY, headers=headers, models=["m"])
        )
        assert nbllm.chat("q", "h/m", temperature=0).text == reply
        assert nbllm.chat("q", "h/m", temperature=0).text == reply  # from the cache, for the cache
    assert nbllm.history()[-1].status == "ok"


ECHOES: list[tuple[str, Reply, type[nbllm.NbllmError]]] = [
    (
        "401 body",
        (401, "application/json", json.dumps({"error": {"message": f"bad key {KEY}"}}).encode()),
        nbllm.AuthenticationError,
    ),
    (
        "401 json-escaped",
        (
            401,
            "application/json",
            ('{"error": {"message": "bad key ' + KEY.replace("-", "-") + '\\/x"}}').encode(),
        ),
        nbllm.AuthenticationError,
    ),
    (
        "401 shortened",
        (401, "text/plain", f"key {KEY[:8]}... is not valid".encode()),
        nbllm.AuthenticationError,
    ),
    (
        "401 url-encoded",
        (401, "text/plain", f"GET /v1?key={quote(KEY)} refused".encode()),
        nbllm.AuthenticationError,
    ),
    (
        "tenant header in a 403",
        (403, "text/plain", f"tenant {TENANT} has no access".encode()),
        nbllm.PermissionDeniedError,
    ),
    (
        "mid-stream error event",
        (200, SSE, [json.dumps({"error": {"message": f"key {KEY} revoked"}})]),
        nbllm.StreamError,
    ),
    (
        "200 error body",
        (200, "application/json", json.dumps({"error": f"quota for {KEY}"}).encode()),
        nbllm.NbllmError,
    ),
]


@pytest.mark.parametrize(("what", "reply", "error"), ECHOES, ids=[e[0] for e in ECHOES])
def test_a_secret_a_server_echoes_back_never_shows(
    what: str, reply: Reply, error: type[nbllm.NbllmError], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLLM_TEST_TENANT", TENANT)
    with hostile(lambda *_: reply) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(
                name="h",
                url=server.base_url,
                key=KEY,
                headers={"X-Tenant": "${NBLLM_TEST_TENANT}"},
                models=["m"],
                retry={"max_retries": 0},
            )
        )
        with pytest.raises(error) as caught:
            nbllm.chat("q", "h/m")
        assert server.seen[-1].headers["x-tenant"] == TENANT  # the secret was really sent
    upstream = getattr(caught.value, "upstream_message", None) or ""
    shown = f"{caught.value}\n{upstream}"
    record = nbllm.history()[-1]
    for surface in (shown, str(record), repr(caught.value.__dict__)):
        assert KEY not in surface and TENANT not in surface and KEY[:8] + "..." not in surface
        assert quote(KEY) not in surface


def test_the_registry_knows_keys_var_headers_credential_headers_proxies_and_query_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NBLLM_TEST_ORG", "org-0a1b2c3d4e5f")
    config = ProviderConfig(
        name="r",
        url="https://gw.example.com/v1?api-key=query-secret-123456&version=2",
        key=KEY,
        headers={"X-Org": "${NBLLM_TEST_ORG}", "X-Api-Key": "literal-secret-9876", "X-Title": "notebook"},
        proxy="http://alice:proxy-pass-4321@proxy.example:3128",
        models=["m"],
    )
    secrets = provider_secrets(config)
    assert {
        KEY,
        "org-0a1b2c3d4e5f",
        "literal-secret-9876",
        "proxy-pass-4321",
        "query-secret-123456",
    } <= secrets
    assert "notebook" not in secrets and "2" not in secrets


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("the final answer is finally final", "finally-not-a-secret", "the final answer is finally final"),
        ("seed=12345678 and 123456789", "12345678", f"seed={MASK} and 123456789"),
        ('{"n": 1234, "ok": true}', "1234", '{"n": 1234, "ok": true}'),  # too short to mask: nothing
        (f"Bearer {KEY}", KEY, f"Bearer {MASK}"),
    ],
)
def test_masking_is_by_whole_value(text: str, secret: str, expected: str) -> None:
    assert mask_values(text, [secret]) == expected


@given(
    st.text(max_size=80), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=24)
)
def test_masked_text_never_holds_the_secret_and_text_without_it_is_untouched(text: str, secret: str) -> None:
    """The masker, fuzzed: the secret never survives where it stood whole, and a text that does
    not contain it comes back exactly as it was (no corruption of words or JSON)."""
    if secret not in text:
        assert mask_values(text, [secret]) == text
    padded = f"{text} {secret} {text}"
    assert f" {secret} " not in mask_values(padded, [secret])


QUERY_SECRET = "query-secret-6d5c4b3a29"


@pytest.mark.parametrize("tape_kind", ["cassette", "cache"])
def test_query_credentials_never_reach_a_cassette_or_the_cache(tape_kind: str, tmp_path: Path) -> None:
    """Issue 29, item 4: also when the server echoes the request's path back."""

    def echo_path(path: str, headers: dict[str, str], body: Any) -> Reply:
        return 200, SSE, chat_events(f"you asked {path}")

    with hostile(echo_path) as server:
        nbllm.get_store().add_provider(
            ProviderConfig(
                name="g", url=f"{server.base_url}?api-key={QUERY_SECRET}", auth="none", models=["m"]
            )
        )
        if tape_kind == "cassette":
            active: Any = nbllm.cassette(tmp_path / "q.yaml", mode="record").activate()
            stored = tmp_path / "q.yaml"
        else:
            active = nbllm.response_cache(tmp_path / "q.sqlite").activate()
            stored = tmp_path / "q.sqlite"
        try:
            nbllm.chat("q", "g/m", temperature=0)
        finally:
            active.deactivate()
        assert server.seen[-1].path.endswith(QUERY_SECRET)  # it was sent, on the wire only
    assert QUERY_SECRET.encode() not in stored.read_bytes()
