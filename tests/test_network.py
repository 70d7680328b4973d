"""Certificates on a real HTTPS server on loopback (trustme's CA): which store nbllm trusts, a CA
bundle, the environment's bundle, a store the test controls, --insecure and where it is refused,
mutual TLS, and the errors that say which store was used and what to try."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._providers.network import TRUST_ENV, trust_for
from nbllm.testing import LoopbackServer, serve


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "company-root.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(autouse=True)
def clean_trust_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", TRUST_ENV):
        monkeypatch.delenv(name, raising=False)


def server_context(ca: trustme.CA, *, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    if client_ca is not None:  # mutual TLS: the client must show a certificate this CA issued
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    return context


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[LoopbackServer]:
    with serve(reply="Over TLS.", ssl_context=server_context(ca)) as server:
        yield server


def register(url: str, **network: Any) -> str:
    config = ProviderConfig(
        name="corp", url=url, auth="none", models={"m": {}}, retry={"max_retries": 0}, **network
    )
    get_store().add_provider(config, replace=True)
    return "corp/m"


def test_the_loopback_server_speaks_https(https: LoopbackServer) -> None:
    assert https.base_url.startswith("https://127.0.0.1:")


def test_an_unknown_ca_fails_and_the_error_names_the_store_and_the_fixes(https: LoopbackServer) -> None:
    model = register(https.base_url)
    with pytest.raises(nbllm.APIConnectionError) as caught:
        nbllm.chat("hi", model)
    error = caught.value
    assert "TLS certificate of 127.0.0.1" in error.message and "was not accepted" in error.message
    assert "nbllm trusted the OS trust store (the default)" in error.message
    assert "--ca-bundle PATH" in (error.hint or "") and "--trust system" in (error.hint or "")
    assert nbllm.history()[-1].error_class == "APIConnectionError"


def test_certifi_says_so_when_it_fails(https: LoopbackServer) -> None:
    with pytest.raises(nbllm.APIConnectionError, match="trusted certifi's CA bundle \\(--trust\\)"):
        nbllm.chat("hi", register(https.base_url, trust="certifi"))


def test_a_ca_bundle_is_trusted(https: LoopbackServer, ca_file: Path) -> None:
    assert nbllm.chat("hi", register(https.base_url, ca_bundle=str(ca_file))).text == "Over TLS."


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_environments_bundle_is_trusted(
    https: LoopbackServer, ca_file: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(ca_file))
    assert nbllm.chat("hi", register(https.base_url)).text == "Over TLS."
    assert trust_for().description == f"{ca_file} (${variable})"


def test_a_ca_added_to_the_system_store_is_trusted(
    https: LoopbackServer, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # truststore reads the OS store; on Linux, OpenSSL's, which this folder stands in for.
    store = tmp_path / "store"
    store.mkdir()
    ca.cert_pem.write_to_path(str(store / "company-root.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(store / "company-root.pem"))
    assert nbllm.chat("hi", register(https.base_url, trust="system")).text == "Over TLS."


def test_insecure_works_on_loopback_and_is_refused_elsewhere(https: LoopbackServer) -> None:
    assert nbllm.chat("hi", register(https.base_url, insecure=True)).text == "Over TLS."
    with pytest.raises(nbllm.ConfigError, match="refused for hosts other than this machine"):
        ProviderConfig(name="x", url="https://gw.example.com/v1", insecure=True)
    allowed = ProviderConfig(name="x", url="https://gw.example.com/v1", insecure=True, insecure_remote=True)
    assert allowed.network_trust().verify is not None
    assert "certificate checks are off" in allowed.network_trust().description


def test_a_missing_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(nbllm.ConfigError, match="does not exist"):
        trust_for(ca_bundle=str(tmp_path / "nowhere.pem"))
    with pytest.raises(nbllm.ConfigError, match="trust 'windows' is not one of system, certifi"):
        ProviderConfig(name="x", url="https://h/v1", trust="windows")


def test_the_global_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trust_for().description == "the OS trust store (the default)"
    monkeypatch.setenv(TRUST_ENV, "certifi")
    assert trust_for().description == "certifi's CA bundle ($NBLLM_TRUST)"
    monkeypatch.setenv(TRUST_ENV, "windows")
    with pytest.raises(nbllm.ConfigError, match="NBLLM_TRUST='windows' is not a trust store"):
        trust_for()


def test_mutual_tls(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    client_ca = trustme.CA()
    identity = client_ca.issue_cert("notebook@example.com")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    identity.cert_chain_pems[0].write_to_path(str(cert))
    identity.private_key_pem.write_to_path(str(key))
    with serve(reply="Mutual.", ssl_context=server_context(ca, client_ca=client_ca)) as server:
        without = register(server.base_url, ca_bundle=str(ca_file))
        with pytest.raises(nbllm.APIConnectionError) as caught:
            nbllm.chat("hi", without)
        with_cert = register(
            server.base_url, ca_bundle=str(ca_file), client_cert=str(cert), client_key=str(key)
        )
        assert nbllm.chat("hi", with_cert).text == "Mutual."
    assert "--client-cert" in (caught.value.hint or "") or "client certificate" in caught.value.message


def test_a_client_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(nbllm.ConfigError, match="--client-key needs --client-cert"):
        ProviderConfig(name="x", url="https://h/v1", client_key="k.pem")


def test_contexts_are_built_once_per_setting(ca_file: Path) -> None:
    assert trust_for(ca_bundle=str(ca_file)).verify is trust_for(ca_bundle=str(ca_file)).verify
    assert trust_for(trust="certifi").verify is not trust_for(ca_bundle=str(ca_file)).verify


async def test_the_doctor_names_the_trust_store_and_the_failing_tls_step(https: LoopbackServer) -> None:
    from nbllm._calls.doctor import diagnose

    register(https.base_url)
    report = await diagnose(get_store(), "corp/m")
    found = {f.check: f for f in report.findings}
    assert (
        found["network"].detail
        == "connects directly (no proxy); TLS trusting the OS trust store (the default); auth none"
    )
    assert found["connection"].verdict == "fail" and found["connection"].detail.startswith("TLS: ")
    assert "--ca-bundle" in found["connection"].hint
    assert not report.ok


async def test_the_doctor_names_a_refused_connection_as_the_tcp_step() -> None:
    from nbllm._calls.doctor import diagnose
    from nbllm._providers.local import free_port

    register(f"http://127.0.0.1:{free_port()}/v1")
    report = await diagnose(get_store(), "corp/m")
    connection = next(f for f in report.findings if f.check == "connection")
    assert connection.detail.startswith("TCP: cannot connect to the server at 127.0.0.1:")


async def test_the_doctor_names_a_host_that_does_not_resolve_as_the_dns_step() -> None:
    from nbllm._calls.doctor import diagnose

    # .invalid never resolves (RFC 6761), so this needs no network and cannot reach one.
    register("https://nbllm-doctor-test.invalid/v1")
    report = await diagnose(get_store(), "corp/m")
    connection = next(f for f in report.findings if f.check == "connection")
    assert connection.verdict == "fail"
    assert connection.detail.startswith("DNS: nbllm-doctor-test.invalid does not resolve")
    assert "check the host name in the URL" in connection.hint and "VPN" in connection.hint
    assert not report.ok


async def test_a_call_to_a_host_that_does_not_resolve_says_so() -> None:
    register("https://nbllm-doctor-test.invalid/v1")
    with pytest.raises(nbllm.APIConnectionError) as caught:
        await nbllm.achat("hi", model="corp/m")
    assert caught.value.message.startswith("the host name nbllm-doctor-test.invalid does not resolve")
    assert "https://nbllm-doctor-test.invalid/v1" in (caught.value.hint or "")
    assert nbllm.get_history().records()[-1].status == "error"


def test_provider_show_and_the_magic_take_the_network_settings(ip: Any, ca_file: Path) -> None:
    from IPython.utils.capture import capture_output

    with capture_output() as out:
        ip.run_line_magic(
            "llm_provider",
            f"add corp --url https://gw.example.com/v1 --ca-bundle {ca_file} --proxy http://u:${{PW}}@proxy:3128",
        )
        ip.run_line_magic("llm_provider", "show corp")
    shown = out.stdout + "".join(str(o.data.get("text/plain", "")) for o in out.outputs)
    assert f"the CA bundle {ca_file} (--ca-bundle)" in shown
    assert "http://****@proxy:3128" in shown and "${PW}" not in shown
    with capture_output() as out:
        ip.run_line_magic("llm_provider", "add lab --url https://127.0.0.1:9/v1 --insecure")
    assert "certificate checks are OFF" in out.stderr


def test_save_and_load_keep_the_network_settings_without_secrets(tmp_path: Path, ca_file: Path) -> None:
    from nbllm._providers import persist

    store = get_store()
    store.add_provider(
        ProviderConfig(
            name="corp", url="https://gw.example.com/v1", trust="certifi", ca_bundle=str(ca_file),
            client_cert="/etc/me.pem", client_key="/etc/me.key", proxy="http://me:${PROXY_PW}@proxy:3128",
        )
    )  # fmt: skip
    store.add_provider(
        ProviderConfig(
            name="aoai", url="https://r.openai.azure.com", auth="azure-ad", api_version="2024-10-21",
            token_provider=lambda: "never-saved-token",
        )
    )  # fmt: skip
    path = tmp_path / "providers.yaml"
    persist.save(store, path)
    text = path.read_text()
    assert "never-saved-token" not in text and "token_provider" not in text
    store.clear()
    persist.load(store, path)
    corp, aoai = store.provider("corp"), store.provider("aoai")
    assert (corp.trust, corp.ca_bundle, corp.client_cert, corp.client_key) == (
        "certifi", str(ca_file), "/etc/me.pem", "/etc/me.key",
    )  # fmt: skip
    assert corp.proxy is not None and corp.proxy.get_secret_value() == "http://me:${PROXY_PW}@proxy:3128"
    assert aoai.auth == "azure-ad" and aoai.token_provider is None
