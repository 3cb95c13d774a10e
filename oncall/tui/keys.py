"""Key bindings: every binding has an id, and the config file can remap any of them.

    # ~/.config/oncall/config.toml  (or $ONCALL_CONFIG)
    [keys]
    "reader.next" = "j,down,space"
    "app.quit" = "ctrl+q,ctrl+c"

Ids are listed by `?` on each screen. An unknown id in the file is reported, not ignored silently.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
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


def binding_ids() -> set[str]:
    """Every binding id the console defines: the BINDINGS of each class in oncall.tui's modules (a new
    screen is covered by being there, not by being added to a list)."""
    from textual.binding import Binding

    import oncall.tui

    names = ["oncall.tui.app"] + [m.name for m in pkgutil.walk_packages(oncall.tui.__path__, "oncall.tui.")]
    ids: set[str] = set()
    for name in names:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for b in cls.__dict__.get("BINDINGS", []):
                if isinstance(b, Binding) and b.id:
                    ids.add(b.id)
    return ids


def unknown_ids(keymap: dict[str, str], source: Path | str | None = None) -> list[str]:
    """One warning line naming the keymap's ids that no binding has (with the nearest real id) and the
    valid ones; [] when every id is known. Textual ignores an unknown id silently: a typo in the config
    file would leave the responder's key doing nothing, with no hint why."""
    valid = binding_ids()
    unknown = sorted(k for k in keymap if k not in valid)
    if not unknown:
        return []
    named = []
    for k in unknown:
        near = difflib.get_close_matches(k, valid, n=1)
        named.append(f"{k} (did you mean {near[0]}?)" if near else k)
    where = f"{source}: " if source else ""
    return [f"{where}[keys] has unknown binding ids, ignored: {', '.join(named)}; "
            f"valid ids: {', '.join(sorted(valid))}"]
