"""The headers of a request to a provider, whatever the protocol: nbllm's own, the protocol's
(``anthropic-version``), the provider's configured ones (``${VAR}`` expanded) and its
credentials, with the values never to show; and `provider_request`, which completes a
protocol's body with the provider's part."""

from __future__ import annotations

from typing import Any

from nbllm._calls.request import PreparedRequest
from nbllm._constants import ANTHROPIC_VERSION, version
from nbllm._exceptions import ConfigError
from nbllm._providers.auth import auth_headers
from nbllm._providers.config import ProviderConfig, expand_vars
from nbllm._providers.secret_registry import provider_secrets


def protocol_headers(provider: ProviderConfig) -> dict[str, str]:
    """Headers the provider's protocol requires; a configured header of the same name wins."""
    if provider.api != "anthropic":
        return {}
    configured = {name.lower() for name in provider.header_templates()}
    return {} if "anthropic-version" in configured else {"anthropic-version": ANTHROPIC_VERSION}


def request_headers(provider: ProviderConfig, *, stream: bool) -> tuple[dict[str, str], set[str]]:
    """The headers of one attempt, and the secret values among them (for masking)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "User-Agent": f"nbllm/{version()}",
        **protocol_headers(provider),
    }
    for name, template in provider.header_templates().items():
        value = expand_vars(template, f"header {name}")
        if not value.isascii():  # from a ${VAR}; the value is not echoed, it may be a token
            raise ConfigError(
                f"header {name} expands to non-ASCII characters, which HTTP headers cannot carry"
            )
        headers[name] = value
    credentials = auth_headers(provider)  # one key lookup per attempt (a keyring read can be slow)
    headers.update(credentials)
    sent = set(credentials.values())
    secrets = sent | {value.partition(" ")[2] for value in sent} | provider_secrets(provider, with_key=False)
    return headers, secrets


def provider_request(
    provider: ProviderConfig, body: dict[str, Any], *, url: str, shown_url: str, stream: bool
) -> PreparedRequest:
    """The request for a protocol's `body`: the provider's `extra_body` added (its ``${VAR}``
    references expanded) and its headers, posted to `url`; shown as `shown_url` and the
    `extra_body` as written."""
    body.update(provider.wire_extra_body())
    headers, secrets = request_headers(provider, stream=stream)
    return PreparedRequest(url, headers, body, secrets, shown_url=shown_url, shown_fields=provider.extra_body)
