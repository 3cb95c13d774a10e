"""Questions asked of a source (`changes --source`, `compare --source`, `watch --source`) answered on
a scratch incident: the window's matching LLM calls pulled (load_source, the one mapping) into a
throwaway database in a temporary directory, then the same core functions as on a local incident.

This is the reference path: every definition is the local one by construction, at the cost of
moving the window's rows. Computing the signals inside ClickHouse and bringing back only aggregates
(issue 20 item 4) is the next step on top of the metric registry; bench/clickhouse.py measures what
this path costs so the two can be compared.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oncall.query.filters import Filter, parse_filter
from oncall.sources.base import Progress, PullStats, Window
from oncall.sources.pull import load_source, window_of
from oncall.sources.registry import open_source
from oncall.store import open_db
from oncall.store.db import IncidentDB


@contextmanager
def scratch_incident(text: str, since: str | None, until: str | None, flt: Filter | list[str] | None = None, *,
                     progress: Progress | None = None) -> Iterator[tuple[IncidentDB, Window, PullStats]]:
    """A throwaway incident holding the window's LLM calls that match `flt`; removed on exit."""
    flt = parse_filter(flt)
    window = window_of(since, until, flt)
    source = open_source(text)
    tmp = Path(tempfile.mkdtemp(prefix="oncall-source-"))
    store = None
    try:
        store = open_db(tmp / "scratch.duckdb")
        _, stats = load_source(store, source, window, flt, progress=progress)
        yield store, window, stats
    finally:
        source.close()
        if store is not None:
            store.close()
        shutil.rmtree(tmp, ignore_errors=True)
