"""The magics of issue 19 (%%chat --map, --schema, --price) and cost, end to end on a real
IPython shell and the loopback server; the Dask runner on a real LocalCluster."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import pandas
import pydantic
import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm._providers import persist
from nbllm.testing import Fault, serve


class Sentiment(pydantic.BaseModel):
    sentiment: Literal["positive", "negative"]


def judge(body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"]
    return json.dumps({"sentiment": "negative" if "bad" in text else "positive"})


def test_chat_map_fills_the_cell_per_row_and_stores_the_table(ip: Any) -> None:
    with serve(judge) as server:
        ip.run_line_magic("llm_provider", f"add p --url {server.base_url} --auth none --model m --caps json")
        ip.user_ns.update(rows=pandas.DataFrame({"note": ["bad day", "good day"]}), Sentiment=Sentiment)
        ip.run_cell_magic(
            "chat", "p/m --map rows --schema Sentiment -o judged --checkpoint none", "Judge: {note}"
        )
        table = ip.user_ns["judged"]
        sent = [r.body["messages"][-1]["content"] for r in server.requests]
        assert sorted(sent) == ["Judge: bad day", "Judge: good day"]
        assert server.requests[0].body["response_format"] == {"type": "json_object"}
    assert list(table["sentiment"]) == ["negative", "positive"]
    assert list(table["status"]) == ["ok", "ok"]


def test_chat_schema_gives_the_instance_to_o(ip: Any) -> None:
    with serve(judge) as server:
        ip.run_line_magic("llm_provider", f"add p --url {server.base_url} --auth none --model m")
        ip.user_ns["Sentiment"] = Sentiment
        ip.run_cell_magic("chat", "p/m --schema Sentiment -o verdict --new", "a bad film")
    assert ip.user_ns["verdict"] == Sentiment(sentiment="negative")


def test_chat_schema_repairs_once_in_the_cell(ip: Any) -> None:
    replies = iter(["not json", '{"sentiment": "positive"}'])
    with serve(lambda body: next(replies)) as server:
        ip.run_line_magic("llm_provider", f"add p --url {server.base_url} --auth none --model m")
        ip.user_ns["Sentiment"] = Sentiment
        ip.run_cell_magic("chat", "p/m --schema Sentiment -o verdict --new", "hm")
        assert len(server.requests) == 2
    assert ip.user_ns["verdict"].sentiment == "positive"


def test_chat_schema_asks_again_in_the_prompt_when_the_server_refuses_the_field(ip: Any) -> None:
    refusal = "1 validation error: body.response_format.type: 'json_schema' is not 'text' or 'json_object'"
    with serve(judge) as server:
        ip.run_line_magic(
            "llm_provider", f"add p --url {server.base_url} --auth none --model m --caps json_schema"
        )
        ip.user_ns["Sentiment"] = Sentiment
        server.enqueue(Fault("server_error", status=500, message=refusal))
        ip.run_cell_magic("chat", "p/m --schema Sentiment -o verdict --new", "a bad day")
        formats = [r.body.get("response_format", {}).get("type") for r in server.requests]
        prompt = server.requests[-1].body["messages"][0]
    assert ip.user_ns["verdict"] == Sentiment(sentiment="negative")
    assert formats == ["json_schema", None]  # refused once, not retried as a server failure
    assert prompt["role"] == "system" and "JSON schema" in prompt["content"]


def test_map_magic_mistakes_are_usage_errors(ip: Any) -> None:
    with serve(judge) as server:
        ip.run_line_magic("llm_provider", f"add p --url {server.base_url} --auth none --model m")
        with pytest.raises(UsageError, match="names nothing"):
            ip.run_cell_magic("chat", "p/m --map no_such_frame", "{x}")
        with pytest.raises(UsageError, match="goes with --map"):
            ip.run_cell_magic("chat", "p/m --rpm 10", "hi")
        ip.user_ns["frame"] = pandas.DataFrame({"x": [1]})
        with pytest.raises(UsageError, match="--schema, not --tools"):
            ip.run_cell_magic("chat", "p/m --map frame --json", "{x}")
        with pytest.raises(UsageError, match="schema"):
            ip.run_cell_magic("chat", "p/m --schema frame", "hi")
        assert server.requests == []


def test_price_gives_each_call_a_cost_in_footer_history_and_table(ip: Any, capsys: Any) -> None:
    with serve("four words of reply") as server:
        ip.run_line_magic("llm_provider", f"add p --url {server.base_url} --auth none --model m")
        ip.run_line_magic("llm_provider", "model p set m --price 2,8")
        result = nbllm.chat("one two three", model="p/m")
    expected = (result.usage.prompt_tokens * 2 + result.usage.completion_tokens * 8) / 1e6
    assert result.cost == pytest.approx(expected) and not result.cost_reported
    assert "<$0.001" in result.footer()  # one formatter: no six-decimal fractions of a cent
    assert nbllm.history()[-1].cost == pytest.approx(expected)
    ip.run_line_magic("llm_history", "")
    assert "<$0.001" in capsys.readouterr().out


def test_a_server_reported_cost_wins_over_the_price() -> None:
    with serve("hi", usage_cost=0.25) as server:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="p", url=server.base_url, auth="none", models={"m": {"price": "1,1"}})
        )
        result = nbllm.chat("hello", model="p/m")
    assert result.cost == 0.25 and result.cost_reported
    assert "$0.25" in result.footer() and "~" not in result.footer().split("$")[0][-2:]


def test_bad_prices_are_refused_and_good_ones_survive_save_and_load(ip: Any, tmp_path: Path) -> None:
    ip.run_line_magic("llm_provider", "add p --url http://127.0.0.1:9/v1 --auth none --model m")
    for bad in ("1", "a,b", "-1,2", "1,2,3"):
        with pytest.raises(UsageError, match="price"):
            ip.run_line_magic("llm_provider", f"model p set m --price {bad}")
    ip.run_line_magic("llm_provider", "model p set m --price 0.15,0.6")
    path = tmp_path / "providers.yaml"
    persist.save(nbllm.get_store(), path)
    assert "0.15" in path.read_text()
    nbllm.get_store().clear()
    persist.load(nbllm.get_store(), path)
    price = nbllm.get_store().resolve("p/m").spec.price
    assert price is not None and (price.input_per_million, price.output_per_million) == (0.15, 0.6)
    ip.run_line_magic("llm_provider", "model p set m --price none")
    assert nbllm.get_store().resolve("p/m").spec.price is None


@pytest.fixture(scope="module")
def cluster() -> Any:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR
    ) as local:
        yield local


def test_dask_partitions_run_on_workers_with_checkpoints_per_partition(cluster: Any, tmp_path: Path) -> None:
    import dask.dataframe as dd
    import distributed

    frame = pandas.DataFrame({"note": [f"bad {i}" if i % 3 else f"good {i}" for i in range(12)]})
    with serve(judge) as server, distributed.Client(cluster):
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(name="p", url=server.base_url, auth="none", models={"m": {}})
        )
        lazy = nbllm.map(
            "{note}", dd.from_pandas(frame, npartitions=3), model="p/m", schema=Sentiment, checkpoint=tmp_path
        )
        assert server.requests == []  # lazy until computed
        out = lazy.compute()
        assert len(server.requests) == 12
        again = nbllm.map(
            "{note}", dd.from_pandas(frame, npartitions=3), model="p/m", schema=Sentiment, checkpoint=tmp_path
        )
        assert again.compute()["sentiment"].tolist() == out["sentiment"].tolist()
        assert len(server.requests) == 12  # every partition resumed from its own file
    assert out["sentiment"].tolist() == ["positive" if i % 3 == 0 else "negative" for i in range(12)]
    assert len(list(tmp_path.glob("*-part*.sqlite"))) == 3


def test_dask_workers_never_get_the_key_and_say_which_variable_to_set(cluster: Any) -> None:
    import dask.dataframe as dd
    import distributed

    with serve(judge, api_key="sk-test-secret-1234") as server, distributed.Client(cluster):
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="keyed", url=server.base_url, key="sk-test-secret-1234", models={"m": {}}
            )
        )
        lazy = nbllm.map(
            "{note}", dd.from_pandas(pandas.DataFrame({"note": ["x"]}), npartitions=1), model="keyed/m"
        )
        with pytest.raises(nbllm.MissingKeyError, match="NBLLM_KEYED_API_KEY") as caught:
            lazy.compute()
        assert server.requests == []
    assert "sk-test-secret-1234" not in str(caught.value)


def test_the_provider_list_shows_prices_only_when_a_model_has_one(ip: Any, capsys: Any) -> None:
    ip.run_line_magic("llm_provider", "add p --url http://127.0.0.1:9/v1 --auth none --model m --model n")
    ip.run_line_magic("llm_provider", "list")
    assert "price" not in capsys.readouterr().out
    ip.run_line_magic("llm_provider", "model p set m --price 0.15,0.6")
    ip.run_line_magic("llm_provider", "show p")
    shown = capsys.readouterr().out
    assert "price in / out per M" in shown and "$0.15 / $0.6" in shown


def test_a_cluster_shares_rates_among_partitions_at_once_and_the_cost_among_all() -> None:
    from nbllm._batch.dask_runner import share
    from nbllm._batch.run import MapSpec

    spec = MapSpec("{x}", concurrency=32, rpm=600, tpm=90_000, max_cost=8.0)
    part = share(spec, at_once=4, partitions=16)
    assert (part.concurrency, part.rpm, part.tpm, part.max_cost) == (8, 150, 22_500, 0.5)


def test_dask_in_this_process_keeps_the_notebooks_own_provider_and_key() -> None:
    import dask
    import dask.dataframe as dd

    with serve(judge, api_key="sk-test-secret-1234") as server, dask.config.set(scheduler="synchronous"):
        config = nbllm.ProviderConfig(
            name="keyed", url=server.base_url, key="sk-test-secret-1234", models={"m": {}}
        )
        nbllm.get_store().add_provider(config)
        frame = dd.from_pandas(pandas.DataFrame({"note": ["bad", "good"]}), npartitions=2)
        out = nbllm.map("{note}", frame, model="keyed/m", schema=Sentiment).compute()
    assert out["sentiment"].tolist() == ["negative", "positive"]
    assert nbllm.get_store().provider("keyed").key is not None  # not replaced by a keyless copy
