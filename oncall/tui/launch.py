"""Launching the console: the incident is opened and the overview's questions are asked before Textual
is imported and started, so they run while it does.

The header and charts (query.overview.glance) and what changed (query.changes) are asked at once,
each in a thread of its own on its own cursor: DuckDB runs them without the GIL while this process
imports Textual and builds the screen. The overview takes the first answers from here (Early); every
later question (f5, others' writes) goes through the app as before.

This module imports no Textual: `oncall open` reaches the incident before paying for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

from oncall.fileio import writable_refusal
from oncall.query.changes import changes
from oncall.query.overview import overview_glance
from oncall.safe_text import safe_text
from oncall.store import IncidentDB, open_db


class Early:
    """Answers asked before the console is up. A screen takes each one once (`take`): a second look
    asks again, since the incident may have changed since launch."""

    def __init__(self) -> None:
        self._futures: dict[str, Future[Any]] = {}  # not taken yet
        self._asked: dict[str, Future[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def ask(self, name: str, question: Callable[[], Any], after: str | None = None) -> None:
        """Start `question()` in a thread of its own (once the question `after` is answered, if given);
        its answer (or exception) is kept under `name`."""
        future: Future[Any] = Future()
        first = self._asked.get(after) if after else None

        def run() -> None:
            if first is not None:
                wait([first])
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(question())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the answer
                future.set_exception(exc)

        thread = threading.Thread(target=run, name=f"oncall-early-{name}")
        with self._lock:
            self._futures[name] = future
            self._asked[name] = future
            self._threads.append(thread)
        thread.start()

    def take(self, name: str) -> Future[Any] | None:
        """The answer asked under `name` (wait with .result()), or None if none was asked or it was taken."""
        with self._lock:
            return self._futures.pop(name, None)

    def wait(self) -> None:
        """Until every question asked has its answer: before the store they read is closed (a console
        quit in its first seconds waits for them, as it does for its workers)."""
        for thread in list(self._threads):
            thread.join()


def ask_overview(store: IncidentDB) -> Early:
    """The overview's first questions (header and charts, what changed), started now."""
    early = Early()
    early.ask("glance", lambda: overview_glance(store.cursor()))
    # After the header's, not beside them: side by side the two shared the two cores and the first
    # screen came later (interleaved runs of bench/tui.py's child, load 11: first screen 2.15 s after,
    # 3.35 s beside; what-changed 6.4 s after, 7.0 s beside).
    early.ask("changes", lambda: changes(store.cursor()), after="glance")
    return early


def open_for_console(db_path: str | Path | None, *,
                     read_only: bool = False) -> tuple[IncidentDB, bool, str | None]:
    """(store, read-only?, why) for the console. Any number of consoles and commands share an
    incident (oncall/store), so the only refusal left is a file some other program holds read-write,
    and open_db's message names that program and its PID."""
    store = open_db(db_path, read_only=read_only, create=False)
    if read_only:
        return store, True, None
    # A read-only disk or directory: the console still opens, read-only, and says why (a write
    # would otherwise fail at the first label).
    where = store.dir if store.dir.exists() else store.path.parent
    refusal = writable_refusal(where)
    if refusal is None:
        return store, False, None
    store.close()
    reason = f"{where}: {refusal.strerror.lower() if refusal.strerror else refusal}: opened read-only"
    return open_db(db_path, read_only=True, create=False), True, reason


def _serve_demo_world(db_path: Path) -> Any:
    """On a demo incident, serve its world (replay and action targets) while the console runs,
    unless `oncall demo serve` already does; the server to stop at exit, or None."""
    from oncall.demoworld import find_world
    from oncall.demoworld.server import DemoServer, live_url

    world = find_world(db_path)
    if world is None or live_url(world, timeout=0.5):
        return None
    try:
        srv = DemoServer(world).start()
    except OSError:
        return None  # replay and runbooks start their own server when they need one
    try:
        srv.announce()
    except OSError:
        srv.stop()  # cannot say where it listens (a read-only directory): commands start their own
        return None
    return srv


def run_app(db_path: str | Path | None, *, read_only: bool = False, source: Any = None) -> None:
    """The console on the incident; with `source` (a SourceSession, closed at exit) opened on it."""
    try:
        store, read_only, reason = open_for_console(db_path, read_only=read_only)
    except BaseException:
        if source is not None:
            source.close()
        raise
    # On a source the overview is the source's, asked through the app once it runs.
    early = ask_overview(store) if source is None else None
    # Imported once the questions run: Textual's import (0.3-0.4 s) overlaps them (bench/tui.py).
    from oncall.tui.app import OncallApp

    app = OncallApp(store, read_only=read_only, read_only_reason=reason, source=source, early=early)
    world = _serve_demo_world(store.path)  # before the UI loop starts: binding a port is quick
    try:
        app.run()
    finally:
        if world is not None:
            world.stop()
        if early is not None:
            early.wait()
        store.close()
        if source is not None:
            source.close()
    for problem in app.keymap_problems:  # the toast is gone with the screen: say it where it stays
        print(f"oncall: warning: {safe_text(problem, multiline=False)}", file=sys.stderr)
