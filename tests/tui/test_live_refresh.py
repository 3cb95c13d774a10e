"""Others' writes reach the open console by themselves: real `oncall label` / `oncall load` processes
write to the incident while the app runs, and the screen shows it with no key pressed, the cursor and
the focus where the responder left them.

The console folds in others' writes every second (app.REFRESH_S). How long that takes is measured
(printed with -s, and by hand in tmux), not asserted: the waits below are hang guards, per the
project's rule against timed assertions in unit tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from oncall.tui.results import ResultsView
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.overview import OverviewScreen
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.textview import OutputView, RichLinesView
from tests.tui.conftest import settle

SIZE = (140, 40)
ONCALL = Path(sys.executable).with_name("oncall")
GUARD_S = 30.0


def static_text(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return r.plain if isinstance(r, Text) else str(r)


def oncall(*args: str) -> None:
    """Another process writing to the incident, as a script beside the console would."""
    res = subprocess.run([str(ONCALL), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (args, res.stdout, res.stderr)


async def shown_within_guard(pilot, predicate, what: str) -> float:
    """Seconds from now until predicate() holds, pumping the app (no keys pressed)."""
    start = time.monotonic()
    while time.monotonic() - start < GUARD_S:
        if predicate():
            elapsed = time.monotonic() - start
            print(f"{what}: on screen {elapsed:.2f} s after the writer exited")
            return elapsed
        await pilot.pause(0.05)
    raise AssertionError(f"never shown: {what}")


async def test_explorer_shows_a_label_from_another_process_keeping_cursor_and_focus(make_app, demo_copy) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("tenant=acme feature=extract")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        await pilot.press("j", "j", "j")
        await settle(pilot)
        row = view.row(3)
        assert view.cursor == 3 and view.has_focus and row["label"] is None
        total = view.total
        oncall("label", "--db", str(demo_copy), row["request_id"], "bad", "--note", "from a script")
        await shown_within_guard(pilot, lambda: (view.row(3) or {}).get("label") == "bad", "label in the explorer")
        assert view.row(3)["request_id"] == row["request_id"]
        assert view.cursor == 3 and view.has_focus and view.total == total
        assert static_text(app.screen, "#status").startswith(f"4 of {total:,}")


async def test_explorer_count_of_label_bad_grows_while_it_is_open(make_app, demo_copy) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("label=bad")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        assert view.total == 0 and "0 requests match" in static_text(app.screen, "#status")
        req = app.store.cursor().execute(
            "SELECT request_id FROM spans WHERE kind = 'llm' AND tenant = 'globex' ORDER BY span_pk LIMIT 1"
        ).fetchone()[0]
        oncall("label", "--db", str(demo_copy), req, "bad")
        await shown_within_guard(pilot, lambda: view.total == 1, "count in the explorer")
        await settle(pilot)
        assert view.row(0)["request_id"] == req and static_text(app.screen, "#status").startswith("1 of 1")


async def test_reader_shows_a_label_from_another_process_without_moving(make_app, demo_copy) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("tenant=acme feature=support-bot", None, 0)
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen)
        shown = app.screen.current
        side = app.screen.query_one("#side", RichLinesView)
        out = app.screen.query_one("#output", OutputView)
        side.scroll_to(y=2, animate=False)
        await pilot.pause()
        focused = app.focused
        assert "label " not in side.plain()
        oncall("label", "--db", str(demo_copy), shown["request_id"], "good", "--note", "checked by the script")
        await shown_within_guard(pilot, lambda: "label        good by" in side.plain(), "label in the reader")
        assert "checked by the script" in side.plain()
        assert app.screen.current["span_pk"] == shown["span_pk"] and app.focused is focused
        assert side.scroll_offset.y == 2 and out.scroll_offset.y == 0  # redrawn in place


async def test_overview_counts_a_load_from_another_process(make_app, demo_copy, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        before = app.store.cursor().execute("SELECT count(*) FROM spans WHERE kind = 'llm'").fetchone()[0]
        assert f"{before:,} requests" in static_text(app.screen, "#incident")
        focused = app.focused
        extra = tmp_path / "next-hour.jsonl"
        extra.write_text("".join(json.dumps({
            "request_id": f"req-next-{i}", "timestamp": "2026-11-24T03:00:00Z", "tenant": "acme",
            "model": "gpt-4o", "prompt": "question", "output": f"answer {i}", "latency_ms": 500}) + "\n"
            for i in range(5)))
        oncall("load", "--db", str(demo_copy), str(extra))
        await shown_within_guard(pilot, lambda: f"{before + 5:,} requests" in static_text(app.screen, "#incident"),
                                 "load in the overview")
        assert app.focused is focused
        app.open_explorer("tenant=acme")  # and the explorer opened afterwards counts them too
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        assert app.screen.query_one(ResultsView).row(0)["request_id"].startswith("req-next-")
