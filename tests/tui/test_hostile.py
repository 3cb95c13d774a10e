"""Hostile strings through every screen: no crash, no action fired, no escape sequence reaches the terminal.

The headless driver is switched to "not headless" and its writes are recorded, so the test sees the
exact bytes the console would send to a real terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.drivers.headless_driver import HeadlessDriver

from oncall.ingest.loader import load_paths
from oncall.store import open_db
from oncall.tui.app import OncallApp
from tests.tui.conftest import settle

HOSTILE = ["[/]", "[@click=app.quit]x[/]", "[type=x, v={'a[0]'}]", "\x1b]52;c;SGVsbG8=\x07", "\x1b]0;title\x07",
           "\x1b[2J", "\x9b31m", "\u202eevil\u202c", "[bold red]markup[/bold red]"]
BIG = "A" * 1_000_000  # a 1 MB single line
FORBIDDEN = ["\x1b]52", "\x1b]0;title", "\x1b[2J", "\x9b", "\u202e"]  # the inert text after ␛ may show


def _kv(k: str, v: str) -> dict:
    return {"key": k, "value": {"stringValue": v}}


def hostile_export(path: Path) -> None:
    spans = []
    for i, h in enumerate(HOSTILE + [BIG]):
        msgs_in = json.dumps([{"role": "system", "parts": [{"type": "text", "content": h}]},
                              {"role": "user", "parts": [{"type": "text", "content": f"prompt {h}"}]}])
        msgs_out = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": f"output {h}"}]}])
        trace = f"{i + 1:032x}"
        root = {"traceId": trace, "spanId": f"{i + 1:016x}", "name": f"root {h[:100]}", "kind": 2,
                "startTimeUnixNano": str(1772359200_000_000_000 + i * 10**9),
                "endTimeUnixNano": str(1772359200_500_000_000 + i * 10**9),
                "attributes": [_kv("app.tenant", h[:200]), _kv("app.request_id", f"req{i}{h[:50]}"),
                               _kv("user.id", h[:200]), _kv(h[:100] or "k", h[:200])]}
        chat = {"traceId": trace, "spanId": f"{i + 100:016x}", "parentSpanId": f"{i + 1:016x}",
                "name": f"chat {h[:100]}", "kind": 3,
                "startTimeUnixNano": str(1772359200_100_000_000 + i * 10**9),
                "endTimeUnixNano": str(1772359200_400_000_000 + i * 10**9),
                "attributes": [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", h[:100]),
                               _kv("gen_ai.response.model", f"m {h[:80]}"), _kv("gen_ai.input.messages", msgs_in),
                               _kv("gen_ai.output.messages", msgs_out), _kv(f"meta {h[:50]}", h[:300])],
                "status": {"code": 2, "message": h[:300]} if i % 2 else {}}
        spans += [root, chat]
    doc = {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "evil [/]")]},
                              "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]}
    path.write_text(json.dumps(doc))


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    src = tmp_path / "hostile.json"
    hostile_export(src)
    db_path = tmp_path / "hostile.duckdb"
    store = open_db(db_path)
    rep = load_paths(store, [str(src)])
    assert rep.problems == [] and rep.spans_added == 2 * (len(HOSTILE) + 1)
    store.close()
    return db_path


async def test_hostile_strings_through_every_screen(hostile_db: Path, monkeypatch) -> None:
    written: list[str] = []
    monkeypatch.setattr(HeadlessDriver, "is_headless", property(lambda self: False))
    monkeypatch.setattr(HeadlessDriver, "write", lambda self, data: written.append(data))
    store = open_db(hostile_db)
    app = OncallApp(store, keymap={})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.open_explorer("")
            await settle(pilot)
            await pilot.press("end")
            await settle(pilot)
            await pilot.press("home", "enter")
            await settle(pilot)
            for _ in range(len(HOSTILE) + 1):  # every hostile output, prompt and metadata in the reader
                await pilot.press("j")
                await settle(pilot)
            await pilot.press("t")  # trace tree with hostile span names
            await settle(pilot)
            await pilot.press("question_mark")
            await settle(pilot)
            await pilot.press("escape", "escape")
            await settle(pilot)
            app.notify(HOSTILE[1], markup=False)
            app.show_error(HOSTILE[0], "".join(HOSTILE))
            await settle(pilot)
            await pilot.press("escape")
            await settle(pilot)
            assert app.is_running and app.return_code is None  # [@click=app.quit] never fired
    finally:
        store.close()
    out = "".join(written)
    assert len(out) > 10_000  # the test did capture the terminal stream
    for bad in FORBIDDEN:
        assert bad not in out, f"{bad!r} reached the terminal"
    assert "␛" in out  # hostile ESC shown as a visible symbol instead
    assert "[@click=app.quit]x[/]" in out  # shown as text, not parsed as markup
