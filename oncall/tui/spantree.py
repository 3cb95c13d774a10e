"""The trace screen's span tree: a Line-API view over the flat, depth-annotated list trace_tree returns.

Textual's Tree builds its lines recursively and keeps every line's full path (a 10,000-span chain
is past Python's recursion limit and 50 million list entries). This view keeps the spans in the
depth-first order the core already computed, folds a span by skipping the rows after it that are
deeper, and paints only the rows on screen, each cropped to the view's width in terminal cells.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from oncall.query.detail import tree_indent
from oncall.safe_text import safe_text

BAR = 24
INDENT_CAP = 10  # levels indented before the depth is written out: the pane is narrower than a terminal


def bar(offset: float | None, duration: float | None, total: float) -> str:
    if offset is None or duration is None or total <= 0:
        return " " * BAR
    a = int(BAR * offset / total)
    b = max(1, int(BAR * duration / total))
    return (" " * a + "█" * b).ljust(BAR)[:BAR]


def span_line(s: dict[str, Any], total: float, marker: str) -> Text:
    """Timing bar first (every bar in the same column), then the indented name."""
    t = Text(no_wrap=True, overflow="crop")
    t.append(bar(s.get("offset_ms"), s.get("latency_ms"), total), style="cyan" if s.get("status") != "error" else "red")
    t.append(" " + tree_indent(s.get("depth") or 0, cap=INDENT_CAP) + marker)
    t.append(safe_text(s.get("name"), multiline=False, max_len=50), style="bold" if s.get("focus") else "")
    t.append(f"  {s.get('kind') or ''}", style="dim")
    if s.get("latency_ms") is not None:
        t.append(f"  {s['latency_ms']:.0f} ms", style="dim")
    if s.get("status") == "error":
        t.append(f"  {s.get('error_type') or 'error'}", style="red")
    return t


class SpanTreeView(ScrollView, can_focus=True):
    """Spans in tree order; space folds the span under the cursor, enter selects it."""

    BINDINGS = [
        Binding("down,j", "cursor(1)", "down", show=False, id="trace.down"),
        Binding("up,k", "cursor(-1)", "up", show=False, id="trace.up"),
        Binding("pagedown", "page(1)", "page down", show=False, id="trace.page_down"),
        Binding("pageup", "page(-1)", "page up", show=False, id="trace.page_up"),
        Binding("home", "jump(0)", "top", show=False, id="trace.top"),
        Binding("end", "jump(-1)", "end", show=False, id="trace.end"),
        Binding("space", "toggle", "fold", id="trace.fold"),
        Binding("left", "collapse", "fold", show=False, id="trace.collapse"),
        Binding("right", "expand", "unfold", show=False, id="trace.expand"),
        Binding("enter", "select", "select", show=False, id="trace.select"),
    ]

    class Highlighted(Message):
        def __init__(self, span: dict[str, Any]) -> None:
            super().__init__()
            self.span = span

    class Selected(Message):
        def __init__(self, span: dict[str, Any]) -> None:
            super().__init__()
            self.span = span

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spans: list[dict[str, Any]] = []
        self.total_ms = 0.0
        self.collapsed: set[int] = set()
        self.rows: list[int] = []  # indexes into spans of the rows shown (folded subtrees left out)
        self.cursor = 0  # a row of `rows`

    # -- data ------------------------------------------------------------------------------------------
    def set_spans(self, spans: list[dict[str, Any]], total_ms: float) -> None:
        self.spans = spans
        self.total_ms = total_ms
        self.collapsed.clear()
        self._layout()
        focus = next((i for i, s in enumerate(spans) if s.get("focus")), 0)
        self._move_to(focus)
        # The new height is only known after the next layout: scroll the request into view then.
        self.call_after_refresh(self._scroll_to_cursor)

    @property
    def current(self) -> dict[str, Any] | None:
        return self.spans[self.rows[self.cursor]] if self.rows else None

    def has_children(self, i: int) -> bool:
        return i + 1 < len(self.spans) and (self.spans[i + 1].get("depth") or 0) > (self.spans[i].get("depth") or 0)

    def _subtree_end(self, i: int) -> int:
        """The index after the last descendant of span i (descendants follow it, deeper, in tree order)."""
        depth = self.spans[i].get("depth") or 0
        j = i + 1
        while j < len(self.spans) and (self.spans[j].get("depth") or 0) > depth:
            j += 1
        return j

    def _layout(self) -> None:
        rows, i = [], 0
        while i < len(self.spans):
            rows.append(i)
            i = self._subtree_end(i) if i in self.collapsed else i + 1
        self.rows = rows
        self.virtual_size = Size(self.size.width, len(rows))
        self.refresh()

    # -- rendering -------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        width = self.size.width
        if row >= len(self.rows):
            return Strip.blank(width)
        i = self.rows[row]
        marker = ("▸ " if i in self.collapsed else "▾ ") if self.has_children(i) else "  "
        line = span_line(self.spans[i], self.total_ms, marker)
        if row == self.cursor:
            line.stylize(Style(reverse=True) if self.has_focus else Style(bold=True))
        # Cropped and padded in terminal cells, not characters (wide names would overflow otherwise).
        return Strip(line.render(self.app.console)).adjust_cell_length(width)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- actions ---------------------------------------------------------------------------------------
    def _move_to_row(self, row: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, row))
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self.spans[self.rows[self.cursor]]))

    def _scroll_to_cursor(self) -> None:
        top, height = self.scroll_offset.y, max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height // 2, animate=False)  # a jump lands mid-view, with context
        self.refresh()

    def _move_to(self, index: int) -> None:
        """Put the cursor on span `index` (it is visible: set_spans starts with nothing folded)."""
        import bisect

        self._move_to_row(bisect.bisect_left(self.rows, index))

    def action_cursor(self, delta: int) -> None:
        self._move_to_row(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to_row(self.cursor + direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        self._move_to_row(len(self.rows) - 1 if where < 0 else where)

    def action_toggle(self) -> None:
        if self.rows:
            i = self.rows[self.cursor]
            self.action_expand() if i in self.collapsed else self.action_collapse()

    def action_collapse(self) -> None:
        if not self.rows:
            return
        i = self.rows[self.cursor]
        if self.has_children(i) and i not in self.collapsed:
            self.collapsed.add(i)
            self._layout()
            self._move_to(i)
        elif (self.spans[i].get("depth") or 0) > 0:  # on a leaf or a folded span: go to its parent
            depth = self.spans[i]["depth"]
            parent = next((j for j in range(i - 1, -1, -1) if (self.spans[j].get("depth") or 0) < depth), None)
            if parent is not None:
                self._move_to(parent)

    def action_expand(self) -> None:
        if self.rows and self.rows[self.cursor] in self.collapsed:
            i = self.rows[self.cursor]
            self.collapsed.discard(i)
            self._layout()
            self._move_to(i)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self.spans[self.rows[self.cursor]]))
