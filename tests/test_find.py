"""The filter language, search, show, sample, label and note — headless core and CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from oncall.cli import cli
from oncall.errors import InputError
from oncall.ingest.loader import load_paths
from oncall.query.filters import KNOWN_KEYS, Filter, FilterError, Term, compile_filter, parse_filter
from oncall.query.ids import AmbiguousRequest, UnknownRequest, resolve_request
from oncall.query.labels import add_label
from oncall.query.sample import sample
from oncall.query.search import count, page_at, search
from oncall.store import open_db

TENANTS = ["acme", "globex", "initech", "umbr%lla"]


def record(i: int) -> dict:
    return {"request_id": f"req-{i:05d}", "trace_id": f"{i:032x}", "timestamp": 1772359200 + i * 60,
            "tenant": TENANTS[i % 4], "model": "gpt-4o", "served_model": "gpt-4o-2024-11-20" if i >= 60 else
            "gpt-4o-2024-08-06", "latency_ms": 100 + i * 10, "cost": round(0.001 * (i % 5), 4),
            "prompt": f"question {i}", "output": f"answer {i} " + ("refund approved" if i % 10 == 0 else "ok"),
            "status": "error" if i % 25 == 0 else "ok", "error": "429 Too Many Requests" if i % 25 == 0 else None,
            "meta": {"customer": {"tier": "gold" if i % 2 else "free"}}, "response_id": f"chatcmpl-{i:06d}"}


@pytest.fixture
def small(db, tmp_path: Path):
    p = tmp_path / "log.jsonl"
    p.write_text("".join(json.dumps(record(i)) + "\n" for i in range(100)))
    rep = load_paths(db, [str(p)])
    assert rep.problems == []
    return db


def n(db, flt: str) -> int:
    return count(db.con, flt)


# -- filter language ---------------------------------------------------------------------------------
def test_filter_terms(small) -> None:
    assert n(small, "") == 100
    assert n(small, "tenant=acme") == 25
    assert n(small, "tenant=acme,globex") == 50
    assert n(small, "tenant!=acme") == 75
    assert n(small, "tenant~GLOB") == 25
    assert n(small, "tenant~r%l") == 25  # % is literal, not a wildcard
    assert n(small, "tenant~/^(acme|initech)$/") == 50
    assert n(small, "latency_ms>1000") == 9 and n(small, "latency>1s") == 9
    assert n(small, "latency_ms>=1000 latency_ms<1050") == 5
    assert n(small, "served_model=gpt-4o-2024-11-20") == 40
    assert n(small, "refund") == 10 and n(small, '"refund approved"') == 10 and n(small, "REFUND tenant=acme") == 5
    assert n(small, "error=rate_limit") == 4 and n(small, "status=error") == 4 and n(small, "status=ok") == 96
    assert n(small, "meta.meta.customer.tier=gold") == 50  # nested key of the raw record
    assert n(small, "cost>0.002") == 40
    assert n(small, "kind=tool") == 0


def test_time_terms_resolve_against_the_data(small) -> None:
    # The data ends at 1772359200 + 99 min = 2026-03-01 11:39 UTC.
    c = compile_filter(small.con, "since=-30m")
    assert n(small, "since=-30m") == 31 and "2026-03-01T11:09:00+00:00" in c.notes[0]
    assert n(small, "since=11:00 until=11:10") == 10
    assert n(small, "since=2026-03-01T11:30Z") == 10
    assert "UTC" in compile_filter(small.con, "since=11:00").notes[0]


def test_request_key_takes_any_id_or_prefix(small) -> None:
    assert n(small, "request=req-00042") == 1
    assert n(small, "request=chatcmpl-000042") == 1
    assert n(small, f"request={42:032x}") == 1  # trace id
    assert n(small, "request=req-0004") == 10  # prefix


@pytest.mark.parametrize("bad, fragment", [
    ("tenat=acme", "did you mean 'tenant'"),
    ("latency_ms>fast", "'fast' is not a number"),
    ("tenant>3", "compares numbers"),
    ("since=yesterday", "ISO time"),
    ("output~/[/", "bad regular expression"),
    ('"unclosed', "close the quote"),
])
def test_bad_terms_point_at_the_term(small, bad: str, fragment: str) -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter(small.con, bad)
    assert fragment in str(exc.value)
    if "unknown" in str(exc.value):
        assert all(k in str(exc.value) for k in KNOWN_KEYS)


def test_user_text_never_becomes_sql(small) -> None:
    assert n(small, ['tenant="acme\' OR \'1\'=\'1"']) == 0  # one value holding SQL
    assert n(small, ["x'); DROP TABLE spans; --"]) == 0  # words holding SQL
    assert small.con.execute("SELECT count(*) FROM spans").fetchone()[0] == 100
    c = compile_filter(small.con, ["tenant=a'b", "meta.x\"y=1"])
    assert "a'b" not in c.where and "a'b" in c.params


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["tenant", "model", "feature", "meta.a.b", "name"]),
                          st.sampled_from(["=", "!=", "~"]),
                          st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
                          .filter(lambda s: s.strip() == s and s and not s.startswith("/"))),
                max_size=4))
def test_canonical_text_round_trips(terms) -> None:
    """Any value (spaces, quotes, commas, backslashes) written as canonical text reads back as itself."""
    f = Filter(tuple(Term(k, op, v) for k, op, v in terms))
    back = parse_filter(f.text)
    assert back == f and [t.values for t in back.terms] == [(v,) for _, _, v in terms]


# -- search / show -----------------------------------------------------------------------------------
def test_search_pages_newest_first_without_overlap(small) -> None:
    seen: list[str] = []
    page = search(small.con, "tenant=acme", limit=10)
    while True:
        seen += [r["request_id"] for r in page.rows]
        if page.next is None:
            break
        page = search(small.con, "tenant=acme", limit=10, before=page.next)
    assert seen == [f"req-{i:05d}" for i in range(96, -1, -4)]
    assert [r["request_id"] for r in page_at(small.con, "tenant=acme", 20, 3)] == ["req-00016", "req-00012",
                                                                                    "req-00008"]
    by_cost = page_at(small.con, "", 0, 5, order_by="cost", descending=True)
    assert all(r["cost"] == 0.004 for r in by_cost)


def test_resolve_request_ids_prefixes_and_suggestions(small) -> None:
    pk = resolve_request(small.con, "req-00042")
    assert resolve_request(small.con, "chatcmpl-000042") == pk
    assert resolve_request(small.con, f"{42:032X}") == pk  # pasted upper-case trace id
    assert resolve_request(small.con, "chatcmpl-000042"[:-1] + "2") == pk
    with pytest.raises(AmbiguousRequest):
        resolve_request(small.con, "req-0004")
    with pytest.raises(UnknownRequest) as exc:
        resolve_request(small.con, "req-9")
    assert exc.value.suggestions and all(s.startswith("req-") for s in exc.value.suggestions)


def test_cli_search_show_label_note(small, tmp_path: Path) -> None:
    path = str(small.path)
    small.close()
    runner = CliRunner()
    res = runner.invoke(cli, ["search", "--db", path, "--json", "tenant=acme", "refund", "--limit", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["total"] == 5 and [r["request_id"] for r in out["requests"]] == ["req-00080", "req-00060",
                                                                                 "req-00040"]
    res = runner.invoke(cli, ["search", "--db", path, "tenat=acme"])
    assert res.exit_code == 2 and "did you mean 'tenant'" in res.output
    res = runner.invoke(cli, ["label", "--db", path, "req-00040", "bad", "--note", "made up refund"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["show", "--db", path, "--json", "chatcmpl-000040"])
    d = json.loads(res.output)
    assert d["request_id"] == "req-00040" and d["labels"][0]["label"] == "bad"
    assert d["labels"][0]["note"] == "made up refund" and d["trace"][0]["focus"]
    labelled = json.loads(runner.invoke(cli, ["search", "--db", path, "--json", "label=bad"]).output)
    assert [r["request_id"] for r in labelled["requests"]] == ["req-00040"]
    res = runner.invoke(cli, ["show", "--db", path, "req-zz"])
    assert res.exit_code == 1 and "no request" in res.output
    res = runner.invoke(cli, ["note", "--db", path, "paged", "at", "02:10"])
    assert res.exit_code == 0
    store = open_db(path, read_only=True)
    kinds = [r[0] for r in store.con.execute("SELECT kind FROM trail ORDER BY event_id").fetchall()]
    store.close()
    assert kinds[-2:] == ["label", "note"]


# -- sample ----------------------------------------------------------------------------------------
def test_sample_is_repeatable_full_and_exact_size(small) -> None:
    a = sample(small.con, "tenant=acme", 7, seed=11)
    b = sample(small.con, "tenant=acme", 7, seed=11)
    c = sample(small.con, "tenant=acme", 7, seed=12)
    assert [r["span_pk"] for r in a] == [r["span_pk"] for r in b] != [r["span_pk"] for r in c]
    assert len(a) == 7 and all(r["tenant"] == "acme" for r in a)
    assert all(r["output_text"].startswith("answer") for r in a)  # full text, not a preview
    assert len(sample(small.con, "tenant=acme", 50, seed=1)) == 25  # fewer rows than asked: all of them


def test_sample_is_uniform_over_filtered_rows(small) -> None:
    # 25 acme rows, samples of 5 over 400 seeds: each row expected 80 times. A chi-square over 25 cells
    # (24 dof) above 51.2 happens with p < 0.001 for a uniform sampler.
    hits: Counter[int] = Counter()
    for seed in range(400):
        hits.update(r["span_pk"] for r in sample(small.con, "tenant=acme", 5, seed=seed))
    assert len(hits) == 25
    chi2 = sum((v - 80) ** 2 / 80 for v in hits.values())
    assert chi2 < 51.2, hits


def test_stratified_sample_covers_each_group(small) -> None:
    rows = sample(small.con, "", 8, by="tenant", seed=3)
    assert Counter(r["tenant"] for r in rows) == {t: 2 for t in TENANTS}
    with pytest.raises(InputError, match="cannot stratify"):
        sample(small.con, "", 8, by="colour")


def test_labels_latest_wins(small) -> None:
    pk = resolve_request(small.con, "req-00001")
    add_label(small, pk, "bad", "wrong", author="ana")
    add_label(small, pk, "good", "on reflection fine", author="ana")
    assert n(small, "label=good") == 1 and n(small, "label=bad") == 0 and n(small, "label=none") == 99
    with pytest.raises(ValueError):
        add_label(small, pk, "meh")


# -- CLI contract found in the 2 AM audit ------------------------------------------------------------
def test_cli_db_option_beats_the_environment(small, tmp_path: Path, monkeypatch) -> None:
    """`oncall --db X search` with $ONCALL_DB set elsewhere reads X (the subcommand used to re-read the env)."""
    path = str(small.path)
    small.close()
    monkeypatch.setenv("ONCALL_DB", str(tmp_path / "missing.duckdb"))
    runner = CliRunner()
    res = runner.invoke(cli, ["--db", path, "search", "--json", "tenant=acme"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["total"] == 25
    res = runner.invoke(cli, ["search", "--json", "tenant=acme"])  # no --db at all: the environment counts
    assert res.exit_code == 2 and "missing.duckdb does not exist" in res.stderr


def test_cli_usage_errors_are_one_line(small) -> None:
    path = str(small.path)
    small.close()
    runner = CliRunner()
    for args in (["compare", "--db", path, "tenant=acme"], ["label", "--db", path, "req-00001", "meh"],
                 ["search", "--db", path, "--limit", "many"], ["no-such-command"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("oncall: error: "), (args, res.stderr)
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0 and "search" in res.stdout


def test_cli_show_prints_request_notes_and_sample_says_when_empty(small) -> None:
    from oncall.query.labels import add_note

    pk = resolve_request(small.con, "req-00007")
    add_note(small, "customer quoted this one [b]x[/b]", span_pk=pk)
    path = str(small.path)
    small.close()
    runner = CliRunner()
    res = runner.invoke(cli, ["show", "--db", path, "req-00007"])
    assert res.exit_code == 0 and "── notes ──" in res.stdout and "customer quoted this one [b]x[/b]" in res.stdout
    d = json.loads(runner.invoke(cli, ["show", "--db", path, "--json", "req-00007"]).stdout)
    assert [n["text"] for n in d["notes"]] == ["customer quoted this one [b]x[/b]"]
    res = runner.invoke(cli, ["sample", "--db", path, "tenant=nobody", "-n", "3"])
    assert res.exit_code == 0 and res.stdout == "" and "no requests match tenant=nobody" in res.stderr


@pytest.mark.parametrize("flt", ["", "tenant=acme", "refund", "status=error", "served_model=gpt-4o-2024-11-20 order",
                                 "tenant=globex latency>3000", "zzz-no-such-text"])
def test_windowed_newest_first_pages_match_a_plain_scan(demo_db: Path, monkeypatch, flt: str) -> None:
    """search() looks in the newest slice of time first; the pages must be exactly those of a full scan."""
    import oncall.query.search as search_mod

    store = open_db(demo_db, read_only=True)
    try:
        def pages(limit: int) -> list[list[int]]:
            out, page = [], search(store.con, flt, limit=limit)
            for _ in range(6):
                out.append([int(r["span_pk"]) for r in page.rows])
                if page.next is None:
                    break
                page = search(store.con, flt, limit=limit, before=page.next)
            return out

        for limit in (1, 7, 50):
            windowed = pages(limit)
            monkeypatch.setattr(search_mod, "WINDOW_FRACTIONS", ())
            plain = pages(limit)
            monkeypatch.undo()
            assert windowed == plain, (flt, limit)
    finally:
        store.close()


def test_one_latest_label_rule_everywhere_including_a_tie_in_time(small, monkeypatch) -> None:
    """Two labels in one clock tick: the later write (label_id) wins in the filter, search, compare's
    label counts, the eval set and the postmortem's evidence (arg_max on created_at picked either)."""
    import datetime as dt

    from oncall.postmortem.draft import _evidence
    from oncall.postmortem.evalset import build_cases
    from oncall.query import labels as labels_mod
    from oncall.query.registry import METRICS, measure

    tick = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(labels_mod, "now_utc", lambda: tick)
    pks = [resolve_request(small.con, f"req-{i:05d}") for i in (1, 2, 3)]
    for pk in pks:
        add_label(small, pk, "good", "looks right")
        add_label(small, pk, "bad", None)  # same instant, written later: this one counts, and its (empty) note
    con = small.cursor()
    assert n(small, "label=bad") == 3 and n(small, "label=good") == 0
    assert {r["label"] for r in search(con, "label=bad").rows} == {"bad"}
    m = measure(con, "s.span_pk IN (?, ?, ?)", pks, [METRICS["labelled_bad_rate"]])["labelled_bad_rate"]
    assert (m.n, m.x) == (3, 3)  # three labelled, three bad
    cases = {c.request: c for c in build_cases(con)}
    assert set(cases) == {"req-00001", "req-00002", "req-00003"}
    assert {(c.label, c.note) for c in cases.values()} == {("bad", None)}
    assert {(e["request"], e["label"], e["note"]) for e in _evidence(con)} == {
        (f"req-{i:05d}", "bad", None) for i in (1, 2, 3)}


def test_one_request_key_whatever_id_named_the_request(small) -> None:
    """A label given by response id or trace id records the request key (request id, else response
    id, else span id, else span_pk), the same one search, replay and the eval set print."""
    from oncall.query.ids import request_key, request_key_sql, span_request_key

    pk = resolve_request(small.con, "chatcmpl-000004")
    add_label(small, pk, "bad")
    assert small.cursor().execute("SELECT request_key FROM labels").fetchall() == [("req-00004",)]
    trail = small.cursor().execute("SELECT summary FROM trail WHERE kind = 'label'").fetchall()
    assert trail == [("labelled req-00004 bad",)]
    assert span_request_key(small.cursor(), pk) == "req-00004"
    for row in ({"request_id": "", "response_id": "r", "span_id": "s", "span_pk": 7},
                {"request_id": None, "response_id": None, "span_id": None, "span_pk": 7},
                {"request_id": "q", "response_id": "r", "span_id": "s", "span_pk": 7}):
        sql = small.cursor().execute(
            f"SELECT {request_key_sql('s')} FROM (SELECT ?::VARCHAR AS request_id, ?::VARCHAR AS response_id, "
            f"?::VARCHAR AS span_id, ?::BIGINT AS span_pk) s",
            [row["request_id"], row["response_id"], row["span_id"], row["span_pk"]]).fetchone()[0]
        assert sql == request_key(row)
