"""The redactor itself: every secret shape in every wrapping, the Python/SQL twins agree, the
prefilter never misses, JSON stays JSON, and what a responder needs is kept."""

from __future__ import annotations

import json
import random
import re

import duckdb
import pytest
import secretcorpus as sc

from oncall.redact import PASSES, PREFILTER, REDACTED, redact_text, sql_redact

NEEDLES = sc.needles()


def _phoenix_any(v: str | list[str]) -> dict[str, object]:
    """An AnyValue as Phoenix's /spans/otlpv1 writes it: every oneof field, the unset ones null."""
    out: dict[str, object] = dict.fromkeys(("array_value", "bool_value", "bytes_value", "double_value", "int_value",
                                            "kvlist_value", "string_value"))
    if isinstance(v, list):
        out["array_value"] = {"values": [_phoenix_any(x) for x in v]}
    else:
        out["string_value"] = v
    return out


def _wrappings(name: str, value: str) -> list[str]:
    """`value` under `name` in every record shape an importer reads."""
    obj = {name: value, "n": 1}
    return [
        json.dumps(obj),                                                     # JSON
        json.dumps(obj, indent=2),
        json.dumps({"outer": json.dumps(obj)}),                              # JSON inside a JSON string
        json.dumps({"outer": json.dumps({"inner": json.dumps(obj)})}),       # two levels down
        json.dumps({"key": f"http.request.header.{name}", "value": {"stringValue": value}}),     # OTLP
        json.dumps({"key": f"http.request.header.{name}", "value": {"arrayValue": {"values": [
            {"stringValue": value}, {"stringValue": "b]c"}]}}}),
        json.dumps({"key": f"app.{name}", "value": {"string_value": value}}),                    # snake_case OTLP
        json.dumps({"name": name.title(), "value": value}),                  # HAR-style header lists
        json.dumps({"key": f"app.{name}", "value": _phoenix_any(value)}),    # Phoenix otlpv1: every oneof field
        json.dumps({"key": f"app.{name}", "value": _phoenix_any([value, "b]c"])}),
        # the key/value shapes inside a JSON string (attributes kept as a JSON-encoded string)
        json.dumps({"attrs": json.dumps([{"key": f"app.{name}", "value": {"stringValue": value}},
                                         {"key": "n", "value": {"intValue": 1}}])}),
        json.dumps({"attrs": json.dumps({"key": f"app.{name}", "value": _phoenix_any(value)}, indent=2)}),
        json.dumps({"attrs": json.dumps({"key": f"app.{name}", "value": [value, "x"]})}),
        json.dumps({"attrs": json.dumps({"key": f"app.{name}", "value": {"arrayValue": {"values": [
            {"stringValue": value}, {"stringValue": "b]c"}]}}})}),
        json.dumps({"headers": json.dumps([{"name": name.title(), "value": value}], indent=1)}),
        json.dumps({name: [value, "x"]}),                                    # string[] attribute, flattened
        json.dumps({"outer": json.dumps({name: [value]})}),
        repr(obj),                                                           # a Python repr
        json.dumps({"s": repr(obj)}),
        f"{name}={value}\n",                                                 # env / ini
        f"https://h.example/p?x=1&{name}={value}&y=2",                       # query string
        f"{name.title()}: {value}\r\n",                                      # HTTP header
        f'"{name}","{value}"\n',                                             # not a name rule (CSV row)
    ]


QUERY_NAMES = ("api_key", "token", "access_token", "sig", "password", "client_secret", "x-api-key")


@pytest.mark.parametrize("name", sorted(sc.NAMED))
def test_named_values_go_in_every_shape(name: str) -> None:
    value = sc.NAMED[name]
    for text in _wrappings(name, value)[:-1]:
        if "\n" in value and ("=" in text.split(value)[0][-3:] or text.startswith(name.title() + ":")):
            continue  # a multi-line value in a one-line shape is not that shape
        if ";" in value and ("?" in text or "=" in text.split(value)[0][-3:]) and name not in ("cookie", "set-cookie"):
            continue
        out = redact_text(text) or ""
        left = [p for p in sc._parts(value) if p in out or json.dumps(p)[1:-1] in out]
        assert not left, (name, text, out)
        if text.lstrip().startswith(("{", "[")) and text.lstrip()[1:2] != "'":
            json.loads(out)  # still JSON


@pytest.mark.parametrize("kind", sorted(sc.SHAPED))
def test_shaped_secrets_go_anywhere(kind: str) -> None:
    secret = sc.SHAPED[kind]
    texts = [f"see {secret} now", json.dumps({"note": f"see {secret} now"}),
             json.dumps({"a": json.dumps({"note": secret})}), repr({"note": secret}),
             json.dumps({"key": "app.note", "value": {"stringValue": secret}}),
             secret.upper() if kind.startswith(("bearer", "basic")) else secret]
    for text in texts:
        out = redact_text(text) or ""
        left = [p for p in sc._parts(secret) if p in out or json.dumps(p)[1:-1] in out]
        assert not left, (kind, text, out)
        if text.startswith("{\""):
            json.loads(out)


KEEP = [
    '{"gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 7, "max_tokens": 512}',
    '{"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "token_count": 9, "tokens": 4}',
    '{"usage": {"prompt_tokens_details": {"cached_tokens": 0}}, "finish_reason": "stop", "token": 5}',
    "max_tokens=512&temperature=0.2&token=5&top_p=1",
    "a basic understanding of Basic HTTP auth; the bearer of bad news; bearer responsibilities",
    "the task-management-dashboard-v2-production-eu service; risk-assessment-framework-2026-q4",
    "id chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT, trace 4bf92f3577b34da6a3ce929d0e0e4736, span 00f067aa0ba902b7",
    "2026-11-30T10:00:00Z 2026-11-30 10:00:00.123+00:00 epoch 1764496800 and 1764496800123",
    "cost $0.000373 for 1,234 tokens; 3.5% of the budget; version 1.2.3-rc.1",
    "http://localhost:8080/v1/chat/completions and https://api.openai.com/v1/responses?stream=true",
    "user alice@example.com in session sess-42 for tenant acme (user_id u-42)",
    '{"type": "oauth", "auth": 3, "password_reset_url": "/reset", "has_credentials": false, "is_secret": true}',
    "Authorization header missing; the API key was not set; set OPENAI_API_KEY in your environment",
    '{"signature": "(messages: list[dict]) -> str", "tokenizer": "cl100k_base", "secret_name": null}',
    "AKIA is the prefix of an AWS key id; sk- starts an OpenAI key; eyJ starts a JWT",
]


@pytest.mark.parametrize("text", KEEP)
def test_what_a_responder_needs_is_kept(text: str) -> None:
    assert redact_text(text) == text


def _corpus() -> list[str]:
    """Every document of the secret corpus, the wrappings, the keep-list and random windows of them
    (partial secrets, cut escapes: the edges where the engines and the prefilter could part)."""
    docs = [sc.free_text(), json.dumps(sc.metadata()), json.dumps(sc.otel_attributes(), default=list),
            sc.otlp_jsonl_text(), json.dumps(sc.bare_values(json.loads(sc.otlp_jsonl_text().splitlines()[0]))),
            *KEEP]
    docs += [t for n, v in sc.NAMED.items() for t in _wrappings(n, v)]
    docs += [t for n in QUERY_NAMES for t in _wrappings(n, "v" + "x1" * 9)]
    rng = random.Random(7)
    windows = []
    for d in docs:
        for _ in range(40):
            a = rng.randrange(len(d))
            windows.append(d[a:a + rng.choice([8, 20, 60, 200, 1000])])
    return docs + windows + [d.upper() for d in docs[:8]] + [d.lower() for d in docs[:8]]


CORPUS = _corpus()


def test_python_and_sql_twins_agree_on_the_corpus() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, s VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(CORPUS)))
    got = dict(con.execute(f"SELECT i, {sql_redact('s')} FROM t").fetchall())
    differ = [(CORPUS[i][:200], redact_text(CORPUS[i])[:200], got[i][:200])
              for i in range(len(CORPUS)) if got[i] != redact_text(CORPUS[i])]
    assert differ == []
    assert sum(REDACTED in v for v in got.values()) > 1000  # the corpus is dirty enough to mean something


def test_the_prefilter_never_misses() -> None:
    """Wherever any pass would change the text, the prefilter matches it (else a secret slips by)."""
    passes = [(re.compile(p, re.ASCII), r) for p, r in PASSES]
    pre = re.compile(PREFILTER, re.ASCII)
    changed = 0
    for s in CORPUS:
        out = s
        for rx, repl in passes:
            out = rx.sub(repl, out)
        if out != s:
            changed += 1
            assert pre.search(s), s[:300]
    assert changed > 500


def test_the_prefilter_passes_clean_records_by() -> None:
    import tracegen

    clean = tracegen.otlp_lines(0, 20) + tracegen.generic_lines(0, 20)
    assert [s[:80] for s in clean if re.search(PREFILTER, s, re.ASCII)] == []


def test_redaction_keeps_json_valid_and_is_idempotent() -> None:
    for s in CORPUS:
        out = redact_text(s)
        assert redact_text(out) == out
        try:
            json.loads(s)
        except ValueError:
            continue
        json.loads(out)  # a valid record stays valid after redaction


def test_every_rule_is_exercised_by_the_corpus() -> None:
    """A new pattern needs corpus entries: then the twin and prefilter tests above cover it."""
    from oncall.redact import RULES

    pre = re.compile(PREFILTER, re.ASCII)
    for alts, _ in RULES:
        for alt in alts:
            rx = re.compile(alt, re.ASCII)
            hits = [m.group(0) for s in CORPUS for m in [rx.search(s)] if m]
            assert hits, f"no corpus entry for {alt[:80]}"
            assert all(pre.search(h) for h in hits)
