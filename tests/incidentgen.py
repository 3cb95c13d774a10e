"""Small generated incidents, one per signal `changes` must find, written as real export formats.

Each scenario is steady LLM traffic (Poisson arrivals, per-request noise in lengths, tokens and
latency) with exactly one injected change, written either as OTLP JSON Lines with the
OpenTelemetry GenAI conventions (cohort keys on the root server span, the chat span its child, as
oncall/demo.py writes) or as generic JSONL request logs, and loaded through the real importer.
`Injected` records the truth the tests check against. Deliberately unlike the demo: other tenants,
features, models and volumes, some without tenants, one with a single model.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.demo import _attrs, _ns, _parts

T0 = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)


@dataclass
class Call:
    """One LLM call as a scenario decides it; the writers turn it into a record."""
    t: dt.datetime
    tenant: str | None
    feature: str
    model: str
    served: str
    provider: str
    prompt_version: str
    system: str
    question: str
    answer: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    finish: str = "stop"
    error: tuple[int, str, str] | None = None  # (HTTP status, exception type, message)
    cost: float | None = None


@dataclass
class Injected:
    kind: str  # new_prompt_version | new_served_model | metric_shift
    at: dt.datetime
    until: dt.datetime | None
    cohort: dict[str, str]
    metric: str
    after: str | None = None


@dataclass
class Scenario:
    name: str
    hours: float
    rate: float  # requests per second
    tenants: list[str | None]
    features: list[str]
    decide: Callable[[random.Random, dt.datetime, str | None, str], Call]
    truth: Injected
    fmt: str = "otlp"  # otlp | generic
    seed: int = 11
    calls: list[Call] = field(default_factory=list)

    def generate(self) -> list[Call]:
        rng = random.Random(self.seed)
        t = T0
        end = T0 + dt.timedelta(hours=self.hours)
        while True:
            t += dt.timedelta(seconds=rng.expovariate(self.rate))
            if t >= end:
                break
            self.calls.append(self.decide(rng, t, rng.choice(self.tenants), rng.choice(self.features)))
        return self.calls

    def write(self, out: Path) -> Path:
        calls = self.calls or self.generate()
        out.mkdir(parents=True, exist_ok=True)
        if self.fmt == "otlp":
            path = out / f"{self.name}.otlp.jsonl"
            lines = _otlp_lines(calls, random.Random(self.seed + 1))
        else:
            path = out / f"{self.name}.requests.jsonl"
            lines = [json.dumps(_generic(c, i)) for i, c in enumerate(calls)]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path


# -- writers -----------------------------------------------------------------------------------------
def _otlp_lines(calls: list[Call], rng: random.Random) -> list[str]:
    traces = []
    for c in calls:
        trace_id, root_id, chat_id = (format(rng.getrandbits(b), f"0{b // 4}x") for b in (128, 64, 64))
        start = c.t + dt.timedelta(milliseconds=3)
        end = start + dt.timedelta(seconds=c.latency_s)
        root = {"http.request.method": "POST", "http.route": f"/api/{c.feature}", "app.feature": c.feature,
                "app.request_id": "r-" + chat_id, "app.prompt_version": c.prompt_version,
                "http.response.status_code": c.error[0] if c.error else 200}
        if c.tenant:
            root["app.tenant"] = c.tenant
        chat: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": c.provider, "gen_ai.request.model": c.model,
            "gen_ai.request.max_tokens": 256,
            "gen_ai.input.messages": json.dumps([_parts("system", c.system), _parts("user", c.question)]),
        }
        status: dict[str, Any] = {}
        if c.error:
            chat.update({"error.type": c.error[1], "http.response.status_code": c.error[0]})
            status = {"code": 2, "message": c.error[2]}
        else:
            chat.update({"gen_ai.response.model": c.served, "gen_ai.response.id": "chatcmpl-" + chat_id,
                         "gen_ai.response.finish_reasons": [c.finish],
                         "gen_ai.usage.input_tokens": c.input_tokens, "gen_ai.usage.output_tokens": c.output_tokens,
                         "gen_ai.output.messages": json.dumps([_parts("assistant", c.answer, c.finish)])})
            if c.cost is not None:
                chat["gen_ai.usage.cost"] = c.cost
        traces.append((end, [
            {"traceId": trace_id, "spanId": root_id, "name": f"POST /api/{c.feature}", "kind": 2,
             "startTimeUnixNano": _ns(c.t), "endTimeUnixNano": _ns(end + dt.timedelta(milliseconds=4)),
             "attributes": _attrs(root), "status": {"code": 2} if c.error else {}},
            {"traceId": trace_id, "spanId": chat_id, "parentSpanId": root_id, "name": f"chat {c.model}", "kind": 3,
             "startTimeUnixNano": _ns(start), "endTimeUnixNano": _ns(end), "attributes": _attrs(chat),
             "status": status},
        ]))
    traces.sort(key=lambda x: x[0])  # a batch exporter writes in end-time order
    resource = {"attributes": _attrs({"service.name": "gen-service", "telemetry.sdk.language": "python"})}
    scope = {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.4b0"}
    out = []
    for i in range(0, len(traces), 20):
        spans = [s for _, tr in traces[i:i + 20] for s in tr]
        out.append(json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope,
                                                                                         "spans": spans}]}]}))
    return out


def _generic(c: Call, i: int) -> dict[str, Any]:
    end = c.t + dt.timedelta(seconds=c.latency_s)
    rec: dict[str, Any] = {
        "request_id": f"req-{i:06d}", "start_time": c.t.isoformat().replace("+00:00", "Z"),
        "end_time": end.isoformat().replace("+00:00", "Z"), "model": c.model, "provider": c.provider,
        "feature": c.feature, "prompt_version": c.prompt_version, "input_text": c.system + "\n" + c.question,
        "input_tokens": c.input_tokens,
    }
    if c.tenant:
        rec["tenant"] = c.tenant
    if c.error:
        rec.update({"status": "error", "http_status": c.error[0], "error": c.error[2]})
    else:
        rec.update({"status": "ok", "served_model": c.served, "output_text": c.answer,
                    "output_tokens": c.output_tokens, "finish_reason": c.finish})
        if c.cost is not None:
            rec["cost"] = c.cost
    return rec


# -- shared traffic --------------------------------------------------------------------------------------
WORDS = ("the order shipped on time and the invoice lists every item you bought with tax included "
         "please confirm the address so we can send a replacement within three business days").split()


def _prose(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def _call(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str, **kw: Any) -> Call:
    system = kw.pop("system", f"You are the {feature} assistant. Answer briefly and politely.")
    question = kw.pop("question", _prose(rng, 6, 20) + "?")
    answer = kw.pop("answer", _prose(rng, 15, 45))
    in_tok = kw.pop("input_tokens", (len(system) + len(question)) // 4 + rng.randint(3, 12))
    out_tok = kw.pop("output_tokens", max(3, len(answer) // 4 + rng.randint(-3, 6)))
    base = dict(tenant=tenant, feature=feature, model="gpt-4o-mini", served="gpt-4o-mini-2024-07-18",
                provider="openai", prompt_version="v3", system=system, question=question, answer=answer,
                input_tokens=in_tok, output_tokens=out_tok, latency_s=(0.2 + out_tok * 0.012) * rng.uniform(0.7, 1.4))
    base.update(kw)
    return Call(t=t, **base)


def _background_error(rng: random.Random) -> tuple[int, str, str] | None:
    return (500, "InternalServerError", "Error code: 500 - upstream error") if rng.random() < 0.004 else None


# -- the scenarios ---------------------------------------------------------------------------------------
def prompt_input_tokens() -> Scenario:
    """Tenant `northwind` ships prompt v4 of `chat` at 09:20: a long policy block pasted into the system
    prompt. Input tokens grow about 2.5x; nothing else moves, and the export has no cost."""
    at = T0 + dt.timedelta(hours=1, minutes=20)
    policy = " ".join(f"Policy {i}: refunds over {i * 10} EUR need a manager's approval." for i in range(14))

    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        if tenant == "northwind" and feature == "chat" and t >= at:
            return _call(rng, t, tenant, feature, prompt_version="v4", error=_background_error(rng),
                         system=f"You are the chat assistant. Answer briefly and politely. {policy}")
        return _call(rng, t, tenant, feature, error=_background_error(rng))

    return Scenario("prompt-input-tokens", 3.0, 0.6, ["northwind", "contoso", "fabrikam"], ["chat", "faq"], decide,
                    Injected("new_prompt_version", at, None, {"tenant": "northwind", "feature": "chat"},
                             "input_tokens_mean", "v4"))


def served_model_key_rename() -> Scenario:
    """No tenants, one feature, one model: the provider moves `gpt-4o-mini` to a new snapshot at
    09:05 and every JSON output renames `customer_id` to `customerId`; all of it still valid JSON."""
    at = T0 + dt.timedelta(hours=1, minutes=5)

    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        new = t >= at
        obj = {("customerId" if new else "customer_id"): f"C{rng.randint(1000, 9999)}",
               "total": round(rng.uniform(5, 500), 2), "items": rng.randint(1, 9)}
        return _call(rng, t, None, "invoice-parse", answer=json.dumps(obj), error=_background_error(rng),
                     served="gpt-4o-mini-2025-01-15" if new else "gpt-4o-mini-2024-07-18")

    return Scenario("served-model-key-rename", 2.5, 0.5, [None], ["invoice-parse"], decide,
                    Injected("new_served_model", at, None, {"model": "gpt-4o-mini"}, "json_key_drift",
                             "gpt-4o-mini-2025-01-15"))


def truncation_wave() -> Scenario:
    """Generic request logs, no tenant, one model: from 09:40 to 10:05 a backend limit cuts half the
    answers at 256 tokens (finish_reason `length`)."""
    at, until = T0 + dt.timedelta(hours=1, minutes=40), T0 + dt.timedelta(hours=2, minutes=5)

    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        if at <= t < until and rng.random() < 0.5:
            answer = _prose(rng, 40, 60)[:-1]
            return _call(rng, t, None, feature, answer=answer, output_tokens=256, finish="length")
        return _call(rng, t, None, feature, error=_background_error(rng))

    return Scenario("truncation-wave", 3.0, 0.4, [None], ["summaries", "drafts"], decide,
                    Injected("metric_shift", at, until, {}, "finish_length_rate"), fmt="generic")


def burst_every_tenant() -> Scenario:
    """A shared gateway limit: from 10:30 to 10:40 about 35 % of every tenant's calls, on both
    providers, fail with 429."""
    at, until = T0 + dt.timedelta(hours=2, minutes=30), T0 + dt.timedelta(hours=2, minutes=40)

    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        claude = feature == "digest"
        kw: dict[str, Any] = {"model": "claude-3-5-haiku", "served": "claude-3-5-haiku-20241022",
                              "provider": "anthropic"} if claude else {}
        err = _background_error(rng)
        if at <= t < until and rng.random() < 0.35:
            err = (429, "RateLimitError", "Error code: 429 - rate limit exceeded for the organisation")
        return _call(rng, t, tenant, feature, error=err,
                     cost=None if err else round(rng.uniform(0.0002, 0.0004), 6), **kw)

    return Scenario("burst-every-tenant", 4.0, 0.7, ["t-red", "t-blue", "t-green", "t-gold"],
                    ["assist", "digest", "triage"], decide, Injected("metric_shift", at, until, {}, "error_rate"))


def steady(fmt: str = "otlp") -> Scenario:
    """The same kind of traffic with nothing injected."""
    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        return _call(rng, t, tenant, feature, error=_background_error(rng))

    return Scenario(f"steady-{fmt}", 3.0, 0.6, ["northwind", "contoso", None], ["chat", "faq"], decide,
                    Injected("none", T0, None, {}, ""), fmt=fmt)


SCENARIOS = {"prompt_input_tokens": prompt_input_tokens, "served_model_key_rename": served_model_key_rename,
             "truncation_wave": truncation_wave, "burst_every_tenant": burst_every_tenant}


def short_burst(errors: int = 7, minutes: float = 8.0, rate: float = 30 / 480, cohort: str = "all",
                hours: float = 3.0, seed: int = 17) -> Scenario:
    """A short burst of rate-limit errors and nothing else: `errors` 429s spread uniformly over the
    calls of `cohort` in a `minutes`-long window at 10:15 (none of that class before or after), in
    traffic of `rate` calls a second. `cohort` is all traffic, one provider (`provider` =
    anthropic, the `digest` feature, about a third) or one tenant's digest calls (`tenant`, about a
    ninth). The burst is written after generation so exactly `errors` calls fail."""
    at = T0 + dt.timedelta(hours=2, minutes=15)
    until = at + dt.timedelta(minutes=minutes)
    where = {"all": {}, "provider": {"provider": "anthropic"},
             "tenant": {"tenant": "t-blue", "feature": "digest"}}[cohort]

    def decide(rng: random.Random, t: dt.datetime, tenant: str | None, feature: str) -> Call:
        kw: dict[str, Any] = {"model": "claude-3-5-haiku", "served": "claude-3-5-haiku-20241022",
                              "provider": "anthropic"} if feature == "digest" else {}
        return _call(rng, t, tenant, feature, error=_background_error(rng), **kw)

    sc = Scenario(f"short-burst-{errors}-{cohort}", hours, rate, ["t-red", "t-blue", "t-green"],
                  ["assist", "digest", "triage"], decide, Injected("metric_shift", at, until, where, "error_rate"),
                  seed=seed)
    calls = sc.generate()
    inside = [c for c in calls if at <= c.t < until and all(getattr(c, k) == v for k, v in where.items())]
    for c in random.Random(seed + 2).sample(inside, min(errors, len(inside))):
        c.error = (429, "RateLimitError", "Error code: 429 - rate limit exceeded for the organisation")
        c.cost = None
    sc.truth.metric = "error_rate"
    return sc
