"""The console's rough edges of issue 27 (item 3), each driven through the real app on the demo incident."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.widgets import Static

from oncall.tui.results import ResultsView
from oncall.tui.screens.explorer import ExplorerScreen, FilterInput
from oncall.tui.screens.overview import OverviewScreen
from tests.tui.conftest import settle

SIZE = (80, 24)


def static_text(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return r.plain if isinstance(r, Text) else str(r)


# -- the filter bar ------------------------------------------------------------------------------------
async def test_slash_edits_the_filter_shown_and_esc_gives_up_the_edit(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")  # from the overview: the explorer, its bar focused
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen)
        box = app.screen.query_one("#filter", FilterInput)
        assert box.has_focus
        await pilot.press(*"tenant=acme", "enter")
        await settle(pilot)
        assert app.screen.query_one(ResultsView).filter_text == "tenant=acme"
        await pilot.press("slash")
        await pilot.press(*" status=error")  # appended, not typed over the filter
        assert box.value == "tenant=acme status=error"
        await pilot.press("escape")  # leaves the edit: the bar shows the applied filter again
        await settle(pilot)
        assert isinstance(app.screen, ExplorerScreen) and not box.has_focus
        assert box.value == "tenant=acme"
        await pilot.press("slash", "ctrl+u")  # a key clears
        assert box.value == "" and box.has_focus


async def test_tab_completes_keys_and_values_in_the_filter_bar(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        box = app.screen.query_one("#filter", FilterInput)
        await pilot.press(*"serv", "tab")
        assert box.value == "served_model=" and box.has_focus  # tab completed, it did not move the focus
        await pilot.press(*"gpt-4o-2024-1", "tab")  # a value from the incident's own data
        assert box.value == "served_model=gpt-4o-2024-11-20"
        await pilot.press(*" status=e", "tab")  # the language's closed vocabulary
        assert box.value == "served_model=gpt-4o-2024-11-20 status=error"
        await pilot.press(*" tenant=", "tab")
        await settle(pilot)
        assert box.value.endswith(" tenant=acme")  # the most frequent first; the others are listed
        assert "also: " in static_text(app.screen, "#status") and "globex" in static_text(app.screen, "#status")


# -- 80x24: the explorer's columns, the time's date and zone -----------------------------------------------
def test_the_output_takes_the_free_width_and_80_columns_keep_the_key_ones() -> None:
    from oncall.tui.results import format_row, header_line, layout

    row = {"start_time": dt.datetime(2026, 11, 24, 0, 1, 2, tzinfo=dt.UTC), "request_id": "req_1", "tenant": "acme",
           "feature": "extract", "served_model": "gpt-4o-2024-11-20", "status": "error", "error_type": "timeout",
           "latency_ms": 812.0, "cost": 0.00042, "label": "bad", "output_preview": "x" * 300}
    for width in (78, 100, 160, 240):
        cols, _ = layout(width, days=True)
        names = [n for n, _ in cols]
        assert {"time", "tenant", "feature", "served model", "status", "label"} <= set(names), (width, names)
        used = sum(w + 1 for _, w in cols)
        line = format_row(row, width, days=True)
        assert line[used:] == "x" * (width - used - 1) + "…" and width - used >= 12  # the output has the rest
        assert header_line(width, "start_time", True, days=True).startswith("time UTC ▼")
    assert format_row(row, 160, days=True).startswith("11-24 00:01:02 ")  # the date, the incident spans days
    assert format_row(row, 160, days=False).startswith("00:01:02 ")
    assert format_row(row, 78, days=True).startswith("11-24 00:01 ")  # narrow: the seconds go before the date


async def test_explorer_at_80x24_dates_its_times_and_shows_the_output(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("tenant=acme")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        assert view.days  # the demo runs from 21:00 to 03:00
        header = static_text(app.screen, "#header")
        assert header.startswith("time UTC ▼") and header.rstrip().endswith("output")
        first = view.render_line(0).text
        assert first.startswith("11-24 02:59") and "acme" in first
        assert first.rstrip()[-1] != " " and len(first.rstrip()) > 70  # output text up to the edge


# -- the overview at 80x24 -------------------------------------------------------------------------------
async def test_overview_at_80x24_reads_and_tab_jumps_from_cause_to_cause(make_app) -> None:
    from textual.widgets import OptionList

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        head = static_text(screen, "#incident")
        assert "UTC" in head and "cost $" in head  # two lines: nothing cut at the edge
        rendered = [w.render().plain for w in screen.query(".chart-title")]
        assert rendered == ["error rate", "latency p95", "cost/request", "output length"], rendered
        for w in screen.query(".chart-title"):
            assert w.size.width >= len(w.render().plain)  # each title fits over its chart
        options = screen.query_one("#changes", OptionList)
        causes = [n for n, (_, kind, _) in enumerate(screen.lines) if kind == "change"]
        assert len(causes) == 3 and options.highlighted == causes[0]
        await pilot.press("tab")
        assert options.highlighted == causes[1]  # over the first cause's effects
        await pilot.press("tab")
        assert options.highlighted == causes[2]
        await pilot.press("shift+tab")
        assert options.highlighted == causes[1]
        first = options.get_option_at_index(causes[0]).prompt
        assert str(first.plain if hasattr(first, "plain") else first).startswith("11-24 00:30")
