"""Parquet exports read by DuckDB: the columns (for detection) and the rows as JSON records.

DuckDB reads the file (projection, decompression, nested types) and encodes each row as a JSON
object in its own threads; Python only hands each record to the one mapping, a batch at a time,
so memory stays flat in the file's size. Timestamps leave DuckDB as epoch microseconds (every
reader takes them by magnitude), so no time zone or text format stands between the file and the row.
Nulls inside structs (a dataframe's union of every row's keys) are dropped: absent, not null.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from oncall.ingest import jsonio

BATCH_ROWS = 2000


def _con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(config={"threads": 2})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def columns(path: Path) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the file's top-level columns; [] when DuckDB cannot read it."""
    try:
        with _con() as con:
            return [(r[0], r[1]) for r in con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
    except duckdb.Error:
        return []


def is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


class ParquetError(Exception):
    """DuckDB could not read the file (corrupt, truncated, not Parquet); the message names why."""


def records(path: Path, progress: Any = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based row number, record) for every row; timestamp columns as epoch microseconds.

    Raises ParquetError when DuckDB cannot read the file (rows already yielded stay yielded: the
    loader's file transaction makes the file all or nothing)."""
    try:
        yield from _records(path, progress)
    except duckdb.Error as exc:
        raise ParquetError(f"{path}: cannot read the Parquet file: {exc}") from None


def _records(path: Path, progress: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    cols = columns(path)
    if not cols:
        raise ParquetError(f"{path}: DuckDB cannot read the Parquet file's schema (corrupt or truncated?)")
    select = ", ".join(
        f"epoch_us(CAST({_quote(n)} AS TIMESTAMPTZ)) AS {_quote(n)}" if t.upper().startswith("TIMESTAMP")
        else _quote(n)
        for n, t in cols)
    with _con() as con:
        total = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
        cur = con.execute(f"SELECT to_json(t)::VARCHAR FROM (SELECT {select} FROM read_parquet(?)) t", [str(path)])
        n = 0
        while True:
            batch = cur.fetchmany(BATCH_ROWS)
            if not batch:
                break
            for (text,) in batch:
                n += 1
                yield n, _strip_nulls(jsonio.loads(text))
            if progress is not None:
                progress(n, total)
