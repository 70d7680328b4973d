"""Embeddings (`nbllm.embed`): the request, the reply shapes real servers send (one vector per
text, per token, base64, ignored ``dimensions``), hostile replies, batching in order with a few
requests in flight, retries, partial results, history records without text, the endpoint
check, discovery, and the loopback server's ``/v1/embeddings``."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
from typing import Any

import httpx
import numpy as np
import pytest
import respx
from IPython.utils.capture import capture_output

import nbllm
from nbllm import ProviderConfig, get_store
from nbllm._calls.doctor import diagnose
from nbllm._providers.urls import embeddings_url, models_url
from nbllm._views.tables import HistoryTable
from nbllm.testing import Fault, serve, vector_for

URL = "http://embed.test/v1"
KEY = "sk-embed-secret-1234567890"
FAST = {"max_retries": 2, "backoff_base_s": 0.0, "backoff_max_s": 0.0}


def register(url: str = URL, *, name: str = "e", window: int | None = None, **config: Any) -> str:
    spec: dict[str, Any] = {"capabilities": "embeddings"}
    if window:
        spec["context_window"] = window
    config.setdefault("retry", FAST)
    get_store().add_provider(
        ProviderConfig(name=name, url=url, key=KEY, models={"emb": spec}, **config), replace=True
    )
    return f"{name}/emb"


def reply(vectors: list[Any], usage: Any = None, **extra: Any) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    payload: dict[str, Any] = {"object": "list", "data": data, **extra}
    if usage is not None:
        payload["usage"] = usage
    return payload


# -- URLs and the request -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8000/v1", "http://h:8000/v1/embeddings"),
        ("http://h:8000/v1/", "http://h:8000/v1/embeddings"),
        ("http://h:8000/v1/chat/completions", "http://h:8000/v1/embeddings"),
        ("http://h:8000/v1/responses", "http://h:8000/v1/embeddings"),
        ("http://h:8000/v1/embeddings", "http://h:8000/v1/embeddings"),
        ("https://gw.example/openai/v1?tenant=a", "https://gw.example/openai/v1/embeddings?tenant=a"),
    ],
)
def test_embeddings_url(url: str, expected: str) -> None:
    assert embeddings_url(url, "m") == expected


def test_embeddings_url_on_azure_puts_the_deployment_in_the_path() -> None:
    bare = embeddings_url("https://r.openai.azure.com", "emb-3", api_version="2024-10-21")
    assert bare == "https://r.openai.azure.com/openai/deployments/emb-3/embeddings?api-version=2024-10-21"
    given = embeddings_url("https://r.openai.azure.com/openai/deployments/mine", "x", api_version="v")
    assert given == "https://r.openai.azure.com/openai/deployments/mine/embeddings?api-version=v"
    assert models_url("http://h/v1/embeddings") == "http://h/v1/models"


@respx.mock
def test_request_sends_the_texts_the_model_and_the_key_and_nothing_else() -> None:
    route = respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=reply([[1.0, 0.0]])))
    model = register()
    vectors = nbllm.embed(["hello"], model=model)
    sent = route.calls.last.request
    assert json.loads(sent.content) == {"model": "emb", "input": ["hello"]}
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert vectors.tolist() == [[1.0, 0.0]]


@respx.mock
def test_dimensions_are_sent_and_a_server_that_ignores_them_is_an_error() -> None:
    route = respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=reply([[0.5] * 6])))
    model = register()
    with pytest.raises(nbllm.ProtocolError, match="6-dimensional vectors although 4 dimensions") as caught:
        nbllm.embed(["a"], model=model, dimensions=4)
    assert json.loads(route.calls.last.request.content)["dimensions"] == 4
    assert "leave out dimensions=" in (caught.value.hint or "")
    assert len(route.calls) == 1  # not retried: the same request gets the same answer


# -- reply shapes -------------------------------------------------------------------


@respx.mock
def test_vectors_come_back_in_the_order_of_the_texts_whatever_order_the_data_is_in() -> None:
    data = [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json={"data": data}))
    assert nbllm.embed(["first", "second"], model=register()).tolist() == [[1.0], [2.0]]


@respx.mock
def test_base64_vectors_are_decoded() -> None:
    encoded = base64.b64encode(struct.pack("<3f", 0.25, -1.5, 3.0)).decode()
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=reply([encoded])))
    assert nbllm.embed("x", model=register()).tolist() == [0.25, -1.5, 3.0]


@respx.mock
def test_one_vector_per_token_names_the_missing_pooling() -> None:
    # llama-cpp-python's server with a chat model (SmolLM2) and --embedding True answers this way.
    per_token = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=reply([per_token])))
    with pytest.raises(nbllm.ProtocolError, match="3 vectors for one text") as caught:
        nbllm.embed(["a b c"], model=register())
    assert "--pooling mean" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"object": "list"}, "without a 'data' list"),
        ({"data": {"0": [1.0]}}, "without a 'data' list"),
        (reply([[1.0], [2.0]]), "2 vectors for 1 texts"),
        ({"data": [[1.0]]}, "not an object"),
        ({"data": [{"index": 5, "embedding": [1.0]}]}, "index 5"),
        ({"data": [{"index": True, "embedding": [1.0]}]}, "index True"),
        (reply([None]), "NoneType, not a list of numbers"),
        (reply([[1.0, "2"]]), "holding '2'"),
        (reply([[1.0, None]]), "holding None"),
        (reply([[]]), "empty vectors"),
        (reply(["not base64!"]), "not base64"),
        (reply([[1e308, 1e308]]), "NaN or infinity"),
    ],
)
@respx.mock
def test_a_reply_of_the_wrong_shape_is_a_protocol_error(payload: Any, message: str) -> None:
    route = respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=payload))
    with pytest.raises(nbllm.ProtocolError, match=message):
        nbllm.embed(["only"], model=register())
    assert len(route.calls) == 1
    assert nbllm.history()[-1].status == "error"


@respx.mock
def test_nan_and_mixed_lengths_in_one_batch_are_refused() -> None:
    body = '{"data": [{"index": 0, "embedding": [NaN, 1.0]}]}'
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, text=body))
    with pytest.raises(nbllm.ProtocolError, match="NaN"):
        nbllm.embed(["a"], model=register())
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, json=reply([[1.0], [1.0, 2.0]])))
    with pytest.raises(nbllm.ProtocolError, match="different lengths"):
        nbllm.embed(["a", "b"], model=register())


@respx.mock
def test_an_error_object_in_a_200_and_a_body_that_is_not_json_are_nbllm_errors() -> None:
    respx.post(f"{URL}/embeddings").mock(
        return_value=httpx.Response(200, json={"error": {"message": "model is loading"}})
    )
    with pytest.raises(nbllm.StreamError, match="model is loading"):
        nbllm.embed(["a"], model=register())
    respx.post(f"{URL}/embeddings").mock(return_value=httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(nbllm.ProtocolError, match="not JSON"):
        nbllm.embed(["a"], model=register())


@respx.mock
def test_usage_is_the_servers_count_or_an_estimate_marked_as_one() -> None:
    route = respx.post(f"{URL}/embeddings")
    route.mock(return_value=httpx.Response(200, json=reply([[1.0]], usage={"prompt_tokens": 7})))
    nbllm.embed(["seven tokens here"], model=register())
    counted = nbllm.history()[-1]
    assert (counted.prompt_tokens, counted.tokens_estimated) == (7, False)
    inf = '{"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 1e999}}'
    route.mock(return_value=httpx.Response(200, text=inf))
    nbllm.embed(["four words of text"], model=register())
    estimated = nbllm.history()[-1]
    assert estimated.tokens_estimated and estimated.prompt_tokens > 0


# -- input checks (nothing sent) ----------------------------------------------------


@respx.mock
@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["a", "", "b", ""], "texts 1, 3 are empty"),
        (["a", None], "text 1 is not"),
        (["a", float("nan")], "the first is float"),
        (5, "not int"),
        (b"bytes", "not bytes"),
        ({"a": 1}, "not dict"),
    ],
)
def test_bad_texts_are_refused_before_sending(texts: Any, message: str) -> None:
    route = respx.post(f"{URL}/embeddings")
    with pytest.raises(nbllm.PromptError, match=message):
        nbllm.embed(texts, model=register())
    assert not route.called


@pytest.mark.parametrize(
    ("option", "value"), [("batch_size", 0), ("concurrency", -1), ("dimensions", 0), ("batch_size", True)]
)
def test_bad_options_are_refused(option: str, value: Any) -> None:
    register()
    with pytest.raises(nbllm.PromptError, match=option):
        nbllm.embed(["a"], model="e/emb", **{option: value})


def test_a_misspelt_option_is_named_with_the_likely_one() -> None:
    register()
    with pytest.raises(nbllm.PromptError, match="unknown option 'batch'; did you mean 'batch_size'"):
        nbllm.embed(["a"], model="e/emb", batch=3)  # type: ignore[call-arg]


def test_an_anthropic_provider_has_no_embeddings() -> None:
    get_store().add_provider(ProviderConfig(name="a", url="http://a.test", api="anthropic", models={"m": {}}))
    with pytest.raises(nbllm.CapabilityError, match="Anthropic Messages"):
        nbllm.embed(["a"], model="a/m")


@respx.mock
def test_a_text_over_the_declared_window_is_refused_by_position() -> None:
    route = respx.post(f"{URL}/embeddings")
    model = register(window=50)
    with pytest.raises(nbllm.ContextTooLongError, match="text 1 is longer than e/emb's context window of 50"):
        nbllm.embed(["short", "word " * 400], model=model)
    assert not route.called


@respx.mock
def test_no_texts_is_no_request_and_an_empty_array() -> None:
    route = respx.post(f"{URL}/embeddings")
    vectors = nbllm.embed([], model=register())
    assert vectors.shape == (0, 0) and not route.called


# -- errors from the server ---------------------------------------------------------


@respx.mock
def test_llama_servers_too_large_input_is_not_retried_and_says_what_to_do() -> None:
    message = "input (3001 tokens) is too large to process. increase the physical batch size"
    route = respx.post(f"{URL}/embeddings").mock(
        return_value=httpx.Response(500, json={"error": {"code": 500, "message": message}})
    )
    with pytest.raises(nbllm.ContextTooLongError, match="batch 1 of 1") as caught:
        nbllm.embed(["long"], model=register())
    assert len(route.calls) == 1
    assert "--ubatch-size" in (caught.value.hint or "")


@respx.mock
def test_a_wrong_key_is_an_authentication_error_that_never_shows_the_key() -> None:
    respx.post(f"{URL}/embeddings").mock(
        return_value=httpx.Response(401, json={"error": {"message": f"bad key {KEY}"}})
    )
    with pytest.raises(nbllm.AuthenticationError) as caught:
        nbllm.embed(["a"], model=register())
    record = nbllm.history()[-1]
    shown = f"{caught.value} {caught.value.result!r} {record!r} {HistoryTable([record])._repr_html_()}"
    assert record.error_class == "AuthenticationError"
    assert "bad key ****" in shown  # the server quoted the key back; nbllm masks it
    assert KEY not in shown + repr(record.attempts) + json.dumps(caught.value.body)


# -- with the loopback server: batching, order, retries, partial results -----------


def test_batches_keep_the_order_of_the_texts_with_requests_in_flight_together() -> None:
    texts = [f"text number {i}" for i in range(23)]
    with serve(api_key=KEY, tokens_per_s=None) as server:
        model = register(server.base_url)
        vectors = nbllm.embed(texts, model=model, batch_size=5, concurrency=3)
    assert vectors.shape == (23, 16) and vectors.dtype == np.float32
    expected = np.asarray([vector_for(t, 16) for t in texts], dtype=np.float32)
    assert np.allclose(vectors, expected)
    sizes = sorted(len(r.body["input"]) for r in server.requests if r.path == "/v1/embeddings")
    assert sizes == [3, 5, 5, 5, 5]
    record = nbllm.history()[-1]
    assert (record.kind, record.texts, record.status, len(record.attempts)) == ("embed", 23, "ok", 5)


def test_retries_a_rate_limit_and_a_server_error_then_succeeds() -> None:
    with serve(api_key=KEY) as server:
        model = register(server.base_url)
        server.enqueue(Fault("rate_limit", retry_after="0"), Fault("server_error", status=503))
        vectors = nbllm.embed(["a", "b"], model=model)
    assert vectors.shape == (2, 16)
    record = nbllm.history()[-1]
    assert record.retries == 2
    assert [a.http_status for a in record.attempts] == [429, 503, 200]


@respx.mock
def test_a_batch_that_fails_keeps_the_vectors_already_made_on_the_error() -> None:
    texts = [f"t{i}" for i in range(6)]
    route = respx.post(f"{URL}/embeddings").mock(
        side_effect=[
            httpx.Response(200, json=reply([[1.0, 0.0], [0.0, 1.0]])),
            httpx.Response(500, json={"error": {"message": "out of memory"}}),
        ]
    )
    model = register(retry={"max_retries": 0})
    with pytest.raises(nbllm.ServerError, match="batch 2 of 3 \\(texts 2-3\\)") as caught:
        nbllm.embed(texts, model=model, batch_size=2, concurrency=1)
    assert len(route.calls) == 2  # the third batch is never sent
    result = caught.value.result
    assert isinstance(result, nbllm.EmbedResult)
    assert result.vectors[:2] == [[1.0, 0.0], [0.0, 1.0]]
    assert result.missing() == [2, 3, 4, 5]
    assert "2 of 6 texts were embedded" in str(caught.value)
    assert "do not fall back" in (caught.value.hint or "")
    record = nbllm.history()[-1]
    assert (record.status, record.error_class, record.texts) == ("error", "ServerError", 6)


def test_dimensions_with_a_server_that_honours_them() -> None:
    with serve() as server:
        model = register(server.base_url)
        vector = nbllm.embed("one text", model=model, dimensions=4)
    assert vector.shape == (4,)
    assert server.requests[-1].body["dimensions"] == 4


def test_a_server_that_ignores_dimensions_like_llama_server() -> None:
    with serve(honours_dimensions=False, embedding_dimensions=8) as server:
        model = register(server.base_url)
        with pytest.raises(nbllm.ProtocolError, match="8-dimensional vectors although 4"):
            nbllm.embed(["a"], model=model, dimensions=4)


def test_without_numpy_the_vectors_are_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now raises ImportError
    with serve() as server:
        model = register(server.base_url)
        many = nbllm.embed(["a", "b"], model=model)
        one = nbllm.embed("a", model=model)
    assert isinstance(many, list) and isinstance(many[0], list) and len(many[0]) == 16
    assert one == many[0]


def test_aembed_on_the_callers_loop_and_a_pandas_series() -> None:
    pandas = pytest.importorskip("pandas")
    with serve() as server:
        model = register(server.base_url)
        series = pandas.Series(["x", "y", "z"], index=[10, 20, 30])
        vectors = asyncio.run(nbllm.aembed(series, model=model))
    assert vectors.shape == (3, 16)
    assert np.allclose(vectors[2], vector_for("z", 16))


def test_the_history_table_shows_an_embeddings_call_without_its_text() -> None:
    with serve() as server:
        model = register(server.base_url)
        nbllm.embed(["a secret sentence", "another"], model=model)
    table = HistoryTable(nbllm.history())
    assert "(2 texts embedded)" in repr(table)
    assert "secret sentence" not in repr(table) + repr(nbllm.history())


# -- the endpoint check and discovery -----------------------------------------------


async def test_the_endpoint_check_embeds_one_text_for_an_embedding_model() -> None:
    with serve(models=("emb",)) as server:
        register(server.base_url)
        report = await diagnose(get_store(), "e/emb")
    embeddings = next(f for f in report.findings if f.check == "embeddings")
    assert embeddings.verdict == "ok" and "16-dimensional vector" in embeddings.detail


async def test_the_endpoint_check_fails_embeddings_and_only_warns_about_chat() -> None:
    with serve(models=("emb",)) as server:
        register(server.base_url, retry={"max_retries": 0})
        server.enqueue(Fault("unknown_model"), Fault("unknown_model"))
        report = await diagnose(get_store(), "e/emb")
    verdicts = {f.check: f.verdict for f in report.findings}
    assert verdicts["embeddings"] == "fail" and verdicts["chat"] == "warn"
    assert not report.ok


def test_discover_suggests_the_embeddings_flag_for_embedding_ids(ip: Any) -> None:
    with serve(models=("text-embedding-3-small", "chat-model")) as server:
        get_store().add_provider(ProviderConfig(name="d", url=server.base_url))
        with capture_output() as out:
            ip.run_line_magic("llm_provider", "discover d")
    lines = out.stdout.splitlines()
    assert any(line.endswith("add text-embedding-3-small --caps embeddings)") for line in lines)
    assert any(line.endswith("add chat-model)") for line in lines)
