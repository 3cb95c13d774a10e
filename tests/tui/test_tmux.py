"""End to end, as a responder would: `oncall demo` in a real terminal (tmux), keys sent, screen read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/test installs it with apt where it can)")

SESSION = f"oncall-e2e-{os.getpid()}"
SOCKET = SESSION  # a tmux server of our own (-L): never the user's, never another test run's


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = screen()
        if text in last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{text!r} never appeared; screen was:\n{last}")


def kill_server() -> None:
    subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


def test_demo_in_tmux(tmp_path: Path) -> None:
    oncall = Path(sys.executable).with_name("oncall")
    db = tmp_path / "demo.duckdb"
    env = f"TERM=xterm-256color ONCALL_CONFIG={tmp_path / 'none.toml'} "
    tmux("new-session", "-d", "-s", SESSION, "-x", "150", "-y", "45",
         f"{env}{oncall} demo --db {db} --hours 3; sleep 60")
    try:
        wait_for("what changed:", timeout=120)
        s = wait_for("served model gpt-4o-2024-08-06 -> gpt-4o-2024-11-20")
        assert "requests" in s and "error rate" in s
        tmux("send-keys", "-t", SESSION, "/")
        wait_for("1 of ")
        time.sleep(1.0)  # the bar takes focus after the explorer's first refresh: typing earlier goes to the rows
        tmux("send-keys", "-t", SESSION, "tenant=acme feature=extract", "Enter")
        s = wait_for("tenant=acme feature=extract")
        wait_for(" of ")
        tmux("send-keys", "-t", SESSION, "j", "Enter")
        s = wait_for("chatcmpl-")  # the reader's metadata: the provider's response id
        assert "1/" in s and "served model" in s and "gpt-4o-2024" in s
        tmux("send-keys", "-t", SESSION, "g")
        wait_for("labelled good")
        tmux("send-keys", "-t", SESSION, "?")
        wait_for("reader.good")
        tmux("send-keys", "-t", SESSION, "Escape", "Escape")
        wait_for("of ")
        tmux("send-keys", "-t", SESSION, "C-q")
        time.sleep(1.0)
        assert "what changed:" not in screen()
    finally:
        kill_server()
    out = subprocess.run([str(oncall), "search", "--db", str(db), "--json", "label=good"], capture_output=True,
                         text=True, check=True).stdout
    assert '"total": 1' in out


WRITER = """
import sys
from oncall.query.labels import add_label, add_note
from oncall.store import open_db

db = open_db(sys.argv[1])
pks = [int(x) for x in sys.argv[2].split(",")]
for i, pk in enumerate(pks):
    add_label(db, pk, "bad", f"loop {sys.argv[3]} #{i}")
    add_note(db, f"writer {sys.argv[3]} saw {pk}", span_pk=pk)
db.close()
"""


def test_console_in_tmux_counts_what_concurrent_writers_wrote(demo_copy: Path, tmp_path: Path) -> None:
    """A responder's console stays open on `label=bad` while two scripts label and note 40 requests
    at once and a third process loads the next hour's export: every write reaches the screen."""
    from oncall.store import open_db

    oncall = Path(sys.executable).with_name("oncall")
    store = open_db(demo_copy, read_only=True)
    try:
        pks = [r[0] for r in store.cursor().execute(
            "SELECT span_pk FROM spans WHERE kind = 'llm' ORDER BY span_pk LIMIT 40").fetchall()]
        before = store.cursor().execute("SELECT count(*) FROM spans WHERE kind = 'llm'").fetchone()[0]
    finally:
        store.close()
    env = f"TERM=xterm-256color ONCALL_CONFIG={tmp_path / 'none.toml'} "
    tmux("new-session", "-d", "-s", SESSION, "-x", "150", "-y", "45",
         f"{env}{oncall} open --db {demo_copy}; sleep 60")
    try:
        wait_for("what changed:", timeout=120)
        tmux("send-keys", "-t", SESSION, "/")
        wait_for("1 of ")
        time.sleep(1.0)
        tmux("send-keys", "-t", SESSION, "label=bad", "Enter")
        wait_for("0 requests match")
        extra = tmp_path / "next-hour.jsonl"
        extra.write_text("".join(
            f'{{"request_id": "req-next-{i}", "timestamp": "2026-11-24T03:00:00Z", "tenant": "acme", '
            f'"model": "gpt-4o", "prompt": "q", "output": "a {i}"}}\n' for i in range(7)))
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(demo_copy),
                                     ",".join(str(p) for p in pks[k::2]), str(k)]) for k in range(2)]
        load = subprocess.run([str(oncall), "load", "--db", str(demo_copy), str(extra)], capture_output=True,
                              text=True, timeout=120)
        assert load.returncode == 0, load.stderr
        assert [w.wait(timeout=120) for w in writers] == [0, 0]
        s = wait_for("of 40", timeout=30)  # no key pressed: the console refreshed by itself
        assert "label=bad" in s and "bad" in s
        tmux("send-keys", "-t", SESSION, "F2")  # the overview counts the loaded requests
        wait_for(f"{before + 7:,} requests", timeout=30)
        tmux("send-keys", "-t", SESSION, "C-q")
    finally:
        kill_server()
    out = subprocess.run([str(oncall), "search", "--db", str(demo_copy), "--json", "label=bad", "--limit", "100"],
                         capture_output=True, text=True, check=True).stdout
    import json

    found = json.loads(out)
    assert found["total"] == 40 and sorted(r["span_pk"] for r in found["requests"]) == sorted(pks)
