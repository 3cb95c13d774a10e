"""The one filter language (design §4): CLI arguments, the console's `/` bar and runbook steps.

    tenant=acme since=01:00 served_model!=gpt-4o-2024-08-06 latency_ms>2000 "refund policy"

Whitespace-separated terms, all must hold. `key=value` (comma list = any of), `key!=value`,
`key~text` (case-insensitive substring), `key~/regex/`, `key>n`, `key<n`, `key>=n`, `key<=n`;
`since=`/`until=` take an ISO time, a clock time (`01:00`, the incident's last day) or a relative
time (`-30m`, `-2h`, `-1d`, counted back from the newest span); bare words search input and output
text; `meta.KEY=value` reads any attribute kept from the export. Quotes group words ("a b").

A filter is parsed once into `Term`s and compiled to SQL with `?` parameters: user text never
becomes SQL. Requests are LLM calls: without a `kind=` term only `kind = 'llm'` rows match.
Times are UTC; relative and clock times resolve against the data, and `Compiled.notes` says how.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# key -> column (None: special handling). Documented in README; keep in step with design §4.
COLUMNS: dict[str, str | None] = {
    "request": None, "trace": "trace_id", "span": "span_id", "session": "session_id", "user": "user_id",
    "tenant": "tenant", "model": "model", "served_model": "served_model", "provider": "provider",
    "feature": "feature", "prompt": "prompt_name", "prompt_version": "prompt_version", "status": "status",
    "error": None, "latency_ms": "latency_ms", "tokens": "total_tokens", "input_tokens": "input_tokens",
    "output_tokens": "output_tokens", "cost": "cost", "finish": "finish_reason", "env": "env",
    "release": "release", "kind": "kind", "name": "name", "service": "service", "label": None,
    "text": None, "input": "input_text", "output": "output_text", "http_status": "http_status",
    "since": None, "until": None,
}
ALIASES = {"latency": "latency_ms", "session_id": "session", "user_id": "user", "trace_id": "trace",
           "request_id": "request", "finish_reason": "finish", "prompt_name": "prompt", "error_type": "error",
           "total_tokens": "tokens", "environment": "env"}
NUMERIC = {"latency_ms", "tokens", "input_tokens", "output_tokens", "cost", "http_status"}
KNOWN_KEYS: list[str] = sorted([*COLUMNS, "meta.KEY"])
OPS = ("!=", ">=", "<=", "=", "~", ">", "<")
_TERM_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:\.[^=!~<>\s]+)?)(?P<op>!=|>=|<=|=|~|>|<)(?P<value>.*)$",
                      re.DOTALL)
_REL_RE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)$", re.IGNORECASE)
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)$")
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


class FilterError(ValueError):
    """A term the filter language cannot read; the message names the term and what is allowed."""


@dataclass(frozen=True)
class Term:
    key: str | None  # None: a bare word (text search)
    op: str
    value: str

    def __str__(self) -> str:
        if self.key is None:
            return _quote(self.value)
        return f"{self.key}{self.op}{_quote(self.value)}"


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()

    @property
    def text(self) -> str:
        """The canonical string of the filter (parses back to the same filter)."""
        return " ".join(str(t) for t in self.terms)

    def __str__(self) -> str:
        return self.text

    def keys(self) -> set[str]:
        return {t.key for t in self.terms if t.key}

    def and_(self, other: Filter | str | Sequence[str]) -> Filter:
        return Filter(self.terms + parse_filter(other).terms)


@dataclass
class Compiled:
    where: str
    params: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    filter: Filter = field(default_factory=Filter)


def _quote(v: str) -> str:
    return v if v and not re.search(r"[\s\"'\\]", v) else shlex.quote(v)


def _split(text: str) -> list[str]:
    try:
        lex = shlex.shlex(text, posix=True)
        lex.whitespace_split = True
        lex.commenters = ""
        return list(lex)
    except ValueError as exc:
        raise FilterError(f"cannot read filter {text!r}: {exc} (close the quote)") from None


def _canonical_key(key: str) -> str:
    if key.startswith("meta."):
        if len(key) <= 5:
            raise FilterError("meta. needs a key, e.g. meta.gen_ai.request.temperature=0.2")
        return key
    key = ALIASES.get(key, key)
    if key not in COLUMNS:
        close = difflib.get_close_matches(key, list(COLUMNS) + list(ALIASES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise FilterError(f"unknown key {key!r}; {hint}known keys: {', '.join(KNOWN_KEYS)}")
    return key


def parse_filter(terms: str | Sequence[str] | Filter | None) -> Filter:
    """Parse a filter string (or the argv words of one); raises FilterError pointing at the bad term."""
    if isinstance(terms, Filter):
        return terms
    if terms is None:
        return Filter()
    words: list[str] = []
    for part in ([terms] if isinstance(terms, str) else list(terms)):
        words.extend(_split(part) if isinstance(terms, str) else ([part] if part.strip() else []))
    out: list[Term] = []
    for i, word in enumerate(words, start=1):
        m = _TERM_RE.match(word)
        if not m:
            if not word.strip():
                continue
            out.append(Term(None, "~", word))
            continue
        key, op, value = m.group("key"), m.group("op"), m.group("value")
        where = f"term {i} {word!r}"
        try:
            key = _canonical_key(key)
        except FilterError as exc:
            raise FilterError(f"{where}: {exc}") from None
        if value == "" and op != "=":
            raise FilterError(f"{where}: no value after {op!r}")
        if key in ("since", "until") and op != "=":
            raise FilterError(f"{where}: {key} takes '=', e.g. {key}=-30m or {key}=01:00")
        if op in (">", "<", ">=", "<=") and key not in NUMERIC and not key.startswith("meta."):
            raise FilterError(f"{where}: {op!r} compares numbers; numeric keys: {', '.join(sorted(NUMERIC))}")
        if key in NUMERIC and op in (">", "<", ">=", "<="):
            _number(key, value, where)
        out.append(Term(key, op, value))
    return Filter(tuple(out))


def _number(key: str, value: str, where: str) -> float:
    v = value.strip()
    if key == "latency_ms":
        m = _DURATION_RE.match(v)
        if m:
            n = float(m.group(1))
            return n * {"ms": 1, "s": 1000, "m": 60000}[m.group(2)]
    try:
        return float(v)
    except ValueError:
        raise FilterError(f"{where}: {value!r} is not a number") from None


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_path(key: str, nested: bool) -> str:
    parts = key.split(".") if nested else [key]
    return "$" + "".join('."' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


class _Builder:
    def __init__(self, con: Any, alias: str) -> None:
        self.con = con
        self.a = f"{alias}." if alias else ""
        self.params: list[Any] = []
        self.notes: list[str] = []
        self._anchor: dt.datetime | None = None

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def col(self, name: str) -> str:
        return f"{self.a}{name}"

    # -- times -------------------------------------------------------------------------------------
    def anchor(self) -> dt.datetime:
        """The newest span time: relative and clock times count from the incident, not from now."""
        if self._anchor is None:
            row = self.con.execute("SELECT max(start_time) FROM spans").fetchone() if self.con is not None else None
            t = row[0] if row and row[0] is not None else dt.datetime.now(dt.UTC)
            self._anchor = t.astimezone(dt.UTC)
        return self._anchor

    def time(self, key: str, value: str) -> dt.datetime:
        v = value.strip()
        m = _REL_RE.match(v)
        if m:
            t = self.anchor() - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
            self.notes.append(f"{key}={value} is {t.isoformat()} (UTC; {v[1:]} before the newest span)")
            return t
        m = _CLOCK_RE.match(v)
        if m:
            h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
            if h > 23 or mi > 59 or s > 59:
                raise FilterError(f"{key}={value}: not a clock time")
            day = self.anchor().date()
            t = dt.datetime(day.year, day.month, day.day, h, mi, s, tzinfo=dt.UTC)
            if t > self.anchor():
                t -= dt.timedelta(days=1)  # 23:00 when the data ends at 03:00 means the evening before
            self.notes.append(f"{key}={value} is {t.isoformat()} (UTC, the incident's day)")
            return t
        try:
            t = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            raise FilterError(f"{key}={value}: use an ISO time (2026-11-24T01:00Z), a clock time (01:00, UTC) "
                              "or a relative time (-30m, -2h, -1d)") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
            self.notes.append(f"{key}={value} has no zone; read as UTC")
        return t.astimezone(dt.UTC)

    # -- one term ------------------------------------------------------------------------------------
    def term(self, t: Term) -> str:
        if t.key is None:
            pat = f"%{_like_escape(t.value)}%"
            return (f"({self.col('input_text')} ILIKE {self.p(pat)} ESCAPE '\\' OR "
                    f"{self.col('output_text')} ILIKE {self.p(pat)} ESCAPE '\\')")
        key = t.key
        if key == "since":
            return f"{self.col('start_time')} >= {self.p(self.time(key, t.value))}"
        if key == "until":
            return f"{self.col('start_time')} < {self.p(self.time(key, t.value))}"
        if key == "text":
            return self.text_term(t)
        if key == "request":
            return self.request_term(t)
        if key == "label":
            return self.label_term(t)
        if key == "error":
            if t.op == "~":
                return self.generic(t, f"coalesce({self.col('error_type')}, '') || ' ' || "
                                       f"coalesce({self.col('error')}, '')")
            return self.generic(t, self.col("error_type"))
        if key == "status" and t.op in ("=", "!=") and t.value in ("ok", "success"):
            expr = f"coalesce({self.col('status')}, 'unset') <> 'error'"  # unset is not a failure
            return expr if t.op == "=" else f"NOT ({expr})"
        if key.startswith("meta."):
            k = key[5:]
            flat = f"json_extract_string({self.col('attributes')}, {self.p(_json_path(k, False))})"
            nested = f"json_extract_string({self.col('raw')}, {self.p(_json_path(k, True))})"
            return self.generic(t, f"coalesce({flat}, {nested})", numeric_cast=True)
        column = COLUMNS[key]
        assert column is not None
        return self.generic(t, self.col(column), numeric=key in NUMERIC)

    def generic(self, t: Term, expr: str, *, numeric: bool = False, numeric_cast: bool = False) -> str:
        op, value = t.op, t.value
        if op in (">", "<", ">=", "<="):
            n = _number(t.key or "", value, str(t))
            target = expr if numeric else f"TRY_CAST({expr} AS DOUBLE)"
            return f"{target} {op} {self.p(n)}"
        if op == "~":
            if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
                pattern = value[1:-1]
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise FilterError(f"{t}: bad regular expression: {exc}") from None
                return f"regexp_matches(CAST({expr} AS VARCHAR), {self.p(pattern)})"
            return f"CAST({expr} AS VARCHAR) ILIKE {self.p('%' + _like_escape(value) + '%')} ESCAPE '\\'"
        values = [v for v in value.split(",")] if "," in value else [value]
        if value == "":
            return f"{expr} IS NULL" if op == "=" else f"{expr} IS NOT NULL"
        if numeric:
            nums = [_number(t.key or "", v, str(t)) for v in values]
            inner = ", ".join(self.p(n) for n in nums)
        else:
            inner = ", ".join(self.p(v) for v in values)
            expr = f"CAST({expr} AS VARCHAR)"
        if op == "=":
            return f"{expr} IN ({inner})"
        return f"({expr} IS NULL OR {expr} NOT IN ({inner}))"

    def text_term(self, t: Term) -> str:
        both = f"coalesce({self.col('input_text')}, '') || chr(10) || coalesce({self.col('output_text')}, '')"
        if t.op not in ("~", "="):
            raise FilterError(f"{t}: text takes ~ (substring or /regex/)")
        return self.generic(Term("text", "~", t.value), both)

    def request_term(self, t: Term) -> str:
        """Any id a responder may be handed (app request id, provider response id, trace/span id) or a prefix."""
        if t.op not in ("=", "!="):
            raise FilterError(f"{t}: request takes = or !=")
        parts = []
        for v in t.value.split(","):
            v = v.strip()
            like = _like_escape(v.lower()) + "%"
            parts.append(
                f"({self.col('span_pk')} IN (SELECT span_pk FROM span_ids WHERE lower(id) LIKE {self.p(like)} ESCAPE '\\') "
                f"OR {self.col('trace_id')} IN (SELECT id FROM span_ids WHERE id_kind = 'trace' "
                f"AND lower(id) LIKE {self.p(like)} ESCAPE '\\'))")
        expr = "(" + " OR ".join(parts) + ")"
        return expr if t.op == "=" else f"NOT {expr}"

    def label_term(self, t: Term) -> str:
        outer = self.col("span_pk") if self.a else "spans.span_pk"  # unqualified would bind to labels
        latest = (f"(SELECT l.label FROM labels l WHERE l.span_pk = {outer} "
                  f"ORDER BY l.created_at DESC, l.label_id DESC LIMIT 1)")
        if t.value in ("none", ""):
            return f"{latest} IS NULL" if t.op == "=" else f"{latest} IS NOT NULL"
        return self.generic(t, latest)


def compile_filter(con: Any, flt: Filter | str | Sequence[str] | None, *, alias: str = "",
                   default_kind: str | None = "llm") -> Compiled:
    """SQL (`where`, `?` params) for a filter over the spans table (columns prefixed by `alias.`)."""
    f = parse_filter(flt)
    b = _Builder(con, alias)
    parts = [b.term(t) for t in f.terms]
    if default_kind and "kind" not in f.keys():
        parts.insert(0, f"{b.col('kind')} = {b.p(default_kind)}")
        b.params.insert(0, b.params.pop())
    return Compiled(" AND ".join(f"({p})" for p in parts) if parts else "TRUE", b.params, b.notes, f)
