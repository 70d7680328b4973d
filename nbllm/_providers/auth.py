"""Where a provider's key comes from, and which header carries it.

Key sources, first found wins:

1. a literal key (`ProviderConfig.key`, typed in a cell or prompted for);
2. an environment variable named by `key_env` (``--key-env VAR`` or ``key: ${VAR}``);
3. an OS keyring entry (`key_keyring`), when the ``keyring`` package is installed;
4. ``NBLLM_<NAME>_API_KEY``, the provider's own fallback variable;
5. a vendor's well-known variable, only for that vendor's own host
   (``OPENAI_API_KEY`` for api.openai.com, never for a third-party host).

A provider never receives another provider's key.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import SecretStr

from nbllm import _constants
from nbllm._exceptions import MissingKeyError
from nbllm._providers.config import ProviderConfig, is_sensitive_header
from nbllm._providers.entra import entra_token
from nbllm._providers.secret_text import MIN_SECRET_CHARS
from nbllm._providers.urls import is_loopback

VENDOR_KEY_VARS = {
    "api.openai.com": "OPENAI_API_KEY",
    "openrouter.ai": "OPENROUTER_API_KEY",
    "api.groq.com": "GROQ_API_KEY",
    "api.mistral.ai": "MISTRAL_API_KEY",
    "api.together.xyz": "TOGETHER_API_KEY",
    "api.deepseek.com": "DEEPSEEK_API_KEY",
}
"""Vendor variables, honoured only when the provider's host is exactly the vendor's."""


def provider_env_var(name: str) -> str:
    """``"my-vllm"`` -> ``"NBLLM_MY_VLLM_API_KEY"``."""
    return f"NBLLM_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_API_KEY"


def keyring_module() -> types.ModuleType | None:
    """The ``keyring`` module when it is installed and has a usable backend, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    if isinstance(keyring.get_keyring(), fail.Keyring):
        return None
    module: types.ModuleType = keyring
    return module


def store_in_keyring(provider_name: str, key: SecretStr) -> str | None:
    """Save `key` in the OS keyring; return the entry name, or None without a keyring."""
    ring = keyring_module()
    if ring is None:
        return None
    ring.set_password(_constants.KEYRING_SERVICE, provider_name, key.get_secret_value())
    return provider_name


def _from_keyring(entry: str) -> str | None:
    ring = keyring_module()
    if ring is None:
        return None
    value = ring.get_password(_constants.KEYRING_SERVICE, entry)
    return str(value) if value else None


def _vendor_var(config: ProviderConfig) -> str | None:
    host = (urlsplit(config.url).hostname or "").lower()
    return VENDOR_KEY_VARS.get(host)


def find_key(
    config: ProviderConfig, environ: Mapping[str, str] | None = None
) -> tuple[SecretStr | None, str]:
    """The provider's key and a description of where it came from (never the key itself).

    The description is what `list`, `show` and the panel print: ``"set"``,
    ``"from $VAR"``, ``"from keyring"``, ``"missing"`` or ``"not needed"``.
    """
    env = os.environ if environ is None else environ
    if config.key is not None:
        return config.key, "set"
    candidates: list[tuple[str | None, str]] = []
    if config.key_env:
        candidates.append((env.get(config.key_env), f"from ${config.key_env}"))
    if config.key_keyring:
        candidates.append((_from_keyring(config.key_keyring), "from keyring"))
    own = provider_env_var(config.name)
    candidates.append((env.get(own), f"from ${own}"))
    vendor = _vendor_var(config)
    if vendor:
        candidates.append((env.get(vendor), f"from ${vendor}"))
    for value, origin in candidates:
        if value:
            return SecretStr(value), origin
    if config.auth == "none":
        return None, "not needed"
    if config.key_env:
        return None, f"missing (${config.key_env} is not set)"
    return None, "missing"


def key_status(config: ProviderConfig, environ: Mapping[str, str] | None = None) -> str:
    """Where the key comes from, for display; never the key."""
    if config.auth == "azure-ad":
        source = "its token provider" if config.token_provider else "DefaultAzureCredential"
        return f"not used: Entra ID tokens from {source}"
    return find_key(config, environ)[1]


def missing_key_hint(config: ProviderConfig) -> str:
    """The ways to give `config` a key, in the order a notebook user should prefer them."""
    var = config.key_env or provider_env_var(config.name)
    return (
        f"set the environment variable {var} (it is read at each call, so setting it in the "
        f"environment Jupyter runs in and restarting the kernel is enough), or type the key with "
        f"%llm_provider add {config.name} --url {config.url} --key-prompt, which keeps it out of the "
        f"notebook"
    )


def auth_headers(
    config: ProviderConfig, *, required: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The header that carries the key in `config`'s auth style.

    A local server often needs no key, so a missing key only raises when
    `required` is set, when the provider names a key source that yields nothing
    (``--key-env`` of an unset variable), or for Azure, which always needs one.
    """
    if config.auth == "none":
        return {}
    if config.auth == "azure-ad":
        return {"Authorization": f"Bearer {entra_token(config)}"}
    key, _ = find_key(config, environ)
    if key is None:
        declared = config.key_env or config.key_keyring
        if required or declared or config.auth == "azure" or config.is_azure:
            raise MissingKeyError(f"no key found for provider {config.name!r}", hint=missing_key_hint(config))
        return {}
    secret = key.get_secret_value()
    if config.auth == "azure" or (config.auth == "bearer" and config.is_azure):
        return {"api-key": secret}
    if config.auth.startswith("header:"):
        return {config.auth.partition(":")[2]: secret}
    return {"Authorization": f"Bearer {secret}"}


def mask_headers(headers: Mapping[str, str], secret_values: set[str]) -> dict[str, str]:
    """`headers` with every value that holds a secret replaced by a mask, for display."""
    masked = {}
    for name, value in headers.items():
        if any(secret and secret in value for secret in secret_values) or is_sensitive_header(name):
            scheme = value.split(" ", 1)[0] + " " if value.startswith("Bearer ") else ""
            masked[name] = f"{scheme}****"
        else:
            masked[name] = value
    return masked


def security_warnings(config: ProviderConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings about how `config` handles its key (not errors: the user may know better)."""
    warnings = []
    key, _ = find_key(config, environ)
    scheme = urlsplit(config.url).scheme
    if key is not None and 0 < len(key.get_secret_value()) < MIN_SECRET_CHARS and not is_loopback(config.url):
        warnings.append(
            f"provider {config.name!r} has a key of fewer than {MIN_SECRET_CHARS} characters: nbllm does not "
            "mask values that short (they would mask ordinary words and numbers), so if a server echoes "
            "it back, it shows. Use a longer key if the server allows it."
        )
    if key is not None and scheme == "http" and not is_loopback(config.url):
        warnings.append(
            f"provider {config.name!r} sends its key over plain http to a host that is not this "
            "machine; anyone on the network path can read it. Use https:// if the server offers it."
        )
    return warnings


LITERAL_KEY_WARNING = (
    "the key written in this cell is now part of this cell's source, so it is saved in the "
    "notebook file and in IPython's history. Prefer --key-env VAR or --key-prompt, and clear "
    "this cell before sharing the notebook."
)
