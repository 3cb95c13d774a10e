"""The console's rough edges of issue 27 (item 3), each driven through the real app on the demo incident."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from rich.console import Console
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
        assert len(causes) == 4 and options.highlighted == causes[0]  # prompt, served model, index, 429s
        await pilot.press("tab")
        assert options.highlighted == causes[1]  # over the first cause's effects
        await pilot.press("tab")
        assert options.highlighted == causes[2]
        await pilot.press("shift+tab")
        assert options.highlighted == causes[1]
        first = options.get_option_at_index(causes[0]).prompt
        assert str(first.plain if hasattr(first, "plain") else first).startswith("11-24 00:30")


# -- replay: the dialog's labelled fields and baseline, the compare screen's summary table ------------------
async def test_replay_dialog_labels_offers_the_baseline_and_compare_shows_the_summary(make_app, tmp_path,
                                                                                     monkeypatch) -> None:
    import sys
    from pathlib import Path

    from textual.widgets import Button, Input

    from oncall.tui.screens.replay import ReplayScreen, ReplaySetupModal

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    with OpenAIServer(mode="varying") as srv:
        monkeypatch.setenv("ONCALL_REPLAY_SUITE", str(write_suite(tmp_path, srv.base_url)))
        monkeypatch.setenv("ONCALL_TEST_KEY", "sk-test-console-0123456789abcdef")
        app = make_app()
        async with app.run_test(size=(80, 40)) as pilot:
            await settle(pilot)
            await pilot.press("tab", "R")  # the served-model cause (the second), replayed from the overview
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ReplaySetupModal)
            labels = [w.render().plain if hasattr(w.render(), "plain") else str(w.render())
                      for w in modal.query(".field-label")]
            assert [lab.split(" (")[0] for lab in labels] == ["target", "prompt variant", "requests", "repeat",
                                                              "baseline"]
            assert modal.query_one("#baseline", Input).value == "model=gpt-4o until=2026-11-24T01:12:01Z"
            start = modal.query_one("#start", Button)
            assert start.region.bottom <= 40  # the buttons fit at 40 rows
            modal.query_one("#n", Input).value = "3"
            modal.query_one("#repeat", Input).value = "2"
            await settle(pilot)
            assert "compares with the baseline model=gpt-4o" in static_text(modal, "#estimate")
            await pilot.click("#start")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, ReplayScreen)
            for _ in range(400):
                await pilot.pause(0.05)
                if not screen.running and len(screen.pairs) == 6:
                    break
            await settle(pilot)
            console = Console(width=78, record=True, file=io.StringIO())
            console.print(screen.query_one("#replay-table", Static).content)
            text = console.export_text()
            assert "baseline: model=gpt-4o until=" in text
            head = next(line for line in text.splitlines() if line.startswith("metric"))
            assert head.split() == ["metric", "baseline", "original", "replay", "change"]
            assert "error_rate" in text and "noise (repeat 2)" in text
            await pilot.press("s")  # s hides the summary for the pairs, and shows it again
            assert not screen.query_one("#replay-summary").display


async def test_at_80x24_the_replay_dialog_opens_with_its_estimate_and_buttons_in_view(make_app, tmp_path,
                                                                                       monkeypatch) -> None:
    """The dialog is taller than 24 rows: it scrolls, and once the estimate is in it shows what the
    focused Cancel / Replay act on (the estimate above them), not the middle of the form."""
    import sys
    from pathlib import Path

    from textual.widgets import Button

    from oncall.tui.screens.replay import ReplaySetupModal

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    with OpenAIServer() as srv:
        monkeypatch.setenv("ONCALL_REPLAY_SUITE", str(write_suite(tmp_path, srv.base_url)))
        monkeypatch.setenv("ONCALL_TEST_KEY", "sk-test-console-0123456789abcdef")
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("tab", "R")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ReplaySetupModal)
            dialog = modal.query_one("#dialog")
            buttons = [modal.query_one(f"#{b}", Button) for b in ("cancel", "start")]
            for _ in range(100):  # the estimate comes from a worker; the scroll follows its refresh
                if "requests x1" in static_text(modal, "#estimate") and all(
                        dialog.content_region.contains_region(b.region) for b in buttons):
                    break
                await pilot.pause(0.05)
            assert "requests x1" in static_text(modal, "#estimate")
            for button in buttons:  # inside what the scrolled dialog shows
                assert dialog.content_region.contains_region(button.region), (dialog.content_region, button.region)
            assert modal.query_one("#cancel", Button).has_focus


# -- the postmortem preview renders the Markdown --------------------------------------------------------
def test_the_preview_renders_the_drafts_markdown_and_keeps_fences_and_hostile_text_as_written() -> None:
    from oncall.tui import mdpreview

    md = ["# Postmortem (draft): prompt v12 -\\> v13", "", "> ✍️ **To be written by a human.** The *why*",
          "- **error rate** 0.81 % -\\> 76 % (429 rate\\_limit) `provider=anthropic since=02:05`",
          "- [ ] Add the eval set to CI", "", "| metric | original |", "|---|---|", "| error\\_rate | 0 % |",
          "| cost\\_per\\_request | $0.000713 |", "", "```text", "# a quoted heading \\_ **kept**", "```",
          "note: \\[@click=app.quit\\]boom [bold]x[/bold]"]
    out = [t.plain for t, _ in mdpreview.render(md)]
    assert out[0] == "Postmortem (draft): prompt v12 -> v13"
    assert out[2] == "▌ ✍️ To be written by a human. The why"
    assert out[3] == "• error rate 0.81 % -> 76 % (429 rate_limit) provider=anthropic since=02:05"
    assert out[4] == "☐ Add the eval set to CI"
    assert out[6].split(" │ ") == ["metric".ljust(16), "original"]  # aligned columns
    assert out[7].startswith("─") and "┼" in out[7]
    assert out[8].split(" │ ")[0] == "error_rate".ljust(16) and out[9].startswith("cost_per_request │ $0.000713")
    assert out[12] == "# a quoted heading \\_ **kept**"  # a fence shows exactly what it quotes
    assert out[14] == "note: [@click=app.quit]boom [bold]x[/bold]"  # text, never markup
    styled = mdpreview.render(md)[3][0]
    assert any(span.style.bold for span in styled.spans if not isinstance(span.style, str))


async def test_postmortem_preview_shows_no_escapes(make_app) -> None:
    from oncall.tui.screens.postmortem import DraftView, PostmortemScreen

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        assert isinstance(app.screen, PostmortemScreen)
        lines = app.screen.query_one(DraftView).plain_lines()
        shown = "\n".join(lines)
        assert "\\_" not in shown and "-\\>" not in shown and "**" not in shown
        assert lines[0].startswith("Postmortem (draft): ") and "rate_limit" in shown


# -- the runbook form keeps edits after a failed run and fits 40 rows -------------------------------------
async def test_runbook_form_keeps_edits_after_a_failed_run_and_fits_40_rows(make_app, tmp_path, monkeypatch) -> None:
    import json
    import time
    from pathlib import Path

    from textual.widgets import Button, Input

    from oncall.tui.screens.runbook import RunbookParamsModal, RunbookRunScreen, RunbooksScreen

    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flags": {"agent-tools-send-email": {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}))
    (tmp_path / "oncall.toml").write_text(f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{flags}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ONCALL_TOML", raising=False)
    monkeypatch.delenv("ONCALL_RUNBOOKS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))

    async def until(pilot, cond, what: str) -> None:
        deadline = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < deadline, what
            await pilot.pause(0.05)

    app = make_app()
    async with app.run_test(size=(80, 40)) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books, "runbooks")
        names = [b.name for b in app.screen.books]
        for _ in range(names.index("provider-model-regression")):
            await pilot.press("j")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunbookParamsModal), "the form")
        form = app.screen
        assert form.query_one("#start", Button).region.bottom <= 40  # the buttons are on the screen
        for name in ("cohort", "baseline", "candidate"):  # the parameters show beside the plan, one line each
            box = form.query_one(f"#param-{name}", Input)
            assert box.region.height == 1 and box.region.bottom <= 40, name
        await pilot.press("escape")
        await pilot.pause()
        step = names.index("prompt-injected-agent") - names.index("provider-model-regression")
        for _ in range(abs(step)):
            await pilot.press("j" if step > 0 else "k")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunbookParamsModal), "the form")
        app.screen.query_one("#param-variant", Input).value = "nosuch"
        app.screen.query_one("#why", Input).value = "agent emailing customers"
        await pilot.press("enter")  # the plan refuses a variant the flag does not have: the run stops
        await until(pilot, lambda: isinstance(app.screen, RunbookRunScreen) and app.screen.outcome is not None,
                    "the run to stop")
        assert app.screen.outcome != "completed"
        await pilot.press("e")  # edit and run again: the form holds what was typed, not the defaults
        await until(pilot, lambda: isinstance(app.screen, RunbookParamsModal), "the form again")
        assert app.screen.query_one("#param-variant", Input).value == "nosuch"
        assert app.screen.query_one("#why", Input).value == "agent emailing customers"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen), "the runbooks")
        await pilot.press("enter")  # and from the list too
        await until(pilot, lambda: isinstance(app.screen, RunbookParamsModal), "the form from the list")
        assert app.screen.query_one("#param-variant", Input).value == "nosuch"


@pytest.mark.parametrize("first", ["page", "count"])
async def test_a_filters_first_page_is_fetched_beside_its_count_once_whichever_lands_first(make_app, monkeypatch,
                                                                                          first) -> None:
    """The explorer asks for the first page with the count (ResultsView.prefetch), not after it: the
    rows shown are that page's, whichever of the two answers lands first, and it is not fetched twice."""
    import threading

    import oncall.query.search as search

    flt = "tenant=acme feature=extract"
    real_page, real_count = search.page_at, search.count_noted
    pages: list[int] = []
    page_done, count_shown = threading.Event(), threading.Event()
    real_set = ResultsView.set_filter

    def set_filter(view, text, total):
        real_set(view, text, total)
        if text == flt:
            count_shown.set()

    def page_at(con, text, offset, *args, **kw):
        if text == flt and first == "count":
            assert count_shown.wait(10)  # the count is on screen before the page lands
        rows = real_page(con, text, offset, *args, **kw)
        if text == flt:
            pages.append(offset)
            page_done.set()
        return rows

    def count_noted(con, text):
        if text == flt and first == "page":
            assert page_done.wait(10)
        return real_count(con, text)

    monkeypatch.setattr(search, "page_at", page_at)
    monkeypatch.setattr(search, "count_noted", count_noted)
    monkeypatch.setattr(ResultsView, "set_filter", set_filter)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.open_explorer(flt)
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        expected = real_page(app.store.cursor(), flt, 0, 100)
        assert view.filter_text == flt and view.total == real_count(app.store.cursor(), flt)[0] > 0
        assert [r["span_pk"] for r in view._pages[0]] == [r["span_pk"] for r in expected]
        assert pages.count(0) == 1, pages  # the prefetched page is the one shown, not asked again
        assert "loading" not in " ".join(view.render_line(y).text for y in range(3))
