"""The hand-off in the console (Pilot), on a copy of the demo incident after a short response (labels,
a note, one label note full of markup and a terminal escape):

- the timeline (f6) lists data and responder entries in time order; enter on a cause opens the
  explorer on its filter, on a label the reader on that request;
- `s` stars an entry, `oncall timeline --starred --json` (another process) lists it, and it is still
  starred when the screen is opened again; a read-only console refuses it and says why;
- a label written by `oncall label` in another process appears by itself, the cursor left alone;
- the postmortem preview (f7) holds "## Impact" and the labelled request ids; ctrl+s writes the same
  draft `oncall postmortem --out` does (but for its generated-at time), and asks before overwriting;
- hostile text is shown as written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from oncall.query.labels import add_label, add_note
from oncall.store import open_db
from oncall.store.db import copy_incident
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.export import ExportModal
from oncall.tui.screens.postmortem import DraftView, PostmortemScreen
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.timeline import TimelineScreen, TimelineView
from tests.tui.conftest import settle

ROOT = Path(__file__).resolve().parents[2]
SIZE = (150, 45)
GUARD_S = 60.0
HOSTILE = "see [/] and [@click=app.quit]x[/] then \x1b[2J\x1b]0;owned\x07 end"


def oncall(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Another process on the same incident, as a responder's shell beside the console."""
    import os

    res = subprocess.run([sys.executable, "-m", "oncall", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res


@pytest.fixture(scope="module")
def responded_base(demo_db: Path, tmp_path_factory) -> Path:
    """The demo after a short response: two bad labels, one good, a note, one label note that is hostile."""
    db_path = tmp_path_factory.mktemp("handoff") / "incident.duckdb"
    copy_incident(demo_db, db_path)
    db = open_db(db_path)
    try:
        cur = db.cursor()
        bad = cur.execute("SELECT span_pk, request_id FROM spans WHERE served_model = 'gpt-4o-2024-11-20' AND "
                          "feature = 'extract' ORDER BY start_time LIMIT 3").fetchall()
        good = cur.execute("SELECT span_pk, request_id FROM spans WHERE served_model = 'gpt-4o-2024-08-06' AND "
                           "feature = 'extract' ORDER BY start_time LIMIT 1").fetchone()
        add_label(db, bad[0][0], "bad", note="orderId instead of order_id", request_key=bad[0][1])
        add_label(db, bad[1][0], "bad", note="wrapped in prose", request_key=bad[1][1])
        add_label(db, good[0], "good", request_key=good[1])
        add_note(db, "paged 02:04; acme support says refunds break")
        add_label(db, bad[2][0], "bad", note=HOSTILE, request_key=bad[2][1])
    finally:
        db.close()
    return db_path


@pytest.fixture
def responded(responded_base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "responded.duckdb"  # make_app's own demo copy is incident.duckdb
    copy_incident(responded_base, dst)
    return dst


def labelled_ids(db_path: Path) -> list[str]:
    db = open_db(db_path, read_only=True)
    try:
        return [r[0] for r in db.cursor().execute(
            "SELECT s.request_id FROM labels l JOIN spans s USING (span_pk) ORDER BY l.label_id").fetchall()]
    finally:
        db.close()


async def wait_for(pilot, cond, what: str, timeout: float = GUARD_S) -> float:
    """Pump the app until cond() holds (a hang guard, not a timed assertion); seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}; screen is {pilot.app.screen!r}")
        await pilot.pause(0.05)
    return time.monotonic() - start


async def open_timeline(pilot) -> TimelineScreen:
    await settle(pilot)
    await pilot.press("f6")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TimelineScreen) and pilot.app.screen.loaded,
                   "the timeline")
    await pilot.pause()
    return pilot.app.screen


async def cursor_to(pilot, view: TimelineView, pred, what: str) -> None:
    await pilot.press("home")
    for _ in range(len(view.entries)):
        if pred(view.current()):
            return
        await pilot.press("j")
    raise AssertionError(f"no entry: {what}")


def row_on_screen(view: TimelineView) -> str:
    """The cursor's row as the view paints it."""
    strip = view.render_line(view.cursor - view.scroll_offset.y)
    return "".join(seg.text for seg in strip)


def static_plain(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return getattr(r, "plain", str(r))


def notes(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def test_timeline_lists_data_and_responder_in_time_order(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        assert view.has_focus
        ats = [e.at for e in view.entries]
        assert ats == sorted(ats) and len(ats) >= 9
        kinds = [e.kind for e in view.entries]
        assert {"data", "responder"} == {e.source for e in view.entries}
        assert kinds.count("label") == 4 and "note" in kinds and "cause" in kinds and "detection" in kinds
        assert "all times UTC" in static_plain(screen, "#timeline-title")
        assert static_plain(screen, "#timeline-header").startswith("  time (UTC)")
        shown = screen.plain().splitlines()
        assert "cause" in shown[0] and "prompt version v12 -> v13" in shown[0]
        assert any("responder" in s and "label" in s and "labelled" in s for s in shown)
        # j/k and the arrows move; the detail line says what enter opens
        await pilot.press("j", "down", "k")
        assert view.cursor == 1
        assert "explorer: model=gpt-4o served_model=gpt-4o-2024-11-20" in static_plain(screen, "#timeline-detail")


async def test_enter_opens_the_explorer_on_a_cause_and_the_reader_on_a_label(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        await cursor_to(pilot, view, lambda e: e.kind == "cause" and "served model" in e.summary, "the model cause")
        want = view.current().ref["filter"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplorerScreen), "the explorer")
        await settle(pilot)
        assert app.screen.query_one("#filter", Input).value == want
        assert app.screen.query_one("#results").total > 0
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back on the timeline")
        await cursor_to(pilot, view, lambda e: e.kind == "label" and "orderId" in e.summary, "the first label")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.current is not None,
                       "the reader")
        first = labelled_ids(responded)[0]
        assert app.screen.current["request_id"] == first and len(app.screen.span_pks) == 1
        assert first in static_plain(app.screen, "#position")


async def test_star_is_written_listed_by_the_cli_and_survives_reopening(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        await cursor_to(pilot, view, lambda e: e.kind == "cause", "a cause")
        key = view.current().key
        await pilot.press("s")
        assert view.current().starred and row_on_screen(view).startswith("★ ")  # at once
        await settle(pilot)
        listed = json.loads(oncall("--db", str(responded), "timeline", "--starred", "--json").stdout)
        assert [e["key"] for e in listed["entries"]] == [key]
        # `*`: only the starred
        await pilot.press("asterisk")
        assert [e.key for e in view.entries] == [key]
        assert "showing starred only" in static_plain(screen, "#timeline-title")
        await pilot.press("asterisk")
        assert len(view.entries) > 1
        await pilot.press("escape")
        await pilot.pause()
        screen = await open_timeline(pilot)
        assert [e.key for e in screen.query_one(TimelineView).entries if e.starred] == [key]
        # and s again unstars it
        view = screen.query_one(TimelineView)
        await cursor_to(pilot, view, lambda e: e.key == key, "the starred entry")
        await pilot.press("s")
        await settle(pilot)
    listed = json.loads(oncall("--db", str(responded), "timeline", "--starred", "--json").stdout)
    assert listed["entries"] == []


async def test_read_only_refuses_a_star_and_says_why(make_app, responded) -> None:
    app = make_app(responded, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert not any(e.starred for e in screen.entries)
        assert "read-only: starring a timeline entry is disabled" in notes(app)


async def test_a_label_from_another_process_appears_without_moving_the_cursor(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        await pilot.press("j", "j")
        before, key = len(view.entries), view.current().key
        db = open_db(responded, read_only=True)
        try:
            rid = db.cursor().execute("SELECT request_id FROM spans WHERE feature = 'support-bot' AND request_id IS "
                                      "NOT NULL ORDER BY start_time DESC LIMIT 1").fetchone()[0]
        finally:
            db.close()
        oncall("label", "--db", str(responded), rid, "bad", "--note", "from the cli beside the console")
        took = await wait_for(pilot, lambda: any("from the cli beside" in e.summary for e in view.entries),
                              "the CLI's label on the timeline")
        print(f"label from another process on the timeline {took:.2f} s after the writer exited")
        assert len(view.entries) == before + 1
        assert view.cursor == 2 and view.current().key == key and view.has_focus


async def test_hostile_label_note_is_shown_as_written(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        await cursor_to(pilot, view, lambda e: e.kind == "label" and "[@click" in e.summary, "the hostile label")
        row = row_on_screen(view)
        assert "[/] and [@click=app.quit]x[/] then ␛[2J␛]0;owned␇ end" in row and "\x1b" not in row
        detail = static_plain(screen, "#timeline-detail")
        assert "[@click=app.quit]x[/]" in detail and "\x1b" not in detail
        await pilot.click("#timeline-detail")  # a live [@click] would quit here
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, TimelineScreen)


async def test_postmortem_preview_and_export_match_the_cli(make_app, responded, tmp_path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    app = make_app(responded, read_only=True)  # a read-only console previews and exports
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, PostmortemScreen) and app.screen.draft is not None,
                       "the draft")
        await pilot.pause()
        screen = app.screen
        text = screen.plain()
        assert "## Impact" in text and text.startswith("# Postmortem (draft)")
        for rid in labelled_ids(responded):
            assert rid in text
        view = screen.query_one(DraftView)
        assert view.has_focus and view.virtual_size.height > 40
        await pilot.press("pagedown")
        assert view.scroll_offset.y > 0
        assert "lines" in static_plain(screen, "#postmortem-title")
        # ctrl+s: the path modal, default postmortem.md in the working directory
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal), "the export modal")
        assert app.screen.query_one(Input).value == "postmortem.md"
        await pilot.press("enter")
        out = work / "postmortem.md"
        await wait_for(pilot, lambda: out.exists() and isinstance(app.screen, PostmortemScreen), "the export")
        await settle(pilot)
        assert "postmortem draft written to" in notes(app)
        # an existing file: the first enter asks, the second overwrites
        out.write_text("an older draft\n")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal), "the export modal again")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ExportModal) and "exists: enter again to overwrite" in app.screen.hint()
        assert out.read_text() == "an older draft\n"
        await pilot.press("enter")
        await wait_for(pilot, lambda: out.read_text() != "an older draft\n", "the overwrite")
        await settle(pilot)
    oncall("--db", str(responded), "postmortem", "--out", str(tmp_path / "cli.md"))

    def undated(md: str) -> str:
        return re.sub(r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from the incident database", "at T from the incident "
                      "database", md)

    mine, cli = out.read_text(), (tmp_path / "cli.md").read_text()
    assert undated(mine) == undated(cli) and mine != undated(mine)


async def test_palette_and_keys_open_both_screens(make_app, responded) -> None:
    app = make_app(responded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        entries = {title: cb for title, _, cb in app.palette_entries(app.screen)}
        assert "Timeline" in entries and "Postmortem" in entries
        entries["Postmortem"]()
        await wait_for(pilot, lambda: isinstance(app.screen, PostmortemScreen), "the postmortem screen")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.draft is not None and not app.screen.building, "the rebuild")
        await pilot.press("escape")
        await pilot.pause()
        entries["Timeline"]()
        await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen), "the timeline screen")
        await settle(pilot)
        ids = {b.binding.id for b in app.screen.active_bindings.values()}
        assert {"app.timeline", "app.postmortem", "timeline.star", "timeline.export", "timeline.open"} <= ids
