"""The generic request-log importer: JSONL / JSON array / CSV / Parquet, inferred fields and --map."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from click.testing import CliRunner

from oncall.cli import cli
from oncall.ingest.loader import LoadError, load_paths
from oncall.ingest.registry import LoadOptions

R1 = {"request_id": "r1", "timestamp": "2026-03-01T10:00:00Z", "model": "gpt-4o", "tenant": "acme",
      "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}],
      "response": {"id": "chatcmpl-1", "model": "gpt-4o-2024-11-20",
                   "choices": [{"message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}},
      "latency_ms": 420, "cost": "0.001"}
R2 = {"request_id": "r2", "timestamp": 1772359260, "model": "gpt-4o", "tenant": "globex", "prompt": "what?",
      "output": "that", "status": 429, "error": "Rate limit exceeded"}
R3 = {"request_id": "r3", "timestamp": 1772359260123, "model": "gpt-4o", "meta": {"customer": "initech"},
      "prompt": "x", "response": {"text": "y"}}


def spans(db) -> dict[str, dict]:
    cur = db.cursor()
    cur.execute("SELECT * FROM spans ORDER BY source_line")
    cols = [d[0] for d in cur.description]
    return {r[cols.index("request_id")]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}


def us(row, col) -> int:
    return int(row[col].timestamp() * 1_000_000)


def test_jsonl_mixed_shapes_and_bad_line(db, tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join([json.dumps(R1), json.dumps(R2), "not json", "", "[1, 2]", json.dumps(R3)]) + "\n")
    rep = load_paths(db, [str(p)])
    assert rep.files[0].format == "generic"
    assert [(x.line, x.kind) for x in rep.problems] == [(3, "invalid-json"), (5, "not-an-object")]
    s = spans(db)
    r1, r2, r3 = s["r1"], s["r2"], s["r3"]
    assert (r1["source_line"], r2["source_line"], r3["source_line"]) == (1, 2, 6)
    assert (r1["model"], r1["served_model"], r1["response_id"], r1["finish_reason"]) == (
        "gpt-4o", "gpt-4o-2024-11-20", "chatcmpl-1", "stop")
    assert (r1["input_tokens"], r1["output_tokens"], r1["total_tokens"], r1["cost"]) == (10, 3, 13, 0.001)
    assert json.loads(r1["input_messages"]) == R1["messages"] and r1["output_text"] == "hi there"
    assert us(r1, "end_time") - us(r1, "start_time") == 420_000 and r1["latency_ms"] == 420
    assert (r2["status"], r2["error_type"], r2["http_status"], r2["error"]) == (
        "error", "rate_limit", 429, "Rate limit exceeded")
    assert us(r2, "start_time") == 1772359260 * 1_000_000  # epoch seconds
    assert us(r3, "start_time") == 1772359260123 * 1000  # epoch milliseconds
    assert (r2["input_text"], r2["output_text"], r3["output_text"]) == ("what?", "that", "y")
    assert json.loads(r3["raw"]) == R3  # the lossless record


@pytest.mark.parametrize("block", [1 << 20, 64, 200])
def test_jsonl_blocks_keep_line_numbers_and_name_every_bad_line(db, tmp_path: Path, monkeypatch, block: int) -> None:
    """Lines go to DuckDB in blocks (many per block, or a line longer than a block): numbering, CRLF,
    blank lines, bad JSON, non-objects and invalid UTF-8 are the same wherever a block boundary falls."""
    from oncall.ingest.formats import generic

    monkeypatch.setattr(generic, "BLOCK_BYTES", block)
    recs = [dict(R2, request_id=f"g{i}") for i in range(8)]
    lines = [json.dumps(recs[0]).encode(), json.dumps(recs[1]).encode() + b"\r", b"", b"  \t",
             b'{"request_id": "broken', json.dumps(recs[2]).encode(), b'"just a string"',
             b'{"request_id": "bad-\xff-utf8"}', b"   " + json.dumps(recs[3]).encode(),
             json.dumps(recs[4]).encode()]
    p = tmp_path / "blocks.jsonl"
    p.write_bytes(b"\n".join(lines))  # no final newline: the last line still counts
    rep = load_paths(db, [str(p)])
    assert sorted((x.line, x.kind) for x in rep.problems) == [(5, "invalid-json"), (7, "not-an-object"),
                                                               (8, "invalid-utf8")]
    s = spans(db)
    assert {k: v["source_line"] for k, v in s.items()} == {"g0": 1, "g1": 2, "g2": 6, "g3": 9, "g4": 10}
    assert json.loads(s["g1"]["raw"]) == recs[1] and not s["g1"]["raw"].endswith("\r")


def test_jsonl_many_brackets_but_shallow_loads_and_too_deep_is_named(db, tmp_path: Path) -> None:
    """A line with more brackets than the depth limit is only suspected of being too deep: the shallow
    one loads (with its neighbours), the deep one is named and skipped."""
    wide = {"request_id": "wide", "prompt": "p", "output": "o", "items": [{"k": [i]} for i in range(1500)]}
    deep = '{"request_id": "deep", "v": ' + "[" * 3000 + "]" * 3000 + "}"
    p = tmp_path / "wide.jsonl"
    p.write_text("\n".join([json.dumps(R2), json.dumps(wide), deep, json.dumps(dict(R2, request_id="after"))]) + "\n")
    rep = load_paths(db, [str(p)])
    assert [(x.line, x.kind) for x in rep.problems] == [(3, "too-deep")]
    s = spans(db)
    assert {k: v["source_line"] for k, v in s.items()} == {"r2": 1, "wide": 2, "after": 4}
    assert json.loads(s["wide"]["raw"]) == wide and len({v["span_pk"] for v in s.values()}) == 3


def test_map_nested_paths_and_unknown_field(db, tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps(R3) + "\n")
    rep = load_paths(db, [str(p)], options=LoadOptions(column_map={"tenant": "meta.customer", "output": "response.text"}))
    assert rep.problems == []
    assert spans(db)["r3"]["tenant"] == "initech"
    bad = load_paths(db, [str(tmp_path / "log.jsonl")], options=LoadOptions(column_map={"colour": "x"}))
    assert bad.files[0].status == "failed"
    assert "unknown field 'colour'" in bad.problems[0].message and "tenant" in bad.problems[0].message


def test_csv_with_json_cells_and_parquet(db, tmp_path: Path) -> None:
    c = tmp_path / "log.csv"
    with c.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "created_at", "model", "customer", "input", "output", "tokens_in", "tokens_out", "meta"])
        w.writerow(["c1", "2026-03-01 10:00:00", "gpt-4o", "acme", "hi, there", "multi\nline", "5", "7",
                    json.dumps({"release": "2026.3"})])
        w.writerow(["c2", "2026-03-01 10:00:05", "gpt-4o", "globex", "q", "a", "x", "", "{}"])
    rep = load_paths(db, [str(c)], options=LoadOptions(column_map={"tenant": "customer", "release": "meta.release"}))
    assert rep.problems == [] and rep.files[0].format == "generic"
    s = spans(db)
    assert (s["c1"]["tenant"], s["c1"]["release"], s["c1"]["output_text"]) == ("acme", "2026.3", "multi\nline")
    assert (s["c1"]["input_tokens"], s["c2"]["input_tokens"]) == (5, None)  # a wrong type is NULL, not a crash
    assert (s["c1"]["source_line"], s["c2"]["source_line"]) == (2, 3)
    pq_path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"request_id": ["p1"], "timestamp": [1772359200.5], "model": ["m"],
                             "usage": [{"prompt_tokens": 3, "completion_tokens": 4}], "output": ["o"]}), pq_path)
    rep = load_paths(db, [str(pq_path)])
    assert rep.problems == [] and rep.files[0].format == "generic"
    p1 = spans(db)["p1"]
    assert (p1["input_tokens"], p1["output_tokens"], p1["output_text"]) == (3, 4, "o")
    assert us(p1, "start_time") == 1772359200_500000


def test_json_array_and_compressed(db, tmp_path: Path) -> None:
    arr = tmp_path / "log.json"
    arr.write_text(json.dumps([R1, R2]))
    gz = tmp_path / "log.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps(R3) + "\n").encode()))
    zs = tmp_path / "logs.zst"  # no telling extension: detected from content
    zs.write_bytes(zstandard.ZstdCompressor().compress(
        (json.dumps({**R3, "request_id": "z1"}) + "\n").encode()))
    gzcsv = tmp_path / "x.data"
    gzcsv.write_bytes(gzip.compress(b"request_id,model,output\ng1,gpt-4o,hello\n"))
    rep = load_paths(db, [str(arr), str(gz), str(zs), str(gzcsv)])
    assert rep.problems == [] and [f.format for f in rep.files] == ["generic"] * 4
    assert set(spans(db)) == {"r1", "r2", "r3", "z1", "g1"}


def test_strict_writes_nothing_and_reload_adds_nothing(db, tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps(R1) + "\nbroken\n" + json.dumps(R2) + "\n")
    with pytest.raises(LoadError, match=r"log.jsonl:2: not valid JSON"):
        load_paths(db, [str(p)], options=LoadOptions(strict=True))
    assert db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == 0
    assert load_paths(db, [str(p)]).spans_added == 2
    again = load_paths(db, [str(p)])
    assert again.files[0].status == "already-loaded" and again.spans_added == 0
    copy = tmp_path / "copy.jsonl"  # same records in another file: deduplicated by id
    copy.write_text(json.dumps(R1) + "\n")
    assert load_paths(db, [str(copy)]).spans_added == 0
    assert db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == 2


def test_cli_map_and_bad_map(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps(R3) + "\n")
    db = str(tmp_path / "i.duckdb")
    res = CliRunner().invoke(cli, ["load", "--db", db, "--json", "--map", "tenant=meta.customer", str(p)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["summary"]["tenants"] == [{"value": "initech", "spans": 1, "llm_calls": 1}]
    res = CliRunner().invoke(cli, ["load", "--db", db, "--map", "tenant", str(p)])
    assert res.exit_code == 2 and "expected FIELD=PATH" in res.output


@pytest.mark.parametrize("text", ["a,b\n1,2\n", '{"x": 1}\n'])
def test_records_without_llm_fields_still_load(db, tmp_path: Path, text: str) -> None:
    p = tmp_path / "f.txt"
    p.write_text(text)
    rep = load_paths(db, [str(p)])
    assert rep.files[0].status == "loaded" and rep.spans_added == 1


def test_redaction_prefilter_never_misses() -> None:
    """The cheap prefilter must match wherever a redaction pattern would; else secrets slip through."""
    import re

    from oncall.redact import PREFILTER, redact_text

    secrets = ['"authorization": "Bearer abcdefghijklmnopqrstuvwxyz0123"', "sk-proj-abcdefghijklmnopqrstuvwx1234",
               '"x-api-key": "k1"', '"OPENAI_API_KEY": "zzz"', '"password": "hunter2"', "AKIAABCDEFGHIJKLMNOP",
               "ghp_" + "a" * 36, "xoxb-1234567890-abc", "AIza" + "b" * 35, "pk-lf-" + "0" * 24,
               '"access_token": "t"', '"Cookie": "sid=1"', "lsv2_pt_" + "c" * 24]
    for s in secrets:
        assert redact_text(s) != s, s
        assert re.search(PREFILTER, s), s
    assert not re.search(PREFILTER, '{"input_tokens": 12, "model": "gpt-4o", "text": "the token budget"}')


def test_generic_load_redacts_secrets(db, tmp_path: Path) -> None:
    rec = {**R1, "headers": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz0123"},
           "prompt": "my key is sk-proj-abcdefghijklmnopqrstuvwx1234"}
    rec.pop("messages")
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps(rec) + "\n")
    assert load_paths(db, [str(p)]).problems == []
    row = db.cursor().execute("SELECT raw, input_text FROM spans").fetchone()
    assert "abcdefghijklmnop" not in row[0] and "sk-proj-abc" not in row[0] and "sk-proj" not in row[1]
    assert "[REDACTED]" in row[1]
