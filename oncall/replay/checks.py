"""Checks per pair (original vs replay) and the run summary, in `compare`'s definitions and vocabulary.

Per pair: JSON validity and key set against the original, refusal, finish reason, length delta,
exact match and a word-level diff — the Python twins in oncall/query/quality.py, so a number here
means what the same number means in `compare`.

Noise versus change (`--repeat K`): per request the K replays are compared among themselves and
with the original. A check *changed beyond noise* when the K replays agree on it among themselves
and the original differs from all of them; it is *within noise* when the original's value is among
the replays' (or the replays themselves disagree, so the model's own variation covers it). With one
replay per request the summary says it cannot tell the two apart.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from oncall.query.quality import is_json, is_refusal, key_set
from oncall.query.registry import Fold, Metric, Stat, shown
from oncall.query.stats import Test

# checks that take one value per output (compared for noise); "text" is the exact output
CATEGORICAL = ("text", "json_valid", "key_set", "refusal", "finish_reason")
_WORD = re.compile(r"\S+|\s+")
_PIECE = re.compile(r"(?<=\n)|(?<=[.!?] )")
DIFF_MAX_OPS = 400
DIFF_WORD_BUDGET = 250_000  # words(a) x words(b) a word-level diff may take (~0.1 s)
DIFF_LINE_BUDGET = 4_000_000  # lines(a) x lines(b) for the line-level pass


def output_values(text: str | None, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "json_valid": is_json(text), "key_set": key_set(text), "refusal": is_refusal(text),
            "finish_reason": finish_reason, "length": len(text) if text is not None else None}


def word_diff(a: str | None, b: str | None) -> list[list[str]]:
    """[op, text] runs of a word-level diff (op is = - +), whitespace kept so runs join back into text.

    Bounded work whatever the outputs: the common prefix and suffix are cut first (a replay that
    differs in one sentence costs nothing more), a middle small enough is diffed word by word, a
    larger one line and sentence at a time with word diffs inside small changed blocks, and a block too large for
    either is shown as removed and added whole. (A word-level SequenceMatcher is quadratic: two
    10,000-word outputs took minutes, on the compare screen and in every summary.)"""
    wa, wb = _WORD.findall(a or ""), _WORD.findall(b or "")
    ops: list[list[str]] = []
    p = 0
    while p < len(wa) and p < len(wb) and wa[p] == wb[p]:
        p += 1
    s = 0
    while s < len(wa) - p and s < len(wb) - p and wa[-1 - s] == wb[-1 - s]:
        s += 1
    _emit(ops, "=", "".join(wa[:p]))
    _diff_words(wa[p:len(wa) - s], wb[p:len(wb) - s], ops)
    _emit(ops, "=", "".join(wa[len(wa) - s:]))
    if len(ops) > DIFF_MAX_OPS:
        ops = ops[:DIFF_MAX_OPS] + [["…", f"diff cut at {DIFF_MAX_OPS} runs"]]
    return ops


def _emit(ops: list[list[str]], op: str, text: str) -> None:
    if not text or len(ops) > DIFF_MAX_OPS:
        return
    if ops and ops[-1][0] == op:
        ops[-1][1] += text
    else:
        ops.append([op, text])


def _pieces(text: str) -> list[str]:
    """Lines and sentences, each with its trailing whitespace: the units of the coarse pass."""
    return [m for m in _PIECE.split(text) if m]


def _diff_words(wa: list[str], wb: list[str], ops: list[list[str]]) -> None:
    if not wa or not wb:
        _emit(ops, "-", "".join(wa))
        _emit(ops, "+", "".join(wb))
        return
    if len(wa) * len(wb) <= DIFF_WORD_BUDGET:
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
            if tag == "equal":
                _emit(ops, "=", "".join(wa[i1:i2]))
            else:
                _emit(ops, "-", "".join(wa[i1:i2]))
                _emit(ops, "+", "".join(wb[j1:j2]))
        return
    la, lb = _pieces("".join(wa)), _pieces("".join(wb))
    if len(la) * len(lb) > DIFF_LINE_BUDGET or (len(la) == 1 and len(lb) == 1):
        _emit(ops, "-", "".join(la))
        _emit(ops, "+", "".join(lb))
        return
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb).get_opcodes():
        if len(ops) > DIFF_MAX_OPS:
            return
        if tag == "equal":
            _emit(ops, "=", "".join(la[i1:i2]))
            continue
        ba, bb = _WORD.findall("".join(la[i1:i2])), _WORD.findall("".join(lb[j1:j2]))
        if len(ba) * len(bb) <= DIFF_WORD_BUDGET:
            _diff_words(ba, bb, ops)
        else:
            _emit(ops, "-", "".join(ba))
            _emit(ops, "+", "".join(bb))


def pair_checks(original: dict[str, Any], replay: dict[str, Any]) -> dict[str, Any]:
    """One pair: each check's original and replay value and whether it changed."""
    o = output_values(original.get("output_text"), original.get("finish_reason"))
    r = output_values(replay.get("output_text"), replay.get("finish_reason"))
    return {
        "exact_match": o["text"] == r["text"],
        "json_valid": {"original": o["json_valid"], "replay": r["json_valid"]},
        "key_set": {"original": o["key_set"], "replay": r["key_set"], "same": o["key_set"] == r["key_set"]},
        "refusal": {"original": o["refusal"], "replay": r["refusal"]},
        "finish_reason": {"original": o["finish_reason"], "replay": r["finish_reason"]},
        "length": {"original": o["length"], "replay": r["length"],
                   "delta": None if o["length"] is None or r["length"] is None else r["length"] - o["length"]},
    }


def noise_verdict(original: dict[str, Any], replays: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How one request's K replays vary, and per check whether the original is outside that variation."""
    o = output_values(original.get("output_text"), original.get("finish_reason"))
    rs = [output_values(r.get("output_text"), r.get("finish_reason")) for r in replays]
    out: dict[str, Any] = {"replays": len(rs), "distinct_outputs": len({r["text"] for r in rs}), "checks": {}}
    if len(rs) < 2:
        out["verdict"] = "unknown"
        return out
    changed_any = False
    for c in CATEGORICAL:
        values = [r[c] for r in rs]
        agree = len(set(map(repr, values))) == 1
        if agree and o[c] != values[0]:
            state = "changed"
        elif o[c] in values:
            state = "same"
        else:
            state = "noise"  # the replays disagree among themselves and the original is one more variant
        out["checks"][c] = {"state": state, "distinct": len(set(map(repr, values))), "original": o[c],
                            "replays": dict(Counter(map(str, values)).most_common(5))}
        changed_any = changed_any or state == "changed"
    lengths = [r["length"] for r in rs if r["length"] is not None]
    if lengths and o["length"] is not None:
        lo, hi = min(lengths), max(lengths)
        out["checks"]["length"] = {"state": "changed" if (lo == hi and o["length"] != lo) else
                                   ("same" if lo <= o["length"] <= hi else "outside range"),
                                   "original": o["length"], "replay_min": lo, "replay_max": hi}
    out["verdict"] = "changed" if changed_any else "within noise"
    return out


# -- the run summary ------------------------------------------------------------------------------------
# The columns a replay result carries, so the fold computes exactly the metrics they can give.
REPLAY_COLUMNS = ("status", "output_text", "finish_reason", "input_tokens", "output_tokens", "latency_ms", "ttft_ms",
                  "cost")


def side_fold() -> Fold:
    """One side of a run (originals or replays), folded one row at a time through the metric registry,
    so a run of any size is summarized without holding its outputs."""
    return Fold(columns=REPLAY_COLUMNS)


def _row(m: Metric, original: Any, replay: Any, test: Test | None, baseline: Any = None) -> dict[str, Any]:
    delta = replay - original if isinstance(original, (int, float)) and isinstance(replay, (int, float)) else None
    return {"metric": m.name, "unit": m.unit, "baseline": baseline, "original": original, "replay": replay,
            "delta": delta, "delta_pct": None if delta is None or not original else 100.0 * delta / abs(original),
            "significance": test.significance if test else "n/a", "p_value": test.p_value if test else None,
            "worse_when": m.worse}


def summary_rows(orig: dict[str, Stat], rep: dict[str, Stat], base: dict[str, Stat] | None) -> list[dict[str, Any]]:
    """The table `compare` prints, with the original cohort, its replays and (when given) the baseline:
    the same metrics, definitions and tests (the registry's), the replay tested against the original."""
    rows: list[dict[str, Any]] = []
    for m in shown(orig, rep):
        o, r = orig[m.name], rep[m.name]
        b = m.of(base[m.name]) if base and m.name in base else None
        rows.append(_row(m, m.of(o), m.of(r), m.test(r, o), b))
    return rows
