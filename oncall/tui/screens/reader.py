"""Reader: one output per screen, full text, with the conversation and metadata beside it.

j/k walk the current filtered sample (the rows the explorer showed, or a fresh sample of 50 of the
filter), not the whole table. g/b label, n note, w wrap, y copy, p opens the output in $PAGER.
Details are loaded in a thread and the neighbours are prefetched, so next/previous is instant.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from oncall.config import ConfigError
from oncall.display import document_lines, request_fields, retrieval_header, time_text
from oncall.redact import redact_export, redact_text
from oncall.safe_text import safe_text
from oncall.tui.live import LiveScreen
from oncall.tui.nextsteps import step_bindings
from oncall.tui.textview import OutputView, RichLinesView

SAMPLE_SIZE = 50


def meta_text(d: dict[str, Any]) -> Text:
    t = Text()

    for k, v in request_fields(d, source_path=False):  # the same fields, in the same words, as `oncall show`
        t.append(f"{k:<13}", style="bold")
        t.append(safe_text(v, multiline=False, max_len=120) + "\n")
    labels = d.get("labels") or []
    for i, lab in enumerate(reversed(labels)):  # the latest verdict is the one that counts: first, in colour
        at = time_text(lab.get("at"), date=False, seconds=False)
        text = f"{lab['label']} by {lab['author']} at {at}" + (f": {lab['note']}" if lab.get("note") else "")
        t.append("label        " if i == 0 else "  earlier    ", style="bold" if i == 0 else "dim")
        t.append(safe_text(text, multiline=False, max_len=300) + "\n",
                 style=("green" if lab["label"] == "good" else "red") if i == 0 else "dim")
    for note in d.get("notes") or []:
        t.append("note         ", style="bold")
        t.append(safe_text(f"{note['author']}: {note['text']}", multiline=False, max_len=300) + "\n", style="yellow")
    return t


def documents_text(d: dict[str, Any]) -> Text:
    """The documents the call was given (its retrieval), beside its output: rank, score, source, id,
    an excerpt. Retrieved text is untrusted (anyone who can edit a help article wrote it): safe_text."""
    header = retrieval_header(d)
    t = Text()
    if header is None:
        return t
    t.append("documents given  ", style="bold")
    t.append(safe_text(header, multiline=False, max_len=200) + "\n",
             style="bold red" if d.get("retrieved") == 0 else "")
    if d.get("retrieval_query"):
        t.append("  query ", style="dim")
        t.append(safe_text(d["retrieval_query"], multiline=False, max_len=200) + "\n")
    for head, excerpt in document_lines(d.get("retrieved_docs")):
        t.append("  " + safe_text(head, multiline=False, max_len=160) + "\n", style="cyan")
        if excerpt:
            t.append("    " + safe_text(excerpt, multiline=False, max_len=400) + "\n")
    return t


def conversation_text(d: dict[str, Any]) -> Text:
    t = Text()
    for m in d.get("input_messages") or []:
        t.append(f"[{safe_text(m.get('role'), multiline=False)}] ", style="bold cyan")
        t.append(safe_text(m.get("content") or "", max_len=4000) + "\n")
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function") or {}
            t.append("  → " + safe_text(f"{fn.get('name')}({fn.get('arguments')})", max_len=500) + "\n",
                     style="yellow")
    for tc in d.get("tool_calls") or []:
        t.append("tool call → ", style="bold yellow")
        t.append(safe_text(f"{tc.get('name')}({tc.get('arguments')})", max_len=1000) + "\n")
    meta = d.get("attributes") or {}
    shown = [k for k in sorted(meta) if not k.startswith(("gen_ai.input", "gen_ai.output", "llm.input_messages",
                                                          "llm.output_messages"))][:60]
    if shown:
        t.append("\nmetadata\n", style="bold")
        for k in shown:
            v = meta[k]
            t.append(safe_text(k, multiline=False, max_len=60), style="dim")
            t.append(" = " + safe_text(v if isinstance(v, str) else json.dumps(v), multiline=False, max_len=200) + "\n")
    return t


def output_of(d: dict[str, Any]) -> str:
    msgs = d.get("output_messages") or []
    text = "\n\n".join(m.get("content") or "" for m in msgs if m.get("content")) or d.get("output_text") or ""
    if not text and d.get("status") == "error":
        text = f"(error) {d.get('error') or d.get('error_type') or ''}"
    return safe_text(text)


class ReaderScreen(LiveScreen):
    BINDINGS = [
        # j/k only: the arrows, space and page keys scroll a long output (the focused OutputView).
        Binding("j", "move(1)", "next", id="reader.next"),
        Binding("k", "move(-1)", "previous", id="reader.previous"),
        Binding("g", "label('good')", "good", id="reader.good"),
        Binding("b", "label('bad')", "bad", id="reader.bad"),
        Binding("n", "note", "note", id="reader.note"),
        Binding("w", "wrap", "wrap", id="reader.wrap"),
        Binding("y", "copy", "copy", id="reader.copy"),
        Binding("p", "pager", "pager", id="reader.pager"),
        Binding("t", "trace", "trace", id="reader.trace"),
        Binding("R", "replay", "replay", show=False, id="reader.replay"),
        *step_bindings("reader"),
        Binding("escape", "app.pop_screen", "back", id="reader.back"),
    ]

    def __init__(self, filter_text: str = "", span_pks: list[int] | None = None, start: int = 0) -> None:
        super().__init__()
        self.filter_text = filter_text
        self.span_pks = span_pks
        self.index = start
        self.cache: dict[int, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("loading…", style="dim"), id="position")
        with Horizontal():
            yield OutputView(id="output")
            yield RichLinesView(id="side")
        yield Footer()

    def on_mount(self) -> None:
        if self.span_pks is None:
            self.draw_sample()
        else:
            self.show()

    @work(thread=True, group="sample")
    def draw_sample(self) -> None:
        from oncall.query.sample import sample

        try:
            rows = sample(self.app.store.cursor(), self.filter_text, SAMPLE_SIZE)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not sample", str(exc))
            return
        self.app.call_from_thread(self._sampled, [int(r["span_pk"]) for r in rows])

    def _sampled(self, pks: list[int]) -> None:
        self.span_pks = pks
        self.index = 0
        self.show()

    # -- loading -----------------------------------------------------------------------------------------
    def show(self) -> None:
        if not self.span_pks:
            self.query_one("#position", Static).update(Text("no requests match this filter", style="yellow"))
            return
        pk = self.span_pks[self.index]
        if pk in self.cache:
            self.render_detail(self.cache[pk])
        else:
            # Until it lands, g/b/n/y/t have no request: they must not act on the one still on screen.
            self.current = None
            self.query_one("#position", Static).update(Text("loading…", style="dim"))
        self.load({pk} | {self.span_pks[i] for i in (self.index - 1, self.index + 1, self.index + 2)
                          if 0 <= i < len(self.span_pks)} - set(self.cache))

    @work(thread=True, group="detail")
    def load(self, pks: set[int]) -> None:
        from oncall.query.detail import request_detail

        cur = self.app.store.cursor()
        for pk in pks:
            try:
                d = request_detail(cur, pk)
            except Exception as exc:  # noqa: BLE001
                self.app.call_from_thread(self.app.show_error, "could not load the request", str(exc))
                return
            self.app.call_from_thread(self._loaded, pk, d)

    def _loaded(self, pk: int, d: dict[str, Any]) -> None:
        self.cache[pk] = d
        if self.span_pks and self.span_pks[self.index] == pk:
            self.render_detail(d, keep_scroll=self.current is not None and int(self.current["span_pk"]) == pk)

    def data_changed(self) -> None:
        """Others wrote (app._store_changed): labels and notes again, for the request on screen first;
        the output stays scrolled where it was."""
        self.cache.clear()  # the prefetched neighbours' labels may be stale too
        if self.span_pks:
            self.load({self.span_pks[self.index]})

    def render_detail(self, d: dict[str, Any], *, keep_scroll: bool = False) -> None:
        """Show request d; keep_scroll: the same request redrawn (a label landed), nothing moves."""
        same_output = keep_scroll and self.current is not None and output_of(self.current) == output_of(d)
        self.current = d
        pos = Text(f"{self.index + 1}/{len(self.span_pks or [])}  ", style="bold")
        pos.append(safe_text(self.filter_text or "(all requests)", multiline=False, max_len=100), style="dim")
        if self.app.read_only:
            pos.append("   read-only", style="bold yellow")
        self.query_one("#position", Static).update(pos)
        if not same_output:
            self.query_one("#output", OutputView).load_text(output_of(d))
        docs = documents_text(d)
        side = meta_text(d) + Text("\n") + (docs + Text("\n") if docs else Text()) + conversation_text(d)
        self.query_one("#side", RichLinesView).update(side, keep_scroll=keep_scroll)

    # -- actions -----------------------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        if not self.span_pks:
            return
        new = max(0, min(len(self.span_pks) - 1, self.index + step))
        if new != self.index:
            self.index = new
            self.show()

    def action_label(self, verdict: str) -> None:
        if self.current is None or not self.app.guard_action(f"label {verdict}"):
            return
        # Which request is decided here, on the UI thread, when the key is pressed: the worker runs
        # later, when a quick j may already have moved self.current to the next request.
        self.save_label(int(self.current["span_pk"]), self.current.get("request_id"), verdict, None)

    def action_note(self) -> None:
        if self.current is None or not self.app.guard_action("note"):
            return
        from oncall.tui.screens.modals import NoteModal

        pk = int(self.current["span_pk"])

        def done(text: str | None) -> None:
            if text:
                self.save_note(pk, text)

        self.app.push_screen(NoteModal(), done)

    @work(thread=True, group="label")
    def save_note(self, pk: int, text: str) -> None:
        from oncall.query.detail import request_detail
        from oncall.query.labels import add_note

        try:
            add_note(self.app.store, redact_text(text) or "", span_pk=pk)
            d = request_detail(self.app.store.cursor(), pk)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not save the note", str(exc))
            return
        self.app.call_from_thread(self._labelled, pk, d, "noted")

    @work(thread=True, group="label")
    def save_label(self, pk: int, key: str | None, verdict: str, note: str | None) -> None:
        """Label span `pk` (request id `key`); never reads the screen's state (it is on another thread)."""
        from oncall.query.detail import request_detail
        from oncall.query.labels import add_label

        try:
            add_label(self.app.store, pk, verdict, redact_text(note))
            d = request_detail(self.app.store.cursor(), pk)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not save the label", str(exc))
            return
        self.app.call_from_thread(self._labelled, pk, d, verdict)

    def _labelled(self, pk: int, d: dict[str, Any], verdict: str) -> None:
        self.cache[pk] = d
        if self.current and int(self.current["span_pk"]) == pk:
            self.render_detail(d, keep_scroll=True)
        self.app.notify("note saved" if verdict == "noted" else f"labelled {verdict}")

    def action_wrap(self) -> None:
        view = self.query_one("#output", OutputView)
        view.set_wrap(not view.wrap)

    def action_copy(self) -> None:
        if self.current is not None:
            try:
                # safe_text: no escapes reach OSC 52; redact_export: no secret or PII leaves the process
                text = redact_export(output_of(self.current)) or ""
            except ConfigError as exc:
                self.app.show_error("nothing copied", str(exc))
                return
            self.app.copy_to_clipboard(text)
            self.app.notify("output copied")

    def action_pager(self) -> None:
        if self.current is None:
            return
        pager = os.environ.get("PAGER") or "less"
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
            fh.write(output_of(self.current))
            path = fh.name
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(pager), path], check=False)
        except Exception as exc:  # noqa: BLE001 - e.g. no terminal to suspend to in tests
            self.app.notify(f"cannot open the pager: {exc}", severity="warning", markup=False)
        finally:
            os.unlink(path)

    def action_trace(self) -> None:
        if self.current is not None:
            self.app.open_trace(int(self.current["span_pk"]))

    def action_next_steps(self) -> None:
        """The next steps of the cause this sample is drawn from."""
        self.app.open_next_steps(self.app.cause_for(self.filter_text))

    def action_take_step(self, index: int) -> None:
        self.app.open_next_steps(self.app.cause_for(self.filter_text), index)

    def action_replay(self) -> None:
        if self.current is not None:
            self.app.open_replay(self.filter_text, int(self.current["span_pk"]))
