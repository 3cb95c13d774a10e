"""Explorer: the filter bar (design §4 language, with history and completion) over paged results."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Footer, Input, Static

from oncall.display import spans_days
from oncall.query.filters import completions
from oncall.safe_text import safe_text
from oncall.tui.inflight import Inflight, Superseded, is_interrupt
from oncall.tui.live import LiveScreen
from oncall.tui.nextsteps import step_bindings
from oncall.tui.results import ResultsView, header_line

EXPORT_MAX = 10_000  # ctrl+s writes at most this many rows (a page_at of narrow columns, then the previews)


class FilterSuggester(Suggester):
    """The first of the filter language's completions (filters.completions), shown greyed after the cursor."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.values = values

    async def get_suggestion(self, value: str) -> str | None:
        found = completions(value, self.values)
        return found[0] if found else None


class FilterInput(Input):
    """The filter bar: opens with the cursor at the end of the filter shown (typing appends), tab
    completes keys and values, ctrl+u clears, esc gives up the edit (the screen handles it)."""

    BINDINGS = [
        Binding("tab", "complete", "complete", id="filter.complete"),
        Binding("ctrl+u", "clear", "clear", id="filter.clear"),
    ]

    class Completed(Message):
        """Tab found these completions (the first was taken): the screen lists the others."""

        def __init__(self, candidates: list[str]) -> None:
            super().__init__()
            self.candidates = candidates

    def __init__(self, value: str, **kwargs: Any) -> None:
        super().__init__(value, select_on_focus=False, suggester=FilterSuggester({}), **kwargs)

    def set_values(self, values: dict[str, list[str]]) -> None:
        self.suggester = FilterSuggester(values)

    def action_complete(self) -> None:
        values = self.suggester.values if isinstance(self.suggester, FilterSuggester) else {}
        found = completions(self.value, values) if self.cursor_at_end else []
        if found:
            self.value = found[0]
            self.cursor_position = len(self.value)
        self.post_message(self.Completed(found))

    def action_clear(self) -> None:
        self.value = ""


class ExplorerScreen(LiveScreen):
    BINDINGS = [
        Binding("slash", "focus_filter", "filter", id="explorer.filter"),
        Binding("escape", "back", "back", id="explorer.back"),
        Binding("r", "read", "reader (sample)", id="explorer.reader"),
        Binding("t", "trace", "trace", id="explorer.trace"),
        Binding("R", "replay", "replay sample", show=False, id="explorer.replay"),
        *step_bindings("explorer"),
        Binding("ctrl+s", "export", "export", id="explorer.export"),
        Binding("up", "history(-1)", "history", show=False, id="explorer.history_prev"),
        Binding("down", "history(1)", "history", show=False, id="explorer.history_next"),
    ]

    def __init__(self, filter_text: str = "", *, edit: bool = False) -> None:
        super().__init__()
        self.initial = filter_text
        self.edit = edit  # opened by `/`: the filter bar has the focus
        self._applied_once = False
        self._hist_pos = 0
        # Every apply() is a generation: an older count is interrupted and its answer, should it still
        # arrive, is dropped on the UI thread (it once wrote its total over the newer filter's).
        self._generation = 0
        self._counts = Inflight()
        self._notes: list[str] = []  # how since=/until= resolved (UTC), kept beside "N of M"
        self.new_rows = 0  # rows that arrived (live) since the cursor was last on the newest one

    def compose(self) -> ComposeResult:
        yield FilterInput(self.initial, id="filter",
                          placeholder="filter: tenant=acme since=01:00 \"refund\"  (tab completes, enter applies)")
        yield Static(Text("", style="dim"), id="status")
        yield Static(Text(header_line(80), style="bold"), id="header")
        yield ResultsView(id="results")
        yield Footer()

    def on_mount(self) -> None:
        self.apply(self.initial)
        self.load_values()
        if self.edit:
            self.action_focus_filter()
        else:
            self.query_one(ResultsView).focus()

    def on_screen_resume(self) -> None:
        """Back from the reader (or a modal): re-read the visible rows so new labels and notes show."""
        if self.stale:
            super().on_screen_resume()
            return
        view = self.query_one(ResultsView)
        if view.total:
            view.reload()

    def data_changed(self) -> None:
        """Others wrote (app._store_changed): count the shown filter again and re-read its rows, keeping
        the cursor where it is and the focus where it was."""
        if self._counts.busy():
            return  # a count in flight already reads the new data; its answer will show it
        view = self.query_one(ResultsView)
        self._generation += 1
        self._counts.supersede(self._generation)
        # Sorted by time, the request under the cursor is found again after newer rows arrived.
        row = view.row(view.cursor) if view.order_by == "start_time" and view.total else None
        anchor = (row["start_time"], int(row["span_pk"]), view.descending) if row else None
        self.count(view.filter_text, self._generation, refresh=True, anchor=anchor)

    # -- the filter ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#filter")
    def submitted(self, event: Input.Submitted) -> None:
        self.apply(event.value)
        self.query_one(ResultsView).focus()

    def apply(self, text: str) -> None:
        self._generation += 1
        self._counts.supersede(self._generation)
        self.set_status(Text("applying…", style="dim"))
        self.count(text, self._generation)
        self.query_one(ResultsView).prefetch(text)  # its first page, beside the count

    @work(thread=True, group="count")
    def count(self, text: str, generation: int, refresh: bool = False, anchor: tuple | None = None) -> None:
        """Count the filter's rows; every answer goes back tagged with its generation. `anchor` (the
        cursor's start_time, span_pk and direction) asks where that request is now."""
        from oncall.query.filters import FilterError
        from oncall.query.search import count_noted, position_of

        index = None
        try:
            with self._counts.connection(self.app.store, generation) as cur:
                total, notes = count_noted(cur, text)
                if anchor is not None:
                    index = position_of(cur, text, anchor[0], anchor[1], descending=anchor[2])
        except Superseded:
            return
        except FilterError as exc:
            self.app.call_from_thread(self._bad_filter, generation, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown to the responder, never a crash
            self.app.call_from_thread(self._count_failed, generation, exc)
            return
        if refresh:
            self.app.call_from_thread(self._recounted, generation, total, index)
        else:
            self.app.call_from_thread(self._counted, generation, text, total, notes)

    def _current(self, generation: int) -> bool:
        """Is this the answer to the filter applied last? (UI thread: no lock needed.)"""
        return generation == self._generation

    def _count_failed(self, generation: int, exc: Exception) -> None:
        if not self._current(generation):
            return  # interrupted because a newer filter was applied: that one's status stands
        if is_interrupt(exc):
            msg = Text("cancelled", style="yellow")
            if self.query_one(ResultsView).total:
                msg.append("   (below: the previous results)", style="dim")
            self.set_status(msg)
        else:
            self.app.show_error("filter failed", str(exc))

    def _bad_filter(self, generation: int, message: str) -> None:
        """Say what is wrong, keep the bar focused to fix it, and say the rows below are the old ones."""
        if not self._current(generation):
            return
        view = self.query_one(ResultsView)
        msg = Text(safe_text(message, multiline=False), style="red")
        if view.total:
            msg.append("   (below: the previous results)", style="dim")
        self.set_status(msg)
        self.query_one("#filter", Input).focus()

    def _counted(self, generation: int, text: str, total: int, notes: list[str]) -> None:
        if not self._current(generation):
            return  # a superseded filter's answer: never over the newer one's
        self.app.remember_filter(text)
        self._applied_once = True
        self._notes = list(notes)
        self.query_one(ResultsView).set_filter(text, total)
        msg = Text(f"{total:,} requests", style="bold")
        for n in notes:
            msg.append("   " + safe_text(n, multiline=False), style="dim")
        self.set_status(msg)

    def _recounted(self, generation: int, total: int, index: int | None = None) -> None:
        """Newer data: the new count. Sorted by time, the cursor follows the newest row when it was on it
        (the tail: the top descending, the end ascending); else it stays on its request, and the
        status counts the rows that arrived ("N new")."""
        if not self._current(generation):
            return
        view = self.query_one(ResultsView)
        added = total - view.total
        if index is None or view.order_by != "start_time":
            view.update_total(total)
            return
        following = view.cursor == (0 if view.descending else max(0, view.total - 1))
        if following:
            cursor = 0 if view.descending else max(0, total - 1)
        else:
            cursor = index
            self.new_rows += max(0, added)
        view.update_total(total, cursor=cursor)

    def live_changed(self) -> None:
        """The live marker moved: the status line shows it (the same line as \"N of M\")."""
        view = self.query_one(ResultsView)
        if view.total:
            self.post_message(ResultsView.Moved(view.cursor, view.total))

    def set_status(self, text: Text) -> None:
        self.query_one("#status", Static).update(text)

    @on(ResultsView.Moved)
    def moved(self, event: ResultsView.Moved) -> None:
        from oncall.tui.results import SORT_NAMES

        view = self.query_one(ResultsView)
        self.query_one("#header", Static).update(Text(header_line(view.size.width or 80, view.order_by,
                                                                  view.descending, view.days), style="bold"))
        if event.total and event.cursor == (0 if view.descending else event.total - 1):
            self.new_rows = 0  # on the newest row: nothing unseen above it
        if event.total:
            status = (Text(f"{event.cursor + 1:,} of {event.total:,}", style="bold")
                      + Text("   " + safe_text(view.filter_text or "(all requests)", multiline=False), style="dim"))
            if view.order_by != "start_time" or not view.descending:
                status.append(f"   sorted by {SORT_NAMES.get(view.order_by, view.order_by)} "
                              f"({'descending' if view.descending else 'ascending'})", style="dim")
            for n in self._notes:
                status.append("   " + safe_text(n, multiline=False), style="dim")
            if self.new_rows and view.order_by == "start_time":
                status.append(f"   {self.new_rows:,} new {'↑ home' if view.descending else '↓ end'} follows",
                              style="bold green")
            if self.app.live_marker:
                status.append("   " + self.app.live_marker, style="green" if self.app.live_marker[0] == "●" else "dim")
            self.set_status(status)
        elif view.filter_text:
            status = Text("0 requests match", style="yellow")
            for piece in [view.filter_text, *self._notes]:
                status.append("   " + safe_text(piece, multiline=False), style="dim")
            self.set_status(status)

    @work(thread=True, group="values")
    def load_values(self) -> None:
        from oncall.query.overview import completion_values, incident_header

        cur = self.app.store.cursor()
        values = completion_values(cur)
        head = incident_header(cur)
        self.app.call_from_thread(self._set_values, values, spans_days(head.first, head.last))

    def _set_values(self, values: dict[str, list[str]], days: bool) -> None:
        self.query_one("#filter", FilterInput).set_values(values)
        view = self.query_one(ResultsView)
        if view.days != days:
            view.days = days
            view.refresh()
            self.post_message(ResultsView.Moved(view.cursor, view.total))

    @on(FilterInput.Completed)
    def completed(self, event: FilterInput.Completed) -> None:
        """Tab took the first completion; the status line names the others (or that there is none)."""
        if not event.candidates:
            self.set_status(Text("nothing to complete here (keys: tenant, served_model, status, latency_ms>…; "
                                 "a key= then tab offers its values)", style="dim"))
            return
        box = self.query_one("#filter", FilterInput)
        head = box.value[: len(box.value) - len(box.value.rpartition(" ")[2])]
        others = [c[len(head):] for c in event.candidates[1:9]]
        if others:
            more = f" (+{len(event.candidates) - 9} more)" if len(event.candidates) > 9 else ""
            self.set_status(Text("also: " + "  ".join(safe_text(o, multiline=False) for o in others) + more,
                                 style="dim"))

    # -- actions -------------------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        """`/`: edit the filter shown, the cursor at its end (typing appends; ctrl+u clears)."""
        box = self.query_one("#filter", FilterInput)
        # Now, not after a refresh (Widget.focus): keys typed straight after `/` go to the bar.
        self.set_focus(box)
        box.cursor_position = len(box.value)

    def action_history(self, step: int) -> None:
        box = self.query_one("#filter", Input)
        if not box.has_focus or not self.app.filter_history:
            return
        self._hist_pos = max(-len(self.app.filter_history), min(-1, self._hist_pos + (-1 if step < 0 else 1)))
        box.value = self.app.filter_history[self._hist_pos]
        box.cursor_position = len(box.value)

    def action_back(self) -> None:
        box = self.query_one("#filter", FilterInput)
        if box.has_focus:  # esc gives up the edit: the bar shows the filter the rows are for again
            box.value = self.query_one(ResultsView).filter_text if self._applied_once else self.initial
            self.query_one(ResultsView).focus()
            return
        if self._counts.interrupt_all():  # long work can be cancelled: esc interrupts the count in flight
            self.query_one(ResultsView).interrupt_prefetch()  # and the first page fetched beside it
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    @on(ResultsView.Opened)
    def opened(self, event: ResultsView.Opened) -> None:
        view = self.query_one(ResultsView)
        pks = view.cached_span_pks(event.row_index, 50)
        self.app.open_reader(view.filter_text, pks or [event.span_pk], 0)

    def action_read(self) -> None:
        self.app.open_reader(self.query_one(ResultsView).filter_text, None, 0)

    def action_replay(self) -> None:
        self.app.open_replay(self.query_one(ResultsView).filter_text)

    def action_next_steps(self) -> None:
        """The next steps of the cause the filter is about (its cohort, or a narrower one)."""
        self.app.open_next_steps(self.app.cause_for(self.query_one(ResultsView).filter_text))

    def action_take_step(self, index: int) -> None:
        self.app.open_next_steps(self.app.cause_for(self.query_one(ResultsView).filter_text), index)

    def action_trace(self) -> None:
        view = self.query_one(ResultsView)
        r = view.row(view.cursor)
        if r is not None:
            self.app.open_trace(int(r["span_pk"]))

    def action_export(self) -> None:
        view = self.query_one(ResultsView)
        self.export(view.filter_text, view.total, view.order_by, view.descending)

    @work(thread=True, group="export")
    def export(self, flt: str, total: int = 0, order_by: str = "start_time", descending: bool = True) -> None:
        import datetime as dt
        import json
        from pathlib import Path

        from oncall.config import ConfigError, redact_patterns
        from oncall.query.search import page_at
        from oncall.redact import redact_export_value

        try:
            extra = redact_patterns()  # checked before anything is written
        except ConfigError as exc:
            self.app.call_from_thread(self.app.show_error, "nothing exported", str(exc))
            return
        path = Path.cwd() / f"oncall-export-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.jsonl"
        rows: list[dict[str, Any]] = page_at(self.app.store.cursor(), flt, 0, EXPORT_MAX, order_by=order_by,
                                             descending=descending)  # in the order on screen
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(redact_export_value(r, extra), default=str, ensure_ascii=False) + "\n")
        what = (f"the first {len(rows):,} of {total:,} requests (the cap; `oncall search --json --limit N` "
                "takes more)") if total > len(rows) else f"{len(rows):,} requests"
        self.app.call_from_thread(self.app.notify, safe_text(f"exported {what} to {path}", multiline=False),
                                  markup=False)
