"""Trace detail: the span tree with timing bars; enter on a span shows it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree

from oncall.query.cost_marks import format_cost
from oncall.safe_text import safe_text

BAR = 24


def bar(offset: float | None, duration: float | None, total: float) -> str:
    if offset is None or duration is None or total <= 0:
        return " " * BAR
    a = int(BAR * offset / total)
    b = max(1, int(BAR * duration / total))
    return (" " * a + "█" * b).ljust(BAR)[:BAR]


def span_label(s: dict[str, Any], total: float) -> Text:
    t = Text()
    t.append(bar(s.get("offset_ms"), s.get("latency_ms"), total), style="cyan" if s.get("status") != "error" else "red")
    t.append(" ")
    t.append(safe_text(s.get("name"), multiline=False, max_len=50), style="bold" if s.get("focus") else "")
    t.append(f"  {s.get('kind') or ''}", style="dim")
    if s.get("latency_ms") is not None:
        t.append(f"  {s['latency_ms']:.0f} ms", style="dim")
    if s.get("status") == "error":
        t.append(f"  {s.get('error_type') or 'error'}", style="red")
    return t


class TraceScreen(Screen):
    """enter (or r) on an LLM span opens it in the reader; moving the cursor shows any span beside the tree."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "back", id="trace.back"),
        Binding("r", "read", "read span", id="trace.read"),
    ]

    def __init__(self, span_pk: int) -> None:
        super().__init__()
        self.span_pk = span_pk
        self.spans: list[dict[str, Any]] = []
        self.trace_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("loading trace…", style="dim"), id="trace-title")
        with Horizontal():
            tree: Tree[dict[str, Any]] = Tree(Text("trace"), id="tree")
            tree.show_root = False  # the trace is the title; its root spans are the top level
            tree.auto_expand = False  # enter shows a span; it does not fold the tree under the cursor
            yield tree
            with VerticalScroll(id="side"):
                yield Static(Text(""), id="span")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True)
    def load(self) -> None:
        from oncall.query.detail import request_detail

        try:
            d = request_detail(self.app.store.cursor(), self.span_pk)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not load the trace", str(exc))
            return
        self.app.call_from_thread(self._loaded, d)

    def _loaded(self, d: dict[str, Any]) -> None:
        self.spans = d["trace"]
        self.trace_id = d.get("trace_id")
        total = max((((s.get("offset_ms") or 0) + (s.get("latency_ms") or 0)) for s in self.spans), default=0.0)
        title = Text("trace ", style="bold")
        title.append(safe_text(d.get("trace_id"), multiline=False))
        title.append(f"   {len(self.spans)} spans, {total:.0f} ms", style="dim")
        self.query_one("#trace-title", Static).update(title)
        tree = self.query_one(Tree)
        tree.clear()
        tree.root.expand()
        nodes: dict[str, Any] = {}
        focus_node = None
        for s in self.spans:
            parent = nodes.get(s.get("parent_id")) if s.get("depth", 0) > 0 else None
            node = (parent or tree.root).add(span_label(s, total), data=s, expand=True)
            nodes[s["span_id"]] = node
            if s.get("focus"):
                focus_node = node
        tree.focus()
        if focus_node is not None:
            # The node has no line until the tree has been laid out: move the cursor after that.
            self.call_after_refresh(tree.move_cursor, focus_node)
            self.show_span(focus_node.data)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        if event.node.data:
            self.show_span(event.node.data)
            if event.node.data.get("kind") == "llm":
                self.app.open_reader(self._trace_filter(), [int(event.node.data["span_pk"])], 0)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data:
            self.show_span(event.node.data)

    def show_span(self, s: dict[str, Any]) -> None:
        t = Text()
        for k in ("name", "kind", "span_id", "parent_id", "status", "error_type", "model", "served_model",
                  "latency_ms", "offset_ms", "input_tokens", "output_tokens", "cost"):
            v = s.get(k)
            if v is not None:
                t.append(f"{k:<14}", style="bold")
                if k == "cost":
                    v = format_cost(v, s.get("cost_source"))  # "~" = estimated
                t.append(safe_text(f"{v:.1f}" if isinstance(v, float) else v, multiline=False, max_len=100) + "\n")
        if s.get("kind") == "llm":
            t.append("\nenter or r reads this call", style="dim")
        self.query_one("#span", Static).update(t)

    def action_read(self) -> None:
        node = self.query_one(Tree).cursor_node
        if node is not None and node.data:
            self.app.open_reader(self._trace_filter(), [int(node.data["span_pk"])], 0)

    def _trace_filter(self) -> str:
        """What the reader's position line names: this trace, not "(all requests)"."""
        return f"trace={self.trace_id}" if self.trace_id else ""
