"""`%llm_panel`: shows the widget panel (`nbllm._panel`)."""

from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class


@magics_class
class PanelMagics(Magics):
    @line_magic
    def llm_panel(self, line: str) -> None:
        """Open the nbllm panel: providers, models, capability flags, keys, and the call history."""
        from IPython.display import display

        # Imported here: ipywidgets would otherwise add to every %load_ext nbllm.
        from nbllm._panel import Panel

        display(Panel())
