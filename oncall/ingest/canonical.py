"""Small normalisers every importer shares: error classes, finish reasons, span kinds, provider names."""

from __future__ import annotations

import re
from typing import Any

# Error classes the responder filters and compares on (design §4 `error=`, issue: compare by class).
_RATE_LIMIT = re.compile(r"rate.?limit|too many requests|\b429\b|ratelimit|throttl", re.IGNORECASE)
_QUOTA = re.compile(r"insufficient_quota|quota|billing|exceeded your current|credit balance", re.IGNORECASE)
_TIMEOUT = re.compile(r"time.?out|timed out|deadline exceeded|\b408\b|\b504\b", re.IGNORECASE)
_CONTENT = re.compile(r"content.?filter|content_policy|safety|moderation|responsible ?ai", re.IGNORECASE)
_SERVER = re.compile(r"\b5\d\d\b|internal server error|service unavailable|bad gateway|overloaded|"
                     r"server error|api ?connection", re.IGNORECASE)


# The closed vocabularies the filter language checks (`error=`, `status=`): every importer's error
# class comes from classify_error (or generic.py's SQL twin of it) and every status from
# normalize_status (generic: ok/error), so a value outside these can match nothing.
ERROR_CLASSES = ("rate_limit", "quota", "server", "timeout", "content_filter", "client", "other")
STATUSES = ("ok", "error", "unset")


def classify_error(http_status: int | None, error_type: Any = None, message: Any = None) -> str | None:
    """rate_limit | quota | server | timeout | content_filter | client | other, or None if no error info."""
    text = " ".join(str(x) for x in (error_type, message) if x not in (None, ""))
    if http_status is None and not text:
        return None
    if _QUOTA.search(text):
        return "quota"
    if http_status == 429 or _RATE_LIMIT.search(text):
        return "rate_limit"
    if http_status in (408, 504) or _TIMEOUT.search(text):
        return "timeout"
    if _CONTENT.search(text):
        return "content_filter"
    if (http_status is not None and 500 <= http_status < 600) or _SERVER.search(text):
        return "server"
    if http_status is not None and 400 <= http_status < 500:
        return "client"
    return "other"


def http_status_from(*values: Any) -> int | None:
    """An HTTP status from an int, a numeric string ("429") or text containing one ("Error code: 429",
    pydantic-ai's "status_code: 429")."""
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, int) and 100 <= v < 600:
            return v
        if isinstance(v, str):
            s = v.strip()
            if re.fullmatch(r"[1-5]\d\d", s):
                return int(s)
            m = re.search(r"(?:error code|status(?:[ _]code)?|http)[: =]*([1-5]\d\d)\b", s, re.IGNORECASE)
            if m:
                return int(m.group(1))
    return None


_FINISH = {
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "complete": "stop", "eos": "stop",
    "length": "length", "max_tokens": "length", "max_output_tokens": "length",
    "tool_calls": "tool_calls", "tool_call": "tool_calls", "tool-calls": "tool_calls", "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter", "content-filter": "content_filter", "safety": "content_filter",
    "refusal": "content_filter",
    "error": "error", "other": "other", "unknown": "other",
}


def normalize_finish_reason(value: Any) -> str | None:
    """stop | length | tool_calls | content_filter | error | other; first of a list."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if v not in (None, "")), None)
        if value is None:
            return None
    s = str(value).strip().strip('"').lower()
    if s.startswith("[") and s.endswith("]"):
        s = s.strip("[]").split(",")[0].strip().strip('"\'')
    if not s:
        return None
    return _FINISH.get(s, s)


_KINDS = {
    # LLM calls. GenAI operation names (chat, text_completion, generate_content, generate), Semantic
    # Kernel's dotted ones, Langfuse GENERATION, MLflow LLM/CHAT_MODEL, Genkit's `model` actions,
    # the OpenAI Agents SDK's `generation` and `response` spans.
    "llm": "llm", "generation": "llm", "chat": "llm", "text_completion": "llm", "generate_content": "llm",
    "generate": "llm", "completion": "llm", "chat_model": "llm", "model": "llm", "response": "llm",
    "chat.completions": "llm", "text.completions": "llm", "chat.streaming_completions": "llm",
    "text.streaming_completions": "llm", "responses": "llm",
    "embedding": "embedding", "embeddings": "embedding", "embedder": "embedding",
    "tool": "tool", "execute_tool": "tool", "function": "tool",
    "agent": "agent", "invoke_agent": "agent", "create_agent": "agent",
    "chain": "chain", "workflow": "chain", "invoke_workflow": "chain", "task": "chain", "flow": "chain",
    "parser": "chain",
    "retriever": "retriever", "retrieval": "retriever", "retrieve": "retriever", "vector_db_retrieve": "retriever",
    "reranker": "reranker", "rerank": "reranker", "guardrail": "guardrail", "evaluator": "evaluator",
    "eval": "evaluator", "score": "evaluator", "prompt": "prompt",
    "span": "span", "event": "event", "unknown": "span", "general": "span", "custom": "span",
    "action": "span", "util": "span",
}

# The kinds a dialect can name; an operation name outside them (an invented one) is no verdict.
KINDS = frozenset(_KINDS.values())


def kind_spellings(kind: str) -> frozenset[str]:
    """Every lower-case spelling normalize_kind() reads as `kind` (for engines filtering in their own SQL)."""
    return frozenset({s for s, k in _KINDS.items() if k == kind} | {kind})


def normalize_kind(value: Any) -> str | None:
    """llm | embedding | tool | agent | chain | retriever | reranker | guardrail | evaluator | span | …

    Values may arrive JSON-encoded (MLflow writes every attribute as JSON: `"LLM"` in quotes)."""
    if value is None:
        return None
    s = str(value).strip().strip('"').strip().lower()
    return _KINDS.get(s, s or None)


def call_kind(*, kind: Any = None, operation: Any = None, has_model: bool = False,
              has_usage: bool = False) -> str | None:
    """The one rule for what a span is, and so whether it counts as an LLM call (docs/trace-formats.md).

    1. A kind the export states decides: an envelope's kind (Phoenix `span_kind`, Langfuse's
       observation type, LangSmith's run type, Braintrust/Opik span types, the Agents SDK's span
       data type) or a dialect's kind attribute (`openinference.span.kind`, `traceloop.span.kind`,
       `langfuse.observation.type`, `mlflow.spanType`, Genkit's `genkit:metadata:subtype`).
    2. Else the operation name (`gen_ai.operation.name`, OpenLLMetry's `llm.request.type`) decides
       when the vocabulary knows it (`chat`, `generate_content`, `invoke_agent`, `embeddings`, …).
    3. Else a span that names a model AND carries token usage is an LLM call. A model alone (an
       agent's or workflow's configuration) or usage alone (a roll-up of its children) is not.
    None when nothing says: the importer's default (`span`) applies.
    """
    k = normalize_kind(kind)
    if k:
        return k
    op = normalize_kind(operation)
    if op in KINDS:
        return op
    if has_model and has_usage:
        return "llm"
    return None


_OTLP_SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def normalize_span_kind(value: Any) -> str | None:
    """OTLP span kind as a lower-case name from an int, `SPAN_KIND_CLIENT`, or `SpanKind.CLIENT`."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _OTLP_SPAN_KINDS.get(value)
    s = str(value).strip()
    if s.isdigit():
        return _OTLP_SPAN_KINDS.get(int(s))
    s = s.rsplit(".", 1)[-1].upper().removeprefix("SPAN_KIND_")
    return s.lower() or None


def normalize_status(value: Any) -> str:
    """ok | error | unset from OTLP ints/names, Phoenix/LangSmith strings, Langfuse levels."""
    if value is None:
        return "unset"
    if isinstance(value, int) and not isinstance(value, bool):
        return {0: "unset", 1: "ok", 2: "error"}.get(value, "unset")
    s = str(value).strip().upper().removeprefix("STATUS_CODE_").removeprefix("STATUSCODE.")
    if s in ("OK", "SUCCESS", "DEFAULT", "DEBUG", "1"):
        return "ok"
    if s in ("ERROR", "FAILURE", "FAILED", "2"):
        return "error"
    return "unset"


_PROVIDERS = {"az.ai.openai": "azure.ai.openai", "vertex_ai": "gcp.vertex_ai", "openai.responses": "openai",
              "openai.chat": "openai", "openai": "openai"}


def provider_spellings(provider: str) -> frozenset[str]:
    """Every lower-case spelling normalize_provider() reads as `provider`."""
    low = provider.strip().lower()
    return frozenset({s for s, p in _PROVIDERS.items() if p == low} | {low})


def normalize_provider(value: Any) -> str | None:
    if value in (None, ""):
        return None
    s = str(value).strip()
    low = s.lower()
    return _PROVIDERS.get(low, low)
