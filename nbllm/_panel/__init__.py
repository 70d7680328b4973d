"""The panel (`nbllm.panel()`, `%llm_panel`): an ipywidgets panel over the session store and
the call history.

It is composed of the Providers tab (`providers`), the Calls tab (`calls`), the MCP tab
(`mcp`), the default-model selector and one message line where every action reports what it did or
why it was refused. It subscribes to store, history
and in-flight events, so magics and calls show up while it is open; `close()`
unsubscribes. Every control is an attribute, and every button has a method, so tests
drive it without a browser (``panel.providers.apply_button.click()``).
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from nbllm._calls.history import History, get_history
from nbllm._cells.inflight import InFlight, get_in_flight
from nbllm._cells.mcp_servers import get_mcp_servers
from nbllm._panel.calls import CallsTab
from nbllm._panel.mcp_tab import McpTab
from nbllm._panel.providers import ProvidersTab
from nbllm._providers.store import Store, StoreEvent, get_store

NO_DEFAULT = ""
PANEL_CSS = (
    "<style>"
    # A long model id is cut with an ellipsis before its Remove button, not run under it: the
    # HTML widget's wrappers must be allowed to shrink (a flex item keeps its content's width
    # unless told otherwise).
    ".nbllm-model-id,.nbllm-model-id .widget-html-content{min-width:0;overflow:hidden;flex:1 1 auto}"
    "</style>"
)


class Panel(widgets.VBox):  # type: ignore[misc]
    """Providers, models, capability flags, keys (write-only) and the call history."""

    def __init__(
        self, store: Store | None = None, history: History | None = None, in_flight: InFlight | None = None
    ) -> None:
        self.store = store or get_store()
        self.history = history or get_history()
        self.in_flight = in_flight or get_in_flight()
        self.message = widgets.HTML()
        self.message.add_class("nbllm-message")
        self.messages: list[tuple[str, bool]] = []
        """Every report this panel showed, newest last (tests read it)."""
        self.default_model = widgets.Dropdown(description="default", layout=widgets.Layout(width="30em"))
        self.default_model.add_class("nbllm-default")
        self.default_model.observe(lambda change: self._default_chosen(change["new"]), "value")
        self._syncing = False
        self.providers = ProvidersTab(self.store, self.report)
        self.calls = CallsTab(self.history, self.in_flight)
        self.mcp = McpTab(get_mcp_servers())
        self.tabs = widgets.Tab(
            children=[self.providers, self.calls, self.mcp], titles=("Providers", "Calls", "MCP")
        )
        super().__init__(
            [widgets.HTML(f"{PANEL_CSS}<b>nbllm</b>"), self.default_model, self.tabs, self.message]
        )
        self.add_class("nbllm-panel")
        self._show_default()
        self._unsubscribe = [
            self.store.subscribe(self._store_changed),
            self.history.subscribe(self.calls.refresh_history),
            self.in_flight.subscribe(self.calls.refresh_running),
            self.mcp.servers.changes.subscribe(self.mcp.refresh),
        ]

    def report(self, text: str, ok: bool) -> None:
        """Show the outcome of the last action (a refusal says what was wrong and what to do)."""
        self.messages.append((text, ok))
        color = "green" if ok else "#c00"
        mark = "\N{CHECK MARK}" if ok else "\N{BALLOT X}"
        body = html.escape(text).replace("\n", "<br>")
        self.message.value = f"<span style='color:{color}'>{mark} {body}</span>"

    def _store_changed(self, event: StoreEvent) -> None:
        self.providers.refresh(event)
        self._show_default()

    def _show_default(self) -> None:
        names = self.store.qualified_names()
        self._syncing = True
        try:
            self.default_model.options = [("(none)", NO_DEFAULT)] + [(n, n) for n in names]
            self.default_model.value = self.store.default or NO_DEFAULT
        finally:
            self._syncing = False

    def _default_chosen(self, name: str) -> None:
        if self._syncing:
            return
        self.store.set_default(name or None)
        self.report(f"Default model: {name or 'none'}", True)

    def close(self) -> None:
        """Stop following the store and the history, then close the widgets."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        super().close()

    def __repr__(self) -> str:
        return f"<nbllm Panel: {len(self.store.providers)} providers, {len(self.history.records())} calls>"
