from __future__ import annotations

from typing import Any

import pytest

import nbllm
from nbllm import (
    AmbiguousModelError,
    ConfigError,
    ModelSpec,
    NameResolutionError,
    ProviderConfig,
    ProviderExistsError,
    ProviderNotFoundError,
    Store,
    StoreEvent,
    UnknownModelError,
)


def provider(name: str, *models: str, url: str = "http://127.0.0.1:8000/v1") -> ProviderConfig:
    return ProviderConfig(name=name, url=url, models={m: ModelSpec() for m in models})


@pytest.fixture
def store() -> Store:
    s = Store()
    s.add_provider(provider("openai", "gpt-4o", "gpt-4o-mini", url="https://api.openai.com/v1"))
    s.add_provider(
        provider(
            "openrouter",
            "openai/gpt-4o",
            "meta-llama/llama-3.1-8b-instruct",
            url="https://openrouter.ai/api/v1",
        )
    )
    s.add_provider(provider("ollama", "qwen2.5-coder:7b", "llama3.1:8b", url="http://localhost:11434/v1"))
    s.add_provider(provider("vllm", "meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b"))
    return s


@pytest.mark.parametrize(
    ("name", "qualified"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openrouter/openai/gpt-4o", "openrouter/openai/gpt-4o"),
        ("meta-llama/llama-3.1-8b-instruct", "openrouter/meta-llama/llama-3.1-8b-instruct"),
        ("qwen2.5-coder:7b", "ollama/qwen2.5-coder:7b"),
        ("ollama/qwen2.5-coder:7b", "ollama/qwen2.5-coder:7b"),
        ("vllm/meta-llama/Llama-3.1-8B-Instruct", "vllm/meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-llama/Llama-3.1-8B-Instruct", "vllm/meta-llama/Llama-3.1-8B-Instruct"),
        ("ollama/llama3.1:8b", "ollama/llama3.1:8b"),
        ("  gpt-4o-mini ", "openai/gpt-4o-mini"),
    ],
)
def test_resolves(store: Store, name: str, qualified: str) -> None:
    resolved = store.resolve(name)
    assert resolved.qualified_name == qualified
    assert resolved.model == qualified.partition("/")[2]


def test_resolved_chat_url(store: Store) -> None:
    assert store.resolve("qwen2.5-coder:7b").chat_url == "http://localhost:11434/v1/chat/completions"


def test_bare_id_in_two_providers_is_ambiguous(store: Store) -> None:
    with pytest.raises(AmbiguousModelError) as info:
        store.resolve("llama3.1:8b")
    assert info.value.choices == ["ollama/llama3.1:8b", "vllm/llama3.1:8b"]
    assert "'ollama/llama3.1:8b' or 'vllm/llama3.1:8b'" in str(info.value)


def test_qualified_and_bare_at_once_is_ambiguous(store: Store) -> None:
    # "openai/gpt-4o" is openai's gpt-4o AND openrouter's bare id "openai/gpt-4o".
    with pytest.raises(AmbiguousModelError) as info:
        store.resolve("openai/gpt-4o")
    assert info.value.choices == ["openai/gpt-4o", "openrouter/openai/gpt-4o"]


def test_unknown_suggests_close_names(store: Store) -> None:
    with pytest.raises(UnknownModelError) as info:
        store.resolve("gpt-4o-mni")
    assert "gpt-4o-mini" in info.value.suggestions
    assert "did you mean" in str(info.value)


def test_a_misspelt_model_is_pointed_at_the_close_match_first(store: Store) -> None:
    """Issue 35, item 10: the hint told the user to add the typo right after "did you mean"."""
    with pytest.raises(UnknownModelError) as info:
        store.resolve("openai/gpt-4o-mni")
    hint = info.value.hint or ""
    assert hint.startswith("use openai/gpt-4o-mini") and hint.index("mini") < hint.index("add gpt-4o-mni")


def test_unknown_model_of_known_provider(store: Store) -> None:
    with pytest.raises(UnknownModelError) as info:
        store.resolve("ollama/mistral:7b")
    assert "provider 'ollama' has no model 'mistral:7b'" in str(info.value)
    assert "%llm_provider model ollama add mistral:7b" in str(info.value)


def test_unknown_with_nothing_registered() -> None:
    with pytest.raises(UnknownModelError, match="no provider is registered"):
        Store().resolve("gpt-4o")


def test_unnamed_uses_default_then_single_model() -> None:
    s = Store()
    with pytest.raises(NameResolutionError, match="no model registered"):
        s.resolve()
    s.add_provider(provider("local", "smollm2"))
    assert s.resolve().qualified_name == "local/smollm2"
    s.add_model("local", "other")
    with pytest.raises(NameResolutionError, match="%llm_provider default local/smollm2"):
        s.resolve(None)
    s.set_default("other")
    assert s.resolve().qualified_name == "local/other"


def test_default_dropped_with_its_model(store: Store) -> None:
    store.set_default("qwen2.5-coder:7b")
    assert store.default == "ollama/qwen2.5-coder:7b"
    store.remove_model("ollama", "qwen2.5-coder:7b")
    assert store.default is None
    store.set_default("gpt-4o-mini")
    store.remove_provider("openai")
    assert store.default is None


def test_add_existing_needs_replace(store: Store) -> None:
    with pytest.raises(ProviderExistsError, match="replace=True"):
        store.add_provider(provider("ollama", "x"))
    store.add_provider(provider("ollama", "x"), replace=True)
    assert list(store.provider("ollama").models) == ["x"]


def test_add_provider_refuses_non_config() -> None:
    with pytest.raises(ConfigError, match="ProviderConfig"):
        Store().add_provider({"name": "x"})  # type: ignore[arg-type]


def test_model_crud(store: Store) -> None:
    store.add_model("ollama", "mistral:7b", ModelSpec(context_window=32768))
    with pytest.raises(ConfigError, match="already has model"):
        store.add_model("ollama", "mistral:7b")
    spec = store.update_model("ollama", "mistral:7b", flags={"tools": True})
    assert spec.context_window == 32768 and spec.capabilities.tools
    spec = store.update_model("ollama", "mistral:7b", context_window=None)
    assert spec.context_window is None and spec.capabilities.tools
    with pytest.raises(ConfigError, match="positive"):
        store.update_model("ollama", "mistral:7b", context_window=0)
    assert store.provider("ollama").models["mistral:7b"].capabilities.tools
    store.remove_model("ollama", "mistral:7b")
    with pytest.raises(ConfigError, match="has no model 'mistral:7b'"):
        store.remove_model("ollama", "mistral:7b")


def test_unknown_provider_suggests(store: Store) -> None:
    with pytest.raises(ProviderNotFoundError, match="did you mean 'ollama'"):
        store.provider("olama")


def test_events(store: Store) -> None:
    seen: list[StoreEvent] = []
    unsubscribe = store.subscribe(seen.append)
    store.add_provider(provider("lmstudio", "m"))
    store.add_model("lmstudio", "n")
    store.update_model("lmstudio", "n", flags={"json": True})
    store.set_default("lmstudio/n")
    store.remove_model("lmstudio", "n")
    store.update_provider("lmstudio", privacy=True)
    store.remove_provider("lmstudio")
    unsubscribe()
    store.add_provider(provider("after", "m"))
    assert [(e.kind, e.provider, e.model) for e in seen] == [
        ("provider_added", "lmstudio", None),
        ("model_added", "lmstudio", "n"),
        ("model_changed", "lmstudio", "n"),
        ("default_changed", None, None),
        ("model_removed", "lmstudio", "n"),
        ("default_changed", None, None),
        ("provider_replaced", "lmstudio", None),
        ("provider_removed", "lmstudio", None),
    ]


def test_failing_listener_does_not_block_changes(store: Store) -> None:
    def broken(event: StoreEvent) -> None:
        raise RuntimeError("panel bug")

    store.subscribe(broken)
    store.add_model("ollama", "phi3")
    assert "phi3" in store.provider("ollama").models


def test_update_provider_validates(store: Store) -> None:
    with pytest.raises(ConfigError, match="only http"):
        store.update_provider("ollama", url="file:///etc")
    assert store.provider("ollama").url == "http://localhost:11434/v1"
    with pytest.raises(ConfigError, match="cannot be edited"):
        store.update_provider("ollama", name="other")


def test_get_store_is_the_session_store(ip: Any) -> None:
    """The store the API returns is the one the magics write to and calls resolve from."""
    ip.run_line_magic("llm_provider", "add shared --url http://127.0.0.1:9/v1 --model m=4096 --auth none")
    store = nbllm.get_store()
    assert store.provider("shared").models["m"].context_window == 4096
    assert store.resolve("shared/m").chat_url == "http://127.0.0.1:9/v1/chat/completions"
    from nbllm._calls.routes import plan_routes

    assert [r.qualified_name for r in plan_routes("m")] == ["shared/m"]
