"""End to end, as a responder would: `oncall demo` in a real terminal (tmux), keys sent, screen read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")

SESSION = f"oncall-e2e-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


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
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    out = subprocess.run([str(oncall), "search", "--db", str(db), "--json", "label=good"], capture_output=True,
                         text=True, check=True).stdout
    assert '"total": 1' in out
