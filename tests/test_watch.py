"""`oncall watch`: a served model switched mid-stream is notified once, and resolved once after the flip back.

Real components: LLM calls by the `openai` client under opentelemetry-instrumentation-openai-v2 to
tests/openai_server.py, exported live by the SDK's OTLP/HTTP exporter to `oncall receive`
(tests/live_traffic.py); the notifications go to a loopback server that records every delivery,
at the three paths a webhook, a Slack incoming webhook and the PagerDuty Events API v2 would be.

Payload shapes checked against the documentation:
- PagerDuty Events API v2, "Send an Alert Event" (developer.pagerduty.com/api-reference/
  368ae3d938c9e-send-an-event-to-pager-duty and docs "Events API v2 Overview"): routing_key,
  event_action trigger|resolve, dedup_key; payload.summary (≤ 1024 chars), source, severity
  (critical|error|warning|info), timestamp; a resolve needs only routing_key, event_action, dedup_key;
  the service answers 202 {"status": "success", "dedup_key": …}.
- Slack incoming webhooks (api.slack.com/messaging/webhooks; Block Kit): a JSON body with `text`
  (the notification fallback) and optional `blocks`; header text plain_text ≤ 150 chars, section
  text ≤ 3000 chars; the service answers 200 "ok".
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

from oncall.live.notify import (
    SUMMARY_MAX,
    Alert,
    NotifyError,
    PagerDutyTarget,
    SlackTarget,
    WebhookTarget,
    resolve_target,
)
from oncall.live.service import ReceiveService
from oncall.live.watch import check
from oncall.store import open_db
from oncall.store.db import now_utc, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OLD, NEW = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"


class Recorder:
    """A loopback server that records deliveries; `fail` makes the next answers an error status."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.fail: list[int] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if rec.fail:
                    status = rec.fail.pop(0)
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rec.deliveries.append({"path": self.path, "json": json.loads(body),
                                       "content_type": self.headers.get("Content-Type")})
                if self.path.startswith("/v2/enqueue"):
                    out = json.dumps({"status": "success", "message": "Event processed",
                                      "dedup_key": json.loads(body)["dedup_key"]}).encode()
                    self.send_response(202)
                else:
                    out = b"ok"
                    self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def at(self, prefix: str) -> list[dict[str, Any]]:
        return [d["json"] for d in self.deliveries if d["path"].startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


def _traffic(srv: OpenAIServer, otlp_url: str, calls: int) -> None:
    proc = subprocess.run([sys.executable, str(HERE / "live_traffic.py"), "--base-url", srv.base_url,
                           "--otlp-url", otlp_url, "--calls", str(calls)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _validate_pagerduty(event: dict[str, Any]) -> None:
    assert set(event) >= {"routing_key", "event_action", "dedup_key"}
    assert event["event_action"] in ("trigger", "resolve") and 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        p = event["payload"]
        assert isinstance(p["summary"], str) and 0 < len(p["summary"]) <= SUMMARY_MAX
        assert p["source"] and p["severity"] in ("critical", "error", "warning", "info")
        dt.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
        assert isinstance(p.get("custom_details", {}), dict)


def _validate_slack(msg: dict[str, Any]) -> None:
    assert isinstance(msg["text"], str) and msg["text"]
    for block in msg.get("blocks", []):
        assert block["type"] in ("header", "section")
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        else:
            assert block["text"]["type"] == "mrkdwn" and len(block["text"]["text"]) <= 3000


def test_served_model_switch_notifies_once_and_resolves_once(tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("PD_ROUTING_KEY", "R0UT1NGKEY0000000000000000000000")
    db_path = tmp_path / "live.duckdb"
    svc = ReceiveService(db_path, port=0, flush_every=0.2)
    svc.start()
    targets = [WebhookTarget("hook", f"{recorder.url}/hook"), SlackTarget("slack", f"{recorder.url}/slack"),
               PagerDutyTarget("pd", "R0UT1NGKEY0000000000000000000000", url=f"{recorder.url}/v2/enqueue")]
    window, recent = dt.timedelta(hours=1), dt.timedelta(seconds=4)
    try:
        # A fixed 50 ms answer time: latency then barely moves with the machine's load, so the only change
        # is the one the test makes (a load-made latency shift would rightly keep the alert open).
        with OpenAIServer(served_models={"gpt-4o": OLD}, latency=0.05) as srv, open_db(db_path) as db:
            def run(calls: int) -> None:
                before = svc.receiver.stats.spans_accepted
                _traffic(srv, svc.server.url, calls)
                assert wait_for(lambda: svc.receiver.stats.spans_accepted >= before + 2 * calls, 20)

            run(80)
            assert check(db, targets, window=window, recent=recent).sent == []  # nothing new yet
            srv.served_models["gpt-4o"] = NEW  # the provider's silent update
            run(80)
            first = check(db, targets, window=window, recent=recent)
            assert len(first.sent) == 3, first.sent  # one trigger per target
            assert {s["action"] for s in first.sent} == {"trigger"}
            assert all(NEW in s["title"] for s in first.sent)
            assert check(db, targets, window=window, recent=recent).sent == []  # once, not every check
            srv.served_models["gpt-4o"] = OLD  # flipped back
            flipped = now_utc()
            run(60)
            # "recent" is exactly the traffic since the flip back, however long the machine took to send it
            recent = now_utc() - flipped
            resolved = check(db, targets, window=window, recent=recent)
            assert [s["action"] for s in resolved.sent] == ["resolve"] * 3, resolved.waiting
            assert check(db, targets, window=window, recent=recent).sent == []
            # A restarted watch (a new process reading the journal) sends nothing again.
        with open_db(db_path) as db2:
            assert check(db2, targets, window=window, recent=recent).sent == []
    finally:
        svc.stop()

    hooks, slack, pd = recorder.at("/hook"), recorder.at("/slack"), recorder.at("/v2/enqueue")
    assert [h["action"] for h in hooks] == ["trigger", "resolve"]
    assert hooks[0]["kind"] == "new_served_model" and NEW in hooks[0]["title"]
    assert hooks[0]["command"].startswith("oncall --db ") and f"served_model={NEW}" in hooks[0]["command"]
    assert hooks[0]["counts"]["affected_requests"] == 80
    assert hooks[0]["cohort"].get("tenant") == "acme" or hooks[0]["cohort"].get("model") == "gpt-4o"
    for m in slack:
        _validate_slack(m)
    assert NEW in slack[0]["text"] and "Back within noise" in slack[1]["text"]
    for e in pd:
        _validate_pagerduty(e)
    assert [e["event_action"] for e in pd] == ["trigger", "resolve"]
    assert pd[0]["dedup_key"] == pd[1]["dedup_key"] == hooks[0]["dedup_key"]
    assert NEW in pd[0]["payload"]["summary"] and "resolve" not in pd[0]
    assert "payload" not in pd[1]
    # the routing key went to PagerDuty only; nothing secret in the incident
    with open_db(db_path, read_only=True) as db:
        rows = db.cursor().execute("SELECT action, target, detail::VARCHAR FROM notifications ORDER BY 1").fetchall()
    assert sorted(r[0] for r in rows) == ["resolve"] * 3 + ["trigger"] * 3
    assert not any("R0UT1NGKEY" in r[2] for r in rows)


def _alert(action: str = "trigger", title: str = "served model gpt-4o-2024-11-20 for tenant=acme") -> Alert:
    return Alert(action=action, dedup_key="oncall-abc", title=title, summary=title + " " + "x" * 2000,
                 effects=["output length +38 %"], counts={"affected_requests": 12}, command="oncall search x",
                 cohort={"tenant": "acme"}, kind="new_served_model", began_at="2026-12-07T01:12:00Z",
                 at="2026-12-07T01:20:00Z", incident="i.duckdb", detail={})


def test_retries_then_delivers_and_gives_up_on_4xx(recorder):
    recorder.fail = [503, 429]
    PagerDutyTarget("pd", "key", url=f"{recorder.url}/v2/enqueue").send(_alert())
    event = recorder.at("/v2/enqueue")[0]
    _validate_pagerduty(event)
    assert len(event["payload"]["summary"]) == SUMMARY_MAX  # cut to PagerDuty's limit
    recorder.fail = [400]
    with pytest.raises(NotifyError, match="answered 400") as exc:
        SlackTarget("slack", f"{recorder.url}/slack/T000/B000/SECRETPART").send(_alert())
    assert "SECRETPART" not in str(exc.value)  # the webhook URL is the secret
    assert len(recorder.at("/slack")) == 0


def test_unreachable_target_fails_with_a_readable_error():
    with pytest.raises(NotifyError, match="could not connect"):
        WebhookTarget("hook", "http://127.0.0.1:9/x").send(_alert())


def test_targets_from_config_and_inline(tmp_path, monkeypatch):
    from oncall.errors import InputError

    toml = tmp_path / "oncall.toml"
    toml.write_text('[notify.pager]\ntype = "pagerduty"\nrouting_key_env = "PDKEY"\nseverity = "critical"\n'
                    '[notify.team]\nslack_url_env = "SLACK_HOOK"\n'
                    '[notify.bad]\ntype = "slack"\nurl = "not a url"\n')
    monkeypatch.setenv("PDKEY", "k" * 32)
    monkeypatch.setenv("SLACK_HOOK", "http://127.0.0.1:1/services/T/B/X")
    pd = resolve_target("pager", config=str(toml))
    assert isinstance(pd, PagerDutyTarget) and pd.severity == "critical" and pd.routing_key == "k" * 32
    assert isinstance(resolve_target("team", config=str(toml)), SlackTarget)
    assert isinstance(resolve_target("webhook=http://127.0.0.1:1/x"), WebhookTarget)
    with pytest.raises(InputError, match="not an http"):
        resolve_target("bad", config=str(toml))
    with pytest.raises(InputError, match="NOPE"):
        resolve_target("pagerduty=NOPE")
    with pytest.raises(InputError, match="nosuch"):
        resolve_target("nosuch", config=str(toml))


def test_cli_once_exit_codes_and_a_bad_source(tmp_path, recorder, demo_db):
    import shutil as sh

    from oncall.store.db import copy_incident

    db = tmp_path / "demo.duckdb"
    copy_incident(demo_db, db)
    assert sh.which(sys.executable)
    cmd = [sys.executable, "-m", "oncall", "--db", str(db), "watch", "--once", "--window", "3650d",
           "--notify", f"webhook={recorder.url}/hook", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 1, first.stderr  # it notified: the demo's silent model update at least
    sent = json.loads(first.stdout)["sent"]
    assert sent and any("served model" in s["title"] for s in sent)
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["sent"] == []  # state survived the process
    src = subprocess.run([sys.executable, "-m", "oncall", "--db", str(db), "watch", "--once", "--source",
                          "nosuch://x", "--notify", "webhook=http://127.0.0.1:1/"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert src.returncode == 2 and "nosuch" in src.stderr  # watching a store: tests/test_clickhouse_source.py
