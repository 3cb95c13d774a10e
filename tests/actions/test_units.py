"""The pieces under every action: line patches (forward and back give the exact bytes), in-place
JSON value replacement, atomic replace (mtime moves forward, permissions kept), config loading."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oncall.actions import ConfigError, files, jsonspan, load_config
from oncall.actions.config import find_config

lines = st.lists(st.sampled_from(["a\n", "b\n", "model: x\n", "  - y\n", "\n", "z"]), max_size=12)


@given(lines, lines)
def test_patch_forward_and_back_give_the_exact_text(a, b):
    old, new = "".join(a), "".join(b)
    hunks = files.make_patch(old, new)
    assert files.apply_patch(old, hunks) == new
    assert files.apply_patch(new, hunks, reverse=True) == old


def test_patch_on_other_text_is_refused():
    hunks = files.make_patch("a\nb\nc\n", "a\nB\nc\n")
    from oncall.actions import StateMoved

    with pytest.raises(StateMoved, match="line 2"):
        files.apply_patch("a\nX\nc\n", hunks)


def test_jsonspan_replaces_one_value_in_place():
    text = '{\n  "flags": {"f": {"defaultVariant": "on", "v": [1, 2.5e3, true, null, "s\\"q"]}},\n  "x": {}\n}\n'
    out = jsonspan.replace(text, ("flags", "f", "defaultVariant"), "off")
    assert out == text.replace('"defaultVariant": "on"', '"defaultVariant": "off"')
    assert jsonspan.spans(text)[("flags", "f", "v", 4)] == (text.index('"s\\"q"'), text.index('"s\\"q"') + 6)
    with pytest.raises(ValueError):
        jsonspan.spans('{"a": }')


def test_atomic_write_moves_mtime_forward_and_keeps_mode(tmp_path):
    p = tmp_path / "flags.json"
    p.write_text("{}")
    os.chmod(p, 0o640)
    future = p.stat().st_mtime_ns + 10_000_000_000  # an mtime ahead of the clock
    os.utime(p, ns=(future, future))
    files.atomic_write(p, b'{"flags": {}}')
    assert p.read_bytes() == b'{"flags": {}}'
    assert p.stat().st_mtime_ns > future and (p.stat().st_mode & 0o777) == 0o640


def test_redacted_display_lines():
    assert files.redact_line("      api_key: sk-abc") == "      api_key: [REDACTED]"
    assert files.redact_line("      api_key: os.environ/OPENAI_API_KEY") == "      api_key: os.environ/OPENAI_API_KEY"
    assert files.redact_line("      model: openai/gpt-4o") == "      model: openai/gpt-4o"


def test_config_search_order(tmp_path, monkeypatch):
    user = tmp_path / "xdg" / "oncall"
    user.mkdir(parents=True)
    (user / "oncall.toml").write_text('[actions.targets.u]\nadapter = "webhook"\nurl = "http://127.0.0.1:9"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(work)
    assert list(load_config().targets) == ["u"]
    (work / "oncall.toml").write_text('[actions.targets.w]\nadapter = "webhook"\nurl = "http://127.0.0.1:9"\n'
                                      '[actions.targets.u]\nadapter = "webhook"\nurl = "http://127.0.0.1:8"\n')
    cfg = load_config()  # both files are read; the project's wins for a target both name, whole
    assert sorted(cfg.targets) == ["u", "w"]
    assert cfg.targets["u"].get("url") == "http://127.0.0.1:8" and cfg.targets["u"].source == work / "oncall.toml"
    assert find_config() == work / "oncall.toml"
    (work / "oncall.toml").write_text('[actions.targets.w]\nadapter = "webhook"\nurl = "http://127.0.0.1:9"\n')
    cfg = load_config()
    assert sorted(cfg.targets) == ["u", "w"] and cfg.targets["u"].source == user / "oncall.toml"


@pytest.mark.parametrize("toml, message", [
    ('[actions.targets.a]\nurl = "x"\n', "needs `adapter"),
    ('[actions.targets.a]\nadapter = "webhook"\ntoken = "abc"\n', "`token` looks like a secret"),
    ('[actions.targets.a]\nadapter = "webhook"\nheaders = { Authorization = "Bearer x" }\n',
     "headers.*`Authorization` looks like a secret"),
    ("[actions.targets.a\n", "oncall.toml"),
])
def test_bad_config_is_a_clear_error(tmp_path, toml, message):
    (tmp_path / "oncall.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "oncall.toml")


def test_unknown_adapter_and_op_are_clear(tmp_path):
    from oncall.actions import BadArguments, get_adapter

    (tmp_path / "oncall.toml").write_text('[actions.targets.a]\nadapter = "nope"\n'
                                          '[actions.targets.f]\nadapter = "flagd-file"\npath = "f.json"\n')
    cfg = load_config(tmp_path / "oncall.toml")
    with pytest.raises(ConfigError, match="unknown adapter 'nope'.*litellm-config"):
        get_adapter("a", cfg)
    (tmp_path / "f.json").write_text(json.dumps({"flags": {}}))
    a = get_adapter("f", cfg)
    with pytest.raises(BadArguments, match="unknown operation 'flip'"):
        a.resolve_op({"op": "flip"})
    with pytest.raises(BadArguments, match="missing argument.*variant"):
        a.resolve_op({"flag": "x"})
    with pytest.raises(BadArguments, match="unknown argument.*colour"):
        a.resolve_op({"flag": "x", "variant": "y", "colour": "z"})
