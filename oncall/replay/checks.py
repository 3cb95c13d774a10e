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
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from oncall.query.compare import JSON_COHORT_MIN
from oncall.query.quality import is_json, is_refusal, key_set
from oncall.query.stats import two_proportions, welch

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
def _mean_var(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    v = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return m, v


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class SideStats:
    """compare's cohort numbers for one side (originals or replays), fed one row at a time so a run
    of any size is summarized without holding its outputs (only per-row numbers, for the quantiles)."""

    def __init__(self) -> None:
        self.n = self.errors = self.outputs = self.refusals = self.json_valid = 0
        self.lat: list[float] = []
        self.ttft: list[float] = []
        self.itok: list[float] = []
        self.otok: list[float] = []
        self.cost: list[float] = []
        self.length: list[float] = []
        self.finish: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()

    def add(self, r: dict[str, Any]) -> None:
        self.n += 1
        if r.get("status") == "error":
            self.errors += 1
            return
        if r.get("latency_ms") is not None:
            self.lat.append(float(r["latency_ms"]))
        if r.get("ttft_ms") is not None:
            self.ttft.append(float(r["ttft_ms"]))
        for xs, k in ((self.itok, "input_tokens"), (self.otok, "output_tokens"), (self.cost, "cost")):
            if r.get(k) is not None:
                xs.append(float(r[k]))
        if r.get("finish_reason"):
            self.finish[str(r["finish_reason"])] += 1
        text = r.get("output_text")
        if text is None:
            return
        self.outputs += 1
        self.length.append(float(len(text)))
        self.refusals += is_refusal(text)
        self.json_valid += is_json(text)
        ks = key_set(text)
        if ks is not None:
            self.keys[ks] += 1

    def top_key_sets(self) -> dict[str, int]:
        return dict(self.keys.most_common(50))

    def result(self, reference_keys: set[str] | None) -> dict[str, Any]:
        new = {k: v for k, v in self.keys.items() if reference_keys is not None and k not in reference_keys}
        total_keys = sum(self.keys.values())
        lm, lv = _mean_var(self.lat)
        return {
            "requests": self.n, "errors": self.errors, "outputs": self.outputs, "refusals": self.refusals,
            "json_valid": self.json_valid, "latency": self.lat, "latency_mean": lm, "latency_var": lv,
            "ttft": self.ttft, "input_tokens": self.itok, "output_tokens": self.otok, "cost": self.cost,
            "cost_total": sum(self.cost) if self.cost else None, "length": self.length,
            "finish_reasons": dict(self.finish.most_common()), "key_sets": self.top_key_sets(),
            "key_drift_new": sum(new.values()), "key_drift_total": total_keys,
            "key_drift": (sum(new.values()) / total_keys) if total_keys and reference_keys is not None else None,
        }


def _rate(x: int, n: int) -> float | None:
    return x / n if n else None


def _row(metric: str, unit: str, original: Any, replay: Any, test: Any, worse_when: str,
         baseline: Any = None) -> dict[str, Any]:
    delta = replay - original if isinstance(original, (int, float)) and isinstance(replay, (int, float)) else None
    return {"metric": metric, "unit": unit, "baseline": baseline, "original": original, "replay": replay,
            "delta": delta, "delta_pct": None if delta is None or not original else 100.0 * delta / abs(original),
            "significance": test.significance if test else "n/a", "p_value": test.p_value if test else None,
            "worse_when": worse_when}


def summary_rows(orig: dict[str, Any], rep: dict[str, Any], base: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The table `compare` prints, with the original cohort, its replays and (when given) the baseline."""
    rows: list[dict[str, Any]] = []
    b = base or {}
    n1, n2 = orig["requests"], rep["requests"]
    rows.append(_row("requests", "count", n1, n2, None, "n/a", b.get("requests")))
    rows.append(_row("error_rate", "ratio", _rate(orig["errors"], n1), _rate(rep["errors"], n2),
                     two_proportions(rep["errors"], n2, orig["errors"], n1), "higher", b.get("error_rate")))

    def means(metric: str, unit: str, key: str, worse: str) -> None:
        m1, v1 = _mean_var(orig[key])
        m2, v2 = _mean_var(rep[key])
        rows.append(_row(metric, unit, m1, m2, welch(m2, v2, len(rep[key]), m1, v1, len(orig[key])), worse,
                         b.get(metric)))

    means("latency_ms_mean", "ms", "latency", "higher")
    for q, qq in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rows.append(_row(f"latency_ms_{q}", "ms", _quantile(orig["latency"], qq), _quantile(rep["latency"], qq),
                         None, "higher", b.get(f"latency_ms_{q}")))
    if rep["ttft"]:
        rows.append(_row("ttft_ms_p50", "ms", _quantile(orig["ttft"], 0.5), _quantile(rep["ttft"], 0.5), None,
                         "higher"))
    means("input_tokens_mean", "tokens", "input_tokens", "higher")
    means("output_tokens_mean", "tokens", "output_tokens", "higher")
    means("cost_per_request", "usd", "cost", "higher")
    rows.append(_row("cost_total", "usd", orig["cost_total"], rep["cost_total"], None, "higher"))
    means("output_length_mean", "chars", "length", "either")
    o1, o2 = orig["outputs"], rep["outputs"]
    rows.append(_row("refusal_rate", "ratio", _rate(orig["refusals"], o1), _rate(rep["refusals"], o2),
                     two_proportions(rep["refusals"], o2, orig["refusals"], o1), "higher", b.get("refusal_rate")))
    jv1, jv2 = _rate(orig["json_valid"], o1), _rate(rep["json_valid"], o2)
    if (jv1 or 0) >= JSON_COHORT_MIN or (jv2 or 0) >= JSON_COHORT_MIN:
        rows.append(_row("json_valid_rate", "ratio", jv1, jv2,
                         two_proportions(rep["json_valid"], o2, orig["json_valid"], o1), "lower",
                         b.get("json_valid_rate")))
        if orig["key_drift"] is not None or rep["key_drift"] is not None:
            rows.append(_row("json_key_drift", "ratio", orig["key_drift"], rep["key_drift"],
                             two_proportions(rep["key_drift_new"], rep["key_drift_total"], orig["key_drift_new"],
                                             orig["key_drift_total"]), "higher", b.get("json_key_drift")))
    return rows
