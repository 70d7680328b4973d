"""A provider's configuration (`ProviderConfig`) and its retry policy; the models it serves
are in `nbllm._providers.models`.

All configuration is immutable; an edit builds a validated copy (`ProviderConfig.replace`).
Constructing any of it with bad input raises `ConfigError` naming the field and the fix,
never a raw pydantic `ValidationError`.

``${VAR}`` and ``${VAR:-default}`` are expanded from the environment in the
provider's string fields when it is created. Where a credential can hide they are
kept as written and expanded only when a request is built (header values, the URL's
query, `extra_body`), so a ``${TOKEN}`` is never written back into a saved file, a
table, a dry run or an error in plain text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from nbllm import _constants
from nbllm._exceptions import ConfigError
from nbllm._providers.models import ModelSpec, StrictModel
from nbllm._providers.network import (
    LOOPBACK_NAMES,
    TRUST_STORES,
    Trust,
    environment_proxy,
    mask_credentials,
    trust_for,
)
from nbllm._providers.urls import host_of, is_azure, is_loopback, normalize_url

AUTH_STYLES_HELP = "bearer, azure, azure-ad (Entra ID), none or header:NAME (e.g. header:x-api-key)"

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE_VAR_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def expand_vars(text: str, field: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in `text` from `environ`."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        value = _reference_value(match, env)
        if value is None:
            name = match.group(1)
            raise ConfigError(
                f"{field}: environment variable {name} is not set; set it, "
                f"or write ${{{name}:-default}} to give a default"
            )
        return value

    return _VAR_RE.sub(substitute, text)


def _reference_value(match: re.Match[str], env: Mapping[str, str]) -> str | None:
    name, default = match.group(1), match.group(2)
    return env.get(name) or default


def expand_json(value: Any, field: str) -> Any:
    """`value` (decoded JSON) with ``${VAR}`` expanded in every string in it."""
    if isinstance(value, str):
        return expand_vars(value, field) if "${" in value else value
    if isinstance(value, dict):
        return {key: expand_json(item, f"{field}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [expand_json(item, field) for item in value]
    return value


def referenced_values(value: Any) -> set[str]:
    """What the ``${VAR}`` references in `value` (a string or decoded JSON) stand for now;
    unset variables without a default stand for nothing."""
    if isinstance(value, dict):
        return set().union(*(referenced_values(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(referenced_values(item) for item in value))
    if not isinstance(value, str):
        return set()
    found = (_reference_value(match, os.environ) for match in _VAR_RE.finditer(value))
    return {text for text in found if text}


def _expand_before_query(url: str) -> str:
    """`url` with ``${VAR}`` expanded in its scheme, host and path, which say where requests go
    (and are checked here); references in the query, where credentials travel, stay as written."""
    head, mark, query = url.partition("?")
    return expand_vars(head, "url") + mark + query


class RetryPolicy(StrictModel):
    """How failed calls are retried. Delays are computed in `nbllm._calls.retry`."""

    _what: ClassVar[str] = "retry"

    max_retries: int = Field(_constants.MAX_RETRIES, ge=0, le=10)
    retry_after_ceiling_s: float = Field(_constants.RETRY_AFTER_CEILING_S, gt=0)
    backoff_base_s: float = Field(_constants.BACKOFF_BASE_S, ge=0)
    backoff_max_s: float = Field(_constants.BACKOFF_MAX_S, ge=0)


class ProviderConfig(StrictModel):
    """An OpenAI-compatible endpoint, how to authenticate to it, and the models it serves.

    Key sources, first found wins: `key` (a literal, kept as `SecretStr`, never
    saved), `key_env` (an environment variable's name), `key_keyring` (an OS
    keyring entry), then ``NBLLM_<NAME>_API_KEY``. See `nbllm._providers.auth`.
    """

    _what: ClassVar[str] = "provider"

    name: str
    url: str
    key: SecretStr | None = None
    key_env: str | None = None
    key_keyring: str | None = None
    auth: str = "bearer"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    api_version: str | None = None
    connect_timeout_s: float = Field(_constants.CONNECT_TIMEOUT_S, gt=0)
    read_timeout_s: float = Field(_constants.READ_TIMEOUT_S, gt=0)
    requests_per_second: float | None = Field(
        None, ge=_constants.MIN_REQUESTS_PER_SECOND, allow_inf_nan=False
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    privacy: bool = False
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    fallback: list[str] = Field(default_factory=list)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    api: str = "chat"
    """The wire protocol: ``chat`` (OpenAI Chat Completions) or ``anthropic`` (Messages)."""
    reasoning_style: str | None = None
    """How --effort is sent (see `nbllm._calls.wire.reasoning`); None: as the host is known to want."""
    trust: str | None = None
    """Which certificates to trust: ``system`` (the OS store) or ``certifi``; None: the default
    (see `nbllm._providers.network`)."""
    ca_bundle: str | None = None
    """A PEM file of CA certificates to trust instead (a company proxy's root, say)."""
    insecure: bool = False
    """No certificate checks: for local testing only."""
    insecure_remote: bool = False
    """Allow `insecure` for a host that is not this machine (refused otherwise)."""
    client_cert: str | None = None
    """A PEM client certificate for gateways that require mutual TLS."""
    client_key: str | None = None
    """The client certificate's private key, when it is not in the same file."""
    token_provider: Callable[[], str] | None = Field(None, exclude=True)
    """For ``auth: azure-ad``: a function returning an Entra ID token, called for each request
    (never saved); without one, azure-identity's DefaultAzureCredential is asked."""
    proxy: SecretStr | None = None
    """A proxy for this provider (``http://user:pass@proxy:3128``; ``${VAR}`` is read from the
    environment); None: ``$HTTPS_PROXY`` / ``$HTTP_PROXY`` / ``$NO_PROXY``, as httpx reads them."""

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("url"):
            declared = " declares models but" if data.get("models") else ""
            raise ValueError(
                f"provider {data.get('name', '?')!r}{declared} has no url; add the endpoint's "
                "base URL, e.g. url: http://localhost:8000/v1"
            )
        if not data.get("auth"):  # not given: bearer, or Anthropic's own header for its protocol
            data.pop("auth", None)
            if data.get("api") == "anthropic":
                data["auth"] = "header:x-api-key"
        key = data.get("key")
        if isinstance(key, str) and (whole := _WHOLE_VAR_RE.match(key.strip())):
            # `key: ${VAR}` is a reference: keep the variable's name, not its value.
            data["key"], data["key_env"] = None, whole.group(1)
        for field in ("name", "api_version", "auth", "key_env", "key_keyring"):
            if isinstance(data.get(field), str):
                data[field] = expand_vars(data[field], field)
        if isinstance(data.get("url"), str):
            data["url"] = _expand_before_query(data["url"])
        if isinstance(data.get("key"), str):
            data["key"] = expand_vars(data["key"], "key")
        if isinstance(data.get("models"), list | tuple):
            data["models"] = _models_from_list(data["models"])
        return data

    @field_validator("api")
    @classmethod
    def _known_api(cls, value: str) -> str:
        if value not in _constants.APIS:
            raise ValueError(f"api {value!r} is not one of {', '.join(_constants.APIS)}")
        return value

    @field_validator("reasoning_style")
    @classmethod
    def _known_style(cls, value: str | None) -> str | None:
        if value is not None and value not in _constants.REASONING_STYLES:
            raise ValueError(
                f"reasoning_style {value!r} is not one of {', '.join(_constants.REASONING_STYLES)}"
            )
        return value

    @field_validator("trust")
    @classmethod
    def _known_trust(cls, value: str | None) -> str | None:
        if value is not None and value not in TRUST_STORES:
            raise ValueError(f"trust {value!r} is not one of {', '.join(TRUST_STORES)}")
        return value

    @model_validator(mode="after")
    def _insecure_only_here(self) -> ProviderConfig:
        if self.insecure and not self.insecure_remote and not is_loopback(self.url):
            raise ValueError(
                f"--insecure turns certificate checks off, so anyone on the way to {host_of(self.url)} "
                "could read your key; it is refused for hosts other than this machine. Trust the "
                "server's CA instead (--ca-bundle PATH or --trust system), or add --insecure-remote if "
                "you really mean it"
            )
        if self.client_key and not self.client_cert:
            raise ValueError("--client-key needs --client-cert (the certificate it belongs to)")
        return self

    def network_trust(self) -> Trust:
        """What this provider's connections trust, and the client certificate they show."""
        return trust_for(
            insecure=self.insecure,
            ca_bundle=self.ca_bundle,
            trust=self.trust,
            client_cert=self.client_cert,
            client_key=self.client_key,
        )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"provider name {value!r} is not allowed; use letters, digits, '-', '_' or '.' "
                "(no '/' or spaces), e.g. openrouter or local-vllm"
            )
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            return normalize_url(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("key_env")
    @classmethod
    def _valid_env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
            # The value is not echoed: people paste the key itself here.
            raise ValueError(
                "this is not an environment variable name (letters, digits and _ only); "
                "give the variable's name, e.g. OPENROUTER_API_KEY, not the key itself"
            )
        return value

    @field_validator("auth")
    @classmethod
    def _valid_auth(cls, value: str) -> str:
        style = value.strip()
        if style.lower() in ("bearer", "azure", "azure-ad", "none"):
            return style.lower()
        head, _, header = style.partition(":")
        if head.lower() == "header" and _HEADER_NAME_RE.match(header):
            return f"header:{header}"
        raise ValueError(f"unknown auth style {value!r}; choose {AUTH_STYLES_HELP}")

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            problem = header_problem(name, secret.get_secret_value())
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("extra_body")
    @classmethod
    def _valid_extra_body(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra_body must be plain JSON, without NaN or infinity ({exc})") from None
        return value

    @field_validator("models")
    @classmethod
    def _valid_model_ids(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for model_id in value:
            if not model_id.strip() or model_id != model_id.strip():
                raise ValueError(f"model id {model_id!r} is empty or has surrounding spaces")
        return value

    @model_validator(mode="after")
    def _azure_needs_version(self) -> ProviderConfig:
        if is_azure(self.url, self.auth) and not self.api_version:
            raise ValueError(
                f"provider {self.name!r} is an Azure OpenAI endpoint and needs an api_version; "
                "add --api-version 2024-10-21 (or api_version: in YAML)"
            )
        return self

    @property
    def is_azure(self) -> bool:
        """Whether requests follow Azure OpenAI's rules (an ``*.openai.azure.com`` URL or --auth azure)."""
        return is_azure(self.url, self.auth)

    def wire_url(self) -> str:
        """The base URL requests go to: `url` with the references in its query expanded (an
        unset variable is a `ConfigError` naming it). Everything that shows the URL shows `url`."""
        return expand_vars(self.url, "url") if "${" in self.url else self.url

    def wire_extra_body(self) -> dict[str, Any]:
        """`extra_body` as sent: its ``${VAR}`` references expanded."""
        return expand_json(self.extra_body, "extra_body") if self.extra_body else {}

    def header_templates(self) -> dict[str, str]:
        """Extra headers as written (``${VAR}`` not yet expanded)."""
        return {name: value.get_secret_value() for name, value in self.headers.items()}

    def unsaved_headers(self) -> list[str]:
        """Headers that hold a literal secret, which a config file must not store."""
        return literal_secret_headers(self.header_templates())

    def proxy_url(self) -> str | None:
        """The proxy to use, ``${VAR}`` expanded (None: the environment's)."""
        return expand_vars(self.proxy.get_secret_value(), "proxy") if self.proxy else None

    def proxy_shown(self) -> str | None:
        """The proxy as messages and tables show it: any user name and password masked."""
        if self.proxy is None:
            return None
        return mask_credentials(self.proxy.get_secret_value())

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to `url` goes through (credentials masked), or None: this
        machine is always reached directly."""
        if (urlsplit(url).hostname or "") in LOOPBACK_NAMES:
            return None
        return self.proxy_shown() or environment_proxy(url)

    def proxy_unsaved(self) -> bool:
        """Whether the proxy URL holds a literal password, which a config file must not store."""
        template = self.proxy.get_secret_value() if self.proxy else ""
        return "@" in template.partition("://")[2].partition("/")[0] and not _VAR_RE.search(template)

    def saved_form(self) -> dict[str, Any]:
        """What a config file holds: no literal key, secret header or proxy password, defaults left out."""
        saved = self.model_dump(
            mode="json", by_alias=True, exclude={"key", "headers", "proxy"}, exclude_defaults=True
        )
        unsaved = self.unsaved_headers()
        headers = {k: v for k, v in self.header_templates().items() if k not in unsaved}
        if self.proxy is not None and not self.proxy_unsaved():
            saved["proxy"] = self.proxy.get_secret_value()
        return {"name": self.name, "url": self.url, **saved} | ({"headers": headers} if headers else {})


def is_sensitive_header(name: str) -> bool:
    """Whether a header of this name usually carries a credential."""
    lowered = name.lower()
    return any(word in lowered for word in ("authorization", "key", "token", "secret", "cookie"))


def header_problem(name: str, value: str) -> str | None:
    """Why a header cannot be sent as written (None when it can). The value is never echoed:
    it may be a token."""
    if not _HEADER_NAME_RE.match(name):
        return f"{name!r} is not a valid HTTP header name"
    if not value.isascii():
        return f"header {name}'s value has non-ASCII characters, which HTTP headers cannot carry"
    return None


def literal_secret_headers(templates: Mapping[str, str]) -> list[str]:
    """The headers (as written, ``${VAR}`` unexpanded) holding a literal secret, which a saved
    file must not store: a credential's name and no ``${VAR}`` reference."""
    return [
        name for name, value in templates.items() if is_sensitive_header(name) and not _VAR_RE.search(value)
    ]


def _models_from_list(items: Iterable[Any]) -> dict[str, Any]:
    """``["gpt-4o=128000", "llama3"]`` or ``[{"id": ..., ...}]`` -> the models mapping."""
    models: dict[str, Any] = {}
    for item in items:
        if isinstance(item, str):
            model_id, window = split_model_arg(item)
            models[model_id] = {"context_window": window} if window else {}
        elif isinstance(item, dict) and "id" in item:
            spec = dict(item)
            models[str(spec.pop("id"))] = spec
        else:
            raise ValueError(f"models entry {item!r} should be an id string or a mapping with id:")
    return models


def split_model_arg(text: str) -> tuple[str, int | None]:
    """``"qwen2.5-coder:7b=32768"`` -> ``("qwen2.5-coder:7b", 32768)``; ids may hold ``/`` and ``:``."""
    model_id, sep, window = text.strip().rpartition("=")
    if not sep:
        return text.strip(), None
    if not window.isdigit() or int(window) <= 0:
        raise ConfigError(
            f"context window {window!r} in {text!r} is not a positive whole number; "
            "write ID=TOKENS, e.g. gpt-4o=128000"
        )
    if not model_id:
        raise ConfigError(f"{text!r} has no model id before '='; write ID=TOKENS")
    return model_id, int(window)
