"""The demo's world: what `oncall demo` gives a responder besides the incident, offline, no setup.

- replay targets that answer like the snapshot before the silent update (`demo-pinned`) and the
  current one (`demo-current`), and like each prompt version (the variants v12 and v13 beside the
  incident), served on loopback from the demo's own generator (oncall/demo.py);
- action targets for the shipped runbooks: a LiteLLM-format gateway config (`gateway`), a flagd
  flag file (`flags`), a prompt registry speaking Langfuse's prompt API (`prompts`) and a search
  alias file (`search`), all files beside the incident, and a gateway probe that answers from the
  config as the proxy would.

Files (next to `incident.duckdb`, in `incident.demo-world/`): world.json, gateway.yaml, flags.json,
prompts.json, search.json, prompts/*.md, and serve.json while `oncall demo serve` or the console serves.
No Textual or click here: oncall/commands/demo.py and the console start and stop the server.
"""

from oncall.demoworld.world import (
    ACTION_TARGETS,
    REPLAY_TARGETS,
    World,
    action_target_names,
    action_targets,
    find_world,
    replay_targets,
    world_dir,
    write_world,
)

__all__ = ["ACTION_TARGETS", "REPLAY_TARGETS", "World", "action_target_names", "action_targets", "find_world", "replay_targets",
           "world_dir", "write_world"]
