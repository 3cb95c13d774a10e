"""Chat messages in every shape exports use, normalised to the OpenAI chat format.

Canonical message (what `input_messages`/`output_messages` hold and replay sends):
    {"role", "content": str | None, "tool_calls"?: [{"id", "type": "function",
     "function": {"name", "arguments": <JSON string>}}], "tool_call_id"?, "name"?}

Shapes accepted (trace-formats.md §8.7): OpenAI (content string or parts list, `tool_calls`, legacy
`function_call`), semconv "parts" (`{role, parts:[{type:text|tool_call|tool_call_response|…}]}`),
Vercel AI SDK content parts (`text`, `tool-call`, `tool-result`), Anthropic blocks (`tool_use`,
`tool_result`), parts named by their key (Gemini `function_call`, Bedrock/Strands `toolUse`/`toolResult`,
Genkit `toolRequest`/`toolResponse`), GenAI G2 events (`gen_ai.*.message` bodies and `gen_ai.choice` with a nested
`message`), LangChain-style `{type: human|ai|system, content}`, and a plain string.
"""

from __future__ import annotations

import json
from typing import Any

from oncall.ingest.decode import json_deep_loads

ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant",
                 "developer": "system", "function": "tool"}
# G2 event names carry the role when the body does not.
_EVENT_ROLES = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
                "gen_ai.choice": "assistant"}


def canonical_role(value: Any) -> str:
    """One of system/user/assistant/tool; aliases mapped, anything unknown read as user."""
    role = str(value).strip().lower() if value not in (None, "") else "user"
    role = ROLE_ALIASES.get(role, role)
    return role if role in ("system", "user", "assistant", "tool") else "user"


def args_json(value: Any) -> str:
    """Tool-call arguments as a JSON string: OpenAI sends a string, semconv/Vercel send objects."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _text_of(value: Any) -> str | None:
    """Text of a content value: a string, or the text parts of a parts list joined by newlines."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [t for t in (_part_text(p) for p in value) if t is not None]
        return "\n".join(texts) if texts else None
    if isinstance(value, dict):
        t = _part_text(value)
        return t if t is not None else json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def content_text(value: Any) -> str | None:
    """A message content value as the canonical string (parts lists joined, objects as JSON)."""
    if value is None or isinstance(value, str):
        return value
    text = _text_of(value)
    return text if text is not None else json.dumps(value, ensure_ascii=False, default=str)


def _part_text(part: Any) -> str | None:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return None
    ptype = part.get("type")
    if ptype in (None, "text", "input_text", "output_text", "reasoning", "thinking"):
        for k in ("text", "content", "thinking"):
            if isinstance(part.get(k), str):
                return part[k]
    return None


def _tool_call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"id": None if id_ is None else str(id_), "type": "function",
            "function": {"name": None if name is None else str(name), "arguments": args_json(arguments)}}


def normalize_messages(value: Any) -> list[dict[str, Any]]:
    """Any message list (or one message, a `{messages: [...]}` wrapper, a plain string) as OpenAI messages."""
    value = json_deep_loads(value)
    if value is None or value == "" or value == [] or value == {}:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, dict):
        if isinstance(value.get("messages"), (list, str)) and "role" not in value:
            return normalize_messages(value["messages"])
        value = [value]
    if not isinstance(value, list):
        return [{"role": "user", "content": str(value)}]
    out: list[dict[str, Any]] = []
    for m in value:
        if isinstance(m, list):  # LangChain batches: [[msg, msg]]
            out.extend(normalize_messages(m))
        elif isinstance(m, dict):
            out.extend(_message(m))
        elif isinstance(m, str):
            out.append({"role": "user", "content": m})
    return out


def _message(m: dict[str, Any]) -> list[dict[str, Any]]:
    """One source message as one or more canonical messages (tool results split into one each)."""
    if isinstance(m.get("message"), dict) and "role" not in m:  # gen_ai.choice / OpenAI choice
        inner = dict(m["message"])
        inner.setdefault("role", "assistant")
        return _message(inner)
    role = canonical_role(m.get("role") or _EVENT_ROLES.get(str(m.get("event.name"))) or m.get("type"))
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []  # tool results carried as parts
    parts = m.get("parts") if isinstance(m.get("parts"), list) else None
    content = m.get("content")
    if parts is None and isinstance(content, list):
        parts = content
    if parts is not None:
        for p in parts:
            _collect_part(p, texts, calls, results)
    elif content is not None:
        t = content if isinstance(content, str) else _text_of(content)
        if t is not None:
            texts.append(t)
    raw_calls = m.get("tool_calls")
    for c in raw_calls if isinstance(raw_calls, list) else []:  # exports hold anything here; never raise
        if isinstance(c, dict):
            fn = c.get("function") if isinstance(c.get("function"), dict) else {}
            calls.append(_tool_call(c.get("id"), fn.get("name") or c.get("name"),
                                    fn.get("arguments") if fn else c.get("arguments")))
    fc = m.get("function_call")
    if isinstance(fc, dict):
        calls.append(_tool_call(None, fc.get("name"), fc.get("arguments")))
    if role == "tool" and calls and not results:
        role = "assistant"  # Koog labels the assistant's tool-call turn "tool"

    out: list[dict[str, Any]] = []
    if texts or calls or not results:
        msg: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
        if calls:
            msg["tool_calls"] = calls
        tcid = m.get("tool_call_id") or m.get("tool_use_id") or m.get("id") if role == "tool" else None
        if tcid is not None:
            msg["tool_call_id"] = str(tcid)
        if m.get("name") is not None and isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    out.extend(results)
    return out


def _keyed_part(p: dict[str, Any], texts: list[str], calls: list[dict[str, Any]],
                results: list[dict[str, Any]]) -> bool:
    """Parts named by their one key instead of a `type`: Gemini (`function_call`/`functionCall`,
    `function_response`, `thought`), Bedrock Converse as Strands writes it (`toolUse`, `toolResult`)
    and Genkit (`toolRequest`, `toolResponse`). True when the part was one of these."""
    if p.get("thought") is True:
        return True  # Gemini's thinking summary: not the answer
    for key in ("function_call", "functionCall", "toolUse", "toolRequest"):
        c = p.get(key)
        if isinstance(c, dict):
            calls.append(_tool_call(c.get("id") or c.get("toolUseId") or c.get("ref"), c.get("name"),
                                    c.get("args", c.get("input"))))
            return True
    for key in ("function_response", "functionResponse", "toolResult", "toolResponse"):
        r = p.get(key)
        if isinstance(r, dict):
            res = r.get("response", r.get("output", r.get("content")))
            if isinstance(res, list):  # Bedrock: [{"text": …} | {"json": …}]
                parts = [x.get("text") if isinstance(x, dict) and isinstance(x.get("text"), str)
                         else json.dumps(x.get("json", x) if isinstance(x, dict) else x, ensure_ascii=False,
                                         default=str) for x in res]
                text = "\n".join(parts)
            else:
                text = res if isinstance(res, str) else json.dumps(res, ensure_ascii=False, default=str)
            results.append({"role": "tool", "content": text,
                            "tool_call_id": str(r.get("id") or r.get("toolUseId") or r.get("ref") or r.get("name")
                                                or "")})
            return True
    return False


def _collect_part(p: Any, texts: list[str], calls: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    if isinstance(p, str):
        texts.append(p)
        return
    if not isinstance(p, dict):
        return
    if "type" not in p and _keyed_part(p, texts, calls, results):
        return
    ptype = str(p.get("type") or "text")
    if ptype in ("tool_call", "tool-call", "tool_use", "function_call"):
        calls.append(_tool_call(p.get("id") or p.get("toolCallId") or p.get("call_id"),
                                p.get("name") or p.get("toolName"),
                                p.get("arguments", p.get("args", p.get("input")))))
    elif ptype in ("tool_call_response", "tool-result", "tool_result", "function_call_output"):
        res = p.get("response", p.get("result", p.get("output", p.get("content"))))
        if isinstance(res, dict) and res.keys() == {"type", "value"}:
            res = res["value"]  # AI SDK ≥5: output {type: "json" | "text" | "error-text" | …, value}
        results.append({"role": "tool",
                        "content": res if isinstance(res, str) else _text_of(res) if isinstance(res, list)
                        else json.dumps(res, ensure_ascii=False, default=str),
                        "tool_call_id": str(p.get("id") or p.get("toolCallId") or p.get("tool_use_id")
                                            or p.get("call_id") or "")})
    else:
        t = _part_text(p)
        if t is not None:
            texts.append(t)


def tool_calls_of(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `tool_calls` column: [{id, name, arguments}] of every tool call in the given messages."""
    out = []
    for m in msgs:
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            out.append({"id": c.get("id"), "name": fn.get("name"), "arguments": fn.get("arguments")})
    return out


def messages_text(msgs: list[dict[str, Any]]) -> str:
    """The plain text of messages, one per line, with tool calls as `name(arguments)` for search."""
    lines: list[str] = []
    for m in msgs or []:
        c = m.get("content")
        if isinstance(c, str) and c:
            lines.append(c)
        for tc in m.get("tool_calls") or []:
            f = tc.get("function") or {}
            lines.append(f"{f.get('name')}({f.get('arguments')})")
    return "\n".join(lines)
