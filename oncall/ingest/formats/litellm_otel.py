"""What LiteLLM's own `otel` callback writes, beyond the gen_ai.* keys mapping.py reads.

Three habits of that callback (litellm 1.110, read from its source and from what it exported in
tests/test_real_litellm.py) need more than one span at a time, so the OTLP readers call these
through `otlp.SpanLinks`:

- Inside a caller's span (an application span is current), LiteLLM makes no span per call: it
  writes each call's attributes onto the caller's span, so every call overwrites the one before,
  and hangs a `raw_gen_ai_request` child under it per call. That child holds the call as Python
  repr strings `llm.<provider>.messages`, `.choices`, `.usage`, `.id`, `.model` (the request's
  `model` key overwritten by the response's, so the requested model is not there). Such a child
  becomes the LLM row of its call; the caller's span keeps only the last call.
- Without a caller's span it makes a `litellm_request` span per call, with the same child; there
  the child duplicates its parent, which stays the LLM row, and a tool call that is only in the
  child's `choices` (LiteLLM writes an empty `gen_ai.output.messages` for it) is folded into it.
- A failed call leaves the caller's span with the earlier calls' response attributes (output,
  tokens, response model): those are not the failed call's and are cleared.
Python repr strings are read with `ast.literal_eval` (literals only, never evaluated as code).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from oncall.ingest.canonical import normalize_provider
from oncall.ingest.records import completion_columns, input_columns

SCOPE = "litellm"
REQUEST_SPAN = "litellm_request"  # LiteLLM's own span per call (when no caller's span is current)
_RAW_KEY = re.compile(r"^llm\.([a-z0-9_]+)\.(messages|choices)$")
_NOT_PROVIDERS = {"request", "usage", "token_count", "input_messages", "output_messages", "prompts"}
# Response-side columns: on a failed call they can only be left over from an earlier call.
RESPONSE_COLUMNS = ("output_messages", "output_text", "tool_calls", "served_model", "input_tokens",
                    "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "finish_reason", "cost")


def py_literal(value: Any) -> Any:
    if not isinstance(value, str) or len(value) > 1_000_000:
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return value


def raw_provider(attrs: dict[str, Any]) -> str | None:
    """The provider prefix of a raw_gen_ai_request span's `llm.<provider>.*` keys, if it is one."""
    for k in attrs:
        m = _RAW_KEY.match(k)
        if m and m.group(1) not in _NOT_PROVIDERS:
            return m.group(1)
    return None


def raw_request_columns(attrs: dict[str, Any], provider: str) -> dict[str, Any]:
    """The call a raw_gen_ai_request span describes, as canonical columns (None values left out)."""
    p = f"llm.{provider}."
    out: dict[str, Any] = {"kind": "llm", "provider": normalize_provider(provider)}
    messages = py_literal(attrs.get(p + "messages"))
    if isinstance(messages, list):
        out.update(input_columns(messages))
    response = {k: py_literal(attrs.get(p + k)) for k in ("id", "model", "choices", "usage", "object")}
    if isinstance(response["choices"], list):
        out.update(completion_columns({k: v for k, v in response.items() if v is not None}))
    return {k: v for k, v in out.items() if v is not None}


def clear_stale_response(row: dict[str, Any], attrs: dict[str, Any]) -> None:
    """A failed LiteLLM call written onto a span that earlier calls wrote to: no response of its own."""
    if attrs.get("litellm.call_id") is not None and attrs.get("error.type") not in (None, ""):
        for col in RESPONSE_COLUMNS:
            row.pop(col, None)
