"""What leaves the process: redact_export (secrets + PII + oncall.toml patterns), the console's
ctrl+s export and its clipboard copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import secretcorpus as sc

from oncall.config import ConfigError, redact_patterns
from oncall.redact import redact_export, redact_export_value

EMAILS = ["alice@example.com", "bob.smith+oncall@mail.acme-corp.co.uk", "x_y.z@sub.domain.io"]
PHONES = ["+1 415 555 0132", "+44 20 7946 0958", "+1-212-555-0199", "(415) 555-0132", "415-555-0199",
          "415.555.0177", "+49 30 901820"]
CARDS = ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555555555554444",
         "378282246310005", "3782 822463 10005", "6011111111111117", "2223003122003222"]
NOT_PII = [
    "2026-11-30T10:00:00Z", "2026-11-30 10:00:00.123+00:00", "10:00:00", "epoch 1764496800",
    "1764496800123", "1767225600000000000", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7",
    "123e4567-e89b-12d3-a456-426614174000", "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "req-20261130-0042",
    "input_tokens=1234 output_tokens=56 total 1290", "$0.000373", "cost 12.50 USD", "1,234,567 requests",
    "4111 1111 1111 1112",  # fails the Luhn check: an order number, not a card
    "4111111111111112", "192.168.100.200", "10.0.0.1:8080", "v1.2.3-rc.4", "gpt-4o-2024-11-20",
    "p95 2300 ms", "ISBN 978-3-16-148410-0", "build 20261130.4",
]


@pytest.mark.parametrize("pii", EMAILS + PHONES + CARDS)
def test_pii_goes(pii: str) -> None:
    for text in (pii, f"call {pii} now", f"({pii})", json.dumps({"note": f"line\n{pii}\nend"})):
        out = redact_export(text, extra=[]) or ""
        assert pii not in out and "[" in out, (text, out)
        if text.startswith("{"):
            assert json.loads(out)["note"].startswith("line\n")  # JSON text stays JSON


@pytest.mark.parametrize("text", NOT_PII)
def test_what_looks_like_pii_but_is_not_is_kept(text: str) -> None:
    assert redact_export(f"seen {text} here", extra=[]) == f"seen {text} here"


def test_exports_get_the_full_secret_redaction_too() -> None:
    out = redact_export(sc.free_text() + "\n" + json.dumps(sc.metadata()), extra=[]) or ""
    assert [w for n, w in sc.needles().items() if n in out or json.dumps(n)[1:-1] in out] == []


def test_values_are_redacted_inside_structures() -> None:
    row = {"output_text": "mail alice@example.com", "tags": ["card 4111111111111111"], "input_tokens": 42,
           "cost": 0.000373, "alice@example.com": 1}
    assert redact_export_value(row, extra=[]) == {"output_text": "mail [EMAIL]", "tags": ["card [CARD]"],
                                                  "input_tokens": 42, "cost": 0.000373, "[EMAIL]": 1}


def test_oncall_toml_patterns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ONCALL_TOML", raising=False)
    (tmp_path / "sub").mkdir()
    (tmp_path / "oncall.toml").write_text('[redact]\npatterns = ["ACME-[0-9]{6}", "(?i)ticket #[0-9]+"]\n')
    monkeypatch.chdir(tmp_path / "sub")  # found in a parent directory, like pyproject.toml
    assert redact_patterns() == ["ACME-[0-9]{6}", "(?i)ticket #[0-9]+"]
    assert redact_export("order ACME-123456 from TICKET #42, ACME-12 stays") == \
        "order [REDACTED] from [REDACTED], ACME-12 stays"
    # Edited while running: the next export reads the new file.
    (tmp_path / "oncall.toml").write_text('[redact]\npatterns = ["stays"]  # so the size changes\n')
    assert redact_export("ACME-123456 stays") == "ACME-123456 [REDACTED]"


@pytest.mark.parametrize("content, message", [
    ('[redact]\npatterns = ["(unclosed"]\n', "patterns[0] '(unclosed' is not a valid regular expression"),
    ('[redact]\npatterns = ["x*"]\n', "matches the empty string"),
    ('[redact]\npatterns = "ACME"\n', "must be a list of strings"),
    ("[redact\n", "not valid TOML"),
])
def test_a_bad_oncall_toml_is_an_error_naming_file_and_setting(tmp_path: Path, monkeypatch, content, message) -> None:
    p = tmp_path / "oncall.toml"
    p.write_text(content)
    monkeypatch.setenv("ONCALL_TOML", str(p))
    with pytest.raises(ConfigError) as e:
        redact_export("anything")
    assert str(p) in str(e.value) and message in str(e.value)


def test_no_oncall_toml_means_no_extra_patterns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ONCALL_TOML", raising=False)
    monkeypatch.chdir(tmp_path)
    if any((d / "oncall.toml").is_file() for d in (tmp_path, *tmp_path.parents)):
        pytest.skip("an oncall.toml above the temporary directory")
    assert redact_patterns() == []


# -- the console ------------------------------------------------------------------------------------
async def test_console_export_and_copy_leave_no_pii_or_secret(tmp_path: Path, monkeypatch) -> None:
    from oncall.ingest.loader import load_paths
    from oncall.store import open_db
    from oncall.tui.app import OncallApp
    from tests.tui.conftest import settle

    pii = "write to alice@example.com or call +1 415 555 0132; card 4111 1111 1111 1111; order ACME-123456"
    recs = [{"request_id": f"r{i}", "timestamp": f"2026-03-01T10:0{i}:00Z", "model": "gpt-4o", "tenant": "acme",
             "input_tokens": 42, "prompt": f"question {i} from bob@example.org",
             "output": f"{pii} and {sc.SHAPED['openai']}", "meta": {"phone": "(415) 555-0199"}} for i in range(3)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    work = tmp_path / "work"
    work.mkdir()
    (work / "oncall.toml").write_text('[redact]\npatterns = ["ACME-[0-9]{6}"]\n')
    monkeypatch.delenv("ONCALL_TOML", raising=False)
    monkeypatch.chdir(work)
    store = open_db(tmp_path / "i.duckdb")
    assert load_paths(store, [str(src)]).problems == []
    copied: list[str] = []
    app = OncallApp(store, keymap={})
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            app.open_explorer("")
            await settle(pilot)
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.press("enter")  # the reader on the first row
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
    finally:
        store.close()
    (export,) = list(work.glob("oncall-export-*.jsonl"))
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == 3 and all(r["input_tokens"] == 42 for r in rows)
    assert copied and "write to [EMAIL]" in copied[0]
    for text in [export.read_text(), *copied]:
        for leak in ["alice@example.com", "bob@example.org", "415 555 0132", "(415) 555-0199",
                     "4111 1111 1111 1111", "ACME-123456", sc.SHAPED["openai"]]:
            assert leak not in text
    assert "[CARD]" in copied[0] and "[PHONE]" in copied[0] and "[REDACTED]" in copied[0]
