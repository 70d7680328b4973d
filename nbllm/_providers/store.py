"""The session store: registered providers, their models, the default model.

It resolves model names by DESIGN's rules and tells observers (the panel) about
every change. It is shared by the magics, the Python API and the background
event-loop thread, so every read and write holds one lock.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nbllm import _constants
from nbllm._exceptions import (
    AmbiguousModelError,
    ConfigError,
    NameResolutionError,
    ProviderExistsError,
    ProviderNotFoundError,
    UnknownModelError,
)
from nbllm._observers import Observers
from nbllm._providers.config import ProviderConfig
from nbllm._providers.models import ModelSpec, Price
from nbllm._providers.resolved import Resolved
from nbllm._providers.secret_text import looks_like_key
from nbllm._session import session

ADD_PROVIDER_HINT = "%llm_provider add NAME --url http://localhost:8000/v1 --model MODEL_ID"


@dataclass(frozen=True)
class StoreEvent:
    """What changed: `kind` is one of provider_added, provider_replaced,
    provider_removed, model_added, model_changed, model_removed, default_changed."""

    kind: str
    provider: str | None = None
    model: str | None = None


Listener = Callable[[StoreEvent], None]


class _Unset:
    """Type of `UNSET`: "not given", as opposed to None ("clear it")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class Store:
    """Providers and models of this session."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._providers: dict[str, ProviderConfig] = {}
        self._default: tuple[str, str] | None = None
        self._observers = Observers("store")

    # -- observing -------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every change; returns a function that unsubscribes."""
        return self._observers.subscribe(listener)

    def _emit(self, kind: str, provider: str | None = None, model: str | None = None) -> None:
        self._observers.emit(StoreEvent(kind, provider, model))

    # -- providers -------------------------------------------------------------

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        """A snapshot of the registered providers, by name."""
        with self._lock:
            return dict(self._providers)

    def provider(self, name: str) -> ProviderConfig:
        """The provider registered as `name`; raises `ProviderNotFoundError` otherwise."""
        with self._lock:
            try:
                return self._providers[name]
            except KeyError:
                raise ProviderNotFoundError(
                    f"no provider named {name!r}",
                    hint=self._provider_hint(name),
                ) from None

    def add_provider(self, config: ProviderConfig, *, replace: bool = False) -> None:
        """Register `config`; with `replace`, an existing provider of that name is replaced."""
        if not isinstance(config, ProviderConfig):
            raise ConfigError(f"add_provider takes a ProviderConfig, got {type(config).__name__}")
        with self._lock:
            existed = config.name in self._providers
            if existed and not replace:
                raise ProviderExistsError(
                    f"a provider named {config.name!r} is already registered",
                    hint=f"pass replace=True, or remove it first with %llm_provider remove {config.name}",
                )
            self._providers[config.name] = config
            self._drop_stale_default()
        self._emit("provider_replaced" if existed else "provider_added", config.name)

    def remove_provider(self, name: str) -> ProviderConfig:
        """Unregister `name` (and the default model, if it was one of its models); returns its config."""
        with self._lock:
            config = self.provider(name)
            del self._providers[name]
            default_lost = self._drop_stale_default()
        self._emit("provider_removed", name)
        if default_lost:
            self._emit("default_changed")
        return config

    def update_provider(self, name: str, /, **changes: Any) -> ProviderConfig:
        """Apply validated `changes` to provider `name` (its name cannot change here)."""
        if "name" in changes and changes["name"] != name:
            raise ConfigError("a provider's name cannot be edited; add a new one and remove this")
        with self._lock:
            updated: ProviderConfig = self.provider(name).replace(**changes)
            self._providers[name] = updated
            self._drop_stale_default()
        self._emit("provider_replaced", name)
        return updated

    # -- models ----------------------------------------------------------------

    def add_model(self, provider: str, model: str, spec: ModelSpec | None = None) -> None:
        """Declare one more model of `provider`; refuses an id it already declares."""
        with self._lock:
            config = self.provider(provider)
            if model in config.models:
                raise ConfigError(
                    f"provider {provider!r} already has model {model!r}",
                    hint=f"change it with %llm_provider model {provider} set {model} --context N",
                )
            models = {**config.models, model: spec or ModelSpec()}
            self._providers[provider] = config.replace(models=models)
        self._emit("model_added", provider, model)

    def set_model(self, provider: str, model: str, spec: ModelSpec) -> None:
        """Replace the spec of an existing model."""
        with self._lock:
            config = self.provider(provider)
            self._require_model(config, model)
            self._providers[provider] = config.replace(models={**config.models, model: spec})
        self._emit("model_changed", provider, model)

    def update_model(
        self,
        provider: str,
        model: str,
        *,
        context_window: int | _Unset | None = UNSET,
        flags: Mapping[str, bool] | None = None,
        price: Price | _Unset | None = UNSET,
    ) -> ModelSpec:
        """Change a model's context window (None clears it), some capability flags and/or its
        price (None clears it)."""
        with self._lock:
            config = self.provider(provider)
            self._require_model(config, model)
            spec = config.models[model]
            changes: dict[str, Any] = {}
            if not isinstance(context_window, _Unset):
                changes["context_window"] = context_window
            if not isinstance(price, _Unset):
                changes["price"] = price
            if flags:
                changes["capabilities"] = spec.capabilities.with_flags(flags)
            updated: ModelSpec = spec.replace(**changes)
            self._providers[provider] = config.replace(models={**config.models, model: updated})
        self._emit("model_changed", provider, model)
        return updated

    def remove_model(self, provider: str, model: str) -> None:
        """Stop declaring `model` on `provider` (and unset it as the default if it was)."""
        with self._lock:
            config = self.provider(provider)
            self._require_model(config, model)
            models = {k: v for k, v in config.models.items() if k != model}
            self._providers[provider] = config.replace(models=models)
            default_lost = self._drop_stale_default()
        self._emit("model_removed", provider, model)
        if default_lost:
            self._emit("default_changed")

    @staticmethod
    def _require_model(config: ProviderConfig, model: str) -> None:
        if model not in config.models:
            known = ", ".join(config.models) or "none yet"
            raise ConfigError(
                f"provider {config.name!r} has no model {model!r} (its models: {known})",
                hint=f"add it with %llm_provider model {config.name} add {model}",
            )

    # -- default model ---------------------------------------------------------

    @property
    def default(self) -> str | None:
        """The default model's qualified name, or None."""
        with self._lock:
            return "/".join(self._default) if self._default else None

    def set_default(self, name: str | None) -> str | None:
        """Make `name` (any resolvable form) the default; None clears it."""
        with self._lock:
            if name is None:
                self._default = None
            else:
                resolved = self.resolve(name)
                self._default = (resolved.provider.name, resolved.model)
        self._emit("default_changed")
        return self.default

    def _drop_stale_default(self) -> bool:
        if self._default is None:
            return False
        provider, model = self._default
        config = self._providers.get(provider)
        if config is None or model not in config.models:
            self._default = None
            return True
        return False

    # -- resolution ------------------------------------------------------------

    def qualified_names(self) -> list[str]:
        """Every registered model as ``provider/model``, in registration order."""
        with self._lock:
            return [f"{p.name}/{m}" for p in self._providers.values() for m in p.models]

    def resolve(self, name: str | None = None) -> Resolved:
        """Resolve a model name to one provider and model.

        ``provider/model`` is qualified when the part before the first ``/`` is
        a provider that declares the rest. Otherwise the whole string is a bare
        id that exactly one provider must declare. A string valid both ways is
        ambiguous. With no name: the default model, else the only model.
        """
        with self._lock:
            if name is None or not name.strip():
                return self._resolve_unnamed()
            name = name.strip()
            qualified = self._qualified_match(name)
            bare = [Resolved(p, name, p.models[name]) for p in self._providers.values() if name in p.models]
            matches = ([qualified] if qualified else []) + bare
            if len(matches) == 1:
                return matches[0]
            if matches:
                choices = [m.qualified_name for m in matches]
                raise AmbiguousModelError(
                    f"model {name!r} is ambiguous: it could be {_or_list(choices)}",
                    choices=choices,
                    hint="write the qualified name, e.g. %%chat " + choices[0],
                )
            raise self._unknown(name)

    def _qualified_match(self, name: str) -> Resolved | None:
        provider, sep, model = name.partition("/")
        config = self._providers.get(provider)
        if sep and config is not None and model in config.models:
            return Resolved(config, model, config.models[model])
        return None

    def _resolve_unnamed(self) -> Resolved:
        if self._default is not None:
            provider, model = self._default
            config = self._providers[provider]
            return Resolved(config, model, config.models[model])
        every = [(p, m) for p in self._providers.values() for m in p.models]
        if len(every) == 1:
            config, model = every[0]
            return Resolved(config, model, config.models[model])
        if not every:
            raise NameResolutionError(
                "no model given and no model registered",
                hint=f"register one with {ADD_PROVIDER_HINT}",
            )
        raise NameResolutionError(
            f"no model given and no default model among {len(every)} registered",
            hint="name one (%%chat PROVIDER/MODEL) or set a default with "
            f"%llm_provider default {every[0][0].name}/{every[0][1]}",
        )

    def _unknown(self, name: str) -> UnknownModelError:
        provider, sep, model = name.partition("/")
        candidates = self.qualified_names() + [m for p in self._providers.values() for m in p.models]
        suggestions = list(
            dict.fromkeys(
                difflib.get_close_matches(
                    name,
                    candidates,
                    n=_constants.MAX_SUGGESTIONS,
                    cutoff=_constants.SUGGESTION_CUTOFF,
                )
            )
        )
        if not suggestions and looks_like_key(name):
            # Nothing registered is close: this may be a key pasted in the wrong place.
            return UnknownModelError(
                "unknown model (the name given looks like a key, so it is not shown)",
                suggestions=[],
                hint="give a model name, e.g. %%chat provider/model; keys go in --key-env VAR",
            )
        if sep and provider in self._providers:
            config = self._providers[provider]
            message = f"provider {provider!r} has no model {model!r}"
            hint = f"add it with %llm_provider model {provider} add {model}"
        elif not self._providers:
            message = f"unknown model {name!r}: no provider is registered"
            hint = f"register one with {ADD_PROVIDER_HINT}"
            config = None
        else:
            message = f"unknown model {name!r}: no registered provider declares it"
            hint = "see the registered models with %llm_provider list"
            config = None
        if suggestions:
            message += f"; did you mean {_or_list(suggestions)}?"
            # The close match first; adding the typed id is offered only when nothing is close.
            hint = f"use {suggestions[0]}" + (
                f", or if {model!r} is really served there: %llm_provider model {provider} add {model}"
                if config is not None
                else ""
            )
        elif config is not None and config.models:
            message += f" (its models: {', '.join(config.models)})"
        return UnknownModelError(message, suggestions=suggestions, hint=hint)

    def _provider_hint(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._providers), n=1)
        if close:
            return f"did you mean {close[0]!r}? See %llm_provider list"
        return f"see %llm_provider list, or register it with {ADD_PROVIDER_HINT}"

    def clear(self) -> None:
        """Forget every provider and the default (tests and `%llm_provider load --replace`)."""
        with self._lock:
            names = list(self._providers)
            self._providers.clear()
            self._default = None
        for name in names:
            self._emit("provider_removed", name)
        self._emit("default_changed")


def _or_list(items: list[str]) -> str:
    quoted = [repr(i) for i in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def get_store() -> Store:
    """The session store that the magics, the panel and the Python API share."""
    return session().part(Store)
