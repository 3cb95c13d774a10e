"""Span attributes (every OTel-family dialect) to canonical span columns.

One function, `map_attributes`, reads a flat attribute map (plain Python values: decode OTLP
AnyValue first) and returns the canonical columns it can derive. Dialects (trace-formats.md §2–§4):
GenAI semconv G1 (content events), G1' (flattened `gen_ai.prompt.N.*`), G2 (packed `events`
attribute), G3 (`gen_ai.input.messages` / `output.messages`, the operation.details event),
deprecated `gen_ai.prompt`/`gen_ai.completion` strings, OpenLLMetry/Traceloop, OpenInference,
Vercel AI SDK `ai.*`, Langfuse `langfuse.*` and LangSmith `langsmith.*` keys.

Each canonical value comes from an ordered list of candidate keys: the first one present wins, so
a span carrying two dialects (Vercel doGenerate has `ai.usage.*` and `gen_ai.usage.*`) is never
counted twice. This runs per span on the JSONL hot path: one pass over the keys to find indexed
(flattened) families, then dictionary lookups only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from oncall.ingest import retrieval
from oncall.ingest.canonical import (
    call_kind,
    classify_error,
    http_status_from,
    normalize_finish_reason,
    normalize_kind,
    normalize_provider,
)
from oncall.ingest.decode import coerce_float, coerce_int, json_deep_loads
from oncall.ingest.dialects import dialect_keys, message_events
from oncall.ingest.messages import (
    args_json,
    canonical_role,
    content_text,
    messages_text,
    normalize_messages,
    tool_calls_of,
)

# Flattened list families: prefix -> their items are `prefix.N.rest`.
_INDEXED = ("llm.input_messages.", "llm.output_messages.", "gen_ai.prompt.", "gen_ai.completion.",
            "llm.prompts.", "llm.choices.")
_INDEXED_RE = re.compile(r"^(llm\.input_messages|llm\.output_messages|gen_ai\.prompt|gen_ai\.completion|"
                         r"llm\.prompts|llm\.choices)\.(\d+)\.(.+)$")
_SUB_INDEX_RE = re.compile(r"^(.*?)\.(\d+)\.(.+)$")

# Where apps put their own metadata; cohort keys are looked up under each of these.
_META_PREFIXES = ("", "traceloop.association.properties.", "ai.telemetry.metadata.",
                  "langfuse.trace.metadata.", "langfuse.observation.metadata.", "metadata.",
                  "langsmith.metadata.")


def _keys_under_prefixes(*names: str) -> tuple[str, ...]:
    return tuple(p + n for p in _META_PREFIXES for n in names)


_TENANT_KEYS = _keys_under_prefixes("tenant", "tenant.id", "tenant_id", "tenantId", "app.tenant",
                                    "customer.id", "customer_id", "org.id", "org_id",
                                    "organization.id", "organization_id") + (
                                        "metadata.user_api_key_team_alias", "metadata.user_api_key_team_id",
                                        "metadata.user_api_key_org_alias", "metadata.user_api_key_org_id")
_SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id",
                 "traceloop.association.properties.session_id", "ai.telemetry.metadata.sessionId",
                 "langsmith.metadata.thread_id", "langsmith.metadata.session_id",
                 "langsmith.metadata.conversation_id") + _keys_under_prefixes(
                     "session_id", "sessionId", "conversation_id", "thread_id")
_USER_KEYS = ("user.id", "enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id",
              "ai.telemetry.metadata.userId", "langsmith.metadata.user_id") + _keys_under_prefixes(
                  "user_id", "userId", "app.user_id") + ("metadata.user_api_key_end_user_id",
                                                         "metadata.user_api_key_user_id")
_FEATURE_KEYS = _keys_under_prefixes("feature", "app.feature") + ("traceloop.workflow.name",
                                                                   "ai.telemetry.functionId")
_PROMPT_NAME_KEYS = ("gen_ai.prompt.name", "traceloop.prompt.key", "langfuse.observation.prompt.name",
                     "prompt.name", "app.prompt_name") + _keys_under_prefixes("prompt_name", "promptName")
_PROMPT_VERSION_KEYS = ("traceloop.prompt.version", "langfuse.observation.prompt.version",
                        "llm.prompt_template.version", "prompt.version", "app.prompt_version",
                        "gen_ai.prompt.version") + _keys_under_prefixes("prompt_version", "promptVersion")
_RELEASE_KEYS = ("service.version", "langfuse.release", "release", "app.release",
                 "langfuse.trace.release") + _keys_under_prefixes("release")
_ENV_KEYS = ("deployment.environment.name", "deployment.environment", "langfuse.environment",
             "environment", "app.env") + _keys_under_prefixes("env")
_REQUEST_ID_KEYS = _keys_under_prefixes("app.request_id", "request.id", "http.request.id", "request_id",
                                        "x-request-id", "requestId")

_REQUESTED_MODEL_KEYS = ("gen_ai.request.model", "ai.model.id", "llm.request.model_name", "llm.request.model",
                         "langfuse.observation.model.name", "langsmith.metadata.ls_model_name")
_SERVED_MODEL_KEYS = ("gen_ai.response.model", "ai.response.model", "llm.response.model_name",
                      "llm.response.model", "llm.model_name")
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system",
                  "langsmith.metadata.ls_provider")

_INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt",
                     "ai.usage.inputTokens", "ai.usage.promptTokens", "llm.usage.prompt_tokens")
_OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                      "llm.token_count.completion", "ai.usage.outputTokens", "ai.usage.completionTokens",
                      "llm.usage.completion_tokens")
_TOTAL_TOKEN_KEYS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total",
                     "ai.usage.totalTokens", "ai.usage.tokens")
_CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                      "llm.token_count.prompt_details.cache_read", "ai.usage.cachedInputTokens")
_REASONING_TOKEN_KEYS = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                         "llm.token_count.completion_details.reasoning", "ai.usage.reasoningTokens")
_COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "operation.cost", "langfuse.observation.cost_details",
              "gen_ai.cost.total_cost")  # the last: LiteLLM's otel callback

# Kinds whose spans may be a retrieval step (None/span: a vector-store query that states no kind).
_RETRIEVAL_KINDS = frozenset({"retriever", "embedding", None, "span"})
_KIND_KEYS = ("openinference.span.kind", "traceloop.span.kind", "langsmith.span.kind",
              "langfuse.observation.type", "mlflow.spanType", "oncall.kind")
_VERCEL_KINDS = {"doGenerate": "llm", "doStream": "llm", "doEmbed": "embedding", "toolCall": "tool"}


# Scopes whose gen_ai.conversation.id is generated per run, not the application's session.
_RUN_CONVERSATION_SCOPES = frozenset({"pydantic-ai"})

_RESPONSE_ID_KEYS = ("gen_ai.response.id", "ai.response.id")
_FINISH_KEYS = ("gen_ai.response.finish_reasons", "llm.finish_reason", "ai.response.finishReason")
_OPERATION_KEYS = ("gen_ai.operation.name", "llm.request.type")

# column -> candidate keys in priority order. Folded into one key -> [(column, rank)] index so a span
# costs one pass over its own keys instead of a lookup per candidate (there are hundreds).
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "kind": _KIND_KEYS, "operation": _OPERATION_KEYS, "model": _REQUESTED_MODEL_KEYS,
    "served_model": _SERVED_MODEL_KEYS, "provider": _PROVIDER_KEYS, "input_tokens": _INPUT_TOKEN_KEYS,
    "output_tokens": _OUTPUT_TOKEN_KEYS, "total_tokens": _TOTAL_TOKEN_KEYS, "cached_tokens": _CACHED_TOKEN_KEYS,
    "reasoning_tokens": _REASONING_TOKEN_KEYS, "cost": _COST_KEYS, "session_id": _SESSION_KEYS,
    "user_id": _USER_KEYS, "tenant": _TENANT_KEYS, "feature": _FEATURE_KEYS, "prompt_name": _PROMPT_NAME_KEYS,
    "prompt_version": _PROMPT_VERSION_KEYS, "release": _RELEASE_KEYS, "env": _ENV_KEYS,
    "request_id": _REQUEST_ID_KEYS, "response_id": _RESPONSE_ID_KEYS, "finish_reason": _FINISH_KEYS,
}
_INDEX: dict[str, list[tuple[str, int]]] = {}
for _col, _keys in _CANDIDATES.items():
    for _rank, _key in enumerate(_keys):
        _INDEX.setdefault(_key, []).append((_col, _rank))


# The key tables as data, for engines that derive the same columns in their own SQL (the ClickHouse
# source compiles cohort keys, models and tokens from these to map lookups, oncall/sources/clickhouse):
# CANDIDATE_KEYS[column] is that column's keys in priority order, the first present non-empty one wins;
# a key `metadata.K` also matches K inside a JSON-object `metadata` attribute (a flat key wins); the
# RESOURCE_FALLBACK_KEYS are read from the resource when the span does not have them.
CANDIDATE_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(_CANDIDATES)
METADATA_JSON_KEY = "metadata"
RESOURCE_FALLBACK_KEYS = ("service.version", "deployment.environment.name", "deployment.environment")
KIND_KEYS = _KIND_KEYS


def _scan(view: dict[str, Any]) -> dict[str, Any]:
    """{column: value of its highest-priority candidate key present with a non-empty value}."""
    best: dict[str, tuple[int, Any]] = {}
    index = _INDEX
    for k, v in view.items():
        hits = index.get(k)
        if hits is None or v is None or v == "" or v == []:
            continue
        for col, rank in hits:
            cur = best.get(col)
            if cur is None or rank < cur[0]:
                best[col] = (rank, v)
    return {col: rv[1] for col, rv in best.items()}


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.startswith("[Scrubbed due to "):
        return None  # Logfire's scrubber replaced the value (a key named like a secret: "session")
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        # A value JSON-encoded as a string (Langfuse v5 metadata, MLflow attributes): `"\"acme\""`.
        decoded = json_deep_loads(value)
        value = decoded if isinstance(decoded, str) else value
        if value == "":
            return None
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else json.dumps(value, default=str)
    return str(value)


def flatten_attributes(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attribute forms (Phoenix spec's `"llm.input_messages": [{"message.role": …}]`) as flat
    dotted keys. Lists of scalars stay values (`gen_ai.response.finish_reasons`); dicts and lists of
    dicts become `key.sub` / `key.N.sub`."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_attributes(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, item in enumerate(v):
                out.update(flatten_attributes(item, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def _indexed_families(attrs: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """{family: {index: {rest: value}}} for every flattened list family present (one key pass)."""
    fams: dict[str, dict[int, dict[str, Any]]] = {}
    for k, v in attrs.items():
        if k.startswith(_INDEXED):
            m = _INDEXED_RE.match(k)
            if m:
                fams.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = v
    return fams


def _sub_list(item: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Items `prefix.K.rest` of one flattened message, numerically sorted, gaps tolerated."""
    groups: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for k, v in item.items():
        if k.startswith(p):
            idx, _, rest = k[len(p):].partition(".")
            if idx.isdigit():
                groups.setdefault(int(idx), {})[rest] = v
    return [groups[i] for i in sorted(groups)]


def _openinference_messages(items: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i in sorted(items):
        it = items[i]
        msg: dict[str, Any] = {"role": canonical_role(it.get("message.role")), "content": it.get("message.content")}
        if msg["content"] is None:
            texts = [c.get("message_content.text") for c in _sub_list(it, "message.contents")
                     if c.get("message_content.text") is not None]
            msg["content"] = "\n".join(str(t) for t in texts) if texts else None
        else:
            msg["content"] = content_text(msg["content"])
        calls = [{"id": c.get("tool_call.id"), "type": "function",
                  "function": {"name": c.get("tool_call.function.name"),
                               "arguments": args_json(c.get("tool_call.function.arguments"))}}
                 for c in _sub_list(it, "message.tool_calls")]
        if calls:
            msg["tool_calls"] = calls
        if it.get("message.tool_call_id") is not None:
            msg["tool_call_id"] = str(it["message.tool_call_id"])
        if it.get("message.name") is not None:
            msg["name"] = str(it["message.name"])
        out.append(msg)
    return out


def _genai_flat_messages(items: dict[int, dict[str, Any]], default_role: str) -> list[dict[str, Any]]:
    """G1' `gen_ai.prompt.N.*` / `gen_ai.completion.N.*` (OpenLLMetry ≤0.4x, Koog)."""
    out: list[dict[str, Any]] = []
    for i in sorted(items):
        it = items[i]
        src: dict[str, Any] = {"role": it.get("role") or default_role}
        content = it.get("content")
        parsed = json_deep_loads(content) if isinstance(content, str) else content
        if isinstance(parsed, list) and parsed and all(isinstance(x, dict) and "function" in x for x in parsed):
            src["tool_calls"] = parsed  # Koog: the tool-call turn's content is the call list
        else:
            src["content"] = content
        calls = [{"id": c.get("id"), "function": {"name": c.get("name"), "arguments": c.get("arguments")}}
                 for c in _sub_list(it, "tool_calls")]
        if calls:
            src["tool_calls"] = calls
        if it.get("tool_call_id") is not None:
            src["tool_call_id"] = it["tool_call_id"]
        out.extend(normalize_messages([src]))
    return out


def _completion_choices(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Messages and finish reason of an OpenAI chat.completion (or Responses API) object."""
    msgs: list[dict[str, Any]] = []
    finish = None
    choices = obj.get("choices")
    for ch in choices if isinstance(choices, list) else []:
        if isinstance(ch, dict):
            finish = finish or ch.get("finish_reason")
            if isinstance(ch.get("message"), dict):
                m = dict(ch["message"])
                m.setdefault("role", "assistant")
                msgs.extend(normalize_messages([m]))
            elif isinstance(ch.get("text"), str):
                msgs.append({"role": "assistant", "content": ch["text"]})
    if not msgs and isinstance(obj.get("output"), list):  # Responses API
        texts, calls = [], []
        for item in obj["output"]:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                texts += [p.get("text") for p in (item["content"] if isinstance(item.get("content"), list) else [])
                          if isinstance(p, dict) and isinstance(p.get("text"), str)]
            elif item.get("type") == "function_call":
                calls.append({"id": item.get("call_id") or item.get("id"), "type": "function",
                              "function": {"name": item.get("name"), "arguments": args_json(item.get("arguments"))}})
        if texts or calls:
            m = {"role": "assistant", "content": "\n".join(texts) if texts else None}
            if calls:
                m["tool_calls"] = calls
            msgs.append(m)
        finish = obj.get("status") if msgs else None
    return msgs, finish


def malformed_json(raw: Any, decoded: Any) -> bool:
    """A value that was meant to be JSON (starts like an array or object) but does not parse: a
    truncated attribute. It is kept as text, never read as messages (nor as one empty message)."""
    return isinstance(raw, str) and isinstance(decoded, str) and decoded.lstrip()[:1] in ("[", "{")


def _input_from_value(value: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Input messages from a raw request (`input.value`, `traceloop.entity.input`, `ai.prompt`)."""
    v = json_deep_loads(value)
    if v is None or v == "" or v == {} or v == []:
        return [], None
    if malformed_json(value, v):
        return [], v
    if isinstance(v, str):
        return [{"role": "user", "content": v}], None
    if isinstance(v, list):
        msgs = normalize_messages(v)
        return msgs, None
    if isinstance(v, dict):
        msgs: list[dict[str, Any]] = []
        system = v.get("system") or v.get("instructions")
        if isinstance(system, str) and system:
            msgs.append({"role": "system", "content": system})
        if isinstance(v.get("messages"), list):
            return msgs + normalize_messages(v["messages"]), None
        if "role" in v and ("content" in v or "parts" in v):
            return normalize_messages([v]), None
        for k in ("prompt", "input", "query", "question"):
            if isinstance(v.get(k), str):
                return msgs + [{"role": "user", "content": v[k]}], None
            if k == "input" and isinstance(v.get(k), list):
                return msgs + normalize_messages(v[k]), None
    text = value if isinstance(value, str) else json.dumps(v, ensure_ascii=False, default=str)
    return [], text


def _output_from_value(value: Any) -> tuple[list[dict[str, Any]], Any, str | None, str | None]:
    """(messages, finish reason, response id, non-message text) from a raw response value."""
    v = json_deep_loads(value)
    if v is None or v == "" or v == {} or v == []:
        return [], None, None, None
    if malformed_json(value, v):
        return [], None, None, v
    if isinstance(v, str):
        return [{"role": "assistant", "content": v}], None, None, None
    if isinstance(v, dict):
        if "choices" in v or (isinstance(v.get("output"), list) and v.get("object") == "response"):
            msgs, finish = _completion_choices(v)
            rid = v.get("id") if isinstance(v.get("id"), str) else None
            if msgs:
                return msgs, finish, rid, None
        if "role" in v and ("content" in v or "parts" in v or "tool_calls" in v):
            return normalize_messages([v]), v.get("finish_reason"), None, None
        if isinstance(v.get("message"), dict):
            return normalize_messages([v]), v.get("finish_reason"), None, None
        if isinstance(v.get("text"), str):
            return [{"role": "assistant", "content": v["text"]}], v.get("finish_reason"), None, None
    if isinstance(v, list) and v and all(isinstance(x, dict) and ("role" in x or "message" in x) for x in v):
        msgs = normalize_messages(v)
        fin = next((x.get("finish_reason") for x in v if x.get("finish_reason")), None)
        return msgs, fin, None, None
    text = value if isinstance(value, str) else json.dumps(v, ensure_ascii=False, default=str)
    return [], None, None, text


def _g3_messages(value: Any, role: str = "user") -> tuple[list[dict[str, Any]], Any, str | None]:
    """(messages, finish reason, text) of a message-list attribute; text only when it is not JSON."""
    v = json_deep_loads(value)
    if malformed_json(value, v):
        return [], None, v
    if isinstance(v, str):
        return [{"role": role, "content": v}], None, None
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        return normalize_messages(v), None, None
    fin = next((m.get("finish_reason") for m in v if isinstance(m, dict) and m.get("finish_reason")), None)
    return normalize_messages(v), fin, None


def _system_instructions(value: Any) -> list[dict[str, Any]]:
    v = json_deep_loads(value)
    if isinstance(v, str):
        return [{"role": "system", "content": v}]
    if isinstance(v, list):  # a list of parts, per the semconv schema
        texts = [p.get("content") or p.get("text") for p in v if isinstance(p, dict)]
        texts += [p for p in v if isinstance(p, str)]
        texts = [t for t in texts if isinstance(t, str)]
        return [{"role": "system", "content": "\n".join(texts)}] if texts else []
    return []


def _packed_events(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """G2 events packed into an `events` attribute (pydantic-ai/logfire): (input, output, finish)."""
    v = json_deep_loads(value)
    if not isinstance(v, list):
        return [], [], None
    inp, outp, finish = [], [], None
    for ev in v:
        if not isinstance(ev, dict):
            continue
        en = str(ev.get("event.name") or "")
        if en == "gen_ai.choice":
            outp.extend(normalize_messages([ev]))
            finish = finish or ev.get("finish_reason")
        elif en.startswith("gen_ai.") and en.endswith(".message"):
            inp.extend(normalize_messages([ev]))
    return inp, outp, finish


def _vercel_tool_calls(value: Any) -> list[dict[str, Any]]:
    v = json_deep_loads(value)
    if not isinstance(v, list):
        return []
    return [{"id": c.get("toolCallId") or c.get("id"), "type": "function",
             "function": {"name": c.get("toolName") or c.get("name"),
                          "arguments": args_json(c.get("args", c.get("input")))}}
            for c in v if isinstance(c, dict)]


def _event_attr(events: list[dict] | None, event_name: str, key: str) -> Any:
    for ev in events or []:
        if ev.get("name") == event_name:
            val = (ev.get("attributes") or {}).get(key)
            if val is not None:
                return val
    return None


# Every attribute key _messages reads (tests/test_mapping.py holds this list to its source): a span
# with none of them, no events and no flattened families has no messages, and most spans of a
# trace (HTTP, retrieval, tool, workflow spans) skip the dialect chain below.
_MESSAGE_KEYS = frozenset({
    "events", "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt", "gen_ai.completion",
    "gen_ai.system_instructions", "gen_ai.content.prompt", "gen_ai.content.completion",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "ai.prompt", "ai.prompt.messages",
    "ai.response.text", "ai.response.toolCalls", "ai.response.object", "ai.toolCall.args", "ai.toolCall.result",
    "langfuse.observation.input", "langfuse.observation.output", "traceloop.entity.input",
    "traceloop.entity.output", "input.value", "output.value", "oncall.raw_input", "oncall.raw_output",
    "tool.parameters", "llm.input_messages", "llm.output_messages", "llm.prompts", "llm.choices", "prompt.text",
    "completion.text",
})


def _messages(view: dict[str, Any], events: list[dict] | None,
              fams: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """input/output messages, finish reason and response id from the first dialect that has them."""
    if not events and not fams and view.keys().isdisjoint(_MESSAGE_KEYS):
        return {"_finish": None, "_response_id": None}
    out: dict[str, Any] = {}
    finish = None
    inp: list[dict[str, Any]] = []
    outp: list[dict[str, Any]] = []
    in_text = out_text = None
    packed_in, packed_out, packed_fin = _packed_events(view.get("events")) if "events" in view else ([], [], None)
    ev_in, ev_out, ev_fin = message_events(events) if events else ([], [], None)

    # -- input
    if view.get("gen_ai.input.messages") not in (None, ""):
        inp, _, in_text = _g3_messages(view["gen_ai.input.messages"])
    elif "llm.input_messages" in fams:
        inp = _openinference_messages(fams["llm.input_messages"])
    elif "gen_ai.prompt" in fams:
        inp = _genai_flat_messages(fams["gen_ai.prompt"], "user")
    elif (g1 := _event_attr(events, "gen_ai.content.prompt", "gen_ai.prompt") or view.get("gen_ai.prompt")) \
            is not None and isinstance(g1, (str, list, dict)):
        inp, in_text = _input_from_value(g1)
    elif ev_in:
        inp = ev_in
    elif packed_in:
        inp = packed_in
    elif view.get("ai.prompt.messages") not in (None, ""):
        inp, _, in_text = _g3_messages(view["ai.prompt.messages"])
    elif view.get("ai.prompt") not in (None, ""):
        inp, in_text = _input_from_value(view["ai.prompt"])
    elif "llm.prompts" in fams:
        inp = [{"role": "user", "content": str(it.get("prompt.text"))}
               for _, it in sorted(fams["llm.prompts"].items()) if it.get("prompt.text") is not None]
    else:
        raw_in = next((view[k] for k in ("langfuse.observation.input", "traceloop.entity.input", "input.value",
                                          "oncall.raw_input", "gen_ai.tool.call.arguments", "ai.toolCall.args",
                                          "tool.parameters")
                       if view.get(k) not in (None, "")), None)
        if raw_in is not None:
            inp, in_text = _input_from_value(raw_in)
    if view.get("gen_ai.system_instructions") not in (None, "") and not any(m["role"] == "system" for m in inp):
        inp = _system_instructions(view["gen_ai.system_instructions"]) + inp

    # -- output
    rid = None
    if view.get("gen_ai.output.messages") not in (None, ""):
        outp, finish, out_text = _g3_messages(view["gen_ai.output.messages"], "assistant")
    elif "llm.output_messages" in fams:
        outp = _openinference_messages(fams["llm.output_messages"])
    elif "gen_ai.completion" in fams:
        outp = _genai_flat_messages(fams["gen_ai.completion"], "assistant")
        finish = next((it.get("finish_reason") for _, it in sorted(fams["gen_ai.completion"].items())
                       if it.get("finish_reason")), None)
    elif (g1 := _event_attr(events, "gen_ai.content.completion", "gen_ai.completion")
          or view.get("gen_ai.completion")) is not None and isinstance(g1, (str, list, dict)):
        outp, finish, rid, out_text = _output_from_value(g1)
    elif ev_out:
        outp, finish = ev_out, ev_fin
    elif packed_out:
        outp, finish = packed_out, packed_fin
    elif any(view.get(k) not in (None, "") for k in ("ai.response.text", "ai.response.toolCalls",
                                                     "ai.response.object")):
        text = view.get("ai.response.text")
        if text in (None, "") and view.get("ai.response.object") not in (None, ""):
            obj = view["ai.response.object"]
            text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
        m: dict[str, Any] = {"role": "assistant", "content": content_text(text) if text not in (None, "") else None}
        calls = _vercel_tool_calls(view.get("ai.response.toolCalls"))
        if calls:
            m["tool_calls"] = calls
        outp = [m]
    elif "llm.choices" in fams:
        outp = [{"role": "assistant", "content": str(it.get("completion.text"))}
                for _, it in sorted(fams["llm.choices"].items()) if it.get("completion.text") is not None]
    else:
        raw_out = next((view[k] for k in ("langfuse.observation.output", "traceloop.entity.output", "output.value",
                                          "oncall.raw_output", "gen_ai.tool.call.result", "ai.toolCall.result")
                        if view.get(k) not in (None, "")), None)
        if raw_out is not None:
            outp, finish, rid, out_text = _output_from_value(raw_out)
    if finish is None and view.get("output.value") not in (None, "") and outp:
        # OpenInference: the finish reason lives only in the raw response.
        _, finish, rid2, _ = _output_from_value(view["output.value"])
        rid = rid or rid2

    if inp:
        out["input_messages"] = inp
        out["input_text"] = messages_text(inp)
    elif in_text:
        out["input_text"] = in_text
    if outp:
        out["output_messages"] = outp
        calls = tool_calls_of(outp)
        if calls:
            out["tool_calls"] = calls
        out["output_text"] = messages_text(outp)
    elif out_text:
        out["output_text"] = out_text
    out["_finish"] = finish
    out["_response_id"] = rid
    return out


def _kind(view: dict[str, Any], found: dict[str, Any], has_model: bool, has_usage: bool) -> str | None:
    """canonical.call_kind, the one rule, fed from this span's dialects (stated kind, operation, evidence)."""
    stated = found.get("kind")
    if stated is None:
        op = view.get("ai.operationId")
        if isinstance(op, str) and op.startswith("ai."):  # Vercel: the operation id is the kind
            last = op.rsplit(".", 1)[-1]
            stated = _VERCEL_KINDS.get(last, "chain" if op.count(".") == 1 else None) or "span"
    operation = found.get("operation")
    if stated is None and operation is None and (
            view.get("gen_ai.tool.name") is not None or view.get("gen_ai.tool.call.id") is not None):
        operation = "execute_tool"  # execute_tool spans that omit gen_ai.operation.name (Koog)
    return call_kind(kind=stated, operation=operation, has_model=has_model, has_usage=has_usage)


def _view(attrs: dict[str, Any], resource: dict[str, Any] | None) -> dict[str, Any]:
    """attrs plus what is nested in JSON-string metadata (`metadata.KEY`) and resource fallbacks."""
    view = attrs
    extra: dict[str, Any] = {}
    md = attrs.get(METADATA_JSON_KEY)
    if isinstance(md, (str, dict)):
        parsed = json_deep_loads(md) if isinstance(md, str) else md
        if isinstance(parsed, dict):
            for k, v in parsed.items():
                extra.setdefault(f"metadata.{k}", v)
    for k in _PY_REPR_METADATA:
        v = attrs.get(k)
        if isinstance(v, str) and v.startswith("{"):
            # LiteLLM's otel callback writes these dicts as Python repr, not JSON: read them as
            # literals (never evaluated), so the app's keys inside count as metadata.KEY.
            parsed = _py_literal(v)
            if isinstance(parsed, dict):
                for kk, vv in parsed.items():
                    extra.setdefault(f"metadata.{kk}", vv)
    if resource:
        for k in RESOURCE_FALLBACK_KEYS:
            if k in resource and k not in attrs:
                extra[k] = resource[k]
    if extra:
        view = {**extra, **attrs}
    return view


_PY_REPR_METADATA = ("metadata.spend_logs_metadata", "metadata.requester_metadata")


def _py_literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text) if len(text) <= 100_000 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def map_attributes(attrs: dict[str, Any], *, resource: dict | None = None, scope: str | None = None,
                   events: list[dict] | None = None, name: str | None = None,
                   kind: str | None = None) -> dict[str, Any]:
    """The canonical columns derivable from one span's flat attributes (None values left out).

    `events` are the span's events as `{"name", "attributes": {…}}` with decoded attributes;
    `resource` the decoded resource attributes; `kind` the envelope's own span kind when it has
    one (Phoenix `span_kind`), which wins over attributes. Status is the importer's: it passes the result
    through `apply_status` with the span's own status code and message.
    """
    # G3 opt-in event: the same attributes, carried on an event instead of the span.
    for ev in events or ():
        if ev.get("name") == "gen_ai.client.inference.operation.details":
            extra = {k: v for k, v in (ev.get("attributes") or {}).items() if k not in attrs}
            if extra:
                attrs = {**attrs, **extra}
    synth = dialect_keys(attrs)
    view = _view({**synth, **attrs} if synth else attrs, resource)
    if scope in _RUN_CONVERSATION_SCOPES and "gen_ai.conversation.id" in view:
        # pydantic-ai gives every agent run a fresh gen_ai.conversation.id; taking it as the session
        # would hide the application's session.id that the run inherits from its root span. It stays
        # an attribute (meta.gen_ai.conversation.id).
        view = {k: v for k, v in view.items() if k != "gen_ai.conversation.id"}
    found = _scan(view)
    fams = _indexed_families(attrs)
    out: dict[str, Any] = {}

    msg = _messages(view, events, fams)
    finish = msg.pop("_finish")
    rid = msg.pop("_response_id")
    out.update(msg)

    # -- models and provider
    inv = view.get("llm.invocation_parameters")
    inv = json_deep_loads(inv) if isinstance(inv, str) else inv
    requested = found.get("model")
    if requested is None and isinstance(inv, dict):
        requested = inv.get("model") or inv.get("model_name")
    served = found.get("served_model")
    if requested is None and served is not None and "llm.model_name" in view and not any(
            k in view for k in ("gen_ai.response.model", "ai.response.model", "llm.response.model_name")):
        # OpenInference's single `llm.model_name` is the only model the span names; use it for both
        # so `model=` filters still find the span (trace-formats §8.10).
        requested = served
    out["model"] = _str(requested)
    out["served_model"] = _str(served)
    provider = found.get("provider")
    if provider is None and view.get("ai.model.provider"):
        provider = str(view["ai.model.provider"]).split(".", 1)[0]  # "openai.responses" -> openai
    out["provider"] = normalize_provider(provider)

    # -- tokens: the first key of each family, never a sum across dialects
    inp_t = coerce_int(found.get("input_tokens"))
    out_t = coerce_int(found.get("output_tokens"))
    total = coerce_int(found.get("total_tokens"))
    if inp_t is None and out_t is None and view.get("ai.usage.tokens") is not None:
        inp_t = coerce_int(view["ai.usage.tokens"])  # embeddings: every token is input
    if total is None and inp_t is not None and out_t is not None:
        total = inp_t + out_t
    out["input_tokens"], out["output_tokens"], out["total_tokens"] = inp_t, out_t, total
    out["cached_tokens"] = coerce_int(found.get("cached_tokens"))
    out["reasoning_tokens"] = coerce_int(found.get("reasoning_tokens"))
    out["cost"] = _cost(view, found)

    # -- cohort keys
    out["session_id"] = _str(found.get("session_id"))
    out["user_id"] = _str(found.get("user_id"))
    out["tenant"] = _str(found.get("tenant"))
    out["feature"] = _str(found.get("feature"))
    out["prompt_name"] = _str(found.get("prompt_name"))
    out["prompt_version"] = _str(found.get("prompt_version"))
    out["release"] = _str(found.get("release"))
    out["env"] = _str(found.get("env"))
    out["request_id"] = _str(found.get("request_id"))
    out["response_id"] = _str(found.get("response_id") or rid)
    if out["response_id"] is not None and out["response_id"] == _str(view.get("litellm.call_id")):
        out["response_id"] = None  # LiteLLM puts its own call id there when no response came back
    if resource and resource.get("service.name") is not None:
        out["service"] = str(resource["service.name"])

    out["finish_reason"] = normalize_finish_reason(
        found.get("finish_reason") or finish)

    ttft = coerce_float(view.get("gen_ai.response.time_to_first_chunk"))
    if ttft is None:  # pydantic-ai (seconds, as the semconv metric of that name)
        ttft = coerce_float(view.get("gen_ai.client.operation.time_to_first_chunk"))
    if ttft is not None:
        out["ttft_ms"] = ttft * 1000.0
    else:
        ms = coerce_float(view.get("ai.response.msToFirstChunk"))
        if ms is None:
            ms = coerce_float(_event_attr(events, "ai.stream.firstChunk", "ai.response.msToFirstChunk"))
        if ms is None:  # Strands: milliseconds on the span (strands telemetry/tracer.py)
            ms = coerce_float(view.get("gen_ai.server.time_to_first_token"))
        out["ttft_ms"] = ms

    has_model = bool(out.get("model") or out.get("served_model"))
    has_usage = inp_t is not None or out_t is not None or total is not None
    out["kind"] = normalize_kind(kind) if kind not in (None, "") else _kind(view, found, has_model, has_usage)
    if out["kind"] in ("chain", "span", None) and normalize_kind(found.get("operation")) == "retriever":
        out["kind"] = "retriever"  # OpenLLMetry: `vector_db_retrieve` on a span it also calls a `task`
    if out["kind"] in _RETRIEVAL_KINDS:
        got = retrieval.from_attributes(view, attrs, events, kind=out["kind"],
                                        model=out.get("model") or out.get("served_model"))
        if (got.get("retrieved") is not None or retrieval.is_vector_query(view)) and out["kind"] in (None, "span"):
            out["kind"] = "retriever"  # a vector-store query (OpenLLMetry `db.system`) or a span with documents
        out.update(got)
    if out["kind"] == "tool":
        # A tool span's input/output are call arguments and results, not a conversation.
        for k in ("input_messages", "output_messages", "tool_calls"):
            out.pop(k, None)
    if out["response_id"] is not None and out["response_id"] == rid and out["kind"] != "llm":
        # A workflow's raw output may embed the provider response; the id belongs to the LLM span.
        out["response_id"] = None
    out.update(_errors(view, events))
    level_error = view.get("oncall.level_error")
    if level_error is not None:  # Langfuse: level ERROR with its status message
        out.setdefault("error", str(level_error))
        if out.get("http_status") is None and http_status_from(str(level_error)) is not None:
            out["http_status"] = http_status_from(str(level_error))
        out["error_type"] = out.get("error_type") or classify_error(out.get("http_status"), None, level_error) or "other"
    return {k: v for k, v in out.items() if v is not None}


def _cost(view: dict[str, Any], found: dict[str, Any]) -> float | None:
    c = found.get("cost")
    if isinstance(c, (str, dict)):
        parsed = json_deep_loads(c) if isinstance(c, str) else c
        if isinstance(parsed, dict):
            c = parsed.get("total", sum(v for v in parsed.values() if isinstance(v, (int, float))) or None)
    cost = coerce_float(c)
    if cost is None:
        p, q = coerce_float(view.get("llm.cost.prompt")), coerce_float(view.get("llm.cost.completion"))
        if p is not None and q is not None:
            cost = p + q
    return cost


def _errors(view: dict[str, Any], events: list[dict] | None) -> dict[str, Any]:
    """http_status, error (message) and error_type from attributes and exception events."""
    out: dict[str, Any] = {}
    etype = view.get("error.type")
    emsg = None
    for ev in events or ():
        if ev.get("name") == "exception":
            ea = ev.get("attributes") or {}
            etype = etype or ea.get("exception.type")
            emsg = emsg or ea.get("exception.message")
    status = http_status_from(view.get("http.response.status_code"), view.get("http.status_code"),
                              view.get("error.status_code"))
    if status is None and etype is not None:
        status = http_status_from(str(etype), emsg)
    if status is not None:
        out["http_status"] = status
    if emsg is not None or etype is not None:
        out["error"] = str(emsg if emsg is not None else etype)
    if etype is not None or emsg is not None or (status is not None and status >= 400):
        out["error_type"] = classify_error(status, etype, emsg)
    return out


def apply_status(row: dict[str, Any], status: str, message: Any = None) -> None:
    """Set status/error/error_type on a row from the span's own status (importers call this).

    An ERROR status with no classified error still gets an error_type ("other" or from the message),
    so `error=` filters see every failed span; an OK span keeps error info only if attributes said so.
    """
    row["status"] = status
    msg = message if message not in (None, "") else None
    if msg is not None and not row.get("error"):
        row["error"] = str(msg)
    if status == "error":
        if row.get("http_status") is None:
            hs = http_status_from(msg)
            if hs is not None:
                row["http_status"] = hs
        if row.get("error_type") in (None, "other"):
            row["error_type"] = classify_error(row.get("http_status"), None, row.get("error") or msg) or "other"
