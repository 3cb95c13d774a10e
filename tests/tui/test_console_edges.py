"""The console's rough edges of issue 27 (item 3), each driven through the real app on the demo incident."""

from __future__ import annotations

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
