"""Batch runs notice what changed, and a checkpoint that cannot be used is a clear error
(issue 29, item 5), against a server written for these tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm import ProviderConfig
from tests.hostile_server import Reply, chat_reply, hostile


def echo(path: str, headers: dict[str, str], body: Any) -> Reply:
    return chat_reply(f"seen {body['messages'][-1]['content']}", body)


def register(url: str, **fields: Any) -> str:
    nbllm.get_store().add_provider(
        ProviderConfig(name="b", url=url, auth="none", models=["m"], **fields), replace=True
    )
    return "b/m"


def test_a_changed_notebook_variable_asks_the_rows_again(ip: Any, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.sqlite"
    with hostile(echo) as server:
        register(server.base_url)
        ip.user_ns.update(rows=pd.DataFrame({"city": ["Paris", "Rome"]}), tone="dry")
        line = f"b/m --map rows --checkpoint {checkpoint} -o out"
        ip.run_cell_magic("chat", line, "In a {tone} tone: {city}")
        assert len(server.seen) == 2
        ip.run_cell_magic("chat", line, "In a {tone} tone: {city}")
        assert len(server.seen) == 2  # nothing changed: every row from the checkpoint
        ip.user_ns["tone"] = "warm"
        ip.run_cell_magic("chat", line, "In a {tone} tone: {city}")
        assert len(server.seen) == 4 and list(ip.user_ns["out"]["output"]) == [
            "seen In a warm tone: Paris",
            "seen In a warm tone: Rome",
        ]


def test_a_changed_extra_body_asks_the_rows_again(tmp_path: Path) -> None:
    rows = [{"text": "a"}, {"text": "b"}]
    checkpoint = tmp_path / "run.sqlite"
    with hostile(echo) as server:
        model = register(server.base_url, extra_body={"top_k": 1})
        nbllm.map("Say {text}", rows, model, checkpoint=checkpoint, progress=False)
        nbllm.map("Say {text}", rows, model, checkpoint=checkpoint, progress=False)
        assert len(server.seen) == 2
        model = register(server.base_url, extra_body={"top_k": 40})
        nbllm.map("Say {text}", rows, model, checkpoint=checkpoint, progress=False)
        assert len(server.seen) == 4 and server.seen[-1].body["top_k"] == 40


@pytest.mark.parametrize("checkpoint", [False, True])
def test_column_names_that_mix_numbers_and_text(checkpoint: bool, tmp_path: Path) -> None:
    frame = pd.DataFrame({0: ["first", "second"], "text": ["x", "y"]})
    with hostile(echo) as server:
        model = register(server.base_url)
        path: Any = tmp_path / "mixed.sqlite" if checkpoint else False
        out = nbllm.map("Say {text}", frame, model, checkpoint=path, progress=False)
    assert list(out[0]) == ["first", "second"] and list(out["output"]) == ["seen Say x", "seen Say y"]


def _not_a_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    return path


def _a_folder(tmp_path: Path) -> Path:
    (tmp_path / "folder").mkdir()
    return tmp_path / "folder"


@pytest.mark.parametrize("make", [_not_a_checkpoint, _a_folder], ids=["a-text-file", "a-folder"])
def test_an_unusable_checkpoint_path_is_a_clear_error_before_any_row(make: Any, tmp_path: Path) -> None:
    path = make(tmp_path)
    with hostile(echo) as server:
        model = register(server.base_url)
        with pytest.raises(nbllm.ConfigFileError, match="the checkpoint"):
            nbllm.map("Say {text}", [{"text": "a"}], model, checkpoint=path, progress=False)
        assert server.seen == []


def test_a_damaged_row_is_a_clear_error_before_any_row_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with hostile(echo) as server:
        model = register(server.base_url)
        nbllm.map("Say {text}", [{"text": "a"}], model, checkpoint=path, progress=False)
        db = sqlite3.connect(path)
        db.execute("UPDATE rows SET outcome = 'not json {'")
        db.commit()
        db.close()
        with pytest.raises(nbllm.ConfigFileError, match="cannot read the checkpoint"):
            nbllm.map("Say {text}", [{"text": "a"}], model, checkpoint=path, progress=False)
        assert len(server.seen) == 1


def test_a_checkpoint_locked_by_another_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nbllm._batch.checkpoint.CHECKPOINT_LOCK_WAIT_S", 0.2)
    path = tmp_path / "locked.sqlite"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, time\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('PRAGMA journal_mode=DELETE')\ndb.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\ntime.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with hostile(echo) as server:
            model = register(server.base_url)
            with pytest.raises(nbllm.ConfigFileError, match="the checkpoint"):
                nbllm.map("Say {text}", [{"text": "a"}], model, checkpoint=path, progress=False)
            assert server.seen == []
    finally:
        holder.kill()
        holder.wait()


def test_in_a_cell_an_unusable_checkpoint_is_a_usage_error(ip: Any, tmp_path: Path) -> None:
    ip.user_ns["rows"] = [{"text": "a"}]
    with hostile(echo) as server:
        register(server.base_url)
        with pytest.raises(UsageError, match="the checkpoint"):
            ip.run_cell_magic("chat", f"b/m --map rows --checkpoint {_a_folder(tmp_path)}", "Say {text}")
        assert server.seen == []
