"""How the demo's models answer a chat request: the generator's own answers (oncall/demo.py), so a
replay against the demo's targets sees the incident's behaviour, not a canned string.

Deterministic per demo seed and input: the answer comes from a random stream keyed by the seed, the
snapshot and the request's messages. The k-th time one input is asked it takes the k-th draw, so
`--repeat` sees the generator's own noise (the odd refusal, which agreeable opening, the 1 % of
truncated JSON) while the same run against a fresh server answers the same.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from oncall import demo

# What each model name the demo knows answers like. A name it does not know answers like the old
# snapshot (the behaviour before the incident), under its own name.
CURRENT_ALIASES = ("gpt-4o", "gpt-4o-latest", "chatgpt-4o-latest")


@dataclass(frozen=True)
class Reply:
    content: str
    model: str  # the served model, as the provider reports it
    input_tokens: int
    output_tokens: int
    finish_reason: str = "stop"
    latency_s: float = 0.0  # how long the snapshot takes to answer (the generator's latency model)


def served_model(model: str) -> str:
    """The dated model that answers a request for `model` (`openai/gpt-4o` → the new snapshot)."""
    bare = model.split("/", 1)[1] if "/" in model else model
    if bare in CURRENT_ALIASES:
        return demo.NEW_SNAPSHOT
    return bare


def text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or p.get("content") or "") for p in content if isinstance(p, dict))
    return ""


def _rng(seed: int, served: str, messages: list[dict[str, Any]], draw: int) -> random.Random:
    key = json.dumps([seed, served, [[m.get("role"), text_of(m.get("content"))] for m in messages], draw],
                     ensure_ascii=False, separators=(",", ":"))
    return random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big"))


def input_key(served: str, messages: list[dict[str, Any]]) -> str:
    """What counts as 'the same input' for the draw counter."""
    key = json.dumps([served, [[m.get("role"), text_of(m.get("content"))] for m in messages]], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _document_patterns() -> list[re.Pattern[str]]:
    """The extract documents the generator writes, as patterns (built from its own templates)."""
    out = []
    for template in demo.DOCS:
        rx = re.escape(template)
        for name, part in (("n", r"(?P<n>\d+)"), ("d", r"(?P<d>\d{4}-\d{2}-\d{2})"), ("a", r"(?P<a>\d+(?:\.\d+)?)")):
            rx = rx.replace(re.escape("{" + name + "}"), part)
        out.append(re.compile(rx))
    return out


_DOCUMENTS = _document_patterns()
_ARTICLE_ID = re.compile(r"^\[(ha-\d+)\]", re.M)  # help-center's articles in its system prompt, in order


def answer(seed: int, model: str, messages: list[dict[str, Any]], draw: int = 0,
           max_tokens: int | None = None) -> Reply:
    """The answer the demo's `model` gives to `messages` (OpenAI chat format), the `draw`-th time."""
    served = served_model(model)
    new = served == demo.NEW_SNAPSHOT
    rng = _rng(seed, served, messages, draw)
    system = next((text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")), "")
    user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    if system.startswith(demo.SYSTEM_EXTRACT[:40]):
        content = _extract(user, new, rng)
    elif system.startswith(demo.SYSTEM_HELP[:40]):  # help-center: answers from the articles it was sent
        content = demo.help_reply(user, _ARTICLE_ID.findall(system.split("Articles:", 1)[-1]))
    elif system.startswith(demo.SYSTEM_SUMMARIZE[:30]):
        content = demo.summarize_reply(user) if user else "There is no article to summarize."
    else:  # support-bot, with any version of its system prompt
        known = user in demo.QUESTIONS
        base = demo.ANSWERS[demo.QUESTIONS.index(user)] if known else \
            "I don't have an answer to that yet; I have passed your question to a human agent."
        content = demo.support_reply(base, new, rng)
    in_chars = sum(len(text_of(m.get("content"))) for m in messages)
    input_tokens, output_tokens = demo.token_counts(in_chars, content, rng)
    finish = "stop"
    if max_tokens is not None and output_tokens > max_tokens:
        content, output_tokens, finish = content[:max(0, max_tokens) * 4], max_tokens, "length"
    return Reply(content, served, input_tokens, output_tokens, finish,
                 demo.latency_seconds(input_tokens, output_tokens, rng))


def _extract(document: str, new: bool, rng: random.Random) -> str:
    for rx in _DOCUMENTS:
        m = rx.search(document)
        if m:
            return demo.extract_reply(m.group("n"), float(m.group("a")), new, rng.random())
    return json.dumps({"order_id": None, "amount": None, "currency": None, "status": None})
