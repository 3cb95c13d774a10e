"""Generic request logs: JSON Lines (or one JSON array), CSV with a header, Parquet — with a column mapping.

Every record is one LLM call. Which field holds what is inferred from the names present (the
first match of `DEFAULTS`), and `--map FIELD=PATH` says it explicitly (`--map output=response.text`,
`--map tenant=meta.customer`). PATH is dotted into nested JSON; a CSV cell that holds JSON is
reached the same way.

The hot path is DuckDB: Python only cuts JSON Lines into (line number, text) batches handed to DuckDB
as Arrow; validation, parsing, field extraction and conversion are one SQL statement per batch.
CSV and Parquet rows are turned into JSON objects by DuckDB's own readers (`to_json(row)`), so the
same extraction SQL serves every container. A malformed line is reported as `file:line` and skipped.

The lossless record is `raw` (the line itself, or the row as JSON); `attributes` stays empty for
generic rows, and `meta.KEY` filters read nested keys from `raw`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from oncall.ingest import jsonio
from oncall.ingest.contracts import BulkSink
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, iter_line_blocks, iter_lines, read_head, truncated
from oncall.redact import sql_redact
from oncall.store.schema import RETRIEVAL_SPAN_COLUMNS

NAME = "generic"
DESCRIPTION = "generic request logs: JSON Lines / JSON array / CSV / Parquet, fields inferred or given with --map"

# JSON Lines go to DuckDB in blocks of about this many bytes of input (a few thousand 3 KB records):
# big enough that per-statement costs vanish, small enough that memory stays flat.
BLOCK_BYTES = 32 << 20
SAMPLE_RECORDS = 200

# Canonical fields a mapping can name, and the candidate source paths tried when --map is silent.
# "input"/"output" take messages, a request/response object or plain text; "response" takes an
# OpenAI chat.completion (output, served model, usage and id come from it).
DEFAULTS: dict[str, list[str]] = {
    "request_id": ["request_id", "requestId", "req_id", "custom_id", "id"],
    "trace_id": ["trace_id", "traceId"],
    "span_id": ["span_id", "spanId"],
    "parent_id": ["parent_id", "parentId", "parent_span_id"],
    "response_id": ["response_id", "response.id", "completion_id"],
    "session_id": ["session_id", "sessionId", "session", "conversation_id", "thread_id", "metadata.session_id"],
    "user_id": ["user_id", "userId", "user", "end_user", "metadata.user_id"],
    "tenant": ["tenant", "tenant_id", "tenantId", "customer", "org", "org_id", "team", "metadata.tenant"],
    "feature": ["feature", "use_case", "workflow", "metadata.feature"],
    "prompt_name": ["prompt_name", "prompt_id", "template", "metadata.prompt_name"],
    "prompt_version": ["prompt_version", "promptVersion", "template_version", "metadata.prompt_version"],
    "env": ["env", "environment", "metadata.env"],
    "release": ["release", "app_version", "version", "metadata.release"],
    "service": ["service", "service_name", "app"],
    "name": ["name", "endpoint", "operation"],
    "kind": ["kind", "type"],
    "provider": ["provider", "llm_provider", "vendor"],
    "model": ["model", "request.model", "model_requested", "requested_model"],
    "served_model": ["served_model", "response.model", "model_served", "response_model"],
    "start_time": ["start_time", "timestamp", "ts", "time", "created_at", "startTime", "request_time", "created"],
    "end_time": ["end_time", "endTime", "finished_at"],
    "latency_ms": ["latency_ms", "duration_ms", "elapsed_ms", "latencyMs"],
    "latency_s": ["latency_s", "duration_s", "response_time", "latency", "duration"],
    "ttft_ms": ["ttft_ms", "time_to_first_token_ms"],
    "status": ["status", "outcome", "result"],
    "http_status": ["http_status", "status_code", "statusCode", "response.status_code"],
    "error": ["error", "error_message", "error.message", "err"],
    "input_tokens": ["input_tokens", "prompt_tokens", "usage.prompt_tokens", "usage.input_tokens",
                     "response.usage.prompt_tokens", "tokens_in"],
    "output_tokens": ["output_tokens", "completion_tokens", "usage.completion_tokens", "usage.output_tokens",
                      "response.usage.completion_tokens", "tokens_out"],
    "total_tokens": ["total_tokens", "usage.total_tokens", "response.usage.total_tokens", "tokens"],
    "cached_tokens": ["cached_tokens", "usage.prompt_tokens_details.cached_tokens"],
    "reasoning_tokens": ["reasoning_tokens", "usage.completion_tokens_details.reasoning_tokens"],
    "cost": ["cost", "cost_usd", "total_cost", "response_cost", "price", "usage.cost"],
    "finish_reason": ["finish_reason", "response.choices.0.finish_reason", "stop_reason"],
    "input": ["messages", "input_messages", "request.messages", "input", "input_text", "prompt", "request.prompt", "question", "query"],
    "output": ["response.choices.0.message.content", "output_messages", "output", "output_text", "completion", "response_text", "answer",
               "response.text", "response.output_text", "response"],
}
ALIASES = {"timestamp": "start_time", "time": "start_time", "user": "user_id", "session": "session_id",
           "latency": "latency_ms", "duration_ms": "latency_ms", "prompt": "input", "messages": "input",
           "completion": "output", "response_text": "output", "request": "request_id", "id": "request_id",
           "tokens_in": "input_tokens", "tokens_out": "output_tokens", "finish": "finish_reason",
           "input_text": "input", "output_text": "output"}
FIELDS = sorted(DEFAULTS)

# A flat request log has no retrieval spans: its rows leave the retrieval columns empty.
_NO_RETRIEVAL = ", ".join(f"NULL AS {c}" for c in RETRIEVAL_SPAN_COLUMNS)


# -- detection -------------------------------------------------------------------------------------
def _looks_csv(text: str) -> bool:
    lines = [ln for ln in text.split("\n")[:5] if ln.strip()]
    if len(lines) < 1 or lines[0].lstrip()[:1] in "{[":
        return False
    n = lines[0].count(",")
    return n >= 1 and all(ln.count(",") >= 1 for ln in lines[1:]) and len(lines[0]) < 10_000


def container(head: Head) -> str | None:
    if head.is_parquet:
        return "parquet"
    if isinstance(head.first_line_obj, dict) and not isinstance(head.doc, list):
        return "jsonl"
    if isinstance(head.doc, list) and head.doc and isinstance(head.doc[0], dict):
        return "json-array"
    if head.text and _looks_csv(head.text):
        return "csv"
    return None


def sniff(head: Head) -> bool:
    return container(head) is not None


# -- mapping ---------------------------------------------------------------------------------------
def normalize_map(column_map: dict[str, str]) -> dict[str, str]:
    """--map keys as canonical field names; an unknown name is an error listing the valid ones."""
    out = {}
    for key, path in column_map.items():
        k = ALIASES.get(key.strip(), key.strip())
        if k not in DEFAULTS:
            raise FormatError(f"--map {key}={path}: unknown field {key!r}; fields: {', '.join(FIELDS)} "
                              f"(aliases: {', '.join(sorted(ALIASES))})")
        if not path.strip():
            raise FormatError(f"--map {key}=: empty source path")
        out[k] = path.strip()
    return out


def _paths_of(obj: Any, prefix: str = "", depth: int = 0) -> set[str]:
    """Every dotted path in a record (list items as .0), for matching the default candidates."""
    out: set[str] = set()
    if isinstance(obj, dict) and depth < 6:
        for k, v in obj.items():
            p = f"{prefix}{k}"
            out.add(p)
            if isinstance(v, str) and v[:1] in "{[" and depth < 2:
                try:
                    v = jsonio.loads(v)  # CSV cells and double-encoded fields holding JSON
                except ValueError:
                    pass
            out |= _paths_of(v, p + ".", depth + 1)
    elif isinstance(obj, list) and obj and depth < 6:
        out.add(prefix + "0")
        out |= _paths_of(obj[0], f"{prefix}0.", depth + 1)
    return out


def choose_mapping(samples: list[dict[str, Any]], explicit: dict[str, str]) -> dict[str, list[str]]:
    """For each field, the source paths to try in order: the --map path alone, or every default
    candidate present in the sampled records (logs mix shapes: `messages` on one line, `prompt` on another)."""
    present: set[str] = set()
    for s in samples:
        present |= _paths_of(s)
    mapping: dict[str, list[str]] = {}
    for fld, candidates in DEFAULTS.items():
        if fld in explicit:
            mapping[fld] = [explicit[fld]]
            continue
        found = [c for c in candidates if c in present and c not in explicit.values()]
        if fld == "output" and "response.choices" in present and "response" in found:
            found.remove("response")  # a chat.completion: its message content is already a candidate
        if found:
            mapping[fld] = found
    return mapping


# -- SQL -------------------------------------------------------------------------------------------
def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _json_path(parts: list[str]) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if p.isdigit() else '."' + p.replace('"', '\\"') + '"'
    return out


class _Paths:
    """The source paths one SELECT reads, extracted with a single JSON parse per row.

    `json_extract_string(j, [paths])` parses the record once and returns every value; a field then
    reads its slot of that list. CSV cells that hold JSON (`meta.release` where `meta` is a cell)
    need a second look inside the string: only CSV/Parquet rows pay for that (`nested_strings`).
    """

    def __init__(self, nested_strings: bool) -> None:
        self.nested = nested_strings
        self.str_paths: list[str] = []
        self.json_paths: list[str] = []

    def _slot(self, paths: list[str], path: str) -> int:
        if path not in paths:
            paths.append(path)
        return paths.index(path) + 1

    def value(self, path: str, as_json: bool = False) -> str:
        parts = path.split(".")
        slot = f"vj[{self._slot(self.json_paths, _json_path(parts))}]"
        # Strings come out of the one JSON list too: unquoting a small JSON value is cheap, a second
        # parse of the whole 3 KB record is not.
        expr = slot if as_json else f"({slot} ->> '$')"
        if not self.nested or len(parts) == 1:
            return expr
        fn = "json_extract" if as_json else "json_extract_string"
        alts = [expr]
        for i in range(1, min(len(parts), 3)):
            inner = f"(vj[{self._slot(self.json_paths, _json_path(parts[:i]))}] ->> '$')"
            alts.append(f"{fn}(CASE WHEN json_valid({inner}) THEN {inner} END, {_sql_str(_json_path(parts[i:]))})")
        return f"coalesce({', '.join(alts)})"

    def values(self, paths: list[str], as_json: bool = False) -> str:
        exprs = [self.value(p, as_json) for p in paths]
        return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"

    def extract_sql(self, validate: bool = False) -> str:
        """The one parse of each record. `validate`: a record that is not valid JSON gets a NULL `vj`
        (try() instead of an error that would stop the batch), so the caller can drop it."""
        if not self.json_paths:
            return "CASE WHEN json_valid(j) THEN []::JSON[] END AS vj" if validate else "[]::JSON[] AS vj"
        extract = f"json_extract(j, [{', '.join(_sql_str(p) for p in self.json_paths)}])"
        return f"{'try(' + extract + ')' if validate else extract} AS vj"


def object_start(col: str) -> str:
    """SQL: the text in `col` starts (after whitespace) like a JSON object."""
    return f"regexp_matches({col}, '^[ \\t\\r\\n]*\\{{')"


def _time(expr: str) -> str:
    """Epoch s/ms/us/ns numbers (unit by magnitude) or ISO/SQL timestamp strings, as TIMESTAMPTZ.

    Zone-less times are UTC whatever the session's or the machine's zone (README): an epoch is
    made a TIMESTAMPTZ with timezone('UTC', …), never a `::TIMESTAMPTZ` cast (which reads the
    session zone), and text gets `+00` appended, which parses only when it carries no zone of its
    own (`…Z`, `…+05:30`, `… America/New_York` then keep theirs). A bare date is its midnight UTC.
    """
    num = f"TRY_CAST({expr} AS DOUBLE)"
    txt = f"trim(CAST({expr} AS VARCHAR))"
    as_utc = f"(CASE WHEN length({txt}) = 10 THEN {txt} || ' 00:00:00' ELSE {txt} END) || '+00'"
    # A number that no unit reads as a time between 1973 and 5138 (1e20, or 253402300800: year
    # 10000 in seconds, 1978 in ms) is infinity here, which validate.py reports and skips.
    return (f"CASE WHEN {num} IS NOT NULL THEN coalesce(timezone('UTC', make_timestamp(CAST(CASE "
            f"WHEN abs({num}) < 1e11 THEN {num} * 1e6 WHEN abs({num}) >= 1e12 AND abs({num}) < 1e14 THEN {num} * 1e3 "
            f"WHEN abs({num}) >= 1e15 AND abs({num}) < 1e17 THEN {num} "
            f"WHEN abs({num}) >= 1e18 AND abs({num}) < 9e18 THEN {num} / 1e3 END AS BIGINT))), "
            f"'infinity'::TIMESTAMPTZ) "
            f"ELSE coalesce(TRY_CAST({as_utc} AS TIMESTAMPTZ), TRY_CAST({txt} AS TIMESTAMPTZ)) END")


_ERROR_CLASS = """CASE
    WHEN e_text IS NULL AND (hs IS NULL OR hs < 400) THEN NULL
    WHEN regexp_matches(e_text, '(?i)insufficient_quota|quota|billing|exceeded your current|credit balance') THEN 'quota'
    WHEN hs = 429 OR regexp_matches(e_text, '(?i)rate.?limit|too many requests|\\b429\\b|ratelimit|throttl') THEN 'rate_limit'
    WHEN hs IN (408, 504) OR regexp_matches(e_text, '(?i)time.?out|timed out|deadline exceeded') THEN 'timeout'
    WHEN regexp_matches(e_text, '(?i)content.?filter|content_policy|safety|moderation') THEN 'content_filter'
    WHEN hs BETWEEN 500 AND 599 OR regexp_matches(e_text, '(?i)\\b5\\d\\d\\b|internal server error|service unavailable|bad gateway|overloaded') THEN 'server'
    WHEN hs BETWEEN 400 AND 499 THEN 'client'
    ELSE 'other' END"""


def select_sql(mapping: dict[str, list[str]], source: str, *, nested_strings: bool = False,
               validate: bool = False) -> str:
    """The one SELECT turning (line, _row, j) rows of `source` into canonical columns (`_row`: see FileWriter).

    `validate=True` (JSON Lines) keeps only the rows whose `j` is a JSON object and skips the rest,
    which the caller names (see _insert_batch): the same single parse validates and extracts."""
    paths = _Paths(nested_strings)

    def s(field: str) -> str:
        return paths.values(mapping[field]) if field in mapping else "NULL"

    def num(field: str, typ: str) -> str:
        return f"TRY_CAST({s(field)} AS {typ})" if field in mapping else "NULL"

    inp = paths.values(mapping["input"], as_json=True) if "input" in mapping else "NULL::JSON"
    out = paths.values(mapping["output"], as_json=True) if "output" in mapping else "NULL::JSON"
    start = _time(s("start_time")) if "start_time" in mapping else "NULL::TIMESTAMPTZ"
    end = _time(s("end_time")) if "end_time" in mapping else "NULL::TIMESTAMPTZ"
    lat = (f"coalesce({num('latency_ms', 'DOUBLE')}, {num('latency_s', 'DOUBLE')} * 1000.0)"
           if "latency_ms" in mapping or "latency_s" in mapping else "NULL")
    status_raw = f"lower({s('status')})" if "status" in mapping else "NULL"
    body = f"""
    base AS (
        SELECT line, _row, j, vj,
            {inp} AS inp, {out} AS outp,
            {start} AS st, {end} AS en, {lat} AS lat,
            {num('http_status', 'INTEGER')} AS hs_raw,
            {s('error')} AS err_raw,
            {status_raw} AS status_raw
        FROM parsed
    ), typed AS (
        -- JSON values are text: every json_* call parses again, so each value's type is taken once.
        SELECT *, json_type(inp) AS inp_t, json_type(outp) AS outp_t FROM base
    ), shaped AS (
        SELECT *,
            CASE WHEN inp IS NULL THEN NULL
                 WHEN inp_t = 'ARRAY' THEN inp
                 WHEN inp_t = 'OBJECT' AND json_type(inp, '$.messages') = 'ARRAY' THEN inp -> '$.messages'
                 WHEN inp_t = 'OBJECT' AND json_exists(inp, '$.role') THEN json_array(inp)
                 ELSE json_array(json_object('role', 'user', 'content',
                        CASE WHEN inp_t = 'VARCHAR' THEN inp ->> '$' ELSE inp::VARCHAR END)) END AS in_msgs,
            CASE WHEN outp IS NULL THEN NULL
                 WHEN outp_t = 'VARCHAR' THEN outp ->> '$'
                 WHEN outp_t = 'OBJECT' AND json_exists(outp, '$.choices') THEN outp ->> '$.choices[0].message.content'
                 WHEN outp_t = 'OBJECT' AND json_exists(outp, '$.content') THEN outp ->> '$.content'
                 WHEN outp_t = 'OBJECT' AND json_exists(outp, '$.text') THEN outp ->> '$.text'
                 WHEN outp_t = 'NULL' THEN NULL
                 WHEN outp_t = 'ARRAY' THEN coalesce(outp ->> '$[#-1].content', outp::VARCHAR)
                 ELSE outp::VARCHAR END AS out_text,
            coalesce(hs_raw, CASE WHEN regexp_matches(status_raw, '^[1-5][0-9][0-9]$') THEN CAST(status_raw AS INTEGER) END) AS hs
        FROM typed
    ), classified AS (
        SELECT *,
            CASE WHEN err_raw IS NOT NULL AND err_raw NOT IN ('', 'null', 'None', 'false') THEN err_raw END AS e_msg,
            CASE WHEN status_raw IN ('error', 'failure', 'failed', 'fail', 'err', 'exception', 'false') OR hs >= 400
                   OR (err_raw IS NOT NULL AND err_raw NOT IN ('', 'null', 'None', 'false')) THEN 'error'
                 WHEN status_raw IS NULL AND hs IS NULL THEN 'ok'
                 ELSE 'ok' END AS st_norm
        FROM shaped
    ), final AS (
        SELECT *, coalesce(e_msg, CASE WHEN st_norm = 'error' THEN coalesce(status_raw, CAST(hs AS VARCHAR)) END) AS e_text
        FROM classified
    )
    SELECT
        _row, NULL AS source_file, NULL AS source_format, line AS source_line,
        coalesce({s('trace_id')}, {s('span_id')}, {s('request_id')}) AS trace_id,
        coalesce({s('span_id')}, {s('request_id')}) AS span_id,
        {s('parent_id')} AS parent_id,
        {s('request_id')} AS request_id,
        coalesce({s('response_id')}, CASE WHEN outp_t = 'OBJECT' THEN outp ->> '$.id' END) AS response_id,
        coalesce({s('name')}, 'request') AS name,
        coalesce(lower({s('kind')}), 'llm') AS kind,
        NULL AS span_kind,
        st AS start_time,
        coalesce(en, CASE WHEN st IS NOT NULL AND lat IS NOT NULL THEN try(st + to_microseconds(TRY_CAST(lat * 1000 AS BIGINT))) END) AS end_time,
        coalesce(lat, CASE WHEN en IS NOT NULL AND st IS NOT NULL THEN epoch_us(en) / 1000.0 - epoch_us(st) / 1000.0 END) AS latency_ms,
        {num('ttft_ms', 'DOUBLE')} AS ttft_ms,
        lower({s('provider')}) AS provider,
        {s('model')} AS model,
        coalesce({s('served_model')}, CASE WHEN outp_t = 'OBJECT' THEN outp ->> '$.model' END) AS served_model,
        {s('session_id')} AS session_id, {s('user_id')} AS user_id, {s('tenant')} AS tenant,
        {s('feature')} AS feature, {s('prompt_name')} AS prompt_name, {s('prompt_version')} AS prompt_version,
        {s('env')} AS env, {s('release')} AS release, {s('service')} AS service,
        st_norm AS status,
        CASE WHEN st_norm = 'error' THEN {_ERROR_CLASS} END AS error_type,
        e_msg AS error,
        hs AS http_status,
        coalesce({num('input_tokens', 'BIGINT')}, TRY_CAST(outp ->> '$.usage.prompt_tokens' AS BIGINT)) AS input_tokens,
        coalesce({num('output_tokens', 'BIGINT')}, TRY_CAST(outp ->> '$.usage.completion_tokens' AS BIGINT)) AS output_tokens,
        coalesce({num('total_tokens', 'BIGINT')}, TRY_CAST(outp ->> '$.usage.total_tokens' AS BIGINT),
                 {num('input_tokens', 'BIGINT')} + {num('output_tokens', 'BIGINT')}) AS total_tokens,
        {num('cached_tokens', 'BIGINT')} AS cached_tokens,
        {num('reasoning_tokens', 'BIGINT')} AS reasoning_tokens,
        {num('cost', 'DOUBLE')} AS cost,
        lower(coalesce({s('finish_reason')}, CASE WHEN outp_t = 'OBJECT' THEN outp ->> '$.choices[0].finish_reason' END)) AS finish_reason,
        in_msgs AS input_messages,
        CASE WHEN outp_t = 'ARRAY' THEN outp
             WHEN out_text IS NOT NULL THEN json_array(json_object('role', 'assistant', 'content', out_text)) END
            AS output_messages,
        NULL AS tool_calls,
        CASE WHEN in_msgs IS NOT NULL THEN array_to_string(json_extract_string(in_msgs, '$[*].content'), chr(10)) END AS input_text,
        out_text AS output_text,
        NULL AS attributes, NULL AS inherited,
        j AS raw,
        NULL AS cost_source,  -- set when the load finishes (ingest.cost)
        {_NO_RETRIEVAL}
    FROM final
    """
    # Every path is known only now that the body is built: parse each record once, up front.
    parsed = f"SELECT line, _row, j, {paths.extract_sql(validate)} FROM {source}"
    if validate:
        parsed = f"SELECT * FROM ({parsed} WHERE {object_start('j')}) WHERE vj IS NOT NULL"
    return f"WITH parsed AS ({parsed}),{body}"


# -- reading ---------------------------------------------------------------------------------------
def _samples_jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _, line in iter_lines(path):
        if len(out) >= SAMPLE_RECORDS:
            break
        try:
            obj = jsonio.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


# A line nested deeper than jsonio.MAX_DEPTH has at least that many opening brackets; only lines that
# long pay for counting them (about one JSON parse), and only the few that have that many are parsed
# again in Python, after the insert.
_MAYBE_TOO_DEEP = ("(length(text) > 2048 AND length(text) - length(replace(replace(text, '[', ''), '{', '')) "
                   f"> {jsonio.MAX_DEPTH})")
_BLANK = "regexp_full_match(text, '[ \\t\\r\\n\\x0b\\x0c]*')"


def _insert_batch(sink: BulkSink, first_line: int, lines: pa.Array, select: str) -> None:
    """Insert one block of lines (numbered from `first_line`); lines that are not JSON objects are
    reported and skipped, blank lines skipped silently.

    Each record is parsed once: the SELECT's extraction is wrapped in try() and keeps only lines
    that parse as an object. Only a block that came up short is looked at again (the second
    parse of every line, a separate validation pass, was a fifth of a 200k-line load), to name
    its bad lines; that runs on the insert thread right after the insert, on the same block.
    """
    n = len(lines)
    tbl = pa.table({"line": pa.array(range(first_line, first_line + n), pa.int64()), "text": lines,
                    "_row": pa.array(range(n), pa.int64())})
    sink.insert_select(_lines_select(select, f"NOT {_MAYBE_TOO_DEEP}"), redacted=True,
                       arrow=("_oncall_lines", tbl),
                       after=lambda con, added: _skipped_lines(sink, con, tbl, added, select))


def _lines_select(select: str, where: str) -> str:
    # Secrets are redacted once on the whole record (every column is cut from it), not per column.
    # The block is read through a relation, never con.register(): a registered batch stays alive
    # until the file's transaction commits, so memory grew with the file.
    return select.replace("{source}", f"(SELECT line, _row, {sql_redact('text')} AS j "
                                      f"FROM _oncall_lines WHERE {where})")


def _skipped_lines(sink: BulkSink, con: Any, tbl: pa.Table, added: int, select: str) -> None:
    """Name the lines of a block the insert skipped, and insert those that were only suspected of
    being nested too deep. Runs on the insert thread right after the block's insert, only when short."""
    if added >= len(tbl):
        return
    rows = con.from_arrow(tbl).query(
        "_oncall_lines",
        f"SELECT line, _row, {_BLANK} AS blank, json_valid(text) AS valid, {object_start('text')} AS obj, "
        f"{_MAYBE_TOO_DEEP} AS deep FROM _oncall_lines "
        f"WHERE {_BLANK} OR NOT json_valid(text) OR NOT {object_start('text')} OR {_MAYBE_TOO_DEEP} "
        "ORDER BY line").fetchall()
    fine: list[int] = []
    for line, row, blank, valid, obj, deep in rows:
        if blank:
            continue
        if valid and obj and deep:
            try:  # DuckDB reads any depth; every later reader (Python) stops at jsonio.MAX_DEPTH
                jsonio.loads(tbl.column("text")[row].as_py())
                fine.append(row)
            except ValueError as exc:
                sink.problem(int(line), "too-deep", f"{exc}; line skipped")
            continue
        sink.problem(int(line), "invalid-json" if not valid else "not-an-object",
                     "not valid JSON; line skipped" if not valid else "line is not a JSON object; skipped")
    if fine:
        deep = tbl.take(pa.array(fine)).set_column(2, "_row", pa.array(range(len(fine)), pa.int64()))
        before = sink.added
        sink.insert_now(_lines_select(select, "true"), arrow=("_oncall_lines", deep))
        added += sink.added - before
    unexplained = len(tbl) - added - (len(rows) - len(fine))
    if unexplained:
        # The redactor keeps JSON valid (tests/test_redact.py); if a line still fell out, say so.
        sink.problem(None, "unreadable", f"{unexplained} line(s) of a block could not be read after "
                     "redaction; skipped")


def _block_lines(sink: BulkSink, first_line: int, block: memoryview) -> pa.Array:
    """The lines of a block as an Arrow string array, split without a Python object per line.

    A block that is not valid UTF-8 is split in Python instead, to name and blank its bad lines
    (a blank line is skipped like any other)."""
    data = pa.Array.from_buffers(pa.binary(), 1, [None, pa.array([0, len(block)], pa.int32()).buffers()[1],
                                                  pa.py_buffer(block)])
    lines = pc.split_pattern(data, "\n").flatten()
    try:
        lines = lines.cast(pa.string())
    except pa.ArrowInvalid:
        texts = []
        for i, raw in enumerate(bytes(block).split(b"\n")):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                sink.problem(first_line + i, "invalid-utf8",
                             f"invalid UTF-8 at byte {exc.start} of the line; line skipped")
                texts.append("")
        lines = pa.array(texts, pa.string())
    if pc.any(pc.ends_with(lines, "\r")).as_py():
        lines = pc.utf8_rtrim(lines, characters="\r")  # CRLF files: the line is what precedes \r\n
    return lines


def _read_jsonl(path: Path, sink: BulkSink, select: str) -> None:
    done = 0
    for first_line, block in iter_line_blocks(path, BLOCK_BYTES):
        done += len(block) + 1
        _insert_batch(sink, first_line, _block_lines(sink, first_line, block), select)
        sink.progress(done)  # bytes of (decompressed) input consumed
    sink.drain()


def _compression(path: Path) -> str:
    """By content, not by extension: DuckDB's own detection goes by the file name."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _duck_reader(kind: str, path: Path) -> str:
    p = _sql_str(str(path))
    comp = _sql_str(_compression(path))
    if kind == "parquet":
        return f"read_parquet({p})"
    if kind == "csv":
        # Comma-separated (what detection saw); a row with more or fewer fields than the header is
        # set aside in the rejects table with its line (reported by _report_csv_rejects): left to
        # the sniffer, one ragged row made the whole file one column of empty calls.
        return (f"read_csv({p}, header = true, all_varchar = true, compression = {comp}, delim = ',', "
                f"quote = '\"', escape = '\"', store_rejects = true, rejects_scan = '{_REJECTS}_scan', "
                f"rejects_table = '{_REJECTS}')")
    return f"read_json({p}, format = 'array', records = false, compression = {comp})"


_REJECTS = "_oncall_csv_rejects"


def _report_csv_rejects(sink: BulkSink) -> None:
    """Report the rows the last CSV scan set aside, at their lines, and renumber the loaded rows'
    lines (row_number() counted only the rows kept)."""
    con = sink.con
    rows = con.execute(
        f"""SELECT line, min(error_type), max(error_message) FROM {_REJECTS} GROUP BY line ORDER BY line""").fetchall()
    if not rows:
        return
    for line, kind, message in rows:
        sink.problem(int(line), "bad-csv-row", f"{str(kind).lower().replace('_', ' ')} ({message}); row skipped")
    # The k-th kept row (source_line k + 1) comes after every rejected line r_j (the j-th) with r_j - j - 1 < k.
    shifts = ", ".join(f"({int(line) - j - 1})" for j, (line, _, _) in enumerate(rows, start=1))
    con.execute(f"""UPDATE spans SET source_line = source_line + (
                        SELECT count(*) FROM (VALUES {shifts}) r(before) WHERE r.before < spans.source_line - 1)
                    WHERE import_id = ?""", [sink.import_id])


def read(path: Path, sink: BulkSink, options: LoadOptions) -> None:
    explicit = normalize_map(options.column_map)
    try:
        head = read_head(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    kind = container(head) or ("jsonl" if (head.text or "").lstrip()[:1] == "{" else None)
    if kind is None:
        raise FormatError(f"{path}: not JSON Lines, a JSON array of objects, CSV or Parquet")
    con = sink.con
    if kind == "jsonl":
        samples = _samples_jsonl(path)
        if not samples:
            raise FormatError(f"{path}: no JSON object lines found")
        select = select_sql(choose_mapping(samples, explicit), "{source}", validate=True)
        before = sink.added
        _read_jsonl(path, sink, select)
        added = sink.added - before
    else:
        reader = _duck_reader(kind, path)
        if kind == "json-array":
            source = f"(SELECT row_number() OVER () AS line, t.json::JSON AS j FROM {reader} t)"
        elif kind == "csv":
            source = f"(SELECT row_number() OVER () + 1 AS line, to_json(t) AS j FROM {reader} t)"
        else:
            source = f"(SELECT row_number() OVER () AS line, to_json(t) AS j FROM {reader} t)"
        try:
            samples = [json.loads(r[0]) for r in con.execute(f"SELECT j FROM {source} LIMIT {SAMPLE_RECORDS}").fetchall()]
            select = select_sql(choose_mapping([s for s in samples if isinstance(s, dict)], explicit), "{source}",
                                nested_strings=kind in ("csv", "parquet"))
            before = sink.added
            redacted_source = source.replace("AS j FROM", "AS j0 FROM")
            sink.insert_select(select.replace("{source}", f"(SELECT line, line - 1 AS _row, {sql_redact('j0::VARCHAR')} AS j "
                                                          f"FROM {redacted_source})"), redacted=True)
            added = sink.added - before
            if kind == "csv":
                _report_csv_rejects(sink)
        except Exception as exc:  # DuckDB reader errors name the row; pass them on as a format error
            if type(exc).__module__.lstrip("_").startswith("duckdb"):  # duckdb's classes live in _duckdb
                first = str(exc).splitlines()[0]
                comp = _compression(path)
                if comp != "none" and ("end of" in first.lower() or "truncat" in first.lower()):
                    raise FormatError(str(truncated(path, comp, first))) from None
                raise FormatError(f"{path}: {kind} cannot be read: {first}") from None
            raise
    if added == 0 and not sink.problems:
        raise FormatError(f"{path}: no records found")
