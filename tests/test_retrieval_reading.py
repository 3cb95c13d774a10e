"""Reading and replaying calls a retrieval fed: `show` and the reader put the documents each call was
given beside its output (untrusted text shown as text); replay sends the recorded context and says
so — and says when a prompt variant drops it. The traffic is the demo's help-center app (embedding,
retrieval and chat spans in GenAI conventions) before and after its index was rebuilt."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openai_server import OpenAIServer
from replay_helpers import write_suite

from oncall.cli import cli
from oncall.demo import NEW_INDEX, OLD_INDEX, help_center_traffic
from oncall.ingest.loader import load_paths
from oncall.store import open_db
from tests.test_retrieval import _otlp, _span

KEY_ENV = "ONCALL_TEST_KEY"
HOSTILE = "Refunds: see [bold red]policy[/] \x1b]52;c;ZXZpbA==\x07 and \u202eevil\u202c; [@click=app.quit]x[/]"


@pytest.fixture(scope="module")
def incident(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rag-reading")
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    help_center_traffic(d / "good.jsonl", index=OLD_INDEX, start=start, requests=12, seed=3)
    help_center_traffic(d / "bad.jsonl", index=NEW_INDEX, start=start + dt.timedelta(minutes=5), requests=12, seed=4)
    docs = {"retrieval.documents.0.document.id": "kb-9", "retrieval.documents.0.document.content": HOSTILE,
            "retrieval.documents.0.document.score": 0.91,
            "retrieval.documents.0.document.metadata": json.dumps({"source": "kb/\x1b[2Jrefunds.md"})}
    hostile = [_span("3" * 16, "search", 0.7, 0.9, {"openinference.span.kind": "RETRIEVER", "input.value": "refund?",
                                                    "metadata": json.dumps({"index": "kb-v42"}), **docs}),
               _span("4" * 16, "answer", 1.0, 2.0, {
                   "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 30,
                   "gen_ai.usage.output_tokens": 9, "gen_ai.response.id": "chatcmpl-hostile1",
                   "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                       {"type": "text", "content": "See the policy."}]}])}),
               _span("a" * 16, "POST /ask", 0.0, 2.1, {"app.tenant": "acme"}, parent=None)]
    (d / "hostile.jsonl").write_text(_otlp(hostile) + "\n")
    db = open_db(d / "incident.duckdb")
    report = load_paths(db, [str(d / f) for f in ("good.jsonl", "bad.jsonl", "hostile.jsonl")])
    db.close()
    assert report.problems == []
    return d / "incident.duckdb"


def _ids(db: Path, where: str) -> list[str]:
    with open_db(db, read_only=True) as store:
        return [r[0] for r in store.con.execute(
            f"SELECT response_id FROM spans WHERE kind = 'llm' AND {where} ORDER BY start_time").fetchall()]


def test_show_puts_the_documents_given_beside_the_output(incident: Path) -> None:
    runner = CliRunner()
    rid = _ids(incident, f"retrieval_index = '{OLD_INDEX}' AND retrieved > 0")[0]
    out = runner.invoke(cli, ["show", "--db", str(incident), rid]).output
    assert "── documents given ──" in out and f"from {OLD_INDEX}" in out
    assert "embedding text-embedding-3-small" in out
    head = out.split("── input ──")[0]  # the documents come before the conversation, with their scores
    data = json.loads(runner.invoke(cli, ["show", "--db", str(incident), rid, "--json"]).output)
    docs = data["retrieved_docs"]
    assert isinstance(docs, list) and docs and data["retrieved"] == len(docs)
    for i, d in enumerate(docs, 1):
        assert f"{i}.  {d['score']:.2f}  {d['source']}  [{d['id']}]" in head
        assert f"   {d['content']}" in head
    empty = _ids(incident, "retrieved = 0")[0]
    out = runner.invoke(cli, ["show", "--db", str(incident), empty]).output
    assert f"EMPTY: no document from {NEW_INDEX}" in out and "I'm sorry, I don't know" in out


def test_retrieved_text_is_shown_as_text(incident: Path) -> None:
    from oncall.query.detail import request_detail
    from oncall.query.ids import resolve_request
    from oncall.tui.screens.reader import documents_text

    out = CliRunner().invoke(cli, ["show", "--db", str(incident), "chatcmpl-hostile1"]).output
    assert "\x1b" not in out and "\u202e" not in out
    assert "[bold red]policy[/]" in out and "␛]52;c;ZXZpbA==␇" in out and "<U+202E>evil" in out
    assert "kb/␛[2Jrefunds.md" in out
    with open_db(incident, read_only=True) as store:
        d = request_detail(store.con, resolve_request(store.con, "chatcmpl-hostile1"))
    text = documents_text(d)
    assert "1 document from kb-v42, top score 0.91" in text.plain
    assert "[bold red]policy[/]" in text.plain and "[@click=app.quit]x[/]" in text.plain  # markup never parsed
    assert "\x1b" not in text.plain and "\u202e" not in text.plain
    assert not any("click" in str(s.style) for s in text.spans)


def _plan(incident: Path, suite: Path, words: list[str], prompt: str | None = None) -> dict[str, Any]:
    from oncall.replay import runner
    from oncall.replay.suite import load_suite

    s = load_suite(str(suite))
    spec = runner.ReplaySpec(target=s.target("loop"), filter_words=words,
                             prompt=s.prompt(prompt) if prompt else None)
    with open_db(incident, read_only=True) as store:
        return runner.plan(store.cursor(), spec).estimate["context"]


def test_replay_plan_keeps_the_recorded_context_and_says_when_a_variant_drops_it(incident: Path,
                                                                                tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "http://127.0.0.1:9")  # planning sends nothing
    ctx = _plan(incident, suite, ["feature=help-center"])
    with open_db(incident, read_only=True) as store:
        fed, empty, docs = store.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE retrieved = 0), sum(retrieved) FROM spans "
            "WHERE kind = 'llm' AND feature = 'help-center'").fetchone()
    assert (ctx["fed_by_retrieval"], ctx["empty_retrieval"], ctx["documents"]) == (fed, empty, docs) and empty > 0
    assert ctx["documents_sent"] == docs and ctx["complete"]
    assert set(ctx["indexes"]) == {OLD_INDEX, NEW_INDEX}
    assert "the index is not searched again" in ctx["note"] and f"{docs} of {docs} documents" in ctx["note"]
    # a prompt variant replaces the system prompt the app pasted the articles into: they are not sent
    (suite / "prompts" / "help-v8.md").write_text("---\nname: help-center\nversion: v8\nreplaces: help-center\n---\n"
                                                  "Answer briefly.\n")
    ctx = _plan(incident, suite, ["feature=help-center"], "help-v8")
    assert ctx["documents_sent"] == 0 and not ctx["complete"] and f"{docs} are not" in ctx["note"]
    assert _plan(incident, suite, ["feature=nothing-like-it"]) is None


def test_replay_sends_the_recorded_documents_and_says_so(incident: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "loopback-key-41c2")
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url)
        res = CliRunner().invoke(cli, ["replay", "--db", str(incident), "--suite", str(suite), "--target", "loop",
                                       "--yes", "--no-progress", f"retrieval_index={OLD_INDEX}", "retrieved>0",
                                       "-n", "3", "--seed", "1"], catch_exceptions=False)
        sent = [e.request for e in srv.completions()]
    assert res.exit_code == 0, res.output
    assert res.output.count("the index is not searched again") == 2  # in the plan and in the summary
    assert len(sent) == 3 and all("Articles:\n[ha-" in r["messages"][0]["content"] for r in sent)
    summary = json.loads(CliRunner().invoke(cli, ["replay", "show", "1", "--db", str(incident), "--json"]).output)
    assert summary["context"]["fed_by_retrieval"] == 3 and summary["context"]["complete"]
