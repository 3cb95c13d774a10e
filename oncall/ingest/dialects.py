"""Dialects that keep a call in their own attributes, translated to the GenAI keys the mapping reads.

`dialect_keys(attrs)` returns standard keys (`gen_ai.request.model`, `gen_ai.usage.input_tokens`,
`gen_ai.input.messages` as a canonical message list, …) derived from one library's own attributes;
the mapping lays them under the span's attributes, so a key the span really has always wins and
every value still goes through the one mapping (`oncall.ingest.mapping`). Sources, each checked
against the library's code or a real export (docs/trace-formats.md §A):

- Google ADK: `gcp.vertex.agent.llm_request` / `llm_response` (the Gemini request and response as
  JSON; google/adk-python `src/google/adk/telemetry.py` `trace_call_llm`; fixture
  `langfuse/google-adk-2025-08-28.trace.json`).
- Genkit: `genkit:type`, `genkit:metadata:subtype`, `genkit:name`, `genkit:input` / `genkit:output`
  (GenerateRequest / GenerateResponse JSON; firebase/genkit `js/core/src/tracing/instrumentation.ts`).
- MLflow: every attribute JSON-encoded; `mlflow.spanType`, `mlflow.spanInputs`, `mlflow.spanOutputs`,
  `mlflow.chat.tokenUsage` (mlflow `mlflow/tracing/constant.py` SpanAttributeKey).
- Langfuse SDKs (v3+, OTel): `langfuse.observation.usage_details` / `cost_details` JSON (langfuse
  python `langfuse/_client/attributes.py`).
- Semantic Kernel (.NET 1.55+): agent spans carry `gen_ai.agent.invocation_input` / `_output` JSON.

Each translator runs only when its marker key is present: one dict lookup per dialect per span.
"""

from __future__ import annotations

from typing import Any

from oncall.ingest.decode import coerce_int, json_deep_loads
from oncall.ingest.messages import normalize_messages

# Usage maps as the libraries write them -> the GenAI usage keys. First present wins per target.
_USAGE_KEYS: dict[str, tuple[str, ...]] = {
    "gen_ai.usage.input_tokens": ("input", "input_tokens", "prompt_tokens", "inputTokens", "promptTokens",
                                  "prompt_token_count"),
    "gen_ai.usage.output_tokens": ("output", "output_tokens", "completion_tokens", "outputTokens",
                                   "completionTokens", "candidates_token_count"),
    "gen_ai.usage.total_tokens": ("total", "total_tokens", "totalTokens", "total_token_count"),
    "gen_ai.usage.cache_read.input_tokens": ("input_cache_read", "input_cached_tokens", "cache_read_input_tokens",
                                             "cached_tokens", "cachedContentTokens", "cached_content_token_count"),
    "gen_ai.usage.reasoning.output_tokens": ("output_reasoning", "output_reasoning_tokens", "reasoning_tokens",
                                             "thoughtsTokens", "thoughts_token_count"),
}


def usage_keys(usage: Any) -> dict[str, int]:
    """GenAI usage keys from a usage map in any of the libraries' spellings (JSON string or dict)."""
    u = json_deep_loads(usage) if isinstance(usage, str) else usage
    if not isinstance(u, dict):
        return {}
    details = u.get("prompt_tokens_details") or u.get("input_tokens_details")
    if isinstance(details, dict) and "cached_tokens" in details:
        u = {**u, "cached_tokens": details["cached_tokens"]}
    details = u.get("completion_tokens_details") or u.get("output_tokens_details")
    if isinstance(details, dict) and "reasoning_tokens" in details:
        u = {**u, "reasoning_tokens": details["reasoning_tokens"]}
    out: dict[str, int] = {}
    for target, names in _USAGE_KEYS.items():
        for n in names:
            v = coerce_int(u.get(n))
            if v is not None:
                out[target] = v
                break
    return out


# -- Google ADK -------------------------------------------------------------------------------------
def _gemini_text(value: Any) -> str | None:
    """A Gemini system instruction: a string, a Content `{parts: [{text}]}` or a list of either."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = value.get("parts") or []
    if isinstance(value, list):
        texts = [p if isinstance(p, str) else p.get("text") for p in value if isinstance(p, (str, dict))]
        texts = [t for t in texts if isinstance(t, str)]
        return "\n".join(texts) if texts else None
    return None


def _adk(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    req = json_deep_loads(attrs.get("gcp.vertex.agent.llm_request"))
    if isinstance(req, dict) and req:
        msgs: list[dict[str, Any]] = []
        cfg = req.get("config") if isinstance(req.get("config"), dict) else {}
        system = _gemini_text(cfg.get("system_instruction"))
        if system:
            msgs.append({"role": "system", "content": system})
        msgs += normalize_messages(req.get("contents") or [])
        if msgs:
            out["gen_ai.input.messages"] = msgs
        if isinstance(req.get("model"), str):
            out["gen_ai.request.model"] = req["model"]
    resp = json_deep_loads(attrs.get("gcp.vertex.agent.llm_response"))
    if isinstance(resp, dict) and resp:
        content = resp.get("content")
        if isinstance(content, dict):
            msgs = normalize_messages([{**content, "role": content.get("role") or "model"}])
            if msgs:
                out["gen_ai.output.messages"] = msgs
        if resp.get("finish_reason"):
            out["gen_ai.response.finish_reasons"] = [str(resp["finish_reason"])]
        if isinstance(resp.get("model_version"), str):
            out["gen_ai.response.model"] = resp["model_version"]
        out.update(usage_keys(resp.get("usage_metadata")))
        if resp.get("error_code") or resp.get("error_message"):
            out["error.type"] = str(resp.get("error_code") or "error")
    return out


# -- Genkit ---------------------------------------------------------------------------------------
def _genkit(attrs: dict[str, Any]) -> dict[str, Any]:
    sub = str(attrs.get("genkit:metadata:subtype") or "").split(".", 1)[0]  # Python writes "tool.v2"
    out: dict[str, Any] = {"oncall.kind": sub or attrs.get("genkit:type")}
    if attrs.get("genkit:sessionId"):
        out["session.id"] = attrs["genkit:sessionId"]
    if attrs.get("genkit:state") == "error":
        out["error.type"] = "error"
    if sub != "model":
        return out
    name = attrs.get("genkit:name")
    if isinstance(name, str) and name:
        provider, _, model = name.rpartition("/")  # "googleai/gemini-2.5-flash"
        out["gen_ai.request.model"] = model
        if provider:
            out["gen_ai.provider.name"] = provider
    req = json_deep_loads(attrs.get("genkit:input"))
    if isinstance(req, dict) and isinstance(req.get("messages"), list):
        msgs = normalize_messages(req["messages"])
        if msgs:
            out["gen_ai.input.messages"] = msgs
    resp = json_deep_loads(attrs.get("genkit:output"))
    if isinstance(resp, dict):
        message = resp.get("message")
        finish = resp.get("finishReason")
        cands = resp.get("candidates")
        if message is None and isinstance(cands, list) and cands and isinstance(cands[0], dict):
            message, finish = cands[0].get("message"), finish or cands[0].get("finishReason")  # Genkit < 0.9
        if isinstance(message, dict):
            msgs = normalize_messages([{**message, "role": message.get("role") or "model"}])
            if msgs:
                out["gen_ai.output.messages"] = msgs
        if finish:
            out["gen_ai.response.finish_reasons"] = [str(finish)]
        out.update(usage_keys(resp.get("usage")))
        custom = resp.get("custom") if isinstance(resp.get("custom"), dict) else {}
        served = custom.get("modelVersion") or custom.get("model")
        if isinstance(served, str):
            out["gen_ai.response.model"] = served
    return out


# -- MLflow ---------------------------------------------------------------------------------------
_MLFLOW_LLM = ("LLM", "CHAT_MODEL")


def _mlflow(attrs: dict[str, Any]) -> dict[str, Any]:
    span_type = json_deep_loads(attrs.get("mlflow.spanType"))
    out: dict[str, Any] = {"oncall.kind": span_type}
    out.update(usage_keys(attrs.get("mlflow.chat.tokenUsage")))
    inputs = json_deep_loads(attrs.get("mlflow.spanInputs"))
    outputs = json_deep_loads(attrs.get("mlflow.spanOutputs"))
    if inputs is not None:
        out["oncall.raw_input"] = inputs
    if outputs is not None:
        out["oncall.raw_output"] = outputs
    if str(span_type).upper() in _MLFLOW_LLM:
        if isinstance(inputs, dict) and isinstance(inputs.get("model"), str):
            out["gen_ai.request.model"] = inputs["model"]
        if isinstance(outputs, dict):
            if isinstance(outputs.get("model"), str):
                out["gen_ai.response.model"] = outputs["model"]
            if "gen_ai.usage.input_tokens" not in out:
                out.update(usage_keys(outputs.get("usage")))
    cost = json_deep_loads(attrs.get("mlflow.llm.cost"))
    if isinstance(cost, dict) and cost.get("total_cost") is not None:
        out["gen_ai.usage.cost"] = cost["total_cost"]
    prompts = json_deep_loads(attrs.get("mlflow.linkedPrompts"))
    if isinstance(prompts, list) and prompts and isinstance(prompts[0], dict):
        out["gen_ai.prompt.name"] = prompts[0].get("name")
        out["gen_ai.prompt.version"] = prompts[0].get("version")
    for key, target in (("mlflow.llm.model", "gen_ai.request.model"), ("mlflow.llm.provider", "gen_ai.provider.name")):
        v = json_deep_loads(attrs.get(key))
        if isinstance(v, str) and v:
            out.setdefault(target, v)
    return out


# -- Langfuse SDK attributes ----------------------------------------------------------------------
def _langfuse(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = usage_keys(attrs.get("langfuse.observation.usage_details"))
    model = attrs.get("langfuse.observation.model.name")
    if model and (out or attrs.get("langfuse.observation.output") not in (None, "")):
        # One model name, as with Langfuse's own `model`: the SDK's integrations write the response's
        # model once the call answered (the request's before), so an answered call's is the served one.
        out["gen_ai.response.model"] = model
    if str(json_deep_loads(attrs.get("langfuse.observation.level")) or "").upper() == "ERROR":
        out["oncall.level_error"] = json_deep_loads(attrs.get("langfuse.observation.status_message")) or "ERROR"
    return out


# -- Semantic Kernel agents -----------------------------------------------------------------------
def _semantic_kernel_agent(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, target in (("gen_ai.agent.invocation_input", "gen_ai.input.messages"),
                        ("gen_ai.agent.invocation_output", "gen_ai.output.messages")):
        v = attrs.get(key)
        if v not in (None, ""):
            out[target] = v
    return out


_MARKERS = (
    ("gcp.vertex.agent.llm_request", _adk),
    ("gcp.vertex.agent.llm_response", _adk),
    ("genkit:type", _genkit),
    ("genkit:name", _genkit),
    ("mlflow.spanType", _mlflow),
    ("mlflow.spanInputs", _mlflow),
    ("langfuse.observation.usage_details", _langfuse),
    ("langfuse.observation.level", _langfuse),
    ("gen_ai.agent.invocation_input", _semantic_kernel_agent),
)


def dialect_keys(attrs: dict[str, Any]) -> dict[str, Any]:
    """Standard keys derived from the dialects present in `attrs` ({} for plain GenAI/OI spans)."""
    out: dict[str, Any] = {}
    done: set[Any] = set()
    for marker, fn in _MARKERS:
        if marker in attrs and fn not in done:
            done.add(fn)
            for k, v in fn(attrs).items():
                if v is not None:
                    out.setdefault(k, v)
    return out


# -- GenAI per-message events on a span (G2 events, as Strands and others record them) -------------
MESSAGE_EVENTS = frozenset({"gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message",
                            "gen_ai.tool.message", "gen_ai.choice"})
_BODY_KEYS = ("content", "role", "tool_calls", "message", "finish_reason", "index", "id", "name")


def message_events(events: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """(input messages, output messages, finish reason) from `gen_ai.*.message` / `gen_ai.choice` span events.

    The event's body is either its attributes (`content`, `role`, `tool_calls`, `id`; `message` and
    `finish_reason` on a choice), each possibly a JSON string, or a JSON `body` attribute."""
    inp: list[dict[str, Any]] = []
    outp: list[dict[str, Any]] = []
    finish = None
    for ev in events or ():
        name = ev.get("name")
        if name not in MESSAGE_EVENTS:
            continue
        a = ev.get("attributes") or {}
        body = json_deep_loads(a.get("body")) if "body" in a else None
        body = dict(body) if isinstance(body, dict) else {}
        for k in _BODY_KEYS:
            if k in a and k not in body:
                body[k] = json_deep_loads(a[k]) if k in ("content", "tool_calls", "message") else a[k]
        body["event.name"] = name
        if name == "gen_ai.choice":
            msg = body.get("message")
            if isinstance(msg, (list, str)):  # Strands: the message is its content blocks
                body["message"] = {"role": "assistant", "content": msg}
            elif msg is None and "content" in body:
                body["message"] = {"role": body.get("role") or "assistant", "content": body.get("content"),
                                   **({"tool_calls": body["tool_calls"]} if body.get("tool_calls") else {})}
            if isinstance(body.get("message"), dict):
                outp.extend(normalize_messages([{"message": body["message"]}]))
            finish = finish or body.get("finish_reason")
        else:
            inp.extend(normalize_messages([body]))
    return inp, outp, finish
