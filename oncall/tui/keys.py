"""Key bindings: every binding has an id, and the config file can remap any of them.

    # ~/.config/oncall/config.toml  (or $ONCALL_CONFIG)
    [keys]
    "reader.next" = "j,down,space"
    "app.quit" = "ctrl+q,ctrl+c"

Ids are listed by `?` on each screen. An unknown id in the file is reported, not ignored silently.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def config_path() -> Path:
    env = os.environ.get("ONCALL_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oncall" / "config.toml"


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """({binding id: keys}, problems) from the config file; a missing file is an empty keymap."""
    p = path or config_path()
    if not p.exists():
        return {}, []
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"{p}: cannot read the config file: {exc}"]
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        return {}, [f"{p}: [keys] must be a table of binding-id = \"key,key\""]
    out: dict[str, str] = {}
    problems: list[str] = []
    for k, v in keys.items():
        if isinstance(v, str) and v.strip():
            out[str(k)] = v.strip()
        else:
            problems.append(f"{p}: keys.{k} must be a string like \"j,down\"")
    return out, problems
