"""A source opened over one window, for the questions asked in place and the rows brought home.

`changes --source` and `compare --source` ask one question and close; the console opened on a
source (`oncall open --source URL --since T`) keeps one session for its life: its overview and
what-changed are computed where the spans are (the same core functions the CLI runs, through the
engine's connection), and a cohort the responder opens, reads, labels or replays is pulled into the
local incident (at most `cap` LLM calls, newest first, through the one load path), where labels,
notes, replays and actions stay, keyed by the spans' own ids (a re-pull adds nothing twice).

One engine per session, built on first use (it computes the window's canonical relation once), and
one question or pull at a time: the client holds one session with the server (and chDB one engine
per process), so callers on several threads are served in turn.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from oncall.query.filters import Filter, parse_filter, resolve_time
from oncall.sources.base import Progress, Source, Window
from oncall.sources.pull import load_source, window_of
from oncall.sources.registry import open_source
from oncall.store.db import IncidentDB

T = TypeVar("T")

DEFAULT_CAP = 20_000  # LLM calls a console pulls per cohort unless told otherwise (`open --limit`)


@dataclass
class Pulled:
    """One cohort brought home: what was asked, what arrived."""

    filter: str
    window: Window
    spans_added: int
    rows_received: int
    bytes_received: int | None
    cap: int
    capped: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


class SourceSession:
    """A source and a window: questions in place, cohorts pulled on demand."""

    def __init__(self, text: str, since: str | None, until: str | None, *, cap: int = DEFAULT_CAP,
                 within: list[Filter | str | list[str] | None] | None = None) -> None:
        self.window = window_of(since, until, Filter())
        if within:  # every question is about these filters: the engine reads only their time range
            self.window = narrowed(self.window, within)
        self.source: Source = open_source(text)
        self.cap = cap
        self._engine: Any = None
        self._lock = threading.Lock()
        self.seconds = 0.0  # spent on in-place questions (engine build included)
        self.pulls: list[Pulled] = []

    @property
    def display(self) -> str:
        return self.source.ref.display

    @property
    def in_place(self) -> bool:
        """Whether this kind of source answers questions where its spans are (ClickHouse does)."""
        return _engine_factory(self.source) is not None

    # -- in place -------------------------------------------------------------------------------------
    def ask(self, question: Callable[[Any], T]) -> T:
        """`question(engine)` answered in the source (oncall/query/engine.py's Engine; its
        `.connection()` for SQL written for either engine). InPlaceUnsupported when it cannot be."""
        from oncall.sources.clickhouse.canonical import InPlaceUnsupported

        factory = _engine_factory(self.source)
        if factory is None:
            raise InPlaceUnsupported(f"{self.display}: this source answers no questions in place")
        with self._lock:
            t0 = time.perf_counter()
            try:
                if self._engine is None:
                    self._engine = factory(self.source, self.window)
                return question(self._engine)
            finally:
                self.seconds += time.perf_counter() - t0

    @property
    def queries(self) -> int:
        return self._engine.client.queries if self._engine is not None else 0

    @property
    def bytes_received(self) -> int:
        return self._engine.bytes if self._engine is not None else 0

    @property
    def notes(self) -> list[str]:
        return list(self._engine.relation.notes) if self._engine is not None else []

    # -- brought home ---------------------------------------------------------------------------------
    def pull(self, db: IncidentDB, flt: Filter | str | list[str] | None, *, progress: Progress | None = None,
             cap: int | None = None) -> Pulled:
        """The filter's LLM calls in the session's window (narrowed by its since=/until= terms), at most
        `cap` of them, newest first, into the incident `db` (one load part; nothing twice)."""
        f = parse_filter(flt)
        window = window_of(self.window.since.isoformat(), self.window.until.isoformat(), f)
        cap = cap or self.cap
        with self._lock:
            t0 = time.perf_counter()
            report, stats = load_source(db, self.source, window, f, limit=cap, progress=progress)
        added = sum(r.spans for r in report.files)
        kept = sum(int((r.extra or {}).get("rows_kept") or 0) for r in report.files) if _has_extra(report) else None
        capped = any(bool((r.extra or {}).get("capped")) for r in report.files) if _has_extra(report) else \
            stats.rows >= cap
        done = Pulled(" ".join(str(t) for t in f.terms), window, added, stats.rows, stats.bytes, cap, capped,
                      time.perf_counter() - t0, list(stats.notes))
        if added or kept:
            db.record_event("load", f"pulled {added} spans from {self.display}",
                            {"source": self.display, "since": window.since.isoformat(),
                             "until": window.until.isoformat(), "filter": done.filter, "rows_received": stats.rows,
                             "bytes_received": stats.bytes, "limit": cap, "notes": stats.notes})
        self.pulls.append(done)
        return done

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                try:
                    self._engine.close()
                finally:
                    self._engine = None
            self.source.close()


def _engine_factory(source: Source) -> Callable[[Source, Window], Any] | None:
    """The source module's `engine_for(source, window)`, if it has one."""
    return getattr(sys.modules.get(type(source).__module__), "engine_for", None)


def _has_extra(report: Any) -> bool:
    return all(hasattr(r, "extra") for r in report.files)


_ANCHORS = (dt.datetime(2001, 1, 1, tzinfo=dt.UTC), dt.datetime(2002, 2, 2, 2, 2, 2, tzinfo=dt.UTC))


def narrowed(window: Window, filters: list[Filter | str | list[str] | None]) -> Window:
    """The part of `window` that filters with absolute since=/until= bounds can name: from the
    earliest since to the latest until among them (`compare`'s cohort and baseline). The window as
    it is when any filter is unbounded on a side or counts its time from the newest span (relative
    and clock times: the anchor is the whole window's newest span)."""
    lo: dt.datetime | None = None
    hi: dt.datetime | None = None
    for flt in filters:
        f = parse_filter(flt)
        bounds: dict[str, dt.datetime] = {}
        for t in f.terms:
            if t.key not in ("since", "until"):
                continue
            at = [resolve_time(t.key, t.value, a)[0] for a in _ANCHORS]
            if at[0] != at[1]:
                return window  # relative to the newest span
            bounds[t.key] = max(bounds.get(t.key, at[0]), at[0]) if t.key == "since" else \
                min(bounds.get(t.key, at[0]), at[0])
        if "since" not in bounds or "until" not in bounds:
            return window
        lo = bounds["since"] if lo is None else min(lo, bounds["since"])
        hi = bounds["until"] if hi is None else max(hi, bounds["until"])
    if lo is None or hi is None:
        return window
    lo, hi = max(lo, window.since), min(hi, window.until)
    return Window(lo, hi) if lo < hi else window
