"""Replay suites kept as files: `targets.toml`, `prompts/NAME.md`, `rubric.md` (design §7, issue 11).

    [settings]                      # optional
    confirm_above = 1.00            # ask before a run estimated above this many USD
    concurrency = 8                 # default for targets that set no max_concurrency
    max_attempts = 5                # per call (429, 5xx, timeouts, dropped connections)
    backoff_base = 0.5              # seconds; full-jitter exponential backoff when no Retry-After
    retry_budget = 50               # retries for the whole run (default: max(20, requests / 5))

    [targets.old-snapshot]
    base_url = "https://api.openai.com/v1"
    model = "gpt-4o-2024-08-06"
    api_key_env = "OPENAI_API_KEY"  # the *name* of the variable; keys never live in files
    price_in = 2.50                 # USD per million tokens (default: oncall.toml [prices], else genai-prices)
    price_out = 10.00
    max_concurrency = 16
    stream = true                   # read answers as streams (TTFT is recorded)
    judge = false                   # may grade pairs with the suite's rubric
    connect_timeout = 10            # seconds
    read_timeout = 120
    [targets.old-snapshot.params]   # sampling parameters: override what each request recorded
    temperature = 0

A prompt variant is Markdown with front matter (`name`, `version`, `replaces`: which system
prompt it replaces, a prompt name or `*`); the body is the new system prompt.

Every error names the file, the line and the key, so a responder fixes it in one go.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.ingest.prices import list_price

DEFAULT_SUITE = "replay"
DEFAULT_CONFIRM_ABOVE = 1.00
DEFAULT_CONCURRENCY = 8

# Parameters a target or --param may set, and the type each must have.
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "max_tokens": (int,), "max_completion_tokens": (int,),
    "seed": (int,), "stop": (str, list), "frequency_penalty": (int, float), "presence_penalty": (int, float),
    "response_format": (dict,), "tool_choice": (str, dict), "parallel_tool_calls": (bool,),
    "reasoning_effort": (str,), "logit_bias": (dict,), "n": (int,), "user": (str,),
}

_TARGET_KEYS: dict[str, tuple[type, ...]] = {
    "base_url": (str,), "model": (str,), "api_key_env": (str,), "price_in": (int, float),
    "price_out": (int, float), "max_concurrency": (int,), "stream": (bool,), "judge": (bool,),
    "connect_timeout": (int, float), "read_timeout": (int, float), "params": (dict,),
    "description": (str,), "default_query": (dict,),
}
_SETTINGS_KEYS: dict[str, tuple[type, ...]] = {"confirm_above": (int, float), "concurrency": (int,),
                                               "max_attempts": (int,), "backoff_base": (int, float),
                                               "retry_budget": (int,)}
_FRONT_KEYS = ("name", "version", "replaces", "description")


class SuiteError(ValueError):
    """A suite file is wrong; the message names file, line and key."""


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    price_in: float | None = None  # USD per million tokens
    price_out: float | None = None
    price_source: str = "unknown"  # targets.toml | oncall.toml | genai-prices | unknown
    max_concurrency: int | None = None
    stream: bool = False
    judge: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    params: dict[str, Any] = field(default_factory=dict)
    default_query: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What may be stored and printed: everything but a key (which this object never holds)."""
        return {"name": self.name, "base_url": self.base_url, "model": self.model, "api_key_env": self.api_key_env,
                "price_in": self.price_in, "price_out": self.price_out, "price_source": self.price_source,
                "max_concurrency": self.max_concurrency, "stream": self.stream, "judge": self.judge,
                "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
                "params": dict(self.params), "default_query": dict(self.default_query)}

    @staticmethod
    def from_public(d: dict[str, Any]) -> Target:
        return Target(**{k: v for k, v in d.items() if k in Target.__dataclass_fields__})

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        if self.price_in is None or self.price_out is None:
            return None
        return ((input_tokens or 0) * self.price_in + (output_tokens or 0) * self.price_out) / 1e6


@dataclass(frozen=True)
class PromptVariant:
    name: str
    version: str | None
    replaces: str  # a prompt name, or "*" for any system prompt
    text: str
    path: str

    def applies_to(self, prompt_name: str | None) -> bool:
        return self.replaces == "*" or (prompt_name is not None and self.replaces == prompt_name)


@dataclass
class Suite:
    path: Path
    targets: dict[str, Target]
    confirm_above: float = DEFAULT_CONFIRM_ABOVE
    concurrency: int = DEFAULT_CONCURRENCY
    rubric: str | None = None
    retry: dict[str, Any] = field(default_factory=dict)  # max_attempts, backoff_base, retry_budget
    prompt_dirs: list[Path] = field(default_factory=list)  # more variants after SUITE/prompts (the demo's)

    def target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none"
            raise SuiteError(f"{self.path / 'targets.toml'}: no target named {name!r} (targets: {known})")
        return self.targets[name]

    def prompt(self, name_or_path: str) -> PromptVariant:
        """A variant by file path, or by name in the suite's prompts/ directory."""
        p = Path(name_or_path)
        dirs = [self.path / "prompts", *self.prompt_dirs]
        file_name = name_or_path if name_or_path.endswith(".md") else name_or_path + ".md"
        for d in dirs:
            if p.is_file():
                break
            p = d / file_name
        if not p.is_file():
            avail = sorted({x.stem for d in dirs if d.is_dir() for x in d.glob("*.md")})
            raise SuiteError(f"prompt {name_or_path!r}: no such file, and not in {' or '.join(map(str, dirs))} "
                             f"(variants: {', '.join(avail) or 'none'})")
        return load_prompt(p)

    def variants(self) -> list[str]:
        """The names of the prompt variants in SUITE/prompts and the other prompt directories."""
        return sorted({x.stem for d in [self.path / "prompts", *self.prompt_dirs] if d.is_dir() for x in d.glob("*.md")})


# -- locating keys for error messages ----------------------------------------------------------------
def _line_of(text: str, table: str | None, key: str | None) -> int | None:
    """The 1-based line of `key` inside `[table]` (or of the table header), found in the text:
    tomllib keeps no positions, and this is enough for a file a person wrote."""
    lines = text.splitlines()
    start = 0
    if table is not None:
        hdr = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in _split_dotted(table)) + r"\s*\]\s*(#.*)?$")
        for i, ln in enumerate(lines):
            if hdr.match(ln):
                start = i
                break
        else:
            return None
        if key is None:
            return start + 1
    if key is None:
        return None
    kre = re.compile(r"^\s*(" + re.escape(key) + r"|\"" + re.escape(key) + r"\")\s*=")
    for i in range(start + (1 if table is not None else 0), len(lines)):
        if table is not None and i > start and re.match(r"^\s*\[", lines[i]):
            break
        if kre.match(lines[i]):
            return i + 1
    return start + 1 if table is not None else None


def _split_dotted(table: str) -> list[str]:
    return [p.strip('"') for p in table.split(".")]


def _where(path: Path, text: str, table: str | None, key: str | None) -> str:
    line = _line_of(text, table, key)
    return f"{path}:{line}" if line else str(path)


def _check_type(path: Path, text: str, table: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = " or ".join("number" if t is float else t.__name__.replace("str", "string").replace("dict", "table")
                           .replace("list", "array") for t in types if t is not int or float not in types)
        raise SuiteError(f"{_where(path, text, table, key)}: [{table}] {key} must be a {want}, "
                         f"not {type(value).__name__} {value!r}")


def check_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    """Sampling parameters by name and type (a typo must not silently do nothing)."""
    for k, v in params.items():
        if k not in PARAM_TYPES:
            raise SuiteError(f"{where}: unknown parameter {k!r} (known: {', '.join(sorted(PARAM_TYPES))})")
        types = PARAM_TYPES[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise SuiteError(f"{where}: parameter {k} = {v!r} has the wrong type")
    return params


# -- loading -------------------------------------------------------------------------------------------
def load_suite(directory: str | Path | None = None) -> Suite:
    """The suite in `directory` (default ./replay); a missing targets.toml is an error naming the path."""
    base = Path(directory or DEFAULT_SUITE)
    path = base / "targets.toml"
    if not path.is_file():
        raise SuiteError(f"{path}: no targets file (write one, see replay/README.md, or point --suite DIR at a suite)")
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from None
    for top in doc:
        if top not in ("targets", "settings"):
            raise SuiteError(f"{_where(path, text, top, None) if isinstance(doc[top], dict) else _where(path, text, None, top)}: "
                             f"unknown section or key {top!r} (expected [settings] and [targets.NAME])")
    settings = doc.get("settings") or {}
    for k, v in settings.items():
        if k not in _SETTINGS_KEYS:
            raise SuiteError(f"{_where(path, text, 'settings', k)}: unknown key {k!r} in [settings] "
                             f"(known: {', '.join(_SETTINGS_KEYS)})")
        _check_type(path, text, "settings", k, v, _SETTINGS_KEYS[k])
    targets: dict[str, Target] = {}
    raw_targets = doc.get("targets") or {}
    if not isinstance(raw_targets, dict):
        raise SuiteError(f"{_where(path, text, None, 'targets')}: targets must be tables like [targets.NAME]")
    for name, t in raw_targets.items():
        table = f"targets.{name}"
        if not isinstance(t, dict):
            raise SuiteError(f"{_where(path, text, 'targets', name)}: targets.{name} must be a table")
        targets[name] = _target(path, text, name, table, t)
    suite = Suite(path=base, targets=targets,
                  confirm_above=float(settings.get("confirm_above", DEFAULT_CONFIRM_ABOVE)),
                  concurrency=int(settings.get("concurrency", DEFAULT_CONCURRENCY)),
                  retry={k: settings[k] for k in ("max_attempts", "backoff_base", "retry_budget") if k in settings})
    rubric = base / "rubric.md"
    if rubric.is_file():
        suite.rubric = rubric.read_text(encoding="utf-8").strip() or None
    return suite


def load_suite_for(directory: str | Path | None, incident: str | Path | None) -> Suite:
    """The suite as `load_suite`, and on a demo incident the demo world's targets (`demo-pinned`,
    `demo-current`, served on loopback: oncall/demoworld) and prompt variants (support-bot-v12, -v13)
    beside it: the suite's own entries of the same name win. Without a targets.toml the demo's
    targets alone make the suite."""
    from oncall.demoworld import find_world, replay_targets

    world = find_world(incident)
    base = Path(directory or DEFAULT_SUITE)
    if world is None or (base / "targets.toml").is_file():
        suite = load_suite(directory)
    else:
        suite = Suite(path=base, targets={})
    if world is not None:
        from oncall.demoworld.server import ensure_url

        for name, target in replay_targets(ensure_url(world)).items():
            suite.targets.setdefault(name, target)
        suite.prompt_dirs.append(world.variants)
    return suite


def _target(path: Path, text: str, name: str, table: str, t: dict[str, Any]) -> Target:
    for k, v in t.items():
        if k not in _TARGET_KEYS:
            raise SuiteError(f"{_where(path, text, table, k)}: unknown key {k!r} in [{table}] "
                             f"(known: {', '.join(sorted(_TARGET_KEYS))})")
        _check_type(path, text, table, k, v, _TARGET_KEYS[k])
    for req in ("base_url", "model"):
        if not t.get(req):
            raise SuiteError(f"{_where(path, text, table, None)}: [{table}] needs {req}")
    if not re.match(r"^https?://", t["base_url"]):
        raise SuiteError(f"{_where(path, text, table, 'base_url')}: [{table}] base_url must start with http:// or "
                         f"https://, not {t['base_url']!r}")
    env = t.get("api_key_env")
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise SuiteError(f"{_where(path, text, table, 'api_key_env')}: api_key_env names an environment variable "
                         f"(like OPENAI_API_KEY); it must never hold the key itself")
    for k in ("max_concurrency",):
        if k in t and t[k] < 1:
            raise SuiteError(f"{_where(path, text, table, k)}: [{table}] {k} must be at least 1")
    for k in ("price_in", "price_out", "connect_timeout", "read_timeout"):
        if k in t and t[k] < 0:
            raise SuiteError(f"{_where(path, text, table, k)}: [{table}] {k} must not be negative")
    params = t.get("params") or {}
    pt = f"{table}.params"
    for k in params:
        if k not in PARAM_TYPES:
            raise SuiteError(f"{_where(path, text, pt, k)}: unknown parameter {k!r} in [{pt}] "
                             f"(known: {', '.join(sorted(PARAM_TYPES))})")
        _check_type(path, text, pt, k, params[k], PARAM_TYPES[k])
    price_in, price_out, source = t.get("price_in"), t.get("price_out"), "targets.toml"
    if (price_in is None) != (price_out is None):
        missing = "price_out" if price_out is None else "price_in"
        raise SuiteError(f"{_where(path, text, table, None)}: [{table}] sets one price; set {missing} too")
    if price_in is None:
        listed = list_price(t["model"])  # the one price lookup: [prices] of oncall.toml, then genai-prices
        price_in, price_out, source = listed if listed else (None, None, "unknown")
    return Target(name=name, base_url=t["base_url"], model=t["model"], api_key_env=env,
                  price_in=None if price_in is None else float(price_in),
                  price_out=None if price_out is None else float(price_out), price_source=source,
                  max_concurrency=t.get("max_concurrency"), stream=bool(t.get("stream", False)),
                  judge=bool(t.get("judge", False)), connect_timeout=float(t.get("connect_timeout", 10.0)),
                  read_timeout=float(t.get("read_timeout", 120.0)), params=dict(params),
                  default_query={str(k): str(v) for k, v in (t.get("default_query") or {}).items()})


def load_prompt(path: Path) -> PromptVariant:
    """A prompt variant: `---` front matter (key: value lines), then the system prompt."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise SuiteError(f"{path}:1: a prompt variant starts with '---' front matter (name, version, replaces)")
    front: dict[str, str] = {}
    end = None
    for i, ln in enumerate(lines[1:], start=2):
        if ln.strip() == "---":
            end = i
            break
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$", ln)
        if not m:
            raise SuiteError(f"{path}:{i}: front matter lines are 'key: value', not {ln.strip()!r}")
        key, value = m.group(1), m.group(2).strip().strip('"').strip("'")
        if key not in _FRONT_KEYS:
            raise SuiteError(f"{path}:{i}: unknown front matter key {key!r} (known: {', '.join(_FRONT_KEYS)})")
        front[key] = value
    if end is None:
        raise SuiteError(f"{path}: front matter is not closed with '---'")
    for req in ("name", "replaces"):
        if not front.get(req):
            raise SuiteError(f"{path}:1: front matter needs {req!r} "
                             f"({'the prompt name it replaces, or * for any system prompt' if req == 'replaces' else 'the variant name'})")
    body = "\n".join(lines[end:]).strip("\n")
    if not body.strip():
        raise SuiteError(f"{path}:{end + 1}: the prompt variant has no text after its front matter")
    return PromptVariant(name=front["name"], version=front.get("version"), replaces=front["replaces"], text=body,
                         path=str(path))
