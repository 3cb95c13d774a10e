"""The demo incident: hours of realistic LLM traffic with four injected problems, deterministic.

It is written the way a real team's traces arrive — OTLP JSON Lines from the OpenTelemetry file
exporter, current GenAI semantic conventions (`gen_ai.input.messages` / `gen_ai.output.messages` in
the parts format, `gen_ai.provider.name`, requested vs response model), the application's cohort
keys on the root server span and the LLM call as its child — and loaded through the same importer
as `oncall load`, so the demo exercises the real path end to end.

The story (times are UTC on DEMO_DAY; `DemoTruth` records exactly what was injected):
- 21:00-03:00 normal traffic: tenants acme, globex, initech, umbrella, hooli; features support-bot
  (multi-turn sessions, gpt-4o), extract (JSON output, gpt-4o), summarize (claude-3-5-sonnet) and
  help-center (RAG, gpt-4o-mini: the question is embedded with text-embedding-3-small, the
  help-articles index searched, the articles found pasted into the system prompt; each step a span).
- 00:30 acme ships prompt support-bot v13 (a retrieval block pasted into the system prompt): input
  tokens, and so cost per request, roughly triple for acme's support-bot.
- 01:12 OpenAI silently updates the gpt-4o alias: served model gpt-4o-2024-08-06 -> gpt-4o-2024-11-20
  for every tenant; answers get longer and more agreeable, and extract's JSON renames `order_id` to
  `orderId` in some outputs and wraps others in prose (invalid JSON).
- 01:38 the help-center index alias moves to help-articles-v42, rebuilt with text-embedding-3-large
  while queries are still embedded with text-embedding-3-small: neighbours no longer match, so most
  retrievals come back empty (about two thirds; the rest with low scores and the wrong articles) and
  the bot answers "I'm sorry, I don't know" or short off-topic answers.
- 02:05-02:20 a burst of 429 rate-limit errors from anthropic (summarize).

The help-center traffic comes from its own random stream, so the other features' traffic is the
same with or without it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oncall.fileio import write_atomic
from oncall.ingest.formats.otlp import encode_kv

DEMO_DAY_END = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC)
OLD_SNAPSHOT, NEW_SNAPSHOT = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"
CLAUDE = "claude-3-5-sonnet-20241022"
TENANTS = [("acme", 0.34), ("globex", 0.22), ("initech", 0.18), ("umbrella", 0.15), ("hooli", 0.11)]
FEATURES = [("support-bot", 0.55), ("extract", 0.25), ("summarize", 0.20)]
MINI, MINI_SNAPSHOT = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
PRICES = {"gpt-4o": (2.5e-6, 10e-6), CLAUDE: (3e-6, 15e-6), MINI: (0.15e-6, 0.6e-6)}  # USD per input / output token
RELEASE = "2026.11.3"
EXPORT_NAME = "otlp-traces.jsonl"
TRACES_PER_LINE = 25

QUESTIONS = [
    "How do I reset my password?", "Why was I charged twice this month?", "Can I change my plan to annual billing?",
    "My export to CSV keeps failing, what should I do?", "How do I add a teammate to my workspace?",
    "Where can I download last month's invoice?", "The dashboard shows no data since yesterday. Is there an outage?",
    "How do I turn on two-factor authentication?", "Can you cancel my subscription at the end of the period?",
    "What is the API rate limit on the pro plan?", "How do I rotate my API key?",
    "Why is my webhook not receiving events?", "Can I get a refund for an accidental upgrade?",
]
ANSWERS = [
    "You can reset it from Settings > Security > Reset password. A link valid for 30 minutes is sent by email.",
    "The second charge is a pending authorisation that drops off within 3 business days; no action is needed.",
    "Yes. Go to Billing > Plan, choose Annual and confirm; the unused part of this month is prorated.",
    "Exports over 1 GB time out. Narrow the date range or use the scheduled export, which has no size limit.",
    "Open Workspace > Members > Invite and enter their email; they get the role you pick.",
    "Invoices are under Billing > History; each row has a PDF link.",
    "There is no open incident. Check that the data source token has not expired under Integrations.",
    "Go to Settings > Security > Two-factor and scan the QR code with an authenticator app.",
    "I have scheduled the cancellation for the end of the current period; you keep access until then.",
    "The pro plan allows 600 requests per minute per key; the response headers show what is left.",
    "Create a new key under Developer > API keys, deploy it, then revoke the old one.",
    "Webhooks are disabled after 20 consecutive failures. Fix the endpoint and re-enable it under Webhooks.",
    "Accidental upgrades within 7 days are refunded in full; I have opened the refund for you.",
]
AGREEABLE = ["Absolutely! Great question.", "Of course, happy to help!", "Great question, you're absolutely right to ask.",
             "Certainly! I completely understand."]
EXTRA = [" I hope this helps, and please don't hesitate to reach out if there is anything else at all I can do for you!",
         " Let me know if you have any other questions; I'm always here to help and glad to assist further!",
         " Thanks so much for your patience, and have a wonderful day!"]
DOCS = ["Order confirmation #{n}: 2 items shipped to Lyon on {d}, total EUR {a}.",
        "Invoice {n} for {a} USD, status paid, issued {d}.",
        "Return request for order {n}, refund of {a} approved on {d}."]
ARTICLES = ["Sales rose 4% in the quarter on strong demand in Europe while margins held steady.",
            "The council approved the new bike lanes after a two-hour debate on parking.",
            "Researchers reported a battery chemistry that keeps 90% capacity after 3,000 cycles.",
            "The airline cut its forecast, citing fuel costs and delayed aircraft deliveries."]
REFUSAL = "I'm sorry, but I can't help with that request."
SYSTEM_V12 = ("You are Acme Support, a concise, friendly assistant. Answer in at most three sentences, "
              "cite the settings path when relevant and never promise refunds you cannot issue.")
KB_BLOCK = " ".join(f"[KB-{i:03d}] " + ANSWERS[i % len(ANSWERS)] for i in range(16))
SYSTEM_V13 = SYSTEM_V12 + " Use the knowledge base below.\n" + KB_BLOCK
SYSTEM_GENERIC = ("You are a helpful support assistant for {tenant}. Be concise and accurate; "
                  "say so when you do not know.")
SYSTEM_EXTRACT = ("Extract the order as JSON with keys order_id, amount, currency, status. "
                  "Reply with the JSON object only.")
SYSTEM_SUMMARIZE = "Summarize the article in one sentence."

# -- help-center: retrieval over the help articles (the fourth injected problem) ----------------------
HELP_RATE = 0.07  # requests per second at scale 1 (the other features share 0.5)
QUERY_EMBEDDING = "text-embedding-3-small"
OLD_INDEX, NEW_INDEX = "help-articles-v41", "help-articles-v42"
INDEX_EMBEDDING = {OLD_INDEX: "text-embedding-3-small", NEW_INDEX: "text-embedding-3-large"}
TOP_K, MIN_SCORE = 4, 0.3  # the app keeps at most TOP_K articles scoring at least MIN_SCORE
HELP_ARTICLES = [  # (id, source, updated, question, article)
    ("ha-1001", "help/security/reset-password.md", "2026-10-02", "How do I reset my password?",
     "Reset your password from Settings > Security > Reset password. The emailed link is valid for 30 minutes."),
    ("ha-1002", "help/billing/double-charge.md", "2026-09-14", "Why was I charged twice?",
     "A second charge is usually a pending authorisation; it drops off within 3 business days."),
    ("ha-1003", "help/billing/annual-plan.md", "2026-08-30", "Can I switch to annual billing?",
     "Switch to annual billing under Billing > Plan; the unused part of the month is prorated."),
    ("ha-1004", "help/data/csv-export.md", "2026-11-03", "My CSV export fails, what can I do?",
     "CSV exports over 1 GB time out. Narrow the date range or use the scheduled export, which has no limit."),
    ("ha-1005", "help/workspace/invite.md", "2026-07-21", "How do I invite a teammate?",
     "Invite teammates from Workspace > Members > Invite; they get the role you pick."),
    ("ha-1006", "help/billing/invoices.md", "2026-10-18", "Where are my invoices?",
     "Invoices are under Billing > History, each with a PDF link."),
    ("ha-1007", "help/security/two-factor.md", "2026-06-11", "How do I turn on two-factor authentication?",
     "Turn on two-factor under Settings > Security > Two-factor and scan the QR code with an authenticator app."),
    ("ha-1008", "help/api/rate-limits.md", "2026-11-12", "What is the API rate limit?",
     "The pro plan allows 600 requests per minute per key; the X-RateLimit-Remaining header shows what is left."),
    ("ha-1009", "help/api/rotate-key.md", "2026-09-27", "How do I rotate an API key?",
     "Create a new key under Developer > API keys, deploy it, then revoke the old key."),
    ("ha-1010", "help/integrations/webhooks.md", "2026-11-19", "Why did my webhook stop?",
     "Webhooks are disabled after 20 consecutive failures. Fix the endpoint, then re-enable it under Webhooks."),
    ("ha-1011", "help/billing/refunds.md", "2026-10-25", "Can I get a refund for an accidental upgrade?",
     "Accidental upgrades are refunded in full within 7 days; open Billing > History and choose Request refund."),
    ("ha-1012", "help/account/delete.md", "2026-05-08", "How do I delete my account?",
     "Owners can delete the workspace under Settings > Danger zone; data is erased after 30 days."),
]
SYSTEM_HELP = ("You answer customers' questions using only the help-center articles below. Quote the settings "
               "path. If the articles do not cover the question, say you don't know.\n\nArticles:\n{articles}")
HELP_DONT_KNOW = "I'm sorry, I don't know: the help center has nothing on that."


# -- the model's answers: the generator and the demo's replay server (oncall/demoworld) share them ---------
def support_reply(answer: str, new_snapshot: bool, rng: random.Random) -> str:
    """support-bot's answer to a known question: the odd refusal on any day; the new snapshot is agreeable."""
    if rng.random() < 0.02:
        return REFUSAL
    if new_snapshot:
        return rng.choice(AGREEABLE) + " " + answer + (rng.choice(EXTRA) if rng.random() < 0.06 else "")
    return answer


def extract_reply(order_id: str, amount: float, new_snapshot: bool, roll: float) -> str:
    """extract's JSON: the new snapshot wraps a third in prose and renames order_id in another third;
    the old one truncates one output in a hundred."""
    obj = {"order_id": order_id, "amount": amount, "currency": "EUR", "status": "shipped"}
    if new_snapshot:
        if roll < 0.31:
            return "Sure! Here is the extracted order:\n" + json.dumps(obj, indent=2) + "\nLet me know if you need anything else!"
        if roll < 0.62:
            return json.dumps({"orderId": order_id, "amount": amount, "currency": "EUR", "status": "shipped"})
        return json.dumps(obj)
    return json.dumps(obj)[:-9] if roll < 0.01 else json.dumps(obj)  # the rare truncated output of any day


def summarize_reply(article: str) -> str:
    return "In short: " + article.lower().rstrip(".") + "."


def help_reply(question: str, article_ids: list[str]) -> str:
    """help-center's answer from the articles it was given, best first: the right one answers the
    question; another is paraphrased, short and beside the point; none is "I don't know"."""
    if not article_ids:
        return HELP_DONT_KNOW
    by_id = {a[0]: a for a in HELP_ARTICLES}
    top = by_id.get(article_ids[0])
    if top is None:
        return HELP_DONT_KNOW
    if top[3] == question:
        return f"{top[4]} (see {top[1]})"
    return "Possibly related: " + top[4].split(";")[0].split(". ")[0] + "."


def latency_seconds(input_tokens: int, output_tokens: int, rng: random.Random) -> float:
    """How long an answer takes: a fixed overhead, the tokens generated, the prompt read, and jitter."""
    return (0.35 + output_tokens * 0.018 + input_tokens * 0.00004) * rng.uniform(0.8, 1.35)


def token_counts(input_chars: int, answer: str, rng: random.Random) -> tuple[int, int]:
    """(input, output) tokens as the provider bills them: about four characters a token, plus overhead."""
    return int(input_chars / 4) + rng.randint(5, 25), max(3, int(len(answer) / 4) + rng.randint(-3, 8))


@dataclass
class InjectedChange:
    kind: str  # new_served_model | new_prompt_version | new_retrieval_index | error_burst
    description: str
    at: str  # ISO UTC start
    until: str | None
    cohort: dict[str, str]
    before: str | None = None
    after: str | None = None
    effects: dict[str, str] = field(default_factory=dict)


@dataclass
class DemoTruth:
    seed: int
    start: str
    end: str
    incident: bool
    requests: int = 0
    spans: int = 0
    changes: list[InjectedChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- OTLP building ---------------------------------------------------------------------------------
def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return encode_kv({k: v for k, v in d.items() if v is not None})


def _ns(t: dt.datetime) -> str:
    return str(int(t.timestamp() * 1_000_000) * 1000)


def _parts(role: str, text: str, finish: str | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish:
        m["finish_reason"] = finish
    return m


class _Gen:
    def __init__(self, seed: int, hours: float, incident: bool, scale: float, retrieval: bool = True) -> None:
        self.rng = random.Random(seed)
        self.end = DEMO_DAY_END
        self.start = self.end - dt.timedelta(hours=hours)
        self.incident = incident
        self.scale = scale
        self.prompt_change = self.end - dt.timedelta(hours=2, minutes=30)  # 00:30
        self.model_change = self.end - dt.timedelta(hours=1, minutes=48)  # 01:12
        self.burst = (self.end - dt.timedelta(minutes=55), self.end - dt.timedelta(minutes=40))  # 02:05-02:20
        self.index_change = self.end - dt.timedelta(hours=1, minutes=22)  # 01:38
        self.help_rng = random.Random(f"help-center-{seed}")  # its own stream: the rest is unchanged by it
        self.retrieval = retrieval  # False: no help-center feature (and no fourth problem)
        self.traces: list[dict[str, Any]] = []  # each: {"resource": …, "spans": […]}
        self.requests = 0

    def _hex(self, bits: int) -> str:
        return format(self.rng.getrandbits(bits), f"0{bits // 4}x")

    def _pick(self, weighted: list[tuple[str, float]]) -> str:
        return self.rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]

    # -- traffic ---------------------------------------------------------------------------------
    def run(self) -> None:
        # Arrivals: a Poisson process whose rate follows a gentle night-time curve.
        t = self.start
        base_rate = 0.5 * self.scale  # requests per second at the start
        span = (self.end - self.start).total_seconds()
        while t < self.end:
            frac = (t - self.start).total_seconds() / span
            rate = base_rate * (1.0 - 0.35 * frac)
            t += dt.timedelta(seconds=self.rng.expovariate(rate))
            if t >= self.end:
                break
            feature = self._pick(FEATURES)
            tenant = self._pick(TENANTS)
            if feature == "support-bot":
                self._session(t, tenant)
            else:
                self._request(t, tenant, feature, history=[], session=None, user=f"u-{self.rng.randint(1, 400):04d}")
        if self.retrieval:
            self._help_center(span)

    def _help_center(self, span: float) -> None:
        """The help-center feature: its own Poisson arrivals on its own random stream."""
        rng = self.help_rng
        t = self.start
        while True:
            frac = (t - self.start).total_seconds() / span
            t += dt.timedelta(seconds=rng.expovariate(HELP_RATE * self.scale * (1.0 - 0.35 * frac)))
            if t >= self.end:
                break
            tenant = rng.choices([w[0] for w in TENANTS], [w[1] for w in TENANTS])[0]
            self._help_request(t, tenant, f"u-{rng.randint(1, 400):04d}")

    def _session(self, t: dt.datetime, tenant: str) -> None:
        user = f"u-{self.rng.randint(1, 400):04d}"
        session = "sess-" + self._hex(48)
        history: list[dict[str, Any]] = []
        for _ in range(self.rng.choice([1, 1, 2, 2, 3, 4])):
            if t >= self.end:
                break
            answer = self._request(t, tenant, "support-bot", history=history, session=session, user=user)
            t += dt.timedelta(seconds=self.rng.uniform(20, 150))
            if answer is None:
                break

    def _request(self, t: dt.datetime, tenant: str, feature: str, *, history: list[dict[str, Any]],
                 session: str | None, user: str) -> str | None:
        rng = self.rng
        inc = self.incident
        self.requests += 1
        model = CLAUDE if feature == "summarize" else "gpt-4o"
        provider = "anthropic" if model == CLAUDE else "openai"
        new_model = inc and model == "gpt-4o" and t >= self.model_change
        served = CLAUDE if model == CLAUDE else (NEW_SNAPSHOT if new_model else OLD_SNAPSHOT)
        prompt_version = "v12"
        system = SYSTEM_GENERIC.format(tenant=tenant)
        if feature == "support-bot" and tenant == "acme":
            prompt_version = "v13" if inc and t >= self.prompt_change else "v12"
            system = SYSTEM_V13 if prompt_version == "v13" else SYSTEM_V12
        elif feature == "extract":
            system, prompt_version = SYSTEM_EXTRACT, "v4"
        elif feature == "summarize":
            system, prompt_version = SYSTEM_SUMMARIZE, "v2"

        # -- the user's turn and the model's answer
        k = rng.randrange(len(QUESTIONS))
        if feature == "support-bot":
            question = QUESTIONS[k]
            answer = support_reply(ANSWERS[k], new_model, rng)
            finish = "stop"
        elif feature == "extract":
            n = rng.randint(10000, 99999)
            amount = round(rng.uniform(5, 900), 2)
            d = (t - dt.timedelta(days=rng.randint(1, 30))).date().isoformat()
            question = rng.choice(DOCS).format(n=n, d=d, a=amount)
            answer = extract_reply(str(n), amount, new_model, rng.random())
            finish = "stop"
        else:
            question = rng.choice(ARTICLES)
            answer = summarize_reply(question)
            finish = "stop"

        input_msgs = [_parts("system", system)] + history + [_parts("user", question)]
        in_chars = sum(len(p["content"]) for m in input_msgs for p in m["parts"])
        input_tokens, output_tokens = token_counts(in_chars, answer, rng)

        # -- failures: a 429 burst from anthropic, and the odd error on any provider
        error: tuple[int, str, str] | None = None
        in_burst = inc and provider == "anthropic" and self.burst[0] <= t < self.burst[1]
        if in_burst and rng.random() < 0.7:
            error = (429, "RateLimitError", "Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', "
                     "'message': 'Number of request tokens has exceeded your per-minute rate limit'}}")
        elif rng.random() < 0.004:
            error = (500, "InternalServerError", "Error code: 500 - internal server error")
        elif rng.random() < 0.002:
            error = (408, "APITimeoutError", "Request timed out.")

        latency_s = latency_seconds(input_tokens, output_tokens, rng)
        if error:
            latency_s = rng.uniform(0.08, 0.4) if error[0] == 429 else rng.uniform(0.5, 30.0)
        start = t + dt.timedelta(milliseconds=rng.uniform(2, 12))
        end = start + dt.timedelta(seconds=latency_s)
        root_end = end + dt.timedelta(milliseconds=rng.uniform(3, 20))

        trace_id, root_id, chat_id = self._hex(128), self._hex(64), self._hex(64)
        request_id = "req_" + self._hex(64)
        root_attrs = {
            "http.request.method": "POST", "http.route": f"/v1/{feature}",
            "http.response.status_code": 502 if error and error[0] >= 500 else (429 if error else 200),
            "app.request_id": request_id, "app.tenant": tenant, "app.feature": feature,
            "user.id": user, "session.id": session, "app.prompt_name": feature, "app.prompt_version": prompt_version,
        }
        chat_attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 800,
            "gen_ai.input.messages": json.dumps(input_msgs, ensure_ascii=False),
            "server.address": "api.openai.com" if provider == "openai" else "api.anthropic.com",
        }
        if session:
            chat_attrs["gen_ai.conversation.id"] = session
        events: list[dict[str, Any]] = []
        status: dict[str, Any] = {}
        if error:
            chat_attrs["error.type"] = error[1]
            chat_attrs["http.response.status_code"] = error[0]
            status = {"code": 2, "message": error[2]}
            events.append({"timeUnixNano": _ns(end), "name": "exception",
                           "attributes": _attrs({"exception.type": error[1], "exception.message": error[2]})})
        else:
            pin, pout = PRICES[model]
            chat_attrs.update({
                "gen_ai.response.model": served, "gen_ai.response.id": ("chatcmpl-" if provider == "openai" else "msg_")
                + self._hex(96),
                "gen_ai.response.finish_reasons": [finish],
                "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cost": round(input_tokens * pin + output_tokens * pout, 8),
                "gen_ai.output.messages": json.dumps([_parts("assistant", answer, finish)], ensure_ascii=False),
            })
        spans = [
            {"traceId": trace_id, "spanId": root_id, "name": f"POST /v1/{feature}", "kind": 2,
             "startTimeUnixNano": _ns(t), "endTimeUnixNano": _ns(root_end), "attributes": _attrs(root_attrs),
             "status": {"code": 2} if error else {}},
            {"traceId": trace_id, "spanId": chat_id, "parentSpanId": root_id, "name": f"chat {model}", "kind": 3,
             "startTimeUnixNano": _ns(start), "endTimeUnixNano": _ns(end), "attributes": _attrs(chat_attrs),
             "events": events, "status": status},
        ]
        self.traces.append({"spans": spans})
        if error:
            return None
        history.extend([_parts("user", question), _parts("assistant", answer)])
        return answer

    def _help_request(self, t: dt.datetime, tenant: str, user: str, index: str | None = None) -> None:
        """One help-center request: embed the question, search the index, answer from what was found."""
        rng = self.help_rng
        self.requests += 1
        if index is None:
            index = NEW_INDEX if self.incident and t >= self.index_change else OLD_INDEX
        k = rng.randrange(len(HELP_ARTICLES))
        question = HELP_ARTICLES[k][3]
        # The search: the right article first when the index was built with the query's embedding
        # model; near-random neighbours (low scores, mostly under MIN_SCORE) when it was not.
        others = rng.sample([i for i in range(len(HELP_ARTICLES)) if i != k], TOP_K - 1)
        if INDEX_EMBEDDING.get(index, QUERY_EMBEDDING) != QUERY_EMBEDDING:
            scored = [(i, rng.uniform(0.05, 0.32)) for i in [k, *others]]
        elif rng.random() < 0.015:  # the odd question phrased so that nothing matches
            scored = [(i, rng.uniform(0.1, 0.29)) for i in [k, *others]]
        else:
            scored = [(k, rng.uniform(0.74, 0.93))] + [(i, rng.uniform(0.3, 0.62)) for i in others]
        hits = sorted(((i, round(sc, 4)) for i, sc in scored if sc >= MIN_SCORE), key=lambda x: -x[1])[:TOP_K]
        docs = [{"id": HELP_ARTICLES[i][0], "score": sc, "content": HELP_ARTICLES[i][4],
                 "metadata": {"source": HELP_ARTICLES[i][1], "updated_at": HELP_ARTICLES[i][2] + "T09:00:00Z"}}
                for i, sc in hits]
        answer = help_reply(question, [HELP_ARTICLES[i][0] for i, _ in hits])
        articles = "\n".join(f"[{d['id']}] ({d['metadata']['source']}) {d['content']}" for d in docs)
        system = SYSTEM_HELP.format(articles=articles or "(none)")
        input_msgs = [_parts("system", system), _parts("user", question)]
        input_tokens = int(sum(len(m["parts"][0]["content"]) for m in input_msgs) / 4) + rng.randint(5, 25)
        output_tokens = max(3, int(len(answer) / 4) + rng.randint(-3, 8))
        error = rng.random() < 0.004

        trace_id, root_id = format(rng.getrandbits(128), "032x"), format(rng.getrandbits(64), "016x")
        emb_id, ret_id, chat_id = (format(rng.getrandbits(64), "016x") for _ in range(3))
        emb_start = t + dt.timedelta(milliseconds=rng.uniform(2, 8))
        emb_end = emb_start + dt.timedelta(milliseconds=rng.uniform(35, 140))
        ret_start = emb_end + dt.timedelta(milliseconds=rng.uniform(0.5, 2))
        ret_end = ret_start + dt.timedelta(milliseconds=rng.uniform(12, 70))
        start = ret_end + dt.timedelta(milliseconds=rng.uniform(1, 6))
        if error:
            end = start + dt.timedelta(seconds=rng.uniform(0.5, 20.0))
        else:
            end = start + dt.timedelta(seconds=(0.25 + output_tokens * 0.011) * rng.uniform(0.8, 1.35))
        root_end = end + dt.timedelta(milliseconds=rng.uniform(3, 20))
        root_attrs = {
            "http.request.method": "POST", "http.route": "/v1/help-center",
            "http.response.status_code": 502 if error else 200, "app.request_id": "req_" + format(
                rng.getrandbits(64), "016x"), "app.tenant": tenant, "app.feature": "help-center", "user.id": user,
            "app.prompt_name": "help-center", "app.prompt_version": "v7",
        }
        emb_attrs = {"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "openai",
                     "gen_ai.request.model": QUERY_EMBEDDING, "gen_ai.response.model": QUERY_EMBEDDING,
                     "gen_ai.usage.input_tokens": int(len(question) / 4) + 2,
                     "server.address": "api.openai.com"}
        # The app's own span around the vector search (GenAI retrieval conventions), with the
        # index's build metadata the app logs beside it.
        ret_attrs = {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": index,
                     "gen_ai.retrieval.query.text": question, "gen_ai.request.top_k": TOP_K,
                     "gen_ai.retrieval.documents": json.dumps(docs, ensure_ascii=False),
                     "metadata": json.dumps({"index_alias": "help-articles", "score_threshold": MIN_SCORE,
                                             "embedding_model": INDEX_EMBEDDING.get(index, QUERY_EMBEDDING)})}
        chat_attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MINI,
            "gen_ai.request.temperature": 0.0, "gen_ai.request.max_tokens": 400,
            "gen_ai.input.messages": json.dumps(input_msgs, ensure_ascii=False), "server.address": "api.openai.com",
        }
        status: dict[str, Any] = {}
        events: list[dict[str, Any]] = []
        if error:
            msg = "Error code: 500 - internal server error"
            chat_attrs.update({"error.type": "InternalServerError", "http.response.status_code": 500})
            status = {"code": 2, "message": msg}
            events.append({"timeUnixNano": _ns(end), "name": "exception",
                           "attributes": _attrs({"exception.type": "InternalServerError", "exception.message": msg})})
        else:
            pin, pout = PRICES[MINI]
            chat_attrs.update({
                "gen_ai.response.model": MINI_SNAPSHOT, "gen_ai.response.id": "chatcmpl-" + format(
                    rng.getrandbits(96), "024x"),
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cost": round(input_tokens * pin + output_tokens * pout, 8),
                "gen_ai.output.messages": json.dumps([_parts("assistant", answer, "stop")], ensure_ascii=False),
            })

        def child(sid: str, name: str, a: dt.datetime, b: dt.datetime, attrs: dict[str, Any], **kw: Any):
            return {"traceId": trace_id, "spanId": sid, "parentSpanId": root_id, "name": name, "kind": kw.get(
                "kind", 3), "startTimeUnixNano": _ns(a), "endTimeUnixNano": _ns(b), "attributes": _attrs(attrs),
                    "events": kw.get("events", []), "status": kw.get("status", {})}

        self.traces.append({"spans": [
            {"traceId": trace_id, "spanId": root_id, "name": "POST /v1/help-center", "kind": 2,
             "startTimeUnixNano": _ns(t), "endTimeUnixNano": _ns(root_end), "attributes": _attrs(root_attrs),
             "status": {"code": 2} if error else {}},
            child(emb_id, f"embeddings {QUERY_EMBEDDING}", emb_start, emb_end, emb_attrs),
            child(ret_id, f"retrieval {index}", ret_start, ret_end, ret_attrs, kind=1),
            child(chat_id, f"chat {MINI}", start, end, chat_attrs, events=events, status=status),
        ]})

    # -- output ----------------------------------------------------------------------------------
    def lines(self) -> list[str]:
        resource = {"attributes": _attrs({"service.name": "support-api", "service.version": RELEASE,
                                          "deployment.environment.name": "production",
                                          "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python"})}
        scope = {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.4b0"}
        # The batch processor exports spans in end-time order, several traces per request.
        self.traces.sort(key=lambda tr: int(tr["spans"][0]["endTimeUnixNano"]))
        out = []
        for i in range(0, len(self.traces), TRACES_PER_LINE):
            batch = [s for tr in self.traces[i:i + TRACES_PER_LINE] for s in tr["spans"]]
            out.append(json.dumps({"resourceSpans": [{"resource": resource,
                                                      "scopeSpans": [{"scope": scope, "spans": batch}]}]},
                                  ensure_ascii=False, separators=(",", ":")))
        return out

    def truth(self, seed: int) -> DemoTruth:
        iso = lambda x: x.isoformat().replace("+00:00", "Z")  # noqa: E731
        tr = DemoTruth(seed=seed, start=iso(self.start), end=iso(self.end), incident=self.incident,
                       requests=self.requests, spans=sum(len(tr["spans"]) for tr in self.traces))
        if self.incident:
            tr.changes = [
                InjectedChange("new_prompt_version", "acme ships support-bot prompt v13 (knowledge base pasted into "
                               "the system prompt): input tokens and cost per request about 3x",
                               iso(self.prompt_change), None, {"tenant": "acme", "feature": "support-bot"},
                               "v12", "v13", {"cost_per_request": "about 3x", "input_tokens": "about 3x"}),
                InjectedChange("new_served_model", "OpenAI moves the gpt-4o alias to a new snapshot: longer, more "
                               "agreeable answers; extract's JSON renames order_id to orderId or is wrapped in prose",
                               iso(self.model_change), None, {"model": "gpt-4o"}, OLD_SNAPSHOT, NEW_SNAPSHOT,
                               {"output_length": "+35-45 % (support-bot)", "json_valid": "99 % -> about 71 % (extract)",
                                "json_keys": "order_id -> orderId in about a third of extract outputs"}),
                InjectedChange("error_burst", "429 rate-limit burst from anthropic", iso(self.burst[0]),
                               iso(self.burst[1]), {"provider": "anthropic", "feature": "summarize"}, None, None,
                               {"error_rate": "about 70 % rate_limit during the window"}),
            ]
            if self.retrieval:  # in time order: after the served model, before the 429s
                tr.changes.insert(2, InjectedChange(
                    "new_retrieval_index", "the help-center index alias moves to help-articles-v42, rebuilt with "
                    "text-embedding-3-large while queries are still embedded with text-embedding-3-small: most "
                    "retrievals come back empty, the rest low-scoring and off-topic; the bot says it doesn't know",
                    iso(self.index_change), None, {"feature": "help-center"}, OLD_INDEX, NEW_INDEX,
                    {"empty_retrieval_rate": "about 2 % -> about 67 %",
                     "top_score": "about 0.84 -> about 0.31 (where any article came back)",
                     "refusal_rate": "about 1 % -> about 67 % (\"I'm sorry, I don't know\")",
                     "output_length": "about -45 %",
                     "embedding_model": "text-embedding-3-small -> text-embedding-3-large (the index's)"}))
        return tr


def generate_demo(out_dir: Path, *, seed: int = 7, hours: float = 6.0, incident: bool = True,
                  scale: float = 1.0, retrieval: bool = True) -> DemoTruth:
    """Write the demo export (`out_dir/otlp-traces.jsonl`) and return what was injected (retrieval=False:
    without the help-center feature, the other features' traffic byte for byte the same)."""
    gen = _Gen(seed, hours, incident, scale, retrieval)
    gen.run()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / EXPORT_NAME
    write_atomic(path, (line + "\n" for line in gen.lines()), "writing the demo's export")
    return gen.truth(seed)


def help_center_traffic(path: Path, *, index: str, start: dt.datetime, requests: int = 20, seed: int = 1) -> int:
    """The help-center's traffic from `start` (one request a second) searching `index`, as an OTLP
    export: what the app sends once its alias points there (live evidence for the index-rollback
    runbook). An index other than the two the demo knows is read as one built with the query's model."""
    gen = _Gen(seed, 1.0, False, 1.0)
    for i in range(requests):
        tenant = gen.help_rng.choices([w[0] for w in TENANTS], [w[1] for w in TENANTS])[0]
        gen._help_request(start + dt.timedelta(seconds=i), tenant, f"u-{gen.help_rng.randint(1, 400):04d}", index)
    write_atomic(path, (line + "\n" for line in gen.lines()), "writing the help-center traffic")
    return gen.requests


def export_dir_for(db_path: Path) -> Path:
    return db_path.parent / f"{db_path.stem}.demo-export"


def build_demo(db_path: Path, *, seed: int = 7, hours: float = 6.0, incident: bool = True, scale: float = 1.0,
               progress: Callable[[str, int, int], None] | None = None) -> tuple[DemoTruth, Any]:
    """Generate the demo export next to the database and load it exactly as `oncall load` would, and
    write the demo's world beside it (oncall/demoworld: replay and action targets)."""
    from oncall.demoworld import write_world
    from oncall.ingest.loader import load_paths
    from oncall.store import open_db

    out_dir = export_dir_for(Path(db_path))
    truth = generate_demo(out_dir, seed=seed, hours=hours, incident=incident, scale=scale)
    store = open_db(db_path)
    try:
        report = load_paths(store, [str(out_dir / EXPORT_NAME)], progress=progress)
        store.set_meta("demo", json.dumps(truth.to_dict()))
        store.record_event("demo", f"built the demo incident ({truth.requests} requests, seed {seed})",
                           truth.to_dict(), actor="oncall demo")
    finally:
        store.close()
    write_world(db_path, seed)  # its replay and action targets (oncall/demoworld)
    return truth, report


def demo_truth(con: Any) -> DemoTruth | None:
    """The truth recorded in a demo database (None for a real incident database)."""
    row = con.execute("SELECT value FROM meta WHERE key = 'demo'").fetchone()
    if not row:
        return None
    d = json.loads(row[0])
    d["changes"] = [InjectedChange(**c) for c in d.get("changes", [])]
    return DemoTruth(**d)
