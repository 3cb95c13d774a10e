"""The store as the core's functions see it: typed contracts instead of `db: Any`.

`ReadStore` is what a builder that only reads needs (the timeline, the postmortem draft): the
incident's path and a cursor. The console hands builders a `tui.inflight.StoreOn`, one private
interruptible connection, and it satisfies this. `Store` is the incident database itself
(store.db.IncidentDB): reads, plus the journal's writes and `refresh()` to fold in what others wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import duckdb

Row = dict[str, Any] | Callable[[list[int]], dict[str, Any]]  # a row, or a row made from the ids before it


@runtime_checkable
class ReadStore(Protocol):
    path: Path
    read_only: bool

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread, in UTC, over every view (spans, labels, trail …)."""
        ...


@runtime_checkable
class Store(ReadStore, Protocol):
    def refresh(self) -> bool:
        """Fold in journal entries other processes wrote since; True if anything changed."""
        ...

    def append(self, table: str, row: dict[str, Any]) -> int:
        """Append one row to a trail table; its id (durable before returning)."""
        ...

    def append_many(self, rows: list[tuple[str, Row]]) -> list[int]:
        """Append rows all or nothing; a row may be computed from the ids of the rows before it."""
        ...

    def record_event(self, kind: str, summary: str, detail: dict[str, Any] | None = None,
                     actor: str | None = None) -> int:
        """An event on the trail (the timeline reads it)."""
        ...
