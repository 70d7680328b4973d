from __future__ import annotations

import pytest

from nbllm import ConfigError
from nbllm._providers.urls import chat_url, is_azure, is_loopback, models_url, normalize_url

AZ = "2024-10-21"

# (url, model, auth, api_version, expected chat URL, expected models URL)
ENDPOINTS = [
    (
        "https://api.openai.com/v1",
        "gpt-4o",
        "bearer",
        None,
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/models",
    ),
    (
        "https://openrouter.ai/api/v1",
        "openai/gpt-4o",
        "bearer",
        None,
        "https://openrouter.ai/api/v1/chat/completions",
        "https://openrouter.ai/api/v1/models",
    ),
    (
        "http://localhost:8000/v1",
        "meta-llama/Llama-3.1-8B-Instruct",
        "bearer",
        None,
        "http://localhost:8000/v1/chat/completions",
        "http://localhost:8000/v1/models",
    ),
    (
        "http://0.0.0.0:4000/v1",
        "gpt-4o",
        "bearer",
        None,
        "http://0.0.0.0:4000/v1/chat/completions",
        "http://0.0.0.0:4000/v1/models",
    ),
    (
        "http://localhost:8080/v1",
        "phi-2",
        "bearer",
        None,
        "http://localhost:8080/v1/chat/completions",
        "http://localhost:8080/v1/models",
    ),
    (
        "http://localhost:11434/v1",
        "qwen2.5-coder:7b",
        "bearer",
        None,
        "http://localhost:11434/v1/chat/completions",
        "http://localhost:11434/v1/models",
    ),
    (
        "http://localhost:1234/v1",
        "lmstudio-community/Meta-Llama-3-8B",
        "bearer",
        None,
        "http://localhost:1234/v1/chat/completions",
        "http://localhost:1234/v1/models",
    ),
    (
        "https://api.groq.com/openai/v1",
        "llama-3.1-8b-instant",
        "bearer",
        None,
        "https://api.groq.com/openai/v1/chat/completions",
        "https://api.groq.com/openai/v1/models",
    ),
    # MiniMax is given without /v1 in its docs' host form: the rule appends only the path.
    (
        "https://api.minimax.io",
        "MiniMax-M1",
        "bearer",
        None,
        "https://api.minimax.io/chat/completions",
        "https://api.minimax.io/models",
    ),
    (
        "https://api.minimax.io/v1",
        "MiniMax-M1",
        "bearer",
        None,
        "https://api.minimax.io/v1/chat/completions",
        "https://api.minimax.io/v1/models",
    ),
    # A full path is used as is; a trailing slash is dropped.
    (
        "https://gw.example.com/llm/v2/chat/completions",
        "m",
        "bearer",
        None,
        "https://gw.example.com/llm/v2/chat/completions",
        "https://gw.example.com/llm/v2/models",
    ),
    (
        "http://localhost:8000/v1/",
        "m",
        "bearer",
        None,
        "http://localhost:8000/v1/chat/completions",
        "http://localhost:8000/v1/models",
    ),
    (
        "http://localhost:8000/v1/chat/completions/",
        "m",
        "bearer",
        None,
        "http://localhost:8000/v1/chat/completions",
        "http://localhost:8000/v1/models",
    ),
    # A gateway's query string survives.
    (
        "https://gw.example.com/v1?tenant=a",
        "m",
        "bearer",
        None,
        "https://gw.example.com/v1/chat/completions?tenant=a",
        "https://gw.example.com/v1/models?tenant=a",
    ),
    # Azure: deployment in the path, api-version in the query.
    (
        "https://res.openai.azure.com/openai/deployments/gpt4o-prod",
        "gpt-4o",
        "bearer",
        AZ,
        f"https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version={AZ}",
        f"https://res.openai.azure.com/openai/models?api-version={AZ}",
    ),
    # Azure: a bare resource URL takes the model id as the deployment.
    (
        "https://res.openai.azure.com",
        "gpt4o-prod",
        "bearer",
        AZ,
        f"https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version={AZ}",
        f"https://res.openai.azure.com/openai/models?api-version={AZ}",
    ),
    (
        "https://res.openai.azure.com/",
        "gpt4o-prod",
        "azure",
        AZ,
        f"https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version={AZ}",
        f"https://res.openai.azure.com/openai/models?api-version={AZ}",
    ),
    (
        "https://res.cognitiveservices.azure.com/openai",
        "dep",
        "bearer",
        AZ,
        f"https://res.cognitiveservices.azure.com/openai/deployments/dep/chat/completions?api-version={AZ}",
        f"https://res.cognitiveservices.azure.com/openai/models?api-version={AZ}",
    ),
    # Azure behind a company proxy: --auth azure marks it.
    (
        "https://proxy.corp.example/openai/deployments/d1",
        "m",
        "azure",
        AZ,
        f"https://proxy.corp.example/openai/deployments/d1/chat/completions?api-version={AZ}",
        f"https://proxy.corp.example/openai/models?api-version={AZ}",
    ),
]


@pytest.mark.parametrize(("url", "model", "auth", "version", "chat", "models"), ENDPOINTS)
def test_endpoint_urls(url: str, model: str, auth: str, version: str | None, chat: str, models: str) -> None:
    assert chat_url(url, model, auth=auth, api_version=version) == chat
    assert models_url(url, auth=auth, api_version=version) == models


def test_azure_api_version_given_twice_is_not_duplicated() -> None:
    url = "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2023-05-15"
    assert chat_url(url, "m", api_version=AZ).count("api-version") == 1
    assert chat_url(url, "m", api_version=AZ).endswith(f"api-version={AZ}")
    assert chat_url(url, "m").endswith("api-version=2023-05-15")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/v1", "uses ftp://"),
        ("ws://localhost:8000/v1", "uses ws://"),
        ("localhost:8000/v1", "has no scheme"),
        ("api.openai.com/v1", "has no scheme"),
        ("http:///v1", "has no host"),
        ("https://", "has no host"),
        ("", "url is empty"),
        ("https://user:NBLLM-TEST-KEY-7f3a9c41d2@example.com/v1", "user name or password"),
    ],
)
def test_refused_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_url(url)
    message = str(info.value)
    assert fragment in message
    assert "http://" in message or "credentials" in message or "key" in message
    assert "NBLLM-TEST-KEY" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost:8000/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.8.9.1/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://gpu-box.lan:8000/v1", False),
        ("http://10.0.0.5:8000/v1", False),
    ],
)
def test_loopback(url: str, expected: bool) -> None:
    assert is_loopback(url) is expected


def test_azure_detection() -> None:
    assert is_azure("https://x.openai.azure.com")
    assert is_azure("https://gw.example.com", "azure")
    assert not is_azure("https://api.openai.com/v1")
