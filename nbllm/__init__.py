"""nbllm: any OpenAI-compatible LLM endpoint in a Jupyter notebook.

``%load_ext nbllm`` registers the magics and loads saved providers.

This module only re-exports. The error tree is imported at once, everything else on first
use (PEP 562): ``import nbllm`` and ``%load_ext nbllm`` do not pay for httpx and pydantic
(about 0.3 s) before a notebook asks for anything, and a plain script never loads IPython.
"""

from __future__ import annotations

import importlib
import typing

from nbllm._exceptions import (
    AmbiguousModelError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetError,
    CapabilityError,
    CassetteError,
    CassetteMissError,
    ConfigError,
    ConfigFileError,
    ContextTooLongError,
    EmptyReplyError,
    IncompleteStreamError,
    InterpolationError,
    LocalModelError,
    LogError,
    MissingKeyError,
    ModelNotFoundError,
    NameResolutionError,
    NbllmError,
    NotFoundError,
    PermissionDeniedError,
    PromptError,
    ProtocolError,
    ProviderExistsError,
    ProviderNotFoundError,
    RateLimitError,
    SchemaMismatchError,
    ServerError,
    StatusError,
    StoppedError,
    StreamError,
    ThinkingBudgetError,
    ToolChoiceIgnoredError,
    ToolError,
    TransportError,
    UnexpectedError,
    UnknownModelError,
)

if typing.TYPE_CHECKING:
    from nbllm._api import (
        achat,
        aembed,
        amap,
        astream,
        budget,
        cassette,
        chat,
        embed,
        export,
        history,
        import_conversation,
        logs,
        map,  # noqa: F401 (nbllm.map: see ATTRIBUTE_ONLY)
        panel,
        response_cache,
        tool_schema,
    )
    from nbllm._calls.history import AttemptRecord, CallRecord, History, get_history, last
    from nbllm._calls.results import (
        ChatResult,
        DoneEvent,
        EmbedResult,
        ReasoningEvent,
        StatusEvent,
        TokenEvent,
        ToolCall,
        ToolCallEvent,
        Usage,
    )
    from nbllm._cells.tools import tool
    from nbllm._providers.config import ProviderConfig, RetryPolicy
    from nbllm._providers.models import Capabilities, ModelSpec, Price
    from nbllm._providers.resolved import Resolved
    from nbllm._providers.store import Store, StoreEvent, get_store
    from nbllm._replay.cache import ResponseCache
    from nbllm._replay.cassette import Cassette
    from nbllm.magics import load_ipython_extension, unload_ipython_extension

_EXPORTS: dict[str, tuple[str, ...]] = {
    "nbllm._api": (
        "achat",
        "aembed",
        "amap",
        "astream",
        "budget",
        "cassette",
        "chat",
        "embed",
        "export",
        "history",
        "import_conversation",
        "logs",
        "map",
        "panel",
        "response_cache",
        "tool_schema",
    ),
    "nbllm._cells.tools": ("tool",),
    "nbllm._replay.cache": ("ResponseCache",),
    "nbllm._replay.cassette": ("Cassette",),
    "nbllm._calls.history": ("AttemptRecord", "CallRecord", "History", "get_history", "last"),
    "nbllm._calls.results": (
        "ChatResult",
        "DoneEvent",
        "EmbedResult",
        "ReasoningEvent",
        "StatusEvent",
        "TokenEvent",
        "ToolCall",
        "ToolCallEvent",
        "Usage",
    ),
    "nbllm._providers.config": ("ProviderConfig", "RetryPolicy"),
    "nbllm._providers.models": ("Capabilities", "ModelSpec", "Price"),
    "nbllm._providers.resolved": ("Resolved",),
    "nbllm._providers.store": ("Store", "StoreEvent", "get_store"),
    "nbllm.magics": ("load_ipython_extension", "unload_ipython_extension"),
}
"""The lazily exported names, by the module each comes from (the TYPE_CHECKING imports above,
at run time)."""

_LAZY = {name: module for module, names in _EXPORTS.items() for name in names}


_SUBMODULES = frozenset({"mcp"})
"""Public submodules reached as attributes (``nbllm.mcp.add``), imported on first use."""


def __getattr__(name: str) -> typing.Any:
    if name == "__version__":
        from nbllm._constants import version

        return version()  # from the package metadata, read on first use
    if name in _SUBMODULES:
        return importlib.import_module(f"nbllm.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


ATTRIBUTE_ONLY = frozenset({"map"})
"""Public as ``nbllm.map`` but left out of `__all__`, so ``from nbllm import *`` never hides the
builtin of the same name."""


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | ATTRIBUTE_ONLY)


__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AmbiguousModelError",
    "AttemptRecord",
    "AuthenticationError",
    "BadRequestError",
    "BudgetError",
    "CallRecord",
    "Capabilities",
    "CapabilityError",
    "Cassette",
    "CassetteError",
    "CassetteMissError",
    "ChatResult",
    "ConfigError",
    "ConfigFileError",
    "ContextTooLongError",
    "DoneEvent",
    "EmbedResult",
    "EmptyReplyError",
    "History",
    "IncompleteStreamError",
    "InterpolationError",
    "LocalModelError",
    "LogError",
    "MissingKeyError",
    "ModelNotFoundError",
    "ModelSpec",
    "NameResolutionError",
    "NbllmError",
    "NotFoundError",
    "PermissionDeniedError",
    "Price",
    "PromptError",
    "ProtocolError",
    "ProviderConfig",
    "ProviderExistsError",
    "ProviderNotFoundError",
    "RateLimitError",
    "ReasoningEvent",
    "Resolved",
    "ResponseCache",
    "RetryPolicy",
    "SchemaMismatchError",
    "ServerError",
    "StatusError",
    "StatusEvent",
    "StoppedError",
    "Store",
    "StoreEvent",
    "StreamError",
    "ThinkingBudgetError",
    "TokenEvent",
    "ToolCall",
    "ToolCallEvent",
    "ToolChoiceIgnoredError",
    "ToolError",
    "TransportError",
    "UnexpectedError",
    "UnknownModelError",
    "Usage",
    "__version__",
    "achat",
    "aembed",
    "amap",
    "astream",
    "budget",
    "cassette",
    "chat",
    "embed",
    "export",
    "get_history",
    "get_store",
    "history",
    "import_conversation",
    "last",
    "load_ipython_extension",
    "logs",
    "panel",
    "response_cache",
    "tool",
    "tool_schema",
    "unload_ipython_extension",
]
