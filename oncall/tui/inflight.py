"""Queries that a newer one supersedes: each runs on a private DuckDB connection that can be interrupted.

The explorer numbers every filter it applies (a generation). A thread worker opens its query with
`with inflight.connection(store, generation) as cur:`; `supersede(generation)` on the UI thread
interrupts every older query still running, and a worker whose generation is already old does
not start at all. The connection is private to that one query, so an interrupt can never land on
the next query a reused worker thread runs (thread workers share a pool, and the store's
cursor() is one per thread). The UI thread still checks the generation of every result it is
handed: an interrupt can arrive after a query has already produced its answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from oncall.store.db import utc_cursor


class Superseded(Exception):
    """A newer query was started (or esc pressed) before this one began or while it ran."""


def is_interrupt(exc: BaseException) -> bool:
    """DuckDB's own interrupt (duckdb.InterruptException, "INTERRUPT Error: Interrupted!")."""
    return type(exc).__name__ == "InterruptException" or "INTERRUPT" in str(exc).upper()


class Inflight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = 0
        self._running: dict[int, list[Any]] = {}  # generation -> its connections still executing

    @contextmanager
    def connection(self, store: Any, generation: int) -> Iterator[Any]:
        """A private connection for one query of `generation`; raises Superseded if it is already old."""
        # A new connection to the same database, in UTC as every store cursor is (whatever the machine's zone).
        cur = utc_cursor(store.cursor())
        with self._lock:
            if generation < self._latest:
                cur.close()
                raise Superseded
            self._running.setdefault(generation, []).append(cur)
        try:
            yield cur
        finally:
            with self._lock:  # deregistered under the lock: an interrupt never reaches a closed connection
                conns = self._running.get(generation, [])
                if cur in conns:
                    conns.remove(cur)
                if not conns:
                    self._running.pop(generation, None)
            cur.close()

    def supersede(self, generation: int) -> int:
        """Mark `generation` as the newest and interrupt everything older; returns how many were running."""
        with self._lock:
            self._latest = max(self._latest, generation)
            old = [g for g in self._running if g < generation]
            n = 0
            for g in old:
                for cur in self._running[g]:
                    cur.interrupt()
                    n += 1
            return n

    def interrupt_all(self) -> int:
        """esc: interrupt whatever is running (its worker reports the interrupt); returns how many."""
        with self._lock:
            n = 0
            for conns in self._running.values():
                for cur in conns:
                    cur.interrupt()
                    n += 1
            return n

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running)


class StoreOn:
    """The part of the store that core builders taking a `db` use (`cursor()`, `path`), over one
    private connection from `Inflight.connection`, so that esc or a newer build can interrupt them
    (the timeline and the postmortem draft are built through `db.cursor()`)."""

    def __init__(self, store: Any, cur: Any) -> None:
        self.path = store.path
        self.read_only = True  # a builder reads; a write through this would bypass the store's journal
        self._cur = cur

    def cursor(self) -> Any:
        return self._cur
