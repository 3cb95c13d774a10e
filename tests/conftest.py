"""Shared test fixtures: a fresh incident database per test and the public fixture files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    return Path(os.environ.get("ONCALL_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture
def fixtures() -> Path:
    d = fixtures_dir()
    if not d.is_dir():
        pytest.skip(f"shared fixtures not found at {d} (set ONCALL_FIXTURES)")
    return d


@pytest.fixture
def db(tmp_path):
    store = open_db(tmp_path / "incident.duckdb")
    yield store
    store.close()


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """The demo incident, built once per test session (read it with open_db(..., read_only=True))."""
    from oncall.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    truth, report = build_demo(path)
    assert report.problems == [] and report.spans_added == truth.spans
    return path


@pytest.fixture(scope="session")
def steady_db(tmp_path_factory) -> Path:
    """The same traffic with nothing injected: detectors must stay quiet on it."""
    from oncall.demo import build_demo

    path = tmp_path_factory.mktemp("steady") / "steady.duckdb"
    build_demo(path, incident=False)
    return path
