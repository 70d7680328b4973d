"""The panel's model rows: one per model of the selected provider, with its context window,
its capability checkboxes and a Remove button. Every edit goes through the store, which
validates it; a refused edit reverts the row and reports why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from nbllm._exceptions import NbllmError
from nbllm._providers.models import CAPABILITY_NAMES, ModelSpec, parse_price
from nbllm._providers.store import Store

Report = Callable[[str, bool], None]
"""Shows a message in the panel: (text, ok)."""


def window_text(spec: ModelSpec) -> str:
    return "" if spec.context_window is None else str(spec.context_window)


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
        layout=widgets.Layout(width=width),
    )
    box.add_class(css_class)
    return box


def price_text(spec: ModelSpec) -> str:
    return "" if spec.price is None else str(spec.price)


class ModelRow(widgets.HBox):  # type: ignore[misc]
    """One model: id, context window, price, capability checkboxes, Remove."""

    def __init__(self, store: Store, provider: str, model: str, spec: ModelSpec, report: Report) -> None:
        self.store, self.provider, self.model, self.report = store, provider, model, report
        self._syncing = False
        self.label = widgets.Label(model, layout=widgets.Layout(width="16em"))
        self.label.add_class("nbllm-model-id")
        self.context = _field("context", "unknown", "14em", "nbllm-context")
        self.price = _field("price", "IN,OUT $/M tokens", "16em", "nbllm-price")
        self.flags = {
            name: widgets.Checkbox(description=name, indent=False, layout=widgets.Layout(width="auto"))
            for name in CAPABILITY_NAMES
        }
        for name, box in self.flags.items():
            box.add_class(f"nbllm-flag-{name}")
            box.observe(lambda change, name=name: self._flag_changed(name, change["new"]), "value")
        self.remove_button = widgets.Button(description="Remove", button_style="warning")
        self.remove_button.on_click(lambda _: self.remove())
        self.context.observe(lambda change: self._window_changed(change["new"]), "value")
        self.price.observe(lambda change: self._price_changed(change["new"]), "value")
        super().__init__([self.label, self.context, self.price, *self.flags.values(), self.remove_button])
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
