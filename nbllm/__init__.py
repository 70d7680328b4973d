"""nbllm: any OpenAI-compatible LLM endpoint in a Jupyter notebook.

``%load_ext nbllm`` registers the magics and loads saved providers.
"""

from __future__ import annotations

import sys
from typing import Any

from nbllm._api import achat, astream, chat, history
from nbllm._chat import last
from nbllm._config import Capabilities, ModelSpec, ProviderConfig, RetryPolicy
from nbllm._constants import VERSION as __version__
from nbllm._exceptions import (
    AmbiguousModelError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConfigFileError,
    ConnectionError,
    ContextTooLongError,
    IncompleteStreamError,
    MissingKeyError,
    ModelNotFoundError,
    NameResolutionError,
    NbllmError,
    NotFoundError,
    PermissionDeniedError,
    ProviderExistsError,
    ProviderNotFoundError,
    RateLimitError,
    ServerError,
    StatusError,
    StreamError,
    TimeoutError,
    TransportError,
    UnknownModelError,
)
from nbllm._history import AttemptRecord, CallRecord, History, get_history
from nbllm._results import ChatResult, DoneEvent, StatusEvent, TokenEvent, ToolCall, ToolCallEvent, Usage
from nbllm._store import Resolved, Store, StoreEvent, get_store

__all__ = [
    "APIError",
    "AmbiguousModelError",
    "AttemptRecord",
    "AuthenticationError",
    "BadRequestError",
    "CallRecord",
    "Capabilities",
    "ChatResult",
    "ConfigError",
    "ConfigFileError",
    "ConnectionError",
    "ContextTooLongError",
    "DoneEvent",
    "History",
    "IncompleteStreamError",
    "MissingKeyError",
    "ModelNotFoundError",
    "ModelSpec",
    "NameResolutionError",
    "NbllmError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderConfig",
    "ProviderExistsError",
    "ProviderNotFoundError",
    "RateLimitError",
    "Resolved",
    "RetryPolicy",
    "ServerError",
    "StatusError",
    "StatusEvent",
    "Store",
    "StoreEvent",
    "StreamError",
    "TimeoutError",
    "TokenEvent",
    "ToolCall",
    "ToolCallEvent",
    "TransportError",
    "UnknownModelError",
    "Usage",
    "__version__",
    "achat",
    "astream",
    "chat",
    "get_history",
    "get_store",
    "history",
    "last",
    "load_ipython_extension",
    "panel",
    "unload_ipython_extension",
]


def panel() -> Any:
    """The ipywidgets panel over providers, models and the call history (see `nbllm._panel`)."""
    from nbllm._panel import Panel

    return Panel()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbllm``: register the magics, then load saved providers if there are any."""
    from nbllm import _persist
    from nbllm._panel import PanelMagics
    from nbllm.chat_magics import ChatMagics, chat_cell_transformer
    from nbllm.magics import ProviderMagics

    ipython.register_magics(ProviderMagics)
    ipython.register_magics(PanelMagics)
    chat_magics = ChatMagics(shell=ipython)
    ipython.register_magics(chat_magics)
    if chat_magics not in ipython.configurables:  # so %config ChatMagics.throttle_ms = ... works
        ipython.configurables.append(chat_magics)
    if chat_cell_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(chat_cell_transformer)
    path = _persist.default_config_path()
    if path.exists():
        try:
            report = _persist.load(get_store(), path)
        except NbllmError as exc:
            print(f"nbllm: saved providers were not loaded: {exc}", file=sys.stderr)
        else:
            print(f"nbllm: loaded {report}")


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbllm``: the magics stay registered until the kernel restarts (IPython
    has no unregister); the store is kept so a reload does not lose providers."""
