"""Saving and loading the session's providers as YAML.

The file lives in the platform config directory (``NBLLM_CONFIG_DIR`` overrides
it) and holds key *references* only: environment variable names and keyring
entries. A literal key is moved to the OS keyring when one is installed, and
left out, with a note saying so, when not.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nbllm import _constants
from nbllm._exceptions import ConfigError, ConfigFileError, NbllmError
from nbllm._providers.auth import provider_env_var, store_in_keyring
from nbllm._providers.config import ProviderConfig
from nbllm._providers.paths import default_config_path
from nbllm._providers.store import Store
from nbllm._providers.yaml_text import field_names_are_text, load_yaml

FILE_VERSION = 1


@dataclass
class PersistReport:
    """What a save or load did, for the magic to print."""

    path: Path
    providers: list[str] = field(default_factory=list)
    default: str | None = None
    notes: list[str] = field(default_factory=list)
    mcp_servers: list[dict[str, Any]] = field(default_factory=list)
    """The MCP servers saved beside the providers (their saved forms; the layer that runs them
    restores them)."""

    def __str__(self) -> str:
        lines = [f"{len(self.providers)} provider(s) ({', '.join(self.providers) or 'none'}) - {self.path}"]
        if self.mcp_servers:
            names = ", ".join(entry["name"] for entry in self.mcp_servers)
            lines[0] += f"; {len(self.mcp_servers)} MCP server(s) ({names})"
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def save(
    store: Store, path: Path | str | None = None, mcp_servers: list[dict[str, Any]] | None = None
) -> PersistReport:
    """Write every provider, the default model and the MCP servers' saved forms (which hold no
    literal secret) to `path` (the default config file)."""
    target = Path(path).expanduser() if path else default_config_path()
    report = PersistReport(target, default=store.default, mcp_servers=list(mcp_servers or []))
    entries = []
    for config in store.providers.values():
        saved = config.saved_form()
        if config.key is not None:
            entry = store_in_keyring(config.name, config.key)
            if entry is not None:
                saved["key_keyring"] = entry
                report.notes.append(
                    f"{config.name}: the key typed in this session was moved to the OS keyring "
                    f"({_constants.KEYRING_SERVICE}/{entry}); the file refers to it by name"
                )
            elif not config.key_env:
                report.notes.append(
                    f"{config.name}: its key was typed in this session and no OS keyring is "
                    f"installed, so the key was left out of the file. In the next session set "
                    f"{provider_env_var(config.name)}, or install keyring (pip install keyring)"
                )
        for header in config.unsaved_headers():
            report.notes.append(
                f"{config.name}: header {header} holds a literal secret and was left out of the "
                f"file; write it as {header}=${{VAR}} to have it saved as a reference"
            )
        entries.append(saved)
        report.providers.append(config.name)
    document: dict[str, Any] = {"version": FILE_VERSION, "providers": entries}
    if store.default:
        document["default"] = store.default
    if report.mcp_servers:
        document["mcp_servers"] = report.mcp_servers
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    kept = _keep_unreadable(target)
    if kept is not None:
        report.notes.append(f"the file there could not be read, so it was kept as {kept.name} before writing")
    _write_private(target, text)
    return report


def _keep_unreadable(target: Path) -> Path | None:
    """Move aside an existing file that does not load (after a failed load, the next save must
    not destroy what the user may still want); None when there is nothing to keep."""
    try:
        parse_config_file(target.read_text(encoding="utf-8"), target)
        return None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ConfigError):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kept = target.with_name(f"{target.name}.unreadable-{stamp}")
        try:
            target.replace(kept)
        except OSError:
            return None  # writing will fail too, and say why
        return kept


def load(store: Store, path: Path | str | None = None) -> PersistReport:
    """Add (replacing same-named) the providers saved in `path`; all or nothing."""
    source = Path(path).expanduser() if path else default_config_path()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(
            f"no config file at {source}",
            hint="save the session's providers first with %llm_provider save, or give a path",
        ) from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(
            f"{source} is not UTF-8 text", hint="open it in an editor and save it as UTF-8, or remove it"
        ) from None
    configs, default, notes, mcp_servers = parse_config_file(text, source)
    for config in configs:
        store.add_provider(config, replace=True)
    report = PersistReport(source, [c.name for c in configs], notes=notes, mcp_servers=mcp_servers)
    if default:
        try:
            report.default = store.set_default(default)
        except NbllmError:
            report.notes.append(f"the saved default {default!r} no longer resolves; not set")
    return report


def parse_config_file(
    text: str, source: Path | str
) -> tuple[list[ProviderConfig], str | None, list[str], list[dict[str, Any]]]:
    """Validate a whole config file before anything is added to the store: its providers, the
    default, notes to show, and the MCP servers' entries."""
    try:
        document = load_yaml(text, str(source)) or {}
    except ConfigError as exc:
        raise ConfigFileError(exc.message) from None
    if not isinstance(document, dict) or not isinstance(document.get("providers", []), list):
        raise ConfigFileError(f"{source} should hold a mapping with a 'providers:' list")
    configs, notes = [], []
    version = document.get("version", FILE_VERSION)
    if version != FILE_VERSION:
        notes.append(
            f"the file says version {version!r}; this nbllm writes version {FILE_VERSION} and read it as such"
        )
    for index, entry in enumerate(document.get("providers") or []):
        label = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        if not isinstance(entry, dict):
            raise ConfigFileError(f"{source}: provider {label} should be a mapping")
        try:
            config = ProviderConfig(**field_names_are_text(entry, "its entry"))
        except ConfigError as exc:
            raise ConfigFileError(f"{source}: provider {label}: {exc.message}") from None
        if config.key is not None:
            notes.append(
                f"{config.name}: the file holds a plaintext key; replace it with "
                f"key_env: VAR or key: ${{VAR}}"
            )
        configs.append(config)
    default = document.get("default")
    return configs, default if isinstance(default, str) else None, notes, _mcp_entries(document, source)


def _mcp_entries(document: dict[str, Any], source: Path | str) -> list[dict[str, Any]]:
    """The file's ``mcp_servers:`` list, checked for shape before anything is added."""
    entries = document.get("mcp_servers") or []
    if not isinstance(entries, list):
        raise ConfigFileError(f"{source}: 'mcp_servers:' should be a list")
    for index, entry in enumerate(entries):
        words = entry.get("command", []) if isinstance(entry, dict) else None
        headers = entry.get("headers", {}) if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(words, list)
            or not all(isinstance(word, str) for word in words)
            or not isinstance(entry.get("url", ""), str)
            or not (words or entry.get("url"))
            or not isinstance(headers, dict)
            or not all(isinstance(value, str) for value in headers.values())
        ):
            raise ConfigFileError(
                f"{source}: MCP server #{index + 1} should be a mapping with a name and a command "
                "(a list of words) or a url, and text headers"
            )
    return entries


def _write_private(target: Path, text: str) -> None:
    """Write atomically, readable by the owner only (the file names key sources)."""
    try:
        if not target.parent.exists():
            # mkdir's mode is masked by the umask (a 022 umask would leave it readable by all);
            # a folder made for files that name key sources is the owner's alone.
            target.parent.mkdir(parents=True)
            os.chmod(target.parent, 0o700)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".providers-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigFileError(
            f"cannot write {target}: {exc.strerror}",
            hint=f"give another path, or set {_constants.CONFIG_DIR_ENV} to a writable folder",
        ) from None
