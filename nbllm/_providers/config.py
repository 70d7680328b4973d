"""Configuration models: providers, models, capabilities, retry policy.

All models are immutable; an edit builds a validated copy (`ProviderConfig.replace`).
Constructing any of them with bad input raises `ConfigError` naming the field and
the fix, never a raw pydantic `ValidationError`.

``${VAR}`` and ``${VAR:-default}`` are expanded from the environment in the
provider's string fields when it is created. Header values are the exception:
they are kept as written and expanded when a request is built, so a
``${TOKEN}`` header is never written back into a saved file in plain text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from nbllm import _constants
from nbllm._exceptions import ConfigError
from nbllm._providers.network import (
    LOOPBACK_NAMES,
    TRUST_STORES,
    Trust,
    environment_proxy,
    mask_credentials,
    trust_for,
)
from nbllm._providers.urls import host_of, is_azure, is_loopback, normalize_url

CAPABILITY_NAMES = (
    "tools",
    "vision",
    "prompt_cache",
    "json",
    "json_schema",
    "reasoning",
    "embeddings",
    "streaming",
    "include_usage",
)
CAPABILITY_ALIASES = {"cache": "prompt_cache", "usage": "include_usage", "stream": "streaming"}
AUTH_STYLES_HELP = "bearer, azure, azure-ad (Entra ID), none or header:NAME (e.g. header:x-api-key)"

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE_VAR_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_SECRET_FIELDS = ("key", "headers", "extra_body")


def expand_vars(text: str, field: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in `text` from `environ`."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{field}: environment variable {name} is not set; set it, "
            f"or write ${{{name}:-default}} to give a default"
        )

    return _VAR_RE.sub(substitute, text)


def parse_capability_names(names: str | Iterable[str]) -> dict[str, bool]:
    """``"tools,vision,no-streaming"`` -> ``{"tools": True, "vision": True, "streaming": False}``."""
    items = names.split(",") if isinstance(names, str) else list(names)
    flags: dict[str, bool] = {}
    for raw in items:
        word = raw.strip().lower().replace("-", "_")
        if not word:
            continue
        value = True
        for prefix in ("no_", "!"):
            if word.startswith(prefix):
                word, value = word[len(prefix) :], False
        word = CAPABILITY_ALIASES.get(word, word)
        if word not in CAPABILITY_NAMES:
            raise ConfigError(
                f"unknown capability {raw.strip()!r}; choose from "
                f"{', '.join(CAPABILITY_NAMES)} (prefix no- to turn one off)"
            )
        flags[word] = value
    return flags


class _Model(BaseModel):
    """Base: immutable, no unknown fields, and `ConfigError` instead of `ValidationError`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    _what: ClassVar[str] = "config"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, self._what)) from None

    def replace(self, **changes: Any) -> Any:
        """A validated copy with `changes` applied (unlike `model_copy`, which skips validation)."""
        return type(self)(**{**self._fields_as_given(), **changes})

    def _fields_as_given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}


class Capabilities(_Model):
    """What a model supports; the client only sends what the flags allow."""

    _what: ClassVar[str] = "capabilities"

    tools: bool = False
    vision: bool = False
    prompt_cache: bool = False
    json_mode: bool = Field(False, alias="json")
    json_schema: bool = False
    """The server constrains replies to a JSON schema (structured outputs); a typed call
    (``schema=``) then sends its schema as ``response_format``, not only in the prompt."""
    reasoning: bool = False
    """The model thinks before it answers (its thinking may stream apart); --effort needs it."""
    embeddings: bool = False
    """The model turns text into vectors (``nbllm.embed``); the endpoint check tests that."""
    streaming: bool = True
    include_usage: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_names(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, str | list | tuple):
            return _to_aliases(parse_capability_names(data))
        if isinstance(data, dict):
            return {CAPABILITY_ALIASES.get(k, k): v for k, v in data.items()}
        return data

    def with_flags(self, flags: Mapping[str, bool]) -> Capabilities:
        """A copy with the named flags set (names as in `parse_capability_names`)."""
        current = self.as_flags()
        current.update(flags)
        return Capabilities(**_to_aliases(current))

    def as_flags(self) -> dict[str, bool]:
        """Every capability by its public name (``json``, not ``json_mode``)."""
        return {
            "tools": self.tools,
            "vision": self.vision,
            "prompt_cache": self.prompt_cache,
            "json": self.json_mode,
            "json_schema": self.json_schema,
            "reasoning": self.reasoning,
            "embeddings": self.embeddings,
            "streaming": self.streaming,
            "include_usage": self.include_usage,
        }

    def enabled(self) -> list[str]:
        """Names of the capabilities that are on."""
        return [name for name, on in self.as_flags().items() if on]


def _to_aliases(flags: Mapping[str, bool]) -> dict[str, bool]:
    return {("json" if k == "json_mode" else k): v for k, v in flags.items()}


class Price(_Model):
    """A model's price in dollars per million tokens, read (prompt) and written (completion).
    YAML and ``--price`` take it as ``IN,OUT``, e.g. ``2.5,10``."""

    _what: ClassVar[str] = "price"

    input_per_million: float = Field(ge=0, allow_inf_nan=False)
    output_per_million: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _pair(cls, data: Any) -> Any:
        return _price_fields(data)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for a call with these token counts."""
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6

    def __str__(self) -> str:
        return f"{self.input_per_million:g},{self.output_per_million:g}"


def _price_fields(data: Any) -> Any:
    """``IN,OUT`` text or a two-item list as `Price`'s two fields; anything else as given."""
    if isinstance(data, str):
        data = [part.strip() for part in data.split(",")]
    if isinstance(data, list | tuple):
        if len(data) != 2:
            raise ValueError(f"give two prices, IN,OUT (dollars per million tokens), not {data!r}")
        try:
            read, written = (float(part) for part in data)
        except (TypeError, ValueError):
            raise ValueError(f"prices should be numbers, IN,OUT (e.g. 2.5,10), not {data!r}") from None
        return {"input_per_million": read, "output_per_million": written}
    return data


def parse_price(text: str) -> Price:
    """``IN,OUT`` (dollars per million prompt and completion tokens) as a `Price`."""
    try:
        return Price(**_price_fields(text))
    except ValueError as exc:
        raise ConfigError(f"--price: {exc}") from None


class ModelSpec(_Model):
    """One model a provider serves. The id is the key in `ProviderConfig.models`."""

    _what: ClassVar[str] = "model"

    context_window: int | None = None
    capabilities: Capabilities = Field(default_factory=Capabilities)
    price: Price | None = None
    """What the provider charges, to estimate each call's cost (a server-reported cost wins)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # YAML shorthand: `gpt-4o: 128000`, `gpt-4o:` (nothing), `caps: [tools, vision]`.
        if data is None:
            return {}
        if isinstance(data, int) and not isinstance(data, bool):
            return {"context_window": data}
        if isinstance(data, dict) and "caps" in data:
            data = dict(data)
            data["capabilities"] = data.pop("caps")
        return data

    @field_validator("context_window", mode="before")
    @classmethod
    def _positive_window(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"must be a positive whole number of tokens, got {value!r}; "
                "e.g. 32768, or leave it out if unknown"
            )
        return value


class RetryPolicy(_Model):
    """How failed calls are retried. Delays are computed in `nbllm._calls.retry`."""

    _what: ClassVar[str] = "retry"

    max_retries: int = Field(_constants.MAX_RETRIES, ge=0, le=10)
    retry_after_ceiling_s: float = Field(_constants.RETRY_AFTER_CEILING_S, gt=0)
    backoff_base_s: float = Field(_constants.BACKOFF_BASE_S, ge=0)
    backoff_max_s: float = Field(_constants.BACKOFF_MAX_S, ge=0)


class ProviderConfig(_Model):
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
        for field in ("name", "url", "api_version", "auth", "key_env", "key_keyring"):
            if isinstance(data.get(field), str):
                data[field] = expand_vars(data[field], field)
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
            if not _HEADER_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if not secret.get_secret_value().isascii():
                # The value is not echoed: it may be a token.
                raise ValueError(
                    f"header {name}'s value has non-ASCII characters, which HTTP headers cannot carry"
                )
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

    def header_templates(self) -> dict[str, str]:
        """Extra headers as written (``${VAR}`` not yet expanded)."""
        return {name: value.get_secret_value() for name, value in self.headers.items()}

    def unsaved_headers(self) -> list[str]:
        """Headers that hold a literal secret, which a config file must not store."""
        return [
            name
            for name, value in self.header_templates().items()
            if is_sensitive_header(name) and not _VAR_RE.search(value)
        ]

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


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """One line per problem: the field's path and the fix. Never echoes a secret field's value."""
    lines = [f"{loc}: {message}" if loc else message for loc, message in _problems(exc)]
    prefix = f"invalid {what}: " if len(lines) == 1 else f"invalid {what}:\n  "
    return prefix + "\n  ".join(lines)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, ConfigError) and isinstance(nested.__context__, ValidationError):
            # A nested model (pydantic runs its custom __init__) already failed: keep its
            # problems, with their paths under this one.
            for inner_loc, message in _problems(nested.__context__):
                problems.append((".".join(filter(None, (loc, inner_loc))), message))
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        secret = any(part in _SECRET_FIELDS for part in error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown field; check its spelling"
        elif error["type"] not in ("value_error", "assertion_error") and not secret:
            message += f" (got {error.get('input')!r})"
        problems.append((loc, message))
    return problems
