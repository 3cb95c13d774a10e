"""The contract every remote source implements (ClickHouse today; Phoenix, MLflow, Langfuse and
LangSmith APIs next): what a source is told (a reference, a time window, a filter) and what it
hands back (canonical span rows written into a sink, exactly as a file importer does).

A source module lives in oncall/sources/ and is named by one line in registry.SCHEMES. It exports

    def open_source(ref: SourceRef) -> Source

and raises SourceError for anything a responder must fix or wait out. Secrets reach a source only
through `ref.secret` (the environment or oncall.toml, never the URL) and are never part of
`ref.display`, which is what the incident, the trail, logs and error messages name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from oncall.errors import InputError
from oncall.ingest.contracts import RowSink
from oncall.query.filters import Filter

# Exit codes a source error maps to (cliutil): 2 = what was typed or configured cannot work (a bad
# URL, a database or table that does not exist, a table oncall cannot read, a bad filter); 1 = the
# source failed or refused (unreachable, TLS, authentication, the server's own limits).
EXIT_SOURCE_FAILED = 1
EXIT_SOURCE_USAGE = 2


class SourceError(Exception):
    """One line naming the source and what to change. Never holds a secret (messages pass through
    `scrub` with the source's secret before they are raised)."""

    def __init__(self, message: str, *, exit_code: int = EXIT_SOURCE_FAILED, kind: str = "source") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind


class SourceUsageError(SourceError, InputError):
    """A source reference, option or filter that cannot work as given (exit 2)."""

    def __init__(self, message: str, *, kind: str = "usage") -> None:
        super().__init__(message, exit_code=EXIT_SOURCE_USAGE, kind=kind)


@dataclass(frozen=True)
class SourceRef:
    """A parsed source reference. `secret` is never printed: repr and display leave it out."""

    scheme: str
    host: str | None
    port: int | None
    user: str | None
    path: str  # the URL path without its leading slash (a database, a project, a file)
    params: Mapping[str, str]
    name: str | None = None  # the [sources.NAME] it came from, if any
    secret: str | None = field(default=None, repr=False)
    secret_from: str | None = None  # where the secret came from ("$CLICKHOUSE_PASSWORD", "oncall.toml …")

    @property
    def display(self) -> str:
        """The reference as the incident, the trail and error messages name it: no secret."""
        user = f"{self.user}@" if self.user else ""
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        # `langsmith://PROJECT` names a project where a host would be: no slash before it.
        path = self.path if self.path.startswith("/") or not (self.host or self.user) else f"/{self.path}"
        text = f"{self.scheme}://{user}{host}{port}{path}" + (f"?{query}" if query else "")
        return f"@{self.name} ({text})" if self.name else text

    def scrub(self, text: str) -> str:
        """`text` with this reference's secret cut out (errors from drivers may echo a DSN)."""
        if self.secret:
            text = text.replace(self.secret, "***")
        return text


@dataclass(frozen=True)
class Window:
    """The time range a pull or an in-place question covers: [since, until), UTC."""

    since: dt.datetime
    until: dt.datetime

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise SourceUsageError(f"--until ({self.until.isoformat()}) must be after --since "
                                   f"({self.since.isoformat()})")


# Where a source writes canonical span rows: the import contract every file format writes to too
# (the load path's writer, ingest.writer.FileWriter).
SpanSink = RowSink


Progress = Callable[[int], None]  # rows received so far


@dataclass
class PullStats:
    """What one pull moved: rows received from the source, bytes on the wire where known."""

    rows: int = 0
    bytes: int | None = None
    notes: list[str] = field(default_factory=list)


class Source(Protocol):
    """A remote place spans live. One per command; `close()` when done."""

    ref: SourceRef
    format: str  # the load format the incident records (imports.format), e.g. "clickhouse-otel"

    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        """Write every span in the window that matches the filter into `sink` (canonical rows, through
        the same mapping as the file importers); at most `limit` LLM calls when given."""
        ...

    def identity(self) -> str:
        """A stable text naming what is read (server, database, table): recorded with each pull."""
        ...

    def close(self) -> None: ...
