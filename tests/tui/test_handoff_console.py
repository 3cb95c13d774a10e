"""The hand-off in the console (Pilot): the timeline screen (f6) and the postmortem preview (f7) on the
demo incident after a short response — labels (one with a markup-hostile note), a note, a replay.

The CLI is the reference: what `s` stars, `oncall timeline --starred --json` (a real subprocess) lists;
what ctrl+s writes equals `oncall timeline --json` and `oncall postmortem --out`. Writes by another
process (`oncall label`) reach the open timeline by themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from oncall.postmortem.timeline import timeline
from oncall.query.labels import add_label, add_note
from oncall.store import open_db
from oncall.tui.results import ResultsView
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.export import ConfirmOverwriteModal, ExportPathModal
from oncall.tui.screens.postmortem import H2, PLAIN, DraftView, PostmortemScreen, line_styles
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.replay import ReplayScreen
from oncall.tui.screens.timeline import TimelineScreen, TimelineView
from oncall.tui.textview import RichLinesView
from tests.tui.conftest import settle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from openai_server import OpenAIServer  # noqa: E402
from replay_helpers import write_suite  # noqa: E402

SIZE = (150, 42)
ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 30.0
HOSTILE = "[/] [@click=app.quit]boom[/@click] [bold red]not red[/] `tick` # not a heading"


def oncall(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    res = subprocess.run([sys.executable, "-m", "oncall", *args], capture_output=True, text=True, timeout=300,
                         cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


@pytest.fixture
def responded(demo_copy: Path) -> dict:
    """The demo after a short response: two bad labels on the new snapshot's extract outputs (one with
    a markup-hostile note), one good label, a free note holding markup."""
    db = open_db(demo_copy)
    try:
        cur = db.cursor()
        bad = cur.execute("SELECT span_pk, request_id FROM spans WHERE served_model = 'gpt-4o-2024-11-20' AND "
                          "feature = 'extract' ORDER BY start_time LIMIT 2").fetchall()
        good = cur.execute("SELECT span_pk, request_id FROM spans WHERE served_model = 'gpt-4o-2024-08-06' AND "
                           "feature = 'extract' ORDER BY start_time LIMIT 1").fetchone()
        add_label(db, bad[0][0], "bad", note=HOSTILE)
        add_label(db, bad[1][0], "bad", note="orderId instead of order_id")
        add_label(db, good[0], "good")
        add_note(db, "paged at 02:04 [link=http://x]click[/link]; acme says refunds break")
    finally:
        db.close()
    return {"path": demo_copy, "bad": bad, "good": good}


async def open_timeline(pilot) -> TimelineScreen:
    await settle(pilot)
    await pilot.press("f6")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, TimelineScreen) and screen.entries is not None
    return screen


def rows(screen: TimelineScreen) -> list[str]:
    """The timeline's rows as painted (every row, not only the visible ones)."""
    view = screen.query_one(TimelineView)
    return [view.row_strip(i).text for i in range(len(view.entries))]


async def goto(pilot, screen: TimelineScreen, pred) -> object:
    """Move the cursor with j/k to the first entry for which pred(entry) holds."""
    view = screen.query_one(TimelineView)
    index = next(i for i, e in enumerate(view.entries) if pred(e))
    await pilot.press("home", *["j"] * index)
    assert view.cursor == index
    return view.current()


async def until(pilot, predicate, what: str) -> None:
    start = time.monotonic()
    while time.monotonic() - start < GUARD_S:
        if predicate():
            print(f"{what}: {time.monotonic() - start:.2f} s")
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never: {what}")


async def test_the_timeline_shows_data_and_responder_entries_in_order(make_app, responded) -> None:
    app = make_app(responded["path"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        core = timeline(app.store)
        assert [e.key for e in screen.entries] == [e.key for e in core]  # the same stream as `oncall timeline`
        assert [e.at for e in screen.entries] == sorted(e.at for e in screen.entries)
        kinds = [e.kind for e in screen.entries]
        assert {"cause", "shift", "burst_end"} <= set(kinds) and kinds.count("label") == 3 and "note" in kinds
        sources = [e.source for e in screen.entries]
        assert "data" in sources and "responder" in sources
        title = screen.query_one("#timeline-title").render()
        assert "all times UTC" in title.plain and f"{len(core)} entries" in title.plain
        painted = rows(screen)
        assert painted[0].startswith("  2026-11-24 00:30:08  data      cause")
        assert any("label" in r and responded["bad"][0][1] in r for r in painted)
        # Markup-hostile text is shown as it was written, in the rows and in the entry pane.
        hostile_row = next(r for r in painted if "label        labelled" in r and "@click" in r)
        assert "bad: [/] [@click=app.quit]boom[/@click] [bold red]not" in hostile_row
        entry = await goto(pilot, screen, lambda e: e.kind == "note")
        pane = screen.query_one("#timeline-entry", RichLinesView).plain()
        assert "[link=http://x]click[/link]" in pane and "nothing to open" in pane
        assert entry.kind == "note" and isinstance(app.screen, TimelineScreen)


async def test_enter_opens_the_cohort_in_the_explorer_and_a_label_in_the_reader(make_app, responded) -> None:
    app = make_app(responded["path"])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        cause = await goto(pilot, screen, lambda e: e.kind == "cause" and "served model" in e.summary)
        assert "the explorer on model=gpt-4o since=" in \
            screen.query_one("#timeline-entry", RichLinesView).plain()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        results = app.screen.query_one(ResultsView)
        assert results.filter_text == cause.ref["filter"] and results.total == cause.detail["requests"]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        pk, request = responded["bad"][1]
        await goto(pilot, screen, lambda e: e.kind == "label" and e.detail.get("span_pk") == pk)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen)
        assert app.screen.current["span_pk"] == pk and app.screen.current["request_id"] == request
        assert "orderId instead of order_id" in app.screen.query_one("#side", RichLinesView).plain()
        # A label made in the reader is on the timeline when the responder comes back.
        await pilot.press("g")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        assert sum(1 for e in screen.entries if e.kind == "label") == 4
        assert screen.query_one(TimelineView).current().detail.get("span_pk") == pk  # cursor kept


async def test_s_stars_for_the_report_and_the_cli_lists_it(make_app, responded) -> None:
    path = responded["path"]
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        pk = responded["bad"][0][0]
        entry = await goto(pilot, screen, lambda e: e.kind == "label" and e.detail.get("span_pk") == pk)
        await pilot.press("s")
        assert entry.starred and view.row_strip(view.cursor).text.startswith("★ ")
        assert "1 starred" in screen.query_one("#timeline-title").render().plain  # at once, before the write
        await settle(pilot)
        listed = json.loads(oncall("timeline", "--db", str(path), "--starred", "--json"))
        assert [e["key"] for e in listed["entries"]] == [entry.key] and listed["entries"][0]["starred"]
        cause = await goto(pilot, screen, lambda e: e.kind == "cause")
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("asterisk")  # starred only
        assert [e.key for e in view.entries] == [cause.key, entry.key]
        assert "starred only" in screen.query_one("#timeline-title").render().plain
        await pilot.press("escape")
        await settle(pilot)
        screen = await open_timeline(pilot)  # survives reopening
        assert {e.key for e in screen.entries if e.starred} == {cause.key, entry.key}
        await goto(pilot, screen, lambda e: e.key == cause.key)
        await pilot.press("s")  # unstar
        await settle(pilot)
    listed = json.loads(oncall("timeline", "--db", str(path), "--starred", "--json"))
    assert [e["key"] for e in listed["entries"]] == [entry.key]


async def test_a_read_only_console_refuses_stars_with_the_reason(make_app, responded) -> None:
    app = make_app(responded["path"], read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        assert "read-only: starring is disabled" in screen.query_one("#timeline-title").render().plain
        await pilot.press("s")
        await settle(pilot)
        assert not any(e.starred for e in screen.entries)
        assert any("starring a timeline entry is disabled because the console was opened with --read-only"
                   in str(n.message) for n in app._notifications)
        assert app.store.cursor().execute("SELECT count(*) FROM stars").fetchone()[0] == 0


async def test_a_label_from_another_process_appears_on_the_open_timeline(make_app, responded) -> None:
    path = responded["path"]
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        view = screen.query_one(TimelineView)
        cause = await goto(pilot, screen, lambda e: e.kind == "shift")
        before = len(screen.entries)
        request = responded["good"][1]
        oncall("label", "--db", str(path), request, "bad", "--note", "from the CLI: [b]x[/b] [@click=app.quit]")
        await until(pilot, lambda: len(screen.entries) == before + 1, "a CLI label on the open timeline")
        new = screen.entries[-1]
        assert new.kind == "label" and request in new.summary and new.actor
        assert view.current().key == cause.key  # the cursor stays on its entry
        assert any("from the CLI: [b]x[/b] [@click=app.quit]" in r for r in rows(screen))


async def test_ctrl_s_exports_what_oncall_timeline_json_prints(make_app, responded, tmp_path: Path) -> None:
    path = responded["path"]
    app = make_app(path)
    out = tmp_path / "exports" / "timeline.json"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        await goto(pilot, screen, lambda e: e.kind == "label")
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ExportPathModal)
        box = app.screen.query_one("#export-path", Input)
        assert box.value == str(path.resolve().parent / "timeline.json")  # the default: beside the incident
        box.value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportPathModal)  # a folder that does not exist is refused
        assert "does not exist" in app.screen.query_one("#export-error").render().plain
        out.parent.mkdir()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is screen and out.read_text() == oncall("timeline", "--db", str(path), "--json")
        # Starred only: what `--starred --json` prints; an existing file is replaced only when confirmed.
        await pilot.press("asterisk", "ctrl+s")
        await settle(pilot)
        app.screen.query_one("#export-path", Input).value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmOverwriteModal)
        await pilot.press("enter")  # Cancel is the default: the file is kept
        await settle(pilot)
        assert isinstance(app.screen, ExportPathModal) and "kept" in app.screen.query_one("#export-error").render().plain
        assert len(json.loads(out.read_text())["entries"]) == len(screen.entries)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("tab", "enter")  # Replace
        await settle(pilot)
        assert app.screen is screen
        assert out.read_text() == oncall("timeline", "--db", str(path), "--starred", "--json")
        assert len(json.loads(out.read_text())["entries"]) == 1


async def test_enter_on_a_replay_entry_opens_its_compare_screen(make_app, responded, tmp_path: Path) -> None:
    path = responded["path"]
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url)
        ran = json.loads(oncall("replay", "--db", str(path), "served_model=gpt-4o-2024-11-20", "feature=extract",
                                "-n", "2", "--target", "loop", "--suite", str(suite), "--yes", "--no-progress",
                                "--json", env={"ONCALL_TEST_KEY": "sk-test-console-0123456789abcdef"}))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_timeline(pilot)
        await goto(pilot, screen, lambda e: e.kind == "replay" and e.ref.get("run_id") == ran["run_id"])
        assert f"replay run {ran['run_id']} (compare screen)" in screen.query_one("#timeline-entry",
                                                                                  RichLinesView).plain()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReplayScreen) and app.screen.run_id == ran["run_id"]


def _without_stamp(markdown: str) -> str:
    return re.sub(r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from the incident database",
                  "at <generated> from the incident database", markdown)


async def test_the_postmortem_preview_and_its_export_are_the_draft(make_app, responded, tmp_path: Path) -> None:
    path = responded["path"]
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PostmortemScreen) and screen.draft is not None
        view = screen.query_one(DraftView)
        shown = view.text
        for heading in ("# Postmortem (draft):", "## Summary", "## Impact", "## Timeline", "## What changed",
                        "## Evidence", "## Mitigation", "## Root cause and trigger",
                        "## Appendix: the queries behind the numbers"):
            assert f"\n{heading}" in "\n" + shown, heading
        for _, request in [*responded["bad"], responded["good"]]:
            assert f"request `{request}`" in shown
        # Rendered, and painted as text: the hostile note reads as written (its escapes resolved), never as markup.
        lines = view.plain_lines()
        note = next(i for i, line in enumerate(lines) if "@click" in line)
        assert "[@click=app.quit]boom" in lines[note] and "\\[" not in lines[note]
        view.scroll_to(y=note, animate=False, immediate=True)
        assert view.render_line(0).text.rstrip() == lines[note].rstrip()
        # n jumps from section to section (the headings without their #).
        view.scroll_to(y=0, animate=False, immediate=True)
        await pilot.press("n")
        assert lines[view.scroll_offset.y] == "Summary"
        await pilot.press("n")
        assert lines[view.scroll_offset.y] == "Impact"
        # ctrl+s: postmortem.md beside the incident, equal to `oncall postmortem --out`.
        await pilot.press("ctrl+s")
        await settle(pilot)
        box = app.screen.query_one("#export-path", Input)
        default = path.resolve().parent / "postmortem.md"
        assert box.value == str(default) and not default.exists()
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is screen and default.read_text() == screen.draft.markdown
        ref = tmp_path / "cli.md"
        oncall("--db", str(path), "postmortem", "--out", str(ref))
        assert _without_stamp(default.read_text()) == _without_stamp(ref.read_text())
        # Again: the file exists, so it asks; Cancel (the default) keeps it.
        default.write_text("mine")
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmOverwriteModal)
        await pilot.press("enter", "escape")
        await settle(pilot)
        assert app.screen is screen and default.read_text() == "mine"


async def test_the_postmortem_catches_up_with_stars_made_on_the_timeline(make_app, responded) -> None:
    """Read-only consoles preview and export; a star made on the timeline shows in the draft when the
    responder comes back to it."""
    app = make_app(responded["path"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        screen = app.screen
        assert "★" not in screen.markdown
        await pilot.press("f6")
        await settle(pilot)
        await goto(pilot, app.screen, lambda e: e.kind == "note")
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        await until(pilot, lambda: "| ★ responder | note |" in screen.markdown, "the star in the draft")


async def test_a_read_only_console_previews_and_exports_the_draft(make_app, responded, tmp_path: Path) -> None:
    app = make_app(responded["path"], read_only=True)
    out = tmp_path / "pm.md"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PostmortemScreen) and "## Evidence" in screen.markdown
        await pilot.press("ctrl+s")
        await settle(pilot)
        app.screen.query_one("#export-path", Input).value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        assert out.read_text() == screen.markdown


async def test_e_on_the_postmortem_exports_the_eval_set_as_the_cli_does(make_app, responded, tmp_path: Path) -> None:
    """`e` on the postmortem: the labelled requests as a promptfoo eval set in a folder beside the
    incident, the files `oncall export evalset --format promptfoo` writes; a folder holding files is
    replaced only when confirmed; the trail records the export."""
    path = responded["path"]
    cli_out = tmp_path / "cli-evalset"
    oncall("export", "evalset", "--format", "promptfoo", "--out", str(cli_out), "--db", str(path))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        screen = app.screen
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, ExportPathModal)
        out = path.resolve().parent / "evalset"
        assert app.screen.query_one("#export-path", Input).value == str(out)
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is screen
        written = (out / "promptfooconfig.yaml").read_text()
        assert written == (cli_out / "promptfooconfig.yaml").read_text()
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmOverwriteModal)  # Cancel is the default
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExportPathModal)
        app.screen.query_one("#export-path", Input).value = str(out / "promptfooconfig.yaml")
        await pilot.press("enter")
        await settle(pilot)
        assert "is a file" in app.screen.query_one("#export-error").render().plain
    store = open_db(path, read_only=True)
    try:
        exports = [r[0] for r in store.cursor().execute("SELECT summary FROM trail WHERE kind = 'export'").fetchall()]
    finally:
        store.close()
    assert any(str(out) in e for e in exports), exports


def test_styling_never_reaches_inside_a_fence() -> None:
    """Quoted outputs hold headings, tables and fences of their own: inside the draft's fence they stay
    plain text, and a shorter backtick run does not close it."""
    lines = ["## Evidence", "", "````text", "# not a heading", "| a | b |", "|---|---|", "```", "> not a quote",
             "````", "## Mitigation", "| k | v |", "|---|---|", "| a | b |"]
    styles = line_styles(lines)
    assert styles[0] == H2 and styles[9] == H2
    assert all(s == PLAIN for s in styles[3:8])
    assert styles[10].bold and styles[11].dim and styles[12] == PLAIN


async def test_esc_cancels_a_build_in_flight(make_app, responded) -> None:
    """esc during a rebuild keeps the previous draft (and says so); esc during the first build leaves,
    and the interrupted build's answer never lands on a screen that is gone. (The builds are started
    and cancelled by the screens' own methods, back to back: a Pilot key press waits long enough for
    the demo's draft to be finished.)"""
    from oncall.tui.screens.modals import ErrorModal
    from oncall.tui.screens.overview import OverviewScreen

    app = make_app(responded["path"])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        screen = app.screen
        first = screen.draft
        screen.action_rebuild()
        assert screen._building
        screen.action_back()  # esc
        assert "rebuild cancelled" in screen.query_one("#postmortem-title").render().plain
        await settle(pilot)
        assert app.screen is screen and screen.draft is first and not screen._building
        await pilot.press("escape")
        for opener in (app.open_postmortem, app.open_timeline):
            opener()
            while not getattr(app.screen, "_building", False) and getattr(app.screen, "_generation", 0) == 0:
                await pilot.pause(0.01)  # mounted: its first build started
            building = app.screen
            assert building._building
            building.action_back()
            await settle(pilot)
            assert isinstance(app.screen, OverviewScreen)
        assert not any(isinstance(s, ErrorModal) for s in app.screen_stack)


async def _wait_for(pilot, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await pilot.pause(0.1)


async def test_m_adds_a_checked_machine_summary_and_a_failing_target_changes_nothing(
        make_app, responded, tmp_path: Path, monkeypatch) -> None:
    """`m` on the postmortem: Cancel is the default; Write asks the target; an honest summary lands
    under Summary marked as a machine draft; a target answering 500 leaves the draft as it was."""
    from oncall.tui.screens.postmortem import SummarizeModal

    def honest(req: dict) -> str:
        given = req["messages"][-1]["content"].splitlines()
        impact = given[given.index("Impact:") + 1]
        return "In short: " + impact[2:]

    monkeypatch.setenv("ONCALL_TEST_KEY", "sk-test-console-0123456789abcdef")
    with OpenAIServer(answerer=honest) as srv:
        monkeypatch.setenv("ONCALL_REPLAY_SUITE", str(write_suite(tmp_path, srv.base_url)))
        app = make_app(responded["path"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("f7")
            await _wait_for(pilot, lambda: getattr(app.screen, "draft", None) is not None)
            screen = app.screen
            before = screen.draft.markdown
            await pilot.press("m")
            await settle(pilot)
            assert isinstance(app.screen, SummarizeModal)
            await pilot.press("enter")  # Cancel is focused: nothing is sent
            await settle(pilot)
            assert app.screen is screen and srv.completions() == [] and screen.draft.markdown == before
            srv.fail_next(500, times=2)  # the call and its one retry
            await pilot.press("m")
            await _wait_for(pilot, lambda: not app.screen.query_one("#write").disabled)
            await pilot.click("#write")
            await _wait_for(pilot, lambda: srv.requests_received >= 2)
            await settle(pilot)
            assert screen.draft.markdown == before
            await pilot.press("m")
            await _wait_for(pilot, lambda: not app.screen.query_one("#write").disabled)
            await pilot.click("#write")
            await _wait_for(pilot, lambda: "Machine-drafted summary" in screen.draft.markdown)
            md = screen.draft.markdown
            assert "### Machine-drafted summary" in md and "Machine draft" in md
            assert md.index("## Summary") < md.index("### Machine-drafted") < md.index("## Impact")
            assert "Machine-drafted summary" in screen.query_one(DraftView).text
            assert "sk-test-console" not in md
