"""The one error tree of nbllm.

Every error the package raises on purpose derives from `NbllmError`, so a caller
can catch one type. Third-party errors (pydantic, httpx, yaml) are translated at
the edge with ``raise ... from exc``. No message ever contains a key.

    NbllmError
    ├── ConfigError                 a provider or model definition is invalid
    │   └── ConfigFileError         a saved config file cannot be read or written
    │       ├── CassetteError       a cassette file holds what is not a recorded exchange
    │       └── LogError            the conversation log cannot be opened, written or read
    ├── NameResolutionError         a model name does not pick exactly one model
    │   ├── UnknownModelError       no provider declares it (suggests close names)
    │   └── AmbiguousModelError     several do (lists the qualified choices)
    ├── ProviderExistsError         add without replace, the name is taken
    ├── ProviderNotFoundError       no provider with that name
    ├── MissingKeyError             the provider needs a key and none was found
    ├── LocalModelError             the bundled local model cannot start (extra missing, server failed)
    ├── StoppedError                a call was stopped with a Stop button
    ├── PromptError                 a prompt or its options cannot become a request (nothing was sent)
    │   ├── InterpolationError      a {placeholder} names nothing, or fails to evaluate
    │   ├── CapabilityError         the model lacks a flag the request needs (tools, json, vision)
    │   ├── ToolError               a --tools name is not a usable Python function
    │   └── BudgetError             the call would pass the session's budget
    └── APIError                    a call to an endpoint failed
        ├── CassetteMissError       a replaying cassette has no recording of the request
        ├── UnexpectedError         something below the engine failed unforeseen (cause chained)
        ├── StatusError             the endpoint answered with an HTTP error status
        │   ├── BadRequestError         400, 422 and other 4xx not listed here
        │   │   └── ContextTooLongError the prompt does not fit the model's window
        │   ├── AuthenticationError     401 (or a gateway's 400 that means the same)
        │   ├── PermissionDeniedError   403
        │   ├── NotFoundError           404
        │   │   └── ModelNotFoundError  the server does not know the model id
        │   ├── RateLimitError          429
        │   └── ServerError             5xx
        ├── TransportError          no usable HTTP exchange happened
        │   ├── APIConnectionError  could not connect, or the connection dropped
        │   └── APITimeoutError     connect or read timeout
        └── StreamError             the reply went wrong after a 2xx status (an error event mid-stream)
            ├── IncompleteStreamError  the stream ended without an end marker
            │   └── ThinkingBudgetError  a reasoning model spent its token limit thinking
            ├── ProtocolError       the reply is not the protocol the server should speak
            ├── EmptyReplyError     the reply ended well but held no text and no tool calls
            ├── SchemaMismatchError a typed reply (schema=) did not match, even after a repair round
            └── ToolChoiceIgnoredError  a tool call was required (tool_choice) and none came
"""

from __future__ import annotations

from typing import Any


class NbllmError(Exception):
    """Root of every error nbllm raises on purpose.

    `hint` is the next step for the user; `str()` joins message and hint.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nHint: {self.hint}"
        return self.message


class ConfigError(NbllmError, ValueError):
    """A provider or model definition is invalid; the message names the field and the fix."""


class ConfigFileError(ConfigError):
    """A saved config file cannot be read, parsed or written."""


class CassetteError(ConfigFileError):
    """A cassette (hand-edited, or not nbllm's) holds something that is not a recorded exchange:
    a value of no JSON type, an impossible status or time. The message names the entry."""


class NameResolutionError(NbllmError, LookupError):
    """A model name does not resolve to exactly one provider/model."""


class UnknownModelError(NameResolutionError):
    """No registered provider declares the model."""

    def __init__(self, message: str, *, suggestions: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.suggestions = suggestions


class AmbiguousModelError(NameResolutionError):
    """Several providers declare the model; `choices` are the qualified names."""

    def __init__(self, message: str, *, choices: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.choices = choices


class LocalModelError(NbllmError):
    """The bundled local model cannot be started or is not installed; the hint says what to do."""


class StoppedError(NbllmError):
    """A call was stopped on purpose (a Stop button in the cell or the panel); its partial text is kept."""


class LogError(ConfigFileError):
    """The opt-in conversation log cannot be opened, written or read (a locked, corrupt or
    newer database, a folder that cannot be written)."""


class PromptError(NbllmError, ValueError):
    """A prompt, a `%%chat` cell or a request option cannot become a request; nothing was sent."""


class InterpolationError(PromptError):
    """A ``{placeholder}`` in a prompt names no variable, or evaluating it failed."""


class CapabilityError(PromptError):
    """The model is not flagged for something the request needs (tools, json, vision)."""


class ToolError(PromptError):
    """A ``--tools`` name is not a Python callable nbllm can describe to a model."""


class BudgetError(PromptError):
    """The session's budget (``%llm_budget``) is spent, or the call's estimated cost would pass
    it; nothing was sent."""


class ProviderExistsError(NbllmError):
    """A provider with that name is already registered."""


class ProviderNotFoundError(NbllmError, LookupError):
    """No provider with that name is registered."""


class MissingKeyError(NbllmError):
    """The provider's auth style needs a key and no key source yields one."""


class APIError(NbllmError):
    """A call to an endpoint failed.

    Carries what the upstream said (`upstream_message`), the HTTP `status` when
    there was one, and the server's `request_id` when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        upstream_message: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.upstream_message = upstream_message
        self.request_id = request_id
        self.body = body
        # The call's result so far (a ChatResult with the partial text, or an EmbedResult with
        # the vectors done); set when a call fails.
        self.result: Any = None

    def __str__(self) -> str:
        text = self.message
        if self.request_id:
            text += f" (request id {self.request_id})"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


class StatusError(APIError):
    """The endpoint answered with an HTTP error status."""


class BadRequestError(StatusError):
    """400, 422 or another 4xx the server refused as malformed."""


class ContextTooLongError(BadRequestError):
    """The prompt plus the reply reserve exceed the model's context window."""


class AuthenticationError(StatusError):
    """401 (or LiteLLM's proxy's 400 "No connected db."): the key is missing, wrong, or sent in
    the wrong header."""


class PermissionDeniedError(StatusError):
    """403: the key is valid but may not use this model or endpoint."""


class NotFoundError(StatusError):
    """404: usually a URL without its `/v1` suffix, or a wrong full path."""


class ModelNotFoundError(NotFoundError):
    """The server does not serve the requested model id."""


class RateLimitError(StatusError):
    """429: too many requests; `retry_after_s` is the server's requested wait."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class ServerError(StatusError):
    """5xx: the server failed."""


class TransportError(APIError):
    """No usable HTTP exchange happened."""


class APIConnectionError(TransportError):
    """Could not connect, or the connection dropped."""


class APITimeoutError(TransportError):
    """A connect or read timeout expired."""


class StreamError(APIError):
    """The reply went wrong after a 2xx status; this class itself: the server reported an
    error inside the stream."""


class IncompleteStreamError(StreamError):
    """The stream ended with neither `[DONE]` nor a finish_reason."""


class ThinkingBudgetError(IncompleteStreamError):
    """A reasoning model used up its token limit thinking: the answer is empty or cut off.
    The thinking is kept (on the error's ``result.reasoning``); a retry would end the same way,
    so none is made."""


class ProtocolError(StreamError):
    """The server sent something that is not the wire protocol it should speak: a chunk that is
    not JSON, a field of the wrong type, an undecodable body, a redirect to a non-HTTP URL."""


class EmptyReplyError(StreamError):
    """The reply ended properly but held no text and no tool calls: not a success. Servers do
    this for a prompt longer than their context window, or for a request they cannot serve."""


class SchemaMismatchError(StreamError):
    """A typed call's reply (``schema=``, ``--schema``) did not validate against its pydantic
    model, even after one repair round; the last reply is on the error's ``result``."""


class ToolChoiceIgnoredError(StreamError):
    """`tool_choice` named a function (or said ``required``) and the reply called none: the server
    ignored the choice. The reply's text is on the error's ``result``."""


class CassetteMissError(APIError):
    """A cassette replaying (``--mode replay``) has no recording of the request: nothing was
    sent. The message shows the closest recorded request and how it differs."""


class UnexpectedError(APIError):
    """A call failed with an exception nbllm did not foresee, raised under the attempt engine
    (a cache or cassette file, a pool, a reader, a bug). The engine's one edge turns it into
    this error, records the call as failed, and chains the original as ``__cause__``."""
