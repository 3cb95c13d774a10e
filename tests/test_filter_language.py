"""The filter language never silently means something else (issue 8, item 5).

One rule for every argument (positional terms and --baseline): each is read as the filter bar
reads text. Quotes keep commas and operators literal, and every filter oncall writes (changes'
reproducing filters, compare's echo) quotes what needs it, so it reads back as itself. Regexes are
checked by the engine that runs them; closed vocabularies are errors listing the valid values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from oncall.cli import cli
from oncall.ingest.loader import load_paths
from oncall.query.changes import changes
from oncall.query.filters import FilterError, compile_filter, parse_filter, quote_value
from oncall.query.search import count

T0 = 1772359200  # 2026-03-01T10:00:00Z
TENANTS = ["Acme, Inc.", "acme", "globex", 'say "hi"']


def _record(i: int) -> dict:
    tenant = TENANTS[i % 4]
    # From request 200 on, tenant "Acme, Inc." runs prompt v2: a change `changes` must report for it.
    version = "v2" if tenant == "Acme, Inc." and i >= 200 else "v1"
    return {"request_id": f"r-{i:04d}", "timestamp": T0 + i * 30, "tenant": tenant, "model": "gpt-4o",
            "prompt_version": version, "input": f"question {i}", "cost": 0.001,
            "output": ("don't know " if i % 10 == 0 else "answer ") + str(i) + (" x" * (200 if version == "v2" else 1)),
            "latency_ms": 100}


@pytest.fixture
def store(db, tmp_path: Path):
    p = tmp_path / "log.jsonl"
    p.write_text("".join(json.dumps(_record(i)) + "\n" for i in range(400)))
    assert load_paths(db, [str(p)]).problems == []
    return db


def _cli(store, *args: str):
    return CliRunner().invoke(cli, ["--db", str(store.path), *args])


def n(store, flt) -> int:
    return count(store.con, flt)


# -- one rule for every argument ------------------------------------------------------------------
def test_one_argument_holding_several_terms_is_split_like_the_filter_bar(store) -> None:
    store.close()
    one = _cli(store, "search", "--json", "--limit", "500", "tenant=acme since=2026-03-01T12:00Z")
    two = _cli(store, "search", "--json", "--limit", "500", "tenant=acme", "since=2026-03-01T12:00Z")
    assert one.exit_code == 0 and two.exit_code == 0, one.output
    a, b = json.loads(one.output), json.loads(two.output)
    assert a["total"] == b["total"] == 40  # requests 240..399 of tenant acme
    assert a["filter"] == b["filter"] == "tenant=acme since=2026-03-01T12:00Z"


def test_baseline_follows_the_same_rule_as_positional_arguments(store) -> None:
    store.close()
    res = _cli(store, "compare", "--json", 'tenant="Acme, Inc." since=2026-03-01T11:40Z',
               "--baseline", 'tenant="Acme, Inc." until=2026-03-01T11:40Z')
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["cohort"]["requests"] == 50 and out["baseline"]["requests"] == 50
    assert out["baseline"]["filter"] == 'tenant="Acme, Inc." until=2026-03-01T11:40Z'


def test_an_argument_that_looks_like_an_unquoted_value_gets_a_note(store) -> None:
    c = compile_filter(store.con, ["tenant=Acme Inc"])
    assert [str(t) for t in c.filter.terms] == ["tenant=Acme", "Inc"]
    assert any("tenant=\"Acme Inc\"" in note for note in c.notes)


# -- commas and quotes ------------------------------------------------------------------------------
def test_a_quoted_value_keeps_its_comma(store) -> None:
    assert n(store, 'tenant="Acme, Inc."') == 100
    with pytest.raises(FilterError, match='needs quotes, e.g. tenant="Acme, Inc."'):
        n(store, ["tenant=Acme, Inc."])  # unquoted (the shell ate the quotes): an error, not 0 rows
    assert n(store, 'tenant=acme,"Acme, Inc."') == 200  # an unquoted comma still means "any of"
    assert n(store, 'tenant!="Acme, Inc."') == 300
    assert n(store, "tenant='say \"hi\"'") == 100


def test_apostrophes_inside_words_are_text(store) -> None:
    assert n(store, "don't") == 40
    assert n(store, ["don't know"]) == 40


@pytest.mark.parametrize("value", ["Acme, Inc.", 'say "hi"', "a,b,c", "x\\", "back\\slash", "it's", "",
                                   "tenant=acme", " padded ", "tab\there"])
def test_quote_value_reads_back_as_one_value(value: str) -> None:
    term = parse_filter(f"tenant={quote_value(value)}").terms[0]
    assert term.values == (value,) and parse_filter(str(term)).terms[0] == term


def test_changes_writes_filters_that_reproduce_their_cohort(store) -> None:
    found = [c for c in changes(store.con) if c.kind == "new_prompt_version"]
    assert found, "the v2 prompt of tenant 'Acme, Inc.' must be reported"
    change = found[0]
    assert change.cohort["tenant"] == "Acme, Inc."
    terms = [str(t) for t in parse_filter(change.filter).terms]
    assert 'tenant="Acme, Inc."' in terms and "prompt_version=v2" in terms
    assert n(store, change.filter) == change.affected_requests == 50
    # ...also when scoped by the filter `changes` ran on.
    scoped = [c for c in changes(store.con, 'tenant="Acme, Inc."') if c.kind == "new_prompt_version"]
    assert scoped and n(store, scoped[0].filter) == 50


# -- regexes are checked by the engine that runs them ----------------------------------------------
@pytest.mark.parametrize("pattern", ["(?=x)", "(?<!a)b", r"(a)\1", "[", "a{2,1}"])
def test_a_regex_re2_cannot_run_is_an_error_naming_the_term(store, pattern: str) -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter(store.con, f"output~/{pattern}/")
    assert f"output~/{pattern}/" in str(exc.value) and "regular expression" in str(exc.value)
    store.close()
    res = _cli(store, "search", f"output~/{pattern}/")
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "Exception" not in res.output and "RE2" in res.output


def test_a_regex_re2_runs_still_matches(store) -> None:
    assert n(store, r"output~/^don't\s") == 0  # no closing slash: a substring search, not a regex
    assert n(store, r'output~"/^don\'t know \d+ x( x)*$/"') == 40  # a regex with spaces is quoted
    assert n(store, "tenant~/^(acme|globex)$/") == 200


# -- closed vocabularies ----------------------------------------------------------------------------
@pytest.mark.parametrize("term, valid", [
    ("label=maybe", ["good", "bad", "none"]),
    ("label!=meh", ["good", "bad", "none"]),
    ("status=weird", ["ok", "error", "unset"]),
    ("error=bogus", ["rate_limit", "quota", "server", "timeout", "content_filter", "client", "other"]),
    ("error=rate_limit,bogus", ["rate_limit", "other"]),
])
def test_closed_vocabularies_list_the_valid_values(store, term: str, valid: list[str]) -> None:
    with pytest.raises(FilterError) as exc:
        compile_filter(store.con, term)
    assert term in str(exc.value) and all(v in str(exc.value) for v in valid)
    store.close()
    res = _cli(store, "search", term)
    assert res.exit_code == 2 and "valid values" in res.output


def test_closed_vocabulary_values_still_work(store) -> None:
    assert n(store, "label=none") == 400 and n(store, "label=good,none") == 400 and n(store, "label=bad") == 0
    assert n(store, "status=ok") == 400 and n(store, "status=unset") == 0 and n(store, "status=ok,error") == 400
    assert n(store, "error=") == 400 and n(store, "error~timed") == 0  # free text stays free
    assert n(store, "kind=whatever") == 0  # kind is open: importers keep kinds they do not know
