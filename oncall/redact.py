"""Secret redaction: API keys, bearer tokens and credential-named fields never reach the database,
the audit log or an export.

The same patterns run in DuckDB (RE2, in SQL at load time, so the bulk path stays in C) and in
Python (exports and the postmortem). They are deliberately simple enough to mean the same thing in
both engines.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# Values that are credentials wherever they appear.
VALUE_PATTERNS: list[str] = [
    r"sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    r"(?:Bearer|bearer|BEARER)\s+[A-Za-z0-9\-._~+/]{16,}=*",
    r"AKIA[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"xox[abprs]-[A-Za-z0-9\-]{10,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"pk-lf-[0-9a-fA-F\-]{20,}|sk-lf-[0-9a-fA-F\-]{20,}",
    r"lsv2_(?:pt|sk)_[A-Za-z0-9_]{20,}",
]

# JSON fields whose *name* says the value is a credential (`"authorization": "…"`,
# `"ai.request.headers.x-api-key": "…"`). Names ending in _hash/_alias/_id are not secrets.
_KEY_NAMES = (
    r"authorization|proxy-authorization|x-api-key|api[_\-]?key|apikey|openai[_\-]api[_\-]key|"
    r"password|passwd|client[_\-]secret|secret[_\-]key|secret|access[_\-]token|refresh[_\-]token|"
    r"master[_\-]key|private[_\-]key|cookie|set-cookie"
)
KEY_VALUE_PATTERN = (
    r'("(?:[^"\\]*[._\-])?(?i:' + _KEY_NAMES + r')"\s*:\s*")(?:[^"\\]|\\.)*(")'
)

_value_re = re.compile("|".join(f"(?:{p})" for p in VALUE_PATTERNS))
_kv_re = re.compile(KEY_VALUE_PATTERN)


def redact_text(text: str | None) -> str | None:
    """Replace credentials in `text` (plain or JSON) with [REDACTED]."""
    if not text:
        return text
    text = _kv_re.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    return _value_re.sub(REDACTED, text)


# Every match of VALUE_PATTERNS or KEY_VALUE_PATTERN contains one of these; clean text (almost all of
# it) pays one fast scan instead of two rewriting passes. Key names must be followed by a string value,
# so `"input_tokens": 12` does not trip it.
PREFILTER = (r"(?i:sk-|bearer|akia|gh[pousr]_|xox[abprs]-|aiza|pk-lf-|sk-lf-|lsv2_|"
             r"(?:" + _KEY_NAMES + r')"\s*:\s*")')


def sql_redact(expr: str) -> str:
    """A DuckDB expression that redacts `expr` the way redact_text() does."""
    values = "|".join(f"(?:{p})" for p in VALUE_PATTERNS)
    kv = KEY_VALUE_PATTERN.replace("'", "''")
    values = values.replace("'", "''")
    pre = PREFILTER.replace("'", "''")
    return (
        f"CASE WHEN regexp_matches({expr}, '{pre}') THEN "
        f"regexp_replace(regexp_replace({expr}, '{kv}', '\\1{REDACTED}\\2', 'g'), "
        f"'{values}', '{REDACTED}', 'g') ELSE {expr} END"
    )


_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_CARD_RE = re.compile(r"\b(?:\d[ \-]?){13,19}\b")


def redact_pii(text: str | None) -> str | None:
    """Secrets plus obvious PII (emails, card-like numbers) for exports such as the postmortem."""
    if not text:
        return text
    text = redact_text(text) or ""
    text = _EMAIL_RE.sub("[EMAIL]", text)
    return _CARD_RE.sub(lambda m: "[CARD]" if _luhn_ok(m.group(0)) else m.group(0), text)


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
