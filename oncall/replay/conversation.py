"""Rebuilding a recorded request faithfully enough to send it again (issue 11 item 2).

The conversation is the span's canonical `input_messages` (every importer normalises its shape to
OpenAI chat messages, oncall/ingest/messages.py). What the canonical columns do not hold — the
request parameters and the tool definitions — is read back from what each import format kept:

| format(s)                                   | parameters and tools come from                          |
|---------------------------------------------|---------------------------------------------------------|
| otlp-json, otlp-jsonl, otel-console,        | attributes: `gen_ai.request.*`, `gen_ai.tool.definitions`,|
| otel-js-spans, span-attributes, phoenix,    | `llm.invocation_parameters`, `llm.tools.N.tool.json_schema`,|
| langfuse-trace/-export (the OTel attributes) | `llm.request.functions.N.*`, Vercel `ai.settings.*`,     |
|                                             | `ai.prompt.tools`, `ai.prompt.toolChoice`                |
| litellm (StandardLoggingPayload)            | raw `model_parameters`                                   |
| litellm (request/response logs)             | raw `request` (every key but messages/model/stream)      |
| langsmith                                   | raw `inputs` (wrap_openai) and `extra.invocation_params` |
| langfuse-trace, langfuse-export             | also raw `modelParameters`, `input.tools`                |
| openai-batch, generic                       | nothing: the export does not keep them (a note says so)  |

A request that cannot be rebuilt faithfully is returned as `Unreplayable(reason)`, never sent
approximately: no input messages (content capture off), a message attribute cut short by an
attribute length limit (JSON that does not parse), parts oncall cannot send back (images, audio,
files, reasoning blocks), a recorded tool call without its recorded result, tool calls with no
tool definitions recorded, or a prompt variant for another prompt.

Tool-using conversations: the messages after the last user turn that are assistant tool calls
followed by their recorded results are the *steps* of the agent loop. The replay starts before
the first step and answers each tool call with the recorded result, as long as the replayed model
calls the same tools with the same arguments (runner/engine); the original output is the final
step.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from oncall.ingest.decode import json_deep_loads
from oncall.ingest.messages import messages_text
from oncall.query.ids import request_key
from oncall.replay.suite import PromptVariant

ATTRIBUTE_FORMATS = ("otlp-json", "otlp-jsonl", "otel-console", "otel-js-spans", "span-attributes", "phoenix",
                     "langfuse-trace", "langfuse-export")
# Part types that round-trip as text or tool calls; anything else cannot be sent back faithfully.
_SENDABLE_PARTS = {"text", "input_text", "output_text", "tool_call", "tool-call", "tool_use", "function_call",
                   "tool_call_response", "tool-result", "tool_result", "function_call_output", "function"}
_MESSAGE_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "ai.prompt.messages", "ai.prompt", "input.value",
                 "gen_ai.system_instructions")
_OI_CONTENT_TYPE = re.compile(r"^llm\.input_messages\.(\d+)\.message\.contents\.\d+\.message_content\.type$")

# gen_ai.request.* (and friends) -> the chat.completions parameter
_GENAI_PARAMS = {
    "gen_ai.request.temperature": "temperature", "gen_ai.request.top_p": "top_p",
    "gen_ai.request.max_tokens": "max_tokens", "gen_ai.request.seed": "seed",
    "gen_ai.openai.request.seed": "seed", "gen_ai.request.stop_sequences": "stop",
    "gen_ai.request.frequency_penalty": "frequency_penalty", "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.choice.count": "n", "gen_ai.openai.request.response_format": "response_format",
    "gen_ai.request.response_format": "response_format",
    "llm.request.temperature": "temperature", "llm.request.top_p": "top_p", "llm.request.max_tokens": "max_tokens",
    "ai.settings.temperature": "temperature", "ai.settings.topP": "top_p", "ai.settings.maxTokens": "max_tokens",
    "ai.settings.maxOutputTokens": "max_tokens", "ai.settings.seed": "seed",
    "ai.settings.frequencyPenalty": "frequency_penalty", "ai.settings.presencePenalty": "presence_penalty",
    "ai.settings.stopSequences": "stop",
}
# Request-body keys carried over as they are (OpenAI chat.completions names).
_BODY_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "frequency_penalty",
                "presence_penalty", "response_format", "tools", "tool_choice", "parallel_tool_calls",
                "reasoning_effort", "logit_bias", "n", "functions", "function_call")


@dataclass
class Step:
    """One recorded tool step: the assistant's tool calls and the recorded results answering them."""

    calls: list[dict[str, Any]]  # OpenAI tool_call objects
    results: list[dict[str, Any]]  # tool messages, in call order
    content: str | None = None


@dataclass
class Original:
    """What the recording answered (the left side of every pair)."""

    output_text: str | None
    finish_reason: str | None
    tool_calls: list[dict[str, Any]]
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    ttft_ms: float | None
    cost: float | None
    served_model: str | None
    status: str | None


@dataclass
class Conversation:
    span_pk: int
    request_key: str
    model: str | None
    prompt_name: str | None
    prefix: list[dict[str, Any]]  # sent as recorded, before the first step
    steps: list[Step]
    params: dict[str, Any]  # recorded parameters (tools included)
    original: Original
    notes: list[str] = field(default_factory=list)
    source_format: str | None = None

    def request_params(self, target_params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """Recorded parameters, then the target's, then --param/--seed (the last word wins)."""
        p = {**self.params, **target_params, **overrides}
        if "max_completion_tokens" in p and "max_tokens" in p:
            p.pop("max_tokens")  # o-series targets take only the new name
        return p

    def estimated_tokens(self) -> tuple[int, int]:
        """(input, output) tokens one replay is likely to use: the recorded counts, else ~4 chars a token."""
        inp = self.original.input_tokens
        if inp is None:
            inp = max(1, len(messages_text(self.prefix)) // 4)
        out = self.original.output_tokens
        if out is None:
            out = max(1, len(self.original.output_text or "") // 4) if self.original.output_text else \
                int(self.params.get("max_tokens") or 256)
        return int(inp) * (1 + len(self.steps)), int(out) * (1 + len(self.steps))


@dataclass
class Unreplayable:
    span_pk: int
    request_key: str
    reason: str


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def rebuild(row: dict[str, Any], variant: PromptVariant | None = None) -> Conversation | Unreplayable:
    """The replayable conversation of one span row, or why it cannot be replayed faithfully."""
    key = request_key(row)

    def no(reason: str) -> Unreplayable:
        return Unreplayable(int(row["span_pk"]), key, reason)

    if row.get("kind") not in (None, "llm"):
        return no(f"not an LLM call (kind {row.get('kind')})")
    attrs = _loads(row.get("attributes")) or {}
    raw = _loads(row.get("raw")) or {}
    fmt = row.get("source_format") or ""
    msgs = _loads(row.get("input_messages")) or []
    # Before "no messages": an attribute cut short is kept as text, never as messages (issue 24), so a
    # truncated message attribute leaves none, and the responder needs to know it was the length limit.
    problem = _truncated(attrs)
    if problem:
        return no(problem)
    if not msgs:
        return no("no input messages were recorded (content capture off, or the content was uploaded elsewhere)")
    problem = _unsendable_parts(attrs, raw, fmt)
    if problem:
        return no(problem)
    msgs = [_clean(m) for m in msgs]
    for i, m in enumerate(msgs, start=1):
        if m["role"] in ("user", "system") and not m.get("content"):
            return no(f"message {i} ({m['role']}) has no content in the export")
    try:
        params, notes = recorded_params(fmt, attrs, raw)
    except ValueError as exc:
        return no(str(exc))
    msgs, problem = _link_tool_results(msgs)
    if problem:
        return no(problem)
    out_calls = _loads(row.get("tool_calls")) or []
    uses_tools = bool(out_calls) or any(m.get("tool_calls") for m in msgs)
    if uses_tools and not params.get("tools") and not params.get("functions"):
        names = sorted({c.get("name") or (c.get("function") or {}).get("name") or "?" for c in out_calls} |
                       {(c.get("function") or {}).get("name") or "?" for m in msgs for c in m.get("tool_calls") or []})
        return no(f"the conversation calls tools ({', '.join(names)}) but the export recorded no tool definitions, "
                  "so the replayed model could not call them")
    if variant is not None:
        msgs, problem = _apply_variant(msgs, variant, row.get("prompt_name"))
        if problem:
            return no(problem)
    prefix, steps = _split_steps(msgs)
    original = Original(
        output_text=row.get("output_text"), finish_reason=row.get("finish_reason"),
        tool_calls=[{"name": c.get("name"), "arguments": c.get("arguments")} for c in out_calls],
        input_tokens=row.get("input_tokens"), output_tokens=row.get("output_tokens"),
        latency_ms=row.get("latency_ms"), ttft_ms=row.get("ttft_ms"), cost=row.get("cost"),
        served_model=row.get("served_model"), status=row.get("status"))
    return Conversation(span_pk=int(row["span_pk"]), request_key=key, model=row.get("model"),
                        prompt_name=row.get("prompt_name"), prefix=prefix, steps=steps, params=params,
                        original=original, notes=notes, source_format=fmt)


# -- faithfulness checks ------------------------------------------------------------------------------
def _truncated(attrs: dict[str, Any]) -> str | None:
    """A message attribute that looks like JSON but does not parse was cut by a length limit."""
    for k in _MESSAGE_KEYS + ("gen_ai.tool.definitions", "llm.invocation_parameters"):
        v = attrs.get(k)
        if isinstance(v, str) and v.lstrip()[:1] in ("[", "{"):
            try:
                json.loads(v)
            except ValueError:
                return (f"attribute {k} is cut short ({len(v)} characters, not valid JSON): an attribute length "
                        "limit truncated it")
    return None


def _unsendable_parts(attrs: dict[str, Any], raw: Any, fmt: str) -> str | None:
    for k, v in attrs.items():
        m = _OI_CONTENT_TYPE.match(k)
        if m and str(v) != "text":
            return f"message {int(m.group(1)) + 1} has a {v} part, which oncall cannot send back faithfully"
    sources: list[Any] = [attrs.get(k) for k in _MESSAGE_KEYS if attrs.get(k) not in (None, "")]
    if isinstance(raw, dict):
        for path in (("messages",), ("request", "messages"), ("inputs", "messages"), ("input",), ("input", "messages")):
            v: Any = raw
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                sources.append(v)
    for src in sources:
        src = json_deep_loads(src)
        if isinstance(src, dict) and isinstance(src.get("messages"), list):
            src = src["messages"]
        if not isinstance(src, list):
            continue
        for i, m in enumerate(src, start=1):
            if not isinstance(m, dict):
                continue
            parts = m.get("parts") if isinstance(m.get("parts"), list) else m.get("content")
            for p in parts if isinstance(parts, list) else []:
                if isinstance(p, dict) and str(p.get("type") or "text") not in _SENDABLE_PARTS:
                    return f"message {i} has a {p.get('type')} part, which oncall cannot send back faithfully"
    return None


def _clean(m: dict[str, Any]) -> dict[str, Any]:
    """A canonical message as chat.completions takes it (no None-valued extras)."""
    out: dict[str, Any] = {"role": m.get("role") or "user", "content": m.get("content")}
    if m.get("tool_calls"):
        out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                              "function": {"name": (c.get("function") or {}).get("name"),
                                           "arguments": (c.get("function") or {}).get("arguments") or "{}"}}
                             for c in m["tool_calls"]]
    if out["role"] == "tool":
        out["tool_call_id"] = m.get("tool_call_id")
        if out["content"] is None:
            out["content"] = ""
    elif m.get("name"):
        out["name"] = m["name"]
    return out


def _link_tool_results(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Every recorded tool call answered by a recorded result; missing ids filled in by position
    (ids are bookkeeping, not content). A call without a result is not replayable."""
    out = copy.deepcopy(msgs)
    n_ids = 0
    i = 0
    while i < len(out):
        m = out[i]
        if m["role"] == "tool":
            return out, f"message {i + 1} is a tool result that answers no recorded tool call"
        calls = m.get("tool_calls") or []
        if m["role"] != "assistant" or not calls:
            i += 1
            continue
        for c in calls:
            if not c.get("id"):
                n_ids += 1
                c["id"] = f"call_oncall_{n_ids}"
        j = i + 1
        results = []
        while j < len(out) and out[j]["role"] == "tool":
            results.append(out[j])
            j += 1
        by_id = {r.get("tool_call_id"): r for r in results if r.get("tool_call_id")}
        unnamed = [r for r in results if not r.get("tool_call_id") or r.get("tool_call_id") not in
                   {c["id"] for c in calls}]
        for c in calls:
            if c["id"] in by_id:
                continue
            if unnamed:
                unnamed.pop(0)["tool_call_id"] = c["id"]
            else:
                fn = c["function"]
                return out, (f"message {i + 1} calls {fn.get('name')}({fn.get('arguments')}) and the export holds "
                             "no recorded result for it")
        if unnamed:
            return out, f"message {i + 2} is a tool result that answers no recorded tool call"
        i = j
    return out, None


def _apply_variant(msgs: list[dict[str, Any]], variant: PromptVariant,
                   prompt_name: str | None) -> tuple[list[dict[str, Any]], str | None]:
    if not variant.applies_to(prompt_name):
        return msgs, (f"prompt variant {variant.name} replaces the {variant.replaces} prompt; this request used "
                      f"{prompt_name or 'an unnamed prompt'}")
    out = [dict(m) for m in msgs]
    sys_idx = [i for i, m in enumerate(out) if m["role"] == "system"]
    if sys_idx:
        out[sys_idx[0]]["content"] = variant.text
    else:
        out.insert(0, {"role": "system", "content": variant.text})
    return out, None


def _split_steps(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Step]]:
    """(prefix, steps): the trailing tool loop after the last user message becomes steps."""
    last_user = max((i for i, m in enumerate(msgs) if m["role"] in ("user", "system")), default=-1)
    prefix = msgs[:last_user + 1]
    steps: list[Step] = []
    rest = msgs[last_user + 1:]
    i = 0
    while i < len(rest):
        m = rest[i]
        if m["role"] == "assistant" and m.get("tool_calls"):
            j = i + 1
            results = []
            while j < len(rest) and rest[j]["role"] == "tool":
                results.append(rest[j])
                j += 1
            order = {c["id"]: k for k, c in enumerate(m["tool_calls"])}
            results.sort(key=lambda r: order.get(r.get("tool_call_id"), 0))
            steps.append(Step(calls=m["tool_calls"], results=results, content=m.get("content")))
            i = j
        else:
            # an assistant text turn inside the tool loop: the loop so far becomes history
            prefix = prefix + _flatten(steps) + [m]
            steps = []
            i += 1
    return prefix, steps


def _flatten(steps: list[Step]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in steps:
        out.append({"role": "assistant", "content": s.content, "tool_calls": s.calls})
        out.extend(s.results)
    return out


# -- recorded parameters -----------------------------------------------------------------------------
def recorded_params(fmt: str, attrs: dict[str, Any], raw: Any) -> tuple[dict[str, Any], list[str]]:
    """The request's parameters and tool definitions as chat.completions keys, and notes on what is missing."""
    params: dict[str, Any] = {}
    notes: list[str] = []
    raw = raw if isinstance(raw, dict) else {}
    if fmt in ATTRIBUTE_FORMATS or not fmt:
        params.update(_attribute_params(attrs))
    if fmt == "litellm":
        if isinstance(raw.get("request"), dict):
            params.update(_body_params(raw["request"]))
        mp = json_deep_loads(raw.get("model_parameters"))
        if isinstance(mp, dict):
            params.update(_body_params(mp))
    elif fmt == "langsmith":
        inv = ((raw.get("extra") or {}).get("invocation_params") or {}) if isinstance(raw.get("extra"), dict) else {}
        params.update(_body_params(inv if isinstance(inv, dict) else {}))
        if isinstance(raw.get("inputs"), dict):
            params.update(_body_params(raw["inputs"]))
    elif fmt.startswith("langfuse"):
        # Langfuse's own fields fill in what the OTel attributes did not say (never override them).
        mp = raw.get("modelParameters")
        extra: dict[str, Any] = {}
        if isinstance(mp, dict):
            extra.update(_body_params({k: _number(v) for k, v in mp.items()}))
        inp = json_deep_loads(raw.get("input"))
        if isinstance(inp, dict):
            extra.update(_body_params({k: v for k, v in inp.items() if k in ("tools", "tool_choice")}))
        params.update({k: v for k, v in extra.items() if k not in params})
    elif fmt in ("openai-batch", "generic"):
        notes.append(f"the {fmt} export keeps no request parameters or tool definitions; "
                     "the target's parameters are used")
    if "tools" in params:
        tools = params["tools"] if isinstance(params["tools"], list) else [params["tools"]]
        params["tools"] = [_openai_tool(t) for t in _unwrap_declarations(tools)]
    if "functions" in params and "tools" not in params:  # legacy functions -> tools
        params["tools"] = [{"type": "function", "function": f} for f in params.pop("functions")]
        params.pop("function_call", None)
    params.pop("stream", None)
    params.pop("stream_options", None)
    if params.get("n") == 1:
        params.pop("n")
    if not params and not notes:
        notes.append("no request parameters were recorded; the target's defaults are used")
    return params, notes


def _number(v: Any) -> Any:
    """Langfuse stores every model parameter as a string ("0.7", "inf")."""
    if isinstance(v, str):
        s = v.strip()
        if s.lower() in ("inf", "infinity", "none", "null", ""):
            return None
        try:
            return int(s) if re.fullmatch(r"-?\d+", s) else float(s)
        except ValueError:
            return json_deep_loads(s)
    return v


def _body_params(body: dict[str, Any]) -> dict[str, Any]:
    return {k: json_deep_loads(body[k]) for k in _BODY_PARAMS if body.get(k) is not None}


def _attribute_params(attrs: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {}
    inv = json_deep_loads(attrs.get("llm.invocation_parameters"))
    if isinstance(inv, dict):
        p.update(_body_params(inv))
    for k, name in _GENAI_PARAMS.items():
        v = attrs.get(k)
        if v is not None and name not in p:
            v = json_deep_loads(v)
            if name == "response_format" and isinstance(v, str):
                v = {"type": v}
            p[name] = v
    if attrs.get("gen_ai.output.type") == "json" and "response_format" not in p:
        p["response_format"] = {"type": "json_object"}
    tools = json_deep_loads(attrs.get("gen_ai.tool.definitions"))
    if not tools:
        tools = [json_deep_loads(v) for k, v in sorted(attrs.items(), key=lambda kv: _index_key(kv[0]))
                 if re.fullmatch(r"llm\.tools\.\d+\.tool\.json_schema", k)]
    if not tools:
        fns: dict[int, dict[str, Any]] = {}
        for k, v in attrs.items():
            m = re.fullmatch(r"llm\.request\.functions\.(\d+)\.(name|description|parameters)", k)
            if m:
                fns.setdefault(int(m.group(1)), {})[m.group(2)] = json_deep_loads(v)
        tools = [{"type": "function", "function": fns[i]} for i in sorted(fns)]
    if not tools and attrs.get("ai.prompt.tools") is not None:
        v = json_deep_loads(attrs["ai.prompt.tools"])  # a JSON list of JSON strings
        tools = [json_deep_loads(t) for t in (v if isinstance(v, list) else [v])]
    if tools:
        p["tools"] = tools if isinstance(tools, list) else [tools]
    tc = json_deep_loads(attrs.get("ai.prompt.toolChoice"))
    if tc is not None and "tool_choice" not in p:
        p["tool_choice"] = _vercel_tool_choice(tc)
    return {k: v for k, v in p.items() if v is not None}


def _index_key(k: str) -> list[Any]:
    return [int(x) if x.isdigit() else x for x in k.split(".")]


def _vercel_tool_choice(tc: Any) -> Any:
    if isinstance(tc, dict):
        t = tc.get("type")
        if t == "tool" and tc.get("toolName"):
            return {"type": "function", "function": {"name": tc["toolName"]}}
        return t if t in ("auto", "none", "required") else "auto"
    return tc


def _unwrap_declarations(tools: list[Any]) -> list[Any]:
    """Gemini-style `{"function_declarations": [...]}` groups as one tool per declaration."""
    out: list[Any] = []
    for t in tools:
        t = json_deep_loads(t)
        decls = t.get("function_declarations") or t.get("functionDeclarations") if isinstance(t, dict) else None
        out.extend(decls if isinstance(decls, list) else [t])
    return out


def _openai_tool(t: Any) -> dict[str, Any]:
    """A tool definition in any recorded shape as an OpenAI `{"type": "function", "function": {...}}`."""
    t = json_deep_loads(t)
    if not isinstance(t, dict):
        raise ValueError(f"a recorded tool definition is not an object: {str(t)[:80]!r}")
    if isinstance(t.get("function"), dict):
        return {"type": "function", "function": t["function"]}
    fn = {"name": t.get("name")}
    if t.get("description"):
        fn["description"] = t["description"]
    schema = t.get("parameters") or t.get("inputSchema") or t.get("input_schema") or t.get("json_schema")
    if schema is not None:
        fn["parameters"] = json_deep_loads(schema)
    if not fn["name"]:
        raise ValueError("a recorded tool definition has no name")
    return {"type": "function", "function": fn}
