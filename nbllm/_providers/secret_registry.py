"""The one registry of secret values: every value of the session's providers that is a
credential, by value, for the one masker (`secret_text.mask_values`). A value is a secret when it
is a provider's key (however found: literal, ``--key-env``, keyring, prompt), a configured
header whose name is a credential's (authorization, api-key, ``*-key``, ``*token*``,
``*secret*``, cookie, subscription-key) or whose value comes from ``${VAR}``, a proxy's user
and password, a URL query credential, a value a ``${VAR}`` in the URL's query or in
`extra_body` stands for, or a token a token provider issued (Entra ID). A plain
literal header value (``X-Title: final``) is not: masking it would corrupt replies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from nbllm._exceptions import ConfigError
from nbllm._providers import entra
from nbllm._providers.auth import find_key
from nbllm._providers.config import (
    _VAR_RE,
    ProviderConfig,
    expand_vars,
    is_sensitive_header,
    referenced_values,
)
from nbllm._providers.store import get_store

QUERY_CREDENTIALS = frozenset(
    {
        "key",
        "api-key",
        "api_key",
        "apikey",
        "subscription-key",
        "access_token",
        "access-token",
        "token",
        "sig",
        "signature",
        "code",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-credential",
    }
)
"""Query parameters that carry credentials (Gemini's ``key``, Azure SAS ``sig``, AWS presigning)."""


def provider_secrets(config: ProviderConfig, *, with_key: bool = True) -> set[str]:
    """The secret values of one provider (see the module docstring). `with_key=False` leaves
    out its key, for a caller that looked it up already (a keyring read can be slow)."""
    found: set[str] = set()
    key, _ = find_key(config) if with_key else (None, "")
    if key is not None:
        found.add(key.get_secret_value())
    found |= header_secrets(config.header_templates())
    if config.proxy is not None:
        authority = (config.proxy_url() or "").partition("://")[2].partition("/")[0]
        if "@" in authority:
            credentials = unquote(authority.rpartition("@")[0])
            found |= {credentials, credentials.partition(":")[2]}
    found |= {value for value in query_secrets(config.url) if not _VAR_RE.search(value)}
    found |= referenced_values(urlsplit(config.url).query) | referenced_values(config.extra_body)
    token = entra.cached_token(config.name)
    if token:
        found.add(token)
    return {value for value in found if value}


def header_secrets(templates: Mapping[str, str]) -> set[str]:
    """The secret values of headers as written: a credential's header, or a value from ``${VAR}``
    (also without an auth scheme's first word, ``Bearer``)."""
    found: set[str] = set()
    for name, template in templates.items():
        if is_sensitive_header(name) or _VAR_RE.search(template):
            try:
                value = expand_vars(template, f"header {name}")
            except ConfigError:  # an unset variable: nothing to mask, and nothing is sent either
                continue
            found |= {value, value.partition(" ")[2]}
    return {value for value in found if value}


_SOURCES: list[Callable[[], set[str]]] = []


def add_secret_source(source: Callable[[], set[str]]) -> None:
    """Register where other secrets of the session are known (an MCP server's headers): a
    layer above providers adds its own, so the one masker still knows every secret."""
    if source not in _SOURCES:
        _SOURCES.append(source)


def query_secrets(url: str) -> set[str]:
    """The values of credential parameters in `url`'s query."""
    return {
        value
        for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)
        if name.lower() in QUERY_CREDENTIALS
    }


def session_secrets() -> set[str]:
    """Every secret value of every provider of the running session."""
    found: set[str] = set()
    for config in get_store().providers.values():
        found |= provider_secrets(config)
    for source in _SOURCES:
        found |= source()
    return found
