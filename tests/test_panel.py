"""The panel, driven without a browser: every action through its widgets' values and
`click()`, checked against the store, the history and what the widgets would show."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import pytest
from pydantic import SecretStr

import nbllm
from nbllm._calls.history import AttemptRecord, CallRecord, History
from nbllm._cells.cell import CellRun, ChatOptions, prepare_cell
from nbllm._cells.inflight import get_in_flight
from nbllm._cells.ui_thread import DirectUi
from nbllm._exceptions import StoppedError
from nbllm._panel import Panel
from nbllm._providers.config import ProviderConfig
from nbllm._providers.models import ModelSpec
from nbllm._views.reply import LiveView, TerminalView
from nbllm.testing import serve
from tests.helpers import SENTINEL_KEY, FakeKeyring


@pytest.fixture
def store() -> nbllm.Store:
    store = nbllm.get_store()
    store.add_provider(
        ProviderConfig(
            name="gw",
            url="http://127.0.0.1:9/v1",
            models={"m1": ModelSpec(context_window=8192), "m2": ModelSpec()},
        )
    )
    return store


@pytest.fixture
def panel(store: nbllm.Store) -> Iterator[Panel]:
    opened = Panel()
    yield opened
    opened.close()


def walk(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def front_end_state(panel: Panel) -> str:
    """Everything the panel's widgets would send to a browser, as one string."""
    return json.dumps([w.get_state() for w in walk(panel)], default=str)


def last_message(panel: Panel) -> tuple[str, bool]:
    return panel.messages[-1]


# -- providers -------------------------------------------------------------------


def test_the_panel_shows_the_store_and_follows_magics(panel: Panel, ip: Any) -> None:
    tab = panel.providers
    assert list(tab.provider_list.options) == ["gw"] and tab.provider_list.value == "gw"
    assert [row.model for row in tab.model_rows.children] == ["m1", "m2"]
    assert tab.row("m1").context.value == "8,192" and tab.row("m2").context.value == ""
    ip.run_line_magic("llm_provider", "add other --url http://127.0.0.1:9/v1 --model x=1000")
    assert list(tab.provider_list.options) == ["gw", "other"]
    ip.run_line_magic("llm_provider", "model gw set m1 --context 4096 --caps tools")
    assert tab.row("m1").context.value == "4,096" and tab.row("m1").flags["tools"].value is True
    ip.run_line_magic("llm_provider", "default other/x")
    assert panel.default_model.value == "other/x"


def test_add_and_remove_a_provider(panel: Panel, store: nbllm.Store) -> None:
    tab = panel.providers
    tab.new_name.value, tab.new_url.value = "vllm", "http://localhost:8000/v1"
    tab.add_button.click()
    assert store.provider("vllm").url == "http://localhost:8000/v1"
    assert tab.provider_list.value == "vllm" and tab.new_name.value == ""
    tab.remove_button.click()  # a destructive button asks first
    assert "vllm" in store.providers and tab.remove_button.description == "Remove provider: sure?"
    tab.remove_button.click()
    assert "vllm" not in store.providers and tab.provider_list.value == "gw"


@pytest.mark.parametrize(
    ("name", "url", "expected"),
    [
        ("bad/name", "http://x/v1", "provider name 'bad/name' is not allowed"),
        ("gw", "http://x/v1", "already registered"),
        ("new", "", "give the new provider a name and a URL"),
        ("new", "ftp://x", "url"),
    ],
)
def test_a_refused_new_provider_leaves_the_store_alone(
    panel: Panel, store: nbllm.Store, name: str, url: str, expected: str
) -> None:
    before = store.providers
    tab = panel.providers
    tab.new_name.value, tab.new_url.value = name, url
    tab.add_button.click()
    text, ok = last_message(panel)
    assert not ok and expected in text
    assert store.providers == before
    assert tab.new_name.value == name  # what was typed is kept for fixing


def test_endpoint_edits_apply_together(panel: Panel, store: nbllm.Store) -> None:
    tab = panel.providers
    tab.url.value = "http://127.0.0.1:8000/v1/"
    tab.headers.value = "HTTP-Referer: https://me.example\nx-api-key: ${NBLLM_TEST_HDR}"
    tab.read_timeout.value = 30.0
    tab.connect_timeout.value = 3.0
    tab.rps.value = "2.5"
    tab.privacy.value = True
    assert tab.reasoning_style.value == "by host" and tab.trust.value == "default"  # not None: blank
    tab.reasoning_style.value = "template"
    assert tab.api.value == "chat"
    tab.api.value = "auto"
    tab.apply_button.click()
    config = store.provider("gw")
    assert config.reasoning_style == "template" and config.api == "auto"
    assert config.url == "http://127.0.0.1:8000/v1"
    assert config.header_templates() == {
        "HTTP-Referer": "https://me.example",
        "x-api-key": "${NBLLM_TEST_HDR}",
    }
    assert (config.read_timeout_s, config.connect_timeout_s, config.requests_per_second) == (30.0, 3.0, 2.5)
    assert config.privacy and "\N{SHIELD}" in tab.title.value
    assert last_message(panel) == ("Saved 'gw'; the next %%chat uses it", True)


def test_network_settings_show_and_apply_and_a_proxy_password_never_shows(
    panel: Panel, store: nbllm.Store, tmp_path: Any
) -> None:
    tab = panel.providers
    bundle = tmp_path / "corp.pem"
    bundle.write_text("not checked until a call")
    store.update_provider("gw", proxy=SecretStr("http://me:proxy-secret-pw@proxy.corp:3128"))
    assert tab.provider_list.value == "gw"  # the panel followed the store's change
    assert tab.proxy.value == "http://****@proxy.corp:3128"
    assert "proxy-secret-pw" not in front_end_state(panel)
    tab.trust.value = "certifi"
    tab.ca_bundle.value = str(bundle)
    tab.client_cert.value = "/etc/ssl/me.pem"
    tab.apply_button.click()
    config = store.provider("gw")
    assert (config.trust, config.ca_bundle, config.client_cert) == ("certifi", str(bundle), "/etc/ssl/me.pem")
    assert config.proxy is not None and config.proxy.get_secret_value().endswith(
        "proxy-secret-pw@proxy.corp:3128"
    )
    tab.proxy.value = "http://other.corp:8080"
    tab.apply_button.click()
    assert store.provider("gw").proxy_url() == "http://other.corp:8080"
    tab.url.value = "https://gw.example.com/v1"
    tab.insecure.value = True  # not this machine: refused, and nothing changes
    tab.apply_button.click()
    assert not store.provider("gw").insecure and store.provider("gw").url == "http://127.0.0.1:9/v1"
    assert "refused for hosts other than this machine" in last_message(panel)[0]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("url", "https://res.openai.azure.com/openai/deployments", "needs an api_version"),
        ("auth", "basic", "unknown auth style 'basic'"),
        ("rps", "fast", "requests per second should be a number"),
        ("read_timeout", 0.0, "read_timeout_s"),
        ("headers", "no colon here", "header line 1 should be 'Name: value'"),
    ],
)
def test_a_refused_endpoint_edit_changes_nothing(
    panel: Panel, store: nbllm.Store, field: str, value: Any, expected: str
) -> None:
    before = store.provider("gw")
    getattr(panel.providers, field).value = value
    panel.providers.apply_button.click()
    text, ok = last_message(panel)
    assert not ok and expected in text
    assert store.provider("gw") == before


def test_a_literal_secret_header_is_masked_and_kept(panel: Panel, store: nbllm.Store) -> None:
    store.update_provider("gw", headers={"Authorization": SecretStr(f"Bearer {SENTINEL_KEY}")})
    tab = panel.providers
    assert tab.headers.value == "Authorization: ********"
    tab.headers.value += "\nHTTP-Referer: https://me.example"
    tab.apply_button.click()
    headers = store.provider("gw").header_templates()
    assert headers == {"Authorization": f"Bearer {SENTINEL_KEY}", "HTTP-Referer": "https://me.example"}
    assert SENTINEL_KEY not in front_end_state(panel)


# -- keys ------------------------------------------------------------------------


def test_a_typed_key_goes_to_the_store_and_never_to_the_front_end(panel: Panel, store: nbllm.Store) -> None:
    tab = panel.providers
    assert tab.key_state.value == "missing"
    assert tab.key.trait_metadata("value", "echo_update") is False
    tab.key.value = SENTINEL_KEY  # what the browser sends when Enter is pressed
    assert store.provider("gw").key is not None
    assert store.provider("gw").key.get_secret_value() == SENTINEL_KEY
    assert tab.key.value == "" and tab.key_state.value == "set"
    assert SENTINEL_KEY not in front_end_state(panel)
    assert SENTINEL_KEY not in repr(panel) and SENTINEL_KEY not in str(panel.messages)
    assert tab.forget_key_button.layout.display == ""
    tab.forget_key_button.click()
    tab.forget_key_button.click()
    assert store.provider("gw").key is None and tab.key_state.value == "missing"
    assert tab.forget_key_button.layout.display == "none"  # nothing left to forget


def test_key_status_names_the_variable(panel: Panel, store: nbllm.Store, monkeypatch: Any) -> None:
    monkeypatch.setenv("NBLLM_TEST_GW_KEY", SENTINEL_KEY)
    store.update_provider("gw", key_env="NBLLM_TEST_GW_KEY")
    assert panel.providers.key_state.value == "from $NBLLM_TEST_GW_KEY"
    assert panel.providers.forget_key_button.layout.display == "none"  # nbllm holds no key to forget


def test_a_key_can_go_to_the_keyring(panel: Panel, store: nbllm.Store, monkeypatch: Any) -> None:
    ring = FakeKeyring()
    monkeypatch.setattr("nbllm._providers.auth.keyring_module", lambda: ring)
    tab = panel.providers
    tab.keyring.value = True
    tab.key.value = SENTINEL_KEY
    config = store.provider("gw")
    assert config.key is None and config.key_keyring == "gw"
    assert list(ring.entries.values()) == [SENTINEL_KEY]
    assert tab.key_state.value == "from keyring" and tab.key.value == ""


# -- models ----------------------------------------------------------------------


def test_capability_checkbox_and_context_window(panel: Panel, store: nbllm.Store) -> None:
    row = panel.providers.row("m2")
    row.flags["tools"].value = True
    row.flags["streaming"].value = False
    row.flags["reasoning"].value = True
    caps = store.provider("gw").models["m2"].capabilities
    assert caps.tools and not caps.streaming and caps.reasoning
    row.context.value = "32,768"
    assert store.provider("gw").models["m2"].context_window == 32768
    row.context.value = ""
    assert store.provider("gw").models["m2"].context_window is None


@pytest.mark.parametrize("typed", ["12k", "-5", "0"])
def test_a_bad_context_window_is_refused_and_reverted(panel: Panel, store: nbllm.Store, typed: str) -> None:
    row = panel.providers.row("m1")
    row.context.value = typed
    text, ok = last_message(panel)
    assert not ok and "positive whole number of tokens" in text
    assert store.provider("gw").models["m1"].context_window == 8192
    assert row.context.value == "8,192"


def test_a_price_is_edited_refused_and_cleared_in_the_row(panel: Panel, store: nbllm.Store) -> None:
    row = panel.providers.row("m1")
    row.price.value = "2.5, 10"
    price = store.provider("gw").models["m1"].price
    assert price is not None and (price.input_per_million, price.output_per_million) == (2.5, 10)
    assert last_message(panel) == ("gw/m1: price $2.5 in, $10 out per million tokens", True)
    row.price.value = "cheap"
    text, ok = last_message(panel)
    assert not ok and "IN,OUT" in text
    assert row.price.value == "2.5,10"  # reverted to what the store holds
    row.price.value = ""
    assert store.provider("gw").models["m1"].price is None


def test_add_and_remove_models(panel: Panel, store: nbllm.Store) -> None:
    tab = panel.providers
    tab.new_model.value = "qwen2.5-coder:7b=32768"
    tab.add_model_button.click()
    assert store.provider("gw").models["qwen2.5-coder:7b"].context_window == 32768
    assert [r.model for r in tab.model_rows.children] == ["m1", "m2", "qwen2.5-coder:7b"]
    tab.new_model.value = "m1"
    tab.add_model_button.click()
    text, ok = last_message(panel)
    assert not ok and "already has model 'm1'" in text
    tab.row("m2").remove_button.click()
    assert "m2" in store.provider("gw").models  # asked, not yet removed
    tab.row("m2").remove_button.click()
    assert list(store.provider("gw").models) == ["m1", "qwen2.5-coder:7b"]


def test_the_default_model_selector(panel: Panel, store: nbllm.Store) -> None:
    assert [label for label, _ in panel.default_model.options] == ["(none)", "gw/m1", "gw/m2"]
    panel.default_model.value = "gw/m2"
    assert store.default == "gw/m2"
    panel.default_model.value = ""
    assert store.default is None


def test_discover_and_test_against_a_real_server(panel: Panel, store: nbllm.Store) -> None:
    with serve(reply="ok", models=("m1", "served-a", "served-b"), api_key=SENTINEL_KEY) as server:
        store.add_provider(
            ProviderConfig(name="loop", url=server.base_url, key=SecretStr(SENTINEL_KEY), models=["m1"])
        )
        tab = panel.providers
        tab.provider_list.value = "loop"
        tab.discover_button.click()
        assert tab.discovered == ["m1", "served-a", "served-b"]
        assert list(tab.discovered_list.options) == ["served-a", "served-b"]
        tab.discovered_list.value = "served-b"
        tab.add_discovered_button.click()
        assert list(store.provider("loop").models) == ["m1", "served-b"]
        assert list(tab.discovered_list.options) == ["served-a"]
        tab.test_button.click()
        assert tab.last_report is not None and tab.last_report.ok
        assert "Endpoint check: loop/m1" in tab.doctor.value
        assert SENTINEL_KEY not in front_end_state(panel)


def test_discover_reports_a_failure(panel: Panel) -> None:
    panel.providers.discover_button.click()  # nothing listens on port 9
    text, ok = last_message(panel)
    assert not ok and text.startswith("Discover failed: GET http://127.0.0.1:9/v1/models failed")


# -- calls -----------------------------------------------------------------------


def test_calls_show_up_with_a_latency_chart(panel: Panel) -> None:
    assert "No calls yet" in panel.calls.table.value
    history = nbllm.get_history()
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    history.add(CallRecord("gw/m1", "gw/m1", "h", now, ttft_s=0.1, latency_s=0.5, completion_tokens=20))
    history.add(CallRecord("gw/m1", "gw/m1", "h", now, ttft_s=0.1, latency_s=0.7, completion_tokens=20))
    history.add(
        CallRecord(
            "gw/m2",
            "gw/m2",
            "h",
            now,
            latency_s=0.2,
            status="error",
            error_class="RateLimitError",
            error_message="gw/m2: HTTP 429: slow down, please",
            attempts=[AttemptRecord("gw/m2", "h", now, 0.2, http_status=429, outcome="RateLimitError")],
        )
    )
    table = panel.calls.table.value
    assert table.count("<tr>") == 4 and "0.70 s" in table
    # Issue 35, item 5: the error in few words (no class, no model), its text in a tooltip.
    assert "title='HTTP 429 \N{MIDDLE DOT} slow down, please'" in table and "RateLimitError" not in table
    assert "<span style='opacity:0.6'>gw/</span>m1" in table and "color:#d32f2f" in table
    assert "gw/m2: 1 call, 1 error" in table
    chart = panel.calls.chart.value
    assert chart.count("<polyline") == 1 and chart.count("nbllm-error") == 1 and "gw/m2" in chart


def test_close_stops_following(store: nbllm.Store) -> None:
    history = History()
    opened = Panel(history=history)
    opened.close()
    store.add_provider(ProviderConfig(name="late", url="http://127.0.0.1:9/v1"))
    assert "late" not in opened.providers.provider_list.options


async def test_stop_ends_a_streaming_call_and_keeps_its_text(panel: Panel, store: nbllm.Store) -> None:
    with serve(reply="word " * 400, tokens_per_s=50) as server:
        store.add_provider(ProviderConfig(name="slow", url=server.base_url, auth="none", models=["m"]))
        prepared = prepare_cell(ChatOptions(model="slow/m"), "Talk", {})
        out = io.StringIO()
        run = CellRun(prepared, TerminalView("slow/m", out=out))
        task = asyncio.ensure_future(run.run(DirectUi()))
        while "word" not in out.getvalue():
            await asyncio.sleep(0.02)
        stops = [w for w in walk(panel.calls.running) if isinstance(w, widgets.Button)]
        assert [b.description for b in stops] == ["Stop"]
        stops[0].click()
        outcome = await asyncio.wait_for(task, 5)
    assert isinstance(outcome.error, StoppedError)
    assert outcome.result.status == "cancelled" and outcome.result.text.startswith("word")
    assert get_in_flight().calls() == [] and "none" in panel.calls.running.children[0].value
    assert nbllm.get_history().records()[-1].status == "cancelled"
    assert "stopped" in panel.calls.table.value  # a stopped call is not shown as an error


async def test_the_stop_button_in_the_cell_ends_the_call_as_the_panel_does(store: nbllm.Store) -> None:
    """Issue 35, item 4: stopping needed the panel, often scrolled away, or an interrupt."""
    from tests.test_render import Recorder

    with serve(reply="word " * 400, tokens_per_s=50) as server:
        store.add_provider(ProviderConfig(name="slow", url=server.base_url, auth="none", models=["m"]))
        prepared = prepare_cell(ChatOptions(model="slow/m"), "Talk", {})
        recorder = Recorder()
        view = LiveView("slow/m", display=recorder)
        task = asyncio.ensure_future(CellRun(prepared, view).run(DirectUi()))
        while not view.transcript.length:
            await asyncio.sleep(0.02)
        assert view.stop_button is not None and view.stop_button.description == "Stop"
        view.stop_button.click()
        outcome = await asyncio.wait_for(task, 5)
    assert isinstance(outcome.error, StoppedError) and "Stop button" in outcome.error.message
    assert outcome.result.status == "cancelled" and outcome.result.text.startswith("word")
    final = recorder.frames[-2][1]["text/markdown"]  # the reply's frame, before the Stop is emptied
    assert "word" in final and "Stop button" in final and view.stop_button is None
    record = nbllm.get_history().records()[-1]
    assert get_in_flight().calls() == [] and record.status == "cancelled"
    # Issue 35, item 5: the footer said "0 tokens" while the history said "~18+52".
    shown = outcome.result.usage
    assert shown.estimated and record.tokens_estimated and shown.completion_tokens > 0
    assert abs(shown.completion_tokens - record.completion_tokens) <= 2  # the same count, give or take a
    assert f"~{shown.completion_tokens} tokens" in final  # token that arrived as it stopped


def test_a_blank_key_is_refused(panel: Panel, store: nbllm.Store) -> None:
    panel.providers.key.value = "   "
    text, ok = last_message(panel)
    assert not ok and "the key is empty" in text
    assert store.provider("gw").key is None and panel.providers.key.value == ""


def test_the_mcp_tab_follows_the_servers_and_tool_calls_are_in_the_calls_tab(panel: Panel, ip: Any) -> None:
    assert panel.tabs.titles == ("Providers", "Calls", "MCP")
    assert "No MCP servers" in panel.mcp.table.value
    ip.run_line_magic("llm_mcp", "add files --trust-read-only -- files-server --root /tmp/<x>")
    try:
        shown = panel.mcp.table.value
        assert "<b>files</b>" in shown and "files-server --root /tmp/&lt;x&gt;" in shown
        assert "not started" in shown and "trusted" in shown
    finally:
        ip.run_line_magic("llm_mcp", "remove files")
    assert "No MCP servers" in panel.mcp.table.value
    now = datetime.now(timezone.utc)
    tool = CallRecord(
        "tool:read_file", "p/m", "kernel", now, latency_s=0.01, kind="tool", approval="approved"
    )
    nbllm.get_history().add(tool)
    assert "tool:read_file" in panel.calls.table.value


def test_the_calls_tab_shows_spending_per_provider_and_the_budget(panel: Panel) -> None:
    now = datetime.now(timezone.utc)
    history = nbllm.get_history()
    history.add(CallRecord("gw/m1", "gw/m1", "h", now, latency_s=0.5, cost=0.25))
    history.add(CallRecord("local/m2", "local/m2", "h", now, latency_s=0.5, cost=0.5))
    assert "Spent this session: 0.75 (gw 0.25, local 0.5)" in panel.calls.spending.value
    nbllm.budget(2.0)
    history.add(CallRecord("gw/m1", "gw/m1", "h", now, latency_s=0.5, cost=0.25))
    assert "Budget 2: spent 1 (gw 0.5, local 0.5), 1 left." in panel.calls.spending.value
