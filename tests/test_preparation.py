"""One preparation for every entry point: what a model is not flagged for is refused before
anything is sent, in the same words, whether the call comes from `nbllm.chat`, `achat`,
`astream`, a `%%chat` cell, ``--compare``, `nbllm.map` or ``%%chat --map``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest

import nbllm
from nbllm._calls.preparation import check_tool_choice, needs
from nbllm._calls.request import ChatRequest
from nbllm.testing import LoopbackServer, serve
from tests.helpers import failed_cell

PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def lookup(city: str) -> str:
    """Look a city up."""
    return city


class Label(pydantic.BaseModel):
    label: str


class Png:
    """Anything that renders as a PNG is an image in a cell's prompt."""

    def _repr_png_(self) -> bytes:
        import base64

        return base64.b64decode(PIXEL.split(",", 1)[1])


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve("plain text") as running:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="p", url=running.base_url, auth="none", models=["m", "n"])
        )
        yield running


def posts(server: LoopbackServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST")


API_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("tool calling", {"tools": [lookup]}, "hi"),
    ("JSON mode", {"json": True}, "hi"),
    ("a JSON schema", {"json_schema": {"name": "x", "schema": {"type": "object"}}}, "hi"),
    ("reasoning", {"effort": "low"}, "hi"),
    (
        "images",
        {},
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "?"},
                    {"type": "image_url", "image_url": {"url": PIXEL}},
                ],
            }
        ],
    ),
]


def _achat(prompt: Any, **options: Any) -> Any:
    return asyncio.run(nbllm.achat(prompt, "p/m", **options))


def _astream(prompt: Any, **options: Any) -> Any:
    return nbllm.astream(prompt, "p/m", **options)  # refused when called, before the first event


ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "chat": lambda prompt, **options: nbllm.chat(prompt, "p/m", **options),
    "achat": _achat,
    "astream": _astream,
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("what", "options", "prompt"), API_CASES, ids=[c[0] for c in API_CASES])
def test_the_python_api_refuses_what_the_model_is_not_flagged_for(
    entry: str, what: str, options: dict[str, Any], prompt: Any, server: LoopbackServer
) -> None:
    with pytest.raises(nbllm.CapabilityError, match=f"p/m is not flagged for {what}.*nothing was sent"):
        ENTRY_POINTS[entry](prompt, **options)
    assert posts(server) == 0


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("p/m --tools lookup", "tool calling"),
        ("p/m --json", "JSON mode"),
        ("p/m --effort low", "reasoning"),
        ("--compare p/m,p/n --json", "JSON mode"),
    ],
)
def test_a_cell_refuses_the_same_in_the_same_words(
    line: str, what: str, ip: Any, server: LoopbackServer
) -> None:
    ip.user_ns["lookup"] = lookup
    assert re.search(f"p/m is not flagged for {what}.*nothing was sent", failed_cell(ip, line, "hi"))
    assert posts(server) == 0


def test_a_cell_with_an_image_needs_the_vision_flag(ip: Any, server: LoopbackServer) -> None:
    ip.user_ns["picture"] = Png()
    assert "p/m is not flagged for images" in failed_cell(ip, "p/m", "What is in {picture}?")
    nbllm.get_store().set_model("p", "m", nbllm.ModelSpec(capabilities="vision"))
    ip.run_cell_magic("chat", "p/m", "What is in {picture}?")
    sent = [r for r in server.requests if r.method == "POST"][-1].body
    assert sent["messages"][-1]["content"][1]["type"] == "image_url"


def test_a_fallback_route_is_checked_too(server: LoopbackServer) -> None:
    nbllm.get_store().set_model("p", "m", nbllm.ModelSpec(capabilities="json"))
    with pytest.raises(nbllm.CapabilityError, match="p/n is not flagged for JSON mode"):
        nbllm.chat("hi", "p/m", json=True, fallback="p/n")
    assert posts(server) == 0


def test_a_batch_run_refuses_before_its_first_row(ip: Any, server: LoopbackServer) -> None:
    rows = [{"text": "a"}, {"text": "b"}]
    with pytest.raises(nbllm.CapabilityError, match="p/m is not flagged for reasoning"):
        nbllm.map("Say {text}", rows, "p/m", effort="low", checkpoint=False, progress=False)
    with pytest.raises(nbllm.PromptError, match="temperature should be between 0 and 2"):
        nbllm.map("Say {text}", rows, "p/m", temperature=7, checkpoint=False, progress=False)
    ip.user_ns["rows"] = rows
    refused = failed_cell(ip, "p/m --map rows --effort low --checkpoint none", "Say {text}")
    assert "p/m is not flagged for reasoning" in refused
    assert posts(server) == 0


def test_once_flagged_the_same_calls_go_out(server: LoopbackServer) -> None:
    """The refusals above come from the flags, not from the options themselves."""
    nbllm.get_store().set_model("p", "m", nbllm.ModelSpec(capabilities="tools,reasoning"))
    assert nbllm.chat("hi", "p/m", tools=[lookup], effort="low").text == "plain text"
    assert posts(server) == 1


def test_a_schema_needs_no_flag_but_not_json_beside_it(server: LoopbackServer) -> None:
    with pytest.raises(nbllm.PromptError, match="not both"):
        nbllm.chat("hi", "p/m", schema=Label, json=True)
    assert posts(server) == 0


@pytest.mark.parametrize(
    ("choice", "names", "message"),
    [
        ("lookup", [], "needs tools, and none were given"),
        ("required", [], "needs tools"),
        ("other", ["lookup"], "is none of the tools given (lookup)"),
    ],
)
def test_one_tool_choice_rule(choice: str, names: list[str], message: str) -> None:
    with pytest.raises(nbllm.ToolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_tool_choice(choice, names)


@pytest.mark.parametrize(
    ("choice", "names"), [(None, []), ("auto", []), ("none", []), ("lookup", ["lookup"])]
)
def test_tool_choices_that_go(choice: str | None, names: list[str]) -> None:
    check_tool_choice(choice, names)


def test_needs_are_read_from_the_request_itself() -> None:
    plain = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    assert needs(plain) == []
    image = ChatRequest(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PIXEL}}]}],
        json_mode=True,
    )
    assert [flag for flag, _ in needs(image)] == ["json", "vision"]


def test_a_typed_two_round_call_sums_the_same_through_the_api_and_a_cell(ip: Any) -> None:
    """One typed-output loop and one way to sum rounds: the same bad-then-good replies (with
    thinking, usage and a price) give the same totals from nbllm.chat and %%chat --schema."""

    def replies() -> Iterator[str]:
        while True:
            yield '{"label": 5}'
            yield '{"label": "ham"}'

    script = replies()
    with serve(lambda body: next(script), reasoning="Let me think.") as running:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="t",
                url=running.base_url,
                auth="none",
                models={"m": {"caps": "reasoning,json", "price": "2,8"}},
            )
        )
        from_api = nbllm.chat("Classify: hi", "t/m", schema=Label)
        ip.user_ns["Label"] = Label
        ip.run_cell_magic("chat", "t/m --new --schema Label -o typed", "Classify: hi")
        from_cell = nbllm.last()
    assert from_api.parsed == Label(label="ham") and ip.user_ns["typed"] == Label(label="ham")
    assert from_cell is not None and len(running.requests) == 4

    def totals(result: nbllm.ChatResult) -> tuple[Any, ...]:
        u = result.usage
        return (
            u.prompt_tokens,
            u.completion_tokens,
            u.reasoning_tokens,
            u.estimated,
            result.reasoning,
            result.retries,
            result.fallbacks,
            result.cost,
            result.status,
            result.thinking_s is not None,
        )

    assert totals(from_api) == totals(from_cell)
    assert (
        from_api.usage.reasoning_tokens > 0
        and from_api.cost
        and from_api.reasoning.count("Let me think") == 2
    )
