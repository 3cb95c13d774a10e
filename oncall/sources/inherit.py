"""Cohort keys a pulled span inherits from its trace, for the API sources.

Applications set tenant, user, session… on the root span while the LLM call is a child. A file load
resolves that in DuckDB after writing every span (ingest.writer.resolve_inheritance). A pull keeps
only the spans its filter names (LLM calls by default), so it resolves first, with the same rule:
the span's own value wins, else the nearest ancestor's, and `inherited` records
`{key: {value, from_span}}`. Ancestors that the window or the pushed-down filter left out (a root
that began before --since, a CHAIN span the kind filter skipped) are fetched by id, level by level,
through the source's `fetch_parents`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from oncall.sources.base import SpanSink
from oncall.store.schema import INHERITED_KEYS

Key = tuple[str, str]  # (trace id, span id), as the mapping normalised them
FetchParents = Callable[[list[Key]], Iterable[dict[str, Any]]]  # canonical rows of those spans
MAX_DEPTH = 64  # as the local resolver


class Collect:
    """A sink for a format's own record mapper (phoenix.add_record, mlflow_traces.add_trace) that keeps
    the rows here, so they are resolved (Ancestry) before they reach the pull's sink; problems go
    straight on (or nowhere, for an ancestor that only lends keys)."""

    def __init__(self, sink: SpanSink | None) -> None:
        self.sink = sink
        self.rows: list[dict[str, Any]] = []
        self.problems = sink.problems if sink is not None else []
        self.note: str | None = None

    @property
    def added(self) -> int:
        return len(self.rows)

    def add(self, row: dict[str, Any], line: int | None = None) -> None:
        self.rows.append(row)

    def progress(self, done: int) -> None:
        return None  # a pull reports rows received itself

    def problem(self, line: int | None, kind: str, message: str) -> None:
        if self.sink is not None:
            self.sink.problem(line, kind, message)
        else:
            self.problems.append((line, kind, message))


class Ancestry:
    """The parent and own cohort keys of every span seen, to fill a span's missing keys."""

    def __init__(self, fetch_parents: FetchParents | None) -> None:
        self.fetch_parents = fetch_parents
        self.spans: dict[Key, tuple[str | None, dict[str, Any]]] = {}
        self.unknown: set[Key] = set()  # asked for and not found: never asked again

    def remember(self, row: dict[str, Any]) -> None:
        tid, sid = row.get("trace_id"), row.get("span_id")
        if tid and sid:
            own = {k: row[k] for k in INHERITED_KEYS if row.get(k) is not None}
            self.spans[(tid, sid)] = (row.get("parent_id") or None, own)

    def resolve(self, rows: list[dict[str, Any]]) -> None:
        """Fill every row's missing cohort keys from its nearest ancestor (fetching ancestors not seen)."""
        for row in rows:
            self.remember(row)
        if self.fetch_parents is not None:
            for _ in range(MAX_DEPTH):
                wanted = self._missing(rows)
                if not wanted:
                    break
                found = set()
                for parent in self.fetch_parents(sorted(wanted)):
                    self.remember(parent)
                    found.add((parent.get("trace_id"), parent.get("span_id")))
                self.unknown |= wanted - found
        for row in rows:
            self._fill(row)

    def _missing(self, rows: list[dict[str, Any]]) -> set[Key]:
        """Ancestors of rows lacking a key that are neither known nor known to be missing."""
        wanted: set[Key] = set()
        for row in rows:
            if all(row.get(k) is not None for k in INHERITED_KEYS):
                continue
            tid = row.get("trace_id")
            parent = row.get("parent_id")
            for _ in range(MAX_DEPTH):
                if not parent:
                    break
                key = (tid, parent)
                if key in self.unknown:
                    break
                known = self.spans.get(key)
                if known is None:
                    wanted.add(key)
                    break
                parent = known[0]
        return wanted

    def _fill(self, row: dict[str, Any]) -> None:
        lacking = [k for k in INHERITED_KEYS if row.get(k) is None]
        if not lacking:
            return
        tid = row.get("trace_id")
        parent = row.get("parent_id")
        got: dict[str, Any] = {}
        for _ in range(MAX_DEPTH):
            if not parent or not lacking:
                break
            known = self.spans.get((tid, parent))
            if known is None:
                break
            grand, own = known
            for k in list(lacking):
                if k in own:
                    row[k] = own[k]
                    got[k] = {"value": own[k], "from_span": parent}
                    lacking.remove(k)
            parent = grand
        if got:
            prior = row.get("inherited") if isinstance(row.get("inherited"), dict) else {}
            row["inherited"] = {**prior, **got}
