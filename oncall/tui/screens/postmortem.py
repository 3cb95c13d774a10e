"""The postmortem draft (f7): the same draft `oncall postmortem` writes, previewed and exported.

The draft is built by the core (oncall/postmortem/draft.py build_draft) in a thread worker. The
preview is the Markdown as plain text, painted line by line (only the rows on screen), with light
styling by line prefix (headings, quotes, fences, tables): it is never parsed as Markdown or as
Rich markup, so a quoted output holding `[/]` or `#` is shown as written. `ctrl+s` exports the
previewed draft to a file (default postmortem.md in the working directory; an existing file is
overwritten only after a second enter), `r` rebuilds it. A read-only console previews and exports
(the export writes a file, not the incident).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Static

from oncall.safe_text import safe_text
from oncall.tui.textview import wrap_lines

H1, H2, H3 = Style(bold=True, color="magenta"), Style(bold=True, color="cyan"), Style(bold=True)
QUOTE, FENCE, TABLE, HUMAN = Style(dim=True, italic=True), Style(color="green"), Style(), Style(color="yellow")


def styled_lines(markdown: str) -> list[tuple[str, Style]]:
    """(line, style) per source line, by prefix only: no Markdown parsing, nothing interpreted."""
    out: list[tuple[str, Style]] = []
    fence: str | None = None
    for raw in markdown.split("\n"):
        line = safe_text(raw.replace("\t", "    "), multiline=False)  # tabs read as indentation
        stripped = raw.lstrip()
        if fence is not None:
            out.append((line, FENCE))
            if stripped.startswith(fence) and stripped.strip("`~") == "":
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            mark = stripped[0]
            fence = mark * (len(stripped) - len(stripped.lstrip(mark)))
            out.append((line, FENCE))
        elif raw.startswith("# "):
            out.append((line, H1))
        elif raw.startswith("## "):
            out.append((line, H2))
        elif raw.startswith("###"):
            out.append((line, H3))
        elif raw.startswith(">"):
            out.append((line, QUOTE))
        elif raw.startswith("|"):
            out.append((line, TABLE))
        elif "✍" in raw:  # the sections marked for a human to write
            out.append((line, HUMAN))
        else:
            out.append((line, Style()))
    return out


class DraftView(ScrollView, can_focus=True):
    """The draft, wrapped once per width, painted a row at a time."""

    BINDINGS = [
        Binding("j", "scroll_down", "down", show=False, id="postmortem.down"),
        Binding("k", "scroll_up", "up", show=False, id="postmortem.up"),
        Binding("pagedown,space", "page(1)", "page down", show=False, id="postmortem.page_down"),
        Binding("pageup", "page(-1)", "page up", show=False, id="postmortem.page_up"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._source: list[tuple[str, Style]] = []
        self._lines: list[tuple[str, Style]] = []
        self._width = 0

    def load(self, markdown: str, *, keep_scroll: bool = False) -> None:
        self._source = styled_lines(markdown)
        self._layout(force=True)
        if not keep_scroll:
            self.scroll_to(0, 0, animate=False)

    def _layout(self, force: bool = False) -> None:
        width = max(1, self.scrollable_content_region.width)
        if not force and width == self._width:
            return
        self._width = width
        self._lines = [(part, style) for line, style in self._source for part in wrap_lines(line, width)]
        self.virtual_size = Size(width, len(self._lines))
        self.refresh()

    def on_resize(self) -> None:
        self._layout()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        if index >= len(self._lines):
            return Strip.blank(width)
        text, style = self._lines[index]
        return Strip([Segment(text, style)]).adjust_cell_length(width)

    def action_page(self, direction: int) -> None:
        self.scroll_to(y=self.scroll_offset.y + direction * max(1, self.size.height - 1), animate=False)

    def plain(self) -> str:
        return "\n".join(line for line, _ in self._source)


class PostmortemScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "back", id="postmortem.back"),
        Binding("r", "rebuild", "rebuild", id="postmortem.rebuild"),
        Binding("ctrl+s", "export", "export Markdown", id="postmortem.export"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.draft: Any = None
        self.building = False
        self.stale = False
        self._generation = 0

    def compose(self) -> ComposeResult:
        yield Static(Text("postmortem draft", style="bold"), id="postmortem-title")
        yield DraftView(id="postmortem-draft")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DraftView).focus()
        self.rebuild()

    def data_changed(self) -> None:
        """Others wrote: the preview is not rebuilt by itself (a rebuild costs seconds and would move
        what the responder is reading); the title says so and `r` rebuilds."""
        self.stale = False
        if self.draft is not None and not self.building:
            self._status("the incident changed since this draft was built: r rebuilds it", "yellow")

    def action_rebuild(self) -> None:
        self.rebuild(keep_scroll=True)

    def rebuild(self, keep_scroll: bool = False) -> None:
        self._generation += 1
        self.building = True
        self._status("building the draft from the incident database…", "dim")
        self._build(self._generation, keep_scroll)

    @work(thread=True, group="postmortem-build", exit_on_error=False)
    def _build(self, generation: int, keep_scroll: bool) -> None:
        from oncall.postmortem.draft import build_draft

        started = time.monotonic()
        try:
            draft = build_draft(self.app.store)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            self.app.call_from_thread(self._failed, generation, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._built, generation, draft, time.monotonic() - started, keep_scroll)

    def _failed(self, generation: int, message: str) -> None:
        if generation != self._generation or not self.is_mounted:
            return
        self.building = False
        self._status(f"cannot build the draft: {message}", "red")

    def _built(self, generation: int, draft: Any, elapsed: float, keep_scroll: bool) -> None:
        if generation != self._generation or not self.is_mounted:
            return  # a closed screen, or an older build landing after a newer one was asked for
        self.building = False
        self.draft = draft
        self.query_one(DraftView).load(draft.markdown, keep_scroll=keep_scroll)
        lines = len(draft.markdown.splitlines())
        self._status(f"built at {draft.facts.get('generated_at')} in {elapsed:.1f} s, {lines} lines", "")

    def _status(self, message: str, style: str) -> None:
        if not self.is_mounted:
            return
        t = Text("postmortem draft", style="bold")
        t.append(" — preview of `oncall postmortem` (Markdown, shown as text) · ")
        t.append(safe_text(message, multiline=False, max_len=300), style=style)
        t.append("  ·  ctrl+s exports · r rebuilds", style="dim")
        self.query_one("#postmortem-title", Static).update(t)

    def plain(self) -> str:
        return self.query_one(DraftView).plain()

    def action_export(self) -> None:
        from oncall.tui.screens.export import ExportModal

        if self.draft is None:
            self.app.notify("the draft is still being built", markup=False)
            return
        markdown = self.draft.markdown

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._export(path, markdown)

        self.app.push_screen(ExportModal("the postmortem draft (Markdown)", "postmortem.md"), chosen)

    @work(thread=True, group="postmortem-export", exit_on_error=False)
    def _export(self, path: Path, markdown: str) -> None:
        from oncall.tui.screens.export import write_text

        try:
            write_text(path, markdown)
        except OSError as exc:
            self.app.call_from_thread(self.app.show_error, f"cannot write {path}", str(exc))
            return
        self.app.call_from_thread(self.app.notify, safe_text(
            f"postmortem draft written to {path} ({len(markdown.splitlines())} lines)", multiline=False),
            markup=False)

    def action_back(self) -> None:
        self.app.pop_screen()
