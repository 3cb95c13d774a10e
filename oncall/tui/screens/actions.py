"""Actions in the console: the confirmation that shows the exact change, the audit list, one action,
and undo.

The confirmation (ConfirmActionModal) is the one every write from the console passes: a runbook's
action and an undo. It shows the target, the summary and the diff, and defaults to Cancel: Cancel
has the focus, so enter on open cancels; a production target needs its name typed (the engine's
confirmation_ok decides), and enter with anything else cancels. Nothing here writes by itself: the
engine (oncall/actions/engine.py) re-reads the target before writing and audits every phase.

The actions screen (f4) is `oncall action list`: id, time, target, summary, status, verification and
whether it was undone; enter shows one action (plan, gate, before/after, verification, phases), `u`
undoes it (plan_undo → the same confirmation → undo, in a worker). A refusal — the target moved
since, nothing to undo — is the engine's own message.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from oncall.display import gate_actual
from oncall.safe_text import safe_text
from oncall.tui.live import LiveScreen
from oncall.tui.textview import RichLinesView


def _one(value: Any, max_len: int | None = None) -> str:
    return safe_text(value, multiline=False, max_len=max_len)


def diff_line(line: str) -> Text:
    """One line of a plan's diff, coloured: + green, - red, @@ and headers dim."""
    s = _one(line)
    if line.startswith(("+++", "---")):
        return Text(s, style="bold")
    if line.startswith("+"):
        return Text(s, style="green")
    if line.startswith("-"):
        return Text(s, style="red")
    if line.startswith("@@"):
        return Text(s, style="cyan")
    return Text(s, style="dim")


def plan_text(p: dict[str, Any], indent: str = "  ") -> Text:
    """A plan (Plan.to_dict()) as styled text: target, summary, diff, checks, notes."""
    t = Text()
    t.append("plan ", style="bold")
    t.append(_one(f"{p.get('target')} ({p.get('adapter')} {p.get('op')})"))
    if p.get("production"):
        t.append("  PRODUCTION", style="bold red")
    t.append("\n" + indent)
    t.append(_one(p.get("summary") or ""))
    t.append("\n")
    if not p.get("changes", True):
        t.append(indent + "already in this state: nothing would change\n", style="green")
    for line in p.get("diff") or []:
        t.append(indent)
        t.append_text(diff_line(str(line)))
        t.append("\n")
    for c in p.get("checks") or []:
        t.append(indent + "✓ ", style="green")
        t.append(_one(c) + "\n")
    for n in p.get("notes") or []:
        t.append(indent + "note: ", style="yellow")
        t.append(_one(n) + "\n")
    return t


def gate_text(gate: dict[str, Any], indent: str = "  ") -> Text:
    """One evidence gate's result: each expectation PASS/FAIL with the replay's value."""
    t = Text()
    if not gate.get("ran"):
        t.append(indent + "not run: ", style="yellow")
        t.append(_one(gate.get("note") or ""))
        if gate.get("expect"):
            t.append("; it would need: " + _one("; ".join(gate["expect"])))
        t.append("\n")
        return t
    for c in gate.get("checks") or []:
        actual = gate_actual(c)
        t.append(indent)
        t.append("PASS" if c.get("passed") else "FAIL", style="bold green" if c.get("passed") else "bold red")
        t.append("  " + _one(c.get("expect")) + f"  (replay: {actual})\n")
    if gate.get("note"):
        t.append(indent + _one(gate["note"]) + "\n", style="yellow")
    passed = gate.get("passed")
    t.append(indent + "gate ")
    t.append("passed" if passed else "FAILED", style="bold green" if passed else "bold red")
    if gate.get("run_id"):
        t.append(f" (replay run {_one(gate['run_id'])})")
    t.append("\n")
    return t


def verification_text(v: dict[str, Any] | None, indent: str = "  ") -> Text:
    if not v:
        return Text()
    ok = bool(v.get("ok"))
    t = Text(indent)
    t.append("✓ verified" if ok else "✗ not verified", style="bold green" if ok else "bold red")
    if v.get("elapsed_s") is not None:
        t.append(f" ({v['elapsed_s']} s)")
    t.append(": " + _one(v.get("message") or "") + "\n")
    return t


def status_style(status: str) -> str:
    return {"verified": "green", "unchanged": "green", "unverified": "yellow", "started": "yellow",
            "aborted": "bold red", "failed": "bold red"}.get(status, "")


# -- the confirmation ---------------------------------------------------------------------------------
class ConfirmActionModal(ModalScreen[str | bool]):
    """Shows the exact change and asks. Dismisses with the confirmation (what confirmation_ok
    accepts: "yes", or the production target's typed name) or False. Cancel is the default."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="confirm_action.cancel")]

    def __init__(self, plan: Any, *, heading: str = "apply this change?") -> None:
        super().__init__()
        self.plan = plan
        self.heading = heading

    def compose(self) -> ComposeResult:
        p = self.plan
        with Vertical(id="dialog"):
            yield Static(Text(_one(self.heading), style="bold"))
            with VerticalScroll(id="confirm-plan"):
                yield Static(plan_text(p.to_dict()))
            if p.production:
                yield Static(Text.assemble(_one(p.target), " is a production target: type its name to apply "
                                           "(enter with anything else cancels)"), id="confirm-hint")
                yield Input(placeholder=_one(p.target), id="typed")
            else:
                yield Static(Text("enter cancels · tab to Apply", style="dim"), id="confirm-hint")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                yield Button("Apply", id="apply", variant="error" if p.production else "warning",
                             disabled=bool(p.production))

    def on_mount(self) -> None:
        # Cancel is the default: enter on open cancels. A production target's name is typed
        # into the input; enter there with anything but the name cancels too.
        if self.plan.production:
            self.query_one("#typed", Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#typed")
    def typed(self, event: Input.Changed) -> None:
        from oncall.actions import confirmation_ok

        self.query_one("#apply", Button).disabled = not confirmation_ok(self.plan, event.value)

    @on(Input.Submitted, "#typed")
    def submitted(self, event: Input.Submitted) -> None:
        from oncall.actions import confirmation_ok

        event.stop()
        self.dismiss(event.value if confirmation_ok(self.plan, event.value) else False)

    @on(Button.Pressed, "#apply")
    def apply(self) -> None:
        from oncall.actions import confirmation_ok

        if self.plan.production:
            typed = self.query_one("#typed", Input).value
            if confirmation_ok(self.plan, typed):
                self.dismiss(typed)
            return
        self.dismiss("yes")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


# -- undo (shared by the list and the detail screen) ----------------------------------------------------
class UndoMixin:
    """`u`: plan_undo → ConfirmActionModal → undo, all reading and writing in thread workers."""

    app: Any

    def start_undo(self, action_id: int) -> None:
        if not self.app.guard_action(f"undo of action {action_id}"):
            return
        self.app.notify(f"planning the undo of action {action_id}…", markup=False, timeout=3)
        self._plan_undo(action_id)

    @work(thread=True, group="action-undo", exit_on_error=False)
    def _plan_undo(self, action_id: int) -> None:
        from oncall.actions import ActionError, plan_undo

        try:
            p = plan_undo(action_id, db=self.app.store)
        except ActionError as exc:
            self.app.call_from_thread(self.app.show_error, f"cannot undo action {action_id}", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            self.app.call_from_thread(self.app.show_error, f"cannot undo action {action_id}",
                                      f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._confirm_undo, action_id, p)

    def _confirm_undo(self, action_id: int, p: Any) -> None:
        def answered(answer: str | bool | None) -> None:
            if not answer:
                self.app.notify(f"undo of action {action_id} cancelled; nothing was written", markup=False)
                return
            self._do_undo(action_id, p, answer)

        self.app.push_screen(ConfirmActionModal(p, heading=f"undo action {action_id}?"), answered)

    @work(thread=True, group="action-undo", exit_on_error=False)
    def _do_undo(self, action_id: int, p: Any, answer: str) -> None:
        from oncall.actions import ActionError, execute

        try:
            rec = execute(p, db=self.app.store, confirm=answer, why=f"undo action {action_id}")
        except ActionError as exc:
            self.app.call_from_thread(self.app.show_error, f"undo of action {action_id} refused", str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, f"undo of action {action_id} failed",
                                      f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._undone, rec)

    def _undone(self, rec: Any) -> None:
        message = _one(f"action {rec.action_id} {rec.status}: {rec.result}", 300)
        if rec.error:
            message += _one(f" — {rec.error}", 300)
        self.app.notify(message, markup=False, severity="information" if rec.ok else "error", timeout=10)
        self.undo_finished(rec)

    def undo_finished(self, rec: Any) -> None:
        """Redraw after an undo (`rec`: the undo's ActionRecord; the screens reload the audit)."""


# -- the list -------------------------------------------------------------------------------------------
COLS = "   id  started (UTC)        target         status      verified  undone        change"


def undone_map(items: list[dict[str, Any]]) -> dict[int, int]:
    """{action id: the id of the action that undid it} (an undo that wrote, or found it already put back)."""
    out: dict[int, int] = {}
    for a in items:
        if a.get("undo_of") is not None and a.get("status") in ("verified", "unverified", "unchanged"):
            out[int(a["undo_of"])] = int(a["action_id"])
    return out


def action_line(a: dict[str, Any], undone: dict[int, int]) -> Text:
    v = a.get("verification") or {}
    verified = "—" if not v else ("ok" if v.get("ok") else "no")
    aid = int(a["action_id"])
    if aid in undone:
        und = f"by {undone[aid]}"
    elif a.get("undo_of") is not None:
        und = f"undoes {a['undo_of']}"
    else:
        und = ""
    summary = (a.get("plan") or {}).get("summary") or ""
    t = Text(f"{aid:>5}  ")
    t.append(_one(str(a.get("started_at") or "")[:19].replace("T", " ")).ljust(19) + "  ")
    t.append(_one(a.get("target") or "", 14).ljust(14) + " ")
    status = str(a.get("status") or "")
    t.append(_one(status, 10).ljust(10), style=status_style(status))
    t.append("  " + verified.ljust(8), style="green" if verified == "ok" else "red" if verified == "no" else "dim")
    t.append("  " + und.ljust(12) + "  ", style="dim" if not und.startswith("by") else "yellow")
    t.append(_one(summary, 200))
    return t


class ActionsScreen(UndoMixin, LiveScreen):
    BINDINGS = [
        Binding("escape", "back", "back", id="actions.back"),
        Binding("j", "move(1)", "down", show=False, id="actions.down"),
        Binding("k", "move(-1)", "up", show=False, id="actions.up"),
        Binding("u", "undo", "undo", id="actions.undo"),
        Binding("f5", "refresh", "refresh", id="actions.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("actions (the audit) — enter shows one, u undoes it", style="bold"), id="actions-title")
        yield Static(Text(COLS, style="bold"), id="actions-header")
        yield OptionList(id="actions-list")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def data_changed(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        self.stale = False
        self.data_changed()  # back from one action (maybe just undone there): the list again, it is small

    def undo_finished(self, rec: Any) -> None:
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="actions-load", exit_on_error=False)
    def load(self) -> None:
        from oncall.actions.audit import list_actions

        try:
            items = list_actions(self.app.store)
        except Exception as exc:  # noqa: BLE001 - an incident without the table yet, a bad row
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._loaded, items)

    def _failed(self, message: str) -> None:
        self.query_one("#actions-title", Static).update(Text(_one(f"cannot read the audit: {message}", 300),
                                                             style="red"))

    def _loaded(self, items: list[dict[str, Any]]) -> None:
        options = self.query_one("#actions-list", OptionList)
        keep = options.highlighted
        self.items = list(reversed(items))  # newest first: the one just done is on top
        undone = undone_map(items)
        options.clear_options()
        if not self.items:
            options.add_option(Option(Text("no actions yet: runbooks (f3) plan, confirm and record them here",
                                           style="dim"), id="none", disabled=True))
            return
        options.add_options([Option(action_line(a, undone), id=str(a["action_id"])) for a in self.items])
        options.highlighted = min(keep or 0, len(self.items) - 1)
        if not options.has_focus:
            options.focus()

    def current(self) -> dict[str, Any] | None:
        i = self.query_one("#actions-list", OptionList).highlighted
        return self.items[i] if self.items and i is not None and i < len(self.items) else None

    @on(OptionList.OptionSelected, "#actions-list")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id != "none":
            self.app.push_screen(ActionDetailScreen(int(event.option.id)))

    def action_move(self, step: int) -> None:
        options = self.query_one("#actions-list", OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    def action_undo(self) -> None:
        a = self.current()
        if a is None:
            self.app.notify("no action to undo", markup=False)
            return
        self.start_undo(int(a["action_id"]))

    def action_back(self) -> None:
        self.app.pop_screen()


# -- one action ---------------------------------------------------------------------------------------------
def action_detail_text(rows: list[dict[str, Any]], undone_by: list[dict[str, Any]]) -> Text:
    last = rows[-1]
    t = Text()
    t.append(f"action {last['action_id']} ", style="bold")
    status = str(last.get("status") or "")
    t.append(_one(status), style=status_style(status) or "bold")
    t.append(_one(f"   started {str(rows[0].get('at_time'))[:19]} by {last.get('who') or '?'}") + "\n")
    if last.get("why"):
        t.append("why: ", style="bold")
        t.append(_one(last["why"]) + "\n")
    if last.get("runbook"):
        t.append("runbook: ", style="bold")
        t.append(_one(f"{last['runbook']}, step {last.get('step') or '?'}") + "\n")
    if last.get("undo_of") is not None:
        t.append(f"undoes action {last['undo_of']}\n", style="yellow")
    for u in undone_by:
        t.append(_one(f"undone by action {u['action_id']} ({u.get('status')})") + "\n", style="yellow")
    t.append("\n")
    t.append_text(plan_text(last.get("plan") or {}))
    gate = last.get("gate") or {}
    gates = gate.get("gates") if isinstance(gate, dict) else None
    if gates:
        t.append("\nevidence gates\n", style="bold")
        for g in gates:
            t.append("  $ " + _one(g.get("command") or "") + "\n")
            t.append_text(gate_text(g, "    "))
    t.append("\nbefore: ", style="bold")
    t.append(safe_text(json.dumps(last.get("before"), ensure_ascii=False, default=str), max_len=4000) + "\n")
    t.append("after:  ", style="bold")
    t.append(safe_text(json.dumps(last.get("after"), ensure_ascii=False, default=str), max_len=4000) + "\n")
    t.append("result: ", style="bold")
    t.append(_one(last.get("result") or "") + "\n")
    if last.get("error"):
        t.append("error: ", style="bold red")
        t.append(_one(last["error"]) + "\n")
    v = last.get("verification")
    if v:
        t.append("verification\n", style="bold")
        t.append_text(verification_text(v))
    t.append("\nphases\n", style="bold")
    for r in rows:
        t.append(_one(f"  {str(r.get('at_time'))[:23]}  {r.get('status')}") + "\n", style="dim")
    return t


class ActionDetailScreen(UndoMixin, LiveScreen):
    BINDINGS = [
        Binding("escape", "back", "back", id="action.back"),
        Binding("u", "undo", "undo", id="action.undo"),
    ]

    def __init__(self, action_id: int) -> None:
        super().__init__()
        self.action_id = action_id

    def compose(self) -> ComposeResult:
        yield Static(Text(f"action {self.action_id} — u undoes it, esc back", style="bold"), id="action-title")
        yield RichLinesView(id="action-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def data_changed(self) -> None:
        self.load()

    def undo_finished(self, rec: Any) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="action-load", exit_on_error=False)
    def load(self) -> None:
        from oncall.actions.audit import action_rows, undone_by

        try:
            rows = action_rows(self.app.store, self.action_id)
            by = undone_by(self.app.store, self.action_id) if rows else []
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, f"cannot read action {self.action_id}", str(exc))
            return
        self.app.call_from_thread(self._loaded, rows, by)

    def _loaded(self, rows: list[dict[str, Any]], by: list[dict[str, Any]]) -> None:
        view = self.query_one("#action-detail", RichLinesView)
        if not rows:
            view.update(Text(f"no action {self.action_id} in this incident", style="red"))
            return
        view.update(action_detail_text(rows, by), keep_scroll=True)

    def plain(self) -> str:
        return self.query_one("#action-detail", RichLinesView).plain()

    def action_undo(self) -> None:
        self.start_undo(self.action_id)

    def action_back(self) -> None:
        self.app.pop_screen()
