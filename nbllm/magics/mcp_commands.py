"""``%llm_mcp``: MCP servers as tool sources (see `nbllm._cells.mcp_servers`).

%llm_mcp add NAME [--trust-read-only] -- COMMAND ARGS...   a server started over stdio
%llm_mcp add NAME --url URL [--header NAME=VALUE]... [--trust-read-only]   over streamable HTTP
%llm_mcp list | tools NAME | remove NAME
"""

from __future__ import annotations

import html
import shlex
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from IPython.display import HTML, display

if TYPE_CHECKING:
    from nbllm._cells.mcp_servers import McpServer

USAGE = (
    "%llm_mcp add NAME [--trust-read-only] -- COMMAND ARGS | "
    "%llm_mcp add NAME --url URL [--header NAME=VALUE] [--trust-read-only] | "
    "%llm_mcp list | %llm_mcp tools NAME | %llm_mcp remove NAME"
)


@magics_class
class McpMagics(Magics):
    @no_var_expand  # {expr} expanded, ${VAR} kept for nbllm: see expand_line
    @line_magic
    def llm_mcp(self, line: str) -> None:
        """MCP servers as tool sources for %%chat --tools mcp:NAME (or mcp:NAME/TOOL)."""
        from nbllm.magics.parsing import expand_line

        line = expand_line(self.shell, line)
        from nbllm._cells.mcp_servers import get_mcp_servers, list_tools
        from nbllm._exceptions import NbllmError

        words = shlex.split(line)
        if not words:
            raise UsageError(f"say what to do: {USAGE}")
        action, rest = words[0], words[1:]
        servers = get_mcp_servers()
        try:
            if action == "add":
                server = _server(rest)
                servers.add(server)
                print(
                    f"Added MCP server {server.name!r}; it starts on first use. "
                    f"%llm_mcp tools {server.name} lists its tools."
                )
            elif action == "list":
                if not servers.servers:
                    print("No MCP servers. Add one with %llm_mcp add NAME -- COMMAND ARGS")
                for server in servers.servers.values():
                    state = (
                        f"running (pid {', '.join(map(str, server.pids))})"
                        if server.client
                        else "not started"
                    )
                    trust = ", read-only hints trusted" if server.trust_read_only else ""
                    print(f"{server.name}: {server.where} [{state}{trust}]")
            elif action == "tools" and len(rest) == 1:
                tools = list_tools(rest[0])
                rows = []
                for tool in tools:
                    hint = getattr(getattr(tool, "annotations", None), "read_only_hint", None)
                    rows.append(
                        f"<tr><td><code>{html.escape(tool.name)}</code></td>"
                        f"<td>{'read-only (hint)' if hint else ''}</td>"
                        f"<td>{html.escape((tool.description or '')[:400])}</td></tr>"
                    )
                display(
                    HTML(
                        f"<p>MCP server <b>{html.escape(rest[0])}</b>: {len(tools)} tools. Their "
                        "descriptions are the server's own words, not instructions from you.</p>"
                        "<table><tr><th>tool</th>"
                        f"<th></th><th>description</th></tr>{''.join(rows)}</table>"
                    )
                )
            elif action == "remove" and len(rest) == 1:
                servers.remove(rest[0])
                print(f"Removed MCP server {rest[0]!r}; its process is stopped.")
            else:
                raise UsageError(f"unknown %llm_mcp command {line!r}: {USAGE}")
        except NbllmError as exc:
            raise UsageError(str(exc)) from None


def _server(words: list[str]) -> McpServer:
    """``NAME [--url URL] [--header H=V]... [--trust-read-only] [-- COMMAND ARGS]``."""
    from nbllm._cells.mcp_servers import McpServer
    from nbllm.magics.parsing import parse_headers

    command = words[words.index("--") + 1 :] if "--" in words else []
    options = words[: words.index("--")] if "--" in words else words
    if not options or options[0].startswith("-"):
        raise UsageError(f"give the server a name: {USAGE}")
    name, url, headers, trust = options[0], None, [], False
    flags = iter(options[1:])
    for flag in flags:
        if flag == "--trust-read-only":
            trust = True
        elif flag in ("--url", "--header"):
            value = next(flags, None)
            if value is None:
                raise UsageError(f"{flag} needs a value: {USAGE}")
            if flag == "--url":
                url = value
            else:
                headers.append(value)
        elif flag.startswith("-"):
            raise UsageError(f"%llm_mcp add does not take {flag!r}: {USAGE}")
        else:  # not echoed: an unquoted header value's second word may be a token
            raise UsageError(
                "a word after the options is not one of them; quote a header value with spaces: "
                '--header "Authorization=Bearer ${TOKEN}"'
            )
    return McpServer(name, command, url, parse_headers(headers), trust_read_only=trust)
