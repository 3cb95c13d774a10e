"""Replay's records in the incident: append-only rows through `db.append`, latest wins.

Three tables, declared in oncall/store/trail_tables.py:
- `replay_runs`: one immutable row per run (target without its key, parameters, cohort, caps,
  the planned requests).
- `replay_run_states`: a row per state change of a run (running, finished, interrupted, stopped at
  a cap, failed); the newest says where the run is.
- `replay_results`: a row per finished replay of one request (`span_pk`, `repeat_index`); the newest
  row of an item wins, so `--resume` skips items whose newest row is final and retries items whose
  newest row is a transient failure.

Secrets: `db.append` redacts credential patterns; on top of that the exact values of the API keys
in use are scrubbed from every value written (a server that echoes the key in an error message, in
a form no pattern knows, must not put it on disk).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oncall.query.ids import request_key_sql
from oncall.redact import REDACTED
from oncall.store.db import current_user
from oncall.store.trail_tables import TABLES

if TYPE_CHECKING:
    from oncall.store.contracts import Store

# An item whose newest row has one of these is finished: --resume does not send it again.
FINAL_STATUSES = ("ok", "diverged", "unreplayable")
FINAL_ERROR_KINDS = ("client",)  # a 400 will fail the same way again


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReplayStore:
    """The replay tables of one incident database, with the keys of the run scrubbed from every write."""

    def __init__(self, db: Store, secrets: Iterable[str] = ()) -> None:
        self.db = db
        self.secrets = [s for s in secrets if s and len(s) >= 6]
        self._writer: _Writer | None = None

    def start_writer(self) -> None:
        """Results go through a writer thread from now on (see _Writer); close_writer() drains it."""
        self._writer = _Writer(self.db)

    def close_writer(self) -> None:
        """Write everything queued (finished work is never dropped, also on Ctrl-C), then stop."""
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.close()

    # -- writing -------------------------------------------------------------------------------------------
    def _scrub(self, v: Any) -> Any:
        if isinstance(v, str):
            for s in self.secrets:
                v = v.replace(s, REDACTED)
            return v
        if isinstance(v, dict):
            return {k: self._scrub(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self._scrub(x) for x in v]
        return v

    def _append(self, table: str, row: dict[str, Any]) -> int:
        return self.db.append(table, {k: self._scrub(v) for k, v in row.items()})

    def record_event(self, summary: str, detail: dict[str, Any]) -> None:
        self.db.record_event("replay", self._scrub(summary), self._scrub(detail))

    # -- the records ---------------------------------------------------------------------------------------
    def new_run(self, spec: dict[str, Any]) -> int:
        return self._append("replay_runs", {**spec, "created_at": _now(), "author": current_user()})

    def set_state(self, run_id: int, status: str, reason: str | None = None,
                  counts: dict[str, Any] | None = None) -> None:
        pid, started = process_identity()
        self._append("replay_run_states", {"run_id": run_id, "created_at": _now(), "status": status, "reason": reason,
                                           "counts": counts, "pid": pid, "pid_started": started,
                                           "host": socket.gethostname()})

    def add_result(self, run_id: int, span_pk: int, repeat_index: int, fields: dict[str, Any]) -> None:
        row = {**fields, "run_id": run_id, "span_pk": span_pk, "repeat_index": repeat_index, "created_at": _now()}
        if self._writer is not None:
            self._writer.put("replay_results", {k: self._scrub(v) for k, v in row.items()})
        else:
            self._append("replay_results", row)


def process_identity(pid: int | None = None) -> tuple[int, str | None]:
    """(pid, its start time as the kernel counts it): a pid alone may be reused by another process."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return pid, stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name
    except (OSError, IndexError):
        return pid, None


def _still_running(state: dict[str, Any]) -> bool:
    """Whether the process that wrote a 'running' state is alive (only knowable on its own host)."""
    pid, host = state.get("pid"), state.get("host")
    if pid is None or host != socket.gethostname():
        return True  # written by an older oncall or on another machine: take its word
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    started = state.get("pid_started")
    return started is None or process_identity(int(pid))[1] in (None, started)


def live_state(run_id: int, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's newest state, with 'running' read as 'interrupted' when its process is gone (killed,
    the machine rebooted): a dead run never shows as running."""
    if state is None or state.get("status") != "running" or _still_running(state):
        return state
    return {**state, "status": "interrupted",
            "reason": f"the process running it (PID {state.get('pid')}) is gone; finished requests are kept; "
                      f"`oncall replay --resume {run_id}` continues"}


def items_without_result(con: Any, run_id: int, span_pks: list[int], repeat: int) -> int:
    """How many planned (request, repeat) items have no result row at all."""
    have = {(int(a), int(b)) for a, b in con.execute(
        "SELECT DISTINCT span_pk, repeat_index FROM replay_results WHERE run_id = ?", [run_id]).fetchall()}
    # An unreplayable request has one row (repeat 0) standing for all its repeats.
    single = {int(r[0]) for r in con.execute(
        "SELECT DISTINCT span_pk FROM replay_results WHERE run_id = ? AND status = 'unreplayable'", [run_id]).fetchall()}
    return sum(1 for pk in span_pks if pk not in single for k in range(repeat) if (pk, k) not in have)


class _Writer:
    """Results written as they arrive, off the event loop: db.append fsyncs the journal (~10-20 ms
    here), and 500 of those on the loop serialised a 3 s run into 17 s. The thread takes whatever
    has arrived since its last write and appends it as one entry (one fsync), so a burst costs one
    write and a lone result is on disk within one write's time."""

    MAX_BATCH = 256

    def __init__(self, db: Store) -> None:
        import queue
        import threading

        self.db = db
        self.q: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="replay-writer", daemon=True)
        self.thread.start()

    def put(self, table: str, row: dict[str, Any]) -> None:
        if self.error is not None:
            raise RuntimeError(f"writing replay results failed: {self.error}") from self.error
        self.q.put((table, row))

    def _run(self) -> None:
        import queue

        done = False
        while not done:
            item = self.q.get()
            batch = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while len(batch) < self.MAX_BATCH:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            if batch and self.error is None:
                try:
                    self.db.append_many(batch)
                except BaseException as exc:  # noqa: BLE001 - surfaced to the run by put()/close()
                    self.error = exc

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"writing replay results failed: {self.error}") from self.error


# -- reading (plain SQL over the declared tables) ----------------------------------------------------------
def label_pair(db: Store, run_id: int, span_pk: int, repeat_index: int, label: str, request: str) -> int:
    """A verdict (good/bad) on one replay pair, with its trail event (the timeline shows it)."""
    if label not in ("good", "bad"):
        raise ValueError(f"a pair label is good or bad, not {label!r}")
    now = _now()
    ids = db.append_many([
        ("replay_labels", {"run_id": run_id, "span_pk": span_pk, "repeat_index": repeat_index, "label": label,
                           "author": current_user(), "created_at": now}),
        ("trail", lambda got: {"at_time": now, "actor": current_user(), "kind": "replay_label",
                               "summary": f"replay {run_id}: labelled the replay of {request} #{repeat_index} {label}",
                               "detail": {"run_id": run_id, "span_pk": span_pk, "repeat_index": repeat_index,
                                          "label": label, "replay_label_id": got[0]}}),
    ])
    return ids[0]


def labelled_pairs(con: Any, run_id: int) -> list[dict[str, Any]]:
    """The newest verdict on each labelled pair of a run, in the order they were given, with the
    request's id (as the reader names it), who gave it and when."""
    rows = con.execute(
        f"""SELECT l.span_pk, l.repeat_index, l.label, l.author, l.created_at,
                  coalesce({request_key_sql('s')}, CAST(l.span_pk AS VARCHAR))
           FROM (SELECT *, row_number() OVER (PARTITION BY span_pk, repeat_index ORDER BY replay_label_id DESC) AS rn
                 FROM replay_labels WHERE run_id = ?) l LEFT JOIN spans s ON s.span_pk = l.span_pk
           WHERE l.rn = 1 ORDER BY l.created_at, l.replay_label_id""", [run_id]).fetchall()
    return [{"span_pk": int(r[0]), "repeat_index": int(r[1]), "label": str(r[2]), "author": r[3],
             "created_at": r[4], "request": r[5]} for r in rows]


def pair_labels(con: Any, run_id: int) -> dict[tuple[int, int], str]:
    return {(x["span_pk"], x["repeat_index"]): x["label"] for x in labelled_pairs(con, run_id)}


def has_tables(con: Any) -> bool:
    """The replay tables exist in every incident the store opens (trail_tables.py); a bare DuckDB
    connection (tests, tools) may lack them."""
    return con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'replay_runs'").fetchone()[0] > 0


def _dicts(cur: Any, table: str) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    json_cols = [c for c, t in TABLES[table].columns if t == "JSON" and c in names]
    out = []
    for r in cur.fetchall():
        d = dict(zip(names, r, strict=True))
        for k in json_cols:
            if isinstance(d[k], str):
                d[k] = json.loads(d[k])
        out.append(d)
    return out


def get_run(con: Any, run_id: int) -> dict[str, Any] | None:
    if not has_tables(con):
        return None
    rows = _dicts(con.execute("SELECT * FROM replay_runs WHERE run_id = ?", [run_id]), "replay_runs")
    if not rows:
        return None
    run = rows[0]
    st = _dicts(con.execute("SELECT * FROM replay_run_states WHERE run_id = ? ORDER BY state_id DESC LIMIT 1",
                            [run_id]), "replay_run_states")
    run["state"] = live_state(run_id, st[0] if st else None)
    return run


def list_runs(con: Any) -> list[dict[str, Any]]:
    if not has_tables(con):
        return []
    runs = _dicts(con.execute(
        """SELECT r.run_id, r.created_at, r.author, r.target, r.model, r.filter, r.repeat, r.judge,
                  json_array_length(r.items) AS planned, s.status, s.reason, s.counts,
                  (SELECT count(*) FROM replay_results x WHERE x.run_id = r.run_id) AS results
           FROM replay_runs r
           LEFT JOIN (SELECT run_id, arg_max(status, state_id) AS status, arg_max(reason, state_id) AS reason,
                             arg_max(counts, state_id) AS counts FROM replay_run_states GROUP BY run_id) s
             ON s.run_id = r.run_id
           ORDER BY r.run_id DESC"""), "replay_runs")
    states = {int(r["run_id"]): r for r in _dicts(con.execute(
        "SELECT * FROM replay_run_states QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY state_id DESC) = 1"),
        "replay_run_states")}
    for r in runs:
        if isinstance(r.get("counts"), str):
            r["counts"] = json.loads(r["counts"])
        live = live_state(int(r["run_id"]), states.get(int(r["run_id"])))
        if live is not None and live.get("status") != r.get("status"):
            r["status"], r["reason"] = live["status"], live["reason"]
    return runs


def latest_results_chunks(con: Any, run_id: int, chunk: int = 500) -> Iterator[list[dict[str, Any]]]:
    """The newest row of every (span_pk, repeat_index) of a run, in span order, a few hundred requests
    at a time: a summary of a run of any size holds one chunk of outputs in memory, not the run."""
    if not has_tables(con):
        return
    pks = [int(r[0]) for r in con.execute(
        "SELECT DISTINCT span_pk FROM replay_results WHERE run_id = ? ORDER BY span_pk", [run_id]).fetchall()]
    for i in range(0, len(pks), chunk):
        cur = con.execute(
            """SELECT * FROM replay_results WHERE run_id = ? AND span_pk BETWEEN ? AND ?
               QUALIFY row_number() OVER (PARTITION BY span_pk, repeat_index ORDER BY result_id DESC) = 1
               ORDER BY span_pk, repeat_index""", [run_id, pks[i], pks[min(i + chunk, len(pks)) - 1]])
        yield _dicts(cur, "replay_results")


def finished_items(con: Any, run_id: int) -> set[tuple[int, int]]:
    """Items --resume must not send again: newest row final (ok, diverged, unreplayable, a 400)."""
    if not has_tables(con):
        return set()
    rows = con.execute(
        """SELECT span_pk, repeat_index FROM replay_results WHERE run_id = ?
           QUALIFY row_number() OVER (PARTITION BY span_pk, repeat_index ORDER BY result_id DESC) = 1
               AND (status IN (SELECT unnest(?)) OR error_kind IN (SELECT unnest(?)))""",
        [run_id, list(FINAL_STATUSES), list(FINAL_ERROR_KINDS)]).fetchall()
    return {(int(a), int(b)) for a, b in rows}


def spent_so_far(con: Any, run_id: int) -> tuple[int, float]:
    """(API requests, USD) the run's written results account for, judge included (what --resume counts
    against the caps; a request in flight when the process died is not in it)."""
    if not has_tables(con):
        return 0, 0.0
    row = con.execute(
        """SELECT coalesce(sum(attempts), 0) + count(judge), coalesce(sum(cost), 0)
                  + coalesce(sum(TRY_CAST(judge->>'$.cost' AS DOUBLE)), 0)
           FROM replay_results WHERE run_id = ?""", [run_id]).fetchone()
    return int(row[0]), float(row[1])


@dataclass(frozen=True)
class Progress:
    """How far a run has come, from its results so far (the console polls it while the run works)."""

    planned: int  # requests x repeats
    replayed: int  # answered (ok or diverged)
    failed: int
    unreplayable: int
    retried: int  # attempts beyond the first, over every result
    spent: float  # USD, as the results priced them

    @property
    def done(self) -> int:
        return self.replayed + self.failed + self.unreplayable


def progress(con: Any, run_id: int) -> Progress:
    row = con.execute(
        """SELECT count(*) FILTER (WHERE status IN ('ok', 'diverged')), count(*) FILTER (WHERE status = 'error'),
                  count(*) FILTER (WHERE status = 'unreplayable'), coalesce(sum(attempts) - count(attempts), 0),
                  coalesce(sum(cost), 0)
           FROM (SELECT * FROM replay_results WHERE run_id = ? QUALIFY row_number() OVER
                 (PARTITION BY span_pk, repeat_index ORDER BY result_id DESC) = 1)""", [run_id]).fetchone()
    planned = con.execute("SELECT json_array_length(items) * repeat FROM replay_runs WHERE run_id = ?",
                          [run_id]).fetchone()
    return Progress(int(planned[0] or 0) if planned else 0, int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                    float(row[4]))
