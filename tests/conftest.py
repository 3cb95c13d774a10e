"""Shared test fixtures: a fresh incident database per test and the public fixture files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_servers import mlflow_export, mlflow_server, phoenix_export, phoenix_server  # noqa: F401 - session fixtures shared by modules

from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path:
    return Path(os.environ.get("ONCALL_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(autouse=True)
def no_developer_config(tmp_path_factory, monkeypatch):
    """The developer's own oncall.toml and keymap stay out of every test (and of the subprocesses
    they start): the user's config directory is an empty one, and no file is named by environment.
    A test that wants a config writes one and points at it (chdir, $ONCALL_TOML, $XDG_CONFIG_HOME)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for name in ("ONCALL_CONFIG_DIR", "ONCALL_CONFIG", "ONCALL_TOML"):
        monkeypatch.delenv(name, raising=False)


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
