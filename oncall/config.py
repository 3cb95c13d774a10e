"""`oncall.toml`: the one loader for every setting a team or a responder keeps in a file.

Every part of oncall asks this module (never `tomllib` on its own), so a setting means the same
thing wherever it is read and an error can always say which file set it.

Discovery (one order, lowest precedence first; later files override earlier ones key by key):

1. the user's file: `$ONCALL_CONFIG_DIR/oncall.toml`, else `$XDG_CONFIG_HOME/oncall/oncall.toml`,
   else `~/.config/oncall/oncall.toml`;
2. the project's file: `--config PATH` where a command takes it, else `$ONCALL_TOML`, else the
   nearest `oncall.toml` in the current directory or one of its parents.

The personal keymap of earlier versions, `~/.config/oncall/config.toml` (`$ONCALL_CONFIG`), is read
first of all, for its `[keys]` table only.

Merging: tables merge key by key; a named entry (one model under `[prices]`, one source under
`[sources]`, one notify target, one action target) is replaced whole by a later file, never mixed
from two; lists and values are replaced. `Config.origin(...)` says which file set a key, and
`oncall config` prints it.

The schema (top-level tables; anything else is refused, naming the file and the nearest name):

```toml
[redact]                       # oncall/redact.py
patterns = ["ACME-[0-9]{6}"]   # extra Python regexes redacted in everything that leaves the process

[prices."gpt-4o"]              # oncall/ingest/prices.py: USD per million tokens
input = 2.0
output = 8.0

[sources.warehouse]            # oncall/sources: `oncall load @warehouse`
url = "clickhouse://oncall@ch.internal:9440/otel?table=otel_traces"
password_env = "CLICKHOUSE_PASSWORD"

[notify.oncall-slack]          # oncall watch --notify oncall-slack
slack_url_env = "SLACK_WEBHOOK"

[actions.targets.gateway]      # oncall/actions/config.py
adapter = "litellm-config"

[keys]                         # oncall/tui/keys.py: the console's keymap
"reader.next" = "j,ctrl+n"
```

Parsing a section's values (types, secrets given literally, paths relative to the file) stays with
the module that owns the section; it reads `Config.section()` and names `Config.where()` in errors.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.errors import InputError

FILE_NAME = "oncall.toml"
KEYMAP_FILE_NAME = "config.toml"  # the personal keymap file of earlier versions: [keys] only

# Top-level tables oncall reads, and what reads them. A new section is added here, with its owner.
SECTIONS: dict[str, str] = {
    "redact": "extra patterns redacted in exports (oncall/redact.py)",
    "prices": "per-model price overrides, USD per million tokens (oncall/ingest/prices.py)",
    "sources": "named remote trace sources for `oncall load @NAME` (oncall/sources)",
    "notify": "named notification targets for `oncall watch --notify NAME`",
    "actions": "action targets for runbooks and `oncall action` (oncall/actions/config.py)",
    "keys": "the console's keymap (oncall/tui/keys.py)",
}

# Tables whose children are named entries: a later file replaces an entry whole.
ENTRY_TABLES: frozenset[tuple[str, ...]] = frozenset({
    ("prices",), ("sources",), ("notify",), ("actions", "targets"),
})


class ConfigError(InputError):
    """oncall.toml cannot be used; the message names the file and the setting (exit 2)."""


@dataclass(frozen=True)
class ConfigFile:
    """One file in the discovery order."""

    path: Path
    role: str  # "keymap", "user" or "project"
    exists: bool


@dataclass(frozen=True)
class Entry:
    """One named entry of a table such as `[sources.NAME]`, with the file that set it."""

    name: str
    settings: dict[str, Any]
    source: Path | None
    table: tuple[str, ...]

    def where(self, key: str | None = None) -> str:
        """`FILE: [sources.NAME]` (and the key) for an error message."""
        head = f"{self.source or FILE_NAME}: [{_dotted((*self.table, self.name))}]"
        return f"{head} {key}" if key else head


@dataclass(frozen=True, eq=False)
class Config:
    """The merged settings and, for every key, the file that set it.

    One object per state of the files (load_config caches it), so it hashes by identity and callers
    may cache what they derive from it; never mutate `data`.
    """

    data: dict[str, Any] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()  # the discovery order, lowest precedence first, read or not
    origins: dict[tuple[str, ...], Path] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A top-level table ({} when no file sets it)."""
        if name not in SECTIONS:
            raise KeyError(f"{name!r} is not an oncall.toml section; add it to oncall.config.SECTIONS")
        value = self.data.get(name, {})
        return value if isinstance(value, dict) else {}

    def get(self, *path: str, default: Any = None) -> Any:
        node: Any = self.data
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def origin(self, *path: str) -> Path | None:
        """The file that set this key (for a table: the file that set its first key)."""
        for depth in range(len(path), 0, -1):
            hit = self.origins.get(tuple(path[:depth]))
            if hit is not None:
                return hit
        prefix = tuple(path)
        inside = [p for k, p in self.origins.items() if k[:len(prefix)] == prefix]
        return inside[0] if inside else None

    def where(self, *path: str) -> str:
        """`FILE: [table.entry] key` for an error message about this key."""
        src = self.origin(*path)
        return f"{src or FILE_NAME}: {_dotted(path)}" if path else str(src or FILE_NAME)

    def entries(self, *table: str) -> dict[str, Entry]:
        """The named entries of a table (`entries("sources")`, `entries("actions", "targets")`); an
        entry that is not a table is a ConfigError naming its file."""
        raw = self.get(*table, default={})
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.where(*table)} must be a table of named entries ([{_dotted(table)}.NAME])")
        out: dict[str, Entry] = {}
        for name, settings in raw.items():
            if not isinstance(settings, dict):
                raise ConfigError(f"{self.where(*table, name)} must be a table ([{_dotted((*table, name))}])")
            out[name] = Entry(name, settings, self.origin(*table, name), tuple(table))
        return out

    def entry(self, *table: str, name: str) -> Entry:
        """One named entry; a ConfigError listing the names there are (and where oncall looked)."""
        found = self.entries(*table)
        if name in found:
            return found[name]
        known = ", ".join(sorted(found)) or "none"
        looked = ", ".join(str(f.path) for f in self.files if f.role != "keymap")
        raise ConfigError(f"no [{_dotted((*table, name))}] in oncall.toml (names there: {known}; read: {looked})")

    @property
    def read(self) -> list[Path]:
        """The files that exist and were read, lowest precedence first."""
        return [f.path for f in self.files if f.exists]

    @property
    def project_file(self) -> Path | None:
        return next((f.path for f in self.files if f.role == "project"), None)

    def provenance(self) -> list[tuple[str, Path]]:
        """(dotted key, file) for every key set, in a stable order: what `oncall config` prints."""
        return sorted(((_dotted(k), p) for k, p in self.origins.items()), key=lambda kv: kv[0])


# -- discovery ---------------------------------------------------------------------------------

def user_config_dir() -> Path:
    """Where the user's own oncall.toml lives."""
    explicit = os.environ.get("ONCALL_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oncall"


def keymap_path() -> Path:
    """The personal keymap file of earlier versions (still read, for `[keys]` only)."""
    env = os.environ.get("ONCALL_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oncall" / KEYMAP_FILE_NAME


def project_path(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path | None:
    """`--config PATH`, else $ONCALL_TOML, else the nearest oncall.toml upwards from the working
    directory; None when there is none. A path given explicitly must exist."""
    given = explicit or os.environ.get("ONCALL_TOML") or None
    if given:
        p = Path(os.path.expanduser(str(given)))
        if not p.is_file():
            how = "--config" if explicit else "$ONCALL_TOML"
            raise ConfigError(f"{p}: no such file (named by {how})")
        return p
    here = (cwd or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / FILE_NAME
        if p.is_file():
            return p
    return None


def discover(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> tuple[ConfigFile, ...]:
    """The files in the discovery order, lowest precedence first (those that do not exist too, so
    `oncall config` can say where it looked)."""
    keymap = keymap_path()
    user = user_config_dir() / FILE_NAME
    files = [ConfigFile(keymap, "keymap", keymap.is_file()), ConfigFile(user, "user", user.is_file())]
    project = project_path(explicit, cwd)
    if project is not None and not _same_file(project, user):
        files.append(ConfigFile(project, "project", True))
    return tuple(files)


def config_path(start: Path | None = None) -> Path | None:
    """The project oncall.toml in effect (None when there is none); kept for callers that name it."""
    return project_path(None, start)


# -- loading -----------------------------------------------------------------------------------

def load_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Config:
    """Every oncall.toml in the discovery order, merged, with the file that set each key.

    Read again only when a file changes (its mtime and size are the cache key), so callers may ask
    on every use. Raises ConfigError naming the file for unreadable files, bad TOML and unknown
    top-level tables.
    """
    files = discover(explicit, cwd)
    stamp = tuple((str(f.path), f.role, *_stat(f.path)) for f in files if f.exists)
    return _load(files, stamp)


@functools.lru_cache(maxsize=8)
def _load(files: tuple[ConfigFile, ...], _stamp: tuple[Any, ...]) -> Config:
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], Path] = {}
    for f in files:
        if not f.exists:
            continue
        doc = _parse(f.path)
        if f.role == "keymap":
            doc = {"keys": doc["keys"]} if "keys" in doc else {}
        _check_sections(doc, f.path)
        _merge(data, origins, doc, (), f.path)
    return Config(data, files, origins)


def _parse(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _check_sections(doc: dict[str, Any], path: Path) -> None:
    for key, value in doc.items():
        if key not in SECTIONS:
            near = difflib.get_close_matches(key, list(SECTIONS), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else ""
            raise ConfigError(f"{path}: unknown section [{key}]{hint}; oncall.toml has "
                              f"{', '.join(f'[{s}]' for s in SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key} must be a table ([{key}]), not a single value")


def _merge(into: dict[str, Any], origins: dict[tuple[str, ...], Path], doc: dict[str, Any],
           prefix: tuple[str, ...], path: Path) -> None:
    for key, value in doc.items():
        here = (*prefix, key)
        entry = prefix in ENTRY_TABLES
        if isinstance(value, dict) and not entry and isinstance(into.get(key), dict):
            _merge(into[key], origins, value, here, path)
            continue
        if isinstance(value, dict) and not entry:
            into[key] = {}
            _merge(into[key], origins, value, here, path)
            continue
        for stale in [k for k in origins if k[:len(here)] == here]:
            del origins[stale]  # a replaced entry forgets where its old keys came from
        into[key] = value
        origins[here] = path


def _stat(p: Path) -> tuple[int, int]:
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config ({exc.strerror or exc})") from None
    return st.st_mtime_ns, st.st_size


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _dotted(path: tuple[str, ...] | list[str]) -> str:
    """prices."gpt-4o" style: TOML's own spelling of a key path."""
    return ".".join(k if _BARE_KEY.match(k) else '"' + k.replace('"', '\\"') + '"' for k in path)


# -- shared rules for sections ---------------------------------------------------------------------

# Setting names that hold credentials: they must be given as `<name>_env = "VARIABLE"`.
_SECRET_NAME = re.compile(r"(?i)(^|_)(key|token|secret|password|passwd|auth|authorization|credentials?)$")


def refuse_literal_secrets(table: dict[str, Any], where: str) -> None:
    """A setting that looks like a credential given literally (`password = "..."`) is refused: the
    file is read by people and pasted into tickets. Credentials are named by environment variable
    (`password_env = "CLICKHOUSE_PASSWORD"`). Every section holding credentials calls this."""
    for key, value in table.items():
        if isinstance(value, dict):
            if key.endswith("_env"):
                continue  # {Header = "ENV_NAME"} maps
            refuse_literal_secrets(value, f"{where}.{key}")
        elif _SECRET_NAME.search(key) and not key.endswith("_env"):
            raise ConfigError(f"{where}: `{key}` looks like a secret given literally; name the environment "
                              f"variable that holds it instead: `{key}_env = \"VARIABLE\"`")


# -- [redact] ------------------------------------------------------------------------------------

def redact_patterns(path: Path | None = None) -> list[str]:
    """`[redact] patterns`: extra regular expressions redacted in every export, each checked."""
    cfg = load_config(path)
    section = cfg.section("redact")
    patterns = section.get("patterns", [])
    where = cfg.where("redact", "patterns")
    if not isinstance(patterns, list) or not all(isinstance(x, str) for x in patterns):
        raise ConfigError(f"{where} must be a list of strings (regular expressions)")
    unknown = sorted(set(section) - {"patterns"})
    if unknown:
        raise ConfigError(f"{cfg.where('redact', unknown[0])}: unknown key; [redact] has `patterns`")
    for i, pat in enumerate(patterns):
        if not pat:
            raise ConfigError(f"{where}[{i}] is empty (it would match everywhere)")
        try:
            rx = re.compile(pat)
        except re.error as exc:
            raise ConfigError(f"{where}[{i}] {pat!r} is not a valid regular expression: {exc}") from None
        if rx.match(""):
            raise ConfigError(f"{where}[{i}] {pat!r} matches the empty string")
    return list(patterns)
