"""Schema migrations: a numbered list of small functions applied in order on open.

The database records its own version in `meta`; opening an older file upgrades it in one
transaction, opening a newer one is refused with a message (an older oncall must not guess).
Add a migration by appending a function; never edit one that has shipped. Shipped migrations are
literal SQL: calling live code (the current spans DDL) would silently rewrite what they did.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

# The spans table as schema version 1 shipped it (frozen; new columns go in a later migration).
_SPANS_V1 = """CREATE TABLE spans (
    span_pk BIGINT,
    import_id INTEGER,
    source_file VARCHAR,
    source_format VARCHAR,
    source_line BIGINT,
    trace_id VARCHAR,
    span_id VARCHAR,
    parent_id VARCHAR,
    request_id VARCHAR,
    response_id VARCHAR,
    name VARCHAR,
    kind VARCHAR,
    span_kind VARCHAR,
    start_time TIMESTAMPTZ,
    end_time TIMESTAMPTZ,
    latency_ms DOUBLE,
    ttft_ms DOUBLE,
    provider VARCHAR,
    model VARCHAR,
    served_model VARCHAR,
    session_id VARCHAR,
    user_id VARCHAR,
    tenant VARCHAR,
    feature VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    env VARCHAR,
    release VARCHAR,
    service VARCHAR,
    status VARCHAR,
    error_type VARCHAR,
    error VARCHAR,
    http_status INTEGER,
    input_tokens BIGINT,
    output_tokens BIGINT,
    total_tokens BIGINT,
    cached_tokens BIGINT,
    reasoning_tokens BIGINT,
    cost DOUBLE,
    finish_reason VARCHAR,
    input_messages JSON,
    output_messages JSON,
    tool_calls JSON,
    input_text VARCHAR,
    output_text VARCHAR,
    attributes JSON USING COMPRESSION zstd,
    inherited JSON,
    raw JSON USING COMPRESSION zstd
)"""


def _m1_initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SEQUENCE span_pk_seq START 1")
    con.execute("CREATE SEQUENCE import_id_seq START 1")
    con.execute("CREATE SEQUENCE trail_id_seq START 1")
    con.execute(_SPANS_V1)
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
