"""Console tests: a private copy of the session's demo incident per test (the console writes labels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncall.store import open_db
from oncall.store.db import copy_incident
from oncall.tui.app import OncallApp


@pytest.fixture
def demo_copy(demo_db: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "incident.duckdb"
    copy_incident(demo_db, dst)  # the base file, its load parts and its journal
    return dst


@pytest.fixture
def make_app(demo_copy: Path):
    stores = []

    def make(path: Path | None = None, *, read_only: bool = False, keymap: dict[str, str] | None = None) -> OncallApp:
        store = open_db(path or demo_copy, read_only=read_only)
        stores.append(store)
        return OncallApp(store, read_only=read_only, keymap=keymap or {})

    yield make
    for s in stores:
        s.close()


async def settle(pilot) -> None:
    """Let workers finish and their results render."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()
