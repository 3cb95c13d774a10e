"""The timeline (f6): what happened in the data and what the responder did, in one ordered stream.

Built by the core (oncall/postmortem/timeline.py, the same as `oncall timeline`) in a thread worker.
The list paints only the rows on screen (Line API), so a long incident stays fast. `enter` opens
what reproduces an entry: a filter in the explorer, a label's or a note's request in the reader, a
replay run in the compare screen, an action in the audit, a runbook in the runbook list. `s` stars
an entry for the postmortem (refused read-only), `*` shows only the starred, `ctrl+s` exports the
timeline as `oncall timeline --json` prints it. Others' writes (a label from the CLI) appear by
themselves (data_changed), the cursor staying on the entry it was on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Static

from oncall.safe_text import safe_text

HEADER = "  " + "time (UTC)".ljust(21) + "source".ljust(10) + "kind".ljust(11) + "summary (who)"
KIND_STYLE = {"cause": "bold red", "shift": "red", "burst_end": "yellow", "recovery": "bold green",
              "detection": "bold magenta", "label": "cyan", "note": "yellow", "replay": "blue", "runbook": "blue",
              "action": "bold blue", "undo": "bold yellow", "load": "dim"}


def _one(value: Any, max_len: int | None = None) -> str:
    return safe_text(value, multiline=False, max_len=max_len)


def when(at: str) -> str:
    """'2026-11-24T00:30:08Z' -> '2026-11-24 00:30:08' (the header says UTC)."""
    return (at or "").replace("T", " ").replace("Z", "")[:19]


def target_of(e: Any) -> tuple[str, str]:
    """(where enter goes, what it opens) for an entry; ('', reason) when nothing reproduces it."""
    ref = e.ref or {}
    if ref.get("filter"):
        return "explorer", str(ref["filter"])
    if ref.get("request") is not None or ref.get("span_pk") is not None:
        return "reader", str(ref.get("request") if ref.get("request") is not None else ref.get("span_pk"))
    if ref.get("run_id") is not None:
        return "replay", f"replay run {ref['run_id']}"
    if ref.get("action_id") is not None:
        return "actions", f"action {ref['action_id']}"
    if ref.get("runbook"):
        return "runbooks", str(ref["runbook"])
    return "", "nothing to open for this entry"


def entry_segments(e: Any, width: int, *, cursor: bool, focused: bool) -> list[Segment]:
    """One row as segments exactly `width` cells wide: star, time, source, kind, summary (actor)."""
    base = Style(reverse=True) if cursor and focused else Style(bold=True) if cursor else Style()
    star = Segment("★ " if e.starred else "  ", base + Style(color="yellow", bold=True))
    cells = [star,
             Segment(when(e.at).ljust(19) + "  ", base),
             Segment(set_cell_size(_one(e.source), 9) + " ", base + Style(color="cyan" if e.source == "data" else
                                                                           "magenta")),
             Segment(set_cell_size(_one(e.kind), 10) + " ", base + Style.parse(KIND_STYLE.get(e.kind, "")))]
    used = sum(cell_len(s.text) for s in cells)
    rest = max(0, width - used)
    summary = _one(e.summary, max(rest, 1) + 2)
    who = f"  ({_one(e.actor, 40)})" if e.actor and e.source == "responder" else ""
    line = summary + who
    if cell_len(line) > rest:
        line = set_cell_size(line, max(0, rest - 1)) + "…" if rest else ""
    cells.append(Segment(set_cell_size(line, rest), base))
    return cells


class TimelineView(ScrollView, can_focus=True):
    """The entries; the cursor row is the one enter opens and s stars."""

    BINDINGS = [
        Binding("j,down", "cursor(1)", "down", show=False, id="timeline.down"),
        Binding("k,up", "cursor(-1)", "up", show=False, id="timeline.up"),
        Binding("pagedown", "page(1)", "page down", show=False, id="timeline.page_down"),
        Binding("pageup", "page(-1)", "page up", show=False, id="timeline.page_up"),
        Binding("home", "jump(0)", "top", show=False, id="timeline.top"),
        Binding("end,G", "jump(-1)", "end", show=False, id="timeline.end"),
        Binding("enter", "open", "open", id="timeline.open"),
    ]

    class Moved(Message):
        pass

    class Opened(Message):
        def __init__(self, entry: Any) -> None:
            super().__init__()
            self.entry = entry

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: list[Any] = []
        self.cursor = 0

    def set_entries(self, entries: list[Any], keep_key: str | None = None) -> None:
        """Show `entries`, the cursor on `keep_key` if it is still there (else where it was, clamped);
        the scroll position stays where the responder left it."""
        self.entries = entries
        if keep_key is not None:
            for i, e in enumerate(entries):
                if e.key == keep_key:
                    self.cursor = i
                    break
        self.cursor = max(0, min(self.cursor, len(entries) - 1))
        self.virtual_size = Size(self.size.width, len(entries))
        self._show_cursor()
        self.refresh()
        self.post_message(self.Moved())

    def current(self) -> Any:
        return self.entries[self.cursor] if self.entries and self.cursor < len(self.entries) else None

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        if index >= len(self.entries):
            return Strip.blank(width)
        segs = entry_segments(self.entries[index], width, cursor=index == self.cursor, focused=self.has_focus)
        return Strip(segs).adjust_cell_length(width)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.entries))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def _show_cursor(self) -> None:
        top, height = self.scroll_offset.y, max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def _move_to(self, index: int) -> None:
        if not self.entries:
            return
        self.cursor = max(0, min(len(self.entries) - 1, index))
        self._show_cursor()
        self.refresh()
        self.post_message(self.Moved())

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        self._move_to(len(self.entries) - 1 if where < 0 else where)

    def action_open(self) -> None:
        e = self.current()
        if e is not None:
            self.post_message(self.Opened(e))


class TimelineScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "back", id="timeline.back"),
        Binding("s", "star", "star", id="timeline.star"),
        Binding("asterisk", "starred_only", "starred only", id="timeline.starred_only"),
        Binding("ctrl+s", "export", "export JSON", id="timeline.export"),
        Binding("f5", "refresh", "refresh", id="timeline.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] = []  # every entry, oldest first
        self.starred_only = False
        self.stale = False
        self.loaded = False
        self._generation = 0

    def compose(self) -> ComposeResult:
        yield Static(Text("timeline — loading…", style="bold"), id="timeline-title")
        yield Static(Text(HEADER, style="bold"), id="timeline-header")
        yield TimelineView(id="timeline-list")
        yield Static(Text(""), id="timeline-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TimelineView).focus()
        self.load()

    # -- loading -----------------------------------------------------------------------------------------
    def data_changed(self) -> None:
        """Others wrote (a label from the CLI, a star from another console): the stream again, the
        cursor on the entry it was on."""
        self.stale = False
        self.load()

    def on_screen_resume(self) -> None:
        if self.stale:
            self.data_changed()

    def action_refresh(self) -> None:
        self.load()

    def load(self) -> None:
        self._generation += 1
        self._load(self._generation)

    @work(thread=True, group="timeline-load", exit_on_error=False)
    def _load(self, generation: int) -> None:
        from oncall.postmortem.timeline import timeline

        try:
            entries = timeline(self.app.store)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            self.app.call_from_thread(self._failed, generation, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._loaded, generation, entries)

    def _failed(self, generation: int, message: str) -> None:
        if generation == self._generation and self.is_mounted:
            self.query_one("#timeline-title", Static).update(
                Text(_one(f"cannot build the timeline: {message}", 300), style="red"))

    def _loaded(self, generation: int, entries: list[Any]) -> None:
        if generation != self._generation or not self.is_mounted:
            return  # an older build landing after a newer one was asked for
        self.entries = entries
        self.loaded = True
        self._show()

    def shown(self) -> list[Any]:
        return [e for e in self.entries if e.starred] if self.starred_only else list(self.entries)

    def _show(self) -> None:
        view = self.query_one(TimelineView)
        cur = view.current()
        view.set_entries(self.shown(), keep_key=cur.key if cur is not None else None)
        self._title()

    def _title(self) -> None:
        n, stars = len(self.entries), sum(1 for e in self.entries if e.starred)
        t = Text("timeline", style="bold")
        t.append(" — all times UTC · ", style="bold")
        t.append(f"{n} entries, {stars} starred")
        if self.starred_only:
            t.append("  [showing starred only: * shows all]", style="bold yellow")
        t.append("  ·  enter opens · s stars · * starred only · ctrl+s exports", style="dim")
        self.query_one("#timeline-title", Static).update(t)

    def on_timeline_view_moved(self, _: TimelineView.Moved) -> None:
        self._detail()

    def _detail(self) -> None:
        e = self.query_one(TimelineView).current()
        detail = self.query_one("#timeline-detail", Static)
        if e is None:
            detail.update(Text("no starred entries: s on an entry stars it (* shows all)" if self.starred_only
                               and self.loaded else "nothing on the timeline" if self.loaded else "", style="dim"))
            return
        where, what = target_of(e)
        t = Text()
        t.append("summary  ", style="bold")
        t.append(_one(e.summary, 400) + "\n")
        t.append("enter    ", style="bold")
        if where:
            t.append(f"{where}: ", style="cyan")
            t.append(_one(what, 300))
        else:
            t.append(what, style="dim")
        t.append("\nkey      ", style="bold")
        t.append(_one(e.key, 300), style="dim")
        detail.update(t)

    def plain(self) -> str:
        """The rows as shown (for tests): one line per entry."""
        view = self.query_one(TimelineView)
        return "\n".join("".join(s.text for s in entry_segments(e, 200, cursor=False, focused=False)).rstrip()
                         for e in view.entries)

    # -- enter -------------------------------------------------------------------------------------------
    def on_timeline_view_opened(self, event: TimelineView.Opened) -> None:
        e = event.entry
        where, what = target_of(e)
        ref = e.ref or {}
        if where == "explorer":
            self.app.open_explorer(str(ref["filter"]))
        elif where == "reader":
            self._open_request(ref, e.detail or {})
        elif where == "replay":
            self.app.open_replay_run(int(ref["run_id"]))
        elif where == "actions":
            self.app.open_actions()
        elif where == "runbooks":
            self.app.open_runbooks(str(ref["runbook"]))
        else:
            self.app.notify(what, markup=False)

    @work(thread=True, group="timeline-open", exit_on_error=False)
    def _open_request(self, ref: dict[str, Any], detail: dict[str, Any]) -> None:
        """A label's request key (or a note's span_pk) → the reader on that request."""
        from oncall.query.filters import quote_value

        cur = self.app.store.cursor()
        req = ref.get("request")
        pk = ref.get("span_pk") if ref.get("span_pk") is not None else detail.get("span_pk")
        try:
            if isinstance(req, int):
                pk = req
            elif pk is None and req is not None:
                row = cur.execute("SELECT span_pk FROM spans WHERE request_id = ? OR response_id = ? OR span_id = ? "
                                  "ORDER BY start_time LIMIT 1", [str(req)] * 3).fetchone()
                pk = row[0] if row else None
            row = cur.execute("SELECT span_pk, request_id FROM spans WHERE span_pk = ?", [int(pk)]).fetchone() \
                if pk is not None else None
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "cannot find the request", f"{type(exc).__name__}: {exc}")
            return
        if row is None:
            self.app.call_from_thread(self.app.notify, _one(f"request {req or pk} is not in this incident"),
                                      severity="warning", markup=False)
            return
        flt = f"request={quote_value(str(row[1]))}" if row[1] else ""
        self.app.call_from_thread(self.app.open_reader, flt, [int(row[0])], 0)

    # -- stars -------------------------------------------------------------------------------------------
    def action_star(self) -> None:
        view = self.query_one(TimelineView)
        e = view.current()
        if e is None or not self.app.guard_action("starring a timeline entry"):
            return
        on = not e.starred
        e.starred = on  # shown at once; the write follows in a worker (undone if it fails)
        view.refresh()
        self._title()
        self._star(e, on)

    @work(thread=True, group="timeline-star", exit_on_error=False)
    def _star(self, e: Any, on: bool) -> None:
        from oncall.postmortem.timeline import star

        try:
            star(self.app.store, e.key, on=on)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self._star_failed, e, on, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self.app.notify, ("starred" if on else "unstarred") + " for the postmortem: "
                                  + _one(e.summary, 80), markup=False, timeout=3)

    def _star_failed(self, e: Any, on: bool, message: str) -> None:
        e.starred = not on
        if self.is_mounted:
            self.query_one(TimelineView).refresh()
            self._title()
        self.app.show_error("could not star the entry", message)

    def action_starred_only(self) -> None:
        self.starred_only = not self.starred_only
        self._show()

    # -- export ------------------------------------------------------------------------------------------
    def action_export(self) -> None:
        from oncall.tui.screens.export import ExportModal

        entries = self.shown()
        what = (f"the {len(entries)} starred entries (as `oncall timeline --starred --json`)" if self.starred_only
                else f"the timeline, {len(entries)} entries (as `oncall timeline --json`)")

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._export(path, entries)

        self.app.push_screen(ExportModal(what, "timeline.json"), chosen)

    @work(thread=True, group="timeline-export", exit_on_error=False)
    def _export(self, path: Path, entries: list[Any]) -> None:
        from oncall.tui.screens.export import write_text

        text = json.dumps({"zone": "UTC", "entries": [e.to_dict() for e in entries]}, indent=2, default=str,
                          ensure_ascii=False) + "\n"
        try:
            write_text(path, text)
        except OSError as exc:
            self.app.call_from_thread(self.app.show_error, f"cannot write {path}", str(exc))
            return
        self.app.call_from_thread(self.app.notify, _one(f"timeline written to {path} ({len(entries)} entries)"),
                                  markup=False)

    def action_back(self) -> None:
        self.app.pop_screen()
