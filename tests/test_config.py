"""The one oncall.toml loader: one discovery order, one schema, and which file set which key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oncall.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """(the user's config dir, a project directory with a subdirectory as the working directory)."""
    user = tmp_path / "xdg" / "oncall"
    user.mkdir(parents=True)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(project / "sub")
    return user, project


def test_project_over_user_key_by_key_with_provenance(dirs) -> None:
    user, project = dirs
    (user / "oncall.toml").write_text('[redact]\npatterns = ["USER-[0-9]+"]\n'
                                      '[prices."gpt-4o"]\ninput = 9\ncached_input = 4\noutput = 9\n'
                                      '[prices."my-ft"]\ninput = 1\noutput = 2\n'
                                      '[keys]\n"reader.next" = "j"\n')
    (project / "oncall.toml").write_text('[prices."gpt-4o"]\ninput = 2\noutput = 8\n'
                                         '[sources.warehouse]\nurl = "clickhouse://ch/otel?table=otel_traces"\n')
    cfg = load_config()
    assert cfg.read == [user / "oncall.toml", project / "oncall.toml"]  # found in a parent directory
    # a named entry is replaced whole: no cached_input carried over from the user's gpt-4o
    assert cfg.get("prices", "gpt-4o") == {"input": 2, "output": 8}
    assert cfg.get("prices", "my-ft") == {"input": 1, "output": 2}
    assert cfg.origin("prices", "gpt-4o") == project / "oncall.toml"
    assert cfg.origin("prices", "gpt-4o", "input") == project / "oncall.toml"
    assert cfg.origin("prices", "my-ft") == user / "oncall.toml"
    assert cfg.origin("redact", "patterns") == user / "oncall.toml"
    assert cfg.where("prices", "gpt-4o") == f'{project / "oncall.toml"}: prices.gpt-4o'
    assert dict(cfg.provenance()) == {
        "keys.\"reader.next\"": user / "oncall.toml", "prices.gpt-4o": project / "oncall.toml",
        "prices.my-ft": user / "oncall.toml", "redact.patterns": user / "oncall.toml",
        "sources.warehouse": project / "oncall.toml"}
    src = cfg.entry("sources", name="warehouse")
    assert src.source == project / "oncall.toml" and src.settings["url"].startswith("clickhouse://")
    assert src.where("url") == f"{project / 'oncall.toml'}: [sources.warehouse] url"
    with pytest.raises(ConfigError, match=r"no \[sources.lake\] in oncall.toml \(names there: warehouse"):
        cfg.entry("sources", name="lake")


def test_every_reader_agrees_on_the_files(dirs) -> None:
    """Prices, redaction, action targets and the keymap read the same files (once three discovery
    orders: ./ only for prices and actions, parents for redaction, and another file for keys)."""
    from oncall.actions import load_config as load_actions
    from oncall.config import redact_patterns
    from oncall.ingest.prices import overrides
    from oncall.tui.keys import load_keymap

    user, project = dirs
    (user / "oncall.toml").write_text('[keys]\n"reader.next" = "j,ctrl+n"\n'
                                      '[actions.targets.mine]\nadapter = "webhook"\nurl = "http://127.0.0.1:9"\n')
    (project / "oncall.toml").write_text('[redact]\npatterns = ["ACME-[0-9]{6}"]\n'
                                         '[prices."llama-local"]\ninput = 0.5\noutput = 0.5\n'
                                         '[actions.targets.gw]\nadapter = "flagd-file"\npath = "flags.json"\n')
    assert redact_patterns() == ["ACME-[0-9]{6}"]
    assert overrides()["llama-local"].origin == str(project / "oncall.toml")
    targets = load_actions().targets
    assert targets["gw"].source == project / "oncall.toml" and targets["gw"].path("path") == project / "flags.json"
    assert targets["mine"].source == user / "oncall.toml"
    assert load_keymap() == ({"reader.next": "j,ctrl+n"}, [])


def test_oncall_toml_env_and_explicit_path_replace_the_project_file(dirs, tmp_path, monkeypatch) -> None:
    user, project = dirs
    (project / "oncall.toml").write_text('[redact]\npatterns = ["PROJECT"]\n')
    other = tmp_path / "elsewhere.toml"
    other.write_text('[redact]\npatterns = ["OTHER"]\n')
    monkeypatch.setenv("ONCALL_TOML", str(other))
    cfg = load_config()
    assert cfg.get("redact", "patterns") == ["OTHER"] and cfg.project_file == other
    monkeypatch.delenv("ONCALL_TOML")
    assert load_config(other).origin("redact", "patterns") == other
    with pytest.raises(ConfigError, match=r"missing.toml: no such file \(named by --config\)"):
        load_config(tmp_path / "missing.toml")
    monkeypatch.setenv("ONCALL_TOML", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml: no such file \(named by \$ONCALL_TOML\)"):
        load_config()


def test_the_keymap_file_of_earlier_versions_is_still_read_for_keys_only(dirs) -> None:
    from oncall.tui.keys import config_path, load_keymap

    user, _ = dirs
    (user / "config.toml").write_text('[keys]\n"reader.next" = "j"\n"app.quit" = "ctrl+q"\n')
    assert load_keymap() == ({"reader.next": "j", "app.quit": "ctrl+q"}, [])
    assert config_path() == user / "config.toml"
    (user / "oncall.toml").write_text('[keys]\n"reader.next" = "n"\n')
    keys, problems = load_keymap()
    assert keys == {"reader.next": "n", "app.quit": "ctrl+q"} and problems == []


@pytest.mark.parametrize("content, message", [
    ('[price."gpt-4o"]\ninput = 1\noutput = 1\n', r"unknown section \[price\] \(did you mean \[prices\]\?\)"),
    ('redact = "x"\n', "redact must be a table"),
    ("[redact\n", "not valid TOML"),
    ('[redact]\npattern = ["x"]\n', r"redact.pattern: unknown key; \[redact\] has `patterns`"),
])
def test_a_bad_file_is_named_with_the_setting(dirs, content, message) -> None:
    from oncall.config import redact_patterns

    _, project = dirs
    (project / "oncall.toml").write_text(content)
    with pytest.raises(ConfigError, match=message) as exc:
        redact_patterns()
    assert str(project / "oncall.toml") in str(exc.value)


def test_a_config_error_is_exit_2_on_every_command_that_reads_it(dirs) -> None:
    _, project = dirs
    (project / "oncall.toml").write_text('[prics."gpt-4o"]\ninput = 1\noutput = 1\n')
    r = _cli("config")
    assert r.returncode == 2 and "did you mean [prices]" in r.stderr and str(project / "oncall.toml") in r.stderr


def test_oncall_config_prints_each_key_with_its_file(dirs) -> None:
    user, project = dirs
    (user / "oncall.toml").write_text('[prices."my-ft"]\ninput = 1\noutput = 2\n')
    (project / "oncall.toml").write_text('[notify.pager]\npagerduty_routing_key_env = "PD_KEY"\n')
    r = _cli("config", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(f["role"], f["read"]) for f in out["files"]] == [("keymap", False), ("user", True), ("project", True)]
    assert out["keys"] == [{"key": "notify.pager", "file": str(project / "oncall.toml")},
                           {"key": "prices.my-ft", "file": str(user / "oncall.toml")}]
    text = _cli("config").stdout
    assert f"notify.pager  {project / 'oncall.toml'}" in text


def test_literal_secrets_are_refused_in_any_section(dirs) -> None:
    from oncall.config import refuse_literal_secrets

    _, project = dirs
    (project / "oncall.toml").write_text('[sources.ch]\nurl = "clickhouse://ch/db"\npassword = "hunter2"\n')
    src = load_config().entry("sources", name="ch")
    with pytest.raises(ConfigError, match=r"\[sources.ch\]: `password` looks like a secret.*password_env"):
        refuse_literal_secrets(src.settings, src.where())


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "oncall.cli", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=os.getcwd())
