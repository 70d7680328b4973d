"""Reading YAML that a user wrote (a `%%llm_provider` cell, `providers.yaml`) without letting it
hurt: no aliases (a 469-byte "billion laughs" cell once made a 312 MB error message), bounded
size and nesting, and errors that say where the problem is without quoting the line (it may
hold a key)."""

from __future__ import annotations

from typing import Any

import yaml

from nbllm._constants import MAX_YAML_CHARS, MAX_YAML_DEPTH
from nbllm._exceptions import ConfigError


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases and deep nesting as it composes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"line {line}: YAML aliases (*name) are not accepted; write the value out in full"
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise ConfigError(f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, where: str, max_chars: int = MAX_YAML_CHARS) -> Any:
    """The document in `text`, or a `ConfigError` naming `where` and the line at fault."""
    if len(text) > max_chars:
        raise ConfigError(f"{where} is {len(text):,} characters; nbllm reads at most {max_chars:,}")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # PyYAML's own message quotes the line, which may hold a key: only its problem is kept.
        raise ConfigError(f"{where} is not valid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{where} is not valid YAML") from None
    except (ValueError, RecursionError) as exc:  # a 4,400-digit integer; nesting past Python's limit
        raise ConfigError(f"{where} holds a value nbllm cannot read ({type(exc).__name__})") from None


def field_names_are_text(data: dict[Any, Any], where: str) -> dict[str, Any]:
    """`data`, once every key is text (YAML allows ``0:`` or ``[a]:`` as keys; fields cannot)."""
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"{where}: {odd[0]!r} is not a field name; field names are text (name:, url:, ...)")
    return data
