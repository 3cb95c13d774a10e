"""Schema migrations: a numbered list of small functions applied in order on open.

The database records its own version in `meta`; opening an older file upgrades it in one
transaction, opening a newer one is refused with a message (an older oncall must not guess).
Add a migration by appending a function; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from oncall.store.schema import spans_ddl


def _m1_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE span_pk_seq START 1")
    con.execute("CREATE SEQUENCE import_id_seq START 1")
    con.execute("CREATE SEQUENCE trail_id_seq START 1")
    con.execute(spans_ddl())
    # Every form of id a responder may paste (request id, provider response id, trace id, span id,
    # Langfuse/LangSmith ids) points at the span(s) it names; the ART index makes lookups ~ms.
    con.execute(
        """CREATE TABLE span_ids (
            id VARCHAR NOT NULL,
            id_kind VARCHAR NOT NULL,
            span_pk BIGINT NOT NULL
        )"""
    )
    con.execute("CREATE INDEX span_ids_id ON span_ids(id)")
    con.execute(
        """CREATE TABLE imports (
            import_id INTEGER PRIMARY KEY,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            size_bytes BIGINT,
            format VARCHAR,
            started_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ,
            spans BIGINT,
            duplicates BIGINT,
            problems BIGINT,
            status VARCHAR,
            options JSON
        )"""
    )
    con.execute(
        """CREATE TABLE problems (
            import_id INTEGER,
            file VARCHAR,
            line BIGINT,
            kind VARCHAR,
            message VARCHAR
        )"""
    )
    # The responder's trail: labels, free notes and a generic event log the timeline reads.
    con.execute(
        """CREATE TABLE labels (
            label_id BIGINT PRIMARY KEY,
            span_pk BIGINT NOT NULL,
            request_key VARCHAR,
            label VARCHAR NOT NULL,
            note VARCHAR,
            author VARCHAR,
            created_at TIMESTAMPTZ NOT NULL
        )"""
    )
    con.execute(
        """CREATE TABLE notes (
            note_id BIGINT PRIMARY KEY,
            text VARCHAR NOT NULL,
            author VARCHAR,
            created_at TIMESTAMPTZ NOT NULL
        )"""
    )
    con.execute(
        """CREATE TABLE trail (
            event_id BIGINT PRIMARY KEY,
            at_time TIMESTAMPTZ NOT NULL,
            actor VARCHAR,
            kind VARCHAR NOT NULL,
            summary VARCHAR NOT NULL,
            detail JSON
        )"""
    )


def _m2_request_notes(con: duckdb.DuckDBPyConnection) -> None:
    """Notes can be about one request (the reader's `n`), not only the incident."""
    con.execute("ALTER TABLE notes ADD COLUMN span_pk BIGINT")


MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [
    _m1_initial,
    _m2_request_notes,
]

SCHEMA_VERSION = len(MIGRATIONS)
