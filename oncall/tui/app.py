"""The console app: screen stack, navigation, keys, palette, read-only guard, error handling.

Screens are opened by name through the methods below, so a new screen (replay compare, runbooks,
timeline, postmortem) is one module in screens/ plus one `open_*` method and one palette entry.
All database work happens in thread workers with their own cursors (IncidentDB.cursor()).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from oncall.live.status import live_status
from oncall.safe_text import safe_text
from oncall.store import IncidentDB
from oncall.tui.keys import config_path, load_keymap, unknown_ids
from oncall.tui.launch import Early, open_for_console, run_app
from oncall.tui.live import LiveScreen

__all__ = ["OncallApp", "open_for_console", "run_app"]  # the last two live in launch.py (no Textual there)

T = TypeVar("T")

HISTORY_MAX = 200
REFRESH_S = 1.0  # how often the console folds in what other processes wrote (shown within 2 s)


class OncallApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "oncall"
    BINDINGS = [
        Binding("ctrl+q", "quit", "quit", id="app.quit", priority=True),
        Binding("question_mark", "help", "help", id="app.help"),
        # Our own `:` binding stops Textual from adding its ctrl+p one, so both are declared here.
        Binding("ctrl+p", "command_palette", "palette", show=False, id="app.palette", priority=True),
        Binding("colon", "command_palette", "command", show=False, id="app.command"),
        Binding("f2", "overview", "overview", show=False, id="app.overview"),
        Binding("slash", "filter", "filter", show=False, id="app.filter"),
        # -- runbooks and actions (oncall/tui/screens/runbook.py, actions.py) --
        Binding("f3", "open_runbooks", "runbooks", show=False, id="app.runbooks"),
        Binding("f4", "open_actions", "actions", show=False, id="app.actions"),
        # -- timeline and postmortem (oncall/tui/screens/timeline.py, postmortem.py) --
        Binding("f6", "open_timeline", "timeline", show=False, id="app.timeline"),
        Binding("f7", "open_postmortem", "postmortem", show=False, id="app.postmortem"),
    ]
    # The palette's runbook entries and the `:runbook NAME k=v` line (loaded when the palette opens).
    COMMANDS = App.COMMANDS | {lambda: _oncall_commands(), lambda: _runbook_commands()}

    def __init__(self, store: IncidentDB, *, read_only: bool = False, keymap: dict[str, str] | None = None,
                 read_only_reason: str | None = None, source: Any = None, early: Early | None = None) -> None:
        super().__init__()
        self.store = store
        # The overview's first answers, asked at launch while Textual started (oncall/tui/launch.py).
        self._early = early
        # Opened on a source (oncall.sources.session.SourceSession): the overview and what-changed are
        # computed there, and what the responder opens is brought home into `store` first.
        self.source = source
        self.read_only = read_only or store.read_only
        # Why labels and notes are refused, in the words the toast uses.
        self.read_only_reason = read_only_reason or (
            "the console was opened with --read-only" if read_only else
            "the database was opened read-only" if store.read_only else "")
        self.filter_history: list[str] = []
        # What the responder typed in each runbook's form, kept for the session: after a failed gate
        # (or a bad value) the form opens again with it, not with the defaults.
        self.runbook_edits: dict[str, tuple[dict[str, str], str]] = {}
        # What changed, as the overview last computed it: the explorer and reader find their cause in it.
        self.known_changes: list[Any] = []
        self._refresh_worker: Any = None
        self._refresh_failed = False
        self.live_marker = ""  # `● live N spans/s · last T` while `oncall receive` writes (oncall/live/status.py)
        if keymap is None:
            self._keymap, self._keymap_problems = load_keymap()
            self._keymap_problems += unknown_ids(self._keymap, config_path())
        else:
            self._keymap, self._keymap_problems = keymap, unknown_ids(keymap)

    @property
    def keymap_problems(self) -> list[str]:
        """What is wrong with the config file's [keys] (shown at startup and printed by `oncall open` on exit)."""
        return list(self._keymap_problems)

    def on_mount(self) -> None:
        if self._keymap:
            self.set_keymap(self._keymap)
        for p in self._keymap_problems:
            # The toast names the bad ids; the full list of valid ones (50-odd) would bury the screen,
            # so it is printed when the console exits, and `?` shows each screen's.
            short, _, _ = p.partition("; valid ids: ")
            if short != p:
                short += "; `?` lists each screen's ids (all are printed when the console exits)"
            self.notify(safe_text(short, multiline=False), severity="warning", markup=False, timeout=20)
        self.sub_title = safe_text(str(self.store.path), multiline=False, max_len=80) + (
            "  (read-only)" if self.read_only else "") + (
            safe_text(f"  on {self.source.display}", multiline=False, max_len=120) if self.source else "")
        if self.read_only:  # say it up front, not only when a label is refused
            self.notify(safe_text(f"read-only: {self.read_only_reason}; labels, notes, stars, replays, runbook "
                                  "runs and actions are disabled (reading and dry runs still work)", multiline=False),
                        severity="warning", markup=False)
        self.open_overview()
        self.set_interval(REFRESH_S, self._poll_store)

    # -- others' writes --------------------------------------------------------------------------------
    def _poll_store(self) -> None:
        """Every REFRESH_S: fold in others' writes off the UI thread (one refresh at a time)."""
        if self._refresh_worker is None or self._refresh_worker.is_finished:
            self._refresh_worker = self._refresh_store()

    @work(thread=True, group="store-refresh", exit_on_error=False)
    def _refresh_store(self) -> None:
        try:
            changed = self.store.refresh()
            marker = live_status(self.store.cursor()).text()
        except Exception as exc:  # noqa: BLE001 - a bad journal line must not take the console down
            self.call_from_thread(self._store_refresh_failed, str(exc))
            return
        if changed:
            self.call_from_thread(self._store_changed)
        if marker != self.live_marker:
            self.call_from_thread(self._live_changed, marker)

    def _live_changed(self, marker: str) -> None:
        """The live marker moved (a rate, a last arrival, idle): screens that show it redraw it."""
        self.live_marker = marker
        if isinstance(self.screen, LiveScreen):
            self.screen.live_changed()

    def _store_refresh_failed(self, message: str) -> None:
        if not self._refresh_failed:  # once, not every second
            self._refresh_failed = True
            self.notify(safe_text(f"cannot read others' writes: {message}", multiline=False),
                        severity="error", markup=False, timeout=30)

    def _store_changed(self) -> None:
        """Someone wrote (a label, a note, a load): the screen on top shows it now, the ones under it
        when the responder goes back to them. Screens redraw in place: no focus or cursor moves."""
        self._refresh_failed = False
        top = self.screen
        for screen in self.screen_stack:
            if isinstance(screen, LiveScreen):
                screen.store_changed(on_top=screen is top)

    # -- where the questions are answered ---------------------------------------------------------------
    def ask(self, question: Callable[[Any], T]) -> T:
        """`question(con)` (a core function of oncall.query) over the incident, or in place over the
        source the console was opened on. Blocking: call it from a worker."""
        if self.source is not None:
            return self.source.ask(lambda engine: question(engine.connection()))
        return question(self.store.cursor())

    def take_early(self, name: str) -> Future[Any] | None:
        """The answer to `name` asked at launch (launch.ask_overview), once; None: ask now."""
        return self._early.take(name) if self._early is not None else None

    def bring_home(self, filters: list[str], why: str, then: Callable[[], None]) -> None:
        """Run `then` once the filters' rows are in the incident: at once without a source; on a
        source, after pulling them (capped, with progress; esc stops and `then` is not run)."""
        if self.source is None:
            then()
            return
        if not self.guard_action("bringing rows home"):
            return
        from oncall.tui.screens.pull import PullModal

        def pulled(done: list[Any] | None) -> None:
            if done is None:
                return
            added = sum(p.spans_added for p in done)
            capped = [p for p in done if p.capped]
            self.notify(safe_text(f"brought home {added:,} new spans ({sum(p.rows_received for p in done):,} rows "
                                  f"received)" + (f"; capped at {capped[0].cap:,} LLM calls, the newest"
                                                  if capped else ""), multiline=False), markup=False)
            then()

        self.push_screen(PullModal(filters, why), pulled)

    # -- navigation ------------------------------------------------------------------------------------
    def open_overview(self) -> None:
        from oncall.tui.screens.overview import OverviewScreen

        self.push_screen(OverviewScreen())

    def open_explorer(self, filter_text: str = "", *, edit: bool = False) -> None:
        """The explorer on `filter_text`; `edit`: with the filter bar focused (`/`)."""
        from oncall.tui.screens.explorer import ExplorerScreen

        self.push_screen(ExplorerScreen(filter_text, edit=edit))

    def open_reader(self, filter_text: str, span_pks: list[int] | None = None, start: int = 0) -> None:
        from oncall.tui.screens.reader import ReaderScreen

        self.push_screen(ReaderScreen(filter_text, span_pks, start))

    def open_trace(self, span_pk: int) -> None:
        from oncall.tui.screens.trace import TraceScreen

        self.push_screen(TraceScreen(span_pk))

    def open_replay(self, filter_text: str, request_pk: int | None = None, *, baseline: str | None = None) -> None:
        """Pick target and prompt, see the estimate, confirm; then the compare screen runs it."""
        from oncall.tui.screens.replay import ReplayScreen, ReplaySetupModal

        if not self.guard_action("replay"):
            return

        def started(run_id: int | None) -> None:
            if run_id is not None:
                self.push_screen(ReplayScreen(run_id, start=True))

        self.push_screen(ReplaySetupModal(filter_text, request_pk, baseline=baseline), started)

    def open_replay_run(self, run_id: int) -> None:
        from oncall.tui.screens.replay import ReplayScreen

        self.push_screen(ReplayScreen(run_id))

    # -- a cause's next steps (oncall/tui/nextsteps.py, oncall/query/next_steps.py) -------------------
    def cause_for(self, filter_text: str) -> Any | None:
        """The cause of what-changed that a screen's filter is about (None: none of them)."""
        from oncall.query.next_steps import cause_for_filter

        return cause_for_filter(self.known_changes, filter_text)

    def open_next_steps(self, change: Any | None, index: int | None = None) -> None:
        """The cause's next steps (`index` None: the list to pick from; else that step, prefilled)."""
        if change is None:
            self.notify("no cause here: next steps belong to a cause of what-changed (open one from the overview)"
                        if self.known_changes else "what changed is still being computed (or found nothing)",
                        markup=False)
            return
        self._compute_steps(change, index)

    @work(thread=True, group="next-steps", exit_on_error=False)
    def _compute_steps(self, change: Any, index: int | None) -> None:
        from oncall.query.next_steps import load_setting, next_steps

        try:
            cur = self.store.cursor()
            setting = load_setting(cur, db=str(self.store.path), incident=self.store.path)
            steps = next_steps(cur, change.to_dict(), setting)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            self.call_from_thread(self.show_error, "could not work out the next steps", str(exc))
            return
        self.call_from_thread(self._steps_ready, change, steps, index)

    def _steps_ready(self, change: Any, steps: list[Any], index: int | None) -> None:
        from oncall.tui.nextsteps import NextStepsModal

        title = change.title or change.description
        if not steps:
            self.notify(safe_text(f"no suggested step for: {title}", multiline=False, max_len=200), markup=False)
            return
        if index is None:
            self.push_screen(NextStepsModal(title, steps),
                             lambda i: self.take_step(change, steps[i]) if i is not None else None)
        elif index < len(steps):
            self.take_step(change, steps[index])
        else:
            self.notify(f"this cause has {len(steps)} next step(s)", markup=False)

    def take_step(self, change: Any, step: Any) -> None:
        """The replay dialog or the runbook form, prefilled from the step; when the responder starts it,
        the trail records the suggestion taken (the postmortem says which)."""
        from oncall.query.next_steps import record_taken

        if step.kind == "replay":
            from oncall.tui.screens.replay import ReplayScreen, ReplaySetupModal

            if not self.guard_action("replay"):
                return

            def started(run_id: int | None) -> None:
                if run_id is not None:
                    record_taken(self.store, change.to_dict(), step, ref={"run_id": run_id})
                    self.push_screen(ReplayScreen(run_id, start=True))

            self.push_screen(ReplaySetupModal(step.params["cohort"], preset={**step.params, "title": step.title}),
                             started)
            return
        from oncall.runbook import RunbookError, find_runbook
        from oncall.tui.screens.runbook import RunbookParamsModal

        try:
            rb = find_runbook(step.runbook)
        except RunbookError as exc:
            self.show_error("cannot open the suggested runbook", str(exc))
            return
        why = step.argv[step.argv.index("--why") + 1] if "--why" in step.argv else None

        def done(answer: dict[str, Any] | None) -> None:
            if answer is None or not self.guard_action("running a runbook"):
                return
            record_taken(self.store, change.to_dict(), step, ref={"runbook": rb.name, "params": answer["values"]})
            self.open_runbook_run(rb, answer["values"], why=answer.get("why"))

        self.push_screen(RunbookParamsModal(rb, values=step.params, why=why, suggested=step.title), done)

    # -- runbooks and actions ------------------------------------------------------------------------
    def open_runbooks(self, name: str | None = None) -> None:
        """The runbook list (with `name` highlighted): enter runs one, d dry-runs it."""
        from oncall.tui.screens.runbook import RunbooksScreen

        self.push_screen(RunbooksScreen(select=name))

    def open_runbook_run(self, rb: Any, values: dict[str, Any], *, dry_run: bool = False,
                         why: str | None = None) -> None:
        """Run a runbook (parameters already checked) with live output; each change is confirmed."""
        from oncall.tui.screens.runbook import RunbookRunScreen

        if not dry_run and not self.guard_action("running a runbook"):
            self.notify("a dry run (d on the runbook screen, or :runbook NAME --dry-run) is allowed: it reads "
                        "and plans, and writes nothing", markup=False)
            return
        self.push_screen(RunbookRunScreen(rb, values, dry_run=dry_run, why=why))

    def open_actions(self) -> None:
        """The audit: every action; enter shows one, u undoes it."""
        from oncall.tui.screens.actions import ActionsScreen

        self.push_screen(ActionsScreen())

    def action_open_runbooks(self) -> None:
        self.open_runbooks()

    def action_open_actions(self) -> None:
        self.open_actions()

    # -- timeline and postmortem ----------------------------------------------------------------------
    def open_timeline(self) -> None:
        """The incident's timeline (`oncall timeline`): enter jumps to an entry's cohort or request,
        s stars it for the postmortem."""
        from oncall.tui.screens.timeline import TimelineScreen

        if not isinstance(self.screen, TimelineScreen):
            self.push_screen(TimelineScreen())

    def open_postmortem(self) -> None:
        """The postmortem draft (`oncall postmortem`), previewed; ctrl+s exports it."""
        from oncall.tui.screens.postmortem import PostmortemScreen

        if not isinstance(self.screen, PostmortemScreen):
            self.push_screen(PostmortemScreen())

    def action_open_timeline(self) -> None:
        self.open_timeline()

    def action_open_postmortem(self) -> None:
        self.open_postmortem()

    async def action_filter(self) -> None:
        """`/` anywhere: the explorer's filter bar (opening the explorer if needed)."""
        from oncall.tui.screens.explorer import ExplorerScreen

        if isinstance(self.screen, ExplorerScreen):
            self.screen.action_focus_filter()
        else:  # the bar is focused on mount; waiting for it sends keys typed straight after `/` there
            await self.push_screen(ExplorerScreen("", edit=True))

    def action_overview(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def action_help(self) -> None:
        from oncall.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # -- shared services -------------------------------------------------------------------------------
    def guard_action(self, name: str) -> bool:
        """False (and says why) when the console was opened read-only."""
        if self.read_only:
            self.notify(safe_text(f"read-only: {name} is disabled because {self.read_only_reason}", multiline=False),
                        severity="warning", markup=False)
            return False
        return True

    def show_error(self, title: str, detail: str) -> None:
        from oncall.tui.screens.modals import ErrorModal

        self.push_screen(ErrorModal(title, detail))

    def remember_filter(self, text: str) -> None:
        if text and (not self.filter_history or self.filter_history[-1] != text):
            self.filter_history.append(text)
            del self.filter_history[:-HISTORY_MAX]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own commands (quit, theme…); its "Keys" panel would sit beside ours under the same
        # name (ours lists binding ids). oncall's entries come from palette_entries, through OncallCommands.
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")

    def palette_entries(self, screen: Screen) -> Iterable[tuple[str, str, Any]]:
        """(title, help, callback) for the palette: screens, every key of `screen` (the palette offers
        every command), recent replay runs and filters. Shown as plain text (oncall/tui/palette.py)."""
        from oncall.tui.screens.help import key_name

        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            b = active.binding
            if b.id is None or b.id in seen or b.id.startswith("app.") or not b.description:
                continue
            seen.add(b.id)
            where = b.id.split(".")[0]  # reader.good -> "reader: good"
            yield (f"{where.capitalize()}: {b.description}", f"{key_name(key)}  ({b.id})",
                   lambda node=active.node, action=b.action: self.run_action(action, node))
        yield "Overview", "the incident at a glance and what changed", self.action_overview
        yield "Explorer", "filter and page through requests", lambda: self.open_explorer("")
        yield "Reader", "read a sample of 50 outputs", lambda: self.open_reader("", None, 0)
        yield "Keys", "the bindings of this screen (?)", self.action_help
        # -- timeline and postmortem --
        yield "Timeline", "what happened and what was done, in order; star entries for the report (f6)", \
            self.open_timeline
        yield "Postmortem", "preview the postmortem draft and export it (f7)", self.open_postmortem
        yield from self._replay_commands()
        for text in reversed(self.filter_history[-10:]):
            yield (f"Filter: {safe_text(text, multiline=False, max_len=60)}", "open the explorer on it",
                   lambda t=text: self.open_explorer(t))

    def _replay_commands(self) -> Iterable[tuple[str, str, Any]]:
        from oncall.replay.store import list_runs

        try:
            runs = list_runs(self.store.cursor())[:10]
        except Exception:  # noqa: BLE001 - the palette must open whatever the tables hold
            runs = []
        for r in runs:
            yield (f"Replay {r['run_id']}: {safe_text(r['target'], multiline=False)} "
                   f"({safe_text(r['status'] or '', multiline=False)})",
                   safe_text(r.get("filter") or "(all requests)", multiline=False, max_len=60),
                   lambda rid=int(r["run_id"]): self.open_replay_run(rid))

    def _handle_exception(self, error: Exception) -> Any:  # the last line of defence: a modal, not a crash
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            return super()._handle_exception(error)
        try:
            self.show_error(f"unexpected error: {type(error).__name__}", str(error))
        except Exception:  # noqa: BLE001 - if even that fails, let Textual report it
            return super()._handle_exception(error)
        return None


def _oncall_commands() -> type:
    from oncall.tui.palette import OncallCommands

    return OncallCommands


def _runbook_commands() -> type:
    from oncall.tui.screens.runbook import RunbookCommands

    return RunbookCommands
