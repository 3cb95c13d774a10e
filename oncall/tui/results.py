"""The explorer's results: a Line-API view paged from DuckDB, 100 rows at a time, never the whole table.

Textual's DataTable took ~40 s and froze for 100k rows (design §6); this renders only the visible lines,
fetches the pages they need in a thread worker (its own cursor) and shows "loading" until they land.
A jump to row 900,000 costs one narrow sort in DuckDB (search.page_at), not a scan of the outputs.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from oncall.display import format_cost_cell, list_time, status_text
from oncall.query.ids import request_key
from oncall.safe_text import safe_text
from oncall.tui.inflight import Inflight, Superseded, is_interrupt

PAGE = 100
# (name, width, narrowest): the full row at a wide terminal; cost: ~0.00000373 fits (display.format_cost_cell).
# The time column is TIME_W wide, DAYS_TIME_W when the incident spans days (its times carry the date).
COLUMNS = [("time", 10, 10), ("request", 22, 22), ("tenant", 10, 8), ("feature", 12, 11), ("served model", 20, 17),
           ("status", 10, 7), ("ms", 6, 6), ("cost", 11, 11), ("label", 5, 5)]
TIME_W, DAYS_TIME_W = 10, 14
# A narrow terminal drops these first (the reader and `t` show them), then narrows the rest to their
# narrowest, then the seconds of a dated time: the output keeps the free width, at least OUTPUT_MIN.
DROPPED_FIRST = ("request", "cost", "ms")
OUTPUT_MIN = 24
SORT_KEYS = ["start_time", "latency_ms", "cost", "output_tokens", "tenant", "served_model"]


def layout(width: int, days: bool = False) -> tuple[list[tuple[str, int]], bool]:
    """([(column, cells)], seconds shown?) for a view `width` cells wide: every column while the output
    keeps OUTPUT_MIN cells, else fewer and narrower ones (80 columns keep time, tenant, feature, served
    model, status and label, and the output takes the rest)."""
    time_w = DAYS_TIME_W if days else TIME_W
    cols = [(name, time_w, time_w) if name == "time" else (name, w, lo) for name, w, lo in COLUMNS]

    def room() -> int:
        return width - sum(w + 1 for _, w, _ in cols)

    for name in DROPPED_FIRST:
        if room() >= OUTPUT_MIN:
            break
        cols = [c for c in cols if c[0] != name]
    for i, (name, w, lo) in enumerate(cols):
        if room() >= OUTPUT_MIN:
            break
        cols[i] = (name, max(lo, w - (OUTPUT_MIN - room())), lo)
    seconds = True
    if days and room() < OUTPUT_MIN:  # `11-24 02:59` rather than an output too narrow to read
        cols[0] = ("time", DAYS_TIME_W - 3, 0)
        seconds = False
    return [(name, w) for name, w, _ in cols], seconds


def fit_cells(text: str, width: int) -> str:
    """Exactly `width` terminal cells: padded, or cut with an ellipsis. Cells, not characters: a CJK
    character takes two, so a character count let a row of them run past the column (and the view)."""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + "…"


def format_row(r: dict[str, Any], width: int, days: bool = False) -> str:
    """The row as exactly `width` terminal cells (layout's columns, then as much output as fits)."""
    cols, seconds = layout(width, days)
    cell = {"time": list_time(r.get("start_time"), days, seconds=seconds), "request": request_key(r),
            "tenant": r.get("tenant") or "", "feature": r.get("feature") or "",
            "served model": r.get("served_model") or r.get("model") or "",
            "status": status_text(r.get("status"), r.get("error_type"), short=True),
            "ms": f"{r['latency_ms']:.0f}" if r.get("latency_ms") is not None else "",
            "cost": format_cost_cell(r.get("cost"), r.get("cost_source"), dollar=False),  # "~" = estimated
            "label": (r.get("label") or "") + ("✎" if r.get("has_note") else "")}
    parts = [fit_cells(safe_text(cell[name], multiline=False, max_len=60), w) for name, w in cols]
    line = " ".join(parts) + " "
    rest = width - cell_len(line)
    if rest <= 0:  # narrower than the columns: cut at the edge
        return set_cell_size(line, width)
    return line + set_cell_size(safe_text(r.get("output_preview"), multiline=False, max_len=rest), rest)


SORT_COLUMN = {"start_time": "time", "latency_ms": "ms", "cost": "cost", "tenant": "tenant",
               "served_model": "served model"}
SORT_NAMES = {"start_time": "time", "latency_ms": "latency", "cost": "cost", "output_tokens": "output tokens",
              "tenant": "tenant", "served_model": "served model"}


def header_line(width: int, order_by: str | None = None, descending: bool = True, days: bool = False) -> str:
    """Column names over format_row's cells (same layout, same start column); ▼/▲ marks the sort. The
    time column says its zone: UTC."""
    mark = "▼" if descending else "▲"
    sorted_col = SORT_COLUMN.get(order_by or "")
    cols, _ = layout(width, days)
    names = [("time UTC" if name == "time" else name) + (f" {mark}" if name == sorted_col else "")
             for name, _ in cols]
    line = " ".join(fit_cells(n, w) for n, (_, w) in zip(names, cols, strict=True)) + " output"
    return set_cell_size(line, width) if cell_len(line) > width else line


class ResultsView(ScrollView, can_focus=True):
    """Rows of the current filter; the cursor row is the one `enter` opens."""

    BINDINGS = [
        Binding("j,down,n", "cursor(1)", "down", show=False, id="results.down"),
        Binding("k,up,N", "cursor(-1)", "up", show=False, id="results.up"),
        Binding("pagedown", "cursor(20)", "page down", show=False, id="results.page_down"),
        Binding("pageup", "cursor(-20)", "page up", show=False, id="results.page_up"),
        Binding("home", "jump(0)", "top", id="results.top"),
        Binding("end,G", "jump(-1)", "end", id="results.end"),
        Binding("enter", "open", "read", id="results.open"),
        Binding("o", "sort", "sort", id="results.sort"),
        Binding("O", "reverse", "reverse", show=False, id="results.reverse"),
    ]

    class Opened(Message):
        def __init__(self, row_index: int, span_pk: int) -> None:
            super().__init__()
            self.row_index = row_index
            self.span_pk = span_pk

    class Moved(Message):
        def __init__(self, cursor: int, total: int) -> None:
            super().__init__()
            self.cursor = cursor
            self.total = total

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter_text = ""
        self.total = 0
        self.cursor = 0
        self.order_by = "start_time"
        self.descending = True
        self.days = False  # the incident spans days: times carry their date (display.spans_days)
        self._pages: dict[int, list[dict[str, Any]]] = {}
        self._pending: set[int] = set()
        self._stale: set[int] = set()  # pages shown from before a reload, fetched again
        self._generation = 0  # pages of an older filter or sort are interrupted, and dropped if they land
        self._queries = Inflight()
        # `enter` pressed before the cursor's page landed: (generation, row) to open when it does. A
        # key typed straight after the count shows must not be lost (the count lands before the rows).
        self._open_when_landed: tuple[int, int] | None = None
        # The first page of the filter being applied, fetched beside its count (prefetch): what it is
        # for (number, filter, sort, descending), its rows once landed, and the generation that waits
        # for them (set_filter ran before they landed).
        self._early: tuple[int, str, str, bool] | None = None
        self._early_rows: list[dict[str, Any]] | None = None
        self._early_waiting: int | None = None
        self._early_seq = 0
        self._prefetches = Inflight()

    # -- data --------------------------------------------------------------------------------------
    def set_filter(self, filter_text: str, total: int) -> None:
        self.filter_text = filter_text
        self.total = total
        self.cursor = 0
        self._reset()
        self._take_early()

    def prefetch(self, filter_text: str) -> None:
        """Fetch the first page of a filter about to be applied now, beside its count, not after it:
        set_filter shows it without a second round trip (the rows used to wait for the count, then
        for a repaint to ask for them)."""
        self._early_seq += 1
        self._prefetches.supersede(self._early_seq)
        self._early = (self._early_seq, filter_text, self.order_by, self.descending)
        self._early_rows, self._early_waiting = None, None
        self._fetch_early(self._early_seq, filter_text, self.order_by, self.descending)

    def interrupt_prefetch(self) -> None:
        """esc during a count: the first page fetched beside it is interrupted too (or never starts)."""
        waiting = self._early_waiting
        self._early_seq += 1
        self._prefetches.supersede(self._early_seq)
        self._early, self._early_rows, self._early_waiting = None, None, None
        if waiting is not None and waiting == self._generation:  # the shown filter's page: asked as usual
            self._pending.discard(0)
            self.refresh()

    def _take_early(self) -> None:
        """set_filter: page 0 from the prefetch of this very filter and sort, landed or on its way."""
        early, self._early_waiting = self._early, None
        if early is None or early[1:] != (self.filter_text, self.order_by, self.descending):
            return
        if self._early_rows is not None:
            self._landed(0, self._generation, self._early_rows)
            self._early = self._early_rows = None
        else:
            self._pending.add(0)  # not asked again: the prefetch brings it
            self._early_waiting = self._generation

    @work(thread=True, group="pages")
    def _fetch_early(self, seq: int, flt: str, order_by: str, descending: bool) -> None:
        from oncall.query.search import page_at

        try:
            with self._prefetches.connection(self.app.store, seq) as cur:
                rows = page_at(cur, flt, 0, PAGE, order_by=order_by, descending=descending)
        except Superseded:
            return
        except Exception:  # noqa: BLE001 - a bad filter is the count's to report; the page is asked again
            self.app.call_from_thread(self._early_landed, seq, None)
            return
        self.app.call_from_thread(self._early_landed, seq, rows)

    def _early_landed(self, seq: int, rows: list[dict[str, Any]] | None) -> None:
        if self._early is None or self._early[0] != seq:
            return  # another filter was applied since
        waiting, self._early_waiting = self._early_waiting, None
        if rows is None:  # failed (or interrupted): a waiting view asks for its page as usual
            self._early = None
            if waiting == self._generation:
                self._pending.discard(0)
                self.refresh()
            return
        if waiting is None:
            self._early_rows = rows  # the count has not landed: set_filter takes them
        else:
            self._early = None
            if waiting == self._generation:
                self._landed(0, waiting, rows)

    def update_total(self, total: int, cursor: int | None = None) -> None:
        """The same filter over newer data: its new row count and rows, the cursor kept (clamped), or
        moved to `cursor` (the same request, now elsewhere) with the view scrolled along with it."""
        old = self.cursor
        self.total = total
        self.cursor = max(0, min(self.cursor if cursor is None else cursor, total - 1))
        self.virtual_size = Size(self.size.width, total)
        if self.cursor != old:
            self.scroll_to(y=max(0, self.scroll_offset.y + self.cursor - old), animate=False)
        self.reload()
        self.post_message(self.Moved(self.cursor, self.total))

    def reload(self) -> None:
        """Fetch the shown rows again, keeping the cursor and scroll position (labels and notes made
        in the reader must show here when the responder comes back)."""
        self._generation += 1
        self._queries.supersede(self._generation)
        # The old rows stay on screen until the new ones land (no "loading…" flash every second while
        # live traffic arrives); each shown page is fetched again.
        self._stale = set(self._pages)
        self._pending.clear()
        self.refresh()

    def _reset(self) -> None:
        self._generation += 1
        self._queries.supersede(self._generation)
        self._pages.clear()
        self._stale.clear()
        self._pending.clear()
        self.virtual_size = Size(self.size.width, self.total)
        self.scroll_to(y=0, animate=False)
        self.refresh()
        self.post_message(self.Moved(self.cursor, self.total))

    def row(self, index: int) -> dict[str, Any] | None:
        page = self._pages.get(index // PAGE)
        if page is None or index // PAGE in self._stale:
            self._request(index // PAGE)
        if page is None:
            return None
        i = index % PAGE
        return page[i] if i < len(page) else None

    def cached_span_pks(self, around: int, n: int = 50) -> list[int]:
        """span_pks of up to n loaded rows from `around` on (what the reader walks with j/k)."""
        out = []
        for i in range(around, min(self.total, around + n)):
            r = self.row(i)
            if r is None:
                break
            out.append(int(r["span_pk"]))
        return out

    def _request(self, page: int) -> None:
        if page in self._pending or page < 0:
            return
        self._pending.add(page)
        self._fetch(page, self._generation, self.filter_text, self.order_by, self.descending)

    @work(thread=True, group="pages")
    def _fetch(self, page: int, generation: int, flt: str, order_by: str, descending: bool) -> None:
        from oncall.query.search import page_at

        try:
            with self._queries.connection(self.app.store, generation) as cur:
                rows = page_at(cur, flt, page * PAGE, PAGE, order_by=order_by, descending=descending)
        except Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - shown to the responder, never a crash
            if not is_interrupt(exc):
                self.app.call_from_thread(self._failed, generation, str(exc))
            return
        self.app.call_from_thread(self._landed, page, generation, rows)

    def _failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self.app.show_error("could not load results", message)

    def _landed(self, page: int, generation: int, rows: list[dict[str, Any]]) -> None:
        if generation != self._generation:
            return  # a page of a filter that is no longer shown
        self._pages[page] = rows
        self._pending.discard(page)
        self._stale.discard(page)
        if len(self._pages) > 50:  # bounded memory while scrolling through a million rows
            for k in sorted(self._pages, key=lambda p: abs(p - page), reverse=True)[:10]:
                self._pages.pop(k, None)
        self.refresh()
        if self._open_when_landed == (generation, self.cursor) and self.cursor // PAGE == page:
            self._open_when_landed = None
            self.action_open()

    # -- rendering ---------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        if index >= self.total:
            return Strip.blank(width)
        r = self.row(index)
        text = "  loading…" if r is None else format_row(r, width, self.days)
        style = Style(reverse=True) if index == self.cursor and self.has_focus else (
            Style(bold=True) if index == self.cursor else Style())
        if r is not None and r.get("status") == "error" and index != self.cursor:
            style = Style(color="red")
        return Strip([Segment(set_cell_size(text, width), style)], width)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total)
        self.post_message(self.Moved(self.cursor, self.total))  # the header follows the new layout

    # -- actions -----------------------------------------------------------------------------------
    def _move_to(self, index: int) -> None:
        if not self.total:
            return
        self.cursor = max(0, min(self.total - 1, index))
        top, height = self.scroll_offset.y, max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)
        self.refresh()
        self.post_message(self.Moved(self.cursor, self.total))

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_jump(self, where: int) -> None:
        self._move_to(self.total - 1 if where < 0 else where)

    def action_open(self) -> None:
        r = self.row(self.cursor)
        if r is not None:
            self.post_message(self.Opened(self.cursor, int(r["span_pk"])))
        elif self.cursor < self.total:
            self._open_when_landed = (self._generation, self.cursor)

    def action_sort(self) -> None:
        i = SORT_KEYS.index(self.order_by) if self.order_by in SORT_KEYS else -1
        self.order_by = SORT_KEYS[(i + 1) % len(SORT_KEYS)]
        self.cursor = 0
        self._reset()
        self.app.notify(f"sorted by {self.order_by} ({'descending' if self.descending else 'ascending'})")

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.cursor = 0
        self._reset()
