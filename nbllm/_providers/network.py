"""How nbllm reaches a provider through a company network: the certificates it trusts, the
client certificate it shows (mutual TLS), and which proxy a request goes through.

Trust, first that applies:

1. ``insecure``: no certificate check at all. Only for testing: refused for a host that is not
   this machine unless ``insecure_remote`` says it is meant.
2. the provider's ``ca_bundle``: exactly the CA certificates in that file.
3. the provider's ``trust``: ``system`` (the OS trust store, through truststore: where IT puts
   the root certificate of a TLS-inspecting proxy) or ``certifi`` (Mozilla's bundle).
4. ``$REQUESTS_CA_BUNDLE``, ``$SSL_CERT_FILE`` / ``$SSL_CERT_DIR``: the bundle they name.
5. ``$NBLLM_TRUST`` (``system`` or ``certifi``): the default for every provider.
6. the OS trust store, or certifi where truststore is not installed.

Building a context loads certificates (tens of milliseconds), so each distinct one is built
once per process.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import certifi

from nbllm._exceptions import ConfigError

TRUST_STORES = ("system", "certifi")
TRUST_ENV = "NBLLM_TRUST"


@dataclass(frozen=True)
class Trust:
    """What a provider's connections verify certificates with, and how to say so."""

    verify: ssl.SSLContext | bool
    """An SSL context, or False when checks are off (``insecure``)."""
    description: str


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
"""Hosts never reached through a proxy from the environment (see `nbllm._calls.pool`)."""


def environment_proxy(url: str) -> str | None:
    """`environment_proxy_url` with any credentials masked, for messages."""
    found = environment_proxy_url(url)
    return mask_credentials(found) if found else None


def environment_proxy_url(url: str) -> str | None:
    """The proxy ``$HTTPS_PROXY`` / ``$HTTP_PROXY`` / ``$ALL_PROXY`` give for `url`, unless
    ``$NO_PROXY`` or the loopback rule exempts it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    # proxy_bypass_environment reads $NO_PROXY as urllib and httpx do (typeshed omits it).
    if host in LOOPBACK_NAMES or urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    found: str | None = proxies.get(parts.scheme) or proxies.get("all")
    return found


def mask_credentials(url: str) -> str:
    """``http://user:pass@proxy:3128`` -> ``http://****@proxy:3128``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}{sep}****@{authority.rpartition('@')[2]}{slash}{tail}"


def default_store() -> str:
    """``$NBLLM_TRUST``, else ``system`` where truststore is installed, else ``certifi``."""
    chosen = os.environ.get(TRUST_ENV, "").strip().lower()
    if chosen:
        if chosen not in TRUST_STORES:
            raise ConfigError(f"{TRUST_ENV}={chosen!r} is not a trust store; choose system or certifi")
        return chosen
    return "system" if _truststore_installed() else "certifi"


def trust_for(
    *,
    insecure: bool = False,
    ca_bundle: str | None = None,
    trust: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> Trust:
    """The trust (and client certificate) a provider's settings ask for; see the module's order."""
    cert = (client_cert, client_key) if client_cert else None
    if insecure:
        context = _context("none", None, cert)
        return Trust(context, "nothing: certificate checks are off (--insecure)")
    if ca_bundle:
        path = _readable(ca_bundle, "--ca-bundle")
        return Trust(_context("file", path, cert), f"the CA bundle {path} (--ca-bundle)")
    if trust:
        return _store(trust, cert, "(--trust)")
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(variable)
        if value:
            path = _readable(value, f"${variable}")
            kind = "dir" if variable == "SSL_CERT_DIR" else "file"
            return Trust(_context(kind, path, cert), f"{path} (${variable})")
    return _store(default_store(), cert, f"(${TRUST_ENV})" if os.environ.get(TRUST_ENV) else "(the default)")


def _store(name: str, cert: tuple[str, str | None] | None, why: str) -> Trust:
    if name == "system":
        if not _truststore_installed():
            raise ConfigError(
                "the system trust store needs truststore, which is not installed",
                hint="pip install truststore, or use --trust certifi or --ca-bundle PATH",
            )
        # truststore reads OpenSSL's default places when the context is built, which
        # $SSL_CERT_FILE / $SSL_CERT_DIR can move: a context per value.
        where = f"{os.environ.get('SSL_CERT_FILE', '')}|{os.environ.get('SSL_CERT_DIR', '')}"
        return Trust(_context("system", where, cert), f"the OS trust store {why}")
    return Trust(_context("certifi", certifi.where(), cert), f"certifi's CA bundle {why}")


def _readable(path: str, what: str) -> str:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ConfigError(
            f"{what} names {resolved}, which does not exist", hint="give the path of a PEM file"
        )
    return str(resolved)


def _truststore_installed() -> bool:
    try:
        import truststore  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=16)
def _context(kind: str, path: str | None, cert: tuple[str, str | None] | None) -> ssl.SSLContext:
    context: ssl.SSLContext
    try:
        if kind == "system":
            import truststore

            context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        elif kind == "none":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif kind == "dir":
            context = ssl.create_default_context(capath=path)
        else:
            context = ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the CA certificates in {path}: {exc}", hint="give a PEM file of CA certificates"
        ) from None
    if cert is not None:
        certfile, keyfile = cert
        try:
            context.load_cert_chain(
                _readable(certfile, "--client-cert"), keyfile and _readable(keyfile, "--client-key")
            )
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {certfile}: {exc}",
                hint="give a PEM certificate with --client-cert and its unencrypted private key "
                "with --client-key (or one PEM file holding both)",
            ) from None
    return context
