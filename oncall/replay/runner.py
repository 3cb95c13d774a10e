"""A replay run from cohort to summary: plan (select, rebuild, estimate), execute (engine -> store, as
results arrive), resume, summarize. The CLI and the console both drive this module."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oncall.demoworld.world import rebind
from oncall.display import format_cost
from oncall.ingest.canonical import normalize_finish_reason
from oncall.query.ids import request_key
from oncall.replay import store as rstore
from oncall.replay.checks import noise_verdict, pair_checks, side_fold, summary_rows, word_diff
from oncall.replay.context import ContextFold
from oncall.replay.conversation import Conversation, Unreplayable, rebuild
from oncall.replay.engine import CapReached, Caps, Counters, Engine, FatalError, Outcome, Policy
from oncall.replay.suite import PromptVariant, SuiteError, Target

if TYPE_CHECKING:
    from oncall.store.contracts import Store

ROW_COLUMNS = ["span_pk", "span_id", "request_id", "response_id", "kind", "status", "source_format", "model",
               "served_model", "prompt_name", "prompt_version", "input_messages", "output_text", "tool_calls",
               "finish_reason", "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "cost", "attributes", "raw",
               "retrieved", "retrieved_docs", "retrieval_index", "retrieval_span"]
FETCH_CHUNK = 64
JUDGE_SYSTEM = ("You compare two answers to the same conversation: the ORIGINAL (what production answered) and "
                "the REPLAY (another model or prompt). Grade the REPLAY against the ORIGINAL with the rubric below. "
                "Reply with one JSON object only: {\"verdict\": \"better\" | \"same\" | \"worse\", "
                "\"reason\": \"one sentence\"}.\n\nRubric:\n")


class ReplayError(Exception):
    """Bad input for a replay (no such run, no key in the environment); exit 2."""


@dataclass
class ReplaySpec:
    target: Target
    filter_words: list[str] = field(default_factory=list)
    request: str | None = None
    prompt: PromptVariant | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n: int | None = None
    seed: int | None = None
    repeat: int = 1
    concurrency: int = 8
    max_requests: int | None = None
    max_cost: float | None = None
    judge: Target | None = None
    rubric: str | None = None
    baseline: list[str] | None = None
    retry: dict[str, Any] = field(default_factory=dict)  # the suite's max_attempts, backoff_base, retry_budget


@dataclass
class Plan:
    span_pks: list[int]
    replayable: int
    unreplayable: list[tuple[int, str, str]]  # (span_pk, request key, reason)
    estimate: dict[str, Any]


@dataclass
class RunResult:
    run_id: int
    status: str  # finished | incomplete | stopped | interrupted | failed
    reason: str | None
    counts: dict[str, Any]


# -- selecting and planning ---------------------------------------------------------------------------------
def select_span_pks(con: Any, filter_words: list[str], request: str | None, n: int | None,
                    seed: int | None) -> list[int]:
    from oncall.query.filters import compile_filter

    if request is not None:
        from oncall.query.ids import resolve_request

        return [resolve_request(con, request)]  # UnknownRequest/AmbiguousRequest name close matches
    if n is not None:
        from oncall.query.sample import sample

        return [int(r["span_pk"]) for r in sample(con, filter_words, n, seed=seed)]
    c = compile_filter(con, filter_words, alias="s")
    return [int(r[0]) for r in con.execute(f"SELECT s.span_pk FROM spans s WHERE {c.where} ORDER BY s.start_time, "
                                           f"s.span_pk", c.params).fetchall()]


def fetch_rows(con: Any, span_pks: list[int]) -> Iterator[dict[str, Any]]:
    """Full rows for span_pks in their order, FETCH_CHUNK at a time (memory flat in the cohort size)."""
    cols = ", ".join(ROW_COLUMNS)
    for i in range(0, len(span_pks), FETCH_CHUNK):
        chunk = span_pks[i:i + FETCH_CHUNK]
        cur = con.execute(f"SELECT {cols} FROM spans WHERE span_pk IN (SELECT unnest(?))", [chunk])
        by_pk = {r[0]: dict(zip(ROW_COLUMNS, r, strict=True)) for r in cur.fetchall()}
        for pk in chunk:
            if pk in by_pk:
                yield by_pk[pk]


def plan_for(con: Any, spec: ReplaySpec, span_pks: list[int]) -> Plan:
    """The plan for requests already chosen (the console's current request)."""
    return plan(con, spec, span_pks)


def plan(con: Any, spec: ReplaySpec, span_pks: list[int] | None = None) -> Plan:
    """Select the cohort (or take `span_pks`), rebuild every request, estimate tokens and cost."""
    pks = span_pks if span_pks is not None else select_span_pks(con, spec.filter_words, spec.request, spec.n,
                                                                spec.seed)
    est_in = est_out = 0
    replayable = 0
    unrep: list[tuple[int, str, str]] = []
    judge_in = judge_out = 0
    context = ContextFold()
    for row in fetch_rows(con, pks):
        conv = rebuild(row, spec.prompt)
        if isinstance(conv, Unreplayable):
            unrep.append((conv.span_pk, conv.request_key, conv.reason))
            continue
        replayable += 1
        context.add(row, [conv.prefix, [st.results for st in conv.steps]])
        i, o = conv.estimated_tokens()
        est_in += i * spec.repeat
        est_out += o * spec.repeat
        if spec.judge is not None:
            judge_in += (2 * o + len(spec.rubric or "") // 4 + 300) * spec.repeat
            judge_out += 80 * spec.repeat
    t = spec.target
    cost = t.cost(est_in, est_out)
    jcost = spec.judge.cost(judge_in, judge_out) if spec.judge is not None else 0.0
    total = None if cost is None or jcost is None else cost + jcost
    estimate = {"requests": replayable * spec.repeat, "input_tokens": est_in, "output_tokens": est_out,
                "cost": total, "replay_cost": cost, "judge_cost": jcost if spec.judge is not None else None,
                "price_in": t.price_in, "price_out": t.price_out, "price_source": t.price_source,
                # the documents retrieval gave the calls: sent again from the recorded messages (replay.context)
                "context": context.result()}
    return Plan(span_pks=pks, replayable=replayable, unreplayable=unrep, estimate=estimate)


def api_key(target: Target) -> str | None:
    """The target's key from the environment only; missing is an error naming the variable."""
    if not target.api_key_env:
        return None
    key = os.environ.get(target.api_key_env)
    if not key:
        raise ReplayError(f"target {target.name}: ${target.api_key_env} is not set (keys come only from the "
                          "environment)")
    return key


def create_run(db: Store, spec: ReplaySpec, p: Plan) -> int:
    keys = [k for k in (api_key(spec.target), api_key(spec.judge) if spec.judge else None) if k]
    st = rstore.ReplayStore(db, keys)
    target = spec.target if spec.model is None else Target.from_public({**spec.target.public(), "model": spec.model})
    run_id = st.new_run({
        "target": target.name, "model": target.model, "base_url": target.base_url,
        "target_spec": {"target": target.public(), "judge": spec.judge.public() if spec.judge else None,
                        "rubric": spec.rubric, "retry": spec.retry},
        "filter": " ".join(spec.filter_words) if spec.request is None else f"request={spec.request}",
        "baseline": " ".join(spec.baseline) if spec.baseline else None,
        "prompt": {"name": spec.prompt.name, "version": spec.prompt.version, "replaces": spec.prompt.replaces,
                   "path": spec.prompt.path, "text": spec.prompt.text} if spec.prompt else None,
        "params": spec.params, "repeat": spec.repeat, "sample_n": spec.n, "seed": spec.seed,
        "concurrency": spec.concurrency, "judge": spec.judge.name if spec.judge else None,
        "max_requests": spec.max_requests, "max_cost": spec.max_cost, "estimate": p.estimate, "items": p.span_pks,
    })
    st.set_state(run_id, "planned", None, {"planned": len(p.span_pks) * spec.repeat})
    return run_id


def spec_of_run(run: dict[str, Any]) -> ReplaySpec:
    """The spec a stored run was started with (for --resume)."""
    ts = run["target_spec"] or {}
    pr = run.get("prompt")
    return ReplaySpec(
        target=Target.from_public(ts["target"]), filter_words=[], request=None,
        prompt=PromptVariant(pr["name"], pr.get("version"), pr["replaces"], pr["text"], pr["path"]) if pr else None,
        params=run.get("params") or {}, n=run.get("sample_n"), seed=run.get("seed"), repeat=int(run["repeat"] or 1),
        concurrency=int(run.get("concurrency") or 8), max_requests=run.get("max_requests"),
        max_cost=run.get("max_cost"), judge=Target.from_public(ts["judge"]) if ts.get("judge") else None,
        rubric=ts.get("rubric"), baseline=None, retry=ts.get("retry") or {})


# -- executing -----------------------------------------------------------------------------------------------
def _items(con: Any, st: rstore.ReplayStore, run_id: int, spec: ReplaySpec, span_pks: list[int],
           done: set[tuple[int, int]], counters: Counters) -> Iterator[tuple[Conversation, int]]:
    todo = [pk for pk in span_pks if any((pk, k) not in done for k in range(spec.repeat))]
    for row in fetch_rows(con, todo):
        conv = rebuild(row, spec.prompt)
        if isinstance(conv, Unreplayable):
            if (conv.span_pk, 0) not in done:
                st.add_result(run_id, conv.span_pk, 0, {"status": "unreplayable", "error": conv.reason})
            counters.unreplayable += 1
            continue
        for k in range(spec.repeat):
            if (conv.span_pk, k) not in done:
                yield conv, k


async def execute(db: Store, run_id: int, *, progress: Callable[[Counters], None] | None = None,
                  policy: Policy | None = None, max_requests: int | None = None,
                  max_cost: float | None = None) -> RunResult:
    """Run (or resume) a stored run: every finished item is written as it arrives. On resume,
    `max_requests`/`max_cost` replace the stored caps (a run stopped at a cap continues with a higher one)."""
    con = db.cursor()
    run = rstore.get_run(con, run_id)
    if run is None:
        raise ReplayError(f"no replay run {run_id} (see `oncall replay list`)")
    spec = spec_of_run(run)
    spec.target = rebind(spec.target, getattr(db, "path", None))  # a demo target: its server now
    key = api_key(spec.target)
    jkey = api_key(spec.judge) if spec.judge else None
    st = rstore.ReplayStore(db, [k for k in (key, jkey) if k])
    span_pks = [int(x) for x in run["items"] or []]
    done = rstore.finished_items(con, run_id)
    counters = Counters(planned=len(span_pks) * spec.repeat, repeat=spec.repeat)
    counters.done = len(done)
    counters.requests, counters.spent = rstore.spent_so_far(con, run_id)
    caps = Caps(max_requests=max_requests if max_requests is not None else spec.max_requests,
                max_cost=max_cost if max_cost is not None else spec.max_cost)
    engine = Engine(spec.target, key, concurrency=spec.concurrency, policy=policy or _policy(counters.planned, spec.retry),
                    caps=caps, counters=counters)
    judge = Engine(spec.judge, jkey, concurrency=spec.concurrency, caps=caps, counters=counters) \
        if spec.judge else None
    st.set_state(run_id, "running", None, counters.as_dict())
    params = dict(spec.params)

    async def work(item: tuple[Conversation, int]) -> None:
        conv, k = item
        try:
            req_params = conv.request_params(spec.target.params, params)
            i, o = conv.estimated_tokens()
            est = spec.target.cost(i, o) or 0.0
            outcome = await engine.replay(conv, req_params, estimate=est)
            if judge is not None and outcome.status == "ok":
                outcome.judge = await _judge(judge, spec.rubric, conv, outcome)
        except (FatalError, CapReached, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever failed, this request's row says why (issue 23)
            outcome = Outcome(status="error", error_kind="internal",
                              error=f"oncall failed replaying this request: {type(exc).__name__}: {exc}")
        _write(st, run_id, conv, k, outcome)
        if outcome.status == "ok":
            counters.done += 1
        elif outcome.status == "diverged":
            counters.done += 1
            counters.diverged += 1
        else:
            counters.failed += 1
        if progress:
            progress(counters)

    items = _items(con, st, run_id, spec, span_pks, done, counters)
    status, reason = "finished", None
    st.start_writer()
    try:
        await engine.run_pool(items, work)
    except FatalError as exc:
        status, reason = "failed", f"{exc.kind}: {exc}"
    except CapReached as exc:
        status, reason = "stopped", str(exc)
    except asyncio.CancelledError:
        st.close_writer()
        st.set_state(run_id, "interrupted", "interrupted (Ctrl-C); finished requests are kept", counters.as_dict())
        _trail(st, run_id, "interrupted", counters)
        raise
    finally:
        st.close_writer()
        await engine.aclose()
        if judge is not None:
            await judge.aclose()
    missing = rstore.items_without_result(st.db.cursor(), run_id, span_pks, spec.repeat) if status == "finished" else 0
    if missing:  # "finished" only when every planned request has a result
        status = "incomplete"
        reason = (f"{missing} planned request(s) have no result; `oncall replay --resume {run_id}` sends them")
    elif status == "finished" and counters.failed:
        reason = f"{counters.failed} request(s) failed; `oncall replay --resume {run_id}` retries them"
    st.set_state(run_id, status, reason, counters.as_dict())
    _trail(st, run_id, status, counters, reason)
    if progress:
        progress(counters)
    return RunResult(run_id, status, reason, counters.as_dict())


def _policy(planned: int, retry: dict[str, Any]) -> Policy:
    return Policy(retry_budget=int(retry.get("retry_budget", max(20, planned // 5))),
                  max_attempts=int(retry.get("max_attempts", 5)), base_delay=float(retry.get("backoff_base", 0.5)))


def _trail(st: rstore.ReplayStore, run_id: int, status: str, c: Counters, reason: str | None = None) -> None:
    try:
        summ = summarize(st.db.cursor(), run_id, per_request=False)
        headline = summ["headline"]
    except Exception as exc:  # noqa: BLE001 - the trail entry must not lose the run
        summ, headline = {}, f"(summary unavailable: {exc})"
    text = f"replay {run_id} {status}: {headline}" + (f" — {reason}" if reason else "")
    st.record_event(text, {"run_id": run_id, "status": status, "counts": c.as_dict(),
                           "metrics": summ.get("metrics"), "noise": summ.get("noise")})


def _write(st: rstore.ReplayStore, run_id: int, conv: Conversation, k: int, o: Outcome) -> None:
    finish = normalize_finish_reason(o.finish_reason)
    checks = None
    if o.status in ("ok", "diverged"):
        checks = pair_checks({"output_text": conv.original.output_text, "finish_reason": conv.original.finish_reason},
                             {"output_text": o.output_text, "finish_reason": finish})
    st.add_result(run_id, conv.span_pk, k, {
        "status": o.status, "error_kind": o.error_kind, "error": o.error, "output_text": o.output_text,
        "output_messages": [o.output_message] if o.output_message else None, "finish_reason": finish,
        "served_model": o.served_model, "response_id": o.response_id, "input_tokens": o.input_tokens,
        "output_tokens": o.output_tokens, "latency_ms": o.latency_ms, "ttft_ms": o.ttft_ms, "cost": o.cost,
        "attempts": o.attempts, "steps": o.steps, "diverged": o.diverged, "judge": o.judge, "checks": checks,
        "notes": conv.notes or None})


async def _judge(judge: Engine, rubric: str | None, conv: Conversation, o: Outcome) -> dict[str, Any]:
    from oncall.ingest.messages import messages_text
    from oncall.query.quality import _json_text

    last_user = next((m.get("content") for m in reversed(conv.prefix) if m["role"] == "user"), "") or ""
    user = (f"CONVERSATION (last user message):\n{last_user}\n\nORIGINAL:\n{conv.original.output_text or ''}\n\n"
            f"REPLAY:\n{o.output_text or ''}")
    messages = [{"role": "system", "content": JUDGE_SYSTEM + (rubric or "Is the replay at least as correct and "
                                                              "as useful as the original?")},
                {"role": "user", "content": user}]
    est = judge.target.cost(len(user) // 4 + 300, 80) or 0.0
    try:
        res = await judge.call(messages, {"temperature": 0, **judge.target.params}, estimate=est)
    except Exception as exc:  # noqa: BLE001 - a failed grade must not lose the replay (FatalError/caps re-raised)
        if isinstance(exc, (FatalError, CapReached)):
            raise
        return {"verdict": "error", "reason": str(exc), "cost": None, "model": judge.target.model}
    text = messages_text([res.message])
    try:
        v = json.loads(_json_text(text))
        verdict, reason = str(v.get("verdict", "unparsed")).lower(), str(v.get("reason", ""))
    except (ValueError, AttributeError):
        verdict, reason = "unparsed", text[:300]
    return {"verdict": verdict, "reason": reason, "cost": res.cost, "model": res.served_model or judge.target.model,
            "target": judge.target.name}


# -- summarizing -----------------------------------------------------------------------------------------------
def _original_rows(con: Any, pks: list[int]) -> dict[int, dict[str, Any]]:
    cols = ["span_pk", "request_id", "response_id", "span_id", "status", "output_text", "finish_reason",
            "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost", "served_model"]
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(pks), 2000):
        cur = con.execute(f"SELECT {', '.join(cols)} FROM spans WHERE span_pk IN (SELECT unnest(?))",
                          [pks[i:i + 2000]])
        for r in cur.fetchall():
            out[int(r[0])] = dict(zip(cols, r, strict=True))
    return out


def _baseline(con: Any, words: list[str]) -> tuple[dict[str, Any], set[str]]:
    """The baseline cohort's metrics (the registry's, as compare computes them) and its JSON key sets."""
    from oncall.query.filters import compile_filter
    from oncall.query.registry import METRICS, key_drift, key_set_counts, measure

    c = compile_filter(con, words, alias="s")
    stats = measure(con, c.where, c.params, [m for m in METRICS.values() if m.reference is None])
    ks = key_set_counts(con, c.where, c.params, limit=1000)
    stats["json_key_drift"] = key_drift(ks, ks)  # against its own key sets: 0 by definition
    return stats, set(ks)


def summarize(con: Any, run_id: int, *, per_request: bool = True) -> dict[str, Any]:
    """The run's summary: compare's table (baseline, original, replay), noise vs change, and per request.

    Results are read a chunk of requests at a time with their originals and folded into counters, so
    memory does not grow with the run's size unless per_request asks for every pair's output."""
    run = rstore.get_run(con, run_id)
    if run is None:
        raise ReplayError(f"no replay run {run_id} (see `oncall replay list`)")
    repeat = int(run["repeat"] or 1)
    labels = rstore.pair_labels(con, run_id) if per_request else {}
    o_acc, r_acc = side_fold(), side_fold()
    t = _Tally()
    per_req: list[dict[str, Any]] = []
    diverged: list[dict[str, Any]] = []
    for chunk in rstore.latest_results_chunks(con, run_id):
        replayed = [r for r in chunk if r["status"] != "unreplayable"]
        t.results += len(chunk)
        t.unreplayable.extend({"span_pk": int(r["span_pk"]), "reason": r["error"], "request": int(r["span_pk"])}
                              for r in chunk if r["status"] == "unreplayable")
        by_pk: dict[int, list[dict[str, Any]]] = {}
        for r in replayed:
            by_pk.setdefault(int(r["span_pk"]), []).append(r)
            t.add_result(r)
            r_acc.add({**r, "status": "error" if r["status"] == "error" else "ok"})
        originals = _original_rows(con, sorted(by_pk))
        for pk, results in by_pk.items():
            orig = originals.get(pk, {})
            if pk in originals:
                o_acc.add(orig)
            entry = _request_entry(pk, orig, results, repeat, t, labels if per_request else None)
            if entry.get("diverged"):
                diverged.append({"span_pk": pk, "request": entry["request"], "diverged": entry["diverged"]})
            if per_request:
                per_req.append(entry)

    base_vals, ref_keys = (None, None)
    if run.get("baseline"):
        # The stored baseline is filter text: read it as the filter language does (shlex would drop
        # the quotes that keep `tenant="Acme, Inc."` one value).
        base_vals, ref_keys = _baseline(con, [run["baseline"]])
    if ref_keys is None:  # without a baseline, key drift is measured against the originals' own key sets
        ref_keys = set(o_acc.key_sets)
    o_stats, r_stats = o_acc.result({"key_sets": ref_keys}), r_acc.result({"key_sets": ref_keys})
    rows = summary_rows(o_stats, r_stats, base_vals)
    for r in rows:
        if r["metric"] == "cost_total":
            r["replay"] = t.replay_cost or r["replay"]

    noise: dict[str, Any] = {"repeat": repeat}
    if repeat >= 2:
        noise.update({"changed_beyond_noise": t.changed, "within_noise": t.within, "checks_changed": t.check_changed,
                      "note": "a check changed beyond noise when the K replays agree among themselves and the "
                              "original differs from all of them"})
    else:
        noise["note"] = ("one replay per request: this run cannot tell the model's own variation from a change "
                         "(run with --repeat K)")
    judge = {"verdicts": t.verdicts, "cost": t.judge_cost} if t.judged else None
    summ = {
        "run": _run_public(run), "state": run.get("state"),
        "counts": {"planned": len(run["items"] or []) * repeat, "results": t.results, "ok": t.ok,
                   "diverged": t.diverged, "errors": sum(t.errors.values()), "unreplayable": len(t.unreplayable),
                   "pairs": t.pairs, "changed_pairs": t.changed_pairs},
        "metrics": rows, "finish_reasons": {"original": dict(o_acc.finish.most_common()),
                                            "replay": dict(r_acc.finish.most_common())},
        "json_key_sets": {"original": dict(o_acc.key_sets.most_common(50)), "replay": dict(r_acc.key_sets.most_common(50)),
                          "reference": "baseline" if run.get("baseline") else "originals"},
        "noise": noise, "errors": t.errors, "unreplayable": t.unreplayable, "diverged": diverged,
        "judge": judge, "cost": {"replay": t.replay_cost, "judge": judge["cost"] if judge else None,
                                 "total": t.replay_cost + (judge["cost"] if judge else 0.0)},
    }
    # What the plan found about retrieved context (kept: the recorded messages are sent), for runs
    # that were fed by a retrieval; None otherwise.
    summ["context"] = (run.get("estimate") or {}).get("context")
    if per_request:
        summ["requests"] = per_req
    summ["headline"] = _headline(summ)
    return summ


class _Tally:
    """The run-wide counts summarize folds each result and each request into."""

    def __init__(self) -> None:
        self.results = self.ok = self.diverged = self.pairs = self.changed_pairs = 0
        self.changed = self.within = self.judged = 0
        self.replay_cost = self.judge_cost = 0.0
        self.errors: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.check_changed: dict[str, int] = {}
        self.unreplayable: list[dict[str, Any]] = []

    def add_result(self, r: dict[str, Any]) -> None:
        status = r["status"]
        self.ok += status == "ok"
        self.diverged += status == "diverged"
        if status == "error":
            kind = r.get("error_kind") or "other"
            self.errors[kind] = self.errors.get(kind, 0) + 1
        if r.get("checks"):
            self.pairs += 1
            self.changed_pairs += not r["checks"]["exact_match"]
        if r.get("cost") is not None:
            self.replay_cost += float(r["cost"])
        j = r.get("judge")
        if j:
            self.judged += 1
            self.verdicts[j["verdict"]] = self.verdicts.get(j["verdict"], 0) + 1
            if j.get("cost") is not None:
                self.judge_cost += float(j["cost"])


def _request_entry(pk: int, orig: dict[str, Any], results: list[dict[str, Any]], repeat: int, t: _Tally,
                   labels: dict[tuple[int, int], str] | None) -> dict[str, Any]:
    """One request's line of the summary (its noise verdict counted into t); with labels, its pairs too."""
    reps = [r for r in results if r["status"] in ("ok", "diverged")]
    entry: dict[str, Any] = {"span_pk": pk, "request": request_key({**orig, "span_pk": pk}), "replays": len(reps),
                             "errors": sum(1 for r in results if r["status"] == "error"),
                             "diverged": next((r["diverged"] for r in results if r.get("diverged")), None)}
    if repeat >= 2 and len(reps) >= 2:
        v = noise_verdict(orig, reps)
        entry["noise"] = v
        if v["verdict"] == "changed":
            t.changed += 1
        else:
            t.within += 1
        for c, s in v["checks"].items():
            if s["state"] == "changed":
                t.check_changed[c] = t.check_changed.get(c, 0) + 1
    if labels is not None:
        entry["pairs"] = [{"repeat_index": r["repeat_index"], "status": r["status"], "checks": r.get("checks"),
                           "judge": r.get("judge"), "output_text": r.get("output_text"),
                           "label": labels.get((pk, int(r["repeat_index"]))), "diverged": r.get("diverged"),
                           "diff": word_diff(orig.get("output_text"), r.get("output_text"))
                           if r.get("output_text") is not None else None} for r in reps]
        entry["original_output"] = orig.get("output_text")
    return entry


def _run_public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("run_id", "created_at", "author", "target", "model", "base_url", "filter",
                                     "baseline", "params", "repeat", "sample_n", "seed", "concurrency", "judge",
                                     "max_requests", "max_cost", "estimate")} | {
        "prompt": {k: v for k, v in (run.get("prompt") or {}).items() if k != "text"} or None}


def _headline(s: dict[str, Any]) -> str:
    c = s["counts"]
    parts = [f"{c['ok'] + c['diverged']} of {c['planned']} replayed against {s['run']['target']}"]
    if c["pairs"]:
        parts.append(f"{c['changed_pairs']} of {c['pairs']} outputs differ from the original")
    n = s["noise"]
    if "changed_beyond_noise" in n:
        parts.append(f"{n['changed_beyond_noise']} requests changed beyond the model's own variation, "
                     f"{n['within_noise']} within noise")
    else:
        parts.append("noise vs change unknown (no --repeat)")
    for m in s["metrics"]:
        if m["metric"] in ("json_valid_rate", "json_key_drift") and m["original"] is not None and m["replay"] is not None:
            parts.append(f"{m['metric']} {100 * m['original']:.0f}% -> {100 * m['replay']:.0f}%")
    if c["diverged"]:
        parts.append(f"{c['diverged']} diverged")
    if c["errors"]:
        parts.append(f"{c['errors']} failed")
    if c["unreplayable"]:
        parts.append(f"{c['unreplayable']} not replayable")
    parts.append(f"cost {format_cost(s['cost']['total'])}")
    return "; ".join(parts)


def check_spec(spec: ReplaySpec) -> None:
    if spec.repeat < 1:
        raise ReplayError("--repeat must be at least 1")
    if spec.max_cost is not None and (spec.target.price_in is None or spec.target.price_out is None):
        raise SuiteError(f"target {spec.target.name}: --max-cost needs prices; set price_in/price_out in "
                         f"targets.toml or [prices.\"{spec.target.model}\"] in oncall.toml (genai-prices does not know "
                         f"model {spec.target.model})")
    if spec.judge is not None and not spec.judge.judge:
        raise ReplayError(f"target {spec.judge.name} is not marked judge = true in targets.toml")
