"""The seams of an import, as typed contracts: what a format module provides and what it writes into.

A new format (or a remote source pulling rows, oncall/sources) implements these, and a type checker
holds it to them, instead of the duck-typed module and `sink: Any` the registry used to document.

    # oncall/ingest/formats/myformat.py: a module is the format (PEP 544: modules satisfy protocols)
    NAME = "my-format"
    DESCRIPTION = "My exporter's JSON Lines"
    def sniff(head: Head) -> bool: ...
    def read(path: Path, sink: Sink, options: LoadOptions) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # the registry imports this module; these are only names for the type checker
    import duckdb
    import pyarrow as pa

    from oncall.ingest.registry import LoadOptions
    from oncall.ingest.source import Head

ProblemRecord = tuple[int | None, str, str]  # (line, kind, message)


@runtime_checkable
class RowSink(Protocol):
    """Where canonical span rows go, one at a time: a file's importer or a remote source's pull
    (oncall/sources: SpanSink is this).

    `add` takes one row whose keys are canonical columns (schema.IMPORTER_COLUMNS; an unknown key is a
    bug and raises KeyError). `problem` reports a record that cannot be used, by line, and the load
    goes on (with --strict it raises TooManyProblems and nothing of the file is written).
    """

    problems: list[ProblemRecord]

    def add(self, row: dict[str, Any], line: int | None = None) -> None: ...

    def problem(self, line: int | None, kind: str, message: str) -> None: ...


@runtime_checkable
class Sink(RowSink, Protocol):
    """What an importer writes one file into (ingest.writer.FileWriter): rows and problems, how far it
    has read (`progress`, for the bar), and a `note` for the file's line in the load summary."""

    added: int
    note: str | None

    def progress(self, done: int) -> None: ...


@runtime_checkable
class BulkSink(Sink, Protocol):
    """The same sink for importers that let DuckDB read the file (generic JSONL/CSV/Parquet, OTLP):
    SQL over the part being written instead of a Python row loop."""

    con: duckdb.DuckDBPyConnection  # the load part's connection
    import_id: int

    def insert_select(self, select_sql: str, params: list[Any] | None = None, *, redacted: bool = False,
                      arrow: tuple[str, pa.Table] | None = None,
                      after: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None) -> None: ...

    def insert_now(self, select_sql: str, *, arrow: tuple[str, pa.Table]) -> None: ...

    def add_arrow(self, table: pa.Table) -> None: ...

    def drain(self) -> None: ...


@runtime_checkable
class ImportFormat(Protocol):
    """A format module (oncall/ingest/formats/NAME.py), found by registry.ORDER.

    `sniff` decides from the file's head alone, never raises for foreign content, and is asked in
    ORDER (specific formats before general ones). `read` raises registry.FormatError only when
    nothing in the file is usable; a bad record is a `sink.problem`, never an exception.
    """

    NAME: str
    DESCRIPTION: str

    def sniff(self, head: Head) -> bool: ...

    def read(self, path: Path, sink: Sink, options: LoadOptions) -> None: ...
