"""The panel's model rows: one per model of the selected provider, with its context window,
its capability checkboxes and a Remove button. Every edit goes through the store, which
validates it; a refused edit reverts the row and reports why.

A row is laid out to fit a narrow notebook (about 870 px beside the provider list at
1,000 px of output): the id on a line of its own, cut with an ellipsis and whole in a
tooltip when long, then the fields and flags as a group that wraps."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from nbllm._exceptions import NbllmError
from nbllm._providers.models import CAPABILITY_NAMES, ModelSpec, parse_price
from nbllm._providers.store import Store

Report = Callable[[str, bool], None]
"""Shows a message in the panel: (text, ok)."""


def window_text(spec: ModelSpec) -> str:
    return "" if spec.context_window is None else f"{spec.context_window:,}"


def parse_window(text: str) -> Any:
    """Blank clears the window; digits become a number; anything else goes to the store as
    typed, so the store's own validation names the problem."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    if not cleaned:
        return None
    return int(cleaned) if cleaned.isdigit() else text


def _field(description: str, placeholder: str, width: str, css_class: str) -> widgets.Text:
    """A text box that reports its value when the user leaves it, not on every key."""
    box = widgets.Text(
        placeholder=placeholder,
        continuous_update=False,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width=width),
    )
    box.add_class(css_class)
    return box


def wrapping(children: list[widgets.Widget]) -> widgets.HBox:
    """A row of controls that wraps onto more lines rather than overflowing a narrow panel."""
    return widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap", align_items="center"))


def one_line(text: str, css_class: str, bold: bool = False) -> widgets.HTML:
    """`text` on one line; when it is too long, cut with an ellipsis and whole in a tooltip."""
    escaped = html.escape(text)
    weight = "font-weight:bold;" if bold else ""
    line = widgets.HTML(
        f"<div title='{escaped}' style='overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
        f"{weight}'>{escaped}</div>",
        layout=widgets.Layout(flex="1 1 auto", min_width="0", width="auto", overflow="hidden"),
    )
    line.add_class(css_class)
    return line


class ConfirmButton(widgets.Button):  # type: ignore[misc]
    """A small button for a destructive action: the first click asks ("Remove: sure?", in
    the danger colour), the second acts."""

    def __init__(self, description: str, action: Callable[[], None], tooltip: str) -> None:
        super().__init__(description=description, icon="trash", tooltip=tooltip)
        self.layout = widgets.Layout(width="auto", flex="0 0 auto")
        self.add_class("nbllm-confirm")
        self.first_description, self.action = description, action
        self.on_click(lambda _: self._clicked())

    @property
    def asking(self) -> bool:
        return self.button_style == "danger"

    def _clicked(self) -> None:
        if not self.asking:
            self.description, self.button_style = f"{self.first_description}: sure?", "danger"
            return
        self.cancel()
        self.action()

    def cancel(self) -> None:
        self.description, self.button_style = self.first_description, ""


def price_text(spec: ModelSpec) -> str:
    return "" if spec.price is None else str(spec.price)


class ModelRow(widgets.VBox):  # type: ignore[misc]
    """One model: its id and Remove on the first line; context window, price and capability
    checkboxes below, wrapping."""

    def __init__(self, store: Store, provider: str, model: str, spec: ModelSpec, report: Report) -> None:
        self.store, self.provider, self.model, self.report = store, provider, model, report
        self._syncing = False
        self.label = one_line(model, "nbllm-model-id", bold=True)
        self.context = _field("context", "unknown", "13em", "nbllm-context")
        self.price = _field("price", "IN,OUT $/M tokens", "17em", "nbllm-price")
        self.flags = {
            name: widgets.Checkbox(description=name, indent=False, layout=widgets.Layout(width="auto"))
            for name in CAPABILITY_NAMES
        }
        for name, box in self.flags.items():
            box.add_class(f"nbllm-flag-{name}")
            box.observe(lambda change, name=name: self._flag_changed(name, change["new"]), "value")
        self.remove_button = ConfirmButton("Remove", self.remove, f"Remove {model} from {provider}")
        self.context.observe(lambda change: self._window_changed(change["new"]), "value")
        self.price.observe(lambda change: self._price_changed(change["new"]), "value")
        header = widgets.HBox(
            [self.label, self.remove_button], layout=widgets.Layout(width="100%", align_items="center")
        )
        details = wrapping([self.context, self.price, *self.flags.values()])
        super().__init__(
            [header, details],
            layout=widgets.Layout(border_bottom="1px solid var(--jp-border-color2, #ddd)", padding="2px 0"),
        )
        self.add_class("nbllm-model-row")
        self.show(spec)

    def show(self, spec: ModelSpec) -> None:
        """Display `spec` without treating it as an edit."""
        self._syncing = True
        try:
            self.context.value = window_text(spec)
            self.price.value = price_text(spec)
            for name, on in spec.capabilities.as_flags().items():
                self.flags[name].value = on
        finally:
            self._syncing = False

    def _current(self) -> ModelSpec | None:
        config = self.store.providers.get(self.provider)
        return None if config is None else config.models.get(self.model)

    def _window_changed(self, text: str) -> None:
        if self._syncing:
            return
        try:
            self.store.update_model(self.provider, self.model, context_window=parse_window(text))
        except NbllmError as exc:
            self.report(f"{self.provider}/{self.model}: {exc.message}", False)
            self._revert()
        else:
            shown = window_text(self._current() or ModelSpec()) or "unknown"
            self.report(f"{self.provider}/{self.model}: context window {shown}", True)

    def _price_changed(self, text: str) -> None:
        """``IN,OUT`` dollars per million tokens; blank clears the price."""
        if self._syncing:
            return
        try:
            price = parse_price(text) if text.strip() else None
            self.store.update_model(self.provider, self.model, price=price)
        except NbllmError as exc:
            self.report(f"{self.provider}/{self.model}: {exc.message}", False)
            self._revert()
        else:
            shown = "cleared"
            if price is not None:
                shown = (
                    f"${price.input_per_million:g} in, ${price.output_per_million:g} out per million tokens"
                )
            self.report(f"{self.provider}/{self.model}: price {shown}", True)

    def _flag_changed(self, name: str, on: bool) -> None:
        if self._syncing:
            return
        try:
            self.store.update_model(self.provider, self.model, flags={name: on})
        except NbllmError as exc:
            self.report(f"{self.provider}/{self.model}: {exc.message}", False)
            self._revert()
        else:
            self.report(f"{self.provider}/{self.model}: {name} {'on' if on else 'off'}", True)

    def _revert(self) -> None:
        spec = self._current()
        if spec is not None:
            self.show(spec)

    def remove(self) -> None:
        try:
            self.store.remove_model(self.provider, self.model)
        except NbllmError as exc:
            self.report(exc.message, False)
        else:
            self.report(f"Removed model {self.provider}/{self.model}", True)

    def __repr__(self) -> str:
        return f"<ModelRow {self.provider}/{self.model}>"
