"""Action targets from oncall.toml: the working directory's, else the user's (~/.config/oncall/).

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
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.actions.errors import ConfigError

CONFIG_NAME = "oncall.toml"

# Setting names that hold credentials: they must be given as `<name>_env = "VARIABLE"`.
_SECRET_NAME = re.compile(r"(?i)(^|_)(key|token|secret|password|passwd|auth|authorization|credentials?)$")


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oncall"


def find_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path | None:
    """--config PATH, else $ONCALL_TOML, else ./oncall.toml, else ~/.config/oncall/oncall.toml."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"{p}: no such file")
        return p
    env = os.environ.get("ONCALL_TOML")
    if env:
        return find_config(env)
    for p in ((cwd or Path.cwd()) / CONFIG_NAME, user_config_dir() / CONFIG_NAME):
        if p.is_file():
            return p
    return None


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
            where = self.source or f"./{CONFIG_NAME} or {user_config_dir() / CONFIG_NAME}"
            raise ConfigError(f"no action target {name!r} in {where} (targets: {known})")
        return self.targets[name]


def load_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> ActionsConfig:
    path = find_config(explicit, cwd)
    if path is None:
        return ActionsConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], source: Path | None = None) -> ActionsConfig:
    where = str(source or CONFIG_NAME)
    actions = data.get("actions", {})
    if not isinstance(actions, dict):
        raise ConfigError(f"{where}: [actions] must be a table")
    raw_targets = actions.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"{where}: [actions.targets] must be a table of targets")
    targets: dict[str, Target] = {}
    for name, raw in raw_targets.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: [actions.targets.{name}] must be a table")
        adapter = raw.get("adapter")
        if not isinstance(adapter, str) or not adapter:
            raise ConfigError(f"{where}: [actions.targets.{name}] needs `adapter = \"...\"`")
        _refuse_literal_secrets(raw, f"{where}: [actions.targets.{name}]")
        settings = {k: v for k, v in raw.items() if k not in ("adapter", "production")}
        targets[name] = Target(name, adapter, settings, bool(raw.get("production", False)), source)
    return ActionsConfig(targets, source)


def _refuse_literal_secrets(table: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            if key.endswith("_env"):
                continue  # {Header = "ENV_NAME"} maps
            _refuse_literal_secrets(value, f"{where}.{key}")
        elif _SECRET_NAME.search(key) and not key.endswith("_env"):
            raise ConfigError(f"{where}: `{key}` looks like a secret given literally; name the environment "
                              f"variable that holds it instead: `{key}_env = \"VARIABLE\"`")
