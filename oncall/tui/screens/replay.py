"""Replay from the console: pick a target and prompt variant, see the estimate, confirm; then the
compare screen shows each original beside its replay with the checks and a word diff.

`R` on the reader replays the current request, on the explorer a sample of the filtered cohort, on
the overview the highlighted change's cohort. The run itself is `oncall replay --resume RUN_ID` in a
process of its own (see ReplayScreen.launch), followed through the store as results arrive; `x`
cancels it and keeps what finished, as Ctrl-C does on the command line. j/k walk the pairs, g/b label a pair
(a trail event, so the timeline shows it).
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Select, Static

from oncall.display import format_cost
from oncall.output import replay_summary_table
from oncall.query.filters import baseline_before, compile_filter
from oncall.replay.store import progress
from oncall.safe_text import safe_text
from oncall.tui import pairdiff
from oncall.tui.textview import OutputView, RichLinesView

DEFAULT_SAMPLE = 20
NO_VARIANT = "(the recorded prompt)"


def suite_dir() -> str:
    return os.environ.get("ONCALL_REPLAY_SUITE") or "replay"


class ReplaySetupModal(ModalScreen[int | None]):
    """Choose target, prompt variant, sample size and repeats; the estimate is shown before anything
    is sent, and the default button is Cancel."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="replay_setup.cancel")]

    def __init__(self, filter_text: str, request_pk: int | None = None, *, baseline: str | None = None,
                 preset: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.filter_text = filter_text
        self.request_pk = request_pk
        # A cause's suggested replay (oncall/query/next_steps.py): target, prompt, model, baseline, n, repeat.
        self.preset = preset or {}
        # The cohort the summary compares with (the same cohort before the cause, when there is one).
        offered = self.preset.get("baseline") or baseline
        self.baseline = offered if offered is not None else (baseline_before(filter_text) or "")
        self.suite: Any = None
        self.plan: Any = None
        self.spec: Any = None

    def compose(self) -> ComposeResult:
        what = f"request {self.request_pk}" if self.request_pk is not None else (self.filter_text or "(all requests)")
        with Vertical(id="dialog"):
            yield Static(Text("replay ", style="bold") + Text(safe_text(what, multiline=False, max_len=120)))
            if self.preset.get("title"):
                yield Static(Text("suggested: ", style="bold cyan")
                             + Text(safe_text(self.preset["title"], multiline=False, max_len=120)), id="suggested")
            if self.preset.get("model"):
                yield Static(Text("model ", style="bold") + Text(safe_text(self.preset["model"], multiline=False)
                                                                 + " (overrides the target's)"), id="model")
            yield Static("target (where the requests are sent; the suite's targets.toml)", classes="field-label")
            yield Select([], prompt="choose a target", id="target", allow_blank=True)
            yield Static("prompt variant (the suite's prompts/)", classes="field-label")
            yield Select([], prompt="choose a prompt", id="variant", allow_blank=True)
            with Horizontal(id="replay-numbers"):
                with Vertical():
                    yield Static("requests (a uniform sample)", classes="field-label")
                    yield Input(str(self.preset.get("n") or DEFAULT_SAMPLE) if self.request_pk is None else "1",
                                id="n", disabled=self.request_pk is not None, placeholder="requests")
                with Vertical():
                    yield Static("repeat (2+ tells noise from change)", classes="field-label")
                    yield Input(str(self.preset.get("repeat") or 1), id="repeat", placeholder="repeat")
            yield Static("baseline (the cohort the summary compares with; empty: none)", classes="field-label")
            yield Input(self.baseline, id="baseline", placeholder="e.g. served_model=gpt-4o-2024-08-06 until=01:12")
            yield Static(Text("loading the suite…", style="dim"), id="estimate")
            with Horizontal(id="replay-buttons"):
                yield Button("Cancel", id="cancel", variant="default")
                yield Button("Replay", id="start", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self.load_suite()

    @work(thread=True, group="replay-setup")
    def load_suite(self) -> None:
        from oncall.replay.suite import SuiteError, load_suite_for

        try:
            suite = load_suite_for(suite_dir(), self.app.store.path)  # a demo's targets too
        except SuiteError as exc:
            self.app.call_from_thread(self._estimate_text, Text(safe_text(str(exc)), style="red"))
            return
        self.app.call_from_thread(self._suite_loaded, suite)

    def _suite_loaded(self, suite: Any) -> None:
        self.suite = suite
        targets = [(safe_text(f"{n} ({t.model})", multiline=False), n) for n, t in sorted(suite.targets.items())
                   if not t.judge]
        self.query_one("#target", Select).set_options(targets)
        variants = [(NO_VARIANT, NO_VARIANT)]
        variants += [(name, name) for name in suite.variants()]
        self.query_one("#variant", Select).set_options(variants)
        want = self.preset.get("prompt")
        self.query_one("#variant", Select).value = want if want in [v for _, v in variants] else NO_VARIANT
        if targets:
            names = [n for _, n in targets]
            self.query_one("#target", Select).value = (self.preset["target"] if self.preset.get("target") in names
                                                       else targets[0][1])
        else:
            self._estimate_text(Text(f"no targets in {suite.path / 'targets.toml'}", style="red"))

    @on(Select.Changed)
    @on(Input.Changed)
    def changed(self) -> None:
        self.query_one("#start", Button).disabled = True
        if self.suite is not None:
            self.estimate()

    def _numbers(self) -> tuple[int, int] | None:
        try:
            n = int(self.query_one("#n", Input).value or "0")
            k = int(self.query_one("#repeat", Input).value or "0")
        except ValueError:
            return None
        return (n, k) if n >= 1 and k >= 1 else None

    @work(thread=True, exclusive=True, group="replay-estimate")
    def estimate(self) -> None:
        from oncall.replay import runner
        from oncall.replay.suite import SuiteError

        target_name = self.query_one("#target", Select).value
        variant = self.query_one("#variant", Select).value
        baseline = self.query_one("#baseline", Input).value.strip()
        nums = self._numbers()
        if not isinstance(target_name, str) or nums is None:
            self.app.call_from_thread(self._estimate_text, Text("choose a target, requests >= 1, repeat >= 1",
                                                                style="yellow"))
            return
        try:
            target = self.suite.target(target_name)
            if self.preset.get("model"):
                target = type(target).from_public({**target.public(), "model": self.preset["model"]})
            spec = runner.ReplaySpec(
                target=target, filter_words=shlex.split(self.filter_text) if self.request_pk is None else [],
                request=None, prompt=self.suite.prompt(variant) if variant != NO_VARIANT else None,
                n=nums[0] if self.request_pk is None else None, repeat=nums[1],
                seed=self.preset.get("seed"), concurrency=target.max_concurrency or self.suite.concurrency,
                rubric=self.suite.rubric, retry=self.suite.retry, baseline=[baseline] if baseline else None)
            runner.check_spec(spec)
            runner.api_key(target)
            cur = self.app.store.cursor()
            if baseline:
                compile_filter(cur, [baseline])  # a bad baseline is said here, before anything is sent
            if self.request_pk is not None:
                plan = runner.plan_for(cur, spec, [self.request_pk])
            else:
                plan = runner.plan(cur, spec)
        except (SuiteError, runner.ReplayError, ValueError) as exc:  # FilterError is a ValueError
            self.app.call_from_thread(self._estimate_text, Text(safe_text(str(exc)), style="red"))
            return
        self.app.call_from_thread(self._estimated, spec, plan)

    def _estimate_text(self, text: Text) -> None:
        self.query_one("#estimate", Static).update(text)

    def _estimated(self, spec: Any, plan: Any) -> None:
        self.spec, self.plan = spec, plan
        e = plan.estimate
        cost = format_cost(e["cost"]) if e["cost"] is not None else "unknown (no price for the model)"
        t = Text(f"{plan.replayable} of {len(plan.span_pks)} requests x{spec.repeat}: "
                 f"{e['input_tokens']:,} input + {e['output_tokens']:,} output tokens, estimated {cost}\n",
                 style="bold")
        for _, key, reason in plan.unreplayable[:5]:
            t.append(safe_text(f"not replayable {key}: {reason}", multiline=False, max_len=160) + "\n", style="yellow")
        ctx = e.get("context")
        if ctx:  # documents a retrieval gave the calls: sent again from the recorded messages
            t.append(safe_text(ctx["note"], multiline=False, max_len=600) + "\n", style="" if ctx["complete"]
                     else "yellow")
        if spec.baseline:
            t.append("the summary compares with the baseline " + safe_text(spec.baseline[0], multiline=False,
                                                                          max_len=160) + "\n", style="dim")
        if plan.replayable:
            t.append("Replay sends these requests to " + safe_text(spec.target.base_url, multiline=False), style="dim")
        self._estimate_text(t)
        self.query_one("#start", Button).disabled = plan.replayable == 0 or self.app.read_only
        if self.focused is not None and self.focused.id in ("cancel", "start"):
            # a short terminal (80x24) scrolls the dialog: the estimate grew, keep the buttons it sits on in view
            self.call_after_refresh(self.query_one("#replay-buttons").scroll_visible, animate=False)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#start")
    def start(self) -> None:
        if self.plan is None or not self.app.guard_action("replay"):
            return
        from oncall.replay import runner

        try:
            run_id = runner.create_run(self.app.store, self.spec, self.plan)
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            self.app.show_error("could not start the replay", str(exc))
            return
        self.dismiss(run_id)


class ReplayScreen(Screen):
    """One run: progress while it runs, then (and meanwhile) original | replay with checks and diff."""

    BINDINGS = [
        Binding("j", "move(1)", "next pair", id="replay.next"),
        Binding("k", "move(-1)", "previous pair", id="replay.previous"),
        Binding("g", "label('good')", "good", id="replay.good"),
        Binding("b", "label('bad')", "bad", id="replay.bad"),
        Binding("d", "toggle_diff", "diff / texts", id="replay.diff"),
        Binding("s", "toggle_summary", "summary", id="replay.summary"),
        Binding("x", "cancel_run", "cancel run", id="replay.cancel"),
        Binding("escape", "back", "back", id="replay.back"),
    ]

    def __init__(self, run_id: int, *, start: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.start = start
        self.pairs: list[dict[str, Any]] = []
        self.index = 0
        self.running = False
        self.summary: dict[str, Any] | None = None
        self._reloading = False
        self._last_reload = 0.0
        self.diff_mode = True  # d: the side-by-side diff, or the two full texts in their own panes
        self._shown_diff: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"replay {self.run_id}", style="bold"), id="replay-status")
        with VerticalScroll(id="replay-summary"):
            yield Static(Text("the summary follows the results", style="dim"), id="replay-table")
        with Horizontal(id="replay-panes"):
            yield OutputView(id="original")
            yield OutputView(id="replayed")
        yield VerticalScroll(id="replay-diff")
        yield RichLinesView(id="replay-checks")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#original", OutputView).border_title = "original"
        self.query_one("#replayed", OutputView).border_title = "replay"
        if self.start:
            self.launch()
            self.set_interval(0.5, self.poll)
        else:
            self.reload()

    # -- running ------------------------------------------------------------------------------------------
    # The run is `oncall replay --resume RUN_ID` in a process of its own: its HTTP client, checks and
    # writes never compete with the console's event loop for the interpreter (in-process, a key press
    # took over a second while 32 requests were in flight), and the store lets both write the
    # incident. The screen follows the results through the store; `x` sends it SIGINT, which is Ctrl-C:
    # what finished is kept and the run is marked interrupted.
    def launch(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oncall", "replay", "--db", str(self.app.store.path), "--resume",
             str(self.run_id), "--no-progress", "--json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.running = True

    @work(thread=True, exclusive=True, group="replay-poll")
    def poll(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is None or not self.running:
            return
        store = self.app.store
        store.refresh()
        p = progress(store.cursor(), self.run_id)
        done = proc.poll() is not None
        err = proc.stderr.read() if done and proc.stderr else ""
        self.app.call_from_thread(self._polled, p, done, proc.returncode, err)

    def _polled(self, p: Any, done: bool, code: int | None, err: str) -> None:
        ok = p.replayed
        self.query_one("#replay-status", Static).update(Text(
            f"replay {self.run_id}: {p.done}/{p.planned} done {ok} failed {p.failed} retried {p.retried} "
            f"spent {format_cost(p.spent)}" + ("" if done else "   x cancels"), style="bold"))
        if done:
            self.running = False
            if code not in (0, 1, 130):
                last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or [f"exit status {code}"]
                self.app.show_error(f"replay {self.run_id} stopped", last[0])
            else:
                self.app.notify(f"replay {self.run_id} " + {0: "finished", 1: "stopped early (see the status)",
                                                             130: "cancelled; finished results are kept"}[code],
                                markup=False, severity="information" if code == 0 else "warning")
            self.reload()
        elif ok and len(self.pairs) < ok and not self._reloading and time.monotonic() - self._last_reload > 2.0:
            self.reload()  # pairs as they arrive, at most every 2 s (a summary diffs every pair)

    def action_cancel_run(self) -> None:
        import signal

        proc = getattr(self, "proc", None)
        if self.running and proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            self.app.notify(f"cancelling replay {self.run_id}…", markup=False)

    def action_back(self) -> None:
        if self.running:
            self.action_cancel_run()  # leaving stops the run; what finished stays
        self.app.pop_screen()

    # -- pairs ---------------------------------------------------------------------------------------------
    def reload(self) -> None:
        self._reloading = True
        self._last_reload = time.monotonic()
        self._reload()

    @work(thread=True, exclusive=True, group="replay-load")
    def _reload(self) -> None:
        from oncall.replay.runner import summarize

        try:
            self.app.store.refresh()
            summ = summarize(self.app.store.cursor(), self.run_id)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not read the replay", str(exc))
            return
        self.app.call_from_thread(self._loaded, summ)

    def _loaded(self, summ: dict[str, Any]) -> None:
        self._reloading = False
        self.summary = summ
        pairs = []
        for req in summ.get("requests") or []:
            for p in req.get("pairs") or []:
                pairs.append({**p, "request": req["request"], "span_pk": req["span_pk"],
                              "original_output": req.get("original_output")})
        self.pairs = pairs
        self.index = min(self.index, max(0, len(pairs) - 1))
        if not self.running:
            st = summ.get("state") or {}
            self.query_one("#replay-status", Static).update(Text(
                safe_text(f"replay {self.run_id}: {st.get('status')} — {summ['headline']}", multiline=False,
                          max_len=300), style="bold"))
        self._show_summary(summ)
        self.render_pair()

    def _show_summary(self, summ: dict[str, Any]) -> None:
        """The run's summary table (`oncall replay show`'s: baseline, original, replay, change), with
        what the run can say about noise."""
        if not summ.get("metrics"):
            return
        n = summ.get("noise") or {}
        if "changed_beyond_noise" in n:
            noise = Text(f"noise (repeat {n['repeat']}): {n['changed_beyond_noise']} request(s) changed beyond the "
                         f"model's own variation, {n['within_noise']} within noise", style="bold")
        else:
            noise = Text(safe_text(f"noise: {n.get('note', '')}", multiline=False), style="dim")
        base = (summ.get("run") or {}).get("baseline")
        head = Text(safe_text(f"baseline: {base}", multiline=False, max_len=200) if base else
                    "no baseline (R with one to compare with the cohort before)", style="dim")
        self.query_one("#replay-table", Static).update(Group(head, replay_summary_table(summ), noise))

    def action_toggle_summary(self) -> None:
        box = self.query_one("#replay-summary")
        box.display = not box.display

    def render_pair(self) -> None:
        checks = self.query_one("#replay-checks", RichLinesView)
        if not self.pairs:
            checks.update(Text("no pairs yet", style="dim"))
            return
        p = self.pairs[self.index]
        original, replayed = safe_text(p.get("original_output") or ""), safe_text(p.get("output_text") or "")
        self.query_one("#original", OutputView).load_text(original)
        self.query_one("#replayed", OutputView).load_text(replayed)
        in_diff = self.diff_mode and pairdiff.fits(original, replayed)
        if in_diff:
            self._show_diff(original, replayed)
        else:
            self._hide_diff()
        t = Text(f"pair {self.index + 1}/{len(self.pairs)}  ", style="bold")
        t.append(safe_text(f"{p['request']} #{p['repeat_index']}  {p['status']}", multiline=False), style="bold")
        if p.get("label"):
            t.append(f"  labelled {p['label']}", style="green" if p["label"] == "good" else "red")
        t.append("\n")
        if p.get("diverged"):
            t.append(safe_text(p["diverged"], multiline=False, max_len=300) + "\n", style="yellow")
        c = p.get("checks") or {}
        if c:
            t.append("exact match " + ("yes" if c["exact_match"] else "no"), style="green" if c["exact_match"] else "red")
            for name in ("json_valid", "refusal", "finish_reason"):
                v = c.get(name) or {}
                t.append(f"   {name} {v.get('original')} -> {v.get('replay')}")
            ks = c.get("key_set") or {}
            t.append("   key set " + ("same" if ks.get("same") else
                                      safe_text(f"{ks.get('original')} -> {ks.get('replay')}", multiline=False)))
            ln = c.get("length") or {}
            if ln.get("delta") is not None:
                t.append(f"   length {ln['delta']:+d}")
            t.append("\n")
        if p.get("judge"):
            t.append(safe_text(f"judge: {p['judge'].get('verdict')} — {p['judge'].get('reason')}", multiline=False,
                               max_len=300) + "\n", style="cyan")
        if in_diff:
            t.append("diff above (d: the two full texts)", style="dim")
            checks.update(t)
            return
        if self.diff_mode and not pairdiff.available():
            t.append(pairdiff.INSTALL_HINT + "\n", style="dim")
        elif self.diff_mode and original != replayed:
            t.append(f"word diff (outputs over {pairdiff.MAX_CHARS:,} characters):\n", style="dim")
        for op, piece in p.get("diff") or []:
            s = safe_text(piece)
            if op == "-":
                t.append(f"[-{s}-]", style="red")
            elif op == "+":
                t.append(f"{{+{s}+}}", style="green")
            else:
                t.append(s, style="" if op == "=" else "dim")
        checks.update(t)

    def _show_diff(self, original: str, replayed: str) -> None:
        box = self.query_one("#replay-diff", VerticalScroll)
        key = (original, replayed)
        if self._shown_diff != key:
            self._shown_diff = key
            box.remove_children()
            box.mount(pairdiff.pair_diff(original, replayed, "replay"))
            box.scroll_home(animate=False)
        box.display = True
        self.query_one("#replay-panes").display = False

    def _hide_diff(self) -> None:
        self.query_one("#replay-diff").display = False
        self.query_one("#replay-panes").display = True

    def action_toggle_diff(self) -> None:
        self.diff_mode = not self.diff_mode
        self.render_pair()

    def action_move(self, step: int) -> None:
        if self.pairs:
            new = max(0, min(len(self.pairs) - 1, self.index + step))
            if new != self.index:
                self.index = new
                self.render_pair()

    def action_label(self, verdict: str) -> None:
        if not self.pairs or not self.app.guard_action(f"label {verdict}"):
            return
        p = self.pairs[self.index]
        self.save_label(int(p["span_pk"]), int(p["repeat_index"]), str(p["request"]), verdict)

    @work(thread=True, group="replay-label")
    def save_label(self, span_pk: int, repeat_index: int, request: str, verdict: str) -> None:
        from oncall.replay.store import label_pair

        try:
            label_pair(self.app.store, self.run_id, span_pk, repeat_index, verdict, request)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not save the label", str(exc))
            return
        self.app.call_from_thread(self._labelled, span_pk, repeat_index, verdict)

    def _labelled(self, span_pk: int, repeat_index: int, verdict: str) -> None:
        for p in self.pairs:
            if int(p["span_pk"]) == span_pk and int(p["repeat_index"]) == repeat_index:
                p["label"] = verdict
        self.render_pair()
        self.app.notify(f"pair labelled {verdict}")
