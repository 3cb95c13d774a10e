"""What a replay does with the documents a retrieval gave the original call: it sends them again.

A replay sends each request's recorded messages. For a call fed by a retrieval, the documents it
was given are in those messages (a RAG app pastes them into the prompt), so the replay answers from
the same context the original saw: the index is not searched again, and a fixed index does not
change what a replay of a bad answer is given. This module checks that the documents are really in
the messages (each document's excerpt against the call's recorded input) and says so in words, for
the plan and the summary.
"""

from __future__ import annotations

import json
import re
from typing import Any

PROBE_CHARS = 60  # the start of a document's excerpt looked for in the call's messages
_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _probe(doc: dict[str, Any]) -> str | None:
    content = doc.get("content")
    if not isinstance(content, str):
        return None
    probe = _norm(content.rstrip("…"))[:PROBE_CHARS]
    return probe or None


class ContextFold:
    """Folds the calls of a replay plan: for those a retrieval fed, how many, how many from an empty
    retrieval, the documents they were given, how many of those are in the messages the replay will
    send (after a prompt variant replaced the system prompt, they may not be), the indexes."""

    def __init__(self) -> None:
        self.fed = self.empty = self.docs = self.sent = self.no_text = 0
        self.indexes: dict[str, int] = {}

    def add(self, row: dict[str, Any], sent_messages: Any) -> None:
        """row: the call's span row (retrieval columns); sent_messages: what the replay sends."""
        if row.get("retrieval_span") is None and row.get("retrieved") is None:
            return
        self.fed += 1
        self.empty += row.get("retrieved") == 0
        if row.get("retrieval_index"):
            self.indexes[row["retrieval_index"]] = self.indexes.get(row["retrieval_index"], 0) + 1
        given = row.get("retrieved_docs")
        if isinstance(given, str):
            try:
                given = json.loads(given)
            except ValueError:
                given = []
        text = _norm(_decoded(sent_messages))
        for doc in given if isinstance(given, list) else []:
            probe = _probe(doc) if isinstance(doc, dict) else None
            self.docs += 1
            if probe is None:
                self.no_text += 1
            elif probe in text:
                self.sent += 1

    def result(self) -> dict[str, Any] | None:
        """None when no call was fed by a retrieval (nothing to say)."""
        if not self.fed:
            return None
        out: dict[str, Any] = {
            "fed_by_retrieval": self.fed, "empty_retrieval": self.empty, "documents": self.docs,
            "documents_sent": self.sent, "documents_without_text": self.no_text,
            "indexes": dict(sorted(self.indexes.items(), key=lambda kv: -kv[1])),
            # every document with text is in what the replay sends: it answers from the original context
            "complete": self.sent == self.docs - self.no_text}
        out["note"] = context_note(out)
        return out


def _decoded(messages: Any) -> str:
    """Every string inside messages (a list of message dicts, or their JSON), joined."""
    if not messages:
        return ""
    value = messages
    if isinstance(messages, str):
        try:
            value = json.loads(messages)
        except ValueError:
            return messages
    out: list[str] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return " ".join(reversed(out))


def context_note(c: dict[str, Any]) -> str:
    """The one sentence the plan and the summary print."""
    idx = ", ".join(c["indexes"]) if c["indexes"] else "an unnamed index"
    note = (f"context: {c['fed_by_retrieval']} request(s) were fed by a retrieval ({idx}); the replay sends their "
            "recorded messages, so each is answered from the documents the original was given — the index is not "
            "searched again")
    if c["empty_retrieval"]:
        note += f"; {c['empty_retrieval']} had an empty retrieval and are replayed with no document, as they were"
    checked = c["documents"] - c["documents_without_text"]
    missing = checked - c["documents_sent"]
    if checked:
        note += f"; {c['documents_sent']} of {checked} documents are in the messages it sends"
    if missing:
        note += (f" — {missing} are not (a prompt variant replaced the prompt that held them, or the app passed "
                 "them another way): those requests are not answered from their original context")
    return note
