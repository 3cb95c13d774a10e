"""Writing Markdown that renders as written on GitHub, whatever the untrusted text holds.

Outputs quoted as evidence may contain backticks, pipes, HTML, headings or a fence of their own:
they go into a fence longer than any run of backticks inside them; table cells are escaped (pipes,
newlines, markup characters); nothing untrusted is ever emitted as live Markdown or HTML.
"""

from __future__ import annotations

import re

from oncall.safe_text import safe_text

_CELL_ESCAPE = re.compile(r"([\\`*_\[\]<>|#~])")


def fence(text: str, info: str = "text") -> str:
    """A fenced block that `text` cannot close: longer than its longest backtick run (at least 3)."""
    body = safe_text(text or "")
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    if not body.endswith("\n"):
        body += "\n"
    return f"{ticks}{info}\n{body}{ticks}"


def cell(value: object, max_len: int = 200) -> str:
    """A table cell: one line, markup characters escaped, pipes never split the row."""
    text = safe_text("" if value is None else value, multiline=False, max_len=max_len)
    return _CELL_ESCAPE.sub(r"\\\1", text).replace("\u2424", " ").replace("\u2409", " ").replace("\u240a", " ")


def code(value: object, max_len: int = 300) -> str:
    """Inline code holding any text (a filter, a command): a backtick string longer than any inside."""
    text = safe_text("" if value is None else value, multiline=False, max_len=max_len)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(v if isinstance(v, Raw) else cell(v) for v in r) + " |")
    return "\n".join(out)


class Raw(str):
    """Already-safe Markdown for a table cell (inline code built by code())."""


def mermaid_label(text: str, max_len: int = 60) -> str:
    """A Mermaid gantt task or section name: no ':' (it separates the task's data), '#', ';' or line
    breaks, and no characters Mermaid reads as syntax."""
    s = safe_text(text or "", multiline=False, max_len=max_len)
    s = re.sub(r"[:#;,\[\]{}()<>\"'`|\\]", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    return s or "entry"
