"""The demo world's files beside the incident, and the targets they make.

`incident.duckdb` → `incident.demo-world/`:

    world.json          the seed and an id (a server answers /health with it), written by `oncall demo`
    gateway.yaml        LiteLLM proxy config: support-bot, support-bot-mini, extract, summarize,
                        summarize-fallback (the `gateway` action target; the server's /gateway probe
                        answers from it)
    flags.json          flagd flag file (the `flags` action target)
    prompts.json        the prompt registry behind the `prompts` target (Langfuse's prompt API,
                        served by the demo server, which alone writes this file)
    search.json         the help-center's search alias file (the `search` target: index-alias)
    prompts/*.md        replay prompt variants: support-bot-v12, support-bot-v13
    serve.json          where the server listens, while `oncall demo serve` or the console runs

Targets: replay `demo-pinned` (the snapshot before the silent update) and `demo-current` (what the
gpt-4o alias serves now); actions `gateway`, `flags`, `prompts`, `search`. On a demo incident these names
mean the demo's, whatever oncall.toml says, so a drill never writes to a real gateway.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncall import demo
from oncall.fileio import write_atomic

SUFFIX = ".demo-world"
WORLD_FILE = "world.json"
SERVE_FILE = "serve.json"

# name -> (model, what it is)
REPLAY_TARGETS: dict[str, tuple[str, str]] = {
    "demo-pinned": (demo.OLD_SNAPSHOT, "the demo's gpt-4o snapshot before the silent update"),
    "demo-current": ("gpt-4o", f"the demo's gpt-4o alias as it serves now ({demo.NEW_SNAPSHOT})"),
}
ACTION_TARGETS: dict[str, str] = {
    "gateway": "litellm-config",
    "flags": "flagd-file",
    "prompts": "langfuse-label",
    "search": "index-alias",
}
# The help-center's search alias as the incident leaves it (on the index rebuilt with another embedding
# model) and the indexes it may point at (the index-rollback runbook's target).
SEARCH_ALIASES = {"aliases": {"help-articles": demo.NEW_INDEX}, "indexes": [demo.OLD_INDEX, demo.NEW_INDEX]}

GATEWAY_YAML = """\
# The demo's LiteLLM proxy config (written by `oncall demo`; the `gateway` action target).
# `oncall demo serve` answers probes at /gateway as the proxy would with this file (--reload).
model_list:
  - model_name: support-bot
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
  - model_name: support-bot-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
  - model_name: extract
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
  - model_name: summarize
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      api_key: os.environ/ANTHROPIC_API_KEY
  - model_name: summarize-fallback
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY

router_settings:
  routing_strategy: simple-shuffle
  fallbacks:
    - summarize: [summarize-fallback]

litellm_settings:
  drop_params: true
"""


def _flags() -> dict[str, Any]:
    onoff = {"on": True, "off": False}
    flags: dict[str, Any] = {
        f: {"state": "ENABLED", "variants": dict(onoff), "defaultVariant": "on"}
        for f in ("support-bot", "extract", "summarize", "agent-tools-send-email")
    }
    flags["support-bot-model"] = {"state": "ENABLED", "variants": {"primary": "support-bot",
                                                                   "fallback": "support-bot-mini"},
                                  "defaultVariant": "primary"}
    return {"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": flags}


def _prompt_registry() -> dict[str, Any]:
    """support-bot v12 and v13 (production), extract v4, summarize v2: the versions the traces name."""
    def version(n: int, text: str, labels: list[str]) -> dict[str, Any]:
        return {"version": n, "type": "text", "prompt": text, "labels": labels, "config": {}, "tags": []}

    return {"prompts": {
        "support-bot": [version(12, demo.SYSTEM_V12, []), version(13, demo.SYSTEM_V13, ["latest", "production"])],
        "extract": [version(4, demo.SYSTEM_EXTRACT, ["latest", "production"])],
        "summarize": [version(2, demo.SYSTEM_SUMMARIZE, ["latest", "production"])],
    }}


def _variant(version: str, text: str, about: str) -> str:
    return (f"---\nname: support-bot-{version}\nversion: {version}\nreplaces: support-bot\n"
            f"description: {about}\n---\n{text}\n")


@dataclass(frozen=True)
class World:
    dir: Path
    seed: int
    id: str

    @property
    def gateway(self) -> Path:
        return self.dir / "gateway.yaml"

    @property
    def flags(self) -> Path:
        return self.dir / "flags.json"

    @property
    def prompts(self) -> Path:
        return self.dir / "prompts.json"

    @property
    def search(self) -> Path:
        return self.dir / "search.json"

    @property
    def variants(self) -> Path:
        return self.dir / "prompts"

    @property
    def serve_file(self) -> Path:
        return self.dir / SERVE_FILE


def world_dir(db_path: str | Path) -> Path:
    p = Path(db_path).absolute()  # absolute: targets name these files from any working directory
    return p.parent / f"{p.stem}{SUFFIX}"


def write_world(db_path: str | Path, seed: int) -> World:
    """(Re)write the world beside a freshly built demo incident: every target back to its start."""
    d = world_dir(db_path)
    shutil.rmtree(d, ignore_errors=True)
    (d / "prompts").mkdir(parents=True)
    world = World(d, seed, secrets.token_hex(8))
    write_atomic(world.gateway, [GATEWAY_YAML], "writing the demo's gateway config")
    write_atomic(world.flags, [json.dumps(_flags(), indent=2) + "\n"], "writing the demo's flag file")
    write_atomic(world.prompts, [json.dumps(_prompt_registry(), indent=2) + "\n"], "writing the demo's prompts")
    write_atomic(world.search, [json.dumps(SEARCH_ALIASES, indent=2) + "\n"], "writing the demo's search aliases")
    write_atomic(world.variants / "support-bot-v12.md",
                 [_variant("v12", demo.SYSTEM_V12, "acme's support prompt before v13 (the previous version)")],
                 "writing a prompt variant")
    write_atomic(world.variants / "support-bot-v13.md",
                 [_variant("v13", demo.SYSTEM_V13, "acme's support prompt v13: the knowledge base pasted in")],
                 "writing a prompt variant")
    write_atomic(d / WORLD_FILE, [json.dumps({"seed": seed, "id": world.id}) + "\n"], "writing the demo world")
    return world


def find_world(db_path: str | Path | None) -> World | None:
    """The world beside a demo incident (None for any other incident)."""
    if db_path is None:
        return None
    d = world_dir(db_path)
    try:
        meta = json.loads((d / WORLD_FILE).read_text(encoding="utf-8"))
        return World(d, int(meta["seed"]), str(meta["id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def replay_targets(base_url: str) -> dict[str, Any]:
    """The demo's replay targets (oncall.replay.suite.Target), at the server's `base_url`."""
    from oncall.replay.suite import Target

    pin, pout = demo.PRICES["gpt-4o"]
    return {name: Target(name=name, base_url=base_url.rstrip("/") + "/v1", model=model, price_in=pin * 1e6,
                         price_out=pout * 1e6, price_source="the demo's prices", max_concurrency=8,
                         read_timeout=30.0)
            for name, (model, _) in REPLAY_TARGETS.items()}


def action_target_names() -> list[str]:
    """The demo's action targets this oncall has an adapter for."""
    from oncall.actions.registry import ADAPTERS

    return [name for name, adapter in ACTION_TARGETS.items() if adapter in ADAPTERS]


def action_targets(world: World, base_url: str) -> dict[str, Any]:
    """The demo's action targets (oncall.actions.config.Target) on the world's files and server."""
    from oncall.actions.config import Target
    from oncall.actions.registry import ADAPTERS

    src = world.dir / WORLD_FILE
    targets = {
        "gateway": Target("gateway", "litellm-config", {"config": str(world.gateway), "reload": "watch",
                                                        "proxy_url": base_url.rstrip("/") + "/gateway",
                                                        "verify_timeout": 10}, False, src),
        "flags": Target("flags", "flagd-file", {"path": str(world.flags)}, False, src),
        "prompts": Target("prompts", "langfuse-label", {"base_url": base_url.rstrip("/") + "/langfuse",
                                                        "auth": "none", "cache_ttl": 0}, False, src),
        "search": Target("search", "index-alias", {"path": str(world.search)}, False, src),
    }
    return {name: t for name, t in targets.items() if t.adapter in ADAPTERS}  # an adapter this oncall has


def rebind(target: Any, db_path: str | Path | None) -> Any:
    """A stored run's demo target at the world's server now (a resumed run's old port is gone);
    any other target as it is."""
    world = find_world(db_path)
    if world is None or target.name not in REPLAY_TARGETS or not target.base_url.startswith("http://127.0.0.1:"):
        return target
    from oncall.demoworld.server import ensure_url

    url = ensure_url(world).rstrip("/") + "/v1"
    return target if url == target.base_url else type(target).from_public({**target.public(), "base_url": url})
