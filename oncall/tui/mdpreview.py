"""The postmortem preview's Markdown, rendered for reading: headings without their `#`, tables as
aligned columns, emphasis and code spans styled, backslash escapes resolved (`rate\\_limit` reads
`rate_limit`), lists with bullets, fenced blocks shown exactly as written.

It reads only the few constructs the draft writer emits (oncall/postmortem/draft.py), one line at a
time, and builds rich Text from plain strings with styles at offsets: no Markdown library and no
Rich markup parser ever sees the draft, so an output quoted in it (untrusted text) stays text. The
draft must already have passed safe_text.
"""

from __future__ import annotations

import re
import string

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

PLAIN = Style()
H1 = Style(bold=True, underline=True)
H2 = Style(bold=True, color="cyan")
H3 = Style(bold=True)
TABLE_HEAD = Style(bold=True)
DIM = Style(dim=True)
QUOTE = Style(italic=True)
TO_WRITE = Style(italic=True, color="yellow")
CODE = Style(color="green")
BOLD = Style(bold=True)
ITALIC = Style(italic=True)
CELL_MAX = 24
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_RULE = re.compile(r"\|(\s*:?-+:?\s*\|)+\s*")
_PUNCT = set(string.punctuation)


def inline(src: str, style: Style = PLAIN) -> Text:
    """One line's inline Markdown as Text: `\\x` escapes, `code` spans (literal inside), **bold**, *italic*."""
    out = Text(style=style)
    bold = italic = False
    i, n = 0, len(src)
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append("".join(buf), Style.combine([PLAIN] + [s for s, on in ((BOLD, bold), (ITALIC, italic)) if on]))
            buf.clear()

    while i < n:
        c = src[i]
        if c == "\\" and i + 1 < n and src[i + 1] in _PUNCT:
            buf.append(src[i + 1])
            i += 2
        elif c == "`":
            run = len(src[i:]) - len(src[i:].lstrip("`"))
            end = src.find("`" * run, i + run)
            while end != -1 and end + run < n and src[end + run] == "`":  # a longer run does not close it
                end = src.find("`" * run, end + run + 1)
            if end == -1:
                buf.append("`" * run)
                i += run
                continue
            code = src[i + run:end]
            if len(code) > 1 and code[0] == code[-1] == " " and code.strip():
                code = code[1:-1]
            flush()
            out.append(code, CODE)
            i = end + run
        elif src.startswith("**", i):
            flush()
            bold = not bold
            i += 2
        elif c == "*" and (italic or (i + 1 < n and src[i + 1] != " ")):
            flush()
            italic = not italic
            i += 1
        else:
            buf.append(c)
            i += 1
    flush()
    return out


def _cells(row: str) -> list[str]:
    """A table row's cells: split at `|` outside code spans and escapes."""
    cells, cur, i, code = [], [], 0, 0
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            cur.append(body[i:i + 2])
            i += 2
            continue
        if c == "`":
            run = len(body[i:]) - len(body[i:].lstrip("`"))
            code = 0 if code == run else (run if code == 0 else code)
            cur.append("`" * run)
            i += run
            continue
        if c == "|" and not code:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        cells.append("".join(cur).strip())
    return cells


def _table(rows: list[str]) -> list[tuple[Text, Style]]:
    """A pipe table as aligned columns: the header bold, the rule a line, cells separated by │."""
    parsed = [None if _RULE.fullmatch(r) else [inline(c) for c in _cells(r)] for r in rows]
    ncols = max((len(p) for p in parsed if p is not None), default=0)
    # A long cell (a cause's summary) is not padded past CELL_MAX: the short columns stay aligned and
    # the rule stays one line at 80 columns.
    widths = [min(CELL_MAX, max((cell_len(p[j].plain) for p in parsed if p is not None and j < len(p)), default=0))
              for j in range(ncols)]
    out: list[tuple[Text, Style]] = []
    for k, p in enumerate(parsed):
        if p is None:
            out.append((Text("─┼─".join("─" * w for w in widths), style=DIM), DIM))
            continue
        head = k + 1 < len(parsed) and parsed[k + 1] is None
        line = Text(style=TABLE_HEAD if head else PLAIN)
        for j in range(ncols):
            cell = p[j] if j < len(p) else Text("")
            if j:
                line.append(" │ ", DIM)
            line.append_text(cell)
            if j < ncols - 1:
                line.append(" " * max(0, widths[j] - cell_len(cell.plain)))
        out.append((line, TABLE_HEAD if head else PLAIN))
    return out


def render(lines: list[str]) -> list[tuple[Text, Style]]:
    """(display text, the line's style) per source line: the style says what the line is (n/N find
    the headings by it)."""
    out: list[tuple[Text, Style]] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence is not None:  # inside a fence: exactly as written, never styled
            s = line.strip()
            if s and set(s) == {fence[0]} and len(s) >= len(fence) and len(line) - len(line.lstrip(" ")) <= 3:
                fence = None
                out.append((Text(line, style=DIM), DIM))
            else:
                out.append((Text(line), PLAIN))
            i += 1
            continue
        m = _FENCE.match(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            fence = m.group(1)
            out.append((Text(line, style=DIM), DIM))
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out += _table(lines[i:j])
            i = j
            continue
        elif line.startswith("# "):
            out.append((inline(line[2:], H1), H1))
        elif line.startswith("## "):
            out.append((inline(line[3:], H2), H2))
        elif line.startswith(("### ", "#### ")):
            out.append((inline(line.split(" ", 1)[1], H3), H3))
        elif line.startswith(">"):
            style = TO_WRITE if "✍" in line else QUOTE
            out.append((Text("▌ ", style=DIM) + inline(line[1:].lstrip(), style), style))
        elif re.match(r"^(\s*)- \[( |x)\] ", line):
            lead, rest = line.split("- [", 1)
            box = "☑ " if rest.startswith("x") else "☐ "
            out.append((Text(lead + box) + inline(rest[3:]), PLAIN))
        elif re.match(r"^\s*[-*] ", line):
            lead = line[: len(line) - len(line.lstrip())]
            out.append((Text(lead + "• ") + inline(line.lstrip()[2:]), PLAIN))
        else:
            out.append((inline(line), PLAIN))
        i += 1
    return out
