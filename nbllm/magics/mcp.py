"""``%llm_mcp``: MCP servers as tool sources (see `nbllm._cells.mcp_servers`).

%llm_mcp add NAME [--trust-read-only] -- COMMAND ARGS...   a server started over stdio
%llm_mcp add NAME --url URL [--trust-read-only]            a streamable-HTTP server
%llm_mcp list | tools NAME | remove NAME
"""

from __future__ import annotations

import html
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import HTML, display

USAGE = (
    "%llm_mcp add NAME [--trust-read-only] -- COMMAND ARGS | %llm_mcp add NAME --url URL | "
    "%llm_mcp list | %llm_mcp tools NAME | %llm_mcp remove NAME"
)


@magics_class
class McpMagics(Magics):
    @line_magic
    def llm_mcp(self, line: str) -> None:
        """MCP servers as tool sources for %%chat --tools mcp:NAME (or mcp:NAME/TOOL)."""
        from nbllm._cells.mcp_servers import McpServer, get_mcp_servers, list_tools
        from nbllm._exceptions import NbllmError

        words = shlex.split(line)
        if not words:
            raise UsageError(f"say what to do: {USAGE}")
        action, rest = words[0], words[1:]
        servers = get_mcp_servers()
        try:
            if action == "add":
                command = rest[rest.index("--") + 1 :] if "--" in rest else []
                options = rest[: rest.index("--")] if "--" in rest else rest
                if not options:
                    raise UsageError(f"give the server a name: {USAGE}")
                name, flags = options[0], options[1:]
                url = flags[flags.index("--url") + 1] if "--url" in flags and flags[-1] != "--url" else None
                unknown = [f for f in flags if f not in ("--url", "--trust-read-only", url)]
                if unknown:
                    raise UsageError(f"%llm_mcp add does not take {unknown[0]!r}: {USAGE}")
                if url is not None and not url.startswith(("http://", "https://")):
                    raise UsageError(
                        f"--url needs an http(s) URL, e.g. http://127.0.0.1:8000/mcp, not {url!r}"
                    )
                servers.add(McpServer(name, command, url, trust_read_only="--trust-read-only" in flags))
                print(
                    f"Added MCP server {name!r}; it starts on first use. "
                    f"%llm_mcp tools {name} lists its tools."
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
