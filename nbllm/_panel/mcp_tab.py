"""The panel's MCP tab: the session's MCP servers (name, command or URL, running or not, PIDs,
whether their read-only hints are trusted), redrawn when one is added, removed, started or
stopped. Their tool calls are in the Calls tab, as rows of kind ``tool``."""

from __future__ import annotations

import html

import ipywidgets as widgets

from nbllm._cells.mcp_servers import McpServers

EMPTY = (
    "<i>No MCP servers. Add one with <code>%llm_mcp add NAME -- COMMAND ARGS</code> or "
    "<code>%llm_mcp add NAME --url URL</code>, then use it with <code>%%chat --tools mcp:NAME</code>.</i>"
)


class McpTab(widgets.VBox):  # type: ignore[misc]
    def __init__(self, servers: McpServers) -> None:
        self.servers = servers
        self.table = widgets.HTML()
        self.table.add_class("nbllm-mcp")
        super().__init__([self.table])
        self.refresh()

    def refresh(self) -> None:
        servers = list(self.servers.servers.values())
        if not servers:
            self.table.value = EMPTY
            return
        rows = []
        for server in servers:
            state = f"running (pid {', '.join(map(str, server.pids))})" if server.client else "not started"
            trust = "trusted" if server.trust_read_only else "ask for every tool"
            rows.append(
                f"<tr><td><b>{html.escape(server.name)}</b></td>"
                f"<td><code>{html.escape(server.where)}</code></td>"
                f"<td>{state}</td><td>{trust}</td></tr>"
            )
        self.table.value = (
            "<table><tr><th>server</th><th>command or URL</th><th>state</th>"
            f"<th>read-only hints</th></tr>{''.join(rows)}</table>"
        )
