"""An optional machine-written summary for the postmortem draft (`--summarize-with TARGET`).

The computed draft stays the source of truth. The model is given the draft's computed facts (causes,
impact, timeline, replays, actions, blast radius — never the quoted evidence or the responders' notes,
which may hold untrusted production text that could steer it) and asked for a short paragraph.
Its answer is then checked: every number it quotes must appear in what it was given. An answer that
quotes a number it was not given is rejected, not repaired. Whatever happens — a target that is
down, out of quota, slow, or answers with invented numbers — the draft is returned intact; the
summary is added only when it passed, under a heading that marks it as a machine draft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from oncall.redact import redact_export

# Sections of the draft the model may read: computed numbers and the responder's own records.
MAX_PROMPT_CHARS = 24_000  # a few thousand tokens: the summary needs the headline numbers, not every row
MAX_SUMMARY_TOKENS = 400
HEADING = "### Machine-drafted summary"

SYSTEM_PROMPT = """You write the opening paragraph of an incident postmortem for engineers.
You are given facts about an incident, computed from its database.
Write 3 to 6 plain sentences: what broke, for whom, how big, what was done, whether it recovered.
Rules:
- Quote numbers, times and identifiers exactly as they are written in the facts; never compute,
  round, estimate or add a number that is not written there.
- Do not guess the root cause; say it is still to be determined if the facts do not state it.
- Plain text only: no headings, lists, tables, links or code."""

# A number as written: 1,234 / 12.5 / 0.0123 / 14 (in 06:14) / 3 (in 3x). Signs and units are not part of it.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?|(?<=[^\W\d_])\d+(?:\.\d+)?")
_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
    "thousand": 1000, "million": 1_000_000, "dozen": 12, "dozens": 12, "hundreds": 100, "thousands": 1000,
    "millions": 1_000_000, "double": 2, "doubled": 2, "triple": 3, "tripled": 3, "half": 0.5, "twice": 2,
    "thrice": 3, "quadrupled": 4,
}
_WORD = re.compile(r"[A-Za-z]+")
# Dates and clock times are checked whole: the 3 in 2026-12-03 or the 14 in 06:14 is not a count the
# summary may then quote as "3 tenants" or "cost tripled".
_DATETIME = re.compile(r"(?<![\w.:-])(?:(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d)(:\d\d(?:\.\d+)?)?Z?)?"
                       r"|(\d{1,2}:\d\d)(:\d\d(?:\.\d+)?)?)(?![\w:])")
# A name with digits in it (gpt-4o, text-embedding-3-small, help-articles-v42, v13): its digits are part
# of the name, not a quantity a summary may then say in words ("tripled" is not supported by a 3 in a model name).
_NAME = re.compile(r"(?<![\w.-])[A-Za-z][\w.-]*\d[\w.-]*")
# Characters that would turn the model's prose into live Markdown or HTML in the draft.
_PROSE_ESCAPE = re.compile(r"([\\`*_\[\]<>|#~])")


class SummaryError(ValueError):
    """The summary cannot even be attempted (unknown target, no key): the command refuses up front."""


@dataclass
class SummaryResult:
    """What happened to the machine summary; `status` is included | rejected | failed."""

    target: str
    model: str
    status: str
    text: str | None = None
    error: str | None = None
    unsupported: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "model": self.model, "status": self.status, "text": self.text,
                "error": self.error, "unsupported_numbers": self.unsupported, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost": self.cost}


def given_facts(draft: Any) -> str:
    """What the model reads: the draft's computed facts and its timeline, as plain lines, with the
    numbers formatted as the draft prints them. Responders' free text (label notes, notes) and the
    quoted outputs are left out: they may hold pasted production text that could steer the model,
    and any number in them would pass the check below."""
    from oncall.postmortem.draft import _num

    f = draft.facts
    lines = ["Causes found in the data:"]
    for c in f.get("causes") or []:
        lines.append(f"- {c.get('description')} (from {c.get('began_at')}"
                     + (f" to {c['ended_at']}" if c.get("ended_at") else "")
                     + f"; {c.get('affected_requests')} requests affected)")
    lines.append("Impact:")
    for i in f.get("impact") or []:
        er, cpr = i.get("error_rate") or {}, i.get("cost_per_request") or {}
        lines.append(f"- {i.get('cause')}: {i.get('requests')} requests, {i.get('users', 0)} users, "
                     f"{i.get('sessions', 0)} sessions, {i.get('tenants', 0)} tenants"
                     + (f", lasting {i['duration_minutes']} minutes" if i.get("duration_minutes") else "")
                     + f"; error rate {_num(er.get('before'), 'error_rate')} -> {_num(er.get('after'), 'error_rate')}"
                     f"; cost per request {_num(cpr.get('before'), 'cost')} -> {_num(cpr.get('after'), 'cost')}")
    lines.append("Timeline (UTC):")
    for e in draft.entries:
        lines.append(f"- {e.at} {e.source} {e.kind}: {_entry_text(e)}")
    if f.get("replays"):
        lines.append("Replays of the incident's requests:")
        lines += [f"- replay run {r['run_id']}: {r.get('headline')}" for r in f["replays"]]
    if f.get("actions"):
        lines.append("Actions taken through oncall:")
        for a in f["actions"]:
            lines.append(f"- action {a.get('action_id')} at {a.get('at_time')}: {a.get('op')} on {a.get('target')}, "
                         f"{a.get('status')}" + (f" (undo of action {a['undo_of']})" if a.get("undo_of") else "")
                         + (f", runbook {a['runbook']}" if a.get("runbook") else ""))
    if f.get("blast_radius"):
        lines.append("Blast radius:")
        for b in f["blast_radius"]:
            r = b.get("result") or {}
            lines.append(f"- {b.get('cause')}: {r.get('contaminated_sessions')} of {r.get('sessions_total')} sessions "
                         f"carried bad outputs; after the mitigation: {r.get('verdict')}")
    text = "\n".join(lines)
    return redact_export(text[:MAX_PROMPT_CHARS]) or ""


def _entry_text(e: Any) -> str:
    if e.kind == "label":
        return f"labelled {e.detail.get('label') or e.detail.get('verdict') or ''} request {e.ref.get('request')}".strip()
    if e.kind == "note":
        return "the responder wrote a note"
    if e.kind == "detection":
        return "first response by the responder"
    return str(e.summary)


def numbers_in(text: str) -> set[float]:
    """Every number written in `text` outside dates and clock times, as values (1,234 and 1234.0 are
    the same number)."""
    out: set[float] = set()
    for m in _NUMBER.finditer(_DATETIME.sub(" ", text)):
        try:
            out.add(float(m.group(0).replace(",", "")))
        except ValueError:
            continue
    return out


def _datetimes_in(text: str) -> set[str]:
    """The dates and clock times written in `text`, in the forms a summary may quote them: the whole
    timestamp, its date, its HH:MM and HH:MM:SS (a clock time of 6:14 is 06:14)."""
    out: set[str] = set()
    for m in _DATETIME.finditer(text):
        date, hm, sec, hm2, sec2 = m.groups()
        out.add(m.group(0))
        if date:
            out.add(date)
        clock = hm or (hm2.zfill(5) if hm2 else None)
        if clock:
            out.add(clock)
            if sec or sec2:
                out.add(clock + (sec or sec2)[:3])
    return out


def unsupported_numbers(summary: str, given: str) -> list[str]:
    """The numbers (in digits or words), dates and times the summary quotes that `given` does not contain."""
    allowed_times = _datetimes_in(given)
    bad: list[str] = []
    for m in _DATETIME.finditer(summary):
        if not (_datetimes_in(m.group(0)) & allowed_times) and m.group(0) not in bad:
            bad.append(m.group(0))
    allowed = numbers_in(given)
    for m in _NUMBER.finditer(_DATETIME.sub(" ", summary)):
        try:
            value = float(m.group(0).replace(",", ""))
        except ValueError:
            continue
        if value not in allowed and m.group(0) not in bad:
            bad.append(m.group(0))
    quantities = numbers_in(_NAME.sub(" ", given))
    for m in _WORD.finditer(summary):
        word = m.group(0)
        value = _NUMBER_WORDS.get(word.lower())
        if value is not None and value not in quantities and word not in bad:
            bad.append(word)
    return bad


def resolve_target(target_name: str, suite_dir: str | None) -> Any:
    """The replay target to write with, and its key from the environment; SummaryError otherwise."""
    from oncall.replay.runner import ReplayError, api_key
    from oncall.replay.suite import SuiteError, load_suite

    try:
        target = load_suite(suite_dir).target(target_name)
        api_key(target)
    except (SuiteError, ReplayError) as exc:
        raise SummaryError(f"--summarize-with: {exc}") from exc
    return target


def summarize(draft: Any, target: Any) -> SummaryResult:
    """Ask `target` for the summary of the draft and check it. Never raises for a
    target's failure: the result says what went wrong, and the draft does not depend on it."""
    import httpx2
    import openai

    from oncall.replay.runner import api_key

    given = given_facts(draft)
    result = SummaryResult(target=target.name, model=target.model, status="failed")
    params = {k: v for k, v in target.params.items() if k in ("temperature", "top_p", "seed")}
    try:
        client = openai.OpenAI(
            base_url=target.base_url, api_key=api_key(target) or "no-key", max_retries=1,
            timeout=httpx2.Timeout(connect=target.connect_timeout, read=min(target.read_timeout, 120.0),
                                   write=30.0, pool=10.0),
            default_query=target.default_query or None)
        with client:
            resp = client.chat.completions.create(
                model=target.model, max_tokens=MAX_SUMMARY_TOKENS,
                messages=[{"role": "system", "content": SYSTEM_PROMPT},
                          {"role": "user", "content": "The incident, as computed from its database:\n\n" + given}],
                **params)
    except openai.APIStatusError as exc:
        result.error = f"target {target.name} answered HTTP {exc.status_code}: {_api_message(exc)}"
        return result
    except openai.APITimeoutError:
        result.error = f"target {target.name} did not answer in time ({target.base_url})"
        return result
    except openai.APIConnectionError as exc:
        result.error = f"cannot reach target {target.name} at {target.base_url}: {exc}"
        return result
    except openai.OpenAIError as exc:
        result.error = f"target {target.name}: {exc}"
        return result
    if resp.usage is not None:
        result.input_tokens, result.output_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
        result.cost = target.cost(result.input_tokens, result.output_tokens)
    choice = resp.choices[0] if resp.choices else None
    text = ((choice.message.content if choice and choice.message else None) or "").strip()
    if not text:
        result.error = f"target {target.name} answered with no text" + (
            f" (finish reason {choice.finish_reason})" if choice else "")
        return result
    text = redact_export(text) or ""
    result.text = text
    result.unsupported = unsupported_numbers(text, given)
    if result.unsupported:
        result.status = "rejected"
        result.error = ("the summary quotes numbers the draft does not contain: " + ", ".join(result.unsupported[:10])
                        + "; it was left out")
        return result
    if choice is not None and choice.finish_reason == "length":
        result.status = "rejected"
        result.error = f"the summary was cut off at {MAX_SUMMARY_TOKENS} tokens; it was left out"
        return result
    result.status = "included"
    return result


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(exc)[:300]


def insert_summary(markdown: str, result: SummaryResult) -> str:
    """The draft with the summary block after its Summary section (only for an included summary)."""
    if result.status != "included" or not result.text:
        return markdown
    from oncall.safe_text import safe_text

    block = [HEADING, "",
             f"> 🤖 **Machine draft**, written by replay target `{_inline(result.target)}` (model "
             f"`{_inline(result.model)}`) from the computed facts of this draft. Every number it quotes was "
             "checked against them; the tables below remain the record. Edit or delete before sending.", ">"]
    for line in safe_text(result.text).splitlines():
        block.append("> " + _PROSE_ESCAPE.sub(r"\\\1", line) if line.strip() else ">")
    block.append("")
    lines = markdown.splitlines()
    try:
        start = lines.index("## Summary")
    except ValueError:
        return markdown + "\n" + "\n".join(block) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:end] + block + lines[end:]) + ("\n" if markdown.endswith("\n") else "")


def _inline(text: str) -> str:
    from oncall.safe_text import safe_text

    return safe_text(text, multiline=False, max_len=80).replace("`", "'")
