"""A handful of snapshots at a fixed size on the demo incident (deterministic data, pinned Textual).

Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from textual.widgets import Input

from tests.tui.conftest import settle

SIZE = (140, 40)


def test_overview(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_explorer_filtered(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_explorer("tenant=acme feature=extract since=01:12")
        await settle(pilot)
        await pilot.press("j", "j")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_reader(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_explorer("feature=extract since=01:12")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_over_explorer(snap_compare, make_app) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.open_explorer("")
        await settle(pilot)
        pilot.app.screen.query_one("#filter", Input).blur()
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
