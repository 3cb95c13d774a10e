"""What every real-exporter test asserts, per LLM call, against what the loopback server answered.

The scenario is tests/instrumented_calls.py's: a plain call, a tool-call round trip (two calls), a
streamed call with usage, and a call the server fails with 429. `Truth` is what the library itself
wrote for each call (ids, parent, times), read from its export without oncall; the server's
exchanges say what the model was asked and answered. `check_calls` compares the loaded rows with
both, and `check_search` runs the core search the CLI's `oncall search` runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import instrumented_calls as calls

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / ".envs"


@dataclass
class Truth:
    """One call as the library exported it (read without oncall)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    start_us: int
    end_us: int


def env_python(name: str) -> Path | None:
    """The interpreter of a tool environment made by .ci/setup-exporters.sh, if it is there."""
    py = ENVS / name / "bin" / "python"
    return py if py.exists() and (ENVS / name / ".ready").exists() else None


def run_generator(python: Path | str, script: str, *args: str, timeout: int = 180) -> None:
    proc = subprocess.run([str(python), str(ROOT / "tests" / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=_env())
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGSMITH_", "LANGCHAIN_"))}
    # the generators import instrumented_calls' scenario only; loopback_only/ refuses any other address
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "loopback_only"), str(ROOT / "tests")])
    return env


def spans(db: Any) -> list[dict[str, Any]]:
    cur = db.cursor()
    rel = cur.execute("SELECT *, epoch_us(start_time) AS start_us, epoch_us(end_time) AS end_us "
                      "FROM spans ORDER BY start_time, span_pk")
    cols = [d[0] for d in rel.description]
    rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
    for r in rows:
        for c in ("input_messages", "output_messages", "tool_calls", "attributes", "inherited"):
            if isinstance(r[c], str):
                r[c] = json.loads(r[c])
    return rows


def roles(messages: list[dict[str, Any]] | None) -> list[str]:
    return [m["role"] for m in messages or []]


def llm_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == "llm"]


def check_calls(rows: list[dict[str, Any]], exchanges: list[Any], truth: dict[str, Truth], *,
                cohort: dict[str, str], requested: str = "gpt-4o-mini", served_error_model: bool = False,
                provider: str | None = "openai", ttft: bool = True, served_stream: str = "gpt-4o-mini-2024-07-18",
                tool_calls: bool = True) -> None:
    """Every call of the scenario, field by field. `truth` is keyed by response id, and "429" for the
    failed call. `ttft`, `served_stream` and `tool_calls` say what a library does not write (the
    README's coverage table): no TTFT, the alias as the streamed call's model, no tool calls in the
    output."""
    assert [e.status for e in exchanges] == [200, 200, 200, 200, 429], [e.status for e in exchanges]
    llm = llm_rows(rows)
    assert len(llm) == 5, [(r["name"], r["response_id"], r["status"]) for r in llm]
    by_rid = {r["response_id"]: r for r in llm if r["response_id"]}
    assert set(by_rid) == {e.response["id"] for e in exchanges if e.status == 200}, sorted(by_rid)
    errors = [r for r in llm if r["status"] == "error"]
    assert len(errors) == 1, [(r["name"], r["status"]) for r in llm]
    rows_in_order = [by_rid[e.response["id"]] for e in exchanges if e.status == 200] + errors

    for ex, row in zip(exchanges, rows_in_order, strict=True):
        key = ex.response["id"] if ex.status == 200 else "429"
        t = truth[key]
        where = f"call {key}"
        assert (row["trace_id"], row["span_id"], row["parent_id"]) == (t.trace_id, t.span_id, t.parent_id), where
        assert (row["start_us"], row["end_us"]) == (t.start_us, t.end_us), where
        assert row["model"] == ex.request["model"] == requested, where
        if provider is not None:
            assert row["provider"] == provider, where
        assert roles(row["input_messages"]) == [m["role"] for m in ex.request["messages"]], where
        for k, v in cohort.items():
            assert row[k] == v, f"{where}: {k} is {row[k]!r}, expected {v!r}"
        if ex.status != 200:
            continue
        resp = ex.response
        served = served_stream if ex.request.get("stream") else "gpt-4o-mini-2024-07-18"
        assert resp["model"] == "gpt-4o-mini-2024-07-18" and row["served_model"] == served, where
        usage = resp["usage"]
        assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]), where
        assert row["status"] in ("ok", "unset") and row["error_type"] is None, where
        choice = resp["choices"][0]
        assert row["finish_reason"] == choice["finish_reason"], where
        assert roles(row["output_messages"]) == ["assistant"], where
        if choice["message"]["content"] is not None:
            assert row["output_messages"][0]["content"] == choice["message"]["content"], where
        if ex.request.get("stream"):
            if ttft:
                assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"], (where, row["ttft_ms"])
            else:
                assert row["ttft_ms"] is None, where
        else:
            assert row["ttft_ms"] is None, where

    plain, asked, answered, streamed, failed = rows_in_order
    assert plain["input_messages"] == [{"role": "system", "content": calls.SYSTEM},
                                       {"role": "user", "content": calls.QUESTION}]
    server_call = exchanges[1].response["choices"][0]["message"]["tool_calls"][0]
    assert asked["finish_reason"] == "tool_calls"
    if tool_calls:
        assert [(tc["id"], tc["name"], json.loads(tc["arguments"])) for tc in asked["tool_calls"]] == [
            (server_call["id"], "get_weather", {"city": "Paris"})]
    msgs = answered["input_messages"]
    assert msgs[1]["tool_calls"][0]["id"] == server_call["id"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert msgs[2]["tool_call_id"] == server_call["id"]
    assert json.loads(msgs[2]["content"]) == json.loads(calls.TOOL_RESULT)
    assert streamed["output_messages"][0]["content"] == "".join(
        c["choices"][0]["delta"].get("content") or "" for c in exchanges[3].stream_chunks if c["choices"])
    assert failed["error_type"] == "rate_limit"
    assert failed["http_status"] == 429 or "429" in (failed["error"] or "")
    assert failed["input_messages"] == [{"role": "user", "content": calls.ERROR_QUESTION}]
    assert failed["response_id"] is None
    if not served_error_model:
        assert failed["output_messages"] is None


def check_search(db: Any, cohort: dict[str, str], expected: int = 5) -> None:
    """`oncall search tenant=… user=… session=… feature=… prompt_version=…` finds every LLM call."""
    from oncall.query.search import count

    names = {"tenant": "tenant", "user_id": "user", "session_id": "session", "feature": "feature",
             "prompt_version": "prompt_version"}
    terms = [f"{names[k]}={v}" for k, v in cohort.items()]
    assert count(db.cursor(), terms) == expected, terms
    for term in terms:
        assert count(db.cursor(), [term]) == expected, term


def cli_search_json(db_path: Path, *terms: str) -> dict[str, Any]:
    """The CLI contract itself: `oncall search --json TERMS`."""
    proc = subprocess.run([sys.executable, "-m", "oncall", "search", "--db", str(db_path), "--json", *terms],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
