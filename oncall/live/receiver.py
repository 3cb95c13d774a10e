"""The receiver's core: accept decoded requests, write them as a part at least every second, acknowledge.

Request handlers hand their rows to `Receiver.offer()` and wait on the returned ticket. One flusher
thread takes everything offered so far and writes it as one load part (live.partwrite): at most
`flush_every` after the first request it holds, sooner once `linger` passes with no new request (the
senders are waiting for their answers) or `flush_spans` wait. When the part is durable and
registered it releases the tickets, and only then do the handlers answer 200. So a
`kill -9` loses only requests not yet answered, which the exporters retry (and the writer's dedupe
drops whatever of a retry was in fact written).

Memory stays bounded: at most `max_backlog_spans` spans wait (queued or being written); beyond that
`offer()` says busy and the handler answers 429 with Retry-After, which every OTLP exporter honours.
A write that fails (disk full, a broken incident) fails the tickets it held: their handlers answer
503 and the exporters retry later; nothing half-written is ever registered.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from oncall.live.partwrite import write_part
from oncall.live.payload import Decoded
from oncall.store.db import IncidentDB, open_db

log = logging.getLogger("oncall.live")

DEFAULT_FLUSH_EVERY = 1.0
DEFAULT_MAX_BACKLOG_SPANS = 100_000
# A flush starts early once this many spans wait, so a burst becomes parts of bounded size.
DEFAULT_FLUSH_SPANS = 50_000
# ... or once no request has arrived for this long while some wait: the exporters that sent are
# then waiting for their answer (an SDK exporter sends one batch at a time, a Collector a few), so
# waiting out flush_every would only idle them. Holding a part back this long still gathers the
# requests sent together into one part: at 20,000 spans/s from 32 concurrent senders, parts of a
# few thousand spans each rather than one per request (a part has a fixed cost: bench/RESULTS.md).
DEFAULT_LINGER = 0.1
# Early parts start no closer together than this: a part costs ~0.1 s of CPU whatever its size, so
# one exporter sending back to back is written at most a few times a second, not once per request.
MIN_PART_GAP = 0.25


class Ticket:
    """One request's spans: released when the part holding them is registered, or failed."""

    __slots__ = ("_done", "error", "spans")

    def __init__(self, spans: int) -> None:
        self.spans = spans
        self._done = threading.Event()
        self.error: str | None = None

    def release(self, error: str | None = None) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


@dataclass
class Stats:
    """What the receiver did, for its status line and --json summary."""

    requests: int = 0
    spans_accepted: int = 0  # acknowledged to exporters (durable)
    spans_written: int = 0  # rows added to the incident (after dedupe)
    duplicates: int = 0
    rejected_spans: int = 0
    busy_responses: int = 0
    failed_writes: int = 0
    parts: int = 0
    last_arrival: float | None = None  # time.time() of the last accepted request
    last_error: str | None = None
    # Where a request's wait for its acknowledgement goes, over the recent parts: how long the part's
    # first request waited for the part to start (linger, flush_every, or the write before it), and
    # the part's write. A console sees the spans a refresh after the write (bench/receive.py).
    flush_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    queued_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in ("flush_seconds", "queued_seconds")} | {
            "flush_seconds_recent_max": max(self.flush_seconds, default=None),
            "flush_seconds_recent_median": _median(self.flush_seconds),
            "queued_seconds_recent_median": _median(self.queued_seconds)}


def _median(values: deque[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


class Receiver:
    def __init__(self, db_path: Path, *, source: str, flush_every: float = DEFAULT_FLUSH_EVERY,
                 max_backlog_spans: int = DEFAULT_MAX_BACKLOG_SPANS, flush_spans: int = DEFAULT_FLUSH_SPANS,
                 linger: float | None = DEFAULT_LINGER,
                 after_flush: Callable[[IncidentDB], None] | None = None) -> None:
        self.db_path = db_path
        self.source = source
        self.flush_every = flush_every
        # None: wait flush_every (or flush_spans) whatever the traffic does; never more than flush_every.
        self.linger = None if linger is None else min(linger, flush_every)
        self.max_backlog_spans = max_backlog_spans
        self.flush_spans = flush_spans
        self.after_flush = after_flush
        self.stats = Stats()
        self._cond = threading.Condition()
        self._queue: list[tuple[Decoded, Ticket]] = []
        self._queued_spans = 0
        self._writing_spans = 0
        self._oldest: float | None = None
        self._newest = 0.0  # monotonic time the last request was queued (or refused)
        self._incoming = 0  # requests being read and decoded: the traffic is not quiet while any is
        self._last_part = 0.0  # monotonic time the last part was taken for writing
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._opened = threading.Event()
        self._open_error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the flusher (which opens the incident in its own thread); raises if it cannot open it."""
        self._thread = threading.Thread(target=self._run, name="oncall-flush", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            raise self._open_error

    def stop(self, timeout: float | None = None) -> None:
        """Write everything offered so far, release its tickets, and stop the flusher."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- what request handlers call ----------------------------------------------------------
    def busy(self) -> bool:
        """True when no more spans may wait (answer 429 before even reading the body)."""
        return self._queued_spans + self._writing_spans >= self.max_backlog_spans

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Around reading, decoding and offering one request: a part is not written early (linger)
        while a request is still on its way to the queue."""
        with self._cond:
            self._incoming += 1
        try:
            yield
        finally:
            with self._cond:
                self._incoming -= 1
                self._newest = time.monotonic()
                self._cond.notify_all()

    def offer(self, decoded: Decoded) -> Ticket | None:
        """Queue a request's rows for the next part; None when the receiver is full or stopping."""
        n = decoded.spans
        ticket = Ticket(n)
        with self._cond:
            if self._stopping:
                return None
            self.stats.requests += 1
            self.stats.rejected_spans += decoded.rejected
            if not n and not decoded.rejected:
                ticket.release()  # nothing to write: acknowledge at once
                return ticket
            if self._queued_spans + self._writing_spans + n > self.max_backlog_spans and (
                    self._queued_spans or self._writing_spans):
                self.stats.busy_responses += 1
                return None
            self._queue.append((decoded, ticket))
            self._queued_spans += n
            self._newest = time.monotonic()
            if self._oldest is None:  # the flusher starts counting flush_every from the first request
                self._oldest = self._newest
                self._cond.notify_all()
            elif self._queued_spans >= self.flush_spans:
                self._cond.notify_all()
        return ticket

    def retry_after(self) -> int:
        """Seconds an exporter should wait before retrying: about the time to write what waits."""
        recent = max(self.stats.flush_seconds, default=self.flush_every)
        return max(1, min(30, round(recent + self.flush_every)))

    # -- the flusher -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            db = open_db(self.db_path)
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._write(db, batch)
        finally:
            db.close()

    def _next_batch(self) -> list[tuple[Decoded, Ticket]] | None:
        with self._cond:
            while True:
                if self._queue:
                    now = time.monotonic()
                    waited = now - (self._oldest or now)
                    if self._stopping or waited >= self.flush_every or self._queued_spans >= self.flush_spans:
                        break
                    timeout = self.flush_every - waited
                    if self.linger is not None and not self._incoming:
                        wait = max(self.linger - (now - self._newest), MIN_PART_GAP - (now - self._last_part))
                        if wait <= 0:
                            break
                        timeout = min(timeout, wait)
                    self._cond.wait(timeout)
                    continue
                if self._stopping:
                    return None
                self._cond.wait()
            batch, self._queue = self._queue, []
            self._writing_spans, self._queued_spans = self._queued_spans, 0
            self._last_part = time.monotonic()
            self.stats.queued_seconds.append(self._last_part - (self._oldest or self._last_part))
            self._oldest = None
            return batch

    def _write(self, db: IncidentDB, batch: list[tuple[Decoded, Ticket]]) -> None:
        tables = [decoded.table for decoded, _ in batch if decoded.table is not None and decoded.table.num_rows]
        rows = pa.concat_tables(tables) if tables else []
        problems = [p for decoded, _ in batch for p in decoded.problems]
        digest = hashlib.sha256(b"".join(d.digest for d, _ in batch)).hexdigest()
        size = sum(d.body_bytes for d, _ in batch)
        started = time.monotonic()
        error: str | None = None
        try:
            result = write_part(db, rows, source=self.source, digest=digest, problems=problems, size_bytes=size)
        except Exception as exc:  # noqa: BLE001 - the exporters retry; the receiver keeps going
            error = f"{type(exc).__name__}: {exc}"
            log.error("writing %d received spans failed: %s", len(rows), error)
            with self._cond:
                self.stats.failed_writes += 1
                self.stats.last_error = error
        else:
            with self._cond:
                self.stats.parts += 1
                self.stats.spans_written += result.spans
                self.stats.duplicates += result.duplicates
                self.stats.spans_accepted += len(rows)
                self.stats.last_arrival = time.time()
                self.stats.flush_seconds.append(time.monotonic() - started)
        with self._cond:
            self._writing_spans = 0
        for _, ticket in batch:
            ticket.release(error)
        if error is None and self.after_flush is not None:
            try:
                self.after_flush(db)
            except Exception as exc:  # noqa: BLE001 - compaction is an optimisation; the data is written
                log.warning("after-flush step failed: %s", exc)
