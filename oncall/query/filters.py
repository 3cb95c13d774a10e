"""The one filter language (design §4): CLI arguments, the console's `/` bar and runbook steps.

    tenant=acme since=01:00 served_model!=gpt-4o-2024-08-06 latency_ms>2000 "refund policy"

Whitespace-separated terms, all must hold. `key=value` (an unquoted comma list = any of), `key!=value`,
`key~text` (case-insensitive substring), `key~/regex/`, `key>n`, `key<n`, `key>=n`, `key<=n`;
`since=`/`until=` take an ISO time, a clock time (`01:00`, the incident's last day) or a relative
time (`-30m`, `-2h`, `-1d`, counted back from the newest span); bare words search input and output
text; `meta.KEY=value` reads any attribute kept from the export. Quotes group words ("a b") and
make what they hold literal: `tenant="Acme, Inc."` is one value, `"a=b"` searches the text a=b.
CLI arguments follow the same rule: each argument is read as the filter bar reads it, so one
argument may hold several terms (`--baseline "tenant=acme until=01:00"`).

A filter is parsed once into `Term`s and compiled to SQL with `?` parameters: user text never
becomes SQL. Requests are LLM calls: without a `kind=` term only `kind = 'llm'` rows match.
Times are UTC; relative and clock times resolve against the data, and `Compiled.notes` says how.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oncall.errors import InputError
from oncall.ingest.canonical import ERROR_CLASSES, STATUSES
from oncall.query.labels import latest_label_sql

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
    # Retrieval (oncall.ingest.retrieval): on an LLM call, the retrieval that fed it; on a retrieval
    # span, its own. `retrieved<1` = answers given from an empty retrieval.
    "retrieved": "retrieved", "top_score": "top_score", "index": "retrieval_index",
    "embedding_model": "embedding_model", "doc": None, "query": "retrieval_query", "retrieval_ms": "retrieval_ms",
    "doc_age": "doc_age_s",
}
ALIASES = {"latency": "latency_ms", "session_id": "session", "user_id": "user", "trace_id": "trace",
           "request_id": "request", "finish_reason": "finish", "prompt_name": "prompt", "error_type": "error",
           "total_tokens": "tokens", "environment": "env", "retrieval_index": "index", "retrieval_query": "query",
           "doc_age_s": "doc_age", "documents": "retrieved", "embedding": "embedding_model", "docs": "doc"}
NUMERIC = {"latency_ms", "tokens", "input_tokens", "output_tokens", "cost", "http_status", "retrieved", "top_score",
           "retrieval_ms", "doc_age"}
KNOWN_KEYS: list[str] = sorted([*COLUMNS, "meta.KEY"])
OPS = ("!=", ">=", "<=", "=", "~", ">", "<")
_TERM_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:\.[^=!~<>\s]+)?)(?P<op>!=|>=|<=|=|~|>|<)(?P<value>.*)$",
                      re.DOTALL)
_REL_RE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)$", re.IGNORECASE)
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)$")
_AGE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


class FilterError(InputError, ValueError):
    """A term the filter language cannot read; the message names the term and what is allowed.

    An InputError (the CLI exits 2); still a ValueError for callers written before InputError."""


# Closed vocabularies: a value outside these can never match, so it is an error listing them.
LABEL_VALUES = ("good", "bad", "none")
STATUS_VALUES = (*STATUSES, "success")  # success: another word for ok
CLOSED_VALUES: dict[str, tuple[str, ...]] = {"label": LABEL_VALUES, "status": STATUS_VALUES, "error": ERROR_CLASSES}
# Keys whose values are a handful of names worth offering from the data (the filter bar completes
# them); ids, texts and numbers have too many values to list.
CATEGORICAL = ("tenant", "feature", "model", "served_model", "provider", "prompt", "prompt_version", "env",
               "release", "name", "service", "finish", "index", "embedding_model")


@dataclass(frozen=True)
class Term:
    key: str | None  # None: a bare word (text search)
    op: str
    value: str  # as the responder meant it, quotes removed
    # `=`/`!=`: the values any of which may match (an unquoted comma separates them). Empty: just
    # `value`, so a Term built in code is literal, commas and all.
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.values:
            object.__setattr__(self, "values", (self.value,))

    def __str__(self) -> str:
        """Canonical text: parses back to an equal Term (values that need it are quoted)."""
        if self.key is None:
            return _quote(self.value, bare=True)
        if self.op in ("=", "!=") and len(self.values) > 1:
            return f"{self.key}{self.op}" + ",".join(_quote(v, comma=True) for v in self.values)
        return f"{self.key}{self.op}{_quote(self.value, comma=self.op in ('=', '!='))}"


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)  # how arguments were read (compile adds them)

    @property
    def text(self) -> str:
        """The canonical string of the filter (parses back to the same filter)."""
        return " ".join(str(t) for t in self.terms)

    def __str__(self) -> str:
        return self.text

    def keys(self) -> set[str]:
        return {t.key for t in self.terms if t.key}

    def and_(self, other: Filter | str | Sequence[str]) -> Filter:
        o = parse_filter(other)
        return Filter(self.terms + o.terms, self.notes + o.notes)


@dataclass
class Compiled:
    where: str
    params: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    filter: Filter = field(default_factory=Filter)


def quote_value(v: str) -> str:
    """A value as filter text that reads back as exactly `v` (one value, commas literal)."""
    return _quote(v, comma=True)


def _quote(v: str, *, comma: bool = False, bare: bool = False) -> str:
    needs = (any(c.isspace() or c in "\"'" for c in v) or v.endswith("\\") or (comma and "," in v)
             or (bare and (v == "" or _TERM_RE.match(v) is not None or _KEYLESS_RE.match(v) is not None)))
    if not needs:
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _Token:
    """One whitespace-separated word of filter text, quotes removed; `literal[i]` says whether
    character i was quoted or escaped (then it is never an operator or a comma separator)."""
    text: str
    literal: tuple[bool, ...]


def _tokens(text: str) -> list[_Token]:
    """Split filter text the way the filter bar does.

    Whitespace separates words; "double" or 'single' quotes group and make what they hold literal.
    A quote opens at the start of a word, after an operator or after a comma (`"a b"`,
    `tenant="Acme, Inc."`, `tenant=acme,"Acme, Inc."`); elsewhere it is text (`don't`).
    Inside double quotes a backslash escapes `"` and `\\`; outside quotes it escapes a quote or
    whitespace. Any other backslash stays, so `output~/\\d+/` keeps its `\\d`.
    """
    out: list[_Token] = []
    chars: list[str] = []
    lit: list[bool] = []
    in_word = False
    quote: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote is None:
            if c.isspace():
                if in_word:
                    out.append(_Token("".join(chars), tuple(lit)))
                    chars, lit, in_word = [], [], False
            elif c in "\"'" and (not chars or (chars[-1] in "=~<>," and not lit[-1])):
                quote, in_word = c, True  # opens a quote; an apostrophe inside a word (don't) is text
            elif c == "\\" and i + 1 < n and (text[i + 1] in "\"'" or text[i + 1].isspace()):
                chars.append(text[i + 1])
                lit.append(True)
                in_word = True
                i += 1
            else:
                chars.append(c)
                lit.append(False)
                in_word = True
        elif c == quote:
            quote = None
        elif c == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\':
            chars.append(text[i + 1])
            lit.append(True)
            i += 1
        else:
            chars.append(c)
            lit.append(True)
        i += 1
    if quote is not None:
        raise FilterError(f"cannot read filter {text!r}: no closing {quote} (close the quote)")
    if in_word:
        out.append(_Token("".join(chars), tuple(lit)))
    return out


def _split(text: str) -> list[str]:
    """The words of filter text, quotes removed (for callers that only need the words)."""
    return [t.text for t in _tokens(text)]


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
    """Parse filter text, or CLI arguments each read as filter text (one argument may hold several
    terms, exactly as the filter bar would split it); raises FilterError pointing at the bad term."""
    if isinstance(terms, Filter):
        return terms
    if terms is None:
        return Filter()
    tokens: list[_Token] = []
    notes: list[str] = []
    for part in ([terms] if isinstance(terms, str) else list(terms)):
        toks = [t for t in _tokens(part) if t.text.strip()]
        if not isinstance(terms, str) and len(toks) > 1 and _looks_like_unquoted_value(toks):
            m = _TERM_RE.match(toks[0].text)
            assert m is not None
            whole = m.group("key") + m.group("op") + quote_value(" ".join([m.group("value")] + [t.text for t in toks[1:]]))
            notes.append(f"argument {part!r} holds {len(toks)} terms ({', '.join(t.text for t in toks)}); "
                         f"to match a value with spaces, quote it inside the argument: '{whole}'")
        tokens.extend(toks)
    out = [_term(tok, f"term {i} {tok.text!r}") for i, tok in enumerate(tokens, start=1)]
    return Filter(tuple(out), tuple(notes))


def _looks_like_unquoted_value(toks: list[_Token]) -> bool:
    """`tenant=Acme Inc` as one argument: a key term then bare words, likely a value whose quotes
    the shell removed. Still read as the filter bar reads it; a note says so."""
    first = _TERM_RE.match(toks[0].text)
    return first is not None and all(_TERM_RE.match(t.text) is None for t in toks[1:])


def _term(tok: _Token, where: str) -> Term:
    m = _TERM_RE.match(tok.text)
    if not m:
        _refuse_keyless(tok, where)
    if not m or any(tok.literal[:m.start("value")]):  # "a=b" (quoted) is text to search for
        return Term(None, "~", tok.text)
    key, op, value = m.group("key"), m.group("op"), m.group("value")
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
    values: tuple[str, ...] = (value,)
    if op in ("=", "!=") and key not in ("since", "until"):
        values = tuple(_comma_split(value, tok.literal[m.start("value"):]))
        if len(values) > 1 and any(v == "" for v in values):
            raise FilterError(f"{where}: empty value in the comma list (a comma inside a value needs quotes, "
                              'e.g. tenant="Acme, Inc.")')
    _check_vocabulary(key, op, values, where)
    return Term(key, op, value, values)


_KEYLESS_RE = re.compile(r"^(?:!=|=|~|[<>]=?(?=[0-9.-]))")


def _refuse_keyless(tok: _Token, where: str) -> None:
    """`=acme` or `>500` lost its key (a typo, or a shell variable that expanded to nothing): searching
    for the text would match nothing and read as "no such requests". Quoted, it is text."""
    m = _KEYLESS_RE.match(tok.text)
    if m and not any(tok.literal[:m.end()]):
        op, rest = m.group(0), tok.text[m.end():]
        example = f"latency_ms{op}{rest}" if op[0] in "<>" else f"tenant{op}{rest or 'acme'}"
        raise FilterError(f"{where}: no key before {op!r}; write KEY{op}VALUE (e.g. {example}), or quote it "
                          f"to search for the text: '\"{tok.text}\"'")


def _comma_split(value: str, literal: tuple[bool, ...]) -> list[str]:
    parts, cur = [], []
    for ch, lit in zip(value, literal, strict=True):
        if ch == "," and not lit:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def completions(text: str, values: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Every way to complete the last term of filter text, each as the whole new text: a key of the
    language (`sta` -> `status=`; a numeric key without its operator, which is usually `>`), or a value
    of the key being typed (`status=e` -> `status=error`) from the closed vocabularies, else from
    `values` (the incident's own, most frequent first: query.overview.completion_values). A quoted
    or bare-word last term completes nothing."""
    head, _, last = text.rpartition(" ")
    prefix = f"{head} " if head else ""
    if not last or '"' in last:
        return []
    m = re.match(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.]*)(?P<op>!=|=)(?P<partial>.*)$", last)
    if m:
        key = ALIASES.get(m.group("key"), m.group("key"))
        known = CLOSED_VALUES.get(key) or (values or {}).get(key, ())
        partial = m.group("partial")
        done, _, partial = partial.rpartition(",")  # a comma list: complete its last value
        done = f"{done}," if done else ""
        return [f"{prefix}{m.group('key')}{m.group('op')}{done}{quote_value(v)}" for v in known
                if v.startswith(partial) and v != partial]
    if any(op in last for op in OPS):
        return []
    return [f"{prefix}{k}" if k in NUMERIC else f"{prefix}{k}=" for k in sorted(COLUMNS)
            if k.startswith(last) and k != last]


def baseline_before(text: str) -> str | None:
    """The same cohort before the filter's window: its terms with `since=T` turned into `until=T` and
    `until=` dropped (what a replay or compare measures the cohort against); None without a since=."""
    try:
        flt = parse_filter(text)
    except FilterError:
        return None
    since = [t for t in flt.terms if t.key == "since" and t.op == "="]
    if len(since) != 1:
        return None
    keep = [str(t) for t in flt.terms if t.key not in ("since", "until")]
    return " ".join(keep + [f"until={quote_value(since[0].value)}"])


def _check_vocabulary(key: str, op: str, values: tuple[str, ...], where: str) -> None:
    """label, status and error (by class) take a closed set of values: anything else is an error."""
    allowed = CLOSED_VALUES.get(key)
    if allowed is None:
        return
    if op not in ("=", "!=", "~") or (op == "~" and key == "label"):
        ops = "=, != or ~" if key != "label" else "= or !="
        raise FilterError(f"{where}: {key} takes {ops}")
    if op == "~":
        return  # status~err, error~"timed out": substring search (error~ searches messages too)
    bad = [v for v in values if v != "" and v not in allowed]
    if bad:
        extra = "; error~TEXT searches the messages" if key == "error" else ""
        raise FilterError(f"{where}: {key} cannot be {bad[0]!r}; valid values: {', '.join(allowed)}{extra}")


def _number(key: str, value: str, where: str) -> float:
    v = value.strip()
    if key in ("latency_ms", "retrieval_ms"):
        m = _DURATION_RE.match(v)
        if m:
            n = float(m.group(1))
            return n * {"ms": 1, "s": 1000, "m": 60000}[m.group(2)]
    if key == "doc_age":  # seconds, or a duration: doc_age>7d
        m = _AGE_RE.match(v)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2).lower()]
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
        if key == "doc":
            return self.doc_term(t)
        if key == "error":
            if t.op == "~":
                return self.generic(t, f"coalesce({self.col('error_type')}, '') || ' ' || "
                                       f"coalesce({self.col('error')}, '')")
            return self.generic(t, self.col("error_type"))
        if key == "status" and t.op in ("=", "!=") and any(v in ("ok", "success") for v in t.values):
            ok = f"coalesce({self.col('status')}, 'unset') <> 'error'"  # unset is not a failure
            others = [v for v in t.values if v not in ("ok", "success")]
            expr = ok if not others else (f"({ok} OR {self.col('status')} IN "
                                          f"({', '.join(self.p(v) for v in others)}))")
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
                self.check_regex(t, pattern)
                return f"regexp_matches(CAST({expr} AS VARCHAR), {self.p(pattern)})"
            return f"CAST({expr} AS VARCHAR) ILIKE {self.p('%' + _like_escape(value) + '%')} ESCAPE '\\'"
        values = list(t.values)
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

    def check_regex(self, t: Term, pattern: str) -> None:
        """Compile the pattern with the engine that runs it (DuckDB's RE2, not Python's re: RE2 has
        no lookaround or backreferences), so a bad one is an error naming the term, not a raw
        DuckDB error from the middle of a query."""
        import duckdb

        try:
            _re2_cursor(self.con).execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
        except duckdb.Error as exc:
            why = str(exc).splitlines()[0].split("Error: ", 1)[-1]
            raise FilterError(f"term '{t}': bad regular expression ({why}); regexes use RE2 syntax: "
                              "no lookahead/lookbehind or backreferences") from None

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
        for v in t.values:
            v = v.strip()
            like = _like_escape(v.lower()) + "%"
            parts.append(
                f"({self.col('span_pk')} IN (SELECT span_pk FROM span_ids WHERE lower(id) LIKE {self.p(like)} ESCAPE '\\') "
                f"OR {self.col('trace_id')} IN (SELECT id FROM span_ids WHERE id_kind = 'trace' "
                f"AND lower(id) LIKE {self.p(like)} ESCAPE '\\'))")
        expr = "(" + " OR ".join(parts) + ")"
        return expr if t.op == "=" else f"NOT {expr}"

    def doc_term(self, t: Term) -> str:
        """doc=ID: a document with that id was retrieved (a comma list: any of them); doc~TEXT: a
        document's id, source or excerpt holds the text."""
        docs = self.col("retrieved_docs")
        if t.op == "~":
            return self.generic(t, docs)
        if t.op not in ("=", "!="):
            raise FilterError(f"{t}: doc takes = (an id), != or ~ (text in a document)")
        if t.value == "":
            return f"{docs} IS NULL" if t.op == "=" else f"{docs} IS NOT NULL"
        has = (f"coalesce(list_has_any(json_extract_string({docs}, '$[*].id'), "
               f"{self.p(list(t.values))}::VARCHAR[]), false)")
        return has if t.op == "=" else f"NOT {has}"

    def label_term(self, t: Term) -> str:
        outer = self.col("span_pk") if self.a else "spans.span_pk"  # unqualified would bind to labels
        latest = latest_label_sql(outer)
        verdicts = [v for v in t.values if v not in ("none", "")]
        parts = [f"{latest} IS NULL"] if len(verdicts) < len(t.values) else []
        if verdicts:
            parts.append(f"{latest} IN ({', '.join(self.p(v) for v in verdicts)})")
        expr = " OR ".join(parts)
        return f"({expr})" if t.op == "=" else f"coalesce(NOT ({expr}), TRUE)"


def compile_on(con: Any, flt: Filter | str | Sequence[str] | None, *, default_kind: str | None = "llm") -> Compiled:
    """compile_filter (alias `s`) for whatever engine is behind `con`: the incident's DuckDB, or a
    connection to another engine that compiles the filter language itself (`con.compile_filter`)."""
    own = getattr(con, "compile_filter", None)
    if own is not None:
        return own(flt, default_kind=default_kind)
    return compile_filter(con, flt, alias="s", default_kind=default_kind)


def resolve_time(key: str, value: str, anchor: dt.datetime) -> tuple[dt.datetime, list[str]]:
    """A since=/until= value as a UTC time, relative and clock times counted from `anchor` (a source
    has no newest span yet: its window counts from now); with the notes saying how it was read."""
    b = _Builder(None, "")
    b._anchor = anchor.astimezone(dt.UTC)
    return b.time(key, value), b.notes


def number_value(key: str, value: str, where: str) -> float:
    """A numeric term's value as the filter reads it (`latency_ms>2s` is 2000)."""
    return _number(key, value, where)


_RE2_LOCK = threading.Lock()
_RE2_CON: Any = None


def _re2_cursor(con: Any) -> Any:
    """Somewhere to compile a regex: the caller's connection when there is one, else a private
    in-memory DuckDB (a regexp check reads no table, so the database does not matter)."""
    global _RE2_CON
    if con is not None:
        return con
    with _RE2_LOCK:
        if _RE2_CON is None:
            import duckdb

            _RE2_CON = duckdb.connect()
        return _RE2_CON.cursor()


def compile_filter(con: Any, flt: Filter | str | Sequence[str] | None, *, alias: str = "",
                   default_kind: str | None = "llm") -> Compiled:
    """SQL (`where`, `?` params) for a filter over the spans table (columns prefixed by `alias.`)."""
    f = parse_filter(flt)
    b = _Builder(con, alias)
    parts = [b.term(t) for t in f.terms]
    if default_kind and "kind" not in f.keys():
        parts.insert(0, f"{b.col('kind')} = {b.p(default_kind)}")
        b.params.insert(0, b.params.pop())
    return Compiled(" AND ".join(f"({p})" for p in parts) if parts else "TRUE", b.params,
                    [*f.notes, *b.notes], f)
