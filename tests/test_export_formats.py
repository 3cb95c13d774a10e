"""Exports written by servers that cannot run here, built from the server's own export code (cited).

Langfuse's blob-storage integration writes the traces and observations tables as JSONL, CSV or
Parquet with ClickHouse's column names: langfuse/langfuse `packages/shared/src/server/repositories/
observations.ts` `getObservationsForBlobStorageExport` (id, trace_id, project_id, environment, type,
parent_observation_id, start_time, end_time, name, metadata, level, status_message, version, input,
output, provided_model_name, model_parameters, usage_details, cost_details, completion_start_time,
prompt_name, prompt_version) and `traces.ts` `getTracesForBlobStorageExport` (id, timestamp, name,
environment, project_id, metadata, user_id, session_id, release, version, public, bookmarked, tags,
input, output). Maps (`usage_details`, `cost_details`, `metadata`) are ClickHouse maps: objects in
JSONL, JSON text in CSV, MAP columns in Parquet.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from exporter_checks import spans

from oncall.ingest.loader import load_paths
from oncall.store import open_db

TRACE_ID = "7c1f3e0a9b2d4c6e8f0a1b2c3d4e5f60"
TRACES = [{"id": TRACE_ID, "timestamp": "2026-11-30 10:00:00.000", "name": "support_ticket", "environment": "prod",
           "project_id": "p1", "metadata": {"tenant": "acme", "feature": "support_chat"}, "user_id": "user-7",
           "session_id": "sess-42", "release": "2.3.1", "version": None, "public": False, "bookmarked": False,
           "tags": ["prod"], "input": json.dumps("Where is my order?"), "output": json.dumps("On its way.")}]


def _obs(i: int, **kw: Any) -> dict[str, Any]:
    base = {"id": f"{i:016x}", "trace_id": TRACE_ID, "project_id": "p1", "environment": "prod", "type": "GENERATION",
            "parent_observation_id": None, "start_time": f"2026-11-30 10:00:0{i}.000",
            "end_time": f"2026-11-30 10:00:0{i}.800", "name": "OpenAI-generation", "metadata": {}, "level": "DEFAULT",
            "status_message": None, "version": None,
            "input": json.dumps([{"role": "user", "content": f"question {i}"}]),
            "output": json.dumps({"role": "assistant", "content": f"answer {i}"}),
            "provided_model_name": "gpt-4o-mini", "model_parameters": json.dumps({"temperature": 0}),
            "usage_details": {"input": 10 + i, "output": 5 + i, "total": 15 + 2 * i},
            "cost_details": {"input": 0.0001, "output": 0.0002, "total": 0.0003},
            "completion_start_time": f"2026-11-30 10:00:0{i}.250", "prompt_name": "support-bot", "prompt_version": 13}
    base.update(kw)
    return base


OBSERVATIONS = [
    _obs(1), _obs(2),
    _obs(3, level="ERROR", status_message="Error code: 429 - Rate limit reached", output=None, usage_details={},
         cost_details={}),
    _obs(4, type="SPAN", name="retrieve", provided_model_name=None, usage_details={}, cost_details={},
         prompt_name=None, prompt_version=None),
]


def _write(fmt: str, rows: list[dict[str, Any]], path: Path, maps: tuple[str, ...]) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else "" if v is None else v
                            for k, v in r.items()})
    else:
        src = path.with_suffix(".json")
        src.write_text(json.dumps(rows))
        con = duckdb.connect()
        cols = ", ".join(
            f"CAST({k} AS MAP(VARCHAR, DOUBLE)) AS {k}" if k in maps and k != "metadata"
            else f"CAST({k} AS MAP(VARCHAR, VARCHAR)) AS {k}" if k == "metadata"
            else f"CAST({k} AS TIMESTAMP) AS {k}" if k in ("timestamp", "start_time", "end_time", "completion_start_time")
            else k for k in rows[0])
        con.execute(f"COPY (SELECT {cols} FROM read_json('{src}', format='array')) TO '{path}' (FORMAT parquet)")
        con.close()
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_langfuse_blob_storage_export(fmt, tmp_path):
    traces = _write(fmt, TRACES, tmp_path / f"traces.{fmt}", ("metadata",))
    obs = _write(fmt, OBSERVATIONS, tmp_path / f"observations.{fmt}", ("usage_details", "cost_details", "metadata"))
    db = open_db(tmp_path / "i.duckdb")
    try:
        report = load_paths(db, [str(traces), str(obs)])
        assert [(f.format, f.status) for f in report.files] == [("langfuse-export", "loaded")] * 2, report.to_dict()
        assert report.problems == []
        rows = {r["span_id"]: r for r in spans(db)}
        llm = sorted((r for r in rows.values() if r["kind"] == "llm"), key=lambda r: r["start_us"])
        assert len(llm) == 3 and rows[f"{4:016x}"]["kind"] == "span"
        for i, r in enumerate(llm[:2], start=1):
            assert (r["model"], r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (
                "gpt-4o-mini", 10 + i, 5 + i, 15 + 2 * i)
            assert r["input_messages"] == [{"role": "user", "content": f"question {i}"}]
            assert r["output_messages"] == [{"role": "assistant", "content": f"answer {i}"}]
            assert r["ttft_ms"] == pytest.approx(250.0) and r["cost"] == pytest.approx(0.0003)
            assert (r["prompt_name"], r["prompt_version"]) == ("support-bot", "13")
        failed = llm[2]
        assert (failed["status"], failed["error_type"], failed["http_status"]) == ("error", "rate_limit", 429)
        # the observation table has no user or session: they come from the trace rows, by inheritance
        for r in llm:
            assert (r["user_id"], r["session_id"], r["tenant"], r["feature"], r["env"]) == (
                "user-7", "sess-42", "acme", "support_chat", "prod"), r["span_id"]
    finally:
        db.close()


# -- Logfire: rows of the records table, as its query API answers -----------------------------------------
def _records_rows(otlp_jsonl: Path) -> list[dict[str, Any]]:
    """The `records` rows Logfire keeps for these spans (pydantic/logfire docs/reference/sql.md: span_name,
    message from logfire.msg, attributes as JSON without the logfire.* columns' sources, otel_events,
    otel_status_code/message, exception_* from the first exception event, otel_resource_attributes,
    otel_scope_name, hex ids, UTC timestamps)."""
    import datetime as dt

    def iso(ns: str) -> str:
        return dt.datetime.fromtimestamp(int(ns) / 1e9, dt.UTC).isoformat(timespec="microseconds")

    def plain(kvs: list[dict[str, Any]]) -> dict[str, Any]:
        return {kv["key"]: next(iter(kv["value"].values()), None) for kv in kvs or []}

    rows = []
    for line in otlp_jsonl.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            resource = plain(rs["resource"].get("attributes", []))
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    attrs = plain(sp.get("attributes", []))
                    exc = next((plain(e.get("attributes", [])) for e in sp.get("events", [])
                                if e["name"] == "exception"), None)
                    code = {0: "UNSET", 1: "OK", 2: "ERROR"}[int(sp.get("status", {}).get("code", 0))]
                    rows.append({
                        "start_timestamp": iso(sp["startTimeUnixNano"]), "end_timestamp": iso(sp["endTimeUnixNano"]),
                        "trace_id": sp["traceId"], "span_id": sp["spanId"], "parent_span_id": sp.get("parentSpanId") or None,
                        "kind": "span", "span_name": sp["name"], "message": attrs.pop("logfire.msg", sp["name"]),
                        "level": 17 if code == "ERROR" else 9, "attributes": attrs,
                        "otel_events": [{"name": e["name"], "timestamp": iso(e["timeUnixNano"]),
                                         "attributes": plain(e.get("attributes", []))} for e in sp.get("events", [])],
                        "otel_status_code": code, "otel_status_message": sp.get("status", {}).get("message"),
                        "is_exception": exc is not None,
                        "exception_type": (exc or {}).get("exception.type"),
                        "exception_message": (exc or {}).get("exception.message"),
                        "otel_resource_attributes": resource, "service_name": resource.get("service.name"),
                        "otel_scope_name": ss["scope"]["name"], "tags": []})
    return rows


@pytest.fixture(scope="module")
def pydantic_ai_spans(tmp_path_factory) -> Path:
    """pydantic-ai (the test extra) over the scenario, written by the OTLP file exporter: once per module."""
    import sys

    pytest.importorskip("pydantic_ai")
    from exporter_checks import run_generator
    from openai_server import OpenAIServer

    otlp = tmp_path_factory.mktemp("pydantic-ai") / "spans.jsonl"
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(sys.executable, "gen_pydantic_ai.py", "--base-url", srv.base_url, "--out", str(otlp))
    return otlp


@pytest.mark.parametrize("shape", ["json_rows", "json_columns", "csv"])
def test_logfire_query_export_matches_the_spans(shape, pydantic_ai_spans, tmp_path):
    """The same spans as Logfire's records rows load to the same calls as their OTLP export, whichever
    way the query API hands them out."""
    otlp = pydantic_ai_spans
    rows = _records_rows(otlp)
    # a pending span, as records_full holds it: never a row of its own
    rows.append({**rows[0], "span_id": "ffffffffffffffff", "kind": "pending_span"})
    out = tmp_path / f"records.{'csv' if shape == 'csv' else 'json'}"
    if shape == "json_rows":
        out.write_text(json.dumps({"columns": [{"name": k} for k in rows[0]], "rows": rows}))
    elif shape == "json_columns":
        out.write_text(json.dumps({"columns": [{"name": k, "values": [r[k] for r in rows]} for k in rows[0]]}))
    else:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else "" if v is None else v
                            for k, v in r.items()})
    keep = ("trace_id", "span_id", "parent_id", "kind", "model", "served_model", "input_tokens", "output_tokens",
            "status", "error_type", "session_id", "user_id", "tenant", "input_messages", "output_messages", "ttft_ms")
    got = {}
    for name, path in (("otlp", otlp), ("logfire", out)):
        db = open_db(tmp_path / f"{name}.duckdb")
        try:
            report = load_paths(db, [str(path)])
            assert report.problems == [], report.to_dict()
            if name == "logfire":
                assert report.files[0].format == "logfire"
            got[name] = sorted(tuple(json.dumps(r[k], sort_keys=True, default=str) for k in keep) for r in spans(db))
        finally:
            db.close()
    assert got["logfire"] == got["otlp"]
    assert sum(1 for r in got["otlp"] if json.loads(r[3]) == "llm") == 5
