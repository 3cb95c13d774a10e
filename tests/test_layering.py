"""The seams hold (issue 26 item 4): screens hold no SQL, the runbook modules import in one direction,
and the import format, its sink and the store meet their typed contracts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import duckdb

from oncall.ingest import registry
from oncall.ingest.contracts import BulkSink, ImportFormat, RowSink, Sink
from oncall.store import open_db
from oncall.store.contracts import ReadStore, Store

ROOT = Path(__file__).resolve().parent.parent


def test_no_screen_holds_sql() -> None:
    """The console asks the core for every number (the .ci hook greps the same)."""
    found = []
    for p in sorted((ROOT / "oncall" / "tui").rglob("*.py")):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if ".execute(" in line or re.search(r"\bSELECT\b", line):
                found.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):  # lazy imports inside functions count too: a cycle is a cycle
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_runbook_modules_import_in_one_direction() -> None:
    """model <- params <- parse <- library / run: params.py never reaches back into parse.py."""
    d = ROOT / "oncall" / "runbook"
    assert "oncall.runbook.parse" not in _imports(d / "params.py")
    assert "oncall.runbook.params" in _imports(d / "parse.py")
    assert not ({"oncall.runbook.parse", "oncall.runbook.params"} & _imports(d / "model.py"))


def test_every_format_module_meets_the_import_contract() -> None:
    names = []
    for modname, name in registry.ORDER:
        fmt = registry._module(modname)
        assert fmt is not None and isinstance(fmt, ImportFormat), modname
        names.append(fmt.NAME)
        assert fmt.NAME == name and fmt.DESCRIPTION
    assert set(registry.names()) <= set(names)


def test_the_writer_is_the_sink_and_the_database_is_the_store(tmp_path: Path) -> None:
    from oncall.ingest.writer import FileWriter
    from oncall.tui.inflight import StoreOn

    con = duckdb.connect()
    writer = FileWriter(con, 1, tmp_path / "x.jsonl", "generic")
    assert isinstance(writer, BulkSink) and isinstance(writer, Sink) and isinstance(writer, RowSink)
    db = open_db(tmp_path / "incident.duckdb")
    try:
        assert isinstance(db, Store)
        assert isinstance(StoreOn(db, db.cursor()), ReadStore)
        assert not isinstance(StoreOn(db, db.cursor()), Store)  # a builder's view cannot write
    finally:
        db.close()
