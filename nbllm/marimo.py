"""nbllm in marimo: `chat_model` makes a model function for ``mo.ui.chat``.

    import marimo as mo
    import nbllm.marimo

    mo.ui.chat(nbllm.marimo.chat_model("openrouter/some-model", fallback="local/smollm2"))

The function streams (marimo draws each piece as it arrives), goes through the same engine as
every other call (the provider's pacing, retries, fallbacks, secret masking; each call is in
`nbllm.history()`), and takes marimo's chat settings (``max_tokens``, ``temperature``) unless
the options given here set them. marimo itself is not imported here: the function works with
any object that has marimo's message fields (``role``, ``content``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from typing_extensions import Unpack

from nbllm._api import RequestOptions, astream
from nbllm._calls.results import TokenEvent

CONFIG_OPTIONS = ("max_tokens", "temperature")
"""marimo's chat settings that become request options (its others have no nbllm option)."""

ChatModel = Callable[..., AsyncIterator[str]]


def chat_model(model: str | None = None, **options: Unpack[RequestOptions]) -> ChatModel:
    """A model function for ``mo.ui.chat``: called with the conversation (marimo's
    ``ChatMessage`` list) and marimo's config, it returns an async generator of the reply's
    text pieces. `model` and `options` are `nbllm.chat`'s; an error is raised as the nbllm
    error it is, for marimo to show."""

    def respond(messages: Sequence[Any], config: Any = None) -> AsyncIterator[str]:
        asked: dict[str, Any] = dict(options)
        for name in CONFIG_OPTIONS:
            value = getattr(config, name, None)
            if value is not None and name not in asked:
                asked[name] = value
        return _stream([_message(m) for m in messages], model, asked)

    return respond


def _message(message: Any) -> dict[str, Any]:
    content = message.content
    return {"role": message.role, "content": content if isinstance(content, str) else str(content)}


async def _stream(
    messages: list[dict[str, Any]], model: str | None, options: dict[str, Any]
) -> AsyncIterator[str]:
    async for event in astream(messages, model, **options):
        if isinstance(event, TokenEvent):
            yield event.text
