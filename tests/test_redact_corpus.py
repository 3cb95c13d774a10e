"""No secret survives a load: every import format, every kind of secret, every place in a record.

Each format's file (tests/secretcorpus.py; the OTLP ones written by the real OpenTelemetry SDK
exporters) loads into a fresh database in its own directory. Then every column of every table is
read back, and after closing, every byte of every file in the database's directory is searched:
no needle may be found anywhere. Token counts and other look-alikes must survive.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import secretcorpus as sc

from oncall.ingest.loader import load_paths
from oncall.postmortem.evalset import build_cases, write_evalset
from oncall.redact import REDACTED
from oncall.store import open_db

NEEDLES = sc.needles()
FORMATS = ["otlp-protobuf", "otlp-protobuf:framed", "otlp-jsonl", "otlp-json", "otlp-json:bare", "otel-console",
           "otel-js-spans", "openai-agents", "mlflow-traces", "opik", "braintrust", "logfire", "logfire:csv",
           "logfire:parquet", "phoenix", "phoenix:parquet", "phoenix:otlpv1", "langfuse-trace", "langfuse-export",
           "langfuse-export:csv", "langfuse-export:parquet", "langsmith", "langsmith:parquet", "litellm",
           "openai-batch", "span-attributes", "generic", "generic:array", "generic:csv", "generic:parquet"]
BINARY = ("otlp-protobuf", "otlp-protobuf:framed", "logfire:parquet", "phoenix:parquet", "langfuse-export:parquet",
          "langsmith:parquet", "generic:parquet")


# formats that record no conversation (the batch output file holds only the answers): no eval set
NO_CONVERSATION = {"openai-batch"}

# formats whose file ends with records the importer rejects -> how many
BAD_LINES = {"otlp-jsonl": 1, "otel-js-spans": 2, "phoenix": 1, "langfuse-export": 1, "langsmith": 1, "litellm": 1,
             "openai-batch": 1, "generic": 1, "otlp-protobuf:framed": 1, "openai-agents": 1, "mlflow-traces": 1,
             "opik": 1, "braintrust": 1, "logfire": 1}


def _files(tmp_path: Path) -> dict[str, Path]:
    files = sc.build_files(tmp_path / "in")
    # Parquet: the generic CSV row, typed by pyarrow.
    import csv

    with open(files["generic:csv"], newline="") as fh:
        row = next(csv.DictReader(fh))
    pq.write_table(pa.table({k: [v] for k, v in row.items()}), tmp_path / "in" / "requests.parquet")
    files["generic:parquet"] = tmp_path / "in" / "requests.parquet"
    return files


def test_every_format_is_covered() -> None:
    """Every format, and every container a format reads through its own path (Parquet through
    oncall.ingest.parquet, CSV through records.csv_header), has a case."""
    import importlib

    from oncall.ingest import parquet, registry

    assert {f.split(":")[0] for f in FORMATS} == set(registry.names()) - {registry.NOT_DATA}
    for modname, name in registry.ORDER:
        if name == registry.NOT_DATA:
            continue
        mod = vars(importlib.import_module(f"oncall.ingest.formats.{modname}"))
        if any(v is parquet for v in mod.values()):
            assert f"{name}:parquet" in FORMATS, f"{name} reads Parquet: the corpus needs a {name}:parquet case"
        if "csv_header" in mod:
            assert f"{name}:csv" in FORMATS, f"{name} reads CSV: the corpus needs a {name}:csv case"


def test_the_corpus_carries_every_secret_in_every_file(tmp_path: Path) -> None:
    """The corpus itself is honest: each file holds the needles the checks below look for."""
    files = _files(tmp_path)
    for fmt, p in files.items():
        text = p.read_bytes().decode("utf-8", "replace")  # Parquet and protobuf keep strings as UTF-8 bytes
        missing = [what for n, what in NEEDLES.items() if n not in text and json.dumps(n)[1:-1] not in text]
        assert len(missing) < len(NEEDLES) // 2, (fmt, missing)
    everything = "".join(p.read_text() for f, p in files.items() if f not in BINARY)
    assert [what for n, what in NEEDLES.items() if n not in everything] == ["basic password"]  # only base64


def _all_cells(con) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every non-null cell of every table and view, in the base
    file, every attached load part and the in-memory tables folded from the journal."""
    out = []
    tables = con.execute("SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
                         "WHERE table_catalog NOT IN ('system', 'temp')").fetchall()
    assert {"spans", "span_ids", "imports", "problems", "labels", "notes", "trail", "meta"} <= {t[2] for t in tables}
    for cat, schema, t in tables:
        cols = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position", [cat, schema, t]).fetchall()]
        casts = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols)
        for row in con.execute(f'SELECT {casts} FROM "{cat}"."{schema}"."{t}"').fetchall():
            out += [(f"{cat}.{t}", c, v) for c, v in zip(cols, row, strict=True) if v is not None]
    return out


def _found(text: str) -> list[str]:
    return [f"{what} ({n[:12]}…)" for n, what in NEEDLES.items() if n in text or json.dumps(n)[1:-1] in text]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_secret_survives_a_load(tmp_path: Path, fmt: str) -> None:
    src = _files(tmp_path)[fmt]
    dbdir = tmp_path / "db"
    dbdir.mkdir()
    store = open_db(dbdir / "incident.duckdb")
    try:
        rep = load_paths(store, [str(src)])
        f = rep.files[0]
        assert f.status == "loaded" and f.spans >= 1, (f.status, f.note, [str(p) for p in f.problems])
        assert f.format == fmt.split(":")[0]
        from oncall.query.labels import add_label, add_note
        from oncall.redact import redact_text

        # The responder pastes a key into a note and a label note: the CLI and console redact first.
        # The label goes on a call with its conversation, so the eval set below exports it.
        pk = int(store.cursor().execute("SELECT coalesce(min(span_pk) FILTER (WHERE kind = 'llm' AND input_messages "
                                        "IS NOT NULL), min(span_pk)) FROM spans").fetchone()[0])
        add_note(store, redact_text(f"rotated {sc.SHAPED['openai']} and {sc.SHAPED['basic']}") or "")
        add_label(store, pk, "bad", redact_text(f"leaks password={sc.NAMED['password']}"))
        cur = store.cursor()
        leaks = [(t, c, hit) for t, c, v in _all_cells(cur) for hit in _found(v)]
        assert leaks == []
        # The token counts beside the secrets are kept, and so is the text that carried them (redacted):
        # a format that dropped its text would pass the search above without proving anything.
        assert cur.execute("SELECT max(input_tokens) FROM spans").fetchone()[0] == 42
        assert cur.execute(f"SELECT count(*) FROM spans WHERE output_text LIKE '%{REDACTED}%'").fetchone()[0] >= 1
        # What leaves the incident: the eval set of the labelled call, every field of it.
        if fmt not in NO_CONVERSATION:
            out = write_evalset(build_cases(cur), "jsonl", tmp_path / "evalset")
            assert [hit for p in out for hit in _found(p.read_text())] == []
            assert REDACTED in "".join(p.read_text() for p in out)
        # The bad records were reported (so the problem path ran), without their secrets.
        if fmt in BAD_LINES:
            assert len(f.problems) == BAD_LINES[fmt], [str(p) for p in f.problems]
            assert cur.execute("SELECT count(*) FROM problems").fetchone()[0] == BAD_LINES[fmt]
        for p in f.problems:
            assert _found(str(p)) == [], str(p)
    finally:
        store.close()
    # Every file the store keeps beside the database (WAL, sidecar directories): byte for byte.
    for p in sorted(dbdir.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            hits = [what for n, what in NEEDLES.items() if n.encode() in data]
            assert hits == [], (p.name, hits)


def test_counts_and_ids_survive(tmp_path: Path) -> None:
    src = _files(tmp_path)
    store = open_db(tmp_path / "x.duckdb")
    try:
        assert load_paths(store, [str(src["otlp-jsonl"])]).files[0].status == "loaded"
        cur = store.cursor()
        chat = cur.execute("SELECT input_tokens, output_tokens, attributes, model, served_model, tenant FROM spans "
                           "WHERE input_tokens IS NOT NULL").fetchone()
        attrs = json.loads(chat[2])
        assert chat[:2] == (42, 7) and chat[3:] == ("gpt-4o", "gpt-4o-2024-08-06", "acme")
        assert attrs["gen_ai.request.max_tokens"] == 512 and attrs["gen_ai.usage.input_tokens"] == 42
        assert attrs["http.request.header.api-key"] == ["[REDACTED]"]
        assert attrs["db.connection_string"] == "postgres://app:[REDACTED]@db.internal:5432/orders"
        assert attrs["app.password"] == "[REDACTED]"
        assert "[REDACTED]" in attrs["http.request.header.authorization"][0]
        root = cur.execute("SELECT name FROM spans WHERE parent_id IS NULL").fetchone()[0]
        assert root == "GET postgres://app:[REDACTED]@db.internal:5432/orders"

        g = tmp_path / "g.jsonl"
        g.write_text(json.dumps({"request_id": "g-9", "model": "gpt-4o", "input_tokens": 42, "output_tokens": 7,
                                 "max_tokens": 512, "prompt": "how many tokens?", "output": "42 tokens",
                                 "meta": {"finish_reason": "stop", "token_count": 3, "tokens": 5}}) + "\n")
        assert load_paths(store, [str(g)]).files[0].status == "loaded"
        raw, it = cur.execute("SELECT raw, input_tokens FROM spans WHERE request_id = 'g-9'").fetchone()
        assert it == 42 and json.loads(raw)["meta"] == {"finish_reason": "stop", "token_count": 3, "tokens": 5}
    finally:
        store.close()
