"""Launching the console (oncall/tui/launch.py): the overview's first questions are asked before
Textual is imported, give the numbers the overview asks later, and nothing on that path imports what
the first screen does not need (the import cost is measured in bench/RESULTS.md, Console)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading

import pytest

from oncall.query.changes import changes
from oncall.query.overview import CHARTED, glance, overview_glance
from oncall.store import open_db
from oncall.tui.launch import Early, ask_overview


def _by_cell(rows: list[dict]) -> dict:
    return {(r["key"], r["grp"], r["bucket"]): r for r in rows}


def test_the_charted_series_are_the_full_series_numbers(demo_db):
    with open_db(demo_db, read_only=True) as store:
        full, charted = glance(store.cursor()), overview_glance(store.cursor())
    assert charted.head == full.head and charted.top == full.top and charted.bucket_s == full.bucket_s
    for mine, theirs in ((charted.overall, full.overall), (charted.by_key, full.by_key)):
        everything = _by_cell(theirs)
        assert mine and set(_by_cell(mine)) == set(everything)
        for cell, row in _by_cell(mine).items():
            for name, value in row.items():  # sums in another order: equal to the last digits
                other = everything[cell][name]
                assert value == other or math.isclose(value, other, rel_tol=1e-12), (cell, name)
    names = set(charted.overall[0])
    assert {"error_rate__x", "latency_ms_p95", "cost_per_request__x", "output_length_mean__x"} <= names
    assert "latency_ms_mean__x" in full.overall[0] and "latency_ms_mean__x" not in names  # not charted: not computed
    assert set(CHARTED) == {"error_rate", "latency_ms_p95", "cost_per_request", "output_length_mean"}


def test_the_answers_asked_at_launch_are_the_overviews(demo_db):
    with open_db(demo_db, read_only=True) as store:
        early = ask_overview(store)
        g, found = early.take("glance"), early.take("changes")
        assert g is not None and found is not None
        assert g.result(timeout=60) == overview_glance(store.cursor())
        assert [c.to_dict() for c in found.result(timeout=60)] == [c.to_dict() for c in changes(store.cursor())]
        assert early.take("glance") is None  # taken once: the next look asks again
        early.wait()


def test_the_overview_lists_a_buckets_cohorts_in_the_same_order_every_time(demo_db):
    """A bucket's per-tenant rows used to come in the hash aggregate's thread order (CI saw the
    launch's answer and the overview's list them differently); asked again, the rows are the same."""
    with open_db(demo_db, read_only=True) as store:
        first = overview_glance(store.cursor())
        assert len({r["grp"] for r in first.by_key}) > 1
        for _ in range(12):
            assert overview_glance(store.cursor()).by_key == first.by_key


def test_a_question_asked_after_another_starts_once_that_one_is_answered_and_errors_reach_the_taker():
    early, order, release = Early(), [], threading.Event()

    def first() -> str:
        release.wait(10)
        order.append("first")
        return "a"

    def second() -> str:
        order.append("second")
        raise ValueError("no such column")

    early.ask("first", first)
    early.ask("second", second, after="first")
    assert order == []
    release.set()
    with pytest.raises(ValueError, match="no such column"):
        early.take("second").result(timeout=10)  # type: ignore[union-attr]
    assert early.take("first").result(timeout=10) == "a"  # type: ignore[union-attr]
    assert order == ["first", "second"]
    early.wait()


def test_the_launch_path_imports_neither_textual_nor_arrow_before_the_questions_run():
    code = ("import sys, oncall.tui.launch, oncall.commands.open\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'pyarrow', 'pandas', 'numpy'}))\n"
            "import oncall.tui.app\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'pandas', 'numpy'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]
