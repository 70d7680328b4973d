from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from nbllm import ConfigFileError, ModelSpec, ProviderConfig, Store
from nbllm._providers.paths import default_config_path
from nbllm._providers.persist import load, save
from tests.helpers import SENTINEL_KEY, FakeKeyring


def filled_store() -> Store:
    store = Store()
    store.add_provider(
        ProviderConfig(
            name="router",
            url="https://openrouter.ai/api/v1",
            key_env="OPENROUTER_API_KEY",
            headers={"X-Title": "nbllm", "X-Token": "${NBLLM_TEST_TOKEN}"},
            requests_per_second=2,
            models={"openai/gpt-4o": ModelSpec(context_window=128000, capabilities="tools,vision")},
        )
    )
    store.add_provider(
        ProviderConfig(
            name="typed",
            url="https://gw.example.com/v1",
            key=SENTINEL_KEY,
            privacy=True,
            models={"qwen2.5-coder:7b": ModelSpec(context_window=32768)},
        )
    )
    store.set_default("openai/gpt-4o")
    return store


def test_default_path_honours_env(tmp_path: Path) -> None:
    assert default_config_path() == tmp_path / "config" / "providers.yaml"


def test_round_trip_without_plaintext_key() -> None:
    store = filled_store()
    report = save(store)
    text = report.path.read_text()
    assert SENTINEL_KEY not in text
    assert "left out of the file" in str(report) and "NBLLM_TYPED_API_KEY" in str(report)
    assert stat.S_IMODE(report.path.stat().st_mode) == 0o600
    document = yaml.safe_load(text)
    assert document["default"] == "router/openai/gpt-4o"

    fresh = Store()
    loaded = load(fresh)
    assert loaded.providers == ["router", "typed"]
    assert fresh.default == "router/openai/gpt-4o"
    router = fresh.provider("router")
    original = store.provider("router")
    assert router == original  # every setting survives, including header templates
    typed = fresh.provider("typed")
    assert typed.key is None and typed.privacy
    assert typed.models == store.provider("typed").models


def test_literal_key_moves_to_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = FakeKeyring()
    monkeypatch.setattr("nbllm._providers.auth.keyring_module", lambda: ring)
    report = save(filled_store())
    assert SENTINEL_KEY not in report.path.read_text()
    assert ring.entries[("nbllm", "typed")] == SENTINEL_KEY
    assert "moved to the OS keyring" in str(report)
    fresh = Store()
    load(fresh)
    assert fresh.provider("typed").key_keyring == "typed"
    from nbllm._providers.auth import find_key

    key, origin = find_key(fresh.provider("typed"))
    assert key is not None and key.get_secret_value() == SENTINEL_KEY and origin == "from keyring"


def test_explicit_path(tmp_path: Path) -> None:
    target = tmp_path / "team" / "providers.yaml"
    save(filled_store(), target)
    fresh = Store()
    assert load(fresh, str(target)).providers == ["router", "typed"]


def test_load_missing_file_says_how_to_create_it() -> None:
    with pytest.raises(ConfigFileError, match="%llm_provider save"):
        load(Store())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("providers: [", "not valid YAML"),
        ("- a\n- b\n", "'providers:' list"),
        (
            "providers:\n  - name: ok\n    url: http://h/v1\n  - name: bad\n    url: ftp://h\n",
            "provider bad: invalid provider: url",
        ),
        ("providers:\n  - just-a-string\n", "should be a mapping"),
    ],
)
def test_bad_file_loads_nothing(text: str, expected: str) -> None:
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text(text)
    store = Store()
    with pytest.raises(ConfigFileError, match=expected):
        load(store)
    assert store.providers == {}


def test_plaintext_key_in_file_is_loaded_with_a_note() -> None:
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text(
        f"providers:\n  - name: p\n    url: http://h/v1\n    key: {SENTINEL_KEY}\n"
    )
    report = load(Store())
    assert "plaintext key" in str(report)
    assert SENTINEL_KEY not in str(report)


def test_unwritable_target(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigFileError, match="cannot write"):
        save(filled_store(), blocker / "providers.yaml")


def test_literal_secret_header_is_not_saved() -> None:
    store = Store()
    store.add_provider(
        ProviderConfig(
            name="gw",
            url="https://gw.example.com/v1",
            headers={"X-Api-Key": SENTINEL_KEY, "X-Team-Token": "${NBLLM_TEST_TOKEN}", "X-Title": "demo"},
        )
    )
    report = save(store)
    text = report.path.read_text()
    assert SENTINEL_KEY not in text
    assert "${NBLLM_TEST_TOKEN}" in text and "demo" in text
    assert "header X-Api-Key holds a literal secret" in str(report)


def test_mcp_servers_are_saved_beside_the_providers_and_checked_on_load(tmp_path: Path) -> None:
    target = tmp_path / "providers.yaml"
    servers = [
        {"name": "time", "command": ["mcp-server-time"]},
        {"name": "docs", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${T}"}},
    ]
    save(filled_store(), target, mcp_servers=servers)
    report = load(Store(), target)
    assert report.mcp_servers == servers
    assert "2 MCP server(s) (time, docs)" in str(report)
    for bad in ([{"name": "x"}], [{"name": "x", "command": "not a list"}], {"name": "x"}):
        document = yaml.safe_load(target.read_text()) | {"mcp_servers": bad}
        target.write_text(yaml.safe_dump(document))
        store = Store()
        with pytest.raises(ConfigFileError, match=r"mcp_servers|MCP server #1"):
            load(store, target)
        assert not store.providers  # all or nothing: a bad server entry adds no provider
