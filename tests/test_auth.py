from __future__ import annotations

import pytest
from pydantic import SecretStr

from nbllm import MissingKeyError, ProviderConfig
from nbllm._providers.auth import (
    auth_headers,
    find_key,
    key_status,
    mask_headers,
    provider_env_var,
    security_warnings,
)
from tests.helpers import SENTINEL_KEY, FakeKeyring


def make(**fields: object) -> ProviderConfig:
    return ProviderConfig(**{"name": "p", "url": "https://gw.example.com/v1", **fields})


@pytest.mark.parametrize(
    ("auth", "url", "expected"),
    [
        ("bearer", "https://gw.example.com/v1", {"Authorization": f"Bearer {SENTINEL_KEY}"}),
        ("azure", "https://gw.example.com/openai/deployments/d", {"api-key": SENTINEL_KEY}),
        ("bearer", "https://r.openai.azure.com", {"api-key": SENTINEL_KEY}),
        ("header:x-api-key", "https://gw.example.com/v1", {"x-api-key": SENTINEL_KEY}),
        ("none", "https://gw.example.com/v1", {}),
    ],
)
def test_header_styles(auth: str, url: str, expected: dict[str, str]) -> None:
    config = make(auth=auth, url=url, key=SENTINEL_KEY, api_version="2024-10-21")
    assert auth_headers(config) == expected


def test_key_source_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBLLM_TEST_VAR", "from-var")
    monkeypatch.setenv("NBLLM_P_API_KEY", "from-own-var")
    assert find_key(make(key="literal", key_env="NBLLM_TEST_VAR"))[1] == "set"
    key, origin = find_key(make(key_env="NBLLM_TEST_VAR"))
    assert (key.get_secret_value() if key else None, origin) == ("from-var", "from $NBLLM_TEST_VAR")
    key, origin = find_key(make())
    assert (key.get_secret_value() if key else None, origin) == ("from-own-var", "from $NBLLM_P_API_KEY")


def test_keyring_source(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = FakeKeyring()
    ring.set_password("nbllm", "p", "from-ring")
    monkeypatch.setattr("nbllm._providers.auth.keyring_module", lambda: ring)
    key, origin = find_key(make(key_keyring="p"))
    assert key is not None and key.get_secret_value() == "from-ring"
    assert origin == "from keyring"


def test_never_another_providers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "openai-secret")
    monkeypatch.setenv("NBLLM_OTHER_API_KEY", "other-secret")
    third_party = make(url="https://gw.example.com/v1")
    assert find_key(third_party) == (None, "missing")
    assert auth_headers(third_party) == {}
    openai = make(url="https://api.openai.com/v1")
    key, origin = find_key(openai)
    assert key is not None and origin == "from $OPENAI_API_KEY"


def test_missing_declared_key_raises_with_hint() -> None:
    config = make(key_env="NBLLM_TEST_UNSET")
    assert key_status(config) == "missing ($NBLLM_TEST_UNSET is not set)"
    with pytest.raises(MissingKeyError) as info:
        auth_headers(config)
    assert "NBLLM_TEST_UNSET" in str(info.value) and "--key-prompt" in str(info.value)


def test_status_strings() -> None:
    assert key_status(make(auth="none")) == "not needed"
    assert key_status(make()) == "missing"
    assert key_status(make(key=SecretStr(SENTINEL_KEY))) == "set"


def test_provider_env_var() -> None:
    assert provider_env_var("my-vllm.2") == "NBLLM_MY_VLLM_2_API_KEY"


def test_plain_http_warning() -> None:
    remote = make(url="http://gpu-box.lan:8000/v1", key=SENTINEL_KEY)
    assert "plain http" in security_warnings(remote)[0]
    assert security_warnings(make(url="http://localhost:8000/v1", key=SENTINEL_KEY)) == []
    assert security_warnings(make(url="http://gpu-box.lan:8000/v1")) == []  # no key, nothing exposed


def test_mask_headers() -> None:
    masked = mask_headers(
        {"Authorization": f"Bearer {SENTINEL_KEY}", "X-Title": "demo", "X-Custom": f"k={SENTINEL_KEY}"},
        {SENTINEL_KEY},
    )
    assert masked == {"Authorization": "Bearer ****", "X-Title": "demo", "X-Custom": "****"}
