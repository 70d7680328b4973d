"""Cassettes and the response cache: record real HTTP exchanges through nbllm's own transport
hook, replay them with the server gone, faithfully (events, retries, the live footer marked),
never a secret in a file, and a repeated deterministic request answered with no request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._providers import local
from nbllm._replay import cache as cache_module
from nbllm._replay import tape
from nbllm._replay.cassette import active_cassette
from nbllm._replay.recording import match_key
from nbllm.testing import Fault, ScriptedToolCall, serve

KEY = "sk-cassette-secret-0123456789abcdef"
HEADER_SECRET = "gw-header-secret-98765"


@pytest.fixture(autouse=True)
def no_tapes(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("NBLLM_CASSETTE_MODE", raising=False)
    yield
    tape.use("cassette", None)
    cache_module.turn_off()


def register(url: str, *, name: str = "p", api: str = "chat", **config: Any) -> str:
    config.setdefault("retry", {"backoff_base_s": 0.0})
    models = {"m": {"capabilities": "tools,reasoning", "context_window": 100_000}}
    get_store().add_provider(
        ProviderConfig(name=name, url=url, key=KEY, api=api, models=models, **config), replace=True
    )
    return f"{name}/m"


async def events_of(model: str, prompt: str = "hi", **options: Any) -> list[Any]:
    return [event async for event in nbllm.astream(prompt, model, **options)]


def shown(events: list[Any]) -> list[tuple[str, str]]:
    """What a consumer saw, timings aside."""
    out = []
    for event in events:
        if isinstance(event, nbllm.TokenEvent | nbllm.ReasoningEvent):
            out.append((type(event).__name__, event.text))
        elif isinstance(event, nbllm.StatusEvent):
            out.append(("status", event.message))
        elif isinstance(event, nbllm.DoneEvent):
            out.append(("done", event.result.text))
    return out


# -- record, then replay with the server gone -------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
async def test_a_stream_replays_the_same_events_with_the_server_gone(tmp_path: Path, api: str) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="Paris is the capital.", reasoning="Thinking it over.", api_key=KEY) as server:
        model = register(server.base_url, api=api)
        with nbllm.cassette(path, mode="record"):
            live = await events_of(model, effort="low")
        sent = len(server.requests)
    with nbllm.cassette(path, mode="replay") as cassette:
        replayed = await events_of(model, effort="low")
    assert shown(replayed) == shown(live)
    assert sent == 1 and cassette.played == 1
    result = replayed[-1].result
    assert result.replayed == "cassette" and "replayed from the cassette" in result.footer()
    assert result.reasoning == "Thinking it over."
    assert nbllm.history()[-1].replayed == "cassette"


async def test_a_rate_limit_then_success_replays_its_countdown(tmp_path: Path) -> None:
    path = tmp_path / "retry.yaml"
    with serve(reply="Done.", api_key=KEY) as server:
        model = register(server.base_url)
        server.enqueue(Fault("rate_limit", retry_after="1"))
        with nbllm.cassette(path):
            await events_of(model)
    started = time.monotonic()
    with nbllm.cassette(path, mode="replay"):
        events = await events_of(model)
    waited = time.monotonic() - started
    statuses = [e for e in events if isinstance(e, nbllm.StatusEvent)]
    assert [(s.kind, s.wait_s) for s in statuses] == [("rate_limited", 1.0)]
    assert waited >= 0.9  # the server's Retry-After is honoured again
    record = nbllm.history()[-1]
    assert [a.http_status for a in record.attempts] == [429, 200] and record.retries == 1


async def test_a_tool_loop_replays(tmp_path: Path) -> None:
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return f"Sunny in {city}."

    path = tmp_path / "tools.yaml"
    call = [ScriptedToolCall("get_weather", {"city": "Paris"})]
    with serve(tool_calls=call, tool_reply="It is sunny.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            first = await nbllm.achat("Weather?", model, tools=[get_weather])
    with nbllm.cassette(path, mode="replay"):
        again = await nbllm.achat("Weather?", model, tools=[get_weather])
    assert again.tool_calls == first.tool_calls and again.tool_calls[0].name == "get_weather"


def test_embeddings_replay(tmp_path: Path) -> None:
    path = tmp_path / "embed.yaml"
    with serve(api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            live = nbllm.embed(["a", "b", "c"], model, batch_size=2)
    with nbllm.cassette(path, mode="replay"):
        again = nbllm.embed(["a", "b", "c"], model, batch_size=2)
    assert (again == live).all()
    assert nbllm.history()[-1].replayed == "cassette"


# -- matching, misses and modes ------------------------------------------------------------


async def test_a_request_with_no_recording_fails_in_replay_and_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="Hi.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            await nbllm.achat("the recorded question", model)
        with nbllm.cassette(path, mode="replay"), pytest.raises(nbllm.CassetteMissError) as caught:
            await nbllm.achat("another question", model)
        assert len(server.requests) == 1  # nothing reached the server
    message = str(caught.value)
    assert '-{"messages": [{"content": "the recorded question",' in message
    assert '+{"messages": [{"content": "another question",' in message
    assert "--mode auto" in (caught.value.hint or "")
    record = nbllm.history()[-1]
    assert (record.status, record.error_class) == ("error", "CassetteMissError")


async def test_auto_replays_what_is_recorded_and_records_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "calls.yaml"
    with serve(echo=True, api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path):
            await nbllm.achat("one", model)
        with nbllm.cassette(path) as cassette:
            assert (await nbllm.achat("one", model)).text == "one"
            assert (await nbllm.achat("two", model)).text == "two"
        assert len(server.requests) == 2
        assert (cassette.played, cassette.recorded) == (1, 1)
    assert len(yaml.safe_load(path.read_text())["interactions"]) == 2


async def test_the_environment_forces_the_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="Hi.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path):
            await nbllm.achat("recorded", model)
        monkeypatch.setenv("NBLLM_CASSETTE_MODE", "replay")
        cassette = nbllm.cassette(path, mode="record")
        assert cassette.mode == "replay" and "forced by NBLLM_CASSETTE_MODE" in cassette.describe()
        with cassette, pytest.raises(nbllm.CassetteMissError):
            await nbllm.achat("never recorded", model)
        assert len(server.requests) == 1
    monkeypatch.setenv("NBLLM_CASSETTE_MODE", "sometimes")
    with pytest.raises(nbllm.ConfigError, match="not a mode"):
        nbllm.cassette(path)


def test_matching_ignores_key_order_the_fields_nbllm_adds_and_a_loopback_port() -> None:
    recorded = match_key("POST", "http://127.0.0.1:5000/v1/chat/completions", {"a": 1, "b": 2})
    same = match_key(
        "post", "http://127.0.0.1:6000/v1/chat/completions", {"b": 2, "a": 1, "stream_options": {"x": 1}}
    )
    assert recorded == same
    remote = match_key("POST", "https://api.example.com:443/v1/chat/completions", {})
    assert remote != match_key("POST", "https://api.example.com:8443/v1/chat/completions", {})
    assert match_key("POST", "http://127.0.0.1/v1", {"a": 1}) != match_key(
        "POST", "http://127.0.0.1/v1", {"a": 2}
    )


async def test_recorded_speed_replays_at_the_recorded_pace(tmp_path: Path) -> None:
    path = tmp_path / "paced.yaml"
    with serve(reply="one two three four five six", tokens_per_s=20, api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            await events_of(model)
    last_event_at = yaml.safe_load(path.read_text())["interactions"][0]["response"]["events"][-1]["at"]
    assert last_event_at > 0.2
    started = time.monotonic()
    with nbllm.cassette(path, mode="replay", speed="recorded"):
        await events_of(model)
    paced = time.monotonic() - started
    started = time.monotonic()
    with nbllm.cassette(path, mode="replay"):
        await events_of(model)
    fast = time.monotonic() - started
    assert paced >= last_event_at * 0.9 and fast < paced


# -- the file: readable, and never a secret --------------------------------------------------


async def test_no_secret_reaches_the_cassette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "calls.yaml"
    monkeypatch.setenv("GW_HEADER", HEADER_SECRET)
    with serve(reply=f"The key is {KEY}.", api_key=KEY) as server:
        model = register(
            f"{server.base_url}?api-key={KEY}&tenant=a", headers={"X-Gateway-Key": "${GW_HEADER}"}
        )
        with nbllm.cassette(path, mode="record"):
            await nbllm.achat(f"echo {HEADER_SECRET}", model)
            server.enqueue(Fault("unknown_model"))
            with pytest.raises(nbllm.NbllmError):
                await nbllm.achat("again", model)
    text = path.read_text()
    assert KEY not in text and HEADER_SECRET not in text
    assert "tenant=a" in text and "api-key" not in text and "****" in text
    assert "authorization" not in text.lower()


async def test_the_file_has_one_line_per_event_and_reads_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="a b c", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            await nbllm.achat("hi", model)
    document = yaml.safe_load(path.read_text())
    events = document["interactions"][0]["response"]["events"]
    assert events[-1]["data"] == "data: [DONE]"
    assert all(line.startswith("data: ") for e in events for line in e["data"].splitlines()[-1:])
    assert path.read_text().startswith("# nbllm cassette")


def test_a_damaged_or_missing_cassette_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(nbllm.ConfigFileError, match=r"no cassette at .* to replay"):
        nbllm.cassette(tmp_path / "missing.yaml", mode="replay")
    damaged = tmp_path / "damaged.yaml"
    damaged.write_text("interactions: [{request: 1}]\n")
    with pytest.raises(nbllm.ConfigFileError, match="cannot read the cassette"):
        nbllm.cassette(damaged)
    with pytest.raises(nbllm.ConfigError, match="mode 'often'"):
        nbllm.cassette(damaged, mode="often")


def test_the_hook_is_httpx_own_transport_choice() -> None:
    # TapedClient overrides httpx's private transport choice; fail loudly if httpx drops it.
    assert callable(getattr(httpx.AsyncClient, "_transport_for_url", None))


# -- magics ------------------------------------------------------------------------------------


def test_llm_cassette_magic_and_the_local_model_in_replay(ip: Any, tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("version: 1\ninteractions: []\n")
    with capture_output() as out:
        ip.run_line_magic("llm_cassette", f"{path} --mode replay")
        ip.run_line_magic("llm_cassette", "")
        ip.run_line_magic("llm_provider", "local start")
    assert "Using the cassette" in out.stdout and "mode replay" in out.stdout
    assert "the local model is not started" in out.stdout
    assert local.get_local_model().server is None
    assert get_store().provider("local").url == local.REPLAY_URL
    assert active_cassette() is not None
    with capture_output() as out:
        ip.run_line_magic("llm_cassette", "off")
    assert "Stopped using" in out.stdout and active_cassette() is None


def test_llm_cassette_magic_errors_are_usage_errors(ip: Any, tmp_path: Path) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no cassette at"):
        ip.run_line_magic("llm_cassette", f"{tmp_path / 'none.yaml'} --mode replay")


# -- the response cache --------------------------------------------------------------------------


def test_a_repeated_temperature_zero_call_sends_no_request(tmp_path: Path) -> None:
    with serve(reply="Cached.", api_key=KEY) as server:
        model = register(server.base_url)
        cache = cache_module.turn_on(tmp_path / "cache.sqlite")
        first = nbllm.chat("same question", model, temperature=0)
        second = nbllm.chat("same question", model, temperature=0)
        seeded = [nbllm.chat("seeded", model, seed=7) for _ in range(2)]
        free = [nbllm.chat("free", model) for _ in range(2)]
        assert len(server.requests) == 4  # one each for the two deterministic prompts, two free
    assert second.text == first.text == "Cached." and second.replayed == "cache"
    assert "from the cache" in second.footer() and first.replayed is None
    assert seeded[1].replayed == "cache" and free[1].replayed is None
    assert (cache.hits, cache.misses, cache.skipped) == (2, 2, 2)
    assert KEY not in (tmp_path / "cache.sqlite").read_bytes().decode("latin-1")


def test_the_python_api_caches_inside_its_block_or_for_the_session(tmp_path: Path) -> None:
    with serve(reply="Cached.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.response_cache(tmp_path / "cache.sqlite") as cache:
            assert cache_module.active_cache() is cache
            first = nbllm.chat("same", model, temperature=0)
            second = nbllm.chat("same", model, temperature=0)
        assert cache_module.active_cache() is None
        third = nbllm.chat("same", model, temperature=0)  # outside the block: asked
        assert len(server.requests) == 2
        assert (first.replayed, second.replayed, third.replayed) == (None, "cache", None)
        assert "1 entries" in cache.stats() and "1 hits, 1 misses" in cache.stats()

        session = nbllm.response_cache(tmp_path / "cache.sqlite").activate()
        assert nbllm.chat("same", model, temperature=0).replayed == "cache"
        assert session.clear() == 1
        session.deactivate()
        assert cache_module.active_cache() is None and len(server.requests) == 2


def test_the_python_api_refuses_a_bad_time_to_live(tmp_path: Path) -> None:
    with pytest.raises(nbllm.ConfigError, match="time to live"):
        nbllm.response_cache(tmp_path / "c.sqlite", ttl_s=-1)


def test_the_cache_keeps_only_successes_and_honours_its_time_to_live(tmp_path: Path) -> None:
    with serve(reply="Fresh.", api_key=KEY) as server:
        model = register(server.base_url, retry={"max_retries": 0})
        cache = cache_module.turn_on(tmp_path / "cache.sqlite", ttl_s=60)
        now = [1_000_000.0]
        cache.clock = lambda: now[0]
        server.enqueue(Fault("server_error", status=500))
        with pytest.raises(nbllm.ServerError):
            nbllm.chat("q", model, temperature=0)
        nbllm.chat("q", model, temperature=0)
        nbllm.chat("q", model, temperature=0)
        assert len(server.requests) == 2 and cache.hits == 1
        now[0] += 59  # still fresh
        nbllm.chat("q", model, temperature=0)
        assert len(server.requests) == 2 and cache.hits == 2
        now[0] += 2
        nbllm.chat("q", model, temperature=0)
        assert len(server.requests) == 3  # expired: asked again


def test_force_caches_every_request(tmp_path: Path) -> None:
    with serve(reply="Any.", api_key=KEY) as server:
        model = register(server.base_url)
        cache_module.turn_on(tmp_path / "cache.sqlite", force=True)
        nbllm.chat("free", model)
        nbllm.chat("free", model)
        assert len(server.requests) == 1


def test_llm_cache_magic(ip: Any, tmp_path: Path) -> None:
    with serve(reply="Magic.", api_key=KEY) as server:
        register(server.base_url)
        with capture_output() as out:
            ip.run_line_magic("llm_cache", f"on --path {tmp_path / 'c.sqlite'} --ttl 60")
            nbllm.chat("q", "p/m", temperature=0)
            nbllm.chat("q", "p/m", temperature=0)
            ip.run_line_magic("llm_cache", "stats")
            ip.run_line_magic("llm_cache", "clear")
            ip.run_line_magic("llm_cache", "off")
            ip.run_line_magic("llm_cache", "stats")
    text = out.stdout
    assert "Caching: response cache" in text and "time to live 60 s" in text
    assert "this session 1 hits, 1 misses" in text
    assert "Removed 1 cached replies" in text
    assert "Stopped caching" in text and "The response cache is off" in text


def test_a_cassette_answers_before_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="From the server.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            nbllm.chat("q", model, temperature=0)
        cache = cache_module.turn_on(tmp_path / "cache.sqlite")
        with nbllm.cassette(path, mode="replay"):
            assert nbllm.chat("q", model, temperature=0).replayed == "cassette"
        assert cache.hits == cache.misses == 0 and len(server.requests) == 1


def test_calls_run_on_the_kernels_loop_use_the_hook_too(tmp_path: Path) -> None:
    path = tmp_path / "calls.yaml"
    with serve(reply="Loop.", api_key=KEY) as server:
        model = register(server.base_url)
        with nbllm.cassette(path, mode="record"):
            asyncio.run(nbllm.achat("q", model))
    with nbllm.cassette(path, mode="replay"):
        assert asyncio.run(nbllm.achat("q", model)).text == "Loop."


def test_a_chat_cell_replays_with_its_footer_marked(
    ip: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ip.magics_manager.registry["ChatMagics"], "display_mode", "terminal")
    path = tmp_path / "cell.yaml"
    with serve(reply="Cell reply.", api_key=KEY) as server:
        register(server.base_url)
        with nbllm.cassette(path, mode="record"), capture_output():
            ip.run_cell_magic("chat", "p/m --new -t 0", "hi")
    with nbllm.cassette(path, mode="replay"), capture_output() as out:
        ip.run_cell_magic("chat", "p/m --new -t 0", "hi")
    assert "Cell reply." in out.stdout and "replayed from the cassette" in out.stdout
