"""Replay: rerun the incident's recorded conversations against another model or prompt (design §7).

Headless core (no click, no textual): `suite` reads `replay/targets.toml` and prompt variants,
`conversation` rebuilds each request faithfully from what its import format recorded, `engine`
calls the target with oncall's own retry/concurrency/spend policy, `checks` compares each
original with its replays (the same definitions as `compare`), `runner` ties them to the
incident database through `store`.
"""
