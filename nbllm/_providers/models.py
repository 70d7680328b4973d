"""What a provider serves: each model's context window, capability flags and price
(`ModelSpec`, `Capabilities`, `Price`), and `StrictModel`, the base every configuration model
shares: immutable, no unknown fields, and a `ConfigError` naming the field and the fix instead
of pydantic's `ValidationError`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nbllm._exceptions import ConfigError

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
SECRET_FIELDS = ("key", "headers", "extra_body")
"""A provider's fields that may hold a secret: a validation error never quotes their values."""


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


class StrictModel(BaseModel):
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


class Capabilities(StrictModel):
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


class Price(StrictModel):
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


class ModelSpec(StrictModel):
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
        secret = any(part in SECRET_FIELDS for part in error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown field; check its spelling"
        elif error["type"] not in ("value_error", "assertion_error") and not secret:
            message += f" (got {error.get('input')!r})"
        problems.append((loc, message))
    return problems
