"""Link retrieval spans to the LLM call they fed, when a load finishes (the writer's second step).

Within one trace:

1. **An embedding span serves the retrieval that covers or follows it**: the first retrieval (by
   start) that ends at or after the embedding ends and starts no later than EMBED_GAP after it
   (LlamaIndex nests the query's embedding in the retriever; OpenLLMetry writes it as the sibling
   just before the vector-store query). A retrieval that does not name its embedding model takes
   the embedding span's.
2. **A retrieval feeds the first LLM call that starts after it ends** (RAG: retrieve, then answer;
   an agent: a tool call's search feeds the next model turn). A call inside the retrieval (a
   query rewrite) starts before the retrieval ends, so it is not fed by it.
3. **The LLM call takes its retrievals' columns**: documents (all of them, in order), their count
   (summed), the top score (the best), the index, embedding model and query of the last retrieval
   before it, the time spent retrieving (summed), the age of the newest dated document; and
   `retrieval_span` names the last retrieval, whose `fed_span` names the call.

So `retrieved<1`, `index=…` and the retrieval metrics read LLM calls directly, as any column.

Runs over the traces the load touched, spans loaded before included (a live receiver writes the
retrieval in one part and the call in the next). A span loaded before that gains a link is copied
into this load's part and listed in `superseded`, as cohort inheritance does: the earlier parts,
which others are reading, are never written.
"""

from __future__ import annotations

import duckdb

from oncall.store.schema import RETRIEVAL_COLUMNS, SPAN_COLUMN_NAMES

EMBED_GAP_S = 2.0  # an embedding span serves a retrieval starting at most this long after it ends
# A call may start this much before its retrieval's recorded end and still follow it: exports that
# round times to the millisecond (Langfuse, LangSmith) can put the next span's start a hair earlier.
ORDER_SLACK_MS = 1

_LINKED = [*RETRIEVAL_COLUMNS, "retrieval_span", "fed_span"]


def link_retrievals(con: duckdb.DuckDBPyConnection, import_id: int, traces: str, prior: str,
                    copy_from: str | None = None) -> int:
    """Link the retrievals of the traces `traces` (SQL selecting trace ids) to their calls; `prior`
    is the incident's view without this load's part (or a table of the columns read here of its
    rows in these traces), `copy_from` where whole rows of it are copied from (default `prior`).
    Returns how many spans changed."""
    iid = int(import_id)
    _doc_ages(con, iid)
    cols = ", ".join(["span_pk", "trace_id", "span_id", "kind", "start_time", "end_time", "latency_ms", *_LINKED])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _oncall_rl AS
            WITH touched AS ({traces}),
            own AS (SELECT {cols}, true AS own FROM spans
                    WHERE trace_id IN (SELECT trace_id FROM touched) AND kind IN ('retriever', 'embedding', 'llm'))
            SELECT * FROM own
            UNION ALL
            SELECT {cols}, false AS own FROM {prior}
            WHERE trace_id IN (SELECT trace_id FROM touched) AND kind IN ('retriever', 'embedding', 'llm')
              AND span_pk NOT IN (SELECT span_pk FROM own)""")
    try:
        has = con.execute("SELECT count(*) FILTER (WHERE kind = 'retriever'), count(*) FILTER (WHERE own) "
                          "FROM _oncall_rl").fetchall()[0]
        if not has[0] or not has[1]:
            return 0
        return _link(con, iid, copy_from or prior)
    finally:
        con.execute("DROP TABLE IF EXISTS _oncall_rl")
        con.execute("DROP TABLE IF EXISTS _oncall_rl_new")


def _doc_ages(con: duckdb.DuckDBPyConnection, iid: int) -> None:
    """doc_age_s of this load's retrieval spans: start minus the newest dated document (ISO dates,
    as retrieval.document writes them)."""
    con.execute(
        f"""UPDATE spans SET doc_age_s = greatest(0.0, epoch(spans.start_time) - epoch(d.newest))
            FROM (SELECT span_pk, max(TRY_CAST(u AS TIMESTAMPTZ)) AS newest
                  FROM (SELECT span_pk, unnest(json_extract_string(retrieved_docs, '$[*].updated_at')) AS u
                        FROM spans WHERE import_id = {iid} AND retrieved_docs IS NOT NULL
                          AND kind = 'retriever')
                  GROUP BY 1) d
            WHERE spans.span_pk = d.span_pk AND d.newest IS NOT NULL AND spans.doc_age_s IS NULL""")


def _link(con: duckdb.DuckDBPyConnection, iid: int, prior: str) -> int:
    slack = f"INTERVAL {ORDER_SLACK_MS} MILLISECOND"
    gap = f"INTERVAL {int(EMBED_GAP_S * 1000)} MILLISECOND"
    # The new value of every linked column of every span concerned, computed over the whole trace.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _oncall_rl_new AS
        WITH r AS (SELECT * FROM _oncall_rl WHERE kind = 'retriever'),
        e AS (SELECT * FROM _oncall_rl WHERE kind = 'embedding' AND embedding_model IS NOT NULL),
        l AS (SELECT * FROM _oncall_rl WHERE kind = 'llm'),
        -- 1. each embedding span's retrieval
        e_to_r AS (
            SELECT e.span_pk AS e_pk, e.embedding_model,
                   arg_min(r.span_pk, (r.start_time, r.span_pk)) AS r_pk,
                   any_value(e.start_time) AS e_start
            FROM e JOIN r ON r.trace_id = e.trace_id AND r.end_time >= e.end_time
                         AND r.start_time <= e.end_time + {gap}
            GROUP BY 1, 2),
        r_emb AS (SELECT r_pk, arg_min(embedding_model, e_start) AS model FROM e_to_r GROUP BY 1),
        r2 AS (SELECT r.*, coalesce(r.embedding_model, r_emb.model) AS emb
               FROM r LEFT JOIN r_emb ON r_emb.r_pk = r.span_pk),
        -- 2. each retrieval's call
        r_to_l AS (
            SELECT r2.span_pk AS r_pk, arg_min(l.span_pk, (l.start_time, l.span_pk)) AS l_pk
            FROM r2 JOIN l ON l.trace_id = r2.trace_id AND l.start_time >= r2.end_time - {slack}
            GROUP BY 1),
        fed AS (SELECT r2.*, r_to_l.l_pk FROM r2 JOIN r_to_l ON r_to_l.r_pk = r2.span_pk),
        -- 3. each call's retrievals, folded
        l_new AS (
            SELECT l_pk AS span_pk,
                   arg_max(retrieval_query, end_time) FILTER (WHERE retrieval_query IS NOT NULL) AS retrieval_query,
                   CASE WHEN count(retrieved_docs) > 0  -- none: no retrieval said what came back
                        THEN to_json(flatten(list(coalesce(json_extract(retrieved_docs, '$[*]'), []::JSON[])
                                                  ORDER BY start_time, span_pk))) END AS retrieved_docs,
                   sum(retrieved)::INTEGER AS retrieved,
                   max(top_score) AS top_score,
                   arg_max(emb, end_time) FILTER (WHERE emb IS NOT NULL) AS embedding_model,
                   arg_max(retrieval_index, end_time) FILTER (WHERE retrieval_index IS NOT NULL) AS retrieval_index,
                   sum(latency_ms) AS retrieval_ms,
                   min(doc_age_s) AS doc_age_s,
                   arg_max(span_id, (end_time, span_pk)) AS retrieval_span,
                   NULL::VARCHAR AS fed_span
            FROM fed GROUP BY 1),
        r_new AS (
            SELECT r2.span_pk, r2.retrieval_query, r2.retrieved_docs, r2.retrieved, r2.top_score,
                   r2.emb AS embedding_model, r2.retrieval_index, coalesce(r2.retrieval_ms, r2.latency_ms),
                   r2.doc_age_s,
                   r2.retrieval_span, l.span_id AS fed_span
            FROM r2 LEFT JOIN r_to_l ON r_to_l.r_pk = r2.span_pk LEFT JOIN l ON l.span_pk = r_to_l.l_pk),
        e_new AS (
            SELECT e.span_pk, e.retrieval_query, e.retrieved_docs, e.retrieved, e.top_score, e.embedding_model,
                   e.retrieval_index, e.retrieval_ms, e.doc_age_s, e.retrieval_span, r_new.fed_span
            FROM e JOIN e_to_r ON e_to_r.e_pk = e.span_pk JOIN r_new ON r_new.span_pk = e_to_r.r_pk)
        SELECT * FROM l_new UNION ALL SELECT * FROM r_new UNION ALL SELECT * FROM e_new""")
    changed = " OR ".join(f"(n.{c}::VARCHAR IS DISTINCT FROM o.{c}::VARCHAR)" for c in _LINKED)
    # Spans loaded before whose link changes: copied into this part first, superseding the old copy.
    gains = con.execute(
        f"""SELECT o.span_pk FROM _oncall_rl o JOIN _oncall_rl_new n ON n.span_pk = o.span_pk
            WHERE NOT o.own AND ({changed})""").fetchall()
    if gains:
        pks = ", ".join(str(int(r[0])) for r in gains)
        con.execute(f"INSERT INTO spans SELECT {', '.join(SPAN_COLUMN_NAMES)} FROM {prior} "
                    f"WHERE span_pk IN ({pks})")
        con.execute(f"INSERT INTO superseded SELECT span_pk, {iid} FROM {prior} WHERE span_pk IN ({pks})")
    sets = ", ".join(f"{c} = n.{c}" for c in _LINKED)
    n = con.execute(
        f"""UPDATE spans SET {sets} FROM _oncall_rl_new n, _oncall_rl o
            WHERE spans.span_pk = n.span_pk AND o.span_pk = n.span_pk AND ({changed})""").fetchall()
    return int(n[0][0]) if n else 0
