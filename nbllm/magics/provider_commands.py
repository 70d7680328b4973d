"""What each `%llm_provider` subcommand does, once its line is parsed (`provider.py`). A plain
class, imported on the first `%llm_provider`, so `%load_ext nbllm` stays cheap."""

from __future__ import annotations

import getpass
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display
from pydantic import SecretStr

from nbllm._calls.doctor import diagnose, list_models, looks_like_embeddings
from nbllm._calls.loop_thread import loop_thread
from nbllm._providers import persist
from nbllm._providers.auth import LITERAL_KEY_WARNING, security_warnings
from nbllm._providers.config import ProviderConfig, split_model_arg
from nbllm._providers.local import MODEL_ALIAS, get_local_model
from nbllm._providers.models import ModelSpec, Price, parse_capability_names, parse_price
from nbllm._providers.store import UNSET, Store, get_store
from nbllm._providers.yaml_text import field_names_are_text, load_yaml
from nbllm._views.tables import ProviderDetail, ProviderList
from nbllm.magics.parsing import parse_headers, warn
from nbllm.magics.replay import cassette_replaying


class ProviderCommands:
    """The subcommands, over the session store."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or get_store()

    def run(self, command: str, args: Any) -> None:
        getattr(self, f"cmd_{command}")(args)

    def cmd_add(self, args: Any) -> None:
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
            "api": args.api,
            "headers": parse_headers(args.header),
            "api_version": args.api_version,
            "requests_per_second": args.rps,
            "privacy": args.privacy,
            "reasoning_style": args.reasoning_style,
            "models": models,
            "fallback": [m.strip() for m in (args.fallback or "").split(",") if m.strip()],
            "trust": args.trust,
            "ca_bundle": args.ca_bundle,
            "proxy": SecretStr(args.proxy) if args.proxy else None,
            "client_cert": args.client_cert,
            "client_key": args.client_key,
            "insecure": args.insecure,
            "insecure_remote": args.insecure_remote,
        }
        if args.timeout is not None:
            fields["read_timeout_s"] = args.timeout
        if args.connect_timeout is not None:
            fields["connect_timeout_s"] = args.connect_timeout
        self.register(ProviderConfig(**fields), key_in_source=args.key is not None)

    def add_from_yaml(self, line: str, cell: str) -> None:
        data = load_yaml(cell, "the cell")
        if not isinstance(data, dict):
            raise UsageError(
                "the cell should be one provider as a YAML mapping (name:, url:, models: ...); "
                "see %llm_provider?"
            )
        if line.strip():
            data["name"] = line.strip()
        if "name" not in data:
            raise UsageError("the provider has no name; add name: NAME or write %%llm_provider NAME")
        config = ProviderConfig(**field_names_are_text(data, "the cell"))
        # `key: ${VAR}` became a key_env reference, so any key left is written in the cell.
        self.register(config, key_in_source=config.key is not None)

    def register(self, config: ProviderConfig, *, key_in_source: bool) -> None:
        """Add `config`, then warn about every way its secrets are exposed."""
        if key_in_source:
            warn(LITERAL_KEY_WARNING)
        for header in config.unsaved_headers():
            warn(
                f"header {header} holds a literal secret: it is saved in the notebook, and "
                f"%llm_provider save leaves it out. Prefer writing it as {header}=${{VAR}}"
            )
        if config.insecure:
            warn(
                f"{config.name}: certificate checks are OFF (--insecure): anyone on the way can read "
                "your key and the replies. Use it only for local testing; trust the server's CA with "
                "--ca-bundle PATH instead"
            )
        if config.proxy_unsaved():
            warn(
                f"{config.name}: the proxy URL holds a password, so %llm_provider save leaves it out; "
                "write it as http://USER:${PROXY_PASSWORD}@HOST:PORT to have it saved as a reference"
            )
        replaced = config.name in self.store.providers
        self.store.add_provider(config, replace=True)
        for message in security_warnings(config):
            warn(message)
        if config.key_env and not _env_has(config.key_env):
            warn(
                f"${config.key_env} is not set in this kernel; calls to {config.name!r} will fail "
                "until it is (it is read at each call; or use --key-prompt)"
            )
        verb = "Replaced" if replaced else "Added"
        models = ", ".join(config.models) or "no models yet"
        print(f"{verb} provider {config.name!r} ({models}).")

    def cmd_list(self, args: Any) -> None:
        display(ProviderList(list(self.store.providers.values()), self.store.default))

    def cmd_show(self, args: Any) -> None:
        display(ProviderDetail(self.store.provider(args.name), self.store.default))

    def cmd_remove(self, args: Any) -> None:
        self.store.remove_provider(args.name)
        print(f"Removed provider {args.name!r}.")

    def cmd_default(self, args: Any) -> None:
        if args.clear:
            self.store.set_default(None)
            print("Default model cleared.")
        elif args.model:
            print(f"Default model: {self.store.set_default(args.model)}")
        else:
            print(f"Default model: {self.store.default or 'none (set one with %llm_provider default P/M)'}")

    def cmd_model(self, args: Any) -> None:
        caps = parse_capability_names(args.caps) if args.caps else {}
        if args.action == "add":
            model_id, window = split_model_arg(args.model)
            if args.context is not None:
                window = args.context
            spec = ModelSpec(context_window=window, capabilities=caps, price=_price(args.price))
            self.store.add_model(args.provider, model_id, spec)
            print(f"Added model {args.provider}/{model_id}.")
        elif args.action == "set":
            new_window = UNSET if args.context is None else args.context
            new_price = UNSET if args.price is None else _price(args.price)
            self.store.update_model(
                args.provider, args.model, context_window=new_window, flags=caps, price=new_price
            )
            print(f"Updated model {args.provider}/{args.model}.")
        else:
            self.store.remove_model(args.provider, args.model)
            print(f"Removed model {args.provider}/{args.model}.")

    def cmd_test(self, args: Any) -> None:
        report = loop_thread().run(diagnose(self.store, args.target))
        display(report)

    def cmd_discover(self, args: Any) -> None:
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
                + (" --caps embeddings" if looks_like_embeddings(model_id) else "")
            )
            print(f"  {model_id}    ({mark})")

    def cmd_save(self, args: Any) -> None:
        from nbllm._cells.mcp_servers import get_mcp_servers

        servers = get_mcp_servers()
        report = persist.save(self.store, args.path, mcp_servers=servers.saved_forms())
        report.notes += [
            f"MCP server {header} holds a literal secret and was left out of the file; "
            "write it as NAME=${VAR} to have it saved as a reference"
            for header in servers.unsaved_headers()
        ]
        print(f"Saved {report}")

    def cmd_local(self, args: Any) -> None:
        local = get_local_model()
        if args.action == "start" and cassette_replaying():
            local.register_for_replay(self.store)
            print(
                f"Replaying from the cassette: the local model is not started; local/{MODEL_ALIAS} "
                "answers from its recordings."
            )
        elif args.action == "start":
            print("Starting the local model server (a few seconds)...")
            server = local.start(args.model, args.ctx, store=self.store)
            print(f"Local model ready: %%chat local/{MODEL_ALIAS} (at {server.base_url}).")
        elif args.action == "stop":
            print("Local model stopped." if local.stop(self.store) else "The local model was not running.")
        else:
            print(local.status())

    def cmd_load(self, args: Any) -> None:
        print(f"Loaded {load_saved(self.store, args.path)}")


def load_saved(store: Store, path: Any) -> persist.PersistReport:
    """Load a providers file, and the MCP servers saved in it (only imported when it has some,
    so %load_ext stays light)."""
    report = persist.load(store, path)
    if report.mcp_servers:
        from nbllm._cells.mcp_servers import get_mcp_servers

        get_mcp_servers().restore(report.mcp_servers)
    return report


def _env_has(name: str) -> bool:
    return bool(os.environ.get(name))


def _price(text: str | None) -> Price | None:
    """``--price IN,OUT`` as a `Price`; ``none`` (or nothing) clears it."""
    if text is None or text.strip().lower() == "none":
        return None
    return parse_price(text)
