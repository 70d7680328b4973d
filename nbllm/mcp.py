"""MCP servers as tool sources, from Python: the same servers as ``%llm_mcp``.

>>> nbllm.mcp.add("time", ["python", "-m", "mcp_server_time"])
>>> nbllm.chat("What time is it in Tokyo?", tools=["mcp:time"])

See `nbllm._cells.mcp_servers` for how a server runs, and why its tools need approval.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from nbllm._cells.mcp_servers import McpServer, get_mcp_servers, list_tools


def add(
    name: str,
    command: str | Sequence[str] | None = None,
    *,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
    trust_read_only: bool = False,
) -> None:
    """Register a server: a `command` started over stdio (a list of words, or one string split
    as a shell would), or a streamable-HTTP `url` with `headers` (``${VAR}`` is read from the
    environment when connecting, and kept as written when saved). It starts on first use.
    `trust_read_only` lets the tools the server hints are read-only run without approval."""
    words = shlex.split(command) if isinstance(command, str) else list(command or [])
    get_mcp_servers().add(McpServer(name, words, url, dict(headers or {}), trust_read_only=trust_read_only))


def remove(name: str) -> None:
    """Stop the server's process and forget it."""
    get_mcp_servers().remove(name)


def servers() -> list[dict[str, Any]]:
    """The registered servers: name, command or URL, whether running, and their PIDs."""
    return [
        {"name": s.name, "where": s.where, "running": s.client is not None, "pids": list(s.pids)}
        for s in get_mcp_servers().servers.values()
    ]


def tools(name: str) -> list[dict[str, Any]]:
    """The server's tools (starting it if needed): name, description (the server's own words,
    untrusted) and whether it hints it only reads."""
    return [
        {
            "name": tool.name,
            "description": tool.description or "",
            "read_only_hint": bool(getattr(getattr(tool, "annotations", None), "read_only_hint", None)),
        }
        for tool in list_tools(name)
    ]


def call(name: str, tool: str, arguments: Mapping[str, Any] | None = None) -> str:
    """Run one tool of a server yourself (a tool call a model returned from ``nbllm.chat``, say)
    and get its result as the model would read it (images named in the text)."""
    from nbllm._calls.loop_thread import loop_thread
    from nbllm._cells.mcp_servers import tools_of

    found = tools_of(f"mcp:{name}/{tool}")[tool]
    output = loop_thread().run(found.function(dict(arguments or {})))
    return str(output.text)
