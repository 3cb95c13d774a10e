"""The ClickHouse source against the real ClickHouse engine (chDB 4.4 / ClickHouse 26.9, in process)
through the real clickhouse-connect client (1.13), both in process (`chdb://`) and over real HTTP to
a loopback server answering ClickHouse's HTTP interface from chDB (tests/chdb_server.py).

Tables are created with the writers' own DDL (tests/chdb_tables.py names the exporter and Langfuse
migration versions) and filled the way the exporter fills them (the demo incident's OTLP spans,
converted as the exporter converts them). Truth comes from the spans inserted, counted in
ClickHouse directly, and from the same spans loaded from the file through the file importer.

chDB allows one engine (one data path) per process: every test here shares the session's path,
each table in its own database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")
clickhouse_connect = pytest.importorskip("clickhouse_connect")

from click.testing import CliRunner  # noqa: E402

from oncall.cli import cli  # noqa: E402
from oncall.query.changes import changes  # noqa: E402
from oncall.query.filters import compile_filter  # noqa: E402
from oncall.query.overview import glance  # noqa: E402
from oncall.store import open_db  # noqa: E402
from tests.chdb_server import ChdbHTTPServer  # noqa: E402
from tests.chdb_tables import (  # noqa: E402
    create_langfuse,
    create_otel,
    demo_docs,
    exporter_rows,
    insert_otel,
)

pytestmark = [pytest.mark.clickhouse, pytest.mark.timeout(900)]

START, END = "2026-11-23T21:00:00Z", "2026-11-24T03:00:00Z"
PASSWORD = "pw-Zq8#not-in-any-output"


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "data"


@pytest.fixture(scope="session")
def ch(chdb_path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def demo(ch, tmp_path_factory) -> dict[str, Any]:
    """The demo incident: its OTLP export on disk (for the local load) and the same spans in
    `demo.otel_traces` (Map attributes) as the exporter writes them. Without its help-center feature:
    the in-place engine does not compile the retrieval link, and a window with retrieval spans is
    answered on pulled rows (`rag_demo` below)."""
    truth, docs = demo_docs(retrieval=False)
    d = tmp_path_factory.mktemp("demo-export")
    export = d / "otlp-traces.jsonl"
    export.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    create_otel(ch, "demo")
    n = insert_otel(ch, "demo", "otel_traces", exporter_rows(docs))
    return {"truth": truth, "docs": docs, "export": export, "rows": n}


@pytest.fixture(scope="session")
def local_demo(demo, tmp_path_factory) -> Path:
    """The same spans loaded from the file: what the source must agree with."""
    from oncall.ingest.loader import load_paths

    path = tmp_path_factory.mktemp("local") / "local.duckdb"
    store = open_db(path)
    try:
        load_paths(store, [str(demo["export"])])
    finally:
        store.close()
    return path


@pytest.fixture(scope="session")
def rag_demo(ch, tmp_path_factory) -> dict[str, Any]:
    """The whole demo (with its help-center retrievals) over the two hours around its index switch:
    in `rag.otel_traces` and loaded from the file."""
    from oncall.ingest.loader import load_paths

    truth, docs = demo_docs(hours=2.0)
    d = tmp_path_factory.mktemp("rag-export")
    export = d / "otlp-traces.jsonl"
    export.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    create_otel(ch, "rag")
    insert_otel(ch, "rag", "otel_traces", exporter_rows(docs))
    store = open_db(d / "local.duckdb")
    try:
        load_paths(store, [str(export)])
    finally:
        store.close()
    return {"truth": truth, "local": d / "local.duckdb"}


@pytest.fixture(scope="session")
def http(chdb_path, ch):
    srv = ChdbHTTPServer(str(chdb_path), password=PASSWORD).start()
    yield srv
    srv.stop()


def _chdb_url(chdb_path: Path, database: str = "demo", table: str = "otel_traces", **extra: str) -> str:
    q = "&".join([f"database={database}", f"table={table}", *(f"{k}={v}" for k, v in extra.items())])
    return f"chdb://{chdb_path}?{q}"


def _http_url(http: ChdbHTTPServer, database: str = "demo", table: str = "otel_traces", **extra: str) -> str:
    q = "&".join([f"table={table}", *(f"{k}={v}" for k, v in extra.items())])
    return f"clickhouse://default@127.0.0.1:{http.port}/{database}?{q}"


def oncall(*args: str, env: dict[str, str] | None = None) -> Any:
    res = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return res


def _spans(db_path: Path, where: str = "kind = 'llm'") -> dict[str, tuple]:
    store = open_db(db_path, read_only=True)
    try:
        rows = store.cursor().execute(
            f"SELECT span_id, tenant, user_id, session_id, feature, model, served_model, provider, status, "
            f"error_type, input_tokens, output_tokens, round(latency_ms, 3), prompt_version, release, "
            f"length(output_text), cost FROM spans WHERE {where}").fetchall()
    finally:
        store.close()
    return {r[0]: tuple(r[1:]) for r in rows}


# -- loading a window ------------------------------------------------------------------------------------
def test_pull_reads_every_llm_call_as_the_file_importer_does(demo, local_demo, chdb_path, ch, tmp_path):
    db = tmp_path / "pulled.duckdb"
    res = oncall("--db", str(db), "load", _chdb_url(chdb_path), "--since", START, "--until", END, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    pulled, local = _spans(db), _spans(local_demo)
    assert len(pulled) == len(local) == demo["truth"].requests
    # One mapping: every LLM call reads the same, cohort keys inherited from the root span included.
    assert pulled == local
    # Truth counted in ClickHouse directly: LLM calls per tenant (on the root span) and errors.
    per_tenant = dict(ch.query(
        "SELECT r.SpanAttributes['app.tenant'], count() FROM demo.otel_traces AS c "
        "JOIN (SELECT TraceId, SpanAttributes FROM demo.otel_traces WHERE ParentSpanId = '') AS r USING TraceId "
        "WHERE c.SpanAttributes['gen_ai.request.model'] != '' GROUP BY 1").result_rows)
    got: dict[str, int] = {}
    for v in pulled.values():
        got[v[0]] = got.get(v[0], 0) + 1
    assert got == per_tenant
    errors = ch.query("SELECT count() FROM demo.otel_traces WHERE StatusCode = 'Error' "
                      "AND SpanAttributes['gen_ai.request.model'] != ''").result_rows[0][0]
    assert out["summary"]["llm_errors"] == errors > 0
    served = dict(ch.query("SELECT SpanAttributes['gen_ai.response.model'], count() FROM demo.otel_traces "
                           "WHERE SpanAttributes['gen_ai.response.model'] != '' GROUP BY 1").result_rows)
    assert {m["value"]: m["llm_calls"] for m in out["summary"]["models_served"]} == served
    assert out["pull"]["rows_received"] == len(pulled)  # only LLM calls travelled (plus nothing else)
    # Provenance: the import names the source, never a secret; inherited keys say where they came from.
    store = open_db(db, read_only=True)
    try:
        imp = store.cursor().execute("SELECT path, format, options FROM imports").fetchall()
        inh = store.cursor().execute("SELECT inherited FROM spans WHERE kind = 'llm' LIMIT 1").fetchone()[0]
    finally:
        store.close()
    assert imp[0][1] == "clickhouse-otel" and imp[0][0].startswith("chdb://")
    assert "tenant" in json.loads(inh) and json.loads(inh)["tenant"]["from_span"]


FILTERS = [
    ["tenant=acme"],
    ["tenant=acme", "served_model=gpt-4o-2024-11-20"],
    ["status=error"],
    ["error=rate_limit", "provider=anthropic"],
    ["feature=extract", "latency_ms>1500"],
    ["user!=u-0001", "tenant=globex,hooli"],
    ["model=claude-3-5-sonnet-20241022", "output_tokens<200"],
    ["refund"],
    ["prompt_version=v13"],
    ["meta.gen_ai.operation.name=chat", "tenant~ini"],
]


@pytest.mark.parametrize("flt", FILTERS, ids=[" ".join(f) for f in FILTERS])
def test_pushdown_pulls_exactly_what_the_filter_names_locally(flt, demo, local_demo, http, tmp_path):
    """Over HTTP: the filter compiled to ClickHouse (bound parameters) brings the same requests as the
    same filter over the local incident, and user text never appears in the SQL."""
    db = tmp_path / "cohort.duckdb"
    before = len(http.requests)
    res = oncall("--db", str(db), "load", _http_url(http), "--since", "2026-11-24T00:00:00Z", "--until", END, *flt,
                 "--json", env={"CLICKHOUSE_PASSWORD": PASSWORD})
    assert res.exit_code == 0, res.output
    local = json.loads(oncall("--db", str(local_demo), "search", "since=2026-11-24T00:00:00Z", *flt, "-n", "100000",
                              "--json").output)
    want = {r["span_id"] for r in local["requests"]}
    got = set(_spans(db))
    assert got == want and want
    pull = json.loads(res.output)["pull"]
    assert pull["rows_received"] <= 1.5 * len(want) + 50  # pushed down: little more than the cohort travelled
    asked = http.requests[before:]
    sent = " ".join(r["sql"] for r in asked)
    bound = {str(v) for r in asked for v in r["params"].values()}
    for term in flt:
        key, value = re.split(r"!=|>=|<=|=|~|>|<", term, maxsplit=1) if re.search(r"[=~<>]", term) else ("", term)
        if key in ("status", "error", "kind"):
            continue  # closed vocabularies compile to oncall's own constants
        for v in value.split(","):
            assert any(v in b for b in bound), f"{v!r} was not sent as a bound parameter"
            if not key.startswith("meta."):
                assert f"'{v}'" not in sent and f"%{v}%" not in sent, f"{v!r} was written into the SQL"


def test_repulling_an_overlapping_window_adds_nothing_twice(demo, chdb_path, tmp_path):
    db = tmp_path / "overlap.duckdb"
    url = _chdb_url(chdb_path)
    assert oncall("--db", str(db), "load", url, "--since", "2026-11-24T01:00:00Z", "--until", "2026-11-24T02:00:00Z",
                  "tenant=acme").exit_code == 0
    first = set(_spans(db))
    res = oncall("--db", str(db), "load", url, "--since", "2026-11-24T01:30:00Z", "--until", "2026-11-24T02:30:00Z",
                 "tenant=acme", "--json")
    assert res.exit_code == 0, res.output
    both = _spans(db)
    assert first <= set(both)
    store = open_db(db, read_only=True)
    try:
        dup = store.cursor().execute("SELECT count(*) - count(DISTINCT span_id) FROM spans").fetchone()[0]
    finally:
        store.close()
    assert dup == 0
    added = json.loads(res.output)["files"][0]
    assert added["duplicates"] > 0 and added["spans"] == len(both) - len(first)


def test_an_interrupted_pull_leaves_the_incident_as_it_was(demo, chdb_path, tmp_path):
    from oncall.sources.pull import load_source, window_of
    from oncall.sources.registry import open_source

    db = tmp_path / "interrupt.duckdb"
    url = _chdb_url(chdb_path)
    assert oncall("--db", str(db), "load", url, "--since", "2026-11-24T02:00:00Z", "--until", END).exit_code == 0
    before = _spans(db)

    def stop(rows: int) -> None:
        if rows > 3000:
            raise KeyboardInterrupt

    store = open_db(db)
    src = open_source(url)
    try:
        with pytest.raises(KeyboardInterrupt):
            load_source(store, src, window_of(START, END, __import__("oncall.query.filters").query.filters.Filter()),
                        progress=stop)
    finally:
        src.close()
        store.close()
    assert _spans(db) == before
    parts = sorted(p.name for p in (db.parent / "interrupt.duckdb.d" / "parts").glob("*.duckdb"))
    assert len(parts) == 1  # the interrupted pull's part is gone


def test_limit_caps_the_cohort_at_the_newest_calls(demo, local_demo, chdb_path, tmp_path):
    db = tmp_path / "capped.duckdb"
    res = oncall("--db", str(db), "load", _chdb_url(chdb_path), "--since", START, "--until", END, "tenant=acme",
                 "--limit", "50", "--json")
    assert res.exit_code == 0, res.output
    got = _spans(db)
    assert len(got) == 50
    newest = json.loads(oncall("--db", str(local_demo), "search", "tenant=acme", "-n", "50", "--json").output)
    want = {r["span_id"] for r in newest["requests"]}
    assert set(got) == want


def test_changes_on_a_source_finds_the_demo_causes_at_the_same_times(demo, local_demo, chdb_path, tmp_path):
    """`changes --source`: the demo's three causes, inserted into otel_traces, found in place (every
    question of the algorithm asked in ClickHouse, only aggregates back) with the same times, cohorts
    and effects as on the local load of the same spans; the incident is untouched."""
    db = tmp_path / "untouched.duckdb"
    res = oncall("--db", str(db), "changes", "--source", _chdb_url(chdb_path), "--since", START, "--until", END,
                 "--json")
    assert res.exit_code == 0, res.output
    said = re.search(r"computed in .*: (\d+) queries, ([\d,]+) bytes of aggregates received", res.stderr)
    assert said and int(said.group(2).replace(",", "")) < 1_000_000, res.stderr  # the rows would be ~30 MB
    pulled = json.loads(res.stdout)
    local = json.loads(oncall("--db", str(local_demo), "changes", "--json").output)

    def causes(doc: Any) -> list[tuple]:
        return [(c["kind"], c.get("metric"), json.dumps(c.get("cohort"), sort_keys=True), c.get("before"),
                 c.get("after"), c.get("began_at"), c.get("ended_at")) for c in doc]

    assert causes(pulled) == causes(local)
    for r, m in zip(pulled, local, strict=True):  # effects, counts and filters too (p-values: float noise)
        assert [(e["metric"], e["before"], e["after"], json.dumps(e["cohort"])) for e in r["effects"]] == \
            [(e["metric"], e["before"], e["after"], json.dumps(e["cohort"])) for e in m["effects"]]
        assert (r["filter"], r["affected_requests"], r["split"]) == (m["filter"], m["affected_requests"], m["split"])
    kinds = {c[0] for c in causes(local)}
    assert len(causes(local)) >= 3 and {"new_prompt_version", "new_served_model"} <= kinds
    assert not db.exists()  # asked of the source: nothing written to the incident


def test_compare_on_a_source_agrees_with_the_local_incident(demo, local_demo, chdb_path, tmp_path):
    args = ["tenant=acme", "since=2026-11-24T01:12:00Z", "--baseline", "tenant=acme until=2026-11-24T01:12:00Z"]
    res = oncall("--db", str(tmp_path / "none.duckdb"), "compare", *args, "--source", _chdb_url(chdb_path),
                 "--since", START, "--until", END, "--json")
    assert res.exit_code == 0, res.output
    remote = json.loads(res.stdout)
    local = json.loads(oncall("--db", str(local_demo), "compare", *args, "--json").output)
    # Computed in ClickHouse: only aggregates came back (a few KB, against ~MBs of rows for the window).
    assert remote["in_place"]["bytes_received"] < 20_000 and remote["in_place"]["queries"] >= 6
    for side in ("cohort", "baseline"):
        assert {k: remote[side][k] for k in ("requests", "first", "last", "labels")} == \
            {k: local[side][k] for k in ("requests", "first", "last", "labels")}
    assert remote["served_models"] == local["served_models"] and remote["finish_reasons"] == local["finish_reasons"]
    assert remote["json_key_sets"] == local["json_key_sets"]
    assert len(remote["metrics"]) == len(local["metrics"]) and remote["cohort"]["requests"] > 0
    for r, m in zip(remote["metrics"], local["metrics"], strict=True):  # sums in another order: float noise only
        assert r == {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in m.items()}


def test_a_window_with_retrievals_finds_the_index_cause_and_compares_on_pulled_rows(rag_demo, chdb_path, tmp_path):
    """The pull brings each call's retrieval with it (linked at load), so `changes --source` names the
    index switch as the local load does; `compare --source` does not answer in place (the link is not
    compiled for ClickHouse) but on pulled rows, says so, and agrees with the local incident."""
    url = _chdb_url(chdb_path, database="rag")
    since, until = "2026-11-24T01:00:00Z", "2026-11-24T03:00:00Z"
    res = oncall("--db", str(tmp_path / "none.duckdb"), "changes", "--source", url, "--since", since, "--until",
                 until, "--json")
    assert res.exit_code == 0, res.output
    pulled = json.loads(res.stdout)
    local = json.loads(oncall("--db", str(rag_demo["local"]), "changes", "--json").output)

    def index(doc: Any) -> list[tuple]:
        return [(c["before"], c["after"], c["began_at"], c["together_with"], [e["metric"] for e in c["effects"]])
                for c in doc if c["kind"] == "new_retrieval_index"]

    assert index(pulled) == index(local) and len(index(local)) == 1
    assert index(local)[0][:2] == ("help-articles-v41", "help-articles-v42")
    args = ["feature=help-center", "since=2026-11-24T01:38:00Z", "--baseline", "feature=help-center "
            "until=2026-11-24T01:38:00Z"]
    res = oncall("--db", str(tmp_path / "none.duckdb"), "compare", *args, "--source", url, "--since", since,
                 "--until", until, "--json")
    assert res.exit_code == 0, res.output
    assert "retrieval spans" in res.stderr and "answered on pulled rows" in res.stderr
    remote = json.loads(res.stdout)
    here = json.loads(oncall("--db", str(rag_demo["local"]), "compare", *args, "--json").output)
    assert "in_place" not in remote
    metric = {m["metric"]: m for m in remote["metrics"]}
    assert metric["empty_retrieval_rate"]["cohort"] > 0.5 > metric["empty_retrieval_rate"]["baseline"]
    assert [(m["metric"], m["cohort"], m["baseline"]) for m in remote["metrics"]] == \
        [(m["metric"], m["cohort"], m["baseline"]) for m in here["metrics"]]


def test_compare_in_place_reads_only_the_range_its_filters_name(demo, local_demo, chdb_path, tmp_path):
    """Cohort and baseline bounded by absolute times: the engine reads only from the earliest since to
    the latest until (not the whole --since/--until window), and the numbers are the local ones."""
    args = ["provider=openai", "since=2026-11-24T01:12:00Z", "until=2026-11-24T01:40:00Z", "--baseline",
            "provider=openai since=2026-11-24T00:30:00Z until=2026-11-24T01:12:00Z"]
    res = oncall("--db", str(tmp_path / "none.duckdb"), "compare", *args, "--source", _chdb_url(chdb_path),
                 "--since", START, "--until", END, "--json")
    assert res.exit_code == 0, res.output
    remote = json.loads(res.stdout)
    assert (remote["in_place"]["since"], remote["in_place"]["until"]) == \
        ("2026-11-24T00:30:00+00:00", "2026-11-24T01:40:00+00:00")
    local = json.loads(oncall("--db", str(local_demo), "compare", *args, "--json").output)
    assert remote["cohort"]["requests"] == local["cohort"]["requests"] > 0
    assert remote["baseline"]["requests"] == local["baseline"]["requests"] > 0
    for r, m in zip(remote["metrics"], local["metrics"], strict=True):
        assert r == {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in m.items()}
    # A relative time counts from the window's newest span: then the whole window is read.
    rel = oncall("--db", str(tmp_path / "none.duckdb"), "compare", "provider=openai", "since=-30m", "--baseline",
                 "provider=openai until=-30m", "--source", _chdb_url(chdb_path), "--since", START, "--until", END,
                 "--json")
    assert json.loads(rel.stdout)["in_place"]["since"] == "2026-11-23T21:00:00+00:00"


def test_compare_in_place_over_http_binds_every_value_and_agrees(demo, local_demo, http, tmp_path):
    """The same in-place compare over real HTTP (the loopback server answering from chDB): the window
    computed once into a temporary table of the session, then aggregates only; what the responder typed
    travels as bound parameters, never in the SQL text."""
    args = ["tenant=globex", "feature=extract", "since=2026-11-24T01:12:00Z", "--baseline",
            "tenant=globex feature=extract until=2026-11-24T01:12:00Z"]
    before = len(http.requests)
    res = oncall("--db", str(tmp_path / "none.duckdb"), "compare", *args, "--source", _http_url(http),
                 "--since", START, "--until", END, "--json", env={"CLICKHOUSE_PASSWORD": PASSWORD})
    assert res.exit_code == 0, res.output
    remote = json.loads(res.stdout)
    local = json.loads(oncall("--db", str(local_demo), "compare", *args, "--json").output)
    assert remote["in_place"]["notes"] == [] and remote["cohort"]["requests"] == local["cohort"]["requests"] > 0
    for r, m in zip(remote["metrics"], local["metrics"], strict=True):
        assert r == {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in m.items()}
    asked = http.requests[before:]
    assert any("CREATE TEMPORARY TABLE" in r["sql"] for r in asked)
    sent = " ".join(r["sql"] for r in asked)
    assert "'globex'" not in sent and "'extract'" not in sent
    assert {"globex", "extract"} <= {str(v) for r in asked for v in r["params"].values()}


def test_open_on_a_source_pulls_the_newest_calls_capped(demo, chdb_path, tmp_path):
    import click

    from oncall.commands.sources import pull_for_console

    db = tmp_path / "console.duckdb"
    ctx = click.Context(cli)
    pull_for_console(ctx, str(db), _chdb_url(chdb_path), START, END, 300)
    assert len(_spans(db)) == 300


def test_open_on_a_window_with_retrievals_brings_it_home_first(rag_demo, demo, chdb_path, tmp_path):
    """The console cannot compute a window with retrieval spans in place (the link is made at load):
    `open --source` then pulls the window's newest calls, their retrievals linked, as for an API store."""
    import click

    from oncall.commands.sources import cannot_answer_in_place, open_session, pull_for_console

    plain = open_session(_chdb_url(chdb_path), START, END)
    try:
        assert cannot_answer_in_place(plain) is None
    finally:
        plain.close()
    rag = open_session(_chdb_url(chdb_path, database="rag"), "2026-11-24T01:00:00Z", "2026-11-24T03:00:00Z")
    try:
        assert "retrieval spans" in (cannot_answer_in_place(rag) or "")
    finally:
        rag.close()
    db = tmp_path / "console.duckdb"
    pull_for_console(click.Context(cli), str(db), _chdb_url(chdb_path, database="rag"), "2026-11-24T01:00:00Z",
                     "2026-11-24T03:00:00Z", 2000)
    fed = _spans(db, "kind = 'llm' AND feature = 'help-center' AND retrieval_index IS NOT NULL")
    assert len(_spans(db)) == 2000 and fed


# -- schemas ----------------------------------------------------------------------------------------------
def test_json_typed_otel_traces_reads_as_the_map_variant(demo, ch, chdb_path, tmp_path):
    create_otel(ch, "demojson", json_typed=True)
    docs = demo["docs"][: len(demo["docs"]) // 6]
    insert_otel(ch, "demojson", "otel_traces", exporter_rows(docs, json_typed=True), json_typed=True)
    a, b = tmp_path / "json.duckdb", tmp_path / "map.duckdb"
    assert oncall("--db", str(a), "load", _chdb_url(chdb_path, "demojson"), "--since", START, "--until",
                  END).exit_code == 0
    ids = set(_spans(a))
    assert ids
    assert oncall("--db", str(b), "load", _chdb_url(chdb_path), "--since", START, "--until", END).exit_code == 0
    map_rows = _spans(b)
    assert _spans(a) == {k: map_rows[k] for k in ids}
    res = oncall("--db", str(tmp_path / "j2.duckdb"), "load", _chdb_url(chdb_path, "demojson"), "--since", START,
                 "--until", END, "tenant=acme", "served_model=gpt-4o-2024-08-06")
    assert res.exit_code == 0, res.output
    got = _spans(tmp_path / "j2.duckdb")
    want = {k: v for k, v in map_rows.items() if k in ids and v[0] == "acme" and v[5] == "gpt-4o-2024-08-06"}
    assert got == want and got


def _langfuse_rows(ch: Any) -> None:
    create_langfuse(ch, "lf")
    t0 = "2026-11-24 01:00:00.000"
    ch.command(f"""INSERT INTO lf.traces (id, timestamp, name, user_id, metadata, release, project_id, public,
        bookmarked, tags, input, output, session_id, event_ts, is_deleted, environment) VALUES
        ('tr-1', '{t0}', 'support', 'u-1', map('tenant', 'acme'), '2026.11.3', 'p1', 0, 0, [], '"hi"', '"yo"',
         's-1', '{t0}', 0, 'production'),
        ('tr-1', '{t0}', 'support', 'u-OLD', map('tenant', 'old'), NULL, 'p1', 0, 0, [], NULL, NULL, 's-old',
         '2026-11-24 00:00:00.000', 0, 'production'),
        ('tr-2', '{t0}', 'extract', 'u-2', map('tenant', 'globex'), NULL, 'p1', 0, 0, [], NULL, NULL, 's-2',
         '{t0}', 0, 'production')""")
    ch.command("""INSERT INTO lf.observations (id, trace_id, project_id, type, parent_observation_id, start_time,
        end_time, name, metadata, level, status_message, input, output, provided_model_name, usage_details,
        cost_details, total_cost, prompt_name, prompt_version, event_ts, is_deleted, environment) VALUES
        ('ob-1', 'tr-1', 'p1', 'GENERATION', NULL, '2026-11-24 01:00:01.000', '2026-11-24 01:00:03.500', 'chat',
         map(), 'DEFAULT', NULL, '[{"role":"user","content":"refund please"}]', '{"role":"assistant","content":"ok"}',
         'gpt-4o', map('input', 120, 'output', 30, 'total', 150), map('total', 0.0012), 0.0012, 'support', 13,
         '2026-11-24 01:00:04.000', 0, 'production'),
        ('ob-1', 'tr-1', 'p1', 'GENERATION', NULL, '2026-11-24 01:00:01.000', NULL, 'chat', map(), 'DEFAULT', NULL,
         NULL, NULL, 'gpt-4o', map(), map(), NULL, NULL, NULL, '2026-11-24 01:00:01.000', 0, 'production'),
        ('ob-2', 'tr-1', 'p1', 'GENERATION', NULL, '2026-11-24 01:00:05.000', '2026-11-24 01:00:06.000', 'chat',
         map(), 'ERROR', '429 rate limit exceeded', NULL, NULL, 'gpt-4o', map(), map(), NULL, NULL, NULL,
         '2026-11-24 01:00:06.000', 0, 'production'),
        ('ob-3', 'tr-2', 'p1', 'GENERATION', NULL, '2026-11-24 01:00:07.000', '2026-11-24 01:00:08.000', 'chat',
         map(), 'DEFAULT', NULL, NULL, NULL, 'gpt-4o', map('input', 5), map(), NULL, NULL, NULL,
         '2026-11-24 01:00:08.000', 0, 'production'),
        ('ob-3', 'tr-2', 'p1', 'GENERATION', NULL, '2026-11-24 01:00:07.000', '2026-11-24 01:00:08.000', 'chat',
         map(), 'DEFAULT', NULL, NULL, NULL, 'gpt-4o', map('input', 5), map(), NULL, NULL, NULL,
         '2026-11-24 01:00:09.000', 1, 'production'),
        ('ob-4', 'tr-2', 'p1', 'SPAN', NULL, '2026-11-24 01:00:07.000', '2026-11-24 01:00:08.000', 'retrieve',
         map(), 'DEFAULT', NULL, NULL, NULL, NULL, map(), map(), NULL, NULL, NULL, '2026-11-24 01:00:08.000', 0,
         'production')""")


def test_langfuse_tables_read_newest_versions_and_skip_deleted(ch, chdb_path, tmp_path):
    """Langfuse v3 (migrations 0001, 0002, 0008): ReplacingMergeTree rows read as Langfuse reads them."""
    _langfuse_rows(ch)
    db = tmp_path / "lf.duckdb"
    res = oncall("--db", str(db), "load", _chdb_url(chdb_path, "lf", "observations"), "--since",
                 "2026-11-24T00:00:00Z", "--until", "2026-11-24T02:00:00Z", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["files"][0]["format"] == "clickhouse-langfuse"
    got = _spans(db, "true")
    assert set(got) == {"ob-1", "ob-2"}  # ob-3's newest version is a deletion; ob-4 is not an LLM call
    ob1 = got["ob-1"]
    # the newest trace version's keys (u-1, s-1, acme), the newest observation version's usage
    assert ob1[:3] == ("acme", "u-1", "s-1") and ob1[9:11] == (120, 30) and ob1[12] == "13"
    assert got["ob-2"][7:9] == ("error", "rate_limit")
    res = oncall("--db", str(tmp_path / "lf2.duckdb"), "load", _chdb_url(chdb_path, "lf", "observations"),
                 "--since", "2026-11-24T00:00:00Z", "--until", "2026-11-24T02:00:00Z", "status=error")
    assert res.exit_code == 0 and set(_spans(tmp_path / "lf2.duckdb")) == {"ob-2"}


def test_an_unknown_table_is_refused_with_its_columns(ch, chdb_path, tmp_path):
    ch.command("CREATE DATABASE IF NOT EXISTS other")
    ch.command("CREATE TABLE IF NOT EXISTS other.requests (ts DateTime, prompt String, answer String) "
               "ENGINE = MergeTree ORDER BY ts")
    db = tmp_path / "x.duckdb"
    res = oncall("--db", str(db), "load", _chdb_url(chdb_path, "other", "requests"), "--since", START)
    assert res.exit_code == 2
    assert "ts DateTime, prompt String, answer String" in res.output and "--map" in res.output
    assert not db.exists() or not _spans(db, "true")


# -- errors a responder can act on ---------------------------------------------------------------------------
def _one_line(res: Any) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1, res.output
    assert PASSWORD not in res.output
    return lines[0]


def test_errors_name_the_source_and_what_to_change(demo, http, chdb_path, tmp_path):
    db = tmp_path / "err.duckdb"
    assert oncall("--db", str(db), "load", _chdb_url(chdb_path), "--since", "2026-11-24T02:50:00Z", "--until",
                  END).exit_code == 0
    before = _spans(db, "true")
    env = {"CLICKHOUSE_PASSWORD": PASSWORD}
    cases = [
        (_http_url(http), {"CLICKHOUSE_PASSWORD": "wrong"}, 1, "authentication refused"),
        ("clickhouse://default@127.0.0.1:9/demo?table=otel_traces", env, 1, "cannot reach the server"),
        (f"clickhouses://default@127.0.0.1:{http.port}/demo?table=otel_traces", env, 1, "TLS failed"),
        (_http_url(http, database="nodb"), env, 2, "does not exist"),
        (_http_url(http, table="nope"), env, 2, "table demo.nope does not exist"),
        (_http_url(http, max_rows_to_read="100"), env, 1, "row limit"),
        (f"clickhouse://default:{PASSWORD}@127.0.0.1:{http.port}/demo?table=otel_traces", env, 2,
         "password in the URL is refused"),
    ]
    for url, e, code, words in cases:
        res = oncall("--db", str(db), "load", url, "--since", START, "--until", END, env=e)
        line = _one_line(res)
        assert res.exit_code == code, (url, res.output)
        assert words in line, line
        assert line.startswith("oncall: error: clickhouse")
    assert _spans(db, "true") == before
    store = open_db(db, read_only=True)
    try:
        trail = json.dumps(store.cursor().execute("SELECT * FROM trail").fetchall(), default=str)
        imports = json.dumps(store.cursor().execute("SELECT * FROM imports").fetchall(), default=str)
    finally:
        store.close()
    assert PASSWORD not in trail + imports


def test_label_terms_are_refused_for_a_source(demo, chdb_path, tmp_path):
    res = oncall("--db", str(tmp_path / "l.duckdb"), "load", _chdb_url(chdb_path), "--since", START, "label=bad")
    assert res.exit_code == 2 and "labels live in the local incident" in res.output


def test_a_named_source_takes_its_password_from_the_environment(demo, http, tmp_path, monkeypatch):
    toml = tmp_path / "oncall.toml"
    toml.write_text(f'[sources.prod]\nurl = "{_http_url(http)}"\npassword_env = "PROD_CH_PASSWORD"\n')
    monkeypatch.setenv("ONCALL_TOML", str(toml))
    db = tmp_path / "named.duckdb"
    res = oncall("--db", str(db), "load", "@prod", "--since", "2026-11-24T02:55:00Z", "--until", END,
                 env={"PROD_CH_PASSWORD": PASSWORD, "CLICKHOUSE_PASSWORD": "wrong"})
    assert res.exit_code == 0, res.output
    assert _spans(db) and PASSWORD not in res.output
    res = oncall("--db", str(db), "load", "@nope", "--since", START)
    assert res.exit_code == 2 and "prod" in res.output
    toml.write_text(f'[sources.lit]\nurl = "{_http_url(http)}"\npassword = "{PASSWORD}"\n')
    res = oncall("--db", str(db), "load", "@lit", "--since", START)
    assert res.exit_code == 2 and "password_env" in res.output and PASSWORD not in res.output


@pytest.mark.skipif(not os.environ.get("ONCALL_TEST_CLICKHOUSE_URL"),
                    reason="set ONCALL_TEST_CLICKHOUSE_URL=clickhouse://user@host:8123/db?table=otel_traces "
                           "(and CLICKHOUSE_PASSWORD) to run against a real server")
def test_a_real_server(tmp_path):
    """Opt-in: a real ClickHouse with an otel_traces table; the last hour pulls and reads back."""
    url = os.environ["ONCALL_TEST_CLICKHOUSE_URL"]
    res = oncall("--db", str(tmp_path / "real.duckdb"), "load", url, "--since", "-1h", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pull"]["rows_received"] >= out["spans_added"]


# -- the metric registry in ClickHouse ------------------------------------------------------------------------
_CH_TYPES = {"string": "String", "double": "Float64", "int64": "Int64", "int32": "Int32"}
# The demo has no retrieval: a third of its LLM calls get one (some empty), so the retrieval metrics
# compare numbers in both engines, not two zeros.
_RETRIEVAL = {"retrieved": "span_pk % 5", "top_score": "(span_pk % 97) / 100.0",
              "doc_age_s": "(span_pk % 7) * 3600.5", "retrieval_ms": "(span_pk % 13) * 10.25"}


def _canonical_columns() -> list[tuple[str, str]]:
    """(name, ClickHouse type) of every span column a registry metric reads, plus tenant (the test's
    cohort): taken from the registry and the store's schema, so a metric added over a new column is
    compared too. `label` (the labels table's, through the latest-label join) is not a span column."""
    from oncall.query.registry import DERIVED, METRICS
    from oncall.store.schema import SPAN_COLUMNS

    read = set().union(*(m.columns() for m in METRICS.values())) - set(DERIVED) - {"label"}
    known = {name for name, *_ in SPAN_COLUMNS}
    assert read <= known, f"metrics read columns the store does not have: {read - known}"
    return [(name, _CH_TYPES[str(arrow)]) for name, _, arrow, _ in SPAN_COLUMNS
            if name in read | {"tenant", "span_pk"}]


def test_every_metric_gives_the_same_numbers_in_duckdb_and_clickhouse(local_demo, ch):
    """The registry compiled to both engines (registry.DuckDB and sources.clickhouse.metrics.ClickHouse)
    over the same canonical spans (the demo's, with retrieval added, in a DuckDB and copied into
    ClickHouse): every metric's counts, sums, sums of squares and quantiles agree."""
    import duckdb
    import pyarrow as pa

    from oncall.query import registry
    from oncall.sources.clickhouse import metrics as chm
    from oncall.sources.clickhouse.sql import Params

    columns = _canonical_columns()
    assert set(_RETRIEVAL) <= {c for c, _ in columns}
    select = ", ".join(f"CASE WHEN kind = 'llm' AND span_pk % 3 = 0 THEN {_RETRIEVAL[c]} END AS {c}"
                       if c in _RETRIEVAL else c for c, _ in columns)
    store = open_db(local_demo, read_only=True)
    try:
        spans = store.cursor().sql(f"SELECT {select} FROM spans").to_arrow_table()
        labels = store.cursor().sql("SELECT * FROM labels").to_arrow_table()
    finally:
        store.close()
    con = duckdb.connect()
    con.register("spans_arrow", spans)
    con.register("labels_arrow", labels)
    con.execute("CREATE TABLE spans AS SELECT * FROM spans_arrow")
    con.execute("CREATE TABLE labels AS SELECT * FROM labels_arrow")
    refs = {"key_sets": list(registry.key_set_counts(con, "s.tenant = 'globex'", []))}
    local = {w: registry.measure(con, w, [], refs=refs) for w in ("true", "s.tenant = 'acme'")}
    con.close()
    assert labels.num_rows == 0  # the ClickHouse copy's label column is NULL: the demo has no labels

    ch.command("CREATE DATABASE IF NOT EXISTS canon")
    ch.command("DROP TABLE IF EXISTS canon.spans")
    ch.command(f"CREATE TABLE canon.spans ({', '.join(f'{c} Nullable({t})' for c, t in columns)}, "
               "label Nullable(String)) ENGINE = MergeTree ORDER BY tuple()")
    ch.insert_arrow("spans", spans.append_column("label", pa.nulls(spans.num_rows, pa.string())),
                    database="canon")
    for where, want in local.items():
        params = Params()
        cond = "1" if where == "true" else f"ifNull(s.tenant = {params.p('acme', 'String')}, 0)"
        got = chm.measure(ch, "canon.spans", cond, params, refs=refs)
        assert set(got) == set(want)
        for name, w in want.items():
            g = got[name]
            assert (g.n, g.x) == (pytest.approx(w.n), pytest.approx(w.x, rel=1e-9)), name
            assert g.sq == pytest.approx(w.sq, rel=1e-9), name
            assert (g.q is None) == (w.q is None) and (w.q is None or g.q == pytest.approx(w.q, rel=1e-9)), name
        assert want["requests"].n > 1000 and want["json_valid_rate"].n > 0 and want["refusal_rate"].x >= 0
        assert want["empty_retrieval_rate"].x > 0 and want["docs_per_request"].n > want["empty_retrieval_rate"].x


@pytest.mark.parametrize("where", [[], ["tenant=acme"], ["feature=extract", "since=2026-11-24T01:00:00Z"],
                                   ["status=error"], ["provider=anthropic", "latency_ms>900"]])
def test_every_metric_in_place_on_otel_traces_equals_the_local_load(where, demo, local_demo, chdb_path):
    """The canonical relation computed in ClickHouse from the raw otel_traces rows (canonical.py), asked
    through the engine interface: every metric's aggregates equal the incident's (DuckDB over the same
    spans loaded from the file), with the key-set reference bound, and so do compare's dimensions."""
    from oncall.query.engine import DuckDBEngine
    from oncall.query.registry import METRICS, key_set_counts
    from oncall.sources.base import Window
    from oncall.sources.clickhouse.engine import ClickHouseEngine
    from oncall.sources.registry import open_source

    store = open_db(local_demo, read_only=True)
    try:
        duck = DuckDBEngine(store.cursor())
        refs = {"key_sets": list(key_set_counts(duck.con, "s.tenant = 'globex'", []))}
        c = duck.compile(where)
        want = duck.measure(c, METRICS.values(), refs)
        want_dims, want_ks, want_cost = duck.dims(c), duck.key_set_counts(c), duck.estimated_share(c)
    finally:
        store.close()
    source = open_source(_chdb_url(chdb_path))
    try:
        window = Window(*(dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (START, END)))
        ch = ClickHouseEngine(source, window)
        cc = ch.compile(where)
        got = ch.measure(cc, METRICS.values(), refs)
        assert ch.dims(cc) == want_dims and ch.key_set_counts(cc) == want_ks
        assert ch.estimated_share(cc) == want_cost
    finally:
        source.close()
    assert set(got) == set(want) and want["requests"].n > 0
    for name, w in want.items():
        g = got[name]
        assert (g.n, g.x) == (pytest.approx(w.n), pytest.approx(w.x, rel=1e-9)), name
        assert g.sq == pytest.approx(w.sq, rel=1e-9), name
        assert (g.q is None) == (w.q is None) and (w.q is None or g.q == pytest.approx(w.q, rel=1e-9)), name


def test_watch_on_a_source_notifies_its_causes_once_and_keeps_state_in_the_incident(demo, chdb_path, tmp_path):
    """`oncall watch --source`: what-changed on the store's window (pulled into a scratch incident each
    check), alerts sent to a loopback webhook, what was sent kept in --db so a second check sends nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    db = tmp_path / "watch.duckdb"
    days = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(START.replace("Z", "+00:00"))).days + 1
    args = ("--db", str(db), "watch", "--once", "--source", _chdb_url(chdb_path), "--window", f"{days}d",
            "--notify", f"webhook=http://127.0.0.1:{srv.server_address[1]}/hook", "--json")
    try:
        first = oncall(*args)
        assert first.exit_code == 1, first.output  # it notified
        sent = json.loads(first.stdout)["sent"]
        assert {s["dedup_key"] for s in sent} == {g["dedup_key"] for g in got}
        assert any(g["kind"] == "new_served_model" and "--source" in g["command"] for g in got)
        again = oncall(*args)
        assert again.exit_code == 0 and json.loads(again.stdout)["sent"] == []
    finally:
        srv.shutdown()

# -- the console opened on a source (`oncall open --source`), driven with Textual's Pilot ------------------
# The overview and what-changed are computed in place (the local incident starts empty and stays so
# until a cause is opened); opening, reading and labelling a cause's cohort brings just those rows
# home (capped, newest first), where the label stays, keyed by the span's own id.
CONSOLE_CAP = 400
CONSOLE_SIZE = (160, 44)


@pytest.fixture(scope="module")
def source_session(demo, chdb_path):
    """One session for the console tests: its engine (the window's canonical relation) is built once."""
    from oncall.sources.session import SourceSession

    s = SourceSession(_chdb_url(chdb_path), START, END, cap=CONSOLE_CAP)
    yield s
    s.close()


def _local(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    store = open_db(db, read_only=True)
    try:
        return store.cursor().execute(sql, params or []).fetchall()
    finally:
        store.close()


def _count(db: Path, flt: str) -> int:
    store = open_db(db, read_only=True)
    try:
        c = compile_filter(store.cursor(), flt, alias="s")
        return store.cursor().execute(f"SELECT count(*) FROM spans s WHERE {c.where}", c.params).fetchone()[0]
    finally:
        store.close()


def _span_ids(db: Path, flt: str, newest: int | None = None) -> list[tuple]:
    store = open_db(db, read_only=True)
    try:
        c = compile_filter(store.cursor(), flt, alias="s")
        limit = f" ORDER BY s.start_time DESC LIMIT {int(newest)}" if newest else ""
        return store.cursor().execute(f"SELECT s.span_id FROM spans s WHERE {c.where}{limit}", c.params).fetchall()
    finally:
        store.close()


def test_the_overview_in_place_gives_the_local_numbers(source_session, local_demo):
    """glance() and changes(), the core the overview asks, through the source's connection equal the
    same calls on the local load of the same spans."""
    store = open_db(local_demo, read_only=True)
    try:
        local, local_changes = glance(store.cursor()), changes(store.cursor())
    finally:
        store.close()
    g = source_session.ask(lambda e: glance(e.connection()))
    assert g.head.cost == pytest.approx(local.head.cost, rel=1e-9)  # sums in another order: float noise only
    assert g.head == dataclasses.replace(local.head, cost=g.head.cost) and g.head.calls > 1000 and g.head.errors > 0
    assert (g.top, g.bucket_s) == (local.top, local.bucket_s)

    def sums(rows: list[dict]) -> dict:
        return {(r["bucket"], r["grp"]): (r["requests"], r["error_rate__x"], r["cost_per_request__n"]) for r in rows}

    assert sums(g.overall) == sums(local.overall) and sums(g.by_key) == sums(local.by_key)
    remote = source_session.ask(lambda e: changes(e.connection()))
    assert [(c.kind, c.began_at, c.filter, c.affected_requests) for c in remote] == \
        [(c.kind, c.began_at, c.filter, c.affected_requests) for c in local_changes]
    assert source_session.bytes_received < 1_000_000  # aggregates, not the window's rows


def test_a_stopped_pull_leaves_the_incident_as_it_was(source_session, tmp_path):
    from oncall.tui.screens.pull import PullStopped

    db = tmp_path / "incident.duckdb"
    store = open_db(db)

    def stop(rows: int) -> None:
        raise PullStopped()

    try:
        with pytest.raises(PullStopped):
            source_session.pull(store, "", progress=stop)
        assert store.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == 0
        done = source_session.pull(store, "tenant=acme")  # and the session still pulls afterwards
        assert 0 < done.spans_added and done.capped
    finally:
        store.close()


async def test_console_on_a_source_computes_in_place_and_brings_home_what_is_opened(source_session, local_demo,
                                                                                      tmp_path):
    from textual.widgets import OptionList

    from oncall.tui.app import OncallApp
    from oncall.tui.results import ResultsView
    from oncall.tui.screens.explorer import ExplorerScreen
    from oncall.tui.screens.overview import OverviewScreen
    from oncall.tui.screens.reader import ReaderScreen
    from oncall.tui.screens.replay import ReplaySetupModal
    from tests.tui.conftest import settle
    from tests.tui.test_console import static_text

    db = tmp_path / "incident.duckdb"
    store = open_db(db)
    app = OncallApp(store, keymap={}, source=source_session)
    try:
        async with app.run_test(size=CONSOLE_SIZE) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, OverviewScreen)
            head = static_text(app.screen, "#incident")
            assert "in place" in head and "chdb://" in head and "requests" in head
            assert _local(db, "SELECT count(*) FROM spans") == [(0,)]  # computed there, nothing pulled yet
            options = app.screen.query_one("#changes", OptionList)
            prompts = [options.get_option_at_index(i).prompt.plain for i in range(options.option_count)]
            assert any("served model gpt-4o-2024-08-06 -> gpt-4o-2024-11-20" in p for p in prompts)
            assert source_session.queries > 10
            cause = next(c for c in app.screen.changes if c.kind == "new_served_model")
            options.highlighted = next(i for i, p in enumerate(prompts) if "served model" in p)

            await pilot.press("enter")  # open the cause: its cohort and baseline brought home, then the explorer
            await settle(pilot)
            assert isinstance(app.screen, ExplorerScreen)
            view = app.screen.query_one(ResultsView)
            assert view.filter_text == cause.filter
            # At most CONSOLE_CAP LLM calls of the cohort came home, the newest: exactly those of the local load.
            assert _count(db, cause.filter) == min(CONSOLE_CAP, _count(local_demo, cause.filter)) == view.total == CONSOLE_CAP
            assert {r[0] for r in _span_ids(db, cause.filter)} == {r[0] for r in _span_ids(local_demo, cause.filter,
                                                                                               CONSOLE_CAP)}
            spans_home = _local(db, "SELECT count(*) FROM spans")[0][0]

            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, OverviewScreen)
            await pilot.press("r")  # read the same cohort: pulled again, nothing twice
            await settle(pilot)
            assert isinstance(app.screen, ReaderScreen)
            assert _local(db, "SELECT count(*) FROM spans")[0][0] == spans_home
            await pilot.press("b")  # labelled at home
            await settle(pilot)

            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, OverviewScreen)
            await pilot.press("R")  # replay the cause: its rows are home, the dialog opens on them
            await settle(pilot)
            assert isinstance(app.screen, ReplaySetupModal)
            assert _local(db, "SELECT count(*) FROM spans")[0][0] == spans_home
            assert [p.spans_added for p in source_session.pulls[-2:]] == [0, 0]  # cohort and baseline: home already
    finally:
        store.close()
    labelled = _local(db, "SELECT s.span_id, l.label FROM labels l JOIN spans s ON s.span_pk = l.span_pk")
    assert len(labelled) == 1 and labelled[0][1] == "bad"
    # The label's span is the source's span (same id), of the cause's cohort.
    assert labelled[0][0] in {r[0] for r in _span_ids(local_demo, cause.filter)}
