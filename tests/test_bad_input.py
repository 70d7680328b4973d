"""Bad input from the user (API arguments, magic lines, YAML, config files) gets a clear nbllm
error (a plain UsageError in magics) before anything is sent, loses nothing, and shows no key."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm._providers.paths import default_config_path
from nbllm._providers.persist import load, save
from nbllm.testing import LoopbackServer, ScriptedToolCall, serve
from tests.helpers import SENTINEL_KEY


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve('{"city": "Paris"}', api_key=SENTINEL_KEY, models=["m"]) as srv:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="p", url=srv.base_url, key=SENTINEL_KEY, models=["m"])
        )
        yield srv


def chat_requests(server: LoopbackServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"temperature": "x"}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": 7}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"seed": "x"}, "seed"),
        ({"stream": "no"}, "stream"),
        ({"stop": [1]}, "stop"),
        ({"json": "yes"}, "json"),
        ({"tool_choice": 3}, "tool_choice"),
        ({"tool_choice": "lookup"}, "tool_choice"),
        ({"model": 123}, "model"),
        ({"fallback": 123}, "fallback"),
        ({"system": 5}, "system"),
        ({"tools": "lookup"}, "tools"),
        ({"max_token": 5}, "did you mean 'max_tokens'"),
    ],
)
def test_bad_api_options_are_named_and_nothing_is_sent(
    server: LoopbackServer, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(nbllm.PromptError, match=named):
        nbllm.chat("hi", **options)
    assert chat_requests(server) == []


@pytest.mark.parametrize("prompt", ["", "   ", [], 42])
def test_an_empty_or_odd_prompt_is_refused(server: LoopbackServer, prompt: Any) -> None:
    with pytest.raises(nbllm.PromptError):
        nbllm.chat(prompt)
    assert chat_requests(server) == []


def test_python_functions_are_tools_and_the_schema_helper_is_public() -> None:
    def lookup(city: str, days: int = 1) -> str:
        """Weather for a city.

        :param city: the city's name
        """
        return "sunny"

    schema = nbllm.tool_schema(lookup)
    parameters = schema["function"]["parameters"]
    assert schema["function"]["name"] == "lookup" and parameters["required"] == ["city"]
    assert parameters["properties"]["city"]["description"] == "the city's name"

    with serve(tool_calls=[ScriptedToolCall("lookup", {"city": "Paris"})], models=["m"]) as srv:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="t", url=srv.base_url, auth="none", models={"m": {"caps": "tools"}})
        )
        result = nbllm.chat("weather?", tools=[lookup], tool_choice="lookup")
        sent = srv.requests[-1].body
    assert sent["tools"] == [schema] and sent["tool_choice"]["function"]["name"] == "lookup"
    assert [c.name for c in result.tool_calls] == ["lookup"]
    assert result.tool_calls[0].parsed_arguments() == {"city": "Paris"}


def test_json_mode_fills_parsed(server: LoopbackServer) -> None:
    nbllm.get_store().set_model("p", "m", nbllm.ModelSpec(capabilities="json"))
    result = nbllm.chat("a city as JSON", json=True)
    assert result.parsed == {"city": "Paris"} and server.requests[-1].body["response_format"]


def test_json_mode_with_text_that_is_not_json_is_an_error_that_keeps_the_text() -> None:
    with serve("Sure! {oops", models=["m"]) as srv:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="j", url=srv.base_url, auth="none", models={"m": {"caps": "json"}})
        )
        with pytest.raises(nbllm.ProtocolError, match="not valid JSON") as caught:
            nbllm.chat("json please", json=True)
    assert caught.value.result.text == "Sure! {oops" and nbllm.history()[-1].status == "error"


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt, as in a kernel. A process started in the background
    (CI launched with ``&``) inherits SIGINT ignored, and then interrupt_main does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_an_interrupt_in_chat_keeps_the_partial_reply_in_last() -> None:
    """_thread.interrupt_main() is seen while chat() waits, not only after the stream."""
    with serve("one two three four five six seven eight nine ten", tokens_per_s=10, models=["m"]) as srv:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="s", url=srv.base_url, auth="none", models=["m"])
        )
        timer = threading.Timer(0.45, _thread.interrupt_main)
        timer.start()
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            nbllm.chat("count")
        stopped = time.perf_counter() - started
    assert stopped < 0.9  # the stream would take 1 s
    partial = nbllm.last()
    assert partial is not None and partial.status == "cancelled" and partial.text.startswith("one ")
    assert nbllm.history()[-1].status == "cancelled"


# -- magics -------------------------------------------------------------------------------


def test_chat_nan_temperature_is_a_usage_error_before_anything_shows(ip: Any, server: LoopbackServer) -> None:
    with pytest.raises(UsageError, match="temperature should be between 0 and 2"):
        ip.run_cell_magic("chat", "p/m -t nan", "hi")
    assert chat_requests(server) == []


def test_chat_tool_choice_is_sent_and_checked(ip: Any) -> None:
    def lookup(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    ip.user_ns["lookup"] = lookup
    calls = [ScriptedToolCall("lookup", {"city": "Paris"})]
    with serve(tool_calls=calls, tool_reply="It is sunny.", models=["m"]) as srv:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="t", url=srv.base_url, auth="none", models={"m": {"caps": "tools"}})
        )
        with pytest.raises(UsageError, match="is none of the tools given"):
            ip.run_cell_magic("chat", "t/m --tools lookup --tool-choice other", "weather?")
        ip.run_cell_magic("chat", "t/m --tools lookup --tool-choice required", "weather?")
        first, second = [r.body for r in srv.requests if r.method == "POST"]
    assert first["tool_choice"] == "required" and "tool_choice" not in second
    assert nbllm.last().text == "It is sunny."


def test_abbreviated_options_are_not_taken_for_longer_ones(ip: Any) -> None:
    with pytest.raises(UsageError, match="unrecognized arguments: --api-v 2024-10-21"):
        ip.run_line_magic("llm_provider", "add x --url http://127.0.0.1:9/v1 --api-v 2024-10-21")
    assert "x" not in nbllm.get_store().providers


@pytest.mark.parametrize(
    "line",
    [
        f"add x --url http://127.0.0.1:9/v1 --ke={SENTINEL_KEY}",
        f"add x --url http://127.0.0.1:9/v1 --header Authorization=Bearer {SENTINEL_KEY}",
        f"add x --url http://127.0.0.1:9/v1 --model m {SENTINEL_KEY}",
    ],
)
def test_argument_errors_do_not_echo_keys(ip: Any, line: str) -> None:
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("llm_provider", line)
    assert SENTINEL_KEY not in str(caught.value) and "****" in str(caught.value)


def test_yaml_errors_say_where_without_quoting_the_key(ip: Any) -> None:
    cell = f"name: y\nurl: http://127.0.0.1:9/v1\nkey: {SENTINEL_KEY}\n  models: [m"
    with pytest.raises(UsageError) as caught:
        ip.run_cell_magic("llm_provider", "", cell)
    assert "line 4" in str(caught.value) and SENTINEL_KEY not in str(caught.value)


def test_billion_laughs_is_refused_quickly_and_small(ip: Any) -> None:
    cell = (
        "name: z\nurl: http://127.0.0.1:9/v1\n"
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nmodels: [*d]\n"
    )
    with pytest.raises(UsageError, match="aliases") as caught:
        ip.run_cell_magic("llm_provider", "", cell)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("add q --url http://127.0.0.1:99999/v1", "port outside 0-65535"),
        ("add q --url http://127.0.0.1:9/v1 --header X-Note=café", "non-ASCII"),
        ("add q --url http://127.0.0.1:9/v1 --rps 1e-300", "greater than or equal to 0.001"),
    ],
)
def test_registration_refuses_what_would_fail_later(ip: Any, line: str, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        ip.run_line_magic("llm_provider", line)
    assert "q" not in nbllm.get_store().providers


def test_extra_body_with_nan_is_refused() -> None:
    with pytest.raises(nbllm.ConfigError, match="NaN"):
        nbllm.ProviderConfig(name="q", url="http://127.0.0.1:9/v1", extra_body={"t": float("nan")})


# -- providers.yaml -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("providers: []\n".encode("utf-16"), "not UTF-8"),
        (("providers: " + "[" * 3000 + "]" * 3000).encode(), "nested more than"),
        (("default: " + "9" * 4400).encode(), "cannot read"),
        (b'version: 1\nproviders:\n  - &p {name: a, url: "http://h/v1"}\n  - *p\n', "aliases"),
    ],
)
def test_load_ext_with_a_bad_providers_file_says_why_and_still_registers(
    ip: Any, content: bytes, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    from nbllm.magics import load_ipython_extension

    load_ipython_extension(ip)
    err = capsys.readouterr().err
    assert "saved providers were not loaded" in err and said in err and "Traceback" not in err
    assert nbllm.get_store().providers == {}
    assert "chat" in ip.magics_manager.magics["cell"]


def test_a_save_after_a_failed_load_keeps_the_unreadable_file(tmp_path: Path) -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("providers: [unclosed\n")
    with pytest.raises(nbllm.ConfigFileError):
        load(nbllm.get_store())
    nbllm.get_store().add_provider(nbllm.ProviderConfig(name="a", url="http://127.0.0.1:9/v1", models=["m"]))
    report = save(nbllm.get_store())
    kept = list(path.parent.glob("providers.yaml.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text() == "providers: [unclosed\n"
    assert any("kept as" in note for note in report.notes)
    assert load(nbllm.get_store()).providers == ["a"]


def test_a_file_from_another_version_loads_with_a_note() -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("version: 99\nproviders:\n  - {name: a, url: 'http://127.0.0.1:9/v1', models: [m]}\n")
    report = load(nbllm.get_store())
    assert report.providers == ["a"] and any("version 99" in note for note in report.notes)


def test_a_yaml_key_that_is_not_text_is_a_usage_error(ip: Any) -> None:
    """Found by the fuzz suite: `0:` as a key reached ProviderConfig(**data) as a TypeError."""
    with pytest.raises(UsageError, match="0 is not a field name"):
        ip.run_cell_magic("llm_provider", "", "name: p\n0: x\nurl: http://127.0.0.1:9/v1\n")
