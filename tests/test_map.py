"""nbllm.map against the real loopback server: outputs, typed rows, failures, checkpoints,
limits, cost, stop and interrupt."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any, Literal

import pandas
import polars
import pydantic
import pytest

import nbllm
from nbllm._batch.counters import Progress
from nbllm._batch.rows import read_rows
from nbllm._batch.run import MapRun, MapSpec
from nbllm._calls.loop_thread import loop_thread
from nbllm._views.progress import TextProgress
from nbllm.testing import Fault, serve


class Label(pydantic.BaseModel):
    label: Literal["spam", "ham"]
    confidence: float


def classify(body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"]
    label = "spam" if "win" in text else "ham"
    return json.dumps({"label": label, "confidence": 0.9})


def register(server: Any, name: str = "t", **spec: Any) -> str:
    nbllm.get_store().add_provider(
        nbllm.ProviderConfig(
            name=name, url=server.base_url, auth="none", models={"test-model": nbllm.ModelSpec(**spec)}
        ),
        replace=True,
    )
    return f"{name}/test-model"


FRAME = pandas.DataFrame({"text": ["win money now", "lunch at noon?", "win a car", "see you soon"]})


def test_text_rows_come_back_beside_their_input_with_status_and_tokens(tmp_path: Path) -> None:
    with serve(echo=True) as server:
        model = register(server)
        out = nbllm.map("Say: {text}", FRAME, model=model, checkpoint=tmp_path / "c.sqlite", progress=False)
    assert list(out.columns) == ["text", "output", "status", "error", "tokens", "latency_s", "cost"]
    assert list(out["output"]) == [f"Say: {t}" for t in FRAME["text"]]
    assert set(out["status"]) == {"ok"}
    assert (out["tokens"] > 0).all()
    assert out.index.equals(FRAME.index)
    assert len(nbllm.history()) == 4  # one call per row, each in the history


def test_schema_gives_one_typed_column_per_field(tmp_path: Path) -> None:
    with serve(classify) as server:
        model = register(server)
        out = nbllm.map(
            "Classify: {text}", FRAME, model=model, schema=Label, checkpoint=False, progress=False
        )
    assert list(out["label"]) == ["spam", "ham", "spam", "ham"]
    assert list(out["confidence"]) == [0.9] * 4


def test_a_reply_that_does_not_match_gets_one_repair_round_with_the_errors() -> None:
    replies = iter(['{"label": "maybe", "confidence": 1}', '{"label": "ham", "confidence": 0.5}'])
    with serve(lambda body: next(replies)) as server:
        model = register(server)
        result = nbllm.chat("Classify: hi", model=model, schema=Label)
        assert result.parsed == Label(label="ham", confidence=0.5)
        repair = server.requests[-1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"label": "maybe", "confidence": 1}'}
    assert "label" in repair[-1]["content"] and "does not match" in repair[-1]["content"]
    assert result.retries == 0  # a repair round is a second round, not a retry (combine_rounds)
    assert result.usage.prompt_tokens > server.requests[-1].body["messages"].__len__()


def test_a_second_mismatch_is_a_schema_error_carrying_the_reply() -> None:
    with serve('{"label": "maybe"}') as server:
        model = register(server)
        with pytest.raises(nbllm.SchemaMismatchError, match="even after a repair round") as caught:
            nbllm.chat("Classify: hi", model=model, schema=Label)
    assert caught.value.result.text == '{"label": "maybe"}'
    assert len(server.requests) == 2


def test_the_schema_goes_as_response_format_only_to_a_model_flagged_for_it() -> None:
    with serve(classify) as server:
        flagged = register(server, "strict", capabilities="json_schema")
        plain = register(server, "plain", capabilities="json")
        nbllm.chat("Classify: win", model=flagged, schema=Label)
        nbllm.chat("Classify: win", model=plain, schema=Label)
    strict, loose = (r.body for r in server.requests)
    assert strict["response_format"]["type"] == "json_schema"
    assert strict["response_format"]["json_schema"]["name"] == "Label"
    assert strict["messages"][0]["role"] == "user"  # nothing added to the prompt
    assert loose["response_format"] == {"type": "json_object"}
    assert loose["messages"][0]["role"] == "system" and '"confidence"' in loose["messages"][0]["content"]


def test_a_server_that_refuses_the_schema_field_is_asked_with_the_schema_in_the_prompt() -> None:
    refusal = (
        "1 validation error: ('body', 'response_format', 'type'): "
        "Input should be 'text' or 'json_object', got 'json_schema'"
    )
    with serve(classify) as server:
        model = register(server, capabilities="json,json_schema")
        server.enqueue(Fault("server_error", status=500, message=refusal))
        first = nbllm.chat("Classify: win", model=model, schema=Label)
        second = nbllm.chat("Classify: hi", model=model, schema=Label)
        bodies = [r.body for r in server.requests]
    assert first.parsed == Label(label="spam", confidence=0.9) and second.parsed.label == "ham"
    assert len(bodies) == 3  # the refused request was not retried as a server failure
    assert bodies[0]["response_format"]["type"] == "json_schema"
    assert [b["response_format"] for b in bodies[1:]] == [{"type": "json_object"}] * 2
    assert nbllm.history()[0].error_class == "BadRequestError"
    assert "--caps no-json_schema" in nbllm.history()[0].error_message or first.retries == 1


def test_a_failing_row_is_a_row_with_its_error_and_the_run_goes_on() -> None:
    with serve(echo=True) as server:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="t", url=server.base_url, auth="none", models={"m": {}}, retry={"max_retries": 0}
            )
        )
        server.enqueue(Fault("server_error", status=400, message="bad row"))
        out = nbllm.map("{text}", FRAME, model="t/m", concurrency=1, checkpoint=False, progress=False)
    assert list(out["status"]) == ["error", "ok", "ok", "ok"]
    assert "bad row" in out["error"][0] and pandas.isna(out["output"][0])
    assert out["output"][1] == "lunch at noon?"


def test_a_rerun_asks_only_the_rows_not_done_and_says_how_many_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "run.sqlite"
    with serve(classify) as server:
        model = register(server)
        first = nbllm.map(
            "Classify: {text}", FRAME.iloc[:2], model=model, schema=Label, checkpoint=checkpoint
        )
        assert len(server.requests) == 2
        again = nbllm.map("Classify: {text}", FRAME, model=model, schema=Label, checkpoint=checkpoint)
        asked = [r.body["messages"][-1]["content"] for r in server.requests[2:]]
    assert sorted(asked) == ["Classify: see you soon", "Classify: win a car"]  # sent together
    assert list(again["label"][:2]) == list(first["label"])
    summary = capsys.readouterr().err
    assert "2 from the checkpoint, not asked again" in summary and str(checkpoint) in summary


def test_a_changed_template_or_model_is_not_taken_from_the_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    with serve(echo=True) as server:
        model = register(server)
        nbllm.map("A {text}", FRAME, model=model, checkpoint=checkpoint, progress=False)
        nbllm.map("B {text}", FRAME, model=model, checkpoint=checkpoint, progress=False)
        nbllm.map("B {text}", FRAME, model=model, checkpoint=checkpoint, progress=False, temperature=0.5)
    assert len(server.requests) == 12


def test_stop_sends_no_more_rows_and_the_rerun_sends_exactly_the_rest(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    rows = pandas.DataFrame({"text": [f"row {i}" for i in range(20)]})
    with serve(echo=True, latency_s=0.05) as server:
        model = register(server)
        run = MapRun(
            MapSpec("{text}", model=model, concurrency=2), read_rows(rows), checkpoint=str(checkpoint)
        )

        async def stop_after_six() -> list[dict[str, Any]]:
            task = asyncio.ensure_future(run.run())
            while run.progress.done < 6:
                await asyncio.sleep(0.01)
            run.stop()
            return await task

        outputs = loop_thread().run(stop_after_six())
        done = [o["output"] for o in outputs if o["status"] == "ok"]
        assert {o["status"] for o in outputs} == {"ok", "not run"}
        assert run.progress.stopped == "stopped with the Stop button"
        first_asked = len(server.requests)
        out = nbllm.map("{text}", rows, model=model, concurrency=2, checkpoint=checkpoint, progress=False)
        rest = [r.body["messages"][-1]["content"] for r in server.requests[first_asked:]]
    assert sorted(rest + done, key=lambda t: int(t.split()[1])) == list(rows["text"])
    assert set(out["status"]) == {"ok"}


def test_an_interrupt_returns_the_rows_done_so_far_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    import nbllm._api as api

    rows = pandas.DataFrame({"text": [f"row {i}" for i in range(8)]})
    with serve(echo=True, latency_s=0.05) as server:
        model = register(server)
        real = api.run_with_ui

        def interrupted(make: Any, tick: Any, tick_s: float) -> Any:
            def tick_then_interrupt() -> None:
                tick()
                if len(server.requests) >= 3:
                    raise KeyboardInterrupt

            return real(make, tick_then_interrupt, 0.01)

        monkeypatch.setattr(api, "run_with_ui", interrupted)
        out = nbllm.map("{text}", rows, model=model, concurrency=1, checkpoint=False, progress=False)
    assert out["status"].iloc[0] == "ok"
    statuses = list(out["status"])
    done = statuses.count("ok")
    assert done >= 2 and statuses[:done] == ["ok"] * done and len(statuses) == 8
    rest = statuses[done:]  # the row being asked when the interrupt came (if one was), then the others
    assert rest[0] in ("cancelled", "not run") and rest[1:] == ["not run"] * (len(rest) - 1)


def test_max_cost_stops_dispatching_before_the_budget_is_passed() -> None:
    rows = pandas.DataFrame({"text": [f"row {i}" for i in range(10)]})
    with serve(echo=True, usage_cost=0.01) as server:
        model = register(server)
        out = nbllm.map(
            "{text}", rows, model=model, concurrency=1, max_cost=0.035, checkpoint=False, progress=False
        )
    assert (out["status"] == "ok").sum() == 3
    assert out["cost"].sum() == pytest.approx(0.03)
    assert set(out["status"][3:]) == {"not run"}
    assert "max_cost" in out["error"].iloc[-1]


def test_max_cost_without_a_price_says_it_could_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(echo=True) as server:
        model = register(server)
        out = nbllm.map("{text}", ["a", "b"], model=model, max_cost=1.0, checkpoint=False)
    assert [row["status"] for row in out] == ["ok", "ok"]
    assert "max_cost did not apply" in capsys.readouterr().err


def test_rpm_spaces_requests_at_the_server() -> None:
    rows = [f"row {i}" for i in range(6)]
    with serve(echo=True) as server:
        model = register(server)
        nbllm.map("{text}", rows, model=model, rpm=600, concurrency=6, checkpoint=False, progress=False)
        arrivals = [r.at for r in server.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # 600 a minute: one each 0.1 s, however many are in flight (a busy machine may delay one
    # request and not the next, so single gaps get some slack; the whole span gets little).
    assert min(gaps) > 0.05 and arrivals[-1] - arrivals[0] >= 5 * 0.1 * 0.95


def test_concurrency_is_shared_with_other_calls_to_the_provider() -> None:
    rows = [f"row {i}" for i in range(6)]
    with serve(echo=True, latency_s=0.2) as server:
        model = register(server)

        async def a_run_and_a_cells_call() -> str:
            run = asyncio.ensure_future(
                nbllm.amap("{text}", rows, model=model, concurrency=2, checkpoint=False, progress=False)
            )
            await asyncio.sleep(0.05)  # the run has both its slots
            other = await nbllm.achat("a cell's call", model=model)
            await run
            return other.text

        assert loop_thread().run(a_run_and_a_cells_call()) == "a cell's call"
        spans = [(r.at, r.done_at or r.at) for r in server.requests]
    changes = sorted([(at, 1) for at, _ in spans] + [(done, -1) for _, done in spans])
    assert len(spans) == 7
    assert max(itertools.accumulate(delta for _, delta in changes)) == 2  # never a third in flight


def test_a_429_pauses_every_call_to_the_provider_not_only_the_one_that_got_it() -> None:
    rows = [f"row {i}" for i in range(4)]
    with serve(echo=True) as server:
        model = register(server)
        server.enqueue(Fault("rate_limit", status=429, retry_after="1"))
        nbllm.map("{text}", rows, model=model, concurrency=1, checkpoint=False, progress=False)
        arrivals = [r.at for r in server.requests]
    assert len(arrivals) == 5
    assert arrivals[1] - arrivals[0] >= 0.95


def test_a_tpm_budget_holds_requests_until_the_minute_has_room() -> None:
    from nbllm._calls.pacing import TokenWindow

    clock = [100.0]
    window = TokenWindow(1000, clock=lambda: clock[0])
    assert window.reserve(600)[0] == 0
    wait, booking = window.reserve(600)
    assert wait == pytest.approx(60.0)  # the first booking has to leave the window
    window.settle(booking, 100)
    clock[0] = 161.0
    assert window.reserve(800)[0] == 0


def test_polars_strings_and_dicts_come_back_as_they_came(tmp_path: Path) -> None:
    with serve(echo=True) as server:
        model = register(server)
        frame = nbllm.map(
            "{text}", polars.DataFrame({"text": ["a", "b"]}), model=model, checkpoint=False, progress=False
        )
        strings = nbllm.map("{text}!", ["a", "b"], model=model, checkpoint=False, progress=False)
        dicts = nbllm.map("{x}", [{"x": "c"}], model=model, checkpoint=False, progress=False)
    assert isinstance(frame, polars.DataFrame) and frame["output"].to_list() == ["a", "b"]
    assert [r["output"] for r in strings] == ["a!", "b!"] and strings[0]["text"] == "a"
    assert dicts[0]["output"] == "c" and dicts[0]["status"] == "ok"


def test_bad_input_is_refused_before_anything_is_sent() -> None:
    with serve(echo=True) as server:
        model = register(server)
        with pytest.raises(nbllm.InterpolationError):
            nbllm.map("{missing}", FRAME, model=model, checkpoint=False, progress=False)
        with pytest.raises(nbllm.InterpolationError, match="row 1"):
            nbllm.map("{a}", [{"a": 1}, {"b": 2}], model=model, checkpoint=False, progress=False)
        with pytest.raises(nbllm.PromptError, match="already has column"):
            nbllm.map("{text}", FRAME.assign(status=1), model=model, checkpoint=False, progress=False)
        with pytest.raises(nbllm.PromptError, match="concurrency"):
            nbllm.map("{text}", FRAME, model=model, concurrency=0, progress=False)
        with pytest.raises(nbllm.PromptError, match="DataFrame"):
            nbllm.map("{text}", "not a table", model=model, progress=False)
        with pytest.raises(nbllm.PromptError, match="pydantic model"):
            nbllm.map("{text}", FRAME, model=model, schema=dict, progress=False)
        with pytest.raises(nbllm.PromptError, match="unknown option"):
            nbllm.map("{text}", FRAME, model=model, temprature=0, progress=False)  # type: ignore[call-arg]
    assert server.requests == []


def test_the_text_bar_redraws_in_place_and_ends_with_the_summary() -> None:
    import io

    stream = io.StringIO()
    bar = TextProgress("run", stream)
    progress = Progress(total=4, done=2, tokens=50)
    bar.update(progress)
    progress.done = 4
    progress.finished = time.monotonic()
    bar.finish(progress)
    text = stream.getvalue()
    assert text.startswith("\rrun [###############...............] 2/4 rows")
    assert text.endswith(
        "4 of 4 rows done in " + text.split("rows done in ")[1].split(" s")[0] + " s; 50 tokens.\n"
    )


def test_failed_rows_cost_nothing_and_the_summary_fits_the_checkpoint(capsys: Any) -> None:
    """Issue 35, item 12: failed rows carried a cost, latency had six decimals, and without a
    checkpoint the summary said a rerun retries the failed rows (it asks every row again)."""
    with serve(reply="fine", models=["m"]) as server:
        nbllm.get_store().add_provider(
            nbllm.ProviderConfig(
                name="p",
                url=server.base_url,
                auth="none",
                models={"m": {"price": {"input_per_million": 1.0, "output_per_million": 2.0}}},
                retry={"max_retries": 0},
            )
        )
        server.enqueue(Fault("server_error", status=500))
        out = nbllm.map("Say {n}", [{"n": 1}, {"n": 2}], "p/m", concurrency=1, checkpoint=False)
    records = out if isinstance(out, list) else out.to_dict("records")
    failed = [r for r in records if r["status"] == "error"]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(failed) == 1 and failed[0]["cost"] is None
    assert ok[0]["cost"] is not None and ok[0]["latency_s"] == round(ok[0]["latency_s"], 3)
    summary = capsys.readouterr().err
    assert "1 failed (status 'error'; a rerun asks every row again)" in summary
