"""Pilot tests of the 2 AM path on the demo incident: overview -> change -> explorer -> reader -> label."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Input, OptionList, Static, Tree

from oncall.tui.results import ResultsView
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.help import HelpScreen
from oncall.tui.screens.overview import OverviewScreen
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.trace import TraceScreen
from oncall.tui.textview import OutputView
from tests.tui.conftest import settle

SIZE = (140, 40)


def static_text(screen, selector: str) -> str:
    w = screen.query_one(selector, Static)
    r = w.render()
    return r.plain if isinstance(r, Text) else str(r)


async def test_overview_change_opens_explorer_on_its_cohort(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert "14," in static_text(app.screen, "#incident") and "requests" in static_text(app.screen, "#incident")
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
        assert "served_model=gpt-4o-2024-11-20" in view.filter_text and view.total > 3000
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
        assert out and out == (third["output_preview"] or "")[: len(out)] or out.startswith(third["output_preview"][:20])
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
        view._reset()
        await settle(pilot)
        assert any(view.row(i) and view.row(i).get("label") == "bad" and view.row(i).get("has_note")
                   for i in range(min(view.total, 100)))


async def test_read_only_refuses_and_says_why(make_app, demo_copy) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("tenant=globex", None, 0)
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen) and app.screen.current is not None
        await pilot.press("g")
        await settle(pilot)
        assert any("read-only" in str(n.message) for n in app._notifications)
        assert app.store.cursor().execute("SELECT count(*) FROM labels").fetchone()[0] == 0


async def test_trace_help_and_remapped_keys(make_app) -> None:
    app = make_app(keymap={"reader.next": "x"})
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
        assert app.screen.current["span_pk"] != first
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        table_text = app.screen.query(Static)[1].render()
        await pilot.press("escape")
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TraceScreen)
        tree = app.screen.query_one(Tree)
        labels = [n.label.plain for n in tree.root.children[0].children] if tree.root.children else []
        assert tree.root.children and any("chat gpt-4o" in lab for lab in labels)
        assert "span_id" in static_text(app.screen, "#span")
        assert table_text is not None
