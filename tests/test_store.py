import subprocess
import sys

import duckdb
import pytest

from oncall.store import StoreError, open_db
from oncall.store.migrations import SCHEMA_VERSION


def test_new_database_has_current_schema(tmp_path):
    with open_db(tmp_path / "a.duckdb") as db:
        assert db.schema_version() == SCHEMA_VERSION
        cols = [r[0] for r in db.con.execute("DESCRIBE spans").fetchall()]
        assert "served_model" in cols and "raw" in cols and "tenant" in cols


def test_reopen_keeps_data_and_version(tmp_path):
    p = tmp_path / "a.duckdb"
    with open_db(p) as db:
        db.record_event("note", "hello")
    with open_db(p) as db:
        assert db.schema_version() == SCHEMA_VERSION
        assert db.con.execute("SELECT summary FROM trail").fetchall() == [("hello",)]


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "a.duckdb"
    open_db(p).close()
    con = duckdb.connect(str(p))
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer than this oncall"):
        open_db(p)


def test_missing_db_read_only_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_db(tmp_path / "nope.duckdb", read_only=True)


def test_a_foreign_read_write_holder_gets_a_clear_message(tmp_path):
    """oncall never holds the base file read-write while others read; another tool may."""
    p = tmp_path / "a.duckdb"
    open_db(p).close()
    code = (
        "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); "
        "print('ready', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=rf"held read-write by PID {proc.pid} "):
            open_db(p)
    finally:
        proc.kill()
        proc.wait()


def test_core_never_imports_textual():
    """The headless core must work without Textual: only oncall/tui may import it."""
    code = (
        "import sys, pkgutil, importlib, oncall\n"
        "for m in pkgutil.walk_packages(oncall.__path__, 'oncall.'):\n"
        "    if m.name.startswith('oncall.tui') or m.name == 'oncall.__main__':\n"
        "        continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = [k for k in sys.modules if k == 'textual' or k.startswith('textual.')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
