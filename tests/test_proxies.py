"""Proxies, through a real forward proxy (proxy.py, started here): a provider's --proxy, the
environment's $HTTP_PROXY / $HTTPS_PROXY / $NO_PROXY, loopback never proxied, proxy
authentication (a 407 said as such), HTTPS through CONNECT, and credentials never shown or saved.

Servers under test listen on 127.0.0.2: on Linux all of 127/8 is this machine, and unlike
127.0.0.1 and localhost it is not exempt from proxies."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._providers.local import free_port
from nbllm.testing import serve

HOST = "127.0.0.2"
USER, PASSWORD = "notebook", "proxy-pass-123"


def start_proxy(tmp_path: Path, *extra: str) -> Iterator[str]:
    port_file = tmp_path / f"proxy-{len(extra)}.port"
    command = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
        "--log-level", "WARNING", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[str]:
    yield from start_proxy(tmp_path)


@pytest.fixture
def auth_proxy(tmp_path: Path) -> Iterator[str]:
    yield from start_proxy(tmp_path, "--basic-auth", f"{USER}:{PASSWORD}")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def register(name: str, url: str, **network: Any) -> str:
    config = ProviderConfig(
        name=name, url=url, auth="none", models={"m": {}}, retry={"max_retries": 0}, **network
    )
    get_store().add_provider(config, replace=True)
    return f"{name}/m"


def dead_proxy() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_providers_proxy_is_used(proxy: str) -> None:
    with serve(reply="Via the proxy.", host=HOST) as server:
        assert (
            nbllm.chat("hi", register("via", server.base_url, proxy=f"http://{proxy}")).text
            == "Via the proxy."
        )
        with pytest.raises(
            nbllm.APIConnectionError, match=r"could not reach the proxy http://127\.0\.0\.1"
        ) as caught:
            nbllm.chat("hi", register("dead", server.base_url, proxy=dead_proxy()))
    assert "(--proxy)" in caught.value.message


def test_the_environments_proxy_and_no_proxy(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(reply="Env.", host=HOST) as server:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy}")
        assert nbllm.chat("hi", register("env-live", server.base_url)).text == "Env."
        monkeypatch.setenv("HTTP_PROXY", dead_proxy())
        with pytest.raises(nbllm.APIConnectionError, match=r"\(\$HTTPS_PROXY / \$HTTP_PROXY\)"):
            nbllm.chat("hi", register("env-dead", server.base_url))
        monkeypatch.setenv("NO_PROXY", HOST)
        assert nbllm.chat("hi", register("env-bypassed", server.base_url)).text == "Env."


def test_loopback_is_never_proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", dead_proxy())
    monkeypatch.setenv("HTTPS_PROXY", dead_proxy())
    with serve(reply="Direct.") as server:
        assert nbllm.chat("hi", register("loop", server.base_url)).text == "Direct."


def test_proxy_authentication(auth_proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(reply="Authenticated.", host=HOST) as server:
        with pytest.raises(nbllm.AuthenticationError) as caught:
            nbllm.chat("hi", register("no-creds", server.base_url, proxy=f"http://{auth_proxy}"))
        assert "407" in caught.value.message and "the proxy on the way" in caught.value.message
        assert "--proxy http://USER:${PROXY_PASSWORD}@HOST:PORT" in (caught.value.hint or "")
        monkeypatch.setenv("PROXY_PASSWORD", PASSWORD)
        templated = register(
            "creds", server.base_url, proxy=f"http://{USER}:${{PROXY_PASSWORD}}@{auth_proxy}"
        )
        assert nbllm.chat("hi", templated).text == "Authenticated."


def test_https_through_connect_with_and_without_proxy_credentials(
    auth_proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with serve(reply="Tunnelled.", host=HOST, ssl_context=context) as server:
        assert server.base_url.startswith(f"https://{HOST}:")
        with pytest.raises(nbllm.APIConnectionError, match="asks for credentials \\(407"):
            nbllm.chat(
                "hi",
                register(
                    "tls-no-creds", server.base_url, proxy=f"http://{auth_proxy}", ca_bundle=str(bundle)
                ),
            )
        monkeypatch.setenv("HTTPS_PROXY", f"http://{USER}:{PASSWORD}@{auth_proxy}")
        result = nbllm.chat("hi", register("tls-env", server.base_url, ca_bundle=str(bundle)))
    assert result.text == "Tunnelled."


def test_proxy_credentials_are_never_shown_or_saved(tmp_path: Path) -> None:
    literal = ProviderConfig(
        name="lit", url="https://gw.example.com/v1", proxy=f"http://{USER}:{PASSWORD}@proxy:3128"
    )
    assert literal.proxy_shown() == "http://****@proxy:3128"
    assert PASSWORD not in repr(literal) and "proxy" not in literal.saved_form()
    templated = ProviderConfig(name="tpl", url="https://gw.example.com/v1", proxy="http://u:${PW}@proxy:3128")
    assert templated.saved_form()["proxy"] == "http://u:${PW}@proxy:3128"
    assert isinstance(templated.proxy, SecretStr)
    get_store().add_provider(literal)
    from nbllm._providers import persist

    path = tmp_path / "providers.yaml"
    persist.save(get_store(), path)
    assert PASSWORD not in path.read_text()
    assert os.environ.get("PW") is None


async def test_the_doctor_names_an_unreachable_proxy() -> None:
    from nbllm._calls.doctor import diagnose

    register("doc", f"http://{HOST}:9/v1", proxy=dead_proxy())
    report = await diagnose(get_store(), "doc/m")
    found = {f.check: f for f in report.findings}
    assert found["network"].detail.startswith("connects through the proxy http://127.0.0.1:")
    assert found["connection"].detail.startswith("TCP: cannot connect to the proxy at 127.0.0.1:")


async def test_the_doctor_says_when_the_proxy_wants_credentials(auth_proxy: str, tmp_path: Path) -> None:
    from nbllm._calls.doctor import diagnose

    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    register("plain", f"http://{HOST}:9/v1", proxy=f"http://{auth_proxy}")
    plain = {f.check: f for f in (await diagnose(get_store(), "plain/m")).findings}
    assert plain["models"].verdict == "fail" and "407" in plain["models"].detail
    assert "the proxy on the way" in plain["models"].detail
    register("tunnel", f"https://{HOST}:9/v1", proxy=f"http://{auth_proxy}", ca_bundle=str(bundle))
    tunnel = {f.check: f for f in (await diagnose(get_store(), "tunnel/m")).findings}
    assert tunnel["connection"].detail.startswith("proxy: the proxy http://127.0.0.1:")
    assert "asks for credentials" in tunnel["models"].detail
