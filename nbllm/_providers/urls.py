"""Endpoint URL rules: which URL a chat call and a `/models` call go to.

- A base URL (``http://host:8000/v1``) gets ``/chat/completions`` appended.
- A URL that already ends in ``/chat/completions`` is used as is (API7's
  ``override.endpoint``); a trailing slash is dropped.
- Azure OpenAI (``*.openai.azure.com``, ``*.cognitiveservices.azure.com`` or auth
  style ``azure``): the deployment is in the path (``/openai/deployments/<name>``),
  ``api-version`` is a query parameter; a bare resource URL takes the model id as
  the deployment.
- Anthropic Messages (``api: anthropic``): ``{base}/v1/messages``, the base given with
  ``/v1`` or without; a URL ending in ``/v1/messages`` is used as is.
- Embeddings: ``{base}/embeddings`` (on Azure, under the deployment); a URL ending in
  ``/chat/completions`` or ``/responses`` has that replaced.
- Only ``http`` and ``https`` URLs with a host are accepted.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from nbllm._exceptions import ConfigError

CHAT_SUFFIX = "/chat/completions"
MESSAGES_SUFFIX = "/v1/messages"
RESPONSES_SUFFIX = "/responses"
EMBEDDINGS_SUFFIX = "/embeddings"
AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com")
URL_EXAMPLE = "http://localhost:8000/v1 or https://api.openai.com/v1"


def normalize_url(url: str) -> str:
    """Return `url` without trailing slashes, or raise `ConfigError` saying what is wrong."""
    text = url.strip()
    if not text:
        raise ConfigError(f"url is empty; give the endpoint's base URL, e.g. {URL_EXAMPLE}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    # "localhost:8000/v1" parses with scheme "localhost", so test for "://" as well.
    if "://" not in text or scheme not in ("http", "https"):
        shown = f"uses {scheme}://" if "://" in text else "has no scheme"
        raise ConfigError(
            f"url {_safe(text)!r} {shown}; only http:// and https:// are accepted, e.g. {URL_EXAMPLE}"
        )
    if not parts.hostname:
        raise ConfigError(f"url {_safe(text)!r} has no host; write it as {URL_EXAMPLE}")
    if parts.username or parts.password:
        raise ConfigError(
            "url contains a user name or password; put credentials in the key "
            "(--key-env VAR) or a header, never in the URL"
        )
    if parts.fragment:
        raise ConfigError(f"url {_safe(text)!r} has a #fragment; remove it")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(f"url {_safe(text)!r} has a port outside 0-65535; check the number") from None
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def is_azure(url: str, auth: str = "bearer") -> bool:
    """Whether the endpoint follows Azure OpenAI's URL and header rules."""
    host = (urlsplit(url).hostname or "").lower()
    return auth in ("azure", "azure-ad") or host.endswith(AZURE_HOST_SUFFIXES)


def messages_url(url: str) -> str:
    """Anthropic Messages: ``{base}/v1/messages`` for a base given with ``/v1`` or without;
    a URL that already ends in ``/v1/messages`` is used as is."""
    parts = urlsplit(normalize_url(url))
    path = parts.path
    if not path.endswith(MESSAGES_SUFFIX):
        path = path.removesuffix("/v1") + MESSAGES_SUFFIX
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def responses_url(url: str) -> str:
    """OpenAI Responses: ``{base}/responses``; a URL ending in ``/responses`` is used as is, and
    one ending in ``/chat/completions`` has that replaced."""
    parts = urlsplit(normalize_url(url))
    path = parts.path.removesuffix(CHAT_SUFFIX)
    if not path.endswith(RESPONSES_SUFFIX):
        path += RESPONSES_SUFFIX
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@functools.lru_cache(maxsize=256)
def chat_url(
    url: str, model: str, *, auth: str = "bearer", api_version: str | None = None, api: str = "chat"
) -> str:
    """The URL a chat call for `model` is posted to: Chat Completions, Anthropic Messages or
    Responses. Remembered: a call resolves its model afresh, and parsing and checking the URL
    each time was about 3% of a short call's time (a URL that fails the checks raises every
    time, and is not remembered)."""
    if api == "anthropic":
        return messages_url(url)
    if api == "responses":
        return responses_url(url)
    parts = urlsplit(normalize_url(url))
    path = parts.path
    if is_azure(url, auth):
        if not path.endswith(CHAT_SUFFIX):
            if "/openai/deployments/" in path:
                path += CHAT_SUFFIX
            elif path in ("", "/openai"):
                path = f"/openai/deployments/{quote(model, safe='')}{CHAT_SUFFIX}"
            else:
                path += CHAT_SUFFIX
        query = _with_api_version(parts.query, api_version)
    else:
        if not path.endswith(CHAT_SUFFIX):
            path += CHAT_SUFFIX
        query = parts.query
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def embeddings_url(url: str, model: str, *, auth: str = "bearer", api_version: str | None = None) -> str:
    """The URL an embeddings request for `model` is posted to (OpenAI's ``/embeddings``)."""
    parts = urlsplit(normalize_url(url))
    path = parts.path.removesuffix(CHAT_SUFFIX).removesuffix(RESPONSES_SUFFIX)
    query = parts.query
    if is_azure(url, auth):
        if path in ("", "/openai"):
            path = f"/openai/deployments/{quote(model, safe='')}"
        query = _with_api_version(parts.query, api_version)
    if not path.endswith(EMBEDDINGS_SUFFIX):
        path += EMBEDDINGS_SUFFIX
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def models_url(url: str, *, auth: str = "bearer", api_version: str | None = None, api: str = "chat") -> str:
    """The URL that lists the endpoint's models (``GET``)."""
    if api == "anthropic":
        parts = urlsplit(messages_url(url))
        path = parts.path.removesuffix("/messages") + "/models"
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    parts = urlsplit(normalize_url(url))
    if is_azure(url, auth):
        path = "/openai/models"
        query = _with_api_version(parts.query, api_version)
    else:
        path = parts.path
        for suffix in (CHAT_SUFFIX, RESPONSES_SUFFIX, EMBEDDINGS_SUFFIX):
            path = path.removesuffix(suffix)
        path += "/models"
        query = parts.query
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def is_loopback(url: str) -> bool:
    """Whether `url` points at this machine (a key sent there over http is not exposed)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """The host (and port, when given) of `url`, for history records and messages."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _with_api_version(query: str, api_version: str | None) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "api-version"]
    existing = dict(parse_qsl(query)).get("api-version")
    version = api_version or existing
    if version:
        pairs.append(("api-version", version))
    return urlencode(pairs)


def _safe(text: str) -> str:
    """`text` with any user:password part removed, so an error never echoes a credential."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text if "@" not in text else "<url with credentials>"
    authority, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{tail}"
