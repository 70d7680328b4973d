"""How each kind of server is told how hard to think (``--effort``), and whether it wants a
model's thinking back in later requests. The provider's ``reasoning_style`` picks the kind;
left unset, the host decides (`style_for`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from nbllm._providers.config import ProviderConfig

HOST_STYLES = {"openrouter.ai": "openrouter", "api.deepseek.com": "deepseek"}
"""Hosts whose own shape is known; any other host gets OpenAI's ``reasoning_effort``."""


def style_for(provider: ProviderConfig) -> str:
    """The provider's reasoning style: its own setting, else the one its host is known for."""
    if provider.reasoning_style:
        return provider.reasoning_style
    host = (urlsplit(provider.url).hostname or "").lower()
    for known, style in HOST_STYLES.items():
        if host == known or host.endswith("." + known):
            return style
    return "openai"


def effort_fields(style: str, effort: str) -> dict[str, Any]:
    """The request body's fields for `effort` (one of `EFFORTS`) in `style`.

    - openai: ``reasoning_effort`` (OpenAI, vLLM, Ollama, LM Studio; ``none`` where the model
      can stop thinking, as gpt-5.1 and Ollama's thinking models can).
    - openrouter: ``reasoning: {"effort": …}`` (OpenRouter maps it to each upstream).
    - deepseek: ``thinking: {"type": "enabled" | "disabled"}``, with ``reasoning_effort``.
    - template: ``chat_template_kwargs: {"enable_thinking": …}``, which Qwen3-style chat templates
      read on vLLM and llama.cpp, with ``reasoning_effort`` (gpt-oss reads that one).
    """
    thinking = effort != "none"
    if style == "openrouter":
        return {"reasoning": {"effort": effort}}
    if style == "deepseek":
        fields: dict[str, Any] = {"thinking": {"type": "enabled" if thinking else "disabled"}}
        if thinking:
            fields["reasoning_effort"] = effort
        return fields
    if style == "template":
        fields = {"chat_template_kwargs": {"enable_thinking": thinking}}
        if thinking:
            fields["reasoning_effort"] = effort
        return fields
    return {"reasoning_effort": effort}


def sends_reasoning_back(provider: ProviderConfig) -> bool:
    """Whether a turn's thinking goes back with its tool calls in later requests. DeepSeek's
    thinking mode answers 400 without it, and the Anthropic Messages API wants its signed
    thinking blocks back; elsewhere it is left out (older deepseek-reasoner answered 400 *to*
    it, and other servers bill or ignore it)."""
    return provider.api == "anthropic" or style_for(provider) == "deepseek"
