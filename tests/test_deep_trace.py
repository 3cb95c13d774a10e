"""A 10,000-span chain: `show` (text and --json) and request_detail walk it without recursion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from oncall.cli import cli
from oncall.query.detail import INDENT_CAP, MAX_TREE, tree_indent, tree_order
from tests.deep_trace import build_deep_db

DEPTH = 10_000


@pytest.fixture(scope="module")
def deep_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("deep") / "deep.duckdb"
    build_deep_db(path, DEPTH)
    return path


def _show(db: Path, request: str) -> dict:
    res = CliRunner().invoke(cli, ["show", "--db", str(db), "--json", request])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _assert_chain(trace: list[dict]) -> None:
    """Tree order of a chain: each span is the child of the one before it, one level deeper."""
    for i, s in enumerate(trace):
        assert s["depth"] == i, (i, s["depth"])
        if i:
            assert s["parent_id"] == trace[i - 1]["span_id"]


def test_show_json_of_the_deepest_call_has_the_whole_chain(deep_db: Path) -> None:
    d = _show(deep_db, f"chatcmpl-deep-{DEPTH - 1}")
    assert d["trace_spans"] == DEPTH and len(d["trace"]) == DEPTH  # its ancestors are the whole trace
    _assert_chain(d["trace"])
    assert [s["depth"] for s in d["trace"] if s["focus"]] == [DEPTH - 1]
    assert d["trace"][0]["name"] == "agent.run" and d["trace"][0]["offset_ms"] == 0.0


def test_show_json_of_a_middle_call_keeps_its_path_from_the_root(deep_db: Path) -> None:
    d = _show(deep_db, "chatcmpl-deep-4999")
    # the first MAX_TREE spans by time, then the rest of the path down to the request
    assert d["trace_spans"] == DEPTH and len(d["trace"]) == 5000 > MAX_TREE
    _assert_chain(d["trace"])
    assert d["trace"][-1]["focus"] and d["trace"][-1]["name"] == "chat gpt-4o"


def test_show_text_prints_the_deep_tree_in_bounded_width(deep_db: Path) -> None:
    res = CliRunner().invoke(cli, ["show", "--db", str(deep_db), "chatcmpl-deep-4999"])
    assert res.exit_code == 0, res.output
    tree = res.output.split("── trace ──", 1)[1].splitlines()
    assert "5,000 of 10,000 spans" in tree[0]
    spans = tree[1:]
    assert len(spans) == 5000 and max(len(line) for line in spans) < 120
    assert spans[-1].lstrip().startswith("…4999 ▶ chat gpt-4o")


def test_tree_order_cycle_and_duplicates_terminate() -> None:
    import datetime as dt

    t = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    spans = [{"span_pk": i, "span_id": f"s{i}", "parent_id": f"s{(i + 1) % 3}", "start_time": t} for i in range(3)]
    spans.append({"span_pk": 9, "span_id": "root", "parent_id": None, "start_time": t})
    out = tree_order(spans, focus=1)
    assert sorted(s["span_pk"] for s in out) == [0, 1, 2, 9]  # the cycle shows once, at the top level
    assert [s["focus"] for s in out].count(True) == 1


def test_tree_indent_caps_the_width() -> None:
    assert tree_indent(3) == "      "
    assert len(tree_indent(INDENT_CAP)) == len(tree_indent(DEPTH)) == 2 * INDENT_CAP
    assert tree_indent(DEPTH).endswith(f"…{DEPTH} ")
