"""Real trace stores the tests start once per session and share: `phoenix serve` (and what the
OpenInference instrumentation sent it) and `mlflow server`, each from its own environment under
.envs/ (.ci/setup-formats.sh), never a project dependency.

Imported by tests/conftest.py so every test module sees the same session fixtures: the Phoenix
file-format tests (tests/test_real_formats.py) and the phoenix:// / mlflow:// source tests
(tests/test_store_servers_source.py) read one server each, started once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from exporter_checks import env_python, run_generator
from openai_server import OpenAIServer


def env_or_skip(name: str) -> Path:
    python = env_python(name)
    if python is None:
        pytest.skip(f".envs/{name} is missing: run .ci/setup-formats.sh (the registry may have been down)")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(cmd: list[str], env: dict[str, str], work: Path, health: str, what: str,
           timeout: float = 420) -> Iterator[subprocess.Popen]:
    """Start a server, wait until `health` answers, yield it, stop it."""
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        deadline = time.monotonic() + timeout  # first start runs its migrations; slow on a loaded machine
        while True:
            try:
                urllib.request.urlopen(health, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{what} did not start:\n{(work / 'server.log').read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def phoenix_server(tmp_path_factory) -> Iterator[str]:
    """`phoenix serve` on SQLite in a temporary working directory (ELv2; run, never shipped)."""
    python = env_or_skip("fmt-phoenix")
    port = free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(work), "PHOENIX_PORT": str(port), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_TELEMETRY_ENABLED": "false"}
    url = f"http://127.0.0.1:{port}"
    with _serve([str(python.parent / "phoenix"), "serve"], env, work, f"{url}/healthz", "phoenix serve"):
        yield url


@pytest.fixture(scope="session")
def phoenix_export(phoenix_server, tmp_path_factory) -> dict[str, Any]:
    """The scenario (tests/instrumented_calls.py) under OpenInference into Phoenix's OTLP endpoint, and
    what Phoenix hands back (tests/gen_phoenix.py): span JSON, the OTLP form, the dataframe, the truth."""
    out = tmp_path_factory.mktemp("phoenix-export")
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(env_or_skip("fmt-phoenix"), "gen_phoenix.py", "--base-url", srv.base_url,
                      "--phoenix", phoenix_server, "--out", str(out), timeout=300)
        exchanges = list(srv.exchanges)
    return {"dir": out, "exchanges": exchanges, "truth": json.loads((out / "truth.json").read_text()),
            "server": phoenix_server}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """`mlflow server` on SQLite (its backend store; artifacts served from its working directory)."""
    python = env_or_skip("fmt-mlflow")
    port = free_port()
    work = tmp_path_factory.mktemp("mlflow-server")
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_ENABLE_TELEMETRY": "false",
           "DO_NOT_TRACK": "true"}
    url = f"http://127.0.0.1:{port}"
    cmd = [str(python.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
           "--artifacts-destination", str(work / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with _serve(cmd, env, work, f"{url}/health", "mlflow server"):
        yield url


@pytest.fixture(scope="session")
def mlflow_export(mlflow_server, tmp_path_factory) -> dict[str, Any]:
    """The scenario under MLflow's own tracing (openai autolog) into the server (tests/gen_mlflow.py),
    with each trace as Trace.to_json() wrote it (the file form) beside."""
    out = tmp_path_factory.mktemp("mlflow-export")
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(env_or_skip("fmt-mlflow"), "gen_mlflow.py", "--base-url", srv.base_url, "--out", str(out),
                      "--tracking-uri", mlflow_server, timeout=300)
        exchanges = list(srv.exchanges)
    return {"dir": out, "exchanges": exchanges, "server": mlflow_server,
            "files": sorted(out.glob("trace-*.json"))}
