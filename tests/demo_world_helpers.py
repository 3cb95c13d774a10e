"""Shared by tests/test_demo_*.py: a small-scale demo with its world, copied per test, and `oncall` run
as a new user runs it (a temp dir, no replay suite, no oncall.toml, the demo's latency off)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from oncall.demoworld import world_dir
from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parents[1]


def build_small_demo(directory: Path) -> Path:
    """The demo at small scale: the same generator, seed and story (every cause and runbook cohort),
    an eighth of the traffic, with its world."""
    from oncall.demo import build_demo

    path = directory / "demo.duckdb"
    build_demo(path, hours=3.5, scale=0.25)
    return path


def copy_demo(demo_db: Path, into: Path) -> Path:
    """A demo and its world as ./incident.duckdb in `into` (what `oncall demo` leaves)."""
    db = into / "incident.duckdb"
    copy_incident(demo_db, db)
    shutil.copytree(world_dir(demo_db), world_dir(db), ignore=shutil.ignore_patterns("serve.json", "*.lock"))
    return db


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "ONCALL_DEMO_LATENCY": "0", "COLUMNS": "160",
         "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    e.pop("ONCALL_DB", None)
    return e


def oncall(cwd: Path, *args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oncall", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env(), **kw)
