"""Cost where the export has none: estimated at load with genai-prices, exported cost kept, oncall.toml wins.

The reference for every estimate is genai-prices' own `calc_price` on the same token counts, model,
provider and request time: oncall must agree with it, not with a price table of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices.types import Usage

from oncall.demo import EXPORT_NAME, generate_demo
from oncall.ingest.cost import cost_summary
from oncall.ingest.loader import load_paths
from oncall.query.compare import compare
from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent


def _reference(r: dict[str, Any]) -> float:
    usage = Usage(input_tokens=r["input_tokens"] or 0, cache_read_tokens=r["cached_tokens"] or 0,
                  output_tokens=r["output_tokens"] or 0)
    return float(genai_prices.calc_price(usage, r["served_model"] or r["model"], provider_id=r["provider"],
                                         genai_request_timestamp=r["start_time"]).total_price)


def _rows(db, where: str = "kind = 'llm'") -> list[dict[str, Any]]:
    rel = db.cursor().execute(f"SELECT * FROM spans WHERE {where} ORDER BY span_pk")
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


@pytest.fixture(autouse=True)
def no_user_prices(tmp_path, monkeypatch):
    """No oncall.toml of the developer's: an empty config dir and a clean working directory."""
    monkeypatch.setenv("ONCALL_CONFIG_DIR", str(tmp_path / "config"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory) -> dict[str, Path]:
    """A short demo export as written (with gen_ai.usage.cost) and the same spans with cost stripped."""
    out = tmp_path_factory.mktemp("demo-export")
    generate_demo(out, seed=11, hours=1.0)
    src = out / EXPORT_NAME
    stripped = out / "no-cost.jsonl"
    n = 0
    with open(src, encoding="utf-8") as fin, open(stripped, "w", encoding="utf-8") as fout:
        for line in fin:
            doc = json.loads(line)
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        kept = [kv for kv in sp.get("attributes", []) if kv["key"] != "gen_ai.usage.cost"]
                        n += len(sp.get("attributes", [])) - len(kept)
                        sp["attributes"] = kept
            fout.write(json.dumps(doc) + "\n")
    assert n > 100, "the demo export should carry gen_ai.usage.cost on its LLM spans"
    return {"with_cost": src, "without_cost": stripped}


def test_estimates_equal_genai_prices_on_the_demo_without_cost(demo_export, tmp_path):
    db = open_db(tmp_path / "i.duckdb")
    try:
        report = load_paths(db, [str(demo_export["without_cost"])])
        assert report.problems == []
        rows = _rows(db)
        priced = [r for r in rows if r["input_tokens"] is not None or r["output_tokens"] is not None]
        assert len(priced) > 100
        for r in priced:
            assert r["cost_source"] == "estimated", (r["served_model"], r["provider"])
            assert r["cost"] == pytest.approx(_reference(r), rel=1e-9, abs=1e-15)
        # Calls without tokens (the 429s) have no estimate, and say so. The help-center's query
        # embeddings are priced the same way (ingest.cost prices embedding spans); no other span is.
        assert {r["cost_source"] for r in rows if r not in priced} <= {"unknown"}
        others = _rows(db, "kind <> 'llm' AND cost_source IS NOT NULL")
        assert others and {r["kind"] for r in others} == {"embedding"}
        for r in others:
            assert r["cost_source"] == "estimated" and r["cost"] == pytest.approx(_reference(r), rel=1e-9, abs=1e-15)
        summ = cost_summary(db.cursor())
        assert summ["estimated"] == len(priced) and summ["exported"] == 0 and summ["unpriced_models"] == []
    finally:
        db.close()


def test_exported_cost_is_kept(demo_export, tmp_path):
    exported = {}
    for line in open(demo_export["with_cost"], encoding="utf-8"):
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    for kv in sp.get("attributes", []):
                        if kv["key"] == "gen_ai.usage.cost":
                            exported[sp["spanId"].lower()] = kv["value"]["doubleValue"]
    db = open_db(tmp_path / "i.duckdb")
    try:
        load_paths(db, [str(demo_export["with_cost"])])
        rows = [r for r in _rows(db) if r["span_id"] in exported]
        assert len(rows) == len(exported)
        for r in rows:
            assert r["cost_source"] == "exported" and r["cost"] == exported[r["span_id"]]
    finally:
        db.close()


# -- hand-made OTLP spans for the pricing rules -----------------------------------------------------

def _span(i: int, model: str, provider: str | None, *, served: str | None = None, inp: int | None = 1000,
          cached: int | None = None, out: int | None = 100, cost: float | None = None,
          at: datetime = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if provider:
        attrs["gen_ai.provider.name"] = provider
    if served:
        attrs["gen_ai.response.model"] = served
    if inp is not None:
        attrs["gen_ai.usage.input_tokens"] = inp
    if out is not None:
        attrs["gen_ai.usage.output_tokens"] = out
    if cached is not None:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cached
    if cost is not None:
        attrs["gen_ai.usage.cost"] = cost
    ns = int(at.timestamp() * 1e9)
    kv = [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else
           {"doubleValue": v} if isinstance(v, float) else {"stringValue": v}} for k, v in attrs.items()]
    return {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": f"chat {model}", "kind": 3,
            "startTimeUnixNano": str(ns), "endTimeUnixNano": str(ns + 500_000_000), "attributes": kv,
            "status": {}}


def _write(path: Path, spans: list[dict[str, Any]]) -> Path:
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "t"},
                                                                              "spans": spans}]}]}
    path.write_text(json.dumps(doc) + "\n")
    return path


def _load(tmp_path: Path, *files: Path) -> Any:
    db = open_db(tmp_path / "incident.duckdb")
    report = load_paths(db, [str(f) for f in files])
    assert report.problems == [], report.to_dict()
    return db


def test_cached_tokens_are_priced_at_the_cached_rate(tmp_path):
    f = _write(tmp_path / "a.jsonl", [_span(1, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18",
                                            inp=1000, cached=400, out=100),
                                      _span(2, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18",
                                            inp=1000, cached=0, out=100)])
    db = _load(tmp_path, f)
    try:
        cached, uncached = _rows(db)
        assert cached["cost"] == pytest.approx(_reference(cached), rel=1e-12)
        info = genai_prices.calc_price(Usage(input_tokens=1), "gpt-4o-mini", provider_id="openai").model_price
        rate_in, rate_cached = float(info.input_mtok) / 1e6, float(info.cache_read_mtok) / 1e6
        assert rate_cached < rate_in
        assert uncached["cost"] - cached["cost"] == pytest.approx(400 * (rate_in - rate_cached), rel=1e-9)
    finally:
        db.close()


def test_tiers_and_time_of_day_prices_follow_genai_prices(tmp_path):
    """gemini-2.5-pro costs more per token above 200k prompt tokens; deepseek-chat is cheaper off-peak."""
    spans = [_span(1, "gemini-2.5-pro", "gcp.vertex_ai", inp=1000, out=500),
             _span(2, "gemini-2.5-pro", "gcp.vertex_ai", inp=250_000, cached=10_000, out=500),
             _span(3, "deepseek-chat", "deepseek", at=datetime(2026, 11, 24, 2, 0, tzinfo=UTC)),
             _span(4, "deepseek-chat", "deepseek", at=datetime(2026, 11, 24, 18, 0, tzinfo=UTC))]
    db = _load(tmp_path, _write(tmp_path / "t.jsonl", spans))
    try:
        small, big, day, night = _rows(db)
        for r in (small, big, day, night):
            assert r["cost_source"] == "estimated"
            assert r["cost"] == pytest.approx(_reference(r), rel=1e-9)
        mp = genai_prices.calc_price(Usage(input_tokens=1), "gemini-2.5-pro", provider_id="google").model_price
        at_base = (240_000 * mp.input_mtok.base + 10_000 * mp.cache_read_mtok.base + 500 * mp.output_mtok.base) / 10**6
        assert big["cost"] > float(at_base) * 1.2  # the tier's rates, not the base rates
        assert day["cost"] != night["cost"]
    finally:
        db.close()


def test_oncall_toml_overrides_and_adds_prices(tmp_path, no_user_prices, monkeypatch):
    (no_user_prices / "oncall.toml").write_text(
        '[prices."gpt-4o-mini"]\ninput = 0.10\ncached_input = 0.02\noutput = 0.40\n'
        '[prices."llama-3.3-70b-local"]\ninput = 0.05\noutput = 0.05\n')
    user_dir = Path(os.environ["ONCALL_CONFIG_DIR"])
    user_dir.mkdir()
    (user_dir / "oncall.toml").write_text('[prices."gpt-4o-mini"]\ninput = 9\noutput = 9\n'
                                          '[prices."my-finetune"]\ninput = 1\noutput = 2\n')
    spans = [_span(1, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18", inp=1000, cached=400, out=100),
             _span(2, "llama-3.3-70b-local", "vllm", inp=2000, out=300),
             _span(3, "my-finetune", None, inp=1_000_000, out=1_000_000),
             _span(4, "gpt-4o-mini", "openai", cost=0.5)]
    db = _load(tmp_path, _write(tmp_path / "o.jsonl", spans))
    try:
        mini, llama, finetune, exported = _rows(db)
        # the working directory's file wins over the user's; the requested name matches the served call
        assert mini["cost"] == pytest.approx((600 * 0.10 + 400 * 0.02 + 100 * 0.40) / 1e6, rel=1e-12)
        assert llama["cost"] == pytest.approx((2000 * 0.05 + 300 * 0.05) / 1e6, rel=1e-12)
        assert finetune["cost"] == pytest.approx(3.0, rel=1e-12)
        assert {mini["cost_source"], llama["cost_source"], finetune["cost_source"]} == {"estimated"}
        assert (exported["cost"], exported["cost_source"]) == (0.5, "exported")
    finally:
        db.close()


def test_an_estimate_stays_an_estimate_when_a_later_load_rewrites_the_span(tmp_path):
    """Children loaded before their root are rewritten when the root arrives (to inherit its keys)."""
    child = _span(2, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18")
    child["traceId"], child["parentSpanId"] = f"{1:032x}", f"{1:016x}"
    root = {"traceId": f"{1:032x}", "spanId": f"{1:016x}", "name": "ticket", "kind": 2,
            "startTimeUnixNano": child["startTimeUnixNano"], "endTimeUnixNano": child["endTimeUnixNano"],
            "attributes": [{"key": "tenant", "value": {"stringValue": "acme"}}], "status": {}}
    db = _load(tmp_path, _write(tmp_path / "child.jsonl", [child]))
    try:
        [before] = _rows(db)
        assert before["cost_source"] == "estimated"
        assert load_paths(db, [str(_write(tmp_path / "root.jsonl", [root]))]).problems == []
        [after] = _rows(db)
        assert after["tenant"] == "acme"
        assert (after["cost"], after["cost_source"]) == (before["cost"], "estimated")
    finally:
        db.close()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "oncall.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_unknown_models_are_reported_once_and_not_guessed(tmp_path, no_user_prices):
    a = _write(tmp_path / "a.jsonl", [_span(i, "llama-local-7b", "self-hosted") for i in range(1, 4)]
               + [_span(9, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18")])
    b = _write(tmp_path / "b.jsonl", [_span(i, "llama-local-7b", "self-hosted") for i in range(4, 6)])
    db_path = tmp_path / "cli.duckdb"
    proc = _cli("load", "--db", str(db_path), str(a), str(b), cwd=no_user_prices)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note:")]
    assert notes == ["note: no price for model 'llama-local-7b' (self-hosted): 5 call(s) left without cost; "
                     "add [prices.\"llama-local-7b\"] to oncall.toml to price it"]
    assert "1 estimated" in proc.stdout and "5 unknown" in proc.stdout
    js = json.loads(_cli("load", "--db", str(tmp_path / "j.duckdb"), str(a), "--json", cwd=no_user_prices).stdout)
    assert [m["model"] for m in js["summary"]["cost"]["unpriced_models"]] == ["llama-local-7b"]
    db = open_db(db_path, read_only=True)
    try:
        unknown = _rows(db, "cost_source = 'unknown'")
        assert len(unknown) == 5 and all(r["cost"] is None for r in unknown)
    finally:
        db.close()


def test_a_bad_oncall_toml_is_bad_input(tmp_path, no_user_prices):
    (no_user_prices / "oncall.toml").write_text('[prices."gpt-4o"]\ninput = "cheap"\noutput = 1\n')
    f = _write(tmp_path / "a.jsonl", [_span(1, "gpt-4o", "openai")])
    proc = _cli("load", "--db", str(tmp_path / "x.duckdb"), str(f), cwd=no_user_prices)
    assert proc.returncode == 2
    assert "oncall.toml: [prices.\"gpt-4o\"] input = 'cheap': expected a number >= 0" in proc.stderr


def test_every_display_marks_estimates(tmp_path, no_user_prices):
    spans = [_span(i, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18") for i in range(1, 4)]
    spans.append(_span(7, "gpt-4o-mini", "openai", served="gpt-4o-mini-2024-07-18", cost=0.25))
    f = _write(tmp_path / "a.jsonl", spans)
    db_path = tmp_path / "d.duckdb"
    assert _cli("load", "--db", str(db_path), str(f), cwd=no_user_prices).returncode == 0
    out = _cli("search", "--db", str(db_path), cwd=no_user_prices).stdout
    costs = [ln.split()[-2] for ln in out.splitlines() if "gpt-4o-mini" in ln]
    assert sorted(costs) == ["$0.25", "~$0.00021", "~$0.00021", "~$0.00021"], out
    show = _cli("show", "--db", str(db_path), f"{1:016x}", cwd=no_user_prices).stdout
    assert "~$0.00021 (estimated from tokens x price)" in show
    show = _cli("show", "--db", str(db_path), f"{7:016x}", cwd=no_user_prices).stdout
    assert "$0.25" in show and "~$0.25" not in show and "estimated" not in show
    db = open_db(db_path, read_only=True)
    try:
        res = compare(db.cursor(), ["cost<0.1"], ["cost>0.1"])
        rows = {m["metric"]: m for m in res["metrics"]}
        assert rows["cost_per_request"]["estimated"] == {"cohort": 1.0, "baseline": 0.0}
        assert rows["cost_total"]["estimated"] == {"cohort": 1.0, "baseline": 0.0}
        exported_only = {m["metric"]: m for m in compare(db.cursor(), ["cost>0.1"], ["cost>0.2"])["metrics"]}
        assert exported_only["cost_per_request"]["estimated"] is None
    finally:
        db.close()
    text = _cli("compare", "--db", str(db_path), "cost<0.1", "--baseline", "cost>0.1", cwd=no_user_prices).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("cost_per_request"))
    assert "~$0.00021" in line and "$0.25" in line and "~$0.25" not in line
    assert "~ cohort: 100 % of costs are estimated from tokens x price" in text
