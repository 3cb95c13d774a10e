"""Timeline (f6): what happened in the data and what the responder did, in one ordered stream.

The entries are those of `oncall timeline` (oncall/postmortem/timeline.py), built in a thread worker
on a private connection (esc cancels the first build). The list is painted line by line (Line API):
only the rows on screen are formatted, so an incident with thousands of trail events stays fast.
Below it, the entry under the cursor in full, and what `enter` opens for it: the explorer on a data
entry's cohort, the reader on a labelled request, the compare screen of a replay run, an action.

`s` stars the entry for the postmortem (the core's star(), the same table `oncall timeline star`
writes; shown at once, written in a worker), `*` shows the starred entries only, `ctrl+s` writes
what `oncall timeline --json` (with `--starred` when only those are shown) prints. Others' writes —
a label or note from the CLI, another console's star — arrive through data_changed(); the data
entries (the `changes` scan) are computed again only when the requests changed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Static

from oncall.safe_text import safe_text
from oncall.tui.inflight import Inflight, StoreOn, Superseded, is_interrupt
from oncall.tui.live import LiveScreen
from oncall.tui.results import fit_cells
from oncall.tui.textview import RichLinesView

TIME_W, SOURCE_W, KIND_W = 19, 10, 13
KIND_STYLE = {"cause": "bold red", "shift": "yellow", "burst_end": "yellow", "recovery": "bold green",
              "detection": "bold", "action": "bold magenta", "undo": "magenta", "replay": "cyan",
              "replay_label": "cyan", "runbook": "magenta", "label": "", "note": "", "load": "dim"}
SOURCE_STYLE = {"data": "bright_blue", "responder": "green"}


def _one(value: Any, max_len: int | None = None) -> str:
    return safe_text(value, multiline=False, max_len=max_len)


def shown_time(at: str) -> str:
    """`2026-11-24T00:30:08Z` as the screen shows it (the zone is stated once, in the header)."""
    return at.replace("T", " ").replace("Z", "")


def reference(e: Any) -> str:
    """What reproduces the entry, as `oncall timeline` prints it: a filter, a request, a run, an action."""
    ref = e.ref or {}
    if ref.get("filter"):
        return str(ref["filter"])
    if ref.get("request"):
        return str(ref["request"])
    if ref.get("run_id"):
        return f"replay run {ref['run_id']}"
    if ref.get("action_id"):
        return f"action {ref['action_id']}"
    if ref.get("runbook"):
        return f"runbook {ref['runbook']}"
    return ""


def open_target(e: Any) -> tuple[str, Any] | None:
    """What `enter` opens for entry e: ("explorer", filter), ("reader", (span_pk, request id)),
    ("request", request id to look up), ("replay", run_id), ("action", action_id), ("runbook", name)."""
    ref, detail = e.ref or {}, e.detail or {}
    if ref.get("filter"):
        return "explorer", str(ref["filter"])
    pk = detail.get("span_pk") or ref.get("span_pk")
    request = ref.get("request")
    if isinstance(request, int) and not pk:
        pk, request = request, None
    run_id = ref.get("run_id") or (detail.get("run_id") if e.kind in ("replay", "replay_label") else None)
    if run_id:  # a replay (or a verdict on one of its pairs): its compare screen
        return "replay", int(run_id)
    if pk:
        return "reader", (int(pk), detail.get("request") or (request if isinstance(request, str) else None))
    if isinstance(request, str) and request:
        return "request", request
    if ref.get("action_id"):
        return "action", int(ref["action_id"])
    if ref.get("runbook"):
        return "runbook", str(ref["runbook"])
    return None


def target_words(target: tuple[str, Any] | None) -> str:
    if target is None:
        return "nothing to open"
    kind, arg = target
    if kind == "explorer":
        return f"the explorer on {arg}"
    if kind == "reader":
        return f"the reader on request {arg[1] or arg[0]}"
    if kind == "request":
        return f"the reader on request {arg}"
    if kind == "replay":
        return f"replay run {arg} (compare screen)"
    if kind == "action":
        return f"action {arg}"
    return f"runbook {arg}"


def entry_text(e: Any) -> Text:
    """The entry under the cursor in full: when, who, what, the effects of a cause, what enter opens."""
    t = Text()
    t.append("★ starred  " if e.starred else "", style="bold yellow")
    t.append(_one(shown_time(e.at) + " UTC  "), style="bold")
    t.append(_one(e.source), style=SOURCE_STYLE.get(e.source, ""))
    t.append("  ")
    t.append(_one(e.kind), style=KIND_STYLE.get(e.kind, "") or "bold")
    if e.actor and e.source == "responder":
        t.append(_one(f"  by {e.actor}"), style="dim")
    t.append("\n")
    t.append(safe_text(e.summary or "", max_len=4000) + "\n")
    for eff in (e.detail or {}).get("effects") or []:
        t.append("  effect  ", style="dim")
        t.append(_one(eff.get("description") or eff.get("metric"), 300) + "\n")
    ref = reference(e)
    if ref:
        t.append("reproduce  ", style="dim")
        t.append(_one(ref, 500) + "\n")
    t.append("enter      ", style="dim")
    t.append(_one(target_words(open_target(e)), 500) + "\n")
    t.append("key        ", style="dim")
    t.append(_one(e.key, 500), style="dim")
    return t


class TimelineView(ScrollView, can_focus=False):
    """The entries, one row each, painted only where visible; the screen's keys move the cursor."""

    class Moved(Message):
        def __init__(self, cursor: int) -> None:
            super().__init__()
            self.cursor = cursor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entries: list[Any] = []
        self.cursor = 0

    def set_entries(self, entries: list[Any], *, keep_key: str | None = None) -> None:
        """Show `entries`, the cursor on the entry `keep_key` when it is still there (else on the
        same row number, clamped); the scroll position stays unless the cursor left the view."""
        self.entries = entries
        index = next((i for i, e in enumerate(entries) if e.key == keep_key), None) if keep_key else None
        self.cursor = max(0, min(len(entries) - 1, self.cursor if index is None else index))
        self.virtual_size = Size(self.size.width, len(entries))
        self._follow()
        self.refresh()
        self.post_message(self.Moved(self.cursor))

    def current(self) -> Any | None:
        return self.entries[self.cursor] if 0 <= self.cursor < len(self.entries) else None

    def move_to(self, index: int) -> None:
        if not self.entries:
            return
        self.cursor = max(0, min(len(self.entries) - 1, index))
        self._follow()
        self.refresh()
        self.post_message(self.Moved(self.cursor))

    def _follow(self) -> None:
        top, height = self.scroll_offset.y, max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.entries))

    def on_click(self, event: events.Click) -> None:
        self.move_to(self.scroll_offset.y + event.y)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        if index >= len(self.entries):
            return Strip.blank(self.size.width)
        return self.row_strip(index)

    def row_strip(self, index: int) -> Strip:
        """Row `index` as painted: star, time, source, kind, summary (and who, when it fits)."""
        width = self.size.width
        e = self.entries[index]
        segments = [
            Segment("★ " if e.starred else "  ", Style.parse("bold yellow")),
            Segment(fit_cells(shown_time(e.at), TIME_W) + "  "),
            Segment(fit_cells(_one(e.source), SOURCE_W), Style.parse(SOURCE_STYLE.get(e.source, "none"))),
            Segment(fit_cells(_one(e.kind), KIND_W), Style.parse(KIND_STYLE.get(e.kind) or "none")),
        ]
        used = sum(cell_len(s.text) for s in segments)
        rest = max(0, width - used)
        summary = _one(e.summary or "", max(rest, 1) + 8)
        if e.actor and e.source == "responder" and cell_len(summary) < rest:
            summary += _one(f"  ({e.actor})")
        segments.append(Segment(set_cell_size(summary, rest)))
        strip = Strip(segments).adjust_cell_length(width)
        if index == self.cursor:
            strip = strip.apply_style(Style(reverse=True))
        return strip


class TimelineScreen(LiveScreen):
    BINDINGS = [
        Binding("j,down", "move(1)", "down", show=False, id="timeline.down"),
        Binding("k,up", "move(-1)", "up", show=False, id="timeline.up"),
        Binding("pagedown,space", "page(1)", "page down", show=False, id="timeline.page_down"),
        Binding("pageup", "page(-1)", "page up", show=False, id="timeline.page_up"),
        Binding("home", "jump(0)", "first", show=False, id="timeline.first"),
        Binding("end,G", "jump(-1)", "last", show=False, id="timeline.last"),
        Binding("enter", "open", "open", id="timeline.open"),
        Binding("s", "star", "star", id="timeline.star"),
        Binding("asterisk", "starred_only", "starred only", id="timeline.starred_only"),
        Binding("y", "copy", "copy ref", id="timeline.copy"),
        Binding("ctrl+s", "export", "export", id="timeline.export"),
        Binding("f5", "refresh", "refresh", show=False, id="timeline.refresh"),
        Binding("escape", "back", "back", id="timeline.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] | None = None  # every entry; None until the first build lands
        self.starred_only = False
        self._generation = 0
        self._builds = Inflight()
        self._building = False
        self._again = False  # others wrote while a build ran: build once more when it lands
        self._found: list[Any] | None = None  # the changes scan, reused while the requests are the same
        self._sig: Any = None
        self._star_pending: dict[str, bool] = {}  # stars shown but not yet written

    def compose(self) -> ComposeResult:
        yield Static(Text("timeline — building… (esc cancels)", style="dim"), id="timeline-title")
        yield Static(Text(set_cell_size("  " + "time (UTC)", TIME_W + 4) + set_cell_size("source", SOURCE_W)
                          + set_cell_size("kind", KIND_W) + "what happened", style="bold"), id="timeline-header")
        yield TimelineView(id="timeline-list")
        yield RichLinesView(id="timeline-entry")
        yield Footer()

    def on_mount(self) -> None:
        self.rebuild()

    # -- building ----------------------------------------------------------------------------------------
    def rebuild(self, *, full: bool = False) -> None:
        if full:
            self._found = self._sig = None
        self._generation += 1
        self._building = True
        self.build(self._generation, self._found, self._sig)

    def data_changed(self) -> None:
        """Others wrote (app._store_changed): the entries again, cursor and scroll kept. A write during
        a build asks for one more build after it, so a burst of writes cannot starve the screen."""
        if self._building:
            self._again = True
        else:
            self.rebuild()

    def on_screen_resume(self) -> None:
        """Back from the reader (a label made there) or the replay screen: the store reports only
        others' writes, so the entries are read again whenever the screen comes back (the data
        entries are reused: this costs a read of the trail)."""
        self.stale = False
        if self.entries is not None:
            self.data_changed()

    @work(thread=True, group="timeline-build", exit_on_error=False)
    def build(self, generation: int, found: list[Any] | None, sig: Any) -> None:
        from oncall.postmortem.timeline import data_signature, timeline
        from oncall.query.changes import changes

        try:
            with self._builds.connection(self.app.store, generation) as cur:
                now = data_signature(cur)
                if found is None or now != sig:  # new requests (a load): the data entries again
                    found = changes(cur)
                entries = timeline(StoreOn(self.app.store, cur), found=found)
        except Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - shown to the responder, never a crash
            self.app.call_from_thread(self._failed, generation, exc)
            return
        self.app.call_from_thread(self._built, generation, entries, found, now)

    def _failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self._building = False
        if is_interrupt(exc):
            self._title(Text("timeline — cancelled (f5 builds it again)", style="yellow"))
        else:
            self.app.show_error("could not build the timeline", str(exc))
            self._title(Text("timeline — could not be built (f5 tries again)", style="red"))

    def _built(self, generation: int, entries: list[Any], found: list[Any], sig: Any) -> None:
        if generation != self._generation:
            return
        self._building = False
        self._found, self._sig = found, sig
        for e in entries:  # a star just pressed and not yet written stays as the responder set it
            if e.key in self._star_pending:
                e.starred = self._star_pending[e.key]
        view = self.query_one(TimelineView)
        keep = view.current().key if view.current() is not None else None
        self.entries = entries
        self._show(keep)
        if self._again:
            self._again = False
            self.rebuild()

    def _shown(self) -> list[Any]:
        entries = self.entries or []
        return [e for e in entries if e.starred] if self.starred_only else list(entries)

    def _show(self, keep_key: str | None = None) -> None:
        self.query_one(TimelineView).set_entries(self._shown(), keep_key=keep_key)
        self._update()

    def _title(self, text: Text) -> None:
        self.query_one("#timeline-title", Static).update(text)

    def _update(self) -> None:
        """The header line (zone, counts, mode) and the entry under the cursor."""
        view = self.query_one(TimelineView)
        entries = self.entries or []
        starred = sum(1 for e in entries if e.starred)
        t = Text("timeline", style="bold")
        t.append("  all times UTC", style="bold cyan")
        if view.entries:
            t.append(f"  ·  {view.cursor + 1:,} of {len(view.entries):,}", style="bold")
        t.append(f"  ·  {len(entries):,} entries, {starred:,} starred for the postmortem")
        if self.starred_only:
            t.append("  ·  starred only (* shows all)", style="bold yellow")
        if self.app.read_only:
            t.append("  ·  read-only: starring is disabled", style="yellow")
        self._title(t)
        pane = self.query_one("#timeline-entry", RichLinesView)
        e = view.current()
        if e is not None:
            pane.update(entry_text(e))
        elif self.starred_only:
            pane.update(Text("no entry is starred yet: s on an entry stars it for the postmortem (* shows all)",
                             style="dim"))
        else:
            pane.update(Text("nothing on the timeline yet", style="dim"))

    def on_timeline_view_moved(self, event: TimelineView.Moved) -> None:
        self._update()

    # -- keys -----------------------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        view = self.query_one(TimelineView)
        view.move_to(view.cursor + step)

    def action_page(self, direction: int) -> None:
        view = self.query_one(TimelineView)
        view.move_to(view.cursor + direction * max(1, view.size.height - 1))

    def action_jump(self, where: int) -> None:
        view = self.query_one(TimelineView)
        view.move_to(len(view.entries) - 1 if where < 0 else where)

    def action_refresh(self) -> None:
        self._title(Text("timeline — building… (esc cancels)", style="dim"))
        self.rebuild(full=True)

    def action_back(self) -> None:
        """Leave; a build in flight is interrupted (esc cancels the first one) and its answer dropped."""
        self._generation += 1
        self._builds.interrupt_all()
        self.app.pop_screen()

    def action_starred_only(self) -> None:
        view = self.query_one(TimelineView)
        keep = view.current().key if view.current() is not None else None
        self.starred_only = not self.starred_only
        self._show(keep)

    def action_star(self) -> None:
        e = self.query_one(TimelineView).current()
        if e is None or not self.app.guard_action("starring a timeline entry"):
            return
        on = not e.starred
        e.starred = on  # shown at once; written in a worker, undone on screen should the write fail
        self._star_pending[e.key] = on
        self._show(e.key)
        self.app.notify("starred for the postmortem" if on else "unstarred", markup=False, timeout=2)
        self.save_star(e.key, on)

    @work(thread=True, group="timeline-star", exit_on_error=False)
    def save_star(self, key: str, on: bool) -> None:
        from oncall.postmortem.timeline import star

        try:
            star(self.app.store, key, on=on)
        except Exception as exc:  # noqa: BLE001 - shown, and the star taken back on screen
            self.app.call_from_thread(self._star_failed, key, on, str(exc))
            return
        self.app.call_from_thread(self._star_saved, key, on)

    def _star_saved(self, key: str, on: bool) -> None:
        if self._star_pending.get(key) is on:
            del self._star_pending[key]

    def _star_failed(self, key: str, on: bool, message: str) -> None:
        if self._star_pending.get(key) is on and self.is_attached:
            del self._star_pending[key]
            for e in self.entries or []:
                if e.key == key:
                    e.starred = not on
            self._show(self.query_one(TimelineView).current().key if self.query_one(TimelineView).current()
                       else None)
        self.app.show_error("the star was not saved", message)

    def action_open(self) -> None:
        from oncall.query.filters import quote_value

        e = self.query_one(TimelineView).current()
        if e is None:
            return
        target = open_target(e)
        if target is None:
            self.app.notify(_one(f"a {e.kind} entry: nothing to open (it is on the timeline and in the "
                                 "postmortem as it is)"), markup=False)
            return
        kind, arg = target
        if kind == "explorer":
            self.app.open_explorer(arg)
        elif kind == "reader":
            pk, request = arg
            self.app.open_reader(f"request={quote_value(request)}" if request else "", [pk], 0)
        elif kind == "request":
            self.find_request(arg)
        elif kind == "replay":
            self.app.open_replay_run(arg)
        elif kind == "action":
            from oncall.tui.screens.actions import ActionDetailScreen

            self.app.push_screen(ActionDetailScreen(arg))
        elif kind == "runbook":
            self.app.open_runbooks(arg)

    @work(thread=True, group="timeline-find", exit_on_error=False)
    def find_request(self, request: str) -> None:
        """A request known by its id only: its span, then the reader on it."""
        from oncall.query.filters import quote_value
        from oncall.query.ids import resolve_request

        try:
            pk = resolve_request(self.app.store.cursor(), request)
        except Exception as exc:  # noqa: BLE001 - unknown or ambiguous id: said, not raised
            self.app.call_from_thread(self.app.show_error, "cannot open the request", str(exc))
            return
        self.app.call_from_thread(self.app.open_reader, f"request={quote_value(request)}", [int(pk)], 0)

    def action_copy(self) -> None:
        e = self.query_one(TimelineView).current()
        ref = reference(e) if e is not None else ""
        if not ref:
            self.app.notify("this entry has no filter or id to copy", markup=False)
            return
        self.app.copy_to_clipboard(_one(ref))  # safe_text: no escape sequence reaches OSC 52
        self.app.notify(_one(f"copied: {ref}", 200), markup=False)

    # -- export ---------------------------------------------------------------------------------------------
    def action_export(self) -> None:
        from oncall.tui.screens.export import ExportPathModal

        if self.entries is None:
            self.app.notify("the timeline is still being built", markup=False)
            return
        base = Path(self.app.store.path).resolve().parent
        name = "timeline-starred.json" if self.starred_only else "timeline.json"
        what = ("the starred timeline entries (as `oncall timeline --starred --json`)" if self.starred_only
                else "the timeline (as `oncall timeline --json`)")
        shown = [replace(e) for e in self._shown()]  # what is on screen now, whatever lands later

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.write_export(path, shown)

        self.app.push_screen(ExportPathModal(what, base / name, base=base), chosen)

    @work(thread=True, group="timeline-export", exit_on_error=False)
    def write_export(self, path: Path, entries: list[Any]) -> None:
        from oncall.postmortem.timeline import timeline_document
        from oncall.tui.screens.export import write_atomic

        doc = timeline_document(entries)
        try:  # the same bytes as `oncall timeline --json` (emit_json, then click.echo's newline)
            write_atomic(path, json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
        except OSError as exc:
            self.app.call_from_thread(self.app.show_error, "the timeline was not exported", str(exc))
            return
        self.app.call_from_thread(self.app.notify, _one(f"exported {len(entries):,} timeline "
                                                                   f"entr{'y' if len(entries) == 1 else 'ies'} to {path}"),
                                  markup=False)
