"""nbllm: any OpenAI-compatible LLM endpoint in a Jupyter notebook.

``%load_ext nbllm`` registers the magics and loads saved providers.
"""

from __future__ import annotations

import sys
from typing import Any

from nbllm._config import Capabilities, ModelSpec, ProviderConfig, RetryPolicy
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
from nbllm._store import Resolved, Store, StoreEvent, get_store

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AmbiguousModelError",
    "AuthenticationError",
    "BadRequestError",
    "Capabilities",
    "ConfigError",
    "ConfigFileError",
    "ConnectionError",
    "ContextTooLongError",
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
    "Store",
    "StoreEvent",
    "StreamError",
    "TimeoutError",
    "TransportError",
    "UnknownModelError",
    "__version__",
    "get_store",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbllm``: register the magics, then load saved providers if there are any."""
    from nbllm import _persist
    from nbllm.magics import ProviderMagics

    ipython.register_magics(ProviderMagics)
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
