"""Output-quality signals, as SQL expressions over `spans` (and Python twins the tests pin them to).

These are heuristics a responder can reason about, not a judge:

- **refusal**: the first 160 characters of the output contain a stock refusal phrase ("I'm sorry",
  "I can't help/assist", "I'm unable to", "as an AI", "I must decline"). Near the start only: a
  helpful answer may say "sorry for the wait" at the end.
- **JSON valid**: the output, trimmed and with a surrounding Markdown ```json fence removed, parses
  as JSON. Rates are reported only for cohorts that mostly produce JSON (a prose bot is not
  "0 % valid"), see `compare`.
- **JSON key set**: the sorted top-level keys of a valid JSON object output; *key drift* is the share
  of a cohort's JSON outputs whose key set never occurs in the baseline (a renamed or dropped key).
- **output length**: characters of the output text.
Only successful calls with an output count towards them.
"""

from __future__ import annotations

import json
import re

REFUSAL_PATTERN = (r"(i'm sorry|i am sorry|i apologi[sz]e, but|i can't help|i cannot help|i can't assist|"
                   r"i cannot assist|i can't provide|i cannot provide|i'm unable to|i am unable to|"
                   r"i won't be able|as an ai\b|i must decline|i'm not able to help|i am not able to help)")
REFUSAL_WINDOW = 160
_FENCE = r"^```[a-zA-Z]*\s*|\s*```$"


def has_output(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    return f"({a}status IS DISTINCT FROM 'error' AND {a}output_text IS NOT NULL)"


def _col(alias: str, name: str) -> str:
    return f"{alias}.{name}" if alias else name


def refusal_sql(alias: str = "") -> str:
    return refusal_sql_of(_col(alias, "output_text"))


def refusal_sql_of(text: str) -> str:
    """The refusal check on any text expression (the metric registry renders its own columns)."""
    return (f"regexp_matches(lower(left({text}, {REFUSAL_WINDOW})), "
            f"'{REFUSAL_PATTERN.replace(chr(39), chr(39) * 2)}')")


def json_text_sql(alias: str = "") -> str:
    return json_text_sql_of(_col(alias, "output_text"))


def json_text_sql_of(text: str) -> str:
    return f"regexp_replace(trim({text}), '{_FENCE}', '', 'g')"


# Every JSON text starts, after whitespace, with one of these characters (or a ``` fence). Testing
# that first lets prose skip the fence rewrite and the parse: compare on 125k prose outputs spent
# 320 ms on JSON validity, 88 ms with the test. Only a prefilter: the result is unchanged.
_JSON_START = r'^\s*[\[{"0-9tfn`-]'
_OBJECT_START = r"^\s*[{`]"


def json_valid_sql(alias: str = "") -> str:
    return json_valid_sql_of(_col(alias, "output_text"))


def json_valid_sql_of(text: str) -> str:
    return (f"CASE WHEN regexp_matches({text}, '{_JSON_START}') "
            f"THEN coalesce(json_valid({json_text_sql_of(text)}), false) ELSE false END")


def key_set_sql(alias: str = "") -> str:
    """Sorted top-level keys joined by ',' for valid JSON objects; NULL otherwise."""
    return key_set_sql_of(_col(alias, "output_text"))


def key_set_sql_of(text: str) -> str:
    j = json_text_sql_of(text)
    return (f"CASE WHEN regexp_matches({text}, '{_OBJECT_START}') AND json_valid({j}) "
            f"AND json_type({j}) = 'OBJECT' THEN array_to_string(list_sort(json_keys({j})), ',') END")


# -- Python twins (tests check that SQL and Python agree) ---------------------------------------------
_refusal_re = re.compile(REFUSAL_PATTERN)
_fence_re = re.compile(_FENCE)


def is_refusal(text: str | None) -> bool:
    return bool(text) and _refusal_re.search(text[:REFUSAL_WINDOW].lower()) is not None


def _json_text(text: str) -> str:
    return _fence_re.sub("", text.strip())


def is_json(text: str | None) -> bool:
    if text is None:
        return False
    try:
        json.loads(_json_text(text))
    except ValueError:
        return False
    return True


def key_set(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        v = json.loads(_json_text(text))
    except ValueError:
        return None
    return ",".join(sorted(v)) if isinstance(v, dict) else None
