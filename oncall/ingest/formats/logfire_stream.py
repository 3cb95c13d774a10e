"""Logfire's streamed calls: one call written as a request span and a log, merged back into one row.

`logfire.instrument_openai` (pydantic/logfire `logfire/_internal/integrations/llm_providers/
llm_provider.py`) ends the `Chat Completion with …` span when the stream object is returned (no
output, no usage, no response id) and writes the answer later as a log, `streaming response from …
took …s` (`logfire.span_type = log`, start = end = when the stream was consumed, a sibling of the
request span), carrying the output messages, usage, response id and served model. Both say
`gen_ai.operation.name = chat`: read apart they are two calls, one without an answer and one with
no duration. Here the log's answer is folded into the request span's row (its end becomes the
log's time) and the log stays as an `event` row pointing at it (`meta.oncall.merged_into`).
"""

from __future__ import annotations

from typing import Any

SCOPE_PREFIX = "logfire"
_ANSWER_COLUMNS = ("output_messages", "output_text", "tool_calls", "finish_reason", "response_id", "served_model",
                   "input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "cost")


def is_stream_log(row: dict[str, Any]) -> bool:
    attrs = row.get("attributes") or {}
    return attrs.get("logfire.span_type") == "log" and str(attrs.get("logfire.msg_template") or "").startswith(
        "streaming response")


def is_unanswered_request(row: dict[str, Any]) -> bool:
    attrs = row.get("attributes") or {}
    return (row.get("kind") == "llm" and attrs.get("logfire.span_type") == "span" and row.get("status") != "error"
            and not row.get("response_id") and not row.get("output_messages") and row.get("output_tokens") is None)


def clear_unanswered_served(row: dict[str, Any]) -> None:
    """A failed call's `gen_ai.response.model` is the requested name Logfire copies there: nothing served it."""
    if row.get("status") == "error" and not row.get("response_id") and not row.get("output_messages"):
        row.pop("served_model", None)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("trace_id"), row.get("parent_id"), str(row.get("input_messages")))


class StreamMerger:
    """Holds unanswered request spans and stream logs of one file until their partner arrives."""

    def __init__(self, add: Any) -> None:
        self.add = add
        self.requests: dict[tuple[Any, ...], list[tuple[dict[str, Any], int | None]]] = {}
        self.logs: dict[tuple[Any, ...], list[tuple[dict[str, Any], int | None]]] = {}

    def offer(self, row: dict[str, Any], line: int | None) -> bool:
        """True when the row was taken (held, or merged and added); False: add it as it is."""
        if is_stream_log(row):
            waiting = self.requests.get(_key(row))
            if waiting:
                self._merge(waiting.pop(0), (row, line))
            else:
                self.logs.setdefault(_key(row), []).append((row, line))
            return True
        if is_unanswered_request(row):
            waiting = self.logs.get(_key(row))
            if waiting:
                self._merge((row, line), waiting.pop(0))
            else:
                self.requests.setdefault(_key(row), []).append((row, line))
            return True
        return False

    def _merge(self, request: tuple[dict[str, Any], int | None], log: tuple[dict[str, Any], int | None]) -> None:
        req, req_line = request
        lg, lg_line = log
        for col in _ANSWER_COLUMNS:
            if lg.get(col) is not None:
                req[col] = lg[col]
        end = lg.get("end_time") or lg.get("start_time")
        if end is not None and req.get("start_time") is not None and end >= req["start_time"]:
            req["end_time"] = end
            req["latency_ms"] = (end - req["start_time"]) / 1000.0
        req["attributes"]["oncall.stream_log"] = lg.get("span_id")
        lg["kind"] = "event"
        lg["attributes"]["oncall.merged_into"] = req.get("span_id")
        for col in _ANSWER_COLUMNS:
            lg.pop(col, None)
        self.add(req, req_line)
        self.add(lg, lg_line)

    def finish(self) -> None:
        for held in (self.requests, self.logs):
            for rows in held.values():
                for row, line in rows:
                    self.add(row, line)
            held.clear()
