"""`replay --baseline` follows the one rule of the filter language (issue 8, item 5): the option is
filter text, read as the filter bar reads it, both when the run starts and when its stored summary
is rebuilt (`replay show`). shlex-splitting it dropped the quotes that keep `"Acme, Inc."` one value."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from click.testing import CliRunner
from openai_server import OpenAIServer
from replay_helpers import build_incident, record, write_suite

from oncall.cli import cli


def test_replay_baseline_is_read_as_filter_text(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ONCALL_TEST_KEY", "loopback-" + secrets.token_hex(20))
    recs = [record(i, f"Where is order {1000 + i}?", f"Order {1000 + i} has shipped.") for i in range(6)]
    for r in recs[2:]:
        r["metadata"]["tenant"] = "Acme, Inc."
    db = build_incident(tmp_path, recs)
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop", "--yes",
                                       "--no-progress", "tenant=acme", "--baseline", 'tenant="Acme, Inc."', "--json"])
    assert res.exit_code == 0, res.output
    rows = {m["metric"]: m for m in json.loads(res.stdout)["metrics"]}
    assert rows["requests"]["original"] == 2 and rows["requests"]["baseline"] == 4
    shown = CliRunner().invoke(cli, ["replay", "show", "1", "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    again = {m["metric"]: m for m in json.loads(shown.stdout)["metrics"]}
    assert again["requests"]["baseline"] == 4
