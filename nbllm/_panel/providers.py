"""The panel's Providers tab: the provider list with add and remove, the selected
provider's endpoint settings, its write-only key field, its models, Discover and Test.

Every edit goes through the store (the same validation as `%llm_provider`); a
refused edit shows why and leaves the store as it was. The key never travels to
the front end: the password field starts empty, is not echoed back, and is cleared
as soon as its value has reached the store or the keyring.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from pydantic import SecretStr

from nbllm._calls.doctor import DoctorReport, diagnose, list_models, looks_like_embeddings
from nbllm._constants import REASONING_STYLES
from nbllm._exceptions import ConfigError, NbllmError
from nbllm._panel.fields import KeyField, header_lines, optional_float, parse_header_lines, run_soon
from nbllm._panel.model_rows import ConfirmButton, ModelRow, Report, wrapping
from nbllm._providers.auth import key_status, keyring_module, store_in_keyring
from nbllm._providers.config import ProviderConfig, split_model_arg
from nbllm._providers.models import ModelSpec
from nbllm._providers.store import Store, StoreEvent
from nbllm._views.tables import API_TITLES

BY_HOST = "by host"
"""The "effort as" choice that leaves it to the host (None in the config): a dropdown whose
option value is None shows blank in some front ends."""
DEFAULT_TRUST = "default"
LEFT_WIDTH = "15em"
"""The provider column's fixed width: its buttons and fields fit it whole."""


def _to_option(value: str | None, sentinel: str) -> str:
    return sentinel if value is None else value


def _from_option(value: str, sentinel: str) -> str | None:
    return None if value == sentinel else value


def _text(description: str, placeholder: str = "", width: str = "22em") -> widgets.Text:
    return widgets.Text(
        description=description,
        placeholder=placeholder,
        style={"description_width": "initial"},
        layout=widgets.Layout(width=width),
    )


class ProvidersTab(widgets.VBox):  # type: ignore[misc]
    """Providers on the left; the selected one's settings and models on the right.

    The form shows what every provider needs first (URL, API, auth, key, models);
    headers, timeouts and the network settings are folded sections, which Apply saves
    with the rest."""

    def __init__(self, store: Store, report: Report) -> None:
        self.store, self.report = store, report
        self._syncing = False
        self.discovered: list[str] = []
        self.last_report: DoctorReport | None = None

        full = widgets.Layout(width="100%")
        self.provider_list = widgets.Select(options=[], rows=8, layout=full)
        self.provider_list.add_class("nbllm-provider-list")
        self.provider_list.observe(lambda change: self._selected(), "value")
        self.new_name = widgets.Text(placeholder="name", layout=full)
        self.new_url = widgets.Text(placeholder="http://host:8000/v1", layout=full)
        self.add_button = widgets.Button(description="Add provider", button_style="primary", layout=full)
        self.add_button.on_click(lambda _: self.add_provider())
        self.remove_button = ConfirmButton(
            "Remove provider", self.remove_provider, "Remove the selected provider and its models"
        )
        self.remove_button.layout = widgets.Layout(width="100%")
        left = widgets.VBox(
            [
                widgets.HTML("<b>Providers</b>"),
                self.provider_list,
                self.new_name,
                self.new_url,
                self.add_button,
                self.remove_button,
            ],
            layout=widgets.Layout(width=LEFT_WIDTH, flex=f"0 0 {LEFT_WIDTH}", margin="0 12px 0 0"),
        )
        left.add_class("nbllm-provider-column")

        self.title = widgets.HTML()
        self.url = _text("URL", "https://host/v1", width="100%")
        self.auth = widgets.Combobox(
            description="auth",
            options=["bearer", "azure", "azure-ad", "none", "header:x-api-key"],
            ensure_option=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="16em"),
        )
        self.api_version = _text("api-version", "Azure only", width="16em")
        self.api = widgets.Dropdown(
            description="API",
            options=[(title, api) for api, title in API_TITLES.items()],
            tooltip="The wire protocol the endpoint speaks",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="18em"),
        )
        self.headers = widgets.Textarea(
            description="headers",
            placeholder="Name: value (one per line; ${VAR} is read from the environment)",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="100%", height="4.5em"),
        )
        self.connect_timeout = widgets.FloatText(
            description="connect s",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="11em"),
        )
        self.read_timeout = widgets.FloatText(
            description="read s", style={"description_width": "initial"}, layout=widgets.Layout(width="11em")
        )
        self.rps = _text("requests/s", "no limit", width="12em")
        self.reasoning_style = widgets.Dropdown(
            description="effort as",
            options=[BY_HOST, *REASONING_STYLES],
            tooltip="How %%chat --effort is sent to this provider",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="16em"),
        )
        self.privacy = widgets.Checkbox(
            description="private", indent=False, tooltip="Data stays in your control (shown with a shield)"
        )
        # The network: certificates, proxy, client certificate (see nbllm._providers.network).
        self.trust = widgets.Dropdown(
            description="trust",
            options=[(DEFAULT_TRUST, DEFAULT_TRUST), ("OS store", "system"), ("certifi", "certifi")],
            tooltip="Which certificates to trust; the OS store holds a company proxy's root",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="14em"),
        )
        self.ca_bundle = _text("CA bundle", "PEM file of CA certificates")
        self.proxy = _text("proxy", "http://host:3128 (default: $HTTPS_PROXY)")
        self.client_cert = _text("client cert", "PEM, for mutual TLS")
        self.client_key = _text("client key", "its key, if apart")
        self.insecure = widgets.Checkbox(
            description="no certificate checks", indent=False, tooltip="For local testing only"
        )
        self.apply_button = widgets.Button(description="Apply", button_style="primary")
        self.apply_button.on_click(lambda _: self.apply())
        self.test_button = widgets.Button(description="Test", tooltip="Run the endpoint doctor")
        self.test_button.on_click(lambda _: self.test())

        self.key = KeyField(
            description="key",
            placeholder="paste a key, then Enter",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="22em"),
        )
        self.key.add_class("nbllm-key")
        self.key.observe(lambda change: self._key_typed(change["new"]), "value")
        self.key_state = widgets.HTML()
        self.keyring = widgets.Checkbox(description="keep in the OS keyring", indent=False)
        self.keyring.layout.display = "" if keyring_module() is not None else "none"
        self.forget_key_button = ConfirmButton(
            "Forget key", self.forget_key, "Forget the key stored for this provider"
        )

        self.model_rows = widgets.VBox()
        self.new_model = widgets.Text(
            placeholder="model id[=context window]", layout=widgets.Layout(width="20em")
        )
        self.add_model_button = widgets.Button(description="Add model")
        self.add_model_button.on_click(lambda _: self.add_model())
        self.discover_button = widgets.Button(description="Discover", tooltip="GET /models from the endpoint")
        self.discover_button.on_click(lambda _: self.discover())
        self.discovered_list = widgets.Dropdown(
            options=[],
            description="on the server",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="26em"),
        )
        self.add_discovered_button = widgets.Button(description="Add this model")
        self.add_discovered_button.on_click(lambda _: self.add_discovered())
        self.doctor = widgets.HTML()

        self.more = widgets.Accordion(
            children=[
                widgets.VBox([self.headers, wrapping([self.reasoning_style, self.privacy])]),
                wrapping([self.connect_timeout, self.read_timeout, self.rps]),
                widgets.VBox(
                    [
                        wrapping([self.trust, self.insecure]),
                        wrapping([self.ca_bundle, self.proxy]),
                        wrapping([self.client_cert, self.client_key]),
                    ]
                ),
            ],
            titles=("Headers & options", "Timeouts & limits", "Network & TLS"),
            selected_index=None,
        )
        self.more.add_class("nbllm-more")
        self.editor = widgets.VBox(
            [
                self.title,
                self.url,
                wrapping([self.api, self.auth, self.api_version]),
                wrapping([self.key, self.key_state, self.keyring, self.forget_key_button]),
                self.more,
                wrapping([self.apply_button, self.test_button]),
                widgets.HTML("<b>Models</b>"),
                self.model_rows,
                wrapping([self.new_model, self.add_model_button, self.discover_button]),
                wrapping([self.discovered_list, self.add_discovered_button]),
                self.doctor,
            ],
            layout=widgets.Layout(flex="1 1 auto", min_width="0"),
        )
        self.editor.add_class("nbllm-editor")
        super().__init__([widgets.HBox([left, self.editor], layout=widgets.Layout(width="100%"))])
        self.refresh()

    # -- reading the store -------------------------------------------------------

    @property
    def selected(self) -> ProviderConfig | None:
        name = self.provider_list.value
        return self.store.providers.get(name) if name else None

    def refresh(self, event: StoreEvent | None = None) -> None:
        """Show the store as it is now; called on every store event."""
        names = list(self.store.providers)
        keep = self.provider_list.value if self.provider_list.value in names else None
        self._syncing = True
        try:
            if list(self.provider_list.options) != names:
                self.provider_list.options = names
            self.provider_list.value = keep or (names[0] if names else None)
        finally:
            self._syncing = False
        config = self.selected
        if config is None or event is None or keep is None:  # first draw, or the selection moved
            self._show_selected()
        elif event.provider not in (None, config.name):
            return  # another provider changed
        elif event.kind.startswith("model"):
            self._show_models(config)  # leaves unsaved endpoint edits in the form alone
        else:
            self._show_selected()

    def _selected(self) -> None:
        if not self._syncing:
            self.discovered = []
            self.discovered_list.options = []
            self.doctor.value = ""
            self._show_selected()

    def _show_selected(self) -> None:
        config = self.selected
        self.editor.layout.display = "none" if config is None else ""
        if config is None:
            self.model_rows.children = []
            return
        shield = " \N{SHIELD}" if config.privacy else ""
        self.title.value = f"<b>{html.escape(config.name)}</b>{shield}"
        self.url.value = config.url
        self.auth.value = config.auth
        self.api_version.value = config.api_version or ""
        self.api.value = config.api
        self.headers.value = header_lines(config)
        self.connect_timeout.value = config.connect_timeout_s
        self.read_timeout.value = config.read_timeout_s
        self.rps.value = "" if config.requests_per_second is None else f"{config.requests_per_second:g}"
        self.privacy.value = config.privacy
        self.reasoning_style.value = _to_option(config.reasoning_style, BY_HOST)
        self.trust.value = _to_option(config.trust, DEFAULT_TRUST)
        self.ca_bundle.value = config.ca_bundle or ""
        self.proxy.value = config.proxy_shown() or ""  # a password never reaches the page
        self.client_cert.value = config.client_cert or ""
        self.client_key.value = config.client_key or ""
        self.insecure.value = config.insecure
        self.key_state.value = html.escape(key_status(config))
        # Only a key nbllm holds can be forgotten here; one from the environment stays there.
        stored = config.key is not None or config.key_keyring is not None
        self.forget_key_button.layout.display = "" if stored else "none"
        self._show_models(config)

    def _show_models(self, config: ProviderConfig) -> None:
        rows = {row.model: row for row in self.model_rows.children if row.provider == config.name}
        if list(rows) != list(config.models):
            rows = {
                model: rows.get(model) or ModelRow(self.store, config.name, model, spec, self.report)
                for model, spec in config.models.items()
            }
            self.model_rows.children = list(rows.values())
        for model, spec in config.models.items():
            rows[model].show(spec)

    def row(self, model: str) -> ModelRow:
        """The row of `model` of the selected provider."""
        for row in self.model_rows.children:
            if row.model == model:
                return row  # type: ignore[no-any-return]
        raise KeyError(model)

    # -- actions (each one is also what its button does) -------------------------

    def add_provider(self) -> None:
        name, url = self.new_name.value.strip(), self.new_url.value.strip()
        try:
            if not name or not url:
                raise ConfigError(
                    "give the new provider a name and a URL, e.g. vllm and http://localhost:8000/v1"
                )
            self.store.add_provider(ProviderConfig(name=name, url=url))
        except NbllmError as exc:
            self.report(str(exc), False)
            return
        self.new_name.value = self.new_url.value = ""
        self.provider_list.value = name
        self.report(f"Added provider {name!r}; add its models below", True)

    def remove_provider(self) -> None:
        config = self.selected
        if config is None:
            self.report("no provider is selected", False)
            return
        self.store.remove_provider(config.name)
        self.report(f"Removed provider {config.name!r}", True)

    def apply(self) -> None:
        """Validate every endpoint field together (an Azure URL needs its api-version) and store them."""
        config = self.selected
        if config is None:
            return
        try:
            self.store.update_provider(
                config.name,
                url=self.url.value.strip(),
                auth=self.auth.value.strip() or "bearer",
                api_version=self.api_version.value.strip() or None,
                api=self.api.value,
                headers=parse_header_lines(self.headers.value, config),
                connect_timeout_s=self.connect_timeout.value,
                read_timeout_s=self.read_timeout.value,
                requests_per_second=optional_float(self.rps.value, "requests per second"),
                privacy=self.privacy.value,
                reasoning_style=_from_option(self.reasoning_style.value, BY_HOST),
                trust=_from_option(self.trust.value, DEFAULT_TRUST),
                ca_bundle=self.ca_bundle.value.strip() or None,
                proxy=self._proxy_from_field(config),
                client_cert=self.client_cert.value.strip() or None,
                client_key=self.client_key.value.strip() or None,
                insecure=self.insecure.value,
            )
        except NbllmError as exc:
            self.report(str(exc), False)
            return
        self.report(f"Saved {config.name!r}; the next %%chat uses it", True)

    def _proxy_from_field(self, config: ProviderConfig) -> SecretStr | None:
        """The proxy field's value; unchanged from its masked form, the stored one (password kept)."""
        text = self.proxy.value.strip()
        if not text:
            return None
        if text == config.proxy_shown():
            return config.proxy
        return SecretStr(text)

    def _key_typed(self, text: str) -> None:
        if self._syncing or not text:
            return
        try:
            self.set_key(text)
        finally:
            self._syncing = True
            try:
                self.key.value = ""
            finally:
                self._syncing = False

    def set_key(self, text: str) -> None:
        """Store a key for the selected provider: in the OS keyring when asked and possible,
        else in this session's store (never in the notebook)."""
        config = self.selected
        if config is None:
            self.report("select a provider before typing a key", False)
            return
        if not text.strip():
            self.report("the key is empty; paste it, then press Enter", False)
            return
        secret = SecretStr(text.strip())
        if self.keyring.value and store_in_keyring(config.name, secret) is not None:
            self.store.update_provider(config.name, key=None, key_keyring=config.name)
            self.report(f"The key of {config.name!r} is in the OS keyring", True)
        else:
            self.store.update_provider(config.name, key=secret)
            self.report(f"The key of {config.name!r} is set for this session", True)

    def forget_key(self) -> None:
        config = self.selected
        if config is not None:
            self.store.update_provider(config.name, key=None, key_keyring=None)
            self.report(f"{config.name!r}: key {key_status(self.store.provider(config.name))}", True)

    def add_model(self, text: str | None = None) -> None:
        config = self.selected
        if config is None:
            return
        try:
            model, window = split_model_arg(self.new_model.value if text is None else text)
            if not model:
                raise ConfigError("type a model id, e.g. gpt-4o or gpt-4o=128000")
            caps = "embeddings" if looks_like_embeddings(model) else None
            self.store.add_model(config.name, model, ModelSpec(context_window=window, capabilities=caps))
        except NbllmError as exc:
            self.report(str(exc), False)
            return
        self.new_model.value = ""
        self.report(f"Added model {config.name}/{model}", True)

    def discover(self) -> None:
        config = self.selected
        if config is None:
            return
        self.report(f"Asking {config.url} for its models...", True)

        def done(served: list[str] | None, error: BaseException | None) -> None:
            if error is not None or served is None:
                self.report(f"Discover failed: {error}", False)
                return
            self.discovered = served
            new = [m for m in served if m not in self.store.provider(config.name).models]
            self.discovered_list.options = new
            self.report(f"{config.name} serves {len(served)} model(s), {len(new)} not registered", True)

        run_soon(list_models(config), done)

    def add_discovered(self) -> None:
        if self.discovered_list.value:
            self.add_model(self.discovered_list.value)
            self.discovered_list.options = [
                m for m in self.discovered_list.options if m != self.discovered_list.value
            ]

    def test(self) -> None:
        config = self.selected
        if config is None:
            return
        self.doctor.value = f"<i>Checking {html.escape(config.name)}...</i>"

        def done(report: DoctorReport | None, error: BaseException | None) -> None:
            if error is not None or report is None:
                self.doctor.value = ""
                self.report(f"Test failed to run: {error}", False)
                return
            self.last_report = report
            self.doctor.value = report._repr_html_()
            self.report(
                f"{report.target}: {'all checks passed' if report.ok else 'some checks failed'}", report.ok
            )

        run_soon(diagnose(self.store, config.name), done)
