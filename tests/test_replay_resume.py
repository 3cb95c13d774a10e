"""A replay killed with SIGKILL mid-run resumes without sending a finished request twice or losing one
(requests counted at the loopback server; the run is a real `oncall replay` subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from openai_server import OpenAIServer
from replay_helpers import build_incident, record, write_suite

from oncall.cli import cli
from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent
N = 40
CONCURRENCY = 4


def _question(i: int) -> str:
    return f"Where is parcel {i:04d}?"


def _kept(db: Path) -> set[str]:
    """The input texts of the requests whose answers the run has written (what a resume skips)."""
    with open_db(db, read_only=True) as store:
        return {r[0] for r in store.con.execute(
            "SELECT s.input_text FROM replay_results r JOIN spans s USING (span_pk) WHERE r.status = 'ok'").fetchall()}


def test_resume_after_sigkill(tmp_path: Path) -> None:
    answered = 12
    db = build_incident(tmp_path, [record(i, _question(i), f"Parcel {i} is in Lyon.") for i in range(N)])
    env = {**os.environ, "ONCALL_TEST_KEY": "sk-test-resume-0123456789abcdef",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with OpenAIServer(latency=0.15) as srv:
        # The kill lands at a known point, however loaded the machine: `answered` requests answered and
        # written, the next CONCURRENCY held at the server (in flight). A timed kill let a loaded writer
        # fall behind, and the count of requests sent twice measured the scheduler.
        srv.hold_after(answered)
        suite = write_suite(tmp_path, srv.base_url, concurrency=CONCURRENCY)
        proc = subprocess.Popen([sys.executable, "-m", "oncall", "replay", "--db", str(db), "--suite", str(suite),
                                 "--target", "loop", "--yes", "--no-progress"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while (srv.held < CONCURRENCY or len(_kept(db)) < answered) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert srv.held == CONCURRENCY and len(srv.completions()) == answered
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        srv.release()  # the requests in flight at the kill are answered (to nobody) and recorded
        while sum("messages" in e.request for e in srv.exchanges) < srv.requests_received:
            time.sleep(0.02)
        asked_first = [_user(e.request) for e in srv.exchanges if "messages" in e.request]
        in_flight = set(asked_first[answered:])  # exchanges are kept in answer order
        n_first = len(srv.exchanges)
        kept = _kept(db)
        with open_db(db, read_only=True) as store:
            status = store.con.execute("SELECT status FROM replay_run_states ORDER BY state_id DESC LIMIT 1")\
                .fetchone()[0]
        assert status == "running"  # killed: nobody wrote a final state
        assert {t.split("\n")[-1] for t in kept} == set(asked_first[:answered])
        assert len(in_flight) == CONCURRENCY
        before = srv.requests_received

        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--resume", "1", "--no-progress"], env=env)
        assert res.exit_code == 0, res.output
        asked_second = [_user(e.request) for e in srv.exchanges[n_first:] if "messages" in e.request]
        assert srv.requests_received - before == len(asked_second)

    finished_texts = {t.split("\n")[-1] for t in kept}
    # no request that had finished (and was written) was sent again
    assert not finished_texts & set(asked_second)
    # none lost: every request is answered and stored exactly once
    assert set(asked_first) | set(asked_second) == {_question(i) for i in range(N)}
    with open_db(db, read_only=True) as store:
        per_item = store.con.execute("SELECT span_pk, count(*) FROM replay_results WHERE status = 'ok' "
                                     "GROUP BY 1").fetchall()
        final = store.con.execute("SELECT status FROM replay_run_states ORDER BY state_id DESC LIMIT 1").fetchone()[0]
    assert len(per_item) == N and all(c == 1 for _, c in per_item) and final == "finished"
    # exactly the requests in flight when the process died reached the server twice
    twice = {q for q, c in Counter(asked_first + asked_second).items() if c > 1}
    assert twice == in_flight


def _user(req: dict) -> str:
    return next(m["content"] for m in req["messages"] if m["role"] == "user")


# Starts the command with SIGINT ignored, as a background job of a shell script is (kept across exec).
_SIGINT_IGNORED = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


@pytest.mark.parametrize("ignored", [False, True], ids=["sigint-default", "sigint-ignored-at-start"])
def test_ctrl_c_keeps_what_finished(tmp_path: Path, ignored: bool) -> None:
    db = build_incident(tmp_path, [record(i, _question(i), f"Parcel {i} is in Lyon.") for i in range(N)])
    env = {**os.environ, "ONCALL_TEST_KEY": "sk-test-resume-0123456789abcdef",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    answered = 10
    with OpenAIServer(latency=0.15) as srv:
        # Ctrl-C lands at a known point however loaded the machine: `answered` requests answered and
        # written, the next CONCURRENCY held at the server (in flight, to be given up).
        srv.hold_after(answered)
        suite = write_suite(tmp_path, srv.base_url, concurrency=CONCURRENCY)
        launch = [sys.executable, "-c", _SIGINT_IGNORED] if ignored else [sys.executable]
        proc = subprocess.Popen([*launch, "-m", "oncall", "replay", "--db", str(db), "--suite", str(suite),
                                 "--target", "loop", "--yes"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while (srv.held < CONCURRENCY or len(_kept(db)) < answered) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        srv.release()
        assert proc.returncode == 130, err
        assert "interrupted: finished requests are kept" in err and "--resume 1" in err
        # the progress line (stderr is not a terminal here: plain lines)
        assert "replay 1 [" in err and "retried 0" in err and "spent $" in err and "ETA" in err
        with open_db(db, read_only=True) as store:
            status, counts = store.con.execute("SELECT status, counts FROM replay_run_states ORDER BY state_id DESC "
                                               "LIMIT 1").fetchone()
            kept = store.con.execute("SELECT count(*) FROM replay_results WHERE status = 'ok'").fetchone()[0]
            trail = store.con.execute("SELECT summary FROM trail WHERE kind = 'replay'").fetchall()
        assert status == "interrupted" and kept == answered
        assert trail and "replay 1 interrupted" in trail[-1][0]
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--resume", "1", "--no-progress"], env=env)
        assert res.exit_code == 0, res.output
    with open_db(db, read_only=True) as store:
        per_item = store.con.execute("SELECT span_pk, count(*) FROM replay_results WHERE status = 'ok' "
                                     "GROUP BY 1").fetchall()
    assert len(per_item) == N and all(c == 1 for _, c in per_item)
