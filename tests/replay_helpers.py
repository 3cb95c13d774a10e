"""Shared pieces for the replay tests: an incident built from real request/response logs, and a suite
on disk that points at the loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest.loader import load_paths
from oncall.store import open_db


def record(i: int, question: str, answer: str, *, model: str = "gpt-4o", served: str = "gpt-4o-2024-08-06",
           system: str = "You are a helpful assistant.", extra_request: dict[str, Any] | None = None,
           messages: list[dict[str, Any]] | None = None, answer_message: dict[str, Any] | None = None,
           feature: str = "support", prompt_name: str | None = None) -> dict[str, Any]:
    """One request/response log record (the litellm importer's plain request/response shape)."""
    msgs = messages if messages is not None else [{"role": "system", "content": system},
                                                 {"role": "user", "content": question}]
    msg = answer_message or {"role": "assistant", "content": answer}
    finish = "tool_calls" if msg.get("tool_calls") else "stop"
    return {
        "id": f"req-{i:05d}", "timestamp": 1_767_225_600 + i, "latency_ms": 800 + i % 50,
        "metadata": {"tenant": "acme", "feature": feature, "prompt_name": prompt_name or feature},
        "request": {"model": model, "messages": msgs, "temperature": 0.2, "max_tokens": 300,
                    **(extra_request or {})},
        "response": {"id": f"chatcmpl-orig{i:05d}", "object": "chat.completion", "created": 1_767_225_600 + i,
                     "model": served, "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                     "usage": {"prompt_tokens": 20 + len(question.split()), "completion_tokens": len(answer.split()) + 1,
                               "total_tokens": 21 + len(question.split()) + len(answer.split())}},
    }


def build_incident(tmp: Path, records: list[dict[str, Any]], name: str = "incident.duckdb") -> Path:
    logs = tmp / "logs.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in records))
    path = tmp / name
    with open_db(path) as db:
        report = load_paths(db, [str(logs)])
        assert not report.failed, report.problems
    return path


def write_suite(tmp: Path, base_url: str, *, extra: str = "", stream: bool = False, concurrency: int = 4,
                key_env: str = "ONCALL_TEST_KEY", judge: bool = False, read_timeout: float = 5,
                max_attempts: int = 4, confirm_above: float = 1000) -> Path:
    suite = tmp / "suite"
    (suite / "prompts").mkdir(parents=True, exist_ok=True)
    text = f"""[settings]
confirm_above = {confirm_above}
max_attempts = {max_attempts}
backoff_base = 0.01

[targets.loop]
base_url = "{base_url}"
model = "gpt-4o"
api_key_env = "{key_env}"
price_in = 2.5
price_out = 10
max_concurrency = {concurrency}
stream = {str(stream).lower()}
connect_timeout = 5
read_timeout = {read_timeout}
"""
    if judge:
        text += f"""
[targets.grader]
base_url = "{base_url}"
model = "gpt-4o-mini"
api_key_env = "{key_env}"
judge = true
"""
    (suite / "targets.toml").write_text(text + extra)
    (suite / "rubric.md").write_text("Same facts and format: same. Otherwise better or worse.")
    return suite
