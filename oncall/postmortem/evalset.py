"""The lesson becomes a gate: labelled requests exported as a regression eval set.

`oncall export evalset [FILTER] --format promptfoo|inspect|jsonl --out DIR` writes each selected
request (by default every labelled one) with its full conversation, the responder's verdict and
note, the original output (and, for good ones, the output as the reference), and the checks that
would have caught the incident, in the same definitions as `compare` (oncall/query/quality.py):

- `json_valid` and `key_set` when the feature's good outputs are JSON objects (the expected key set
  is the most common one among them);
- `no_refusal` when the good outputs are not refusals;
- `length` bounds from the good outputs (half the shortest, twice the longest);
- `contains` / `not_contains` from the label note: `must contain "X"`, `must not contain "Y"`
  (also `should say` / `should not say`).

"Good outputs" are the feature's requests labelled good, else its successful requests from before
the first bad-labelled request in the set. The files are written for the tools to run as they are
(promptfoo from npm, Inspect from PyPI), against any OpenAI-compatible endpoint: nothing in them
imports oncall. Everything exported goes through the export redactor (secrets and PII).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.fileio import write_atomic
from oncall.query.ids import request_key_sql
from oncall.query.labels import LATEST_LABELS, REQUEST_NOTES
from oncall.query.quality import REFUSAL_PATTERN, REFUSAL_WINDOW, is_json, is_refusal, key_set

FORMATS = ("promptfoo", "inspect", "jsonl")
_KIND = {"promptfoo": "a promptfoo eval set", "inspect": "an Inspect eval set", "jsonl": "a JSONL eval set"}
DEFAULT_FILTER = "label=bad,good"
REFERENCE_ROWS = 200
_NOTE_RULES = [
    (re.compile(r"(?:must|should)\s+not\s+(?:contain|say|mention)\s+[\"“']([^\"”']+)[\"”']", re.I), "not_contains"),
    (re.compile(r"(?:must|should)\s+(?:contain|say|mention)\s+[\"“']([^\"”']+)[\"”']", re.I), "contains"),
]


def evalset_kind(fmt: str) -> str:
    """"an Inspect eval set", "a promptfoo eval set": the format named as people write it."""
    return _KIND.get(fmt, f"a {fmt} eval set")


class EvalsetError(ValueError):
    """Nothing to export, or a bad format or destination; the message says which."""


@dataclass
class Case:
    id: str
    request: str
    label: str | None
    note: str | None
    messages: list[dict[str, Any]]
    original_output: str
    reference: str | None
    feature: str | None
    model: str | None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "request": self.request, "label": self.label, "note": self.note,
                "feature": self.feature, "model": self.model, "messages": self.messages,
                "original_output": self.original_output, "reference": self.reference, "checks": self.checks}


def _redact(text: Any) -> Any:
    from oncall.redact import redact_export

    if isinstance(text, str):
        return redact_export(text)
    if isinstance(text, list):
        return [_redact(v) for v in text]
    if isinstance(text, dict):
        return {k: _redact(v) for k, v in text.items()}
    return text


def note_checks(note: str | None) -> list[dict[str, Any]]:
    """contains / not_contains checks written in a label note."""
    out = []
    for rx, kind in _NOTE_RULES:
        for m in rx.finditer(note or ""):
            out.append({"type": kind, "value": m.group(1).strip()})
            note = (note or "").replace(m.group(0), " ")  # a not-contains phrase is not also a contains
    return out


def reference_checks(good: list[str]) -> list[dict[str, Any]]:
    """What the good outputs have in common, as checks (compare's definitions)."""
    good = [g for g in good if g]
    if not good:
        return []
    checks: list[dict[str, Any]] = []
    keysets = Counter(k for k in (key_set(g) for g in good) if k is not None)
    if keysets and sum(keysets.values()) >= 0.8 * len(good):
        checks.append({"type": "json_valid"})
        expected, _ = keysets.most_common(1)[0]
        checks.append({"type": "key_set", "value": expected.split(",") if expected else []})
    elif sum(1 for g in good if is_json(g)) >= 0.8 * len(good):
        checks.append({"type": "json_valid"})
    if not any(is_refusal(g) for g in good):
        checks.append({"type": "no_refusal"})
    lengths = [len(g) for g in good]
    checks.append({"type": "length", "min": max(1, min(lengths) // 2), "max": max(lengths) * 2})
    return checks


def build_cases(con: Any, flt: str | None = None) -> list[Case]:
    """The eval set's cases: the requests `flt` matches (default: every labelled request, and every
    request the responder wrote a note on), each with its latest label and every note on it — the
    label's own and those written on the request in the console — whose "must (not) contain" phrases
    become checks."""
    from oncall.query.filters import compile_filter

    c = compile_filter(con, flt or DEFAULT_FILTER, alias="s")
    where = c.where if flt else f"(({c.where}) OR s.span_pk IN (SELECT span_pk FROM {REQUEST_NOTES}))"
    rows = con.execute(
        f"""SELECT s.span_pk, {request_key_sql('s')}, s.input_messages, s.output_text,
                   s.feature, coalesce(s.served_model, s.model), s.start_time, l.label,
                   nullif(concat_ws('\n', l.note, n.notes), '') AS note
            FROM spans s LEFT JOIN {LATEST_LABELS} l ON l.span_pk = s.span_pk
                         LEFT JOIN {REQUEST_NOTES} n ON n.span_pk = s.span_pk
            WHERE {where} AND s.input_messages IS NOT NULL
            ORDER BY s.start_time, s.span_pk""", c.params).fetchall()
    if not rows:
        raise EvalsetError(f"no request matches {flt or DEFAULT_FILTER!r} with a captured conversation; label some "
                           "requests (g/b in the reader, or `oncall label ID bad --note …`) or pass a filter")
    first_bad = min((r[6] for r in rows if r[7] == "bad"), default=None)
    refs: dict[str | None, list[str]] = {}
    cases = []
    for pk, request, messages, output, feature, model, _start, label, note in rows:
        if feature not in refs:
            refs[feature] = _good_outputs(con, feature, first_bad)
        checks = reference_checks(refs[feature]) + note_checks(note)
        msgs = json.loads(messages) if isinstance(messages, str) else (messages or [])
        cases.append(Case(id=f"oncall-{pk}", request=str(request), label=label, note=_redact(note),
                          messages=_redact(msgs), original_output=_redact(output or ""),
                          reference=_redact(output) if label == "good" else None, feature=feature, model=model,
                          checks=checks))
    return cases


def _good_outputs(con: Any, feature: str | None, before: Any) -> list[str]:
    feat = "s.feature IS NOT DISTINCT FROM ?"
    good = [r[0] for r in con.execute(
        f"""SELECT s.output_text FROM spans s JOIN {LATEST_LABELS} l ON l.span_pk = s.span_pk
            WHERE l.label = 'good' AND {feat} AND s.kind = 'llm' AND s.output_text IS NOT NULL LIMIT ?""",
        [feature, REFERENCE_ROWS]).fetchall()]
    if good or before is None:
        return good
    return [r[0] for r in con.execute(
        f"""SELECT s.output_text FROM spans s WHERE {feat} AND s.kind = 'llm' AND s.status IS DISTINCT FROM 'error'
            AND s.output_text IS NOT NULL AND s.start_time < ? ORDER BY s.start_time DESC LIMIT ?""",
        [feature, before, REFERENCE_ROWS]).fetchall()]


# -- writers -----------------------------------------------------------------------------------------

def write_evalset(cases: list[Case], fmt: str, out: Path, *, model: str | None = None) -> list[Path]:
    if fmt not in FORMATS:
        raise EvalsetError(f"unknown eval-set format {fmt!r}; formats: {', '.join(FORMATS)}")
    if out.exists() and not out.is_dir():
        raise EvalsetError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        seen = Counter(c.model for c in cases if c.model)
        model = seen.most_common(1)[0][0] if seen else "gpt-4o-mini"
    if fmt == "jsonl":
        return [_write(out / "evalset.jsonl", "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n"
                                                      for c in cases))]
    if fmt == "promptfoo":
        return _promptfoo(cases, out, model)
    return _inspect(cases, out, model)


def export_evalset(store: Any, flt: str | None, fmt: str, out: Path, *,
                   model: str | None = None) -> tuple[list[Case], list[Path]]:
    """`oncall export evalset` and the console's export: the cases written to `out`, and the export
    recorded in the trail (the timeline and the postmortem say it) unless the incident is read-only."""
    cases = build_cases(store.cursor(), flt)
    files = write_evalset(cases, fmt, out, model=model)
    if not store.read_only:
        store.record_event("export", f"exported {len(cases)} request(s) as {evalset_kind(fmt)} to {out}",
                           {"format": fmt, "out": str(out), "cases": len(cases), "filter": flt or ""})
    return cases, files


def _write(path: Path, text: str) -> Path:
    return write_atomic(path, text, "writing the eval set")


# The same definitions as oncall/query/quality.py, in JavaScript for promptfoo's `javascript` asserts.
_JS_PRELUDE = (
    "const text = String(output); "
    "const jt = text.trim().replace(/^```[a-zA-Z]*\\s*|\\s*```$/g, ''); "
    "let parsed, ok = false; try { parsed = JSON.parse(jt); ok = true; } catch (e) { ok = false; } "
)


def _js(check: dict[str, Any]) -> dict[str, Any]:
    t = check["type"]
    if t == "json_valid":
        body = "return ok;"
    elif t == "key_set":
        want = json.dumps(sorted(check["value"]))
        body = ("return ok && parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && "
                f"JSON.stringify(Object.keys(parsed).sort()) === JSON.stringify({want});")
    elif t == "no_refusal":
        body = (f"return !new RegExp({json.dumps(REFUSAL_PATTERN)}).test(text.slice(0, {REFUSAL_WINDOW})"
                ".toLowerCase());")
    elif t == "length":
        body = f"return text.length >= {int(check['min'])} && text.length <= {int(check['max'])};"
    elif t == "contains":
        return {"type": "icontains", "value": check["value"]}
    elif t == "not_contains":
        return {"type": "not-icontains", "value": check["value"]}
    else:
        raise EvalsetError(f"no promptfoo form for check {t!r}")
    return {"type": "javascript", "value": "(() => { " + _JS_PRELUDE + body + " })()",
            "metric": t}


def _promptfoo(cases: list[Case], out: Path, model: str) -> list[Path]:
    from ruamel.yaml import YAML

    config = {
        "description": "oncall regression eval set: the incident's labelled requests and the checks that "
                       "would have caught it",
        "prompts": [{"id": "conversation", "raw": "{{ messages | dump }}"}],
        # The OpenAI provider reads OPENAI_BASE_URL and OPENAI_API_KEY: point them at any
        # OpenAI-compatible endpoint (a LiteLLM proxy, vLLM, the candidate model).
        "providers": [{"id": f"openai:chat:{model}", "config": {"temperature": 0}}],
        "tests": [{"description": f"{c.id} ({c.label or 'unlabelled'}) request {c.request}",
                   "vars": {"messages": c.messages},
                   "assert": [_js(ch) for ch in c.checks],
                   "metadata": {"request": c.request, "label": c.label, "note": c.note, "feature": c.feature}}
                  for c in cases],
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    path = out / "promptfooconfig.yaml"
    import io

    buf = io.StringIO()
    buf.write("# Written by `oncall export evalset`. Run: npx promptfoo eval -c promptfooconfig.yaml\n")
    yaml.dump(config, buf)
    return [_write(path, buf.getvalue())]


_INSPECT_TASK = '''"""Regression eval set written by `oncall export evalset` (Inspect AI).

Run:  inspect eval task.py --model openai-api/NAME/MODEL   (with NAME_BASE_URL and NAME_API_KEY set)
  or: inspect eval task.py --model openai/MODEL            (OPENAI_BASE_URL, OPENAI_API_KEY)

Each sample is a conversation of the incident; the scorer applies the checks that would have caught
it (the definitions of oncall's compare: JSON validity after stripping a Markdown fence, the expected
top-level key set, no stock refusal in the first {window} characters, length bounds, contains /
not-contains from the responder's notes). Self-contained: it does not import oncall.
"""

import json
import re
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import Sample, json_dataset
from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser
from inspect_ai.scorer import CORRECT, INCORRECT, Score, accuracy, scorer
from inspect_ai.solver import generate
from inspect_ai.tool import ToolCall

REFUSAL = re.compile({refusal!r})
FENCE = re.compile(r"^```[a-zA-Z]*\\s*|\\s*```$")


def failed_checks(text, checks):
    jt = FENCE.sub("", text.strip())
    try:
        parsed, ok = json.loads(jt), True
    except ValueError:
        parsed, ok = None, False
    failed = []
    for c in checks:
        t = c["type"]
        if t == "json_valid" and not ok:
            failed.append("not valid JSON")
        elif t == "key_set" and not (ok and isinstance(parsed, dict) and sorted(parsed) == sorted(c["value"])):
            failed.append("keys are not " + ",".join(sorted(c["value"])))
        elif t == "no_refusal" and REFUSAL.search(text[:{window}].lower()):
            failed.append("a refusal")
        elif t == "length" and not (c["min"] <= len(text) <= c["max"]):
            failed.append(f"length {{len(text)}} outside {{c['min']}}..{{c['max']}}")
        elif t == "contains" and c["value"].lower() not in text.lower():
            failed.append(f"does not contain {{c['value']!r}}")
        elif t == "not_contains" and c["value"].lower() in text.lower():
            failed.append(f"contains {{c['value']!r}}")
    return failed


@scorer(metrics=[accuracy()])
def oncall_checks():
    async def score(state, target):
        text = state.output.completion or ""
        failed = failed_checks(text, state.metadata.get("checks", []))
        return Score(value=INCORRECT if failed else CORRECT, answer=text,
                     explanation="; ".join(failed) or "all checks passed")
    return score


def _text(content):
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _message(m):
    """OpenAI chat format (what oncall stores) as Inspect's messages."""
    role, text = m.get("role"), _text(m.get("content"))
    if role == "system" or role == "developer":
        return ChatMessageSystem(content=text)
    if role == "assistant":
        calls = []
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {{}}
            args = fn.get("arguments") or "{{}}"
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except ValueError:
                args = {{"raw": args}}
            calls.append(ToolCall(id=c.get("id") or "call", function=fn.get("name") or "tool", arguments=args))
        return ChatMessageAssistant(content=text, tool_calls=calls or None)
    if role == "tool":
        return ChatMessageTool(content=text, tool_call_id=m.get("tool_call_id"))
    return ChatMessageUser(content=text)


def record_to_sample(record):
    return Sample(input=[_message(m) for m in record["messages"]], target=record.get("reference") or "", id=record["id"],
                  metadata={{"checks": record["checks"], "request": record["request"], "label": record["label"],
                            "note": record.get("note")}})


@task
def oncall_regression():
    return Task(dataset=json_dataset(str(Path(__file__).parent / "dataset.jsonl"), record_to_sample),
                solver=[generate()], scorer=oncall_checks())
'''


def _inspect(cases: list[Case], out: Path, model: str) -> list[Path]:
    data = "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in cases)
    task_py = _INSPECT_TASK.format(refusal=REFUSAL_PATTERN, window=REFUSAL_WINDOW)
    return [_write(out / "dataset.jsonl", data), _write(out / "task.py", task_py)]
