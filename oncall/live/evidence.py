"""Live evidence: wait until a cohort's metric meets a condition, failing closed at the deadline.

A runbook's ```verify block (`expect error_rate <= 1% within 10m`) and `oncall blast-radius --wait`
ask the same question of traffic still arriving (`oncall receive`, or loads): since the fix went
out, do the cohort's calls meet the condition? The metric is read with compare's vocabulary
(query.compare: error_rate, latency_ms_p95, cost_per_request …) over the cohort's LLM calls since
`since`; fewer than MIN_REQUESTS calls is no evidence. The incident is refreshed before each look,
so what a receiver writes counts as soon as it is registered. At the deadline, an unmet (or
unmeasured) condition fails: no evidence, no pass.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from oncall.query.compare import compare
from oncall.store.db import IncidentDB

MIN_REQUESTS = 10
POLL_S = 5.0


@dataclass
class Look:
    """One look at the evidence: each condition's value and whether it holds."""

    at: dt.datetime
    requests: int
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.requests >= MIN_REQUESTS and bool(self.checks) and all(c["passed"] for c in self.checks)


def _iso(t: dt.datetime) -> str:
    # To the microsecond: cut to the second, `since` would count calls made up to a second before
    # the fix went out as evidence that it worked.
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def look(db: IncidentDB, filter_words: list[str], since: dt.datetime, conditions: list[Any]) -> Look:
    """The cohort's metrics over its calls since `since`, against each condition (has .metric, .holds())."""
    db.refresh()
    words = [*filter_words, f"since={_iso(since)}"]
    res = compare(db.cursor(), words, words)
    values = {str(r["metric"]): r.get("cohort") for r in res["metrics"]}
    n = int(res["cohort"]["requests"])
    out = Look(at=dt.datetime.now(dt.UTC), requests=n)
    for c in conditions:
        actual = values.get(c.metric)
        ok = n >= MIN_REQUESTS and c.holds(actual)
        out.checks.append({"expect": c.text, "actual": actual, "passed": ok, "requests": n})
    return out


def wait_for_evidence(db: IncidentDB, filter_words: list[str], since: dt.datetime, conditions: list[Any],
                      deadline: dt.datetime, *, cancelled: Callable[[], bool] = lambda: False,
                      poll_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Iterator[Look]:
    """Look every poll_s until every condition holds or the deadline passes; yields each look (the
    last one says how it ended). Cancelling stops it: the caller treats that as not passed."""
    while True:
        seen = look(db, filter_words, since, conditions)
        yield seen
        if seen.passed or cancelled() or seen.at >= deadline:
            return
        sleep(max(0.0, min(poll_s or POLL_S, (deadline - seen.at).total_seconds())))
