"""The Compatibility page's table is made from the conformance run's findings."""

from __future__ import annotations

from tests.conformance import table


def test_footnotes_are_shared_and_missing_rows_are_not_applicable() -> None:
    results = {
        "servers": [{"name": "a", "label": "A 1.0"}, {"name": "b", "label": "B 2"}],
        "behaviours": [{"id": "x", "title": "does x"}, {"id": "y", "title": "does y"}],
        "results": {
            "a": {"x": {"verdict": "deviation", "note": "odd."}, "y": {"verdict": "ok", "note": ""}},
            "b": {"x": {"verdict": "deviation", "note": "odd."}},
        },
    }
    assert table.render(results).splitlines() == [
        "| behaviour | A 1.0 | B 2 |",
        "|---|---|---|",
        "| does x | ⚠ [1] | ⚠ [1] |",
        "| does y | ✅ | — |",
        "",
        "1. odd.",
    ]


def test_the_compatibility_page_holds_a_generated_table() -> None:
    committed = table.page_table(table.PAGE.read_text())
    assert committed.startswith("| behaviour |") and "\n1. " in committed
