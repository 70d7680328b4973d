"""The thin IPython layer: magics parse arguments and delegate to the layers below, and
turn nbllm errors into plain `UsageError`. `load_ipython_extension` registers them and the
input transformer that makes a ``%%chat`` cell a top-level ``await``.
"""

from __future__ import annotations

import sys
from typing import Any

from nbllm._cells.notebook_cells import Errors, record_cell
from nbllm._exceptions import NbllmError
from nbllm._providers.paths import default_config_path
from nbllm.magics.chat import ChatMagics, chat_cell_transformer
from nbllm.magics.logbook import LogMagics
from nbllm.magics.mcp_commands import McpMagics
from nbllm.magics.panel import PanelMagics
from nbllm.magics.provider import ProviderMagics
from nbllm.magics.replay import RecordingMagics


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbllm``: register the magics, then load saved providers if there are any."""
    ipython.register_magics(ProviderMagics)
    ipython.register_magics(PanelMagics)
    ipython.register_magics(RecordingMagics)
    ipython.register_magics(McpMagics)
    ipython.register_magics(LogMagics)
    chat_magics = ChatMagics(shell=ipython)
    ipython.register_magics(chat_magics)
    if chat_magics not in ipython.configurables:  # so %config ChatMagics.throttle_ms = ... works
        ipython.configurables.append(chat_magics)
    if chat_cell_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(chat_cell_transformer)
    # The cells the user runs, for %%chat --cells, {Err[n]} and %explain: a few references per
    # cell, nothing computed until a prompt asks (see nbllm._cells.notebook_cells).
    if record_cell not in ipython.events.callbacks["post_run_cell"]:
        ipython.events.register("post_run_cell", record_cell)
    ipython.user_ns.setdefault("Err", Errors())
    _start_records_from_environment()
    path = default_config_path()
    try:
        saved = path.exists()
    except OSError as exc:  # a folder on the way the user cannot search
        print(
            f"nbllm: saved providers were not loaded: cannot look at {path}: {exc.strerror}", file=sys.stderr
        )
        return
    if saved:
        from nbllm._providers.store import get_store  # only when there is something to load
        from nbllm.magics.provider_commands import load_saved

        try:
            report = load_saved(get_store(), path)
        except NbllmError as exc:
            print(f"nbllm: saved providers were not loaded: {exc}", file=sys.stderr)
        else:
            print(f"nbllm: loaded {report}")


def _start_records_from_environment() -> None:
    """``NBLLM_LOG`` (a path, or 1 for the default) and ``NBLLM_OTEL=1`` turn the log and traces
    on at load; their modules are imported only then."""
    import os

    if os.environ.get("NBLLM_LOG"):
        from nbllm._log.writer import get_log

        try:
            print(f"nbllm: logging calls to {get_log().turn_on()}")
        except NbllmError as exc:
            print(f"nbllm: the log (NBLLM_LOG) was not started: {exc}", file=sys.stderr)
    if os.environ.get("NBLLM_OTEL", "") not in ("", "0"):
        from nbllm._log.traces import get_traces

        try:
            get_traces().turn_on(content=os.environ.get("NBLLM_OTEL_CONTENT", "") not in ("", "0"))
        except NbllmError as exc:
            print(f"nbllm: traces (NBLLM_OTEL) were not started: {exc}", file=sys.stderr)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbllm``: the magics stay registered until the kernel restarts (IPython
    has no unregister); the store is kept so a reload does not lose providers."""
