"""Bringing a cohort home: a console opened on a source (`oncall open --source`) pulls the rows a
responder opens, reads, labels or replays into the local incident first (oncall/sources/session.py:
at most the session's cap of LLM calls per filter, newest first), showing the rows received as they
arrive. esc stops the pull; a stopped or failed pull leaves the incident as it was (the load path
registers a part only when it is complete)."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState

from oncall.safe_text import safe_text

PROGRESS_EVERY_S = 0.1  # at most this often the dialog redraws its counter


class PullStopped(Exception):
    """The responder pressed esc: raised from the progress callback, it unwinds the pull."""


class PullModal(ModalScreen[list[Any] | None]):
    """Pulls `filters` in turn; dismisses with what arrived (oncall.sources.session.Pulled each), or
    None when stopped or failed (the failure is shown)."""

    BINDINGS = [Binding("escape", "stop", "stop the pull", id="pull.stop")]

    def __init__(self, filters: list[str], why: str) -> None:
        super().__init__()
        self.filters = filters
        self.why = why
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        session = self.app.source
        with Vertical(id="dialog"):
            yield Static(Text(safe_text(f"bringing home from {session.display}", multiline=False, max_len=200),
                              style="bold"))
            yield Static(Text(safe_text(f"{self.why}: at most {session.cap:,} LLM calls of each, newest first",
                                        multiline=False, max_len=300), style="dim"))
            for i, f in enumerate(self.filters):
                yield Static(Text(safe_text(f"  {f or '(the whole window)'}", multiline=False, max_len=300)),
                             id=f"pull-filter-{i}")
            yield ProgressBar(total=len(self.filters), show_eta=False, id="pull-bar")
            yield Static(Text("asking…", style="dim"), id="pull-status")
            yield Static(Text("esc stops (nothing partial is kept)", style="dim"))

    def on_mount(self) -> None:
        self.run_pulls()

    def action_stop(self) -> None:
        self._stop.set()
        self.query_one("#pull-status", Static).update(Text("stopping…", style="yellow"))

    def _status(self, text: str) -> None:
        self.query_one("#pull-status", Static).update(Text(text))

    def _advance(self) -> None:
        self.query_one("#pull-bar", ProgressBar).advance(1)

    @work(thread=True, exclusive=True, group="pull", exit_on_error=False)
    def run_pulls(self) -> list[Any] | None:
        """The pulls in turn; the worker's result (None when stopped) dismisses the dialog once the
        worker has finished (on_worker_state_changed): dismissing from inside it would cancel it."""
        session = self.app.source
        done: list[Any] = []
        for i, flt in enumerate(self.filters):
            shown = [0.0]

            def progress(rows: int, i: int = i, shown: list[float] = shown) -> None:
                if self._stop.is_set():
                    raise PullStopped()
                now = time.monotonic()
                if now - shown[0] >= PROGRESS_EVERY_S:
                    shown[0] = now
                    self.app.call_from_thread(self._status, f"cohort {i + 1} of {len(self.filters)}: "
                                                            f"received {rows:,} rows…")

            try:
                done.append(session.pull(self.app.store, flt, progress=progress))
            except PullStopped:
                return None
            self.app.call_from_thread(self._advance)
        return done

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "pull":
            return
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)
        elif event.state == WorkerState.ERROR:  # shown; the incident is as it was
            self.dismiss(None)
            self.app.show_error("could not bring the cohort home", str(event.worker.error))
