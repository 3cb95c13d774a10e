"""A strict reader for Node's `util.inspect` object literals (what `console.log`/`console.dir` print).

The OpenTelemetry JS `ConsoleSpanExporter` prints every span with `console.dir(info, {depth: 3})`:
not JSON but JavaScript-ish literals. This module reads exactly the syntax Node 18-22 emits
(lib/internal/util/inspect.js) and refuses anything else with the line and column, so a log line
that merely looks like an object is never half-read:

- strings in `'…'`, `"…"` (when the text has a `'`) or `` `…` `` (when it has both), with
  `\\n \\t \\b \\f \\r \\v \\0 \\' \\" \\\\ \\xHH \\uHHHH` escapes; long strings with newlines are
  printed as `'line\\n' +` pieces, which are joined; strings cut at `maxStringLength` end in
  `… N more characters`;
- keys bare when they are identifiers, quoted otherwise, or `[Symbol(desc)]`;
- numbers (`-0`, `1e+21`, `NaN`, `Infinity`), bigints (`12n`), `true`, `false`, `null`, `undefined`;
- `[Object]`, `[Array]`, `[ClassName]` past the depth limit, `[Circular *1]`, `<ref *1>`,
  `... N more items` past `maxArrayLength`, `<N empty items>` in sparse arrays;
- a class-name prefix (`Resource {`, `Map(2) {`, `Set(1) {`, `Uint8Array(2) [`,
  `[Object: null prototype] {`), Map entries `k => v`, `[Function: f]`, `[class X]`, `[Getter]`,
  boxed primitives (`[String: 'x']`), bare `Date` ISO strings and `/regex/flags`.

What the printer dropped cannot be read back: elided values come back as `Elided` (with what was
printed), and `Literal.elided` lists their paths so an importer can say what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class InspectSyntaxError(ValueError):
    """Text that is not a util.inspect literal; `line`/`column` are 1-based in the parsed text."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Elided:
    """A value Node did not print in full: `[Object]`, `[Circular *1]`, a cut string, …"""

    kind: str  # depth | circular | more-items | truncated-string | function | getter | empty-items
    text: str  # what was printed, e.g. "[Object]" or the first 10,000 characters of a string

    def __str__(self) -> str:
        return self.text


@dataclass
class Literal:
    value: Any
    end: int  # offset just past the literal in the text
    elided: list[str] = field(default_factory=list)  # dotted paths of Elided values


_IDENT = re.compile(r"[A-Za-z_$][A-Za-z_$0-9]*")
_NUMBER = re.compile(r"-?(?:Infinity|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?n?)")
_DATE = re.compile(r"\d{4,6}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_MORE_ITEMS = re.compile(r"\.\.\. (\d+) more items?")
_MORE_CHARS = re.compile(r"\.\.\. (\d+) more characters?")
_EMPTY = re.compile(r"<(\d+) empty items?>")
_REF = re.compile(r"<ref \*(\d+)>\s*")
# `[Object]`, `[Array]`, `[Resource]`, `[Circular *1]`, `[Function: x]`, `[class X extends Y]`,
# `[Getter]`, `[Getter/Setter]`, `[Object: null prototype]`, `[String: 'x']`: bracketed forms.
_BRACKET_WORD = re.compile(r"\[(Circular \*\d+|Getter/Setter|Getter|Setter|Object: null prototype|"
                           r"(?:Async|Generator|AsyncGenerator)?Function(?: \(anonymous\)|: [^\]\n]*)?|"
                           r"class [^\]\n]*|[A-Z][A-Za-z0-9_$]*)\]")
_BOXED = re.compile(r"\[(String|Number|Boolean|BigInt|Symbol): ")
# A class-name prefix before `{` or `[`: `Resource {`, `Map(2) {`, `Uint8Array(3) [`,
# `Object [Tag] {`, `ClassName [Object: null prototype] {`.
_PREFIX = re.compile(r"([A-Za-z_$][A-Za-z_$0-9.]*)(?:\((\d+)\))?(?: \[[^\]\n]+\])? (?=[{\[])")
_REGEXP = re.compile(r"/(?:[^/\\\n]|\\.)+/[dgimsuvy]*")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", "f": "\f", "r": "\r", "v": "\v", "0": "\0",
                   "'": "'", '"': '"', "`": "`", "\\": "\\"}
_WS = " \t\r\n"


def parse(text: str, pos: int = 0) -> Literal:
    """Read one literal starting at `pos` (leading whitespace allowed)."""
    p = _Parser(text)
    p.pos = pos
    p.skip_ws()
    value = p.value("")
    return Literal(value, p.pos, p.elided)


def loads(text: str) -> Any:
    """The one literal that makes up `text` (nothing but whitespace may follow)."""
    lit = parse(text)
    p = _Parser(text)
    p.pos = lit.end
    p.skip_ws()
    if p.pos < len(text):
        p.fail("unexpected text after the literal")
    return lit.value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.elided: list[str] = []

    # -- helpers -----------------------------------------------------------------------------
    def fail(self, message: str, at: int | None = None) -> None:
        at = self.pos if at is None else at
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        near = self.text[at:at + 20].split("\n", 1)[0]
        raise InspectSyntaxError(f"{message}{f' near {near!r}' if near else ' at the end of the text'}", line, col)

    def skip_ws(self) -> None:
        t, n = self.text, len(self.text)
        while self.pos < n and t[self.pos] in _WS:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            self.fail(f"expected {ch!r}")
        self.pos += 1

    def match(self, rx: re.Pattern[str]) -> re.Match[str] | None:
        m = rx.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def elide(self, path: str, kind: str, text: str) -> Elided:
        self.elided.append(path or "$")
        return Elided(kind, text)

    # -- values ------------------------------------------------------------------------------
    def value(self, path: str) -> Any:
        self.match(_REF)  # `<ref *1>` marks the target of a later [Circular *1]; the value follows
        ch = self.peek()
        if ch == "{":
            return self.obj(path)
        if ch == "[":
            return self.bracket(path)
        if ch in "'\"`":
            return self.string(path)
        if ch == "<":
            m = self.match(_EMPTY)
            if m:
                return self.elide(path, "empty-items", m.group(0))
            self.fail("unexpected '<'")
        if ch == "/":
            m = self.match(_REGEXP)
            if m:
                return m.group(0)
        m = self.match(_DATE)
        if m:
            return m.group(0)
        m = self.match(_NUMBER)
        if m:
            return _number(m.group(0))
        m = _PREFIX.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            inner = self.value(path)
            if m.group(1) in ("Set", "WeakSet") and inner == {}:
                return []
            return inner
        m = self.match(_IDENT)
        if m:
            word = m.group(0)
            if word in ("true", "false"):
                return word == "true"
            if word in ("null", "undefined"):
                return None
            if word == "Invalid" and self.text.startswith(" Date", self.pos):
                self.pos += 5
                return None
            if word == "Symbol" and self.peek() == "(":
                return self.symbol()
            self.pos = m.start()
            self.fail(f"unknown word {word!r}")
        self.fail("expected a value")
        return None  # unreachable

    def symbol(self) -> str:
        start = self.pos - len("Symbol")
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return self.text[start:self.pos]
            elif ch == "\n":
                break
        self.fail("unterminated Symbol(", start)
        return ""

    def string(self, path: str) -> Any:
        parts = [self.one_string()]
        # `'first line\n' +\n    'second line'`: Node splits long multi-line strings.
        while True:
            save = self.pos
            self.skip_ws()
            if self.peek() == "+":
                self.pos += 1
                self.skip_ws()
                if self.peek() not in ("'", '"', "`"):
                    self.fail("expected a string after '+'")
                parts.append(self.one_string())
                continue
            self.pos = save
            break
        s = "".join(parts)
        m = _MORE_CHARS.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return self.elide(path, "truncated-string", s)
        return s

    def one_string(self) -> str:
        t = self.text
        quote = t[self.pos]
        start = self.pos
        self.pos += 1
        out: list[str] = []
        n = len(t)
        while True:
            j = self.pos
            while j < n and t[j] != quote and t[j] != "\\" and t[j] != "\n":
                j += 1
            out.append(t[self.pos:j])
            if j >= n or t[j] == "\n":
                self.fail("unterminated string", start)
            self.pos = j + 1
            if t[j] == quote:
                return "".join(out)
            esc = t[self.pos] if self.pos < n else ""
            self.pos += 1
            if esc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[esc])
            elif esc == "x":
                out.append(chr(self.hex_digits(2)))
            elif esc == "u":
                out.append(chr(self.hex_digits(4)))
            else:
                self.fail(f"unknown escape \\{esc}", self.pos - 2)

    def hex_digits(self, count: int) -> int:
        digits = self.text[self.pos:self.pos + count]
        if len(digits) != count or any(c not in "0123456789abcdefABCDEF" for c in digits):
            self.fail(f"expected {count} hex digits")
        self.pos += count
        return int(digits, 16)

    def bracket(self, path: str) -> Any:
        m = self.match(_BRACKET_WORD)
        if m:
            word = m.group(1)
            if word == "Object: null prototype":
                self.skip_ws()
                if self.peek() in "{[":
                    return self.value(path)
                return self.elide(path, "depth", m.group(0))
            if word.startswith("Circular"):
                return self.elide(path, "circular", m.group(0))
            if word.startswith(("Getter", "Setter")):
                return self.elide(path, "getter", m.group(0))
            if "Function" in word or word.startswith("class "):
                self.skip_function_props(path)
                return self.elide(path, "function", m.group(0))
            return self.elide(path, "depth", m.group(0))  # [Object], [Array], [Resource]
        m = self.match(_BOXED)
        if m:
            inner = self.value(path)
            self.expect("]")
            return inner
        return self.array(path)

    def skip_function_props(self, path: str) -> None:
        """`[Function: f] { a: 1 }`: a function with own properties; they are read and dropped."""
        if self.text.startswith(" {", self.pos):
            self.pos += 1
            self.obj(path)

    def array(self, path: str) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        self.skip_ws()
        if self.peek() == "]":
            self.pos += 1
            return out
        while True:
            self.skip_ws()
            m = self.match(_MORE_ITEMS)
            if m:
                out.append(self.elide(f"{path}[{len(out)}]", "more-items", m.group(0)))
            else:
                at = self.pos
                key = self.key()
                self.skip_ws()
                if key is not _NOT_A_KEY and self.peek() == ":":  # `[ 1, 2, extra: 3 ]`: own properties
                    self.pos += 1
                    self.skip_ws()
                    self.value(f"{path}.{key}")  # read (so the syntax is checked) and dropped
                else:
                    self.pos = at
                    out.append(self.value(f"{path}[{len(out)}]"))
            self.skip_ws()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                continue
            if ch == "]":
                self.pos += 1
                return out
            self.fail("expected ',' or ']' in an array")

    def obj(self, path: str) -> Any:
        """`{ key: value, … }`, Map entries `{ k => v }`, or Set members `{ a, b }`."""
        self.expect("{")
        out: dict[str, Any] = {}
        members: list[Any] = []
        self.skip_ws()
        if self.peek() == "}":
            self.pos += 1
            return out
        while True:
            self.skip_ws()
            m = self.match(_MORE_ITEMS)
            if m:
                self.elide(path, "more-items", m.group(0))
            else:
                key_at = self.pos
                key = self.key()
                self.skip_ws()
                if key is not _NOT_A_KEY and self.peek() == ":":
                    self.pos += 1
                    self.skip_ws()
                    out[key] = self.value(f"{path}.{key}" if path else key)
                else:  # a Map entry `k => v` (any key type) or a Set member
                    self.pos = key_at
                    item = self.value(f"{path}[{len(members)}]")
                    self.skip_ws()
                    if self.text.startswith("=>", self.pos):
                        self.pos += 2
                        self.skip_ws()
                        k = str(item)
                        out[k] = self.value(f"{path}.{k}" if path else k)
                    else:
                        members.append(item)
            self.skip_ws()
            ch = self.peek()
            if ch == ",":
                self.pos += 1
                continue
            if ch == "}":
                self.pos += 1
                break
            self.fail("expected ',' or '}' in an object")
        if members and out:
            self.fail("an object mixes key: value pairs and bare members")
        return members if members else out

    def key(self) -> Any:
        ch = self.peek()
        if ch in "'\"`":
            save = self.pos
            s = self.one_string()
            self.skip_ws()
            if self.peek() == ":":
                return s
            self.pos = save
            return _NOT_A_KEY
        if ch == "[":
            if self.text.startswith("[Symbol(", self.pos):
                self.pos += 1
                self.match(_IDENT)
                sym = self.symbol()
                self.expect("]")
                return f"[{sym}]"
            return _NOT_A_KEY
        m = _IDENT.match(self.text, self.pos)
        if m and self.text[m.end():m.end() + 1] == ":":
            self.pos = m.end()
            return m.group(0)
        m2 = _NUMBER.match(self.text, self.pos)
        if m2 and self.text[m2.end():m2.end() + 1] == ":":  # array-like own property `'0': …` is quoted; `0:` in objects
            self.pos = m2.end()
            return m2.group(0)
        return _NOT_A_KEY


_NOT_A_KEY: Any = object()


def _number(s: str) -> int | float:
    if s.endswith("n"):
        return int(s[:-1])
    if s in ("NaN", "-NaN"):
        return float("nan")
    if s.endswith("Infinity"):
        return float("-inf") if s.startswith("-") else float("inf")
    if any(c in s for c in ".eE"):
        return float(s)
    return int(s)


def _parse_at(text: str, pos: int) -> tuple[Literal | None, str | None]:
    try:
        return parse(text, pos), None
    except InspectSyntaxError as exc:  # its line and column count from the start of `text`
        return None, f"not a Node inspect literal: {exc}"
    except RecursionError:  # nesting far deeper than Node's printer ever produces
        return None, "not a Node inspect literal: nested too deeply"


def iter_literals(text: str) -> Any:
    """(start line, Literal or None, error or None, skipped lines) for each top-level `{` literal.

    A literal starts at a line whose first character is `{` (as console.dir prints them); lines
    between literals (an application's own log lines) are counted in `skipped`, not parsed. After a
    literal that does not parse, scanning resumes at the next line starting with `{`.
    """
    pos, n = 0, len(text)
    line = 1
    while pos < n:
        skipped = 0
        start_line = line
        # find the next line starting with "{"
        while pos < n and text[pos] != "{":
            nl = text.find("\n", pos)
            if text[pos:(nl if nl >= 0 else n)].strip():
                skipped += 1
            if nl < 0:
                pos = n
                break
            pos = nl + 1
            line += 1
        if pos >= n:
            if skipped:
                yield start_line, None, None, skipped
            return
        lit, err = _parse_at(text, pos)
        if lit is None:
            yield line, None, err, skipped
            nxt = text.find("\n{", pos + 1)
            if nxt < 0:
                return
            line += text.count("\n", pos, nxt + 1)
            pos = nxt + 1
            continue
        yield line, lit, None, skipped
        line += text.count("\n", pos, lit.end)
        pos = lit.end
        # the rest of the literal's last line
        nl = text.find("\n", pos)
        rest = text[pos:(nl if nl >= 0 else n)]
        if rest.strip():
            yield line, None, f"unexpected text after the literal: {rest.strip()[:40]!r}", 0
        if nl < 0:
            return
        pos = nl + 1
        line += 1
