"""The project's `oncall.toml`: settings a team keeps beside its runbooks (not the personal keymap,
which lives in ~/.config/oncall/config.toml, see oncall/tui/keys.py).

Found at `$ONCALL_TOML` when set, else the first `oncall.toml` in the current directory or one of
its parents. Read once per change of the file. Today it holds:

```toml
[redact]
patterns = ["ACME-[0-9]{6}", "(?i)internal-ticket-[a-z0-9]+"]   # Python regexes, redacted in exports
```
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path
from typing import Any

FILE_NAME = "oncall.toml"


class ConfigError(ValueError):
    """oncall.toml cannot be used; the message names the file and the setting."""


def config_path(start: Path | None = None) -> Path | None:
    """The oncall.toml in effect, or None when there is none."""
    env = os.environ.get("ONCALL_TOML")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / FILE_NAME
        if p.is_file():
            return p
    return None


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The parsed oncall.toml ({} when there is none)."""
    p = path or config_path()
    if p is None:
        return {}
    try:
        stat = p.stat()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the project config ({exc.strerror or exc})") from None
    return _parse(str(p), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parse(path: str, _mtime: int, _size: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the project config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def redact_patterns(path: Path | None = None) -> list[str]:
    """`[redact] patterns`: extra regular expressions redacted in every export, each checked."""
    p = path or config_path()
    section = load_config(p).get("redact", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{p}: [redact] must be a table")
    patterns = section.get("patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(x, str) for x in patterns):
        raise ConfigError(f"{p}: [redact] patterns must be a list of strings (regular expressions)")
    for i, pat in enumerate(patterns):
        if not pat:
            raise ConfigError(f"{p}: [redact] patterns[{i}] is empty (it would match everywhere)")
        try:
            rx = re.compile(pat)
        except re.error as exc:
            raise ConfigError(f"{p}: [redact] patterns[{i}] {pat!r} is not a valid regular expression: {exc}") from None
        if rx.match(""):
            raise ConfigError(f"{p}: [redact] patterns[{i}] {pat!r} matches the empty string")
    return list(patterns)
