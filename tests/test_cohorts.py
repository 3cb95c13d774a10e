"""A cause's cohort holds its failed calls: a served-model change's rows are its requested model in
its window (the served model is the split), because a failed call has no served model. Everywhere
the cohort is used — the filter `changes` hands the explorer, its request count, compare and the
postmortem's impact, a gate's replay cohort — its error rate is the window's, never a 0 % made by
leaving the failures out."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncall.query.changes import changes
from oncall.query.compare import compare
from oncall.query.search import count
from oncall.store import open_db


@pytest.fixture(scope="module")
def demo(demo_db: Path):
    store = open_db(demo_db, read_only=True)
    yield store
    store.close()


def _served(found):
    return next(c for c in found if c.kind == "new_served_model")


def test_the_served_model_cause_holds_its_failed_calls(demo) -> None:
    con = demo.con
    c = _served(changes(con))
    window = f"model=gpt-4o since={c.began_at}"
    failed_in_window = count(con, window + " status=error")
    assert failed_in_window >= 10  # the demo's background errors on gpt-4o after the update
    # Its filter is the requested model in the window, the old snapshot left out: failures stay in.
    assert "served_model=" not in c.filter.replace("served_model!=", "")
    assert count(con, c.filter + " status=error") == failed_in_window
    assert c.affected_requests == count(con, c.filter) == count(con, window)
    # The explorer, compare and the postmortem read that filter: its error rate is the window's.
    cmp = {r["metric"]: r for r in compare(con, c.filter, f"model=gpt-4o until={c.began_at}")["metrics"]}
    assert cmp["error_rate"]["cohort"] == pytest.approx(failed_in_window / count(con, window))
    assert cmp["error_rate"]["cohort"] > 0
    # Every effect's filter holds the failures too.
    for e in c.effects:
        assert count(con, e["filter"] + " status=error") > 0, e["filter"]


def test_the_postmortem_impact_of_the_served_model_cause_counts_its_failures(demo) -> None:
    from oncall.postmortem.draft import _Appendix, _impact, clocks

    con = demo.con
    c = _served(changes(con)).to_dict()
    _, impact = _impact(con, [c], [], _Appendix("demo.duckdb"), clocks(con, []))
    er = impact[0]["error_rate"]
    failed = count(con, c["filter"] + " status=error")
    assert er["after"] == pytest.approx(failed / impact[0]["requests"]) and er["after"] > 0


def test_a_rollout_that_takes_a_minority_claims_no_failures_and_no_error_rate(db, tmp_path: Path) -> None:
    """A new snapshot serving a third of the calls cannot claim the window's failures: its filter is
    the snapshot itself, and no error-rate effect (which would read 'x % -> 0 %') is listed."""

    from oncall.ingest.loader import load_paths
    from tests import incidentgen

    sc = incidentgen.served_model_key_rename()
    at = sc.truth.at
    calls = sc.generate()
    for i, call in enumerate(calls):
        if call.t >= at:
            call.served = "gpt-4o-mini-2025-01-15" if i % 3 == 0 else "gpt-4o-mini-2024-07-18"
        if i % 25 == 0:
            call.error = (500, "InternalServerError", "Error code: 500 - upstream error")
    assert load_paths(db, [str(sc.write(tmp_path))]).problems == []
    found = [c for c in changes(db.con) if c.kind == "new_served_model"]
    for c in found:
        assert "served_model=gpt-4o-mini-2025-01-15" in c.filter
        assert "error_rate" not in [e["metric"] for e in c.effects]
