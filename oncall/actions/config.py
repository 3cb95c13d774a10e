"""Action targets from oncall.toml (`[actions.targets.NAME]`), read through oncall.config's one
loader: the project's file and the user's (~/.config/oncall/oncall.toml), the project's winning for
a target both name.

    [actions.targets.gateway]            # a name runbooks and `--target` use
    adapter = "litellm-config"           # which adapter acts on it (oncall action adapters)
    production = true                    # typed confirmation before any write
    config = "/etc/litellm/config.yaml"
    proxy_url = "http://127.0.0.1:4000"
    master_key_env = "LITELLM_MASTER_KEY"   # secrets only as environment-variable names

Paths are relative to the file that names them. A setting that looks like a secret given literally
(`master_key = "sk-..."`) is refused: the file is read by people and copied into tickets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.actions.errors import ConfigError
from oncall.config import FILE_NAME, Config, refuse_literal_secrets
from oncall.config import ConfigError as CoreConfigError
from oncall.config import discover as _discover
from oncall.config import load_config as _load_core

CONFIG_NAME = FILE_NAME

def find_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path | None:
    """The project oncall.toml in effect (--config PATH, else $ONCALL_TOML, else the nearest upwards),
    else the user's; None when there is neither. Targets come from both (oncall/config.py)."""
    files = _discover(explicit, cwd)
    read = [f.path for f in files if f.exists and f.role != "keymap"]
    return read[-1] if read else None


@dataclass
class Target:
    """One configured target: what an adapter acts on, and how."""

    name: str
    adapter: str
    settings: dict[str, Any]
    production: bool = False
    source: Path | None = None  # the oncall.toml it came from

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.settings or self.settings[key] in (None, ""):
            raise ConfigError(f"{self.where}: target {self.name!r} ({self.adapter}) needs `{key}`")
        return self.settings[key]

    def path(self, key: str, *, required: bool = True) -> Path | None:
        raw = self.require(key) if required else self.settings.get(key)
        if raw is None:
            return None
        p = Path(os.path.expanduser(str(raw)))
        if not p.is_absolute() and self.source is not None:
            p = self.source.parent / p
        return p

    @property
    def where(self) -> str:
        return f"{self.source}" if self.source else "oncall.toml"


@dataclass
class ActionsConfig:
    targets: dict[str, Target] = field(default_factory=dict)
    source: Path | None = None

    def target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none"
            where = self.source or f"any {CONFIG_NAME}"
            raise ConfigError(f"no action target {name!r} in {where} (targets: {known}); add "
                              f"[actions.targets.{name}] (`oncall config` lists the files oncall reads)")
        return self.targets[name]


def load_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None, *,
                incident: str | os.PathLike[str] | None = None) -> ActionsConfig:
    """The action targets of every oncall.toml in the discovery order (`--config PATH` replaces the
    project's file). On a demo incident (`incident` is its database) the demo world's targets
    (`gateway`, `flags`, `prompts`: files beside it) replace any of those names: a drill never acts
    on a real gateway."""
    try:
        cfg = _load_core(explicit, cwd)
    except CoreConfigError as exc:
        raise ConfigError(str(exc)) from None
    out = parse_config(cfg)
    if incident is not None:
        from oncall.demoworld import action_targets, find_world

        world = find_world(incident)
        if world is not None:
            from oncall.demoworld.server import ensure_url

            out.targets.update(action_targets(world, ensure_url(world)))
    return out


def parse_config(data: Config | dict[str, Any], source: Path | None = None) -> ActionsConfig:
    """Targets from a loaded Config (each knows its file), or from one parsed file's dict."""
    cfg = data if isinstance(data, Config) else None
    raw_actions = cfg.section("actions") if cfg is not None else data.get("actions", {})

    def origin(*key: str) -> Path | None:
        return cfg.origin(*key) if cfg is not None else source

    where = str(origin("actions") or CONFIG_NAME)
    if not isinstance(raw_actions, dict):
        raise ConfigError(f"{where}: [actions] must be a table")
    raw_targets = raw_actions.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"{where}: [actions.targets] must be a table of targets")
    targets: dict[str, Target] = {}
    for name, raw in raw_targets.items():
        src = origin("actions", "targets", name)
        here = f"{src or CONFIG_NAME}: [actions.targets.{name}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{here} must be a table")
        adapter = raw.get("adapter")
        if not isinstance(adapter, str) or not adapter:
            raise ConfigError(f"{here} needs `adapter = \"...\"`")
        _refuse_literal_secrets(raw, here)
        settings = {k: v for k, v in raw.items() if k not in ("adapter", "production")}
        targets[name] = Target(name, adapter, settings, bool(raw.get("production", False)), src)
    project = cfg.project_file if cfg is not None else source
    read = [f.path for f in cfg.files if f.exists and f.role != "keymap"] if cfg is not None else []
    return ActionsConfig(targets, project or (read[-1] if read else None))


def _refuse_literal_secrets(table: dict[str, Any], where: str) -> None:
    try:
        refuse_literal_secrets(table, where)
    except CoreConfigError as exc:
        raise ConfigError(str(exc)) from None
