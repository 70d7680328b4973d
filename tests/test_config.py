from __future__ import annotations

from typing import Any

import pytest

from nbllm import Capabilities, ConfigError, ModelSpec, ProviderConfig
from nbllm._providers.config import expand_vars, split_model_arg
from nbllm._providers.models import parse_capability_names


def test_defaults_match_design() -> None:
    config = ProviderConfig(name="local", url="http://127.0.0.1:8000/v1")
    assert (config.connect_timeout_s, config.read_timeout_s) == (10.0, 120.0)
    assert config.retry.max_retries == 2
    assert config.auth == "bearer"
    assert ModelSpec().capabilities.as_flags() == {
        "tools": False,
        "vision": False,
        "prompt_cache": False,
        "json": False,
        "json_schema": False,
        "reasoning": False,
        "embeddings": False,
        "streaming": True,
        "include_usage": True,
    }
    assert ModelSpec().price is None
    assert config.reasoning_style is None  # decided by the host (see nbllm._calls.wire.reasoning)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "x", "models": {"m": {}}}, "declares models but has no url"),
        ({"name": "x"}, "has no url"),
        ({"name": "x", "url": "ftp://h/v1"}, "only http:// and https://"),
        ({"name": "x", "url": "http://"}, "has no host"),
        ({"name": "x", "url": "https://r.openai.azure.com"}, "needs an api_version"),
        ({"name": "x", "url": "http://h/v1", "auth": "azure"}, "--api-version"),
        ({"name": "x", "url": "http://h/v1", "models": {"m": 0}}, "models.m.context_window"),
        ({"name": "x", "url": "http://h/v1", "models": {"m": {"context_window": -5}}}, "positive"),
        ({"name": "a/b", "url": "http://h/v1"}, "no '/'"),
        ({"name": "x", "url": "http://h/v1", "auth": "basic"}, "header:NAME"),
        ({"name": "x", "url": "http://h/v1", "key_env": "sk-abc def"}, "not an environment variable name"),
        ({"name": "x", "url": "http://h/v1", "read_timeout_s": 0}, "read_timeout_s"),
        ({"name": "x", "url": "http://h/v1", "colour": "red"}, "colour: unknown field"),
        (
            {"name": "x", "url": "http://h/v1", "models": {"m": {"capabilities": "tools,telepathy"}}},
            "unknown capability 'telepathy'",
        ),
    ],
)
def test_invalid_config_names_field_and_fix(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProviderConfig(**fields)
    assert expected in str(info.value)
    assert "pydantic" not in str(info.value).lower()


def test_model_spec_shorthands() -> None:
    config = ProviderConfig(
        name="or",
        url="https://openrouter.ai/api/v1",
        models={
            "openai/gpt-4o": {"context_window": 128000, "caps": ["tools", "vision", "json"]},
            "meta-llama/llama-3.1-8b-instruct": 131072,
            "qwen2.5-coder:7b": None,
        },
    )
    gpt = config.models["openai/gpt-4o"]
    assert gpt.context_window == 128000
    assert gpt.capabilities.enabled() == ["tools", "vision", "json", "streaming", "include_usage"]
    assert config.models["meta-llama/llama-3.1-8b-instruct"].context_window == 131072
    assert config.models["qwen2.5-coder:7b"].context_window is None


def test_models_as_list() -> None:
    config = ProviderConfig(
        name="v", url="http://h/v1", models=["a/b=4096", "c:7b", {"id": "d", "caps": "json"}]
    )
    assert config.models["a/b"].context_window == 4096
    assert "c:7b" in config.models
    assert config.models["d"].capabilities.json_mode


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${HOST}", {"HOST": "gpu"}, "gpu"),
        ("http://${HOST}:${PORT:-8000}/v1", {"HOST": "gpu"}, "http://gpu:8000/v1"),
        ("${PORT:-8000}", {"PORT": "9"}, "9"),
        ("${EMPTY:-x}", {"EMPTY": ""}, "x"),
        ("no vars", {}, "no vars"),
        ("$HOME stays", {}, "$HOME stays"),
    ],
)
def test_expand_vars(text: str, env: dict[str, str], expected: str) -> None:
    assert expand_vars(text, "url", env) == expected


def test_expand_unset_var_names_it() -> None:
    with pytest.raises(ConfigError, match=r"url: environment variable GPU_HOST is not set"):
        expand_vars("http://${GPU_HOST}/v1", "url", {})


def test_url_expanded_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_HOST", "gpu-box")
    config = ProviderConfig(name="v", url="http://${NBLLM_TEST_HOST}:${NBLLM_TEST_PORT:-8000}/v1/")
    assert config.url == "http://gpu-box:8000/v1"


def test_key_as_var_reference_stays_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_KEY", "value-not-kept")
    config = ProviderConfig(name="v", url="http://h/v1", key="${NBLLM_TEST_KEY}")
    assert config.key is None
    assert config.key_env == "NBLLM_TEST_KEY"
    assert "value-not-kept" not in repr(config)


def test_header_templates_kept_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_TOKEN", "tok-value")
    config = ProviderConfig(name="v", url="http://h/v1", headers={"X-Token": "${NBLLM_TEST_TOKEN}"})
    assert config.header_templates() == {"X-Token": "${NBLLM_TEST_TOKEN}"}
    assert "NBLLM_TEST_TOKEN" not in repr(config)


def test_replace_validates() -> None:
    config = ProviderConfig(name="v", url="http://h/v1")
    assert config.replace(url="https://h2/v1/").url == "https://h2/v1"
    with pytest.raises(ConfigError):
        config.replace(url="ftp://h")
    assert config.url == "http://h/v1"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("tools,vision", {"tools": True, "vision": True}),
        ("cache, json", {"prompt_cache": True, "json": True}),
        ("no-streaming,no-include_usage", {"streaming": False, "include_usage": False}),
        (["prompt-cache", "!tools"], {"prompt_cache": True, "tools": False}),
        ("", {}),
    ],
)
def test_capability_names(names: str | list[str], expected: dict[str, bool]) -> None:
    assert parse_capability_names(names) == expected


def test_capabilities_with_flags() -> None:
    caps = Capabilities().with_flags({"tools": True, "streaming": False})
    assert caps.tools and not caps.streaming and caps.include_usage


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("gpt-4o", ("gpt-4o", None)),
        ("gpt-4o=128000", ("gpt-4o", 128000)),
        ("qwen2.5-coder:7b=32768", ("qwen2.5-coder:7b", 32768)),
        ("meta-llama/Llama-3.1-8B-Instruct=131072", ("meta-llama/Llama-3.1-8B-Instruct", 131072)),
    ],
)
def test_split_model_arg(arg: str, expected: tuple[str, int | None]) -> None:
    assert split_model_arg(arg) == expected


@pytest.mark.parametrize("arg", ["gpt-4o=big", "gpt-4o=0", "=4096"])
def test_split_model_arg_refuses(arg: str) -> None:
    with pytest.raises(ConfigError, match="ID=TOKENS"):
        split_model_arg(arg)


def test_configs_are_immutable() -> None:
    config = ProviderConfig(name="v", url="http://h/v1")
    with pytest.raises(Exception, match="frozen"):
        config.url = "http://other/v1"  # type: ignore[misc]
