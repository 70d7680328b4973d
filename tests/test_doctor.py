"""`%llm_provider test` and `discover` through a real shell against the loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import nbllm
from nbllm._calls.doctor import diagnose
from nbllm.testing import LoopbackServer, serve
from tests.helpers import SENTINEL_KEY


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve("OK", api_key=SENTINEL_KEY, models=["test-model", "other-model"]) as srv:
        yield srv


def run(ip: Any, line: str) -> str:
    with capture_output() as out:
        ip.run_line_magic("llm_provider", line)
    return out.stdout + "".join(o.data["text/plain"] for o in out.outputs)


def test_doctor_healthy_endpoint(ip: Any, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_KEYVAR", SENTINEL_KEY)
    run(ip, f"add t --url {server.base_url} --key-env NBLLM_TEST_KEYVAR --model test-model")
    text = run(ip, "test t/test-model")
    assert "\N{CHECK MARK} url: posts to" in text
    assert "\N{CHECK MARK} key: from $NBLLM_TEST_KEYVAR" in text
    assert "\N{CHECK MARK} models: 2 listed: test-model, other-model" in text
    assert "\N{CHECK MARK} chat: one-token streaming call answered; first token after" in text
    assert "\N{CHECK MARK} usage: reported" in text
    assert server.requests[-1].body["max_tokens"] == 1
    assert SENTINEL_KEY not in text


def test_doctor_finds_wrong_key_and_url(ip: Any, server: LoopbackServer) -> None:
    run(ip, f"add t --url {server.base_url.removesuffix('/v1')} --key NBLLM-WRONG-KEY-1 --model test-model")
    text = run(ip, "test t")
    assert "! url: posts to" in text and "/v1" in text
    assert "\N{BALLOT X} chat:" in text
    assert "NBLLM-WRONG-KEY-1" not in text


def test_doctor_unknown_model_and_no_usage(ip: Any, server: LoopbackServer) -> None:
    server.usage = False
    run(ip, f"add t --url {server.base_url} --key-env NBLLM_TEST_K2 --model missing-one")
    text = run(ip, "test t")
    assert "\N{BALLOT X} key: missing" in text
    run(ip, f"add t --url {server.base_url} --key {SENTINEL_KEY} --model missing-one")
    text = run(ip, "test t")
    assert "! model id: 'missing-one' is not among the listed ids" in text
    assert "! usage: the server sent no token usage" in text


def test_discover(ip: Any, server: LoopbackServer) -> None:
    run(ip, f"add t --url {server.base_url} --key {SENTINEL_KEY} --model test-model")
    text = run(ip, "discover t")
    assert "test-model    (registered)" in text
    assert "other-model    (%llm_provider model t add other-model)" in text
    assert "other-model" not in nbllm.get_store().provider("t").models  # adding stays explicit


def test_discover_errors_are_usage_errors(ip: Any, server: LoopbackServer) -> None:
    run(ip, f"add t --url {server.base_url} --key wrong")
    with pytest.raises(UsageError, match="Incorrect API key") as info:
        ip.run_line_magic("llm_provider", "discover t")
    assert type(info.value) is UsageError
    run(ip, "add dead --url http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="server is running"):
        ip.run_line_magic("llm_provider", "discover dead")


@pytest.mark.parametrize(("finish", "verdict"), [("length", "ok"), ("stop", "fail")])
async def test_a_one_token_probe_whose_token_holds_no_text(finish: str, verdict: str) -> None:
    """One token can be part of a multi-byte character, or thinking: no text yet, but an answer."""

    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1}},
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})

    nbllm.get_store().add_provider(nbllm.ProviderConfig(name="p", url="http://h.test/v1", models=["m"]))
    report = await diagnose(nbllm.get_store(), "p/m", transport=httpx.MockTransport(reply))
    checks = {finding.check: finding for finding in report.findings}
    assert checks["chat"].verdict == verdict
    if verdict == "ok":
        assert "held no text" in checks["chat"].detail and checks["usage"].verdict == "ok"
