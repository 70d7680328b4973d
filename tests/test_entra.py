"""Entra ID (``--auth azure-ad``) for Azure OpenAI: a token provider called per request, azure-identity's
DefaultAzureCredential with its token kept until shortly before it expires, and clear errors when no
token can be had. Tokens travel as bearer tokens and are never saved or shown."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._providers import entra
from nbllm._providers.auth import key_status
from nbllm._views.tables import HistoryTable
from nbllm.testing import serve

API_VERSION = "2024-10-21"


@dataclass
class AccessToken:
    token: str
    expires_on: int


class FakeCredential:
    """Stands in for DefaultAzureCredential: numbered tokens, each valid for `lifetime_s`."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self.scopes: list[str] = []

    def get_token(self, scope: str) -> AccessToken:
        self.scopes.append(scope)
        return AccessToken(f"entra-token-{len(self.scopes)}", int(time.time() + self.lifetime_s))


@pytest.fixture(autouse=True)
def fresh_tokens() -> Iterator[None]:
    entra.forget_tokens()
    saved = list(entra._credential)
    yield
    entra.forget_tokens()
    entra._credential[:] = saved


def register(url: str, **auth: Any) -> str:
    config = ProviderConfig(
        name="aoai", url=url, auth="azure-ad", api_version=API_VERSION, models={"gpt-4o": {}},
        retry={"max_retries": 0}, **auth,
    )  # fmt: skip
    get_store().add_provider(config, replace=True)
    return "aoai/gpt-4o"


def bearer(server: Any) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.requests]


def test_a_token_provider_is_called_for_every_request() -> None:
    issued: list[str] = []

    def provider() -> str:
        issued.append(f"provided-token-{len(issued) + 1}")
        return issued[-1]

    with serve(reply="Hello from Azure.") as server:
        model = register(server.base_url, token_provider=provider)
        assert nbllm.chat("hi", model).text == "Hello from Azure."
        nbllm.chat("again", model)
    assert bearer(server) == ["Bearer provided-token-1", "Bearer provided-token-2"]
    assert server.requests[0].path == f"/v1/chat/completions?api-version={API_VERSION}"  # Azure URL rules
    shown = (
        repr(nbllm.history()) + repr(HistoryTable(nbllm.history())) + key_status(get_store().provider("aoai"))
    )
    assert "provided-token" not in shown
    assert key_status(get_store().provider("aoai")) == "not used: Entra ID tokens from its token provider"


def test_default_credential_tokens_are_kept_until_near_expiry_then_renewed() -> None:
    long_lived = FakeCredential(lifetime_s=3600)
    entra._credential[:] = [long_lived]
    with serve(reply="ok") as server:
        model = register(server.base_url)
        nbllm.chat("one", model)
        nbllm.chat("two", model)
        assert bearer(server) == ["Bearer entra-token-1"] * 2
        assert long_lived.scopes == ["https://cognitiveservices.azure.com/.default"]
        short_lived = FakeCredential(lifetime_s=entra.REFRESH_MARGIN_S - 1)  # always about to expire
        entra._credential[:] = [short_lived]
        entra.forget_tokens()
        nbllm.chat("three", model)
        nbllm.chat("four", model)
    assert bearer(server)[2:] == ["Bearer entra-token-1", "Bearer entra-token-2"]


def test_without_azure_identity_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    entra._credential.clear()
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with serve() as server:
        model = register(server.base_url)
        with pytest.raises(nbllm.MissingKeyError, match="needs azure-identity") as caught:
            nbllm.chat("hi", model)
        assert not server.requests
    assert "pip install 'nbllm[azure]'" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("provider", "message"),
    [(lambda: "", "returned str, not a token"), (lambda: 1 / 0, "failed: ZeroDivisionError")],
)
def test_a_broken_token_provider_is_a_clear_error(provider: Any, message: str) -> None:
    with serve() as server:
        model = register(server.base_url, token_provider=provider)
        with pytest.raises(nbllm.MissingKeyError, match=message):
            nbllm.chat("hi", model)
        assert not server.requests


def test_the_token_provider_is_never_saved() -> None:
    config = ProviderConfig(
        name="a", url="https://r.openai.azure.com", auth="azure-ad", api_version=API_VERSION,
        token_provider=lambda: "t",
    )  # fmt: skip
    assert config.saved_form() == {
        "name": "a", "url": "https://r.openai.azure.com", "auth": "azure-ad", "api_version": API_VERSION,
    }  # fmt: skip
