"""Key bindings: every binding has an id, and the config file can remap any of them.

    # oncall.toml (oncall/config.py: the user's ~/.config/oncall/oncall.toml, the project's, or
    # the keymap file of earlier versions, ~/.config/oncall/config.toml or $ONCALL_CONFIG)
    [keys]
    "reader.next" = "j,down,space"
    "app.quit" = "ctrl+q,ctrl+c"

Ids are listed by `?` on each screen. An unknown id in the file is reported, not ignored silently.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from pathlib import Path

from oncall.config import FILE_NAME, Config, ConfigError, load_config, user_config_dir


def config_path() -> Path:
    """Where a responder remaps keys: the file that sets [keys] today, else their own oncall.toml."""
    cfg = _load_or_none()
    origin = cfg.origin("keys") if cfg is not None else None
    return origin or user_config_dir() / FILE_NAME


def _load_or_none() -> Config | None:
    try:
        return load_config()
    except ConfigError:
        return None


def load_keymap() -> tuple[dict[str, str], list[str]]:
    """({binding id: keys}, problems) from `[keys]` of the config files (oncall.config's discovery
    order); no file is an empty keymap, and a file that cannot be read is a problem, never a console
    that will not start."""
    try:
        cfg = load_config()
    except ConfigError as exc:
        return {}, [f"cannot read the config: {exc}"]
    keys = cfg.get("keys", default={})
    out: dict[str, str] = {}
    problems: list[str] = []
    for k, v in keys.items():
        if isinstance(v, str) and v.strip():
            out[str(k)] = v.strip()
        else:
            problems.append(f"{cfg.where('keys', k)} must be a string like \"j,down\"")
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
