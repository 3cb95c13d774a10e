"""Postmortem (f7): the draft `oncall postmortem` writes, previewed, and exported with ctrl+s.

The draft is built in a thread worker by the same core function as the command (build_draft), on a
private connection: esc cancels a build, `r` builds it again. It is rendered for reading
(oncall/tui/mdpreview.py: headings, tables as columns, emphasis and code styled, escapes resolved,
fenced blocks — the quoted outputs — exactly as written) and painted line by line (the Line API: a
500-line draft scrolls as fast as a 5-line one); no Markdown or Rich markup parser ever sees the
draft. `ctrl+s` writes exactly the previewed Markdown (default
`postmortem.md` beside the incident; an existing file is replaced only when confirmed), `p` opens
it in $PAGER. An export is a file, not an incident write: a read-only console may preview and export.
`m` adds a machine-drafted summary from a replay target, as `oncall postmortem --summarize-with`
does (oncall/postmortem/summary.py: checked numbers; a failing target leaves the draft as it is).

Others' writes while the preview is on top only mark it out of date (the responder may be reading
line 300; `r` rebuilds). Coming back to it from another screen (say, after starring entries on the
timeline) rebuilds it when the incident changed meanwhile.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Select, Static

from oncall.display import format_cost, time_text
from oncall.postmortem.timeline import incident_signature
from oncall.safe_text import safe_text
from oncall.tui import mdpreview
from oncall.tui.inflight import Inflight, StoreOn, Superseded, is_interrupt
from oncall.tui.live import LiveScreen
from oncall.tui.mdpreview import H1, H2, PLAIN
from oncall.tui.textview import OutputView


def line_styles(lines: list[str]) -> list[Style]:
    """One style per line of the draft, saying what the line is (heading, table head or rule, quote,
    fence); nothing inside a fenced block is styled (mdpreview.render)."""
    return [style for _, style in mdpreview.render(lines)]


class DraftView(OutputView):
    """The draft rendered for reading (oncall/tui/mdpreview.py), wrapped to the width; `text` stays
    the Markdown itself (what ctrl+s writes and `p` pages)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rendered: list[tuple[Text, Style]] = [(Text(""), PLAIN)]
        self._styles = [PLAIN]

    def load_draft(self, markdown: str, *, keep_scroll: bool = False) -> None:
        y = self.scroll_offset.y
        self.text = safe_text(markdown).expandtabs(4)  # safe already; again costs nothing and guards it
        self._rendered = mdpreview.render(self.text.split("\n"))
        self._layout(force=True)
        self.scroll_to(0, y if keep_scroll else 0, animate=False)

    def display_lines(self, width: int) -> tuple[list[Any], list[Style] | None, int]:
        lines: list[Any] = []
        styles: list[Style] = []
        for text, style in self._rendered:
            pieces = list(text.wrap(self.app.console, width, overflow="fold")) if self.wrap else [text]
            lines += pieces or [Text("")]
            styles += [style] * max(1, len(pieces))
        longest = width if self.wrap else max((cell_len(x.plain) for x in lines), default=0)
        return lines or [Text("")], styles or [PLAIN], longest

    def plain_lines(self) -> list[str]:
        """The display lines as the responder reads them (tests; the search of a future `/`)."""
        return [line.plain for line in self._lines]

    def section_starts(self) -> list[int]:
        """Display rows of the `#`/`##` headings (n/N jump between them)."""
        return [i for i, s in enumerate(self._styles) if s in (H1, H2) and (i == 0 or self._styles[i - 1] != s)]


class PostmortemScreen(LiveScreen):
    BINDINGS = [
        Binding("j", "scroll(1)", "down", show=False, id="postmortem.down"),
        Binding("k", "scroll(-1)", "up", show=False, id="postmortem.up"),
        Binding("n", "section(1)", "next section", id="postmortem.next_section"),
        Binding("N", "section(-1)", "previous section", show=False, id="postmortem.previous_section"),
        Binding("ctrl+s", "export", "export", id="postmortem.export"),
        Binding("e", "export_evalset", "eval set", id="postmortem.evalset"),
        Binding("r", "rebuild", "rebuild", id="postmortem.rebuild"),
        Binding("p", "pager", "pager", id="postmortem.pager"),
        Binding("w", "wrap", "wrap", id="postmortem.wrap"),
        Binding("m", "summarize", "machine summary", id="postmortem.summarize"),
        Binding("escape", "back", "back", id="postmortem.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.draft: Any = None
        self.built_at: dt.datetime | None = None
        self.outdated = False
        self._sig: Any = None
        self._generation = 0
        self._builds = Inflight()
        self._building = False
        self._dirty = False  # others wrote while a build ran

    def compose(self) -> ComposeResult:
        yield Static(Text("postmortem draft — building… (esc cancels)", style="dim"), id="postmortem-title")
        yield DraftView(id="postmortem-draft")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DraftView).focus()
        self.rebuild()

    @property
    def markdown(self) -> str:
        return self.draft.markdown if self.draft is not None else ""

    # -- building ----------------------------------------------------------------------------------------
    def rebuild(self) -> None:
        self._generation += 1
        self._builds.supersede(self._generation)  # a build in flight is interrupted: this one replaces it
        self._building = True
        self._dirty = False
        if self.draft is not None:
            self._update_title()
        self.build(self._generation)

    @work(thread=True, group="postmortem-build", exit_on_error=False)
    def build(self, generation: int) -> None:
        from oncall.postmortem.draft import build_draft

        try:
            with self._builds.connection(self.app.store, generation) as cur:
                sig = incident_signature(cur)
                draft = build_draft(StoreOn(self.app.store, cur))
        except Superseded:
            return
        except Exception as exc:  # noqa: BLE001 - shown to the responder, never a crash
            self.app.call_from_thread(self._failed, generation, exc)
            return
        self.app.call_from_thread(self._built, generation, draft, sig)

    def _failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self._building = False
        if is_interrupt(exc):
            self._title(Text("postmortem draft — cancelled (r builds it again)", style="yellow"))
        else:
            self.app.show_error("could not build the postmortem draft", str(exc))
            self._title(Text("postmortem draft — could not be built (r tries again)", style="red"))

    def _built(self, generation: int, draft: Any, sig: Any) -> None:
        if generation != self._generation:
            return
        again = self.draft is not None
        self._building = False
        self.draft, self._sig = draft, sig
        self.built_at = dt.datetime.now(dt.UTC)
        self.outdated, self._dirty = self._dirty, False
        self.query_one(DraftView).load_draft(draft.markdown, keep_scroll=again)
        self._update_title()

    def _title(self, text: Text) -> None:
        self.query_one("#postmortem-title", Static).update(text)

    def _update_title(self) -> None:
        t = Text("postmortem draft", style="bold")
        if self.draft is not None:
            n = len(self.draft.markdown.splitlines())
            t.append(f"  ·  {n:,} lines of Markdown, rendered")
            if self.built_at is not None:
                t.append(f"  ·  built {time_text(self.built_at, date=False)} UTC")
        if self._building:
            t.append("  ·  rebuilding… (esc cancels)", style="dim")
        elif self.outdated:
            t.append("  ·  the incident changed since: r rebuilds", style="bold yellow")
        t.append("  ·  ctrl+s exports · e the eval set", style="dim")
        self._title(t)

    def data_changed(self) -> None:
        """Others wrote while the preview is on top: say it is out of date; `r` rebuilds (the text does
        not move under the responder's eyes)."""
        if self._building:
            self._dirty = True  # the build in flight may have read the incident before this write
        elif self.draft is not None:
            self.outdated = True
            self._update_title()

    def on_screen_resume(self) -> None:
        """Back on the preview: rebuilt if the incident changed meanwhile (a star, a label made here)."""
        self.stale = False
        if self.draft is not None and not self._building:
            self.check_changed(self._sig)

    @work(thread=True, group="postmortem-check", exit_on_error=False)
    def check_changed(self, sig: Any) -> None:
        try:
            now = incident_signature(self.app.store.cursor())
        except Exception:  # noqa: BLE001 - the next r rebuilds anyway
            return
        if now != sig:
            self.app.call_from_thread(self._changed_meanwhile, sig)

    def _changed_meanwhile(self, sig: Any) -> None:
        if sig == self._sig and not self._building:
            self.rebuild()

    # -- keys -----------------------------------------------------------------------------------------------
    def action_scroll(self, step: int) -> None:
        view = self.query_one(DraftView)
        view.scroll_to(y=view.scroll_offset.y + step, animate=False)

    def action_section(self, step: int) -> None:
        view = self.query_one(DraftView)
        y = view.scroll_offset.y
        starts = view.section_starts()
        target = next((s for s in starts if s > y), None) if step > 0 else next(
            (s for s in reversed(starts) if s < y), None)
        if target is not None:
            view.scroll_to(y=target, animate=False)

    def action_wrap(self) -> None:
        view = self.query_one(DraftView)
        view.set_wrap(not view.wrap)

    def action_rebuild(self) -> None:
        self.rebuild()

    def action_back(self) -> None:
        """esc cancels a rebuild in flight (the previous draft stays), else leaves the screen (a first
        build in flight is interrupted and its answer dropped)."""
        building = self._building
        self._generation += 1
        self._building = False
        self._builds.interrupt_all()
        if building and self.draft is not None:
            self._title(Text("postmortem draft — rebuild cancelled; the draft below is the previous one "
                             "(r rebuilds)", style="yellow"))
            return
        self.app.pop_screen()

    def action_export(self) -> None:
        from oncall.tui.screens.export import ExportPathModal

        if self.draft is None:
            self.app.notify("the draft is still being built", markup=False)
            return
        base = Path(self.app.store.path).resolve().parent
        markdown = self.draft.markdown  # exactly what is previewed, whatever is built later
        note = ("the incident changed since this draft was built: esc, then r, to export the current one"
                if self.outdated else None)

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.write_export(path, markdown)

        self.app.push_screen(ExportPathModal("the postmortem draft (as `oncall postmortem --out`)",
                                             base / "postmortem.md", base=base, note=note), chosen)

    @work(thread=True, group="postmortem-export", exit_on_error=False)
    def write_export(self, path: Path, markdown: str) -> None:
        from oncall.tui.screens.export import write_atomic

        try:
            write_atomic(path, markdown)
        except OSError as exc:
            self.app.call_from_thread(self.app.show_error, "the draft was not exported", str(exc))
            return
        self.app.call_from_thread(self.app.notify, safe_text(
            f"postmortem draft written to {path} ({len(markdown.splitlines())} lines)", multiline=False),
            markup=False)

    # -- the eval set (as `oncall export evalset --format promptfoo --out DIR`) --------------------------
    def action_export_evalset(self) -> None:
        """The labelled requests (and those with a note) as a promptfoo eval set, in a folder beside the
        incident; the trail records the export, so the next draft says it."""
        from oncall.tui.screens.export import ExportPathModal

        base = Path(self.app.store.path).resolve().parent

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.write_evalset(path)

        self.app.push_screen(ExportPathModal(
            "the labelled requests as a promptfoo eval set (as `oncall export evalset --format promptfoo`)",
            base / "evalset", base=base, folder=True,
            note=None if not self.app.read_only else "read-only: the export is not recorded in the trail"), chosen)

    @work(thread=True, group="postmortem-evalset", exit_on_error=False)
    def write_evalset(self, path: Path) -> None:
        from oncall.postmortem.evalset import EvalsetError, export_evalset

        try:
            cases, files = export_evalset(self.app.store, None, "promptfoo", path)
        except (EvalsetError, OSError) as exc:
            self.app.call_from_thread(self.app.show_error, "the eval set was not exported", str(exc))
            return
        self.app.call_from_thread(self.app.notify, safe_text(
            f"eval set: {len(cases)} request(s) written to {', '.join(str(f) for f in files)}", multiline=False),
            markup=False)

    # -- machine summary (as `oncall postmortem --summarize-with TARGET`) ----------------------------------
    def action_summarize(self) -> None:
        """Pick a replay target; its checked summary is added to this draft (never replacing a number).
        A target that fails or quotes numbers it was not given leaves the draft as it is, and says why."""
        if self.draft is None or self._building:
            self.app.notify("the draft is still being built", markup=False)
            return

        def chosen(target: Any) -> None:
            if target is not None:
                self._title(Text(safe_text(f"postmortem draft — asking {target.name} for a summary…",
                                           multiline=False), style="dim"))
                self.summarize(target, self.draft, self._generation)

        self.app.push_screen(SummarizeModal(), chosen)

    @work(thread=True, group="postmortem-summary", exit_on_error=False)
    def summarize(self, target: Any, draft: Any, generation: int) -> None:
        from oncall.postmortem.summary import summarize

        result = summarize(draft, target)  # never raises for the target's failures
        self.app.call_from_thread(self._summarized, draft, result, generation)

    def _summarized(self, draft: Any, result: Any, generation: int) -> None:
        from oncall.postmortem.summary import insert_summary

        self._update_title()
        if result.status != "included":
            self.app.notify(safe_text(f"no machine summary: {result.error or result.status}; the draft is unchanged",
                                      multiline=False), severity="warning", markup=False, timeout=15)
            return
        if generation != self._generation or draft is not self.draft:
            self.app.notify("the draft was rebuilt meanwhile; m asks again", markup=False, severity="warning")
            return
        draft.markdown = insert_summary(draft.markdown, result)
        draft.facts["machine_summary"] = result.to_dict()
        self.query_one(DraftView).load_draft(draft.markdown, keep_scroll=True)
        self._update_title()
        cost = f", {format_cost(result.cost)}" if result.cost is not None else ""
        self.app.notify(safe_text(f"machine summary by {result.target} added under Summary (marked as a draft"
                                  f"{cost})", multiline=False), markup=False)

    def action_pager(self) -> None:
        if self.draft is None:
            return
        pager = os.environ.get("PAGER") or "less"
        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as fh:
            fh.write(self.draft.markdown)
            path = fh.name
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(pager), path], check=False)
        except Exception as exc:  # noqa: BLE001 - e.g. no terminal to suspend to in tests
            self.app.notify(safe_text(f"cannot open the pager: {exc}", multiline=False), severity="warning",
                            markup=False)
        finally:
            os.unlink(path)


class SummarizeModal(ModalScreen[Any]):
    """Which replay target writes the summary; Cancel is the default (a call costs money)."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="postmortem_summary.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("machine-drafted summary", style="bold"))
            yield Static(Text("A replay target writes a short summary from the draft's computed facts (never the "
                              "quoted outputs or notes). A summary quoting a number the facts do not hold is "
                              "left out.", style="dim"))
            yield Select([], prompt="target", id="summary-target", allow_blank=True)
            yield Static(Text("loading the replay suite…", style="dim"), id="summary-note")
            with Horizontal(id="summary-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                yield Button("Write", id="write", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self.targets: dict[str, Any] = {}
        self.load()

    @work(thread=True, group="postmortem-summary-suite", exit_on_error=False)
    def load(self) -> None:
        from oncall.replay.suite import SuiteError, load_suite
        from oncall.tui.screens.replay import suite_dir

        try:
            suite = load_suite(suite_dir())
        except SuiteError as exc:
            self.app.call_from_thread(self._note, str(exc), "red")
            return
        self.app.call_from_thread(self._loaded, {n: t for n, t in suite.targets.items()})

    def _loaded(self, targets: dict[str, Any]) -> None:
        self.targets = targets
        options = [(safe_text(f"{n} ({t.model})", multiline=False), n) for n, t in sorted(targets.items())]
        self.query_one("#summary-target", Select).set_options(options)
        if options:
            self.query_one("#summary-target", Select).value = options[0][1]
        else:
            self._note("no targets in the replay suite's targets.toml", "red")

    def _note(self, text: str, style: str) -> None:
        self.query_one("#summary-note", Static).update(Text(safe_text(text), style=style))

    @on(Select.Changed)
    def picked(self, event: Select.Changed) -> None:
        from oncall.postmortem.summary import SummaryError, resolve_target
        from oncall.tui.screens.replay import suite_dir

        name = event.value
        write = self.query_one("#write", Button)
        write.disabled = True
        if not isinstance(name, str):
            return
        try:
            resolve_target(name, suite_dir())  # its key must be in the environment
        except SummaryError as exc:
            self._note(str(exc), "red")
            return
        self._note(f"sends the facts to {self.targets[name].base_url}", "dim")
        write.disabled = False

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#write")
    def write(self) -> None:
        name = self.query_one("#summary-target", Select).value
        self.dismiss(self.targets.get(name) if isinstance(name, str) else None)
