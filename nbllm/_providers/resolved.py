"""`Resolved`: a model name decided once, as one provider and one of its models.

A value type of the provider layer: the store makes it, and everything below the cells
(calls, the client, the doctor) takes it as given instead of resolving a name again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from nbllm._providers.config import ProviderConfig
from nbllm._providers.models import ModelSpec
from nbllm._providers.urls import chat_url


@dataclass(frozen=True)
class Resolved:
    """A model name resolved to one provider and one model."""

    provider: ProviderConfig
    model: str
    spec: ModelSpec

    @property
    def qualified_name(self) -> str:
        """``provider/model``, the name that always picks exactly this model."""
        return f"{self.provider.name}/{self.model}"

    @functools.cached_property
    def chat_url(self) -> str:
        """The URL a chat call for this model is posted to, in the provider's protocol (Azure's
        deployment path included). Worked out once: every attempt of a call asks for it."""
        p = self.provider
        return chat_url(p.url, self.model, auth=p.auth, api_version=p.api_version, api=p.api)

    @property
    def wire_url(self) -> str:
        """`chat_url` as sent: the ``${VAR}`` references in its query expanded. Only the request
        holds it; messages, tables and dry runs show `chat_url`."""
        p = self.provider
        if "${" not in p.url:
            return self.chat_url
        return chat_url(p.wire_url(), self.model, auth=p.auth, api_version=p.api_version, api=p.api)
