"""The one redactor: secrets never reach the database, the audit log, an export or the clipboard.

Two entry points:
- `redact_text(text)`: every credential shape below becomes `[REDACTED]`. It runs at load time on
  every text column (in DuckDB, through `sql_redact()`, so the bulk path stays in C) and on what
  the core writes itself (problem messages, notes).
- `redact_export(text)` / `redact_export_value(obj)`: the same, plus PII (emails, phone numbers,
  Luhn-valid card numbers) and the extra patterns of `oncall.toml` `[redact] patterns`; for
  everything that leaves the process (console exports, the clipboard, postmortems, eval sets).

The secret rules are written once as RE2-compatible regular expressions with a replacement
template (`\\1`…`\\9`) that Python's `re.sub` and DuckDB's `regexp_replace` read the same way, so
the database and the exports cannot disagree (tests/test_redact.py runs both on one corpus). They
avoid `\\s`, `\\d`, `\\w` (Unicode in Python, ASCII in RE2) and lookarounds (RE2 has none).

Every rule is JSON-safe: it only ever replaces complete characters inside one string (never a
quote or half of an escape), so a redacted JSON record is still valid JSON — the generic importer
redacts the whole line and then parses it.

Where secrets are recognised:
- by their shape, anywhere: provider keys (OpenAI/Anthropic `sk-…`, Google `AIza…`, AWS `AKIA…`,
  GitHub, GitLab, Slack, Stripe, Hugging Face, Langfuse, LangSmith, npm, Groq), JWTs, PEM private
  keys (also with `\\n` escaped in JSON), `Bearer`/`Basic` credentials in any case, passwords in
  URLs (`scheme://user:PASSWORD@`);
- by the name of the field that holds them (`authorization`, `api_key`, `x-api-key`, `password`,
  `secret`, `token`, `cookie`, …, matched at the end of the name in any case, so
  `http.request.header.x-api-key` and `clientSecret` count) in every record shape the importers
  read: JSON objects (also JSON inside JSON strings, with escaped quotes), OTLP key/value lists
  (`{"key": K, "value": {"stringValue": V}}`, also `arrayValue` and a bare array), `{"name": K, "value": V}` header
  lists, Python reprs (`{'api_key': '…'}`), `name=value` / `Name: value` in free text, headers
  and query strings (`?api_key=`, `&token=`, `sig=`). A name rule takes string values only: a
  number is never a secret, and `*_tokens` counts (`input_tokens`, `max_tokens`) are not named
  like secrets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

# -- building blocks -----------------------------------------------------------------------------
_WS = r"[ \t\r\n]*"
_JSON_STR_BODY = r'(?:[^"\\]|\\.)*'  # the inside of a JSON string, escapes kept whole

# Field names that say the value is a credential, matched at the end of the name (case-insensitive).
# `token` is singular on purpose: `input_tokens`, `max_tokens` and `prompt_tokens` are counts.
SECRET_NAMES = (
    r"authorization|auth|api[_-]?key|apikey|"
    r"(?:access|secret|private|master|signing|encryption|account|subscription|shared[_-]?access|client|session)"
    r"[_-]?key|passw(?:or)?d|passphrase|secret|token|cookie|credentials?|"
    # ODBC's `PWD=`; a GCP service account's `private_key_id`
    r"pwd|private[_-]?key[_-]?id"
)
# As a key of a record only: `pass` as a word of the name (`"pass":`, `db_pass`, `smtp-pass`), never
# the end of `bypass`; in prose "first pass: read the logs" is no credential.
_KEY_NAMES = SECRET_NAMES + r"|(?:\b|_)pass"
# In free text and query strings a few short names are unambiguous too (`sig=` in SAS/S3 URLs, a
# `?key=` or `&key=` query parameter: Google Maps, YouTube and many more APIs take the key so).
_FREE_NAMES = SECRET_NAMES + r"|signature|sig|x-amz-credential|[?&]key"
_N = f"(?i:{_KEY_NAMES})"
_NF = f"(?i:{_FREE_NAMES})"


def _token(alphabet: str, n: int) -> str:
    """A run of `alphabet` at least `n` long whose characters after the first include one that is
    not a lower-case letter: a credential, not an English word ("Basic understanding",
    "bearer responsibilities"). Written out as alternatives because RE2 has no lookahead."""
    a, low, mark = f"[{alphabet}]", "[a-z]", f"[{alphabet.replace('a-z', '')}]"
    branches = [f"{low}{{{n - 2},}}{mark}{a}*"]
    branches += [f"{low}{{{k}}}{mark}{a}{{{n - 2 - k},}}" if k else f"{mark}{a}{{{n - 2},}}"
                 for k in range(n - 2)]
    return f"{a}(?:{'|'.join(branches)})"


_B64 = "A-Za-z0-9+/"
_BEARER = "A-Za-z0-9._~+/-"

# -- the rules -----------------------------------------------------------------------------------
# Phoenix's /spans/otlpv1 writes an AnyValue with every oneof field, the unset ones null and in
# alphabetical order, so `string_value` comes after `"array_value": null, "bool_value": null, …`.
_UNSET = rf'(?:"[A-Za-z_]+"{_WS}:{_WS}null{_WS},{_WS})*'
_WSE = r"(?:[ \t\r\n]|\\[nrt])*"  # whitespace inside a JSON string: also \n written as an escape
_UNSET_ESC = rf'(?:\\"[A-Za-z_]+\\"{_WSE}:{_WSE}null{_WSE},{_WSE})*'
# Each pass is one regular expression (alternatives) and one replacement template. Alternatives
# capture what they keep around the secret in groups; a group of an alternative that did not match
# is empty in both engines, so one template serves them all. RE2 rewrites only \1..\9.
_NAME_KEYED = [
    # "api_key": "…" — a JSON field (depth 0: the value is an exact JSON string)
    rf'("[^"\\]*{_N}"{_WS}:{_WS}"){_JSON_STR_BODY}(")',
    # {"key": "http.request.header.api-key", "value": {"stringValue": "…"}} (OTLP) and
    # {"name": "Authorization", "value": "…"} (HAR-style header lists)
    rf'("(?:key|name)"{_WS}:{_WS}"[^"\\]*{_N}"{_WS},{_WS}"value"{_WS}:{_WS}'
    rf'(?:\{{{_WS}{_UNSET}"(?:stringValue|string_value)"{_WS}:{_WS})?"){_JSON_STR_BODY}(")',
    # {'api_key': '…'} — a Python repr, possibly inside a JSON string (so no unescaped ")
    rf"('[^'\"\\]*{_N}'{_WS}:{_WS}')(?:[^'\"\\]|\\.)*(')",
    # ?filter=%7B%22api_key%22%3A%22…%22%7D — JSON URL-encoded into a query string (value up to the
    # next encoded quote)
    rf"(%22[^%&\"'\\ \t\r\n]*{_N}%22(?:%20|\+)*%3[Aa](?:%20|\+)*%22)"
    rf"(?:[^%&\"'\\ \t\r\n]|%[013-9A-Fa-f][0-9A-Fa-f]|%2[013-9A-Fa-f])*(%22)",
]
_NAME_KEYED_REPL = rf"\1\3\5\7{REDACTED}\2\4\6\8"

# JSON inside a JSON string: quotes are \" (depth 1). Inside a depth-1 string, a run of k backslashes
# before a quote ends it when k % 4 == 1 and is content when k % 4 == 3 (a deeper string's quote or
# an escaped quote); the value is taken whole, so a JSON string of an array or object goes too.
_ESC1_BODY = r'(?:[^"\\]|\\+[^"\\]|(?:\\{4})*\\{3}")*'
_ESC1_END = r'(?:\\{4})*\\"'
_NAME_KEYED_ESCAPED = [
    # \"api_key\": \"…\" — the key's quote has exactly one backslash (the character before is kept)
    rf'([^\\]\\"[^"\\]*{_N}\\"{_WS}:{_WS}\\"){_ESC1_BODY}({_ESC1_END})',
    # deeper (\\\" and more): the value stops at the first quote of any depth
    rf'(\\{{3,}}"[^"\\]*{_N}\\+"{_WS}:{_WS}\\+")(?:[^"\\]|\\+[^"\\])*(\\+")',
]
_NAME_KEYED_ESCAPED_REPL = rf"\1\3{REDACTED}\2\4"

_ELEM = rf'"{_JSON_STR_BODY}"'
_OTLP_ELEM = rf'\{{{_WS}{_UNSET}"(?:stringValue|string_value)"{_WS}:{_WS}{_ELEM}{_WS}\}}'
_NAME_KEYED_ARRAYS = [
    # "authorization": ["Bearer …", "…"] — every element goes; one [REDACTED] stays
    rf'("[^"\\]*{_N}"{_WS}:{_WS}\[{_WS}"){_JSON_STR_BODY}(")(?:{_WS},{_WS}{_ELEM})*({_WS}\])',
    # OTLP string arrays (http.request.header.* are string[] in the semantic conventions)
    rf'("key"{_WS}:{_WS}"[^"\\]*{_N}"{_WS},{_WS}"value"{_WS}:{_WS}\{{{_WS}"(?:arrayValue|array_value)"{_WS}:'
    rf'{_WS}\{{{_WS}"values"{_WS}:{_WS}\[{_WS}\{{{_WS}{_UNSET}"(?:stringValue|string_value)"{_WS}:{_WS}")'
    rf'{_JSON_STR_BODY}'
    rf'("{_WS}\}})(?:{_WS},{_WS}{_OTLP_ELEM})*({_WS}\])',
    # \"authorization\": [\"…\", …] — the same inside a JSON string
    rf'([^\\]\\"[^"\\]*{_N}\\"{_WS}:{_WS}\[{_WS}\\"){_ESC1_BODY}({_ESC1_END})'
    rf'(?:{_WS},{_WS}\\"{_ESC1_BODY}{_ESC1_END})*({_WS}\])',
]
_NAME_KEYED_ARRAYS_REPL = rf"\1\4\7{REDACTED}\2\5\8\3\6\9"
# {"key": "http.request.header.api-key", "value": ["…", …]}: a key/value list whose value is a bare
# array, as writers that skip AnyValue emit it (the OTLP reader takes it). Its own pass: the
# template above has no group left (RE2 rewrites only \1..\9).
_NAME_KEYED_KV_ARRAYS = [
    rf'("(?:key|name)"{_WS}:{_WS}"[^"\\]*{_N}"{_WS},{_WS}"value"{_WS}:{_WS}\[{_WS}"){_JSON_STR_BODY}(")'
    rf'(?:{_WS},{_WS}{_ELEM})*({_WS}\])',
]
_NAME_KEYED_KV_ARRAYS_REPL = rf"\1{REDACTED}\2\3"
# The key/value shapes above inside a JSON string (depth 1: quotes are \"), as exporters write when
# they keep a span's attributes as a JSON-encoded string: a string or {stringValue} value, a bare
# array, an arrayValue.
_KV_ESC = rf'[^\\]\\"(?:key|name)\\"{_WSE}:{_WSE}\\"[^"\\]*{_N}\\"{_WSE},{_WSE}\\"value\\"{_WSE}:{_WSE}'
_SV_ESC = rf'\\"(?:stringValue|string_value)\\"{_WSE}:{_WSE}'
_ELEM_ESC = rf'\\"{_ESC1_BODY}{_ESC1_END}'
_NAME_KEYED_KV_ESCAPED = [
    rf'({_KV_ESC}(?:\{{{_WSE}{_UNSET_ESC}{_SV_ESC})?\\"){_ESC1_BODY}({_ESC1_END})',
    rf'({_KV_ESC}\[{_WSE}\\"){_ESC1_BODY}({_ESC1_END})(?:{_WSE},{_WSE}{_ELEM_ESC})*({_WSE}\])',
    rf'({_KV_ESC}\{{{_WSE}\\"(?:arrayValue|array_value)\\"{_WSE}:{_WSE}\{{{_WSE}\\"values\\"{_WSE}:{_WSE}\[{_WSE}'
    rf'\{{{_WSE}{_UNSET_ESC}{_SV_ESC}\\"){_ESC1_BODY}({_ESC1_END}{_WSE}\}})'
    rf'(?:{_WSE},{_WSE}\{{{_WSE}{_UNSET_ESC}{_SV_ESC}{_ELEM_ESC}{_WSE}\}})*({_WSE}\])',
]
_NAME_KEYED_KV_ESCAPED_REPL = rf"\1\3\6{REDACTED}\2\4\7\5\8"

_FREE_STOP = r" \t\r\n\"'&,;<>\\"
_FREE_VALUE = f"[^{_FREE_STOP}]*[^0-9.{_FREE_STOP}][^{_FREE_STOP}]*"  # not a bare number
_IN_TEXT = [
    # Cookie: a=b; c=d — the whole header value, to the end of the line or string
    r"((?i:cookie)[ \t]*[:=][ \t]*)[^\r\n\"'\\]*[^\r\n\"'\\ \t]",
    # api_key=…, ?token=…, &sig=…, Authorization: Bearer …, password: … (free text, headers, queries)
    rf"({_NF}[ \t]*[:=][ \t]*(?:(?i:bearer|basic|token|digest|apikey)[ \t]+)?){_FREE_VALUE}",
    # scheme://user:PASSWORD@host (also with JSON-escaped slashes). A password may hold `/` or `#`
    # (pasted unencoded); then it ends at the first `@`, and one that starts with digits and a `/`
    # is a port and a path (`https://host:443/@user`), not a password.
    r"([A-Za-z][A-Za-z0-9+.-]*:(?:\\?/){2}[^ \t\r\n:/?#@\"'\\<>]*:)"
    r"(?:[^ \t\r\n/?#\"'\\<>]+|[0-9]*[^0-9 \t\r\n/?\"'\\<>@][^ \t\r\n?\"'\\<>@]*)(@)",
    # Bearer …, Basic … in any case, anywhere
    rf"((?i:bearer)[ \t]+){_token(_BEARER, 16)}=*",
    rf"((?i:basic)[ \t]+){_token(_B64, 8)}=*",
    # pass=… anywhere, `Pass: …` at the start of a line (a header, YAML); never "the first pass: …"
    rf"((?i:(?:\b|_)pass)[ \t]*=[ \t]*){_FREE_VALUE}",
    rf"((?m:^)[ \t]*(?i:pass)[ \t]*:[ \t]*){_FREE_VALUE}",
]
_IN_TEXT_REPL = rf"\1\2\3\5\6\7\8{REDACTED}\4"

# Credentials recognisable by their shape alone.
VALUE_PATTERNS: list[str] = [
    r"\bsk-[A-Za-z0-9_-]{20,}",                        # OpenAI sk-/sk-proj-/sk-svcacct-, Anthropic sk-ant-, Langfuse sk-lf-
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",     # Stripe
    r"\bwhsec_[A-Za-z0-9]{20,}",                       # Stripe webhook secret
    r"\bAIza[0-9A-Za-z_-]{35}",                        # Google API key
    r"\bya29\.[0-9A-Za-z_-]{20,}",                     # Google OAuth access token
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",        # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",                   # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",                 # GitHub fine-grained
    r"\bglpat-[A-Za-z0-9_-]{20,}",                     # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",                # Slack
    r"\bxapp-[A-Za-z0-9-]{10,}",                       # Slack app-level
    r"\bhf_[A-Za-z0-9]{30,}",                          # Hugging Face
    r"\bgsk_[A-Za-z0-9]{20,}",                         # Groq
    r"\bnpm_[A-Za-z0-9]{36}",                          # npm
    r"\bpk-lf-[0-9a-fA-F-]{20,}",                      # Langfuse public key
    r"\blsv2_(?:pt|sk)_[A-Za-z0-9_]{20,}",             # LangSmith
    r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}",  # SendGrid
    r"\bhooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{16,}",  # Slack incoming webhook
    r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",  # JWT
    # PEM private key, to its END line (or as far as the key text goes when cut off); newlines may
    # be real or escaped in JSON (\n, \\n), so a backslash run is taken only with what it escapes.
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:[A-Za-z0-9+/=:, \t\r\n]|\\+[A-Za-z0-9+/=]|-[A-Za-z0-9])*(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----)?",
]

# (pattern, replacement), applied in this order. Name rules first: they keep the field name.
# (alternatives, replacement) per pass; tests check that the corpus exercises every alternative.
RULES: list[tuple[list[str], str]] = [
    (_NAME_KEYED_ARRAYS, _NAME_KEYED_ARRAYS_REPL),
    (_NAME_KEYED_KV_ARRAYS, _NAME_KEYED_KV_ARRAYS_REPL),
    (_NAME_KEYED, _NAME_KEYED_REPL),
    (_NAME_KEYED_KV_ESCAPED, _NAME_KEYED_KV_ESCAPED_REPL),
    (_NAME_KEYED_ESCAPED, _NAME_KEYED_ESCAPED_REPL),
    (_IN_TEXT, _IN_TEXT_REPL),
    (VALUE_PATTERNS, REDACTED),
]
# A shaped secret may follow a URL-encoded character with no word boundary between them
# (`?debug=key%20sk-proj-…`): `\b` at a pattern's start also accepts a `%XX` before it (taken too).
_ENCODED_START = r"(?:%[0-9A-Fa-f]{2}|\b)"
PASSES: list[tuple[str, str]] = [
    ("|".join(f"(?:{_ENCODED_START + a[2:] if a.startswith(chr(92) + 'b') else a})" for a in alts), repl)
    for alts, repl in RULES]

# Every match of every pass contains a match of PREFILTER; clean text (almost all of it) pays one
# fast scan instead of four rewriting passes. Names count only where a value can follow, so
# `"input_tokens": 12` and "the token budget" do not trip it. tests/test_redact.py checks the
# promise on the whole corpus and on mutations of it.
PREFILTER = "|".join([
    rf"{_N}(?:\\*\"{_WS}[:,]|'{_WS}:|%22)",
    rf"{_NF}[ \t]*[:=]",
    r":(?:\\?/){2}[^ \t\r\n:/?#@\"'\\<>]*:[^ \t\r\n?\"'\\<>]+@",
    r"(?i:bearer|basic)[ \t]|(?i:pass)[ \t]*[:=]",
    r"sk-[A-Za-z0-9_-]{20}|[sr]k_(?:live|test)_|whsec_|AIza|ya29\.|A[KSBC][IC]A[0-9A-Z]{16}|gh[pousr]_|github_pat_|"
    r"glpat-|xox[abposr]-|xapp-|hf_[A-Za-z0-9]{30}|gsk_|npm_|pk-lf-|lsv2_|eyJ[A-Za-z0-9_-]{5,}\.|-----BEGIN |"
    r"SG\.[A-Za-z0-9_-]{16}|hooks\.slack\.com/",
])

_py_passes = [(re.compile(p, re.ASCII), r) for p, r in PASSES]
_py_prefilter = re.compile(PREFILTER, re.ASCII)


def redact_text(text: str | None) -> str | None:
    """Replace every credential in `text` (plain text, JSON, CSV, a repr, a URL) with [REDACTED]."""
    if not text or not _py_prefilter.search(text):
        return text
    for rx, repl in _py_passes:
        text = rx.sub(repl, text)
    return text


def sql_str(s: str) -> str:
    """`s` as a DuckDB string literal."""
    return "'" + s.replace("'", "''") + "'"


def sql_redact(expr: str) -> str:
    """A DuckDB expression that redacts `expr` exactly as redact_text() does."""
    out = expr
    for pattern, repl in PASSES:
        out = f"regexp_replace({out}, {sql_str(pattern)}, {sql_str(repl)}, 'g')"
    return f"CASE WHEN regexp_matches({expr}, {sql_str(PREFILTER)}) THEN {out} ELSE {expr} END"


# -- exports: secrets plus PII ---------------------------------------------------------------------
# Python only (exports never run in SQL), so these may look around. A match may start right after
# a JSON escape (`\n` + the address), but never on the escape's letter, so redacting JSON text keeps
# it valid.
_START = r"(?:(?<=\\[nrtbf])|(?<![A-Za-z0-9._%+\-\\]))"
_EMAIL_RE = re.compile(_START + r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
_DSTART = r"(?:(?<=\\[nrtbf])|(?<![A-Za-z0-9+\\]))"
# +44 20 7946 0958, +1-555-123-4567, (555) 123-4567, 555-123-4567, 555.123.4567: separated groups
# only, so ISO dates, times, epochs, ids, token counts and prices never qualify.
_PHONE_RE = re.compile(
    _DSTART + r"(?:\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,5}"
    r"|(?:\([0-9]{3}\)[ ]?|[0-9]{3}[.\- ])[0-9]{3}[.\- ][0-9]{4})(?![0-9A-Za-z])"
)
# 13-19 digits, in groups of 4 (Amex 4-6-5) or unbroken with a card network's prefix; Luhn-checked.
_CARD_RE = re.compile(
    r"(?<![0-9])(?:[0-9]{4}(?:[ \-][0-9]{4}){2}[ \-][0-9]{1,7}|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{5}"
    r"|(?:4[0-9]{12}(?:[0-9]{3}){0,2}|5[1-5][0-9]{14}|2[2-7][0-9]{14}|3[47][0-9]{13}|6(?:011|5[0-9]{2})[0-9]{12,15}))"
    r"(?![0-9])"
)


def _luhn_ok(s: str) -> bool:
    digits = [int(c) for c in s if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone(m: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in m.group(0))
    return "[PHONE]" if 7 <= digits <= 15 else m.group(0)


@functools.lru_cache(maxsize=8)
def _configured(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]  # one by one: a pattern may start with global flags (?i)


def redact_export(text: str | None, extra: Iterable[str] | None = None) -> str | None:
    """What may leave the process: redact_text() plus emails, phone numbers, Luhn-valid card numbers
    and the `[redact] patterns` of oncall.toml (or `extra`, when given)."""
    if not text:
        return text
    from oncall.config import redact_patterns  # the core's config reader; read once per file change

    text = redact_text(text) or ""
    text = _EMAIL_RE.sub("[EMAIL]", text)
    text = _CARD_RE.sub(lambda m: "[CARD]" if _luhn_ok(m.group(0)) else m.group(0), text)
    text = _PHONE_RE.sub(_phone, text)
    for rx in _configured(tuple(redact_patterns() if extra is None else extra)):
        text = rx.sub(REDACTED, text)
    return text


def redact_export_value(value: Any, extra: Iterable[str] | None = None) -> Any:
    """redact_export() on every string (keys too) inside a JSON-like value; other values unchanged."""
    if isinstance(value, str):
        return redact_export(value, extra)
    if isinstance(value, dict):
        return {redact_export_value(k, extra): redact_export_value(v, extra) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_export_value(v, extra) for v in value]
    return value


def redact_pii(text: str | None) -> str | None:
    """Kept for callers of the earlier name: the export redactor."""
    return redact_export(text)
