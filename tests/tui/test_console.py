"""Pilot tests of the 2 AM path on the demo incident: overview -> change -> explorer -> reader -> label."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from rich.text import Text
from textual.widgets import Input, OptionList, Static

from oncall.tui.results import ResultsView
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.help import HelpScreen
from oncall.tui.screens.overview import OverviewScreen
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.replay import ReplaySetupModal
from oncall.tui.screens.trace import TraceScreen
from oncall.tui.spantree import SpanTreeView
from oncall.tui.textview import OutputView
from tests.tui.conftest import settle

SIZE = (140, 40)


def help_rows(screen) -> dict[str, str]:
    """What `?` lists for a screen: binding id -> the keys bound to it."""
    from oncall.tui.screens.help import bindings_table

    table = bindings_table(screen)
    return {table.columns[2]._cells[i].plain: table.columns[0]._cells[i].plain for i in range(table.row_count)}


def static_text(screen, selector: str) -> str:
    w = screen.query_one(selector, Static)
    r = w.render()
    return r.plain if isinstance(r, Text) else str(r)


async def test_overview_change_opens_explorer_on_its_cohort(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert "15,753 requests" in static_text(app.screen, "#incident") and "requests" in static_text(app.screen, "#incident")
        assert "what changed:" in static_text(app.screen, "#changes-title")
        options = app.screen.query_one("#changes", OptionList)
        prompts = [options.get_option_at_index(i).prompt.plain for i in range(options.option_count)]
        assert any("served model gpt-4o-2024-08-06 -> gpt-4o-2024-11-20" in p for p in prompts)
        assert any("prompt version v12 -> v13" in p for p in prompts)
        idx = next(i for i, p in enumerate(prompts) if "served model" in p)
        options.highlighted = idx
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        view = app.screen.query_one(ResultsView)
        # The served-model cause's cohort is the requested model from the update on: its failed calls
        # (which have no served model) are in it.
        assert view.filter_text.startswith("model=gpt-4o since=") and view.total > 3000
        assert "of" in static_text(app.screen, "#status")


async def test_explorer_filter_reader_label_note(make_app, demo_copy) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        box = app.screen.query_one("#filter", Input)
        assert box.has_focus
        box.value = "tenant=acme feature=extract since=01:12"
        await pilot.press("enter")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        assert view.has_focus and view.total > 50
        await pilot.press("j", "j")
        assert view.cursor == 2
        third = view.row(2)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen)
        assert app.screen.current["span_pk"] == third["span_pk"]
        out = app.screen.query_one("#output", OutputView).text
        assert third["output_preview"] and out.startswith(third["output_preview"])  # the whole output, from its start
        await pilot.press("k")  # first of the walked sample: stays
        await pilot.press("j")
        await settle(pilot)
        second = app.screen.current
        assert second["span_pk"] != third["span_pk"]
        await pilot.press("b")
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        app.screen.query_one(Input).value = "orderId instead of order_id"
        await pilot.press("enter")
        await settle(pilot)
        labels = app.store.cursor().execute("SELECT label FROM labels WHERE span_pk = ?",
                                            [second["span_pk"]]).fetchall()
        notes = app.store.cursor().execute("SELECT text FROM notes WHERE span_pk = ?", [second["span_pk"]]).fetchall()
        assert labels == [("bad",)] and notes == [("orderId instead of order_id",)]
        assert "orderId instead of order_id" in app.screen.query_one("#side").plain()
        await pilot.press("w")
        assert app.screen.query_one("#output", OutputView).wrap is False
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        view = app.screen.query_one(ResultsView)
        await settle(pilot)  # no manual refresh: coming back must show the new label and note by itself
        assert any(view.row(i) and view.row(i).get("label") == "bad" and view.row(i).get("has_note")
                   for i in range(min(view.total, 100)))


async def test_read_only_refuses_and_says_why(make_app, demo_copy) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("tenant=globex", None, 0)
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen) and app.screen.current["tenant"] == "globex"
        await pilot.press("g")
        await settle(pilot)
        assert any("read-only: label good is disabled because the console was opened with --read-only"
                   in str(n.message) for n in app._notifications)
        assert "read-only" in static_text(app.screen, "#position")
        assert app.store.cursor().execute("SELECT count(*) FROM labels").fetchone()[0] == 0


async def test_trace_help_and_remapped_keys(make_app) -> None:
    app = make_app(keymap={"reader.next": "x,ctrl+n"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("feature=support-bot", None, 0)
        await settle(pilot)
        first = app.screen.current["span_pk"]
        await pilot.press("j")  # remapped away
        await settle(pilot)
        assert app.screen.current["span_pk"] == first
        await pilot.press("x")
        await settle(pilot)
        second = app.screen.current["span_pk"]
        assert second != first
        await pilot.press("ctrl+n")  # the README's example: a second key, not taken by the output view
        await settle(pilot)
        assert app.screen.current["span_pk"] not in (first, second)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = help_rows(app.screen.under)
        await pilot.press("escape")
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TraceScreen)
        tree = app.screen.query_one(SpanTreeView)
        children = [s["name"] for s in tree.spans if s["depth"] == 1]  # under the root span
        assert tree.spans[0]["depth"] == 0 and any(name.startswith("chat gpt-4o") for name in children)
        assert "span_id" in static_text(app.screen, "#span")
        assert keys["reader.next"] == "x, ctrl+n"  # `?` lists the remapped keys, not the defaults


# -- found in the 2 AM audit -------------------------------------------------------------------------
async def test_overview_enter_opens_the_top_change_straight_away(make_app) -> None:
    """No arrow key first: the list must arrive with its top change highlighted."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        top = app.screen.changes[0]
        assert app.screen.query_one("#changes", OptionList).highlighted == 0
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        assert app.screen.query_one(ResultsView).filter_text == top.filter


async def test_ctrl_p_opens_the_palette_with_this_screens_commands(make_app) -> None:
    from textual.command import CommandPalette

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("tenant=acme", None, 0)
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)] + [
            t for t, _, _ in app.palette_entries(app.screen)]
        assert {"Reader: good", "Reader: bad", "Reader: note", "Reader: trace"} <= set(titles)
        assert titles.count("Keys") == 1  # ours, not Textual's panel beside it
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)


async def test_palette_entries_from_typed_filters_are_plain_text(make_app) -> None:
    """A filter the responder typed (or pasted) is offered again by the palette: as text, never as
    markup (Textual's own system-command hits parse it)."""
    from oncall.tui.palette import OncallCommands

    hostile = 'tenant="[@click=app.quit]x[/]" [b]bold'
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.remember_filter(hostile)
        provider = OncallCommands(app.screen)
        hits = [h async for h in provider.search("Filter")]
        shown = [h.prompt.plain for h in hits if h.prompt.plain.startswith("Filter:")]
        assert shown == [f"Filter: {hostile}"]
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Filter")
        await settle(pilot)
        assert app.is_running  # no markup error, no click action


async def test_trace_starts_on_the_request_and_enter_reads_a_span(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("feature=support-bot", None, 0)
        await settle(pilot)
        pk = app.screen.current["span_pk"]
        await pilot.press("t")
        await settle(pilot)
        tree = app.screen.query_one(SpanTreeView)
        assert tree.has_focus and tree.current["span_pk"] == pk
        await pilot.press("up")  # the root span (not a synthetic "trace" node)
        await pilot.pause()
        assert tree.current["kind"] != "llm" and "POST" in static_text(app.screen, "#span")
        await pilot.press("enter")  # a non-LLM span: shown beside the tree, the tree stays open
        await pilot.pause()
        assert isinstance(app.screen, TraceScreen) and len(tree.rows) == len(tree.spans)
        await pilot.press("space")  # folds the root: one row left, the cursor on it
        await pilot.pause()
        assert len(tree.rows) == 1 and tree.current["depth"] == 0
        await pilot.press("space", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen) and app.screen.current["span_pk"] == pk
        assert "trace=" in static_text(app.screen, "#position")


async def test_help_names_keys_as_pressed(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("")
        await settle(pilot)
        app.screen.query_one(ResultsView).focus()
        await pilot.pause()
        rows = help_rows(app.screen)
        assert rows["app.help"] == "?" and rows["explorer.filter"] == "/" and rows["app.palette"] == "ctrl+p", rows
        assert set(rows["results.down"].split(", ")) == {"j", "↓", "n"} and rows["results.end"] == "end, G", rows


async def test_bad_filter_keeps_the_bar_and_says_the_rows_are_old(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("tenant=acme")
        await settle(pilot)
        # the header's text starts in the same column as the rows' text (it had one cell of padding more)
        assert (app.screen.query_one("#header").content_region.x
                == app.screen.query_one(ResultsView).content_region.x)
        box = app.screen.query_one("#filter", Input)
        box.focus()
        box.value = "latency>fast"
        await pilot.press("enter")
        await settle(pilot)
        status = static_text(app.screen, "#status")
        assert "not a number" in status and "previous results" in status and box.has_focus
        box.value = "tenant=acme since=01:00"
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("j")
        status = static_text(app.screen, "#status")
        assert "2 of " in status and "since=01:00 is 2026-11-24T01:00:00+00:00 (UTC" in status


def test_results_header_lines_up_with_the_rows() -> None:
    import datetime as dt

    from oncall.tui.results import format_row, header_line

    row = {"start_time": dt.datetime(2026, 11, 24, 1, 2, 3, tzinfo=dt.UTC), "request_id": "req_abc",
           "tenant": "acme", "feature": "extract", "served_model": "gpt-4o-2024-11-20", "status": "ok",
           "latency_ms": 812.0, "cost": 0.0004, "label": "bad", "has_note": True, "output_preview": "hello"}
    line, head = format_row(row, 160), header_line(160)
    for name, value in (("request", "req_abc"), ("tenant", "acme"), ("served model", "gpt-4o"), ("ms", "812"),
                        ("label", "bad✎"), ("output", "hello")):
        assert head.index(name) == line.index(value), name
    assert header_line(160, "latency_ms", True).index("ms ▼") == head.index("ms")


HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
con.execute("SELECT count(*) FROM spans").fetchone()
print("holding", flush=True)
time.sleep(300)
"""


@contextmanager
def held_by_another_process(path, mode: str):
    """A real second process (the plain duckdb client, not oncall) holding the file, `ro` or `rw`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_console_labels_beside_another_process_reading_the_file(demo_copy) -> None:
    """Another program reads the file (the plain duckdb client): the console still opens read-write,
    and its label is seen by a separate `oncall search` process while the holder keeps reading."""
    from oncall.tui.app import OncallApp, open_for_console

    oncall = Path(sys.executable).with_name("oncall")
    with held_by_another_process(demo_copy, "ro"):
        store, read_only, reason = open_for_console(demo_copy)
        try:
            assert not read_only and not store.read_only and reason is None
            app = OncallApp(store, read_only=read_only, keymap={})
            async with app.run_test(size=SIZE) as pilot:
                await settle(pilot)
                app.open_reader("tenant=acme", None, 0)
                await settle(pilot)
                shown = app.screen.current
                await pilot.press("b")
                await settle(pilot)
                assert any("labelled bad" in str(n.message) for n in app._notifications)
        finally:
            store.close()
        res = subprocess.run([str(oncall), "search", "--db", str(demo_copy), "--json", "label=bad"],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert found["total"] == 1 and found["requests"][0]["span_pk"] == shown["span_pk"]


def test_oncall_open_beside_a_program_writing_the_file_says_who_holds_it(demo_copy) -> None:
    """Another program holds the file read-write: `oncall open` exits 2 with one line naming its PID."""
    oncall = Path(sys.executable).with_name("oncall")
    with held_by_another_process(demo_copy, "rw") as holder:
        res = subprocess.run([str(oncall), "open", "--db", str(demo_copy)], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("oncall: error: "), res.stderr
    assert f"{demo_copy} is held read-write by PID {holder.pid} (" in lines[0], lines[0]


async def test_overview_lists_causes_with_effects_and_r_reads_the_highlighted_cohort(make_app) -> None:
    """One line per cause, its effects beneath; `r` samples that change's cohort, enter on an effect
    opens its cause's cohort and window."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        options = app.screen.query_one("#changes", OptionList)
        prompts = [options.get_option_at_index(i).prompt.plain for i in range(options.option_count)]
        heads = [p for p in prompts if not p.lstrip().startswith("└")]
        assert len(heads) == len(app.screen.changes) == 4  # the demo's four injected problems
        model = next(i for i, p in enumerate(prompts) if "served model" in p)
        effects = []
        for p in prompts[model + 1:]:
            if not p.lstrip().startswith("└"):
                break
            effects.append(p)
        assert any("JSON-valid outputs" in e and "feature=extract" in e for e in effects)
        assert any("output length" in e for e in effects)
        change = app.screen.changes[app.screen.lines[model][0]]
        options.highlighted = model + 1  # an effect's line: it belongs to its cause
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen) and app.screen.filter_text == change.filter
        assert change.filter.startswith("model=gpt-4o since=")
        await pilot.press("escape")
        await settle(pilot)
        options = app.screen.query_one("#changes", OptionList)
        options.highlighted = model + 1
        await pilot.press("R")  # replay from an effect's line: its cause's cohort, not the n-th change's
        await settle(pilot)
        assert isinstance(app.screen, ReplaySetupModal) and app.screen.filter_text == change.filter
        await pilot.press("escape")
        await settle(pilot)
        options = app.screen.query_one("#changes", OptionList)
        options.highlighted = model + 2
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        assert app.screen.query_one(ResultsView).total == change.affected_requests
