"""Microsoft Entra ID tokens for Azure OpenAI (``auth: azure-ad``), for endpoints that accept no
API key.

A token comes from the provider's own ``token_provider`` (a function returning a token, as the
openai SDK's ``azure_ad_token_provider``; called for every request, so it refreshes as it
likes), or from azure-identity's ``DefaultAzureCredential`` (the ``azure`` extra: environment
variables, a managed identity, ``az login``...) for the Cognitive Services scope, kept until five
minutes before it expires. Tokens are sent as bearer tokens and never stored or shown.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from nbllm._exceptions import MissingKeyError

if TYPE_CHECKING:
    from nbllm._providers.config import ProviderConfig

SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_MARGIN_S = 300.0
"""A cached token is renewed this long before it expires."""
INSTALL_COMMAND = "pip install 'nbllm[azure]'"

_LOCK = threading.Lock()
_tokens: dict[str, tuple[str, float]] = {}
"""Per provider: the last token from the credential, and when it expires (epoch seconds)."""
_issued: dict[str, str] = {}
"""The last token issued per provider, from either source (for the masker)."""
_credential: list[Any] = []


def azure_credential() -> Any:
    """azure-identity's ``DefaultAzureCredential``, created once (it caches what it learns)."""
    if not _credential:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise MissingKeyError(
                "auth azure-ad needs azure-identity, which is not installed",
                hint=f"install it with {INSTALL_COMMAND}, or give token_provider= a function that "
                "returns a token",
            ) from None
        _credential.append(DefaultAzureCredential())
    return _credential[0]


def entra_token(config: ProviderConfig) -> str:
    """A current token for `config` (see the module docstring); raises `MissingKeyError`."""
    if config.token_provider is not None:
        token = _called(config)
        _issued[config.name] = token
    else:
        with _LOCK:
            cached = _tokens.get(config.name)
            if cached is not None and cached[1] - time.time() > REFRESH_MARGIN_S:
                return cached[0]
            token, expires_on = _from_credential(config)
            _tokens[config.name] = (token, expires_on)
            _issued[config.name] = token
    return token


def cached_token(provider: str) -> str | None:
    """The last token issued for `provider` (to mask it wherever a server echoes it)."""
    return _issued.get(provider)


def forget_tokens() -> None:
    """Drop cached tokens (a new session's state; used by tests)."""
    with _LOCK:
        _tokens.clear()
        _issued.clear()


def _called(config: ProviderConfig) -> str:
    assert config.token_provider is not None
    try:
        token = config.token_provider()
    except Exception as exc:  # the user's function: any failure is a missing credential
        raise MissingKeyError(
            f"the token provider of {config.name!r} failed: {type(exc).__name__}",
            hint="check the function given as token_provider= (it should return an Entra ID token)",
        ) from exc
    if not isinstance(token, str) or not token.strip():
        raise MissingKeyError(
            f"the token provider of {config.name!r} returned {type(token).__name__}, not a token",
            hint="token_provider= should return the token as a non-empty string",
        )
    return token.strip()


def _from_credential(config: ProviderConfig) -> tuple[str, float]:
    credential = azure_credential()
    try:
        got = credential.get_token(SCOPE)
    except Exception as exc:  # azure-identity's errors: CredentialUnavailableError and others
        raise MissingKeyError(
            f"no Entra ID token for {config.name!r}: {type(exc).__name__}",
            hint="sign in (az login), or set AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET, "
            "or run where a managed identity is available",
        ) from exc
    return str(got.token), float(got.expires_on)
