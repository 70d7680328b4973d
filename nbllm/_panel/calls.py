"""The panel's Calls tab: calls in flight with a Stop button each, the recent history
(time, model, status, time to first token, latency, tokens, tokens/s, error), error
counts and the latency chart. It redraws on history and in-flight events, which are
cheap: one HTML string per event, no polling."""

from __future__ import annotations

import html

import ipywidgets as widgets

from nbllm._calls.budget import get_budget
from nbllm._calls.history import History
from nbllm._cells.inflight import InFlight, RunningCall
from nbllm._panel.latency_chart import latency_chart_svg
from nbllm._views.tables import HistoryTable

SHOWN_CALLS = 20
"""Rows of history in the panel (`%llm_history -n` shows more)."""
CHARTED_CALLS = 60


class CallsTab(widgets.VBox):  # type: ignore[misc]
    def __init__(self, history: History, in_flight: InFlight) -> None:
        self.history, self.in_flight = history, in_flight
        self.running = widgets.VBox()
        self.running.add_class("nbllm-running")
        self.table = widgets.HTML()
        self.table.add_class("nbllm-history")
        self.chart = widgets.HTML()
        self.chart.add_class("nbllm-latency")
        self.spending = widgets.HTML()
        self.spending.add_class("nbllm-spending")
        super().__init__(
            [
                widgets.HTML("<b>In flight</b>"),
                self.running,
                widgets.HTML("<b>Recent calls</b>"),
                self.spending,
                self.table,
                widgets.HTML("<b>Latency per model</b>"),
                self.chart,
            ]
        )
        self.refresh_running()
        self.refresh_history()

    def refresh_history(self, *_: object) -> None:
        records = self.history.records()
        self.table.value = HistoryTable(records[-SHOWN_CALLS:], self.history.summaries())._repr_html_()
        models = [r for r in records if r.kind != "tool"]  # the chart is the models' latency
        self.chart.value = latency_chart_svg(models[-CHARTED_CALLS:])
        self.spending.value = html.escape(get_budget().summary())

    def refresh_running(self) -> None:
        calls = self.in_flight.calls()
        if not calls:
            self.running.children = [widgets.HTML("<i>none</i>")]
            return
        self.running.children = [self._running_row(call) for call in calls]

    def _running_row(self, call: RunningCall) -> widgets.HBox:
        started = call.started_at.astimezone().strftime("%H:%M:%S")
        stop = widgets.Button(description="Stop", button_style="danger", tooltip=f"Stop {call.model}")
        stop.add_class("nbllm-stop")
        stop.on_click(lambda _: self.stop(call.id))
        return widgets.HBox([widgets.HTML(f"{html.escape(call.model)} (since {started})"), stop])

    def stop(self, call_id: int | None = None) -> bool:
        """Stop one call (by default the oldest in flight); what the Stop button does."""
        calls = self.in_flight.calls()
        if call_id is None and calls:
            call_id = calls[0].id
        return call_id is not None and self.in_flight.stop(call_id)
