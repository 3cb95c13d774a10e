"""Trace detail: the span tree with timing bars; enter on a span shows it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from oncall.query.cost_marks import format_cost
from oncall.safe_text import safe_text
from oncall.tui.spantree import SpanTreeView


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
            yield SpanTreeView(id="tree")
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
        title.append(f"   {len(self.spans):,} spans, {total:,.0f} ms", style="dim")
        if d.get("trace_spans", 0) > len(self.spans):
            title.append(f" of {d['trace_spans']:,} (the first by time and this request's ancestors)", style="dim")
        self.query_one("#trace-title", Static).update(title)
        tree = self.query_one(SpanTreeView)
        tree.set_spans(self.spans, total)
        tree.focus()

    def on_span_tree_view_selected(self, event: SpanTreeView.Selected) -> None:
        self.show_span(event.span)
        if event.span.get("kind") == "llm":
            self.app.open_reader(self._trace_filter(), [int(event.span["span_pk"])], 0)

    def on_span_tree_view_highlighted(self, event: SpanTreeView.Highlighted) -> None:
        self.show_span(event.span)

    def show_span(self, s: dict[str, Any]) -> None:
        t = Text()
        for k in ("name", "kind", "span_id", "parent_id", "status", "error_type", "model", "served_model",
                  "latency_ms", "offset_ms", "input_tokens", "output_tokens", "cost"):
            v = s.get(k)
            if v is not None:
                t.append(f"{k:<14}", style="bold")
                shown = (format_cost(v, s.get("cost_source")) if k == "cost"  # "~" = estimated
                         else f"{v:.1f}" if isinstance(v, float) else v)
                t.append(safe_text(shown, multiline=False, max_len=100) + "\n")
        if s.get("kind") == "llm":
            t.append("\nenter or r reads this call", style="dim")
        self.query_one("#span", Static).update(t)

    def action_read(self) -> None:
        span = self.query_one(SpanTreeView).current
        if span is not None:
            self.app.open_reader(self._trace_filter(), [int(span["span_pk"])], 0)

    def _trace_filter(self) -> str:
        """What the reader's position line names: this trace, not "(all requests)"."""
        return f"trace={self.trace_id}" if self.trace_id else ""
