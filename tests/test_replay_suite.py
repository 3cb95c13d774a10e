"""Replay suites as files: targets.toml and prompt variants load, and every mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncall.ingest.prices import list_price
from oncall.replay.suite import SuiteError, load_prompt, load_suite

ROOT = Path(__file__).resolve().parent.parent


def _suite(tmp: Path, text: str) -> Path:
    (tmp / "targets.toml").write_text(text)
    return tmp


def test_shipped_suite_loads() -> None:
    suite = load_suite(ROOT / "replay")
    pinned = suite.target("gpt-4o-pinned")
    assert pinned.model == "gpt-4o-2024-08-06" and pinned.stream and pinned.api_key_env == "OPENAI_API_KEY"
    assert suite.target("gpt-4o").price_source == "genai-prices" and suite.target("gpt-4o").price_in == 2.5
    assert suite.target("judge-mini").judge and suite.rubric
    v = suite.prompt("extract-strict")
    assert v.replaces == "extract" and v.version == "v5" and "JSON object" in v.text
    assert v.applies_to("extract") and not v.applies_to("support-bot")


def test_replay_prices_come_from_the_one_lookup(tmp_path: Path, monkeypatch) -> None:
    """Replay estimates and spend caps use import's lookup: genai-prices, under oncall.toml [prices]."""
    monkeypatch.chdir(tmp_path)
    assert list_price("gpt-4o-2024-08-06") == (2.5, 10.0, "genai-prices")
    assert list_price("gpt-4o-mini-2024-07-18") == (0.15, 0.6, "genai-prices")
    assert list_price("openai/gpt-4o") == (2.5, 10.0, "genai-prices")  # LiteLLM's provider/model
    assert list_price("my-finetune") is None
    (tmp_path / "oncall.toml").write_text('[prices."my-finetune"]\ninput = 1.5\noutput = 3\n'
                                          '[prices."gpt-4o"]\ninput = 2\noutput = 8\n')
    assert list_price("my-finetune") == (1.5, 3.0, "oncall.toml")
    assert list_price("gpt-4o") == (2.0, 8.0, "oncall.toml")
    suite = _suite(tmp_path, '[targets.ft]\nbase_url = "http://x/v1"\nmodel = "my-finetune"\n')
    t = load_suite(suite).target("ft")
    assert (t.price_in, t.price_out, t.price_source) == (1.5, 3.0, "oncall.toml")


def test_the_demo_prices_its_traffic_at_the_lookup_s_prices() -> None:
    from oncall.demo import PRICES

    for model, (per_in, per_out) in PRICES.items():
        assert list_price(model)[:2] == pytest.approx((per_in * 1e6, per_out * 1e6)), model


@pytest.mark.parametrize("text, line, words", [
    ('[targets.a]\nbase_url = "http://x/v1"\nmodle = "gpt-4o"\n', 3, ["unknown key 'modle'", "[targets.a]"]),
    ('[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\nmax_concurrency = "8"\n', 4,
     ["max_concurrency must be", "not str"]),
    ('[targets.a]\nbase_url = "http://x/v1"\n', 1, ["needs model"]),
    ('[settings]\nconfirm = 1\n[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\n', 2, ["unknown key 'confirm'"]),
    ('\n[targets.a]\nbase_url = "ftp://x"\nmodel = "m"\n', 3, ["base_url must start with http"]),
    ('[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\napi_key_env = "sk-live-1234567890abcdef"\n', 4,
     ["names an environment variable", "never hold the key"]),
    ('[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\nprice_in = 1\n', 1, ["sets one price; set price_out"]),
    ('[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\n[targets.a.params]\ntemprature = 0\n', 5,
     ["unknown parameter 'temprature'"]),
    ('[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\n[targets.a.params]\ntemperature = "hot"\n', 5,
     ["temperature must be"]),
])
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, words: list[str]) -> None:
    with pytest.raises(SuiteError) as exc:
        load_suite(_suite(tmp_path, text))
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'targets.toml'}:{line}:"), msg
    for w in words:
        assert w in msg, msg


def test_bad_toml_and_missing_file_and_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"targets.toml: no targets file"):
        load_suite(tmp_path)
    with pytest.raises(SuiteError, match=r"not valid TOML: .*line 2"):
        load_suite(_suite(tmp_path, '[targets.a]\nbase_url = "http://x\n'))
    suite = load_suite(_suite(tmp_path, '[targets.a]\nbase_url = "http://x/v1"\nmodel = "m"\n'))
    with pytest.raises(SuiteError, match=r"no target named 'b' \(targets: a\)"):
        suite.target("b")
    with pytest.raises(SuiteError, match=r"no such file"):
        suite.prompt("nope")


@pytest.mark.parametrize("text, where, words", [
    ("name: x\nreplaces: y\n---\nbody\n", ":1:", ["starts with '---'"]),
    ("---\nname: x\nreplace: y\n---\nbody\n", ":3:", ["unknown front matter key 'replace'"]),
    ("---\nname: x\n---\nbody\n", ":1:", ["needs 'replaces'"]),
    ("---\nname: x\nreplaces: *\n---\n\n", ":5:", ["no text after its front matter"]),
    ("---\nname: x\nreplaces: *\n", "", ["not closed"]),
    ("---\nname x\n---\nbody\n", ":2:", ["key: value"]),
])
def test_prompt_front_matter_errors(tmp_path: Path, text: str, where: str, words: list[str]) -> None:
    p = tmp_path / "v.md"
    p.write_text(text)
    with pytest.raises(SuiteError) as exc:
        load_prompt(p)
    assert str(exc.value).startswith(f"{p}{where}"), str(exc.value)
    for w in words:
        assert w in str(exc.value)


def test_replay_core_imports_no_ui() -> None:
    """oncall/replay is headless core: no click, no textual (the CLI and console sit on it)."""
    import subprocess
    import sys

    code = ("import sys, oncall.replay.runner, oncall.replay.store, oncall.replay.engine\n"
            "print(','.join(k for k in sys.modules if k.split('.')[0] in ('click', 'textual')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
