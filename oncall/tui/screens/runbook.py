"""Runbooks in the console: pick one, fill its parameters, watch it run, confirm each change.

- The runbook screen (f3): every runbook found (oncall/runbook/library.py: ./runbooks,
  $ONCALL_RUNBOOKS, the shipped ones) with its title and when to use it; the highlighted one's
  parameters (types, defaults) and steps. enter runs it after a small form prefilled with the
  defaults, `d` dry-runs it (reading steps and plans, no write, no gate).
- The `:` line (the command palette) takes arguments: `:runbook provider-outage alias=support-bot`,
  `:runbook NAME --dry-run`. RunbookCommands parses the query; a bad parameter is shown as an error
  and nothing runs. The palette also offers every runbook by name.
- The run screen drives oncall.runbook.RunbookRun in a thread worker and shows each event as it
  arrives. The worker blocks on a Future while a confirmation modal is open (the UI loop never
  waits); every action's confirmation is ConfirmActionModal (oncall/tui/screens/actions.py),
  defaulting to Cancel, and an evidence gate's replay is confirmed the same way. `x` (or esc)
  cancels: a running command is interrupted as Ctrl-C would (a gate's replay keeps what finished
  and the gate fails closed), nothing after it runs, what ran stays on screen.

Runbook text, command output, plans and diffs are untrusted: everything shown goes through
safe_text into rich Text.
"""

from __future__ import annotations

import asyncio
import shlex
import threading
from concurrent.futures import Future
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, OptionList, RichLog, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from oncall.safe_text import safe_text
from oncall.tui.screens.actions import ConfirmActionModal, UndoMixin, gate_text, plan_text, verification_text
from oncall.tui.textview import RichLinesView


def _one(value: Any, max_len: int | None = None) -> str:
    return safe_text(value, multiline=False, max_len=max_len)


def step_title(step: Any) -> str:
    """`1. What is the agent calling?`: the step's number once (oncall.runbook.model.Step.title)."""
    return str(step.title)


def default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the `:runbook NAME k=v` line -------------------------------------------------------------------------
class CommandLineError(ValueError):
    pass


def parse_command(words: list[str]) -> tuple[dict[str, str], bool]:
    """The words after `runbook NAME`: ({param: value}, dry_run). `k=v`, `--param k=v`, `--dry-run`."""
    given: dict[str, str] = {}
    dry_run = False
    it = iter(words)
    for w in it:
        if w in ("--dry-run", "--dry"):
            dry_run = True
            continue
        if w == "--param":
            w = next(it, "")
        elif w.startswith("--param="):
            w = w[len("--param="):]
        if "=" not in w or w.startswith("="):
            raise CommandLineError(f"expected NAME=VALUE or --dry-run, not {w!r}")
        k, _, v = w.partition("=")
        given[k.strip()] = v
    return given, dry_run


def command_words(query: str) -> list[str] | None:
    """The query's words if it is a `runbook NAME ...` command line, else None."""
    try:
        words = shlex.split(query)
    except ValueError:
        words = query.split()
        if len(words) >= 2 and words[0].lower() == "runbook":
            raise CommandLineError("a quote is not closed") from None
        return None
    return words if len(words) >= 2 and words[0].lower() == "runbook" else None


def _load_books() -> tuple[list[Any], list[Any]]:
    from oncall.runbook import list_runbooks

    return list_runbooks()


class RunbookCommands(Provider):
    """The palette's runbook entries: every runbook by name, the runbooks and actions screens, and
    `runbook NAME k=v … [--dry-run]` typed in full, which runs it (after checking its parameters)."""

    async def startup(self) -> None:
        try:
            self.books, self.errors = await asyncio.to_thread(_load_books)
        except Exception:  # noqa: BLE001 - the palette opens whatever the runbook folders hold
            self.books, self.errors = [], []

    def _entries(self) -> list[tuple[str, str, Any]]:
        app: Any = self.app
        out: list[tuple[str, str, Any]] = [
            ("Runbooks", "pick a runbook, see its steps, run it (f3)", app.open_runbooks),
            ("Actions", "the audit: every action, its verification; u undoes (f4)", app.open_actions),
        ]
        for rb in self.books:
            out.append((f"Runbook: {_one(rb.name)} — {_one(rb.title, 80)}",
                        _one((rb.when or "").split("\n")[0], 100) or "open it",
                        lambda name=rb.name: app.open_runbooks(name)))
        return out

    async def discover(self) -> Hits:
        for text, help_text, callback in self._entries():
            yield DiscoveryHit(Content(text), callback, text=text, help=Content(help_text))

    async def search(self, query: str) -> Hits:
        try:
            words = command_words(query)
        except CommandLineError as exc:
            yield self._error_hit(query, str(exc))
            return
        if words is not None:
            async for hit in self._command(words):
                yield hit
            return
        matcher = self.matcher(query)
        for text, help_text, callback in self._entries():
            score, offsets = matcher.fuzzy_search.match(query, text)
            if score > 0:
                content = Content(text)
                for o in offsets:
                    content = content.stylize(matcher.match_style, o, o + 1)
                yield Hit(score, content, callback, text=text, help=Content(help_text))

    def _error_hit(self, query: str, message: str) -> Hit:
        app: Any = self.app
        text = f"runbook: {_one(message, 200)}"
        return Hit(1.0, Content.styled(text, "red"), lambda: app.show_error("cannot run that", message),
                   text=_one(query), help=Content("nothing runs; enter shows the error"))

    async def _command(self, words: list[str]) -> Hits:
        app: Any = self.app
        name = words[1]
        book = next((b for b in self.books if b.name == name), None)
        if book is None:
            near = [b for b in self.books if b.name.startswith(name)] or [b for b in self.books if name in b.name]
            for b in near:
                yield Hit(0.9, Content(f"Runbook: {_one(b.name)} — {_one(b.title, 80)}"),
                          lambda n=b.name: app.open_runbooks(n), text=f"runbook {b.name}",
                          help=Content("open it (type the whole name and k=v to run it from here)"))
            if not near:
                names = ", ".join(b.name for b in self.books) or "(none found)"
                yield self._error_hit(" ".join(words), f"no runbook named {name!r}; runbooks: {names}")
            return
        try:
            given, dry_run = parse_command(words[2:])
        except CommandLineError as exc:
            yield self._error_hit(" ".join(words), f"{name}: {exc}")
            return
        try:
            values = await asyncio.to_thread(_resolve, app, book, given)
        except Exception as exc:  # noqa: BLE001 - ParamError, RunbookError: said, nothing runs
            yield self._error_hit(" ".join(words), str(exc))
            return
        shown = " ".join(f"{k}={default_text(v)}" for k, v in given.items())
        text = f"Run runbook {_one(name)}" + (f" {_one(shown, 120)}" if shown else "") + (
            " (dry run)" if dry_run else "")
        help_text = ("reads and plans; writes nothing" if dry_run else
                     "read-only console: refused (add --dry-run to read and plan)" if app.read_only else
                     "each change is shown and confirmed before it is made")
        yield Hit(1.0, Content.styled(text, "bold"),
                  lambda: app.open_runbook_run(book, values, dry_run=dry_run), text=" ".join(words),
                  help=Content(help_text))
        yield Hit(0.5, Content(f"Runbook: {_one(name)} — {_one(book.title, 80)}"),
                  lambda: app.open_runbooks(name), text=f"runbook {name}", help=Content("open it"))


def _resolve(app: Any, rb: Any, given: dict[str, str]) -> dict[str, Any]:
    """Parameters checked and typed (filters compiled against the incident), in a worker thread."""
    from oncall.runbook import resolve_params

    return resolve_params(rb, given, app.store.cursor())


# -- the runbook screen -------------------------------------------------------------------------------------
def runbook_text(rb: Any) -> Text:
    """Title, when, parameters (type, default, help), targets and steps of one runbook."""
    t = Text()
    t.append(_one(rb.title) + "\n", style="bold")
    t.append(_one(f"{rb.name} · {rb.path}") + "\n", style="dim")
    if rb.when:
        t.append("when: ", style="bold")
        t.append(safe_text(rb.when.strip()) + "\n")
    t.append("\nparameters\n", style="bold")
    if not rb.params:
        t.append("  (none)\n", style="dim")
    for p in rb.params.values():
        t.append("  " + _one(p.name).ljust(16), style="cyan")
        kind = p.type + (f" ({', '.join(p.choices or [])})" if p.type == "choice" else "")
        t.append(_one(kind).ljust(10) + " ")
        if p.default is not None:
            t.append("default " + _one(repr(p.default) if isinstance(p.default, str) else default_text(p.default)))
        elif p.required:
            t.append("required", style="yellow")
        else:
            t.append("optional", style="dim")
        if p.help:
            t.append("  " + _one(p.help), style="dim")
        t.append("\n")
    if rb.targets:
        t.append("targets: ", style="bold")
        t.append(_one(", ".join(rb.targets)) + "  (oncall.toml)\n")
    t.append("\nsteps\n", style="bold")
    for s in rb.steps:
        t.append("  " + _one(step_title(s)), style="bold")
        t.append(f"  [{s.kind}]\n", style={"gate": "magenta", "action": "yellow"}.get(s.kind, "dim"))
        for c in s.commands:
            t.append("      oncall " + _one(c) + "\n")
        for e in s.expectations:
            t.append("      " + _one(e.text) + "\n", style="magenta")
        if s.kind == "action":
            args = ", ".join(f"{k}={v}" for k, v in s.args.items())
            t.append("      target " + _one(s.target) + ": " + _one(args) + "\n")
    t.append("\nenter runs it (parameters first) · d dry run: reading steps and plans, writes nothing\n",
             style="dim")
    return t


LIST_TEXT = 52  # cells of text in the runbook list (#runbook-list is 58 wide with its border and padding)


class RunbooksScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "back", id="runbooks.back"),
        Binding("j", "move(1)", "down", show=False, id="runbooks.down"),
        Binding("k", "move(-1)", "up", show=False, id="runbooks.up"),
        Binding("enter", "run", "run", id="runbooks.run"),
        Binding("d", "dry_run", "dry run", id="runbooks.dry_run"),
        Binding("f5", "refresh", "reload", id="runbooks.reload"),
    ]

    def __init__(self, select: str | None = None) -> None:
        super().__init__()
        self.select = select
        self.books: list[Any] = []
        self.errors: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("runbooks — enter runs, d dry-runs", style="bold"), id="runbooks-title")
        with Horizontal(id="runbooks-panes"):
            yield OptionList(id="runbook-list")
            yield RichLinesView(id="runbook-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="runbooks-load", exit_on_error=False)
    def load(self) -> None:
        try:
            books, errors = _load_books()
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "cannot list the runbooks", str(exc))
            return
        self.app.call_from_thread(self._loaded, books, errors)

    def _loaded(self, books: list[Any], errors: list[Any]) -> None:
        self.books, self.errors = books, errors
        options = self.query_one("#runbook-list", OptionList)
        options.clear_options()
        for rb in books:
            # One line each, cut to the list's width (the detail pane has them in full).
            t = Text(_one(rb.name, LIST_TEXT), style="bold")
            t.append("\n  " + _one(rb.title, LIST_TEXT - 2))
            when = " ".join((rb.when or "").split())
            if when:
                t.append("\n  " + _one(when, LIST_TEXT - 2), style="dim")
            options.add_option(Option(t, id=f"rb-{len(options.options)}"))
        title = Text("runbooks — enter runs, d dry-runs", style="bold")
        if errors:
            title.append(f"   {len(errors)} could not be read: ", style="red")
            title.append(_one("; ".join(str(e) for e in errors), 300), style="red")
        if not books:
            title.append("   none found (./runbooks, $ONCALL_RUNBOOKS, the shipped ones)", style="yellow")
        self.query_one("#runbooks-title", Static).update(title)
        index = next((i for i, b in enumerate(books) if b.name == self.select), 0)
        if books:
            options.highlighted = index
        options.focus()
        self.show_detail()

    def current(self) -> Any:
        i = self.query_one("#runbook-list", OptionList).highlighted
        return self.books[i] if self.books and i is not None and i < len(self.books) else None

    @on(OptionList.OptionHighlighted, "#runbook-list")
    def show_detail(self) -> None:
        rb = self.current()
        view = self.query_one("#runbook-detail", RichLinesView)
        view.update(runbook_text(rb) if rb is not None else Text("no runbook", style="dim"))

    def detail(self) -> str:
        return self.query_one("#runbook-detail", RichLinesView).plain()

    @on(OptionList.OptionSelected, "#runbook-list")
    def chosen(self) -> None:
        self.action_run()

    def action_move(self, step: int) -> None:
        options = self.query_one("#runbook-list", OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    def action_run(self) -> None:
        self._form(dry_run=False)

    def action_dry_run(self) -> None:
        self._form(dry_run=True)

    def _form(self, *, dry_run: bool) -> None:
        rb = self.current()
        if rb is None:
            return
        if not dry_run and not self.app.guard_action("running a runbook"):
            self.app.notify("a dry run (d) is allowed: it reads and plans, and writes nothing", markup=False)
            return

        def done(answer: dict[str, Any] | None) -> None:
            if answer is not None:
                self.app.open_runbook_run(rb, answer["values"], dry_run=dry_run, why=answer.get("why"))

        given, why = getattr(self.app, "runbook_edits", {}).get(rb.name, ({}, ""))
        self.app.push_screen(RunbookParamsModal(rb, dry_run=dry_run, values=given, why=why), done)

    def action_back(self) -> None:
        self.app.pop_screen()


class RunbookParamsModal(ModalScreen[dict[str, Any] | None]):
    """The parameters, prefilled with their defaults, checked (typed, filters compiled) before the
    run starts; a bad one is said here and nothing runs."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="runbook_params.cancel")]

    def __init__(self, rb: Any, *, dry_run: bool = False, values: dict[str, Any] | None = None,
                 why: str | None = None, suggested: str | None = None) -> None:
        super().__init__()
        self.rb = rb
        self.dry_run = dry_run
        # A cause's suggested run (oncall/query/next_steps.py): its prefilled values and why.
        self.values = values or {}
        self.why = why or ""
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        rb = self.rb
        with Vertical(id="dialog"):
            head = Text("dry run " if self.dry_run else "run ", style="bold")
            head.append(_one(rb.name), style="bold")
            head.append("  " + _one(rb.title, 80))
            yield Static(head)
            if self.suggested:
                yield Static(Text("suggested: ", style="bold cyan") + Text(_one(self.suggested, 120)), id="suggested")
            with VerticalScroll(id="params-form"):
                if not self.dry_run:  # what the run will do with these values (updated as they are edited)
                    yield Static(Text(""), id="will-run")
                for p in rb.params.values():
                    with Horizontal(classes="param-row"):
                        label = Text(_one(p.name), style="bold")
                        label.append(f" ({p.type})", style="dim")
                        yield Static(label, classes="param-label")
                        yield Input(default_text(self.values.get(p.name, p.default)), id=f"param-{p.name}",
                                    placeholder=_one(p.help or p.type, 60))
                    if p.help:
                        yield Static(Text(_one(p.help, 200), style="dim"), classes="param-help")
                if not self.dry_run:
                    with Horizontal(classes="param-row"):
                        yield Static(Text("why", style="bold").append(" (audit)", style="dim"),
                                     classes="param-label")
                        yield Input(self.why, id="why", placeholder="why you are running it (optional)")

            yield Static(Text("enter starts it; every change is shown and confirmed before it is made"
                              if not self.dry_run else "enter starts the dry run: nothing is written, no gate runs",
                              style="dim"), id="params-error")
            with Horizontal(id="params-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Dry run" if self.dry_run else "Run", id="start", variant="primary")

    def on_mount(self) -> None:
        inputs = list(self.query(Input))
        if inputs:
            inputs[0].focus()
        else:
            self.query_one("#start", Button).focus()
        self.show_plan()

    @on(Input.Changed)
    def show_plan(self) -> None:
        """What the run will do with the values as they stand: each gate's replay and each action."""
        if not self.query("#will-run"):
            return
        self.query_one("#will-run", Static).update(will_run_text(self.rb, self.given()))

    def given(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in self.rb.params.values():
            value = self.query_one(f"#param-{p.name}", Input).value
            if value.strip() or p.type in ("string", "filter"):
                out[p.name] = value
        return out

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def submit(self, event: Any = None) -> None:
        if event is not None:
            event.stop()
        why = "" if self.dry_run else self.query_one("#why", Input).value.strip()
        given = self.given()
        edits = getattr(self.app, "runbook_edits", None)
        if edits is not None:  # kept for the form's next opening (after a failed gate: `e` on the run)
            edits[self.rb.name] = (dict(given), why)
        self._check(given, why)

    @work(thread=True, exclusive=True, group="runbook-params", exit_on_error=False)
    def _check(self, given: dict[str, str], why: str) -> None:
        try:
            values = _resolve(self.app, self.rb, given)
        except Exception as exc:  # noqa: BLE001 - ParamError: shown, nothing runs
            self.app.call_from_thread(self._error, str(exc))
            return
        self.app.call_from_thread(self.dismiss, {"values": values, "why": why or None})

    def _error(self, message: str) -> None:
        self.query_one("#params-error", Static).update(Text(_one(message, 400), style="bold red"))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def will_run_text(rb: Any, given: dict[str, str]) -> Text:
    """The gates' replay commands and the actions' arguments with the form's values filled in."""
    from oncall.runbook.params import PLACEHOLDER

    values = {name: given.get(name, default_text(p.default)) for name, p in rb.params.items()}

    def filled(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    t = Text("it will run:\n", style="bold")
    for s in rb.steps:
        if s.kind == "gate":
            for c in s.commands:
                t.append("  gate  $ oncall " + _one(filled(c), 300) + "\n", style="magenta")
            if s.expectations:
                t.append("        " + _one("; ".join(e.text for e in s.expectations), 300) + "\n", style="magenta")
        elif s.kind == "action":
            args = ", ".join(f"{k}={filled(str(v))}" for k, v in s.args.items())
            t.append("  action on " + _one(s.target) + ": " + _one(args, 300) + " (shown and confirmed first)\n",
                     style="yellow")
    return t


class ConfirmGateModal(ModalScreen[bool]):
    """An evidence gate's replay sends requests (and spends money): asked, defaulting to Cancel."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="confirm_gate.cancel")]

    def __init__(self, command: str, expect: list[str]) -> None:
        super().__init__()
        self.command = command
        self.expect = expect

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("run the evidence replay?", style="bold"))
            t = Text("$ " + _one(self.command) + "\n")
            t.append("it sends the cohort's requests to the replay target; the runbook goes on only if:\n",
                     style="dim")
            for e in self.expect:
                t.append("  " + _one(e) + "\n", style="magenta")
            yield Static(t)
            yield Static(Text("enter cancels (the runbook stops before any later action) · tab to Run", style="dim"))
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Run replay", id="run", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#run")
    def run(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


# -- the run --------------------------------------------------------------------------------------------------
def event_text(ev: Any) -> Text:
    """One runbook event (oncall.runbook.run.Event) as styled text."""
    d = ev.data or {}
    t = Text()
    if ev.kind == "start":
        t.append(_one(ev.text), style="bold")
        if d.get("dry_run"):
            t.append("  (dry run: nothing is written, no gate runs)", style="yellow")
        params = d.get("params") or {}
        if params:
            t.append("\n  " + _one(" ".join(f"{k}={default_text(v)}" for k, v in params.items()), 400), style="dim")
    elif ev.kind == "step":
        t.append("\n== " + _one(step_title(ev.step)), style="bold cyan")
    elif ev.kind == "query":
        t.append("$ " + _one(d.get("command") or ev.text), style="bold")
        out = safe_text(d.get("output") or "").rstrip("\n")
        if out:
            t.append("\n" + out)
        if d.get("stderr"):
            t.append("\n" + safe_text(d["stderr"]).rstrip("\n"), style="yellow")
        if d.get("exit") not in (0, None):
            t.append(f"\n(exit {d['exit']})", style="dim")
    elif ev.kind == "gate":
        t.append("gate: $ " + _one(d.get("command") or ev.text) + "\n", style="bold magenta")
        t.append_text(gate_text(d))
    elif ev.kind == "plan":
        t.append_text(plan_text(d.get("plan") or {}))
    elif ev.kind == "action":
        a = d.get("action") or {}
        ok = a.get("status") in ("verified", "unchanged")
        t.append(_one(ev.text), style="bold green" if ok else "bold red")
        if a.get("error"):
            t.append("\n  error: " + _one(a["error"]), style="red")
        t.append("\n")
        t.append_text(verification_text(a.get("verification")))
        if a.get("status") in ("verified", "unverified"):
            t.append(f"  undo: u once the runbook stops (or f4, then u on action {a.get('action_id')})", style="dim")
    elif ev.kind == "stop":
        t.append("stopped: " + _one(ev.text), style="bold red")
    elif ev.kind == "done":
        t.append("\nrunbook " + _one(ev.text), style="bold green" if ev.text == "completed" else "bold yellow")
    else:
        t.append(_one(ev.text))
    t.rstrip()  # the log puts each event on its own lines
    return t


class RunbookRunScreen(UndoMixin, Screen):
    BINDINGS = [
        Binding("x", "cancel_run", "cancel run", id="runbook_run.cancel"),
        Binding("escape", "back", "cancel / back", id="runbook_run.back"),
        Binding("e", "edit", "edit and run again", id="runbook_run.edit"),
        Binding("u", "undo", "undo its action", id="runbook_run.undo"),
    ]

    def __init__(self, rb: Any, values: dict[str, Any], *, dry_run: bool = False, why: str | None = None) -> None:
        super().__init__()
        self.rb, self.values, self.dry_run, self.why = rb, values, dry_run, why
        self.running = False
        self.outcome: str | None = None
        self.transcript: list[str] = []
        self._cancel = threading.Event()
        self._step = 0
        self._current_step: Any = None
        self.written: list[int] = []  # the actions this run wrote and nobody undid here, oldest first

    def compose(self) -> ComposeResult:
        yield Static(self._status_text("starting…"), id="run-status")
        yield RichLog(id="run-log", wrap=True, markup=False, highlight=False, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.running = True
        self.query_one("#run-log", RichLog).focus()
        self.run_book()

    def _status_text(self, state: str) -> Text:
        t = Text("runbook ", style="bold")
        t.append(_one(self.rb.name), style="bold")
        if self.dry_run:
            t.append(" (dry run)", style="yellow")
        t.append(" — " + state)
        return t

    def _status(self, state: str) -> None:
        if self.is_attached:
            self.query_one("#run-status", Static).update(self._status_text(state))

    def plain(self) -> str:
        return "\n".join(self.transcript)

    def _write(self, text: Text) -> None:
        self.transcript.append(text.plain)
        if self.is_attached:  # f2 may have closed the screen while the worker finished its step
            self.query_one("#run-log", RichLog).write(text)

    # -- the worker ----------------------------------------------------------------------------------------
    @work(thread=True, group="runbook-run", exit_on_error=False)
    def run_book(self) -> None:
        from oncall.runbook import RunbookError, RunbookRun

        worker = get_current_worker()
        run = RunbookRun(self.rb, self.app.store, self.values, dry_run=self.dry_run, why=self.why,
                         confirm=self._confirm_action, confirm_gate=self._confirm_gate,
                         cancelled=lambda: self._cancel.is_set() or worker.is_cancelled)
        failure = None
        try:
            for ev in run.events():
                if worker.is_cancelled:
                    return
                if ev.kind == "step":
                    self._current_step = ev.step  # the gate's confirmation names its conditions
                self.app.call_from_thread(self._event, ev)
        except RunbookError as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - on screen, never a crash
            failure = f"{type(exc).__name__}: {exc}"
        if not worker.is_cancelled:
            self.app.call_from_thread(self._finished, run.outcome, failure)

    def _ask(self, make_modal: Any) -> Any:
        """In the worker: push a modal on the UI thread and wait (off the UI loop) for its answer."""
        worker = get_current_worker()
        answer: Future[Any] = Future()
        self.app.call_from_thread(lambda: self.app.push_screen(make_modal(), answer.set_result))
        while True:
            try:
                return answer.result(timeout=0.2)
            except TimeoutError:
                if worker.is_cancelled:
                    return False

    def _confirm_action(self, plan: Any) -> bool | str:
        answer = self._ask(lambda: ConfirmActionModal(plan, heading=f"runbook {self.rb.name}: apply this change?"))
        if not answer:
            self.app.call_from_thread(self._write, Text("you cancelled the change: nothing was written",
                                                        style="yellow"))
            return False
        return answer

    def _confirm_gate(self, command: str) -> bool:
        step = self._current_step
        expect = [e.text for e in step.expectations] if step is not None else []
        return bool(self._ask(lambda: ConfirmGateModal(command, expect)))

    # -- on the UI thread ---------------------------------------------------------------------------------
    def _event(self, ev: Any) -> None:
        action = ((ev.data or {}).get("action") or {}) if ev.kind == "action" else {}
        if action.get("status") in ("verified", "unverified") and action.get("action_id") is not None:
            self.written.append(int(action["action_id"]))
        if ev.kind == "step":
            self._step += 1
            self._status(f"step {self._step} of {len(self.rb.steps)}: {_one(step_title(ev.step), 80)}"
                         + ("" if self._cancel.is_set() else "   x cancels"))
        self._write(event_text(ev))

    def _finished(self, outcome: str, failure: str | None) -> None:
        self.running = False
        self.refresh_bindings()
        self.outcome = "failed" if failure else outcome
        if failure:
            self._write(Text("stopped: " + _one(failure, 2000), style="bold red"))
        self._status(self._stopped_text())
        ok = self.outcome == "completed"
        self.app.notify(_one(f"runbook {self.rb.name} {self.outcome}", 200), markup=False,
                        severity="information" if ok else "warning")

    def _stopped_text(self) -> str:
        return (_one(self.outcome or "") + ("   u undoes its action ·" if self.written else "")
                + "   e edit and run again · esc back · f4 actions")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_run":
            return self.running  # `x` is in the footer only while the runbook runs
        if action == "edit":
            return not self.running  # `e` once it stopped (a failed gate): the form with the values it ran with
        if action == "undo":
            return not self.running and bool(self.written)  # `u` once it stopped, while an action stands
        return True

    def action_undo(self) -> None:
        """Undo the newest action this run wrote (confirmed as in the audit, f4); again, the one before."""
        if not self.running and self.written:
            self.start_undo(self.written[-1])

    def undo_finished(self, rec: Any) -> None:
        undone = rec.plan.undo_of
        if rec.status in ("verified", "unverified", "unchanged") and undone in self.written:
            self.written.remove(undone)
        self._write(Text(_one(f"undo of action {undone}: action {rec.action_id} {rec.status}: {rec.result}"),
                         style="bold green" if rec.ok else "bold red"))
        self.refresh_bindings()
        self._status(self._stopped_text())

    def action_edit(self) -> None:
        """The form again, holding what was typed for this run (not the defaults); it runs anew."""
        if self.running:
            return
        rb, dry_run = self.rb, self.dry_run
        given, why = getattr(self.app, "runbook_edits", {}).get(
            rb.name, ({k: default_text(v) for k, v in self.values.items()}, self.why or ""))

        def done(answer: dict[str, Any] | None) -> None:
            if answer is not None:
                self.app.open_runbook_run(rb, answer["values"], dry_run=dry_run, why=answer.get("why"))

        self.app.pop_screen()
        self.app.push_screen(RunbookParamsModal(rb, dry_run=dry_run, values=given, why=why), done)

    def action_cancel_run(self) -> None:
        if not self.running or self._cancel.is_set():
            return
        self._cancel.set()
        self._write(Text("cancelling: a running command is interrupted (a gate's replay keeps what finished and fails), nothing after it runs", style="yellow"))
        self._status("cancelling…")

    def action_back(self) -> None:
        if self.running:
            self.action_cancel_run()  # esc while it runs cancels; once it has stopped, esc goes back
            return
        self.app.pop_screen()
