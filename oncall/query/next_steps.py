"""What to do next about a cause: the replay that would test it and the runbook that mitigates it.

Each entry of `changes` (as `Change.to_dict()` gives it) knows what would test it and what would fix it:

- a served-model change: replay the cohort on the snapshot before (`demo-pinned` on the demo; else a
  replay target whose model is that snapshot, or any target with `--model SNAPSHOT`), and the pin
  runbook (`provider-model-regression`);
- a prompt-version change: replay the cohort with the previous version (a prompt variant of the
  replay suite whose `version` is the one replaced) against the model it uses today, and the prompt
  rollback (`prompt-regression`);
- an error burst on a provider: the fallback runbook (`provider-outage`) for the alias that provider
  serves (read from the LiteLLM gateway config of the runbook's action target);
- a cost shift (a shift of cost/request, or a cause whose effects raise it): the cost runbook
  (`cost-runaway`);
- a new retrieval index (an index rebuilt, often with another embedding model): the index rollback
  (`index-rollback`) pointing the alias that names the new index (read from the runbook's `search`
  action target's alias file) back at the index before. No replay: a replay sends the documents each
  call was given as recorded (they are in its messages), so it cannot test a retrieval change.

Every step is prefilled from the cause — cohort, baseline window (the same cohort before the cause
began), target, alias — and carries the exact `oncall` command line (argv and shell text) that runs
it, so the CLI, `changes --json` and the console offer the same thing. What could not be read from
the incident, the replay suite or the gateway config is left to the runbook's default and said in
`notes`, never guessed silently.

Which suggestion was taken is a trail event (`record_taken`, kind "suggestion"); `taken()` reads
those back, and also recognises a replay run or runbook run started by hand with a suggestion's own
parameters (the CLI path), so the postmortem can say which suggestion was followed.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oncall.query.filters import compile_on, quote_value
from oncall.query.registry import dialect_of

# The shipped runbooks each kind of cause leads to (runbooks/*.md; a team's own of the same name wins).
PIN_RUNBOOK = "provider-model-regression"
PROMPT_RUNBOOK = "prompt-regression"
OUTAGE_RUNBOOK = "provider-outage"
COST_RUNBOOK = "cost-runaway"
INDEX_RUNBOOK = "index-rollback"
SEARCH_TARGET = "search"  # the index-alias action target index-rollback acts on
# The demo's loopback replay targets (oncall demo serve): the snapshot before the silent update, and today's.
DEMO_PINNED, DEMO_CURRENT = "demo-pinned", "demo-current"
SAMPLE = 20  # requests of the cohort a suggested replay sends
REPEAT = 3  # replays of each: the replays' own variation is told apart from the change
SEED = 1  # the same sample every time the suggestion is run
JSON_METRICS = ("json_valid_rate", "json_key_drift")
ERROR_METRICS = ("error_rate",)
COST_METRICS = ("cost_per_request",)
FAILING_SHARE = 0.9  # an error burst in all traffic is a provider's when it carries this share of the failures


@dataclass
class NextStep:
    kind: str  # replay | runbook
    id: str  # stable for the cause: replay-before | replay-previous-prompt | runbook:NAME
    title: str
    argv: list[str]  # the oncall command's arguments (after `oncall`)
    params: dict[str, Any]  # replay: cohort, baseline, target, model, prompt, n, repeat, seed; runbook: its params
    runbook: str | None = None
    notes: list[str] = field(default_factory=list)  # what was left to a default, and why

    @property
    def command(self) -> str:
        """The command line as a responder would paste it into a shell."""
        return "oncall " + shlex.join(self.argv)

    @property
    def dry_run_argv(self) -> list[str] | None:
        """A runbook's dry run: what it would read and change, with nothing written."""
        return [*self.argv, "--dry-run"] if self.kind == "runbook" else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["command"] = self.command
        if self.dry_run_argv:
            d["dry_run_command"] = "oncall " + shlex.join(self.dry_run_argv)
        return d


@dataclass
class Setting:
    """What the steps are prefilled from besides the cause: read once for all causes."""

    demo: bool = False
    db: str | None = None  # --db for the commands (None: the default incident)
    targets: dict[str, str] = field(default_factory=dict)  # replay target -> the model it calls (no judges)
    prompt_dirs: list[Path] = field(default_factory=list)  # where the suite's prompt variants are
    suite_dir: str | None = None  # --suite for the commands (None: $ONCALL_REPLAY_SUITE, else ./replay)
    suite_problem: str | None = None
    gateway: dict[str, Any] | None = None  # the LiteLLM config of the runbooks' gateway target, parsed
    gateway_problem: str | None = None
    aliases: dict[str, str] | None = None  # the search target's aliases (alias -> index), when it is a file
    aliases_problem: str | None = None


def load_setting(con: Any, *, db: str | None = None, incident: str | os.PathLike[str] | None = None,
                 suite_dir: str | None = None) -> Setting:
    """The demo flag, the replay suite's targets and variants, and the gateway config; a missing or
    broken one is a note on the steps that need it, never an error (the causes are still worth listing).
    On a demo incident (`incident`, its database) the demo world's targets, variants and gateway are
    read from its files, as `replay` and `runbook` will find them (oncall/demoworld); nothing is started."""
    from oncall.demo import demo_truth
    from oncall.demoworld import REPLAY_TARGETS, find_world
    from oncall.replay.suite import DEFAULT_SUITE, SuiteError, load_suite

    s = Setting(db=db, suite_dir=suite_dir)
    world = find_world(incident) if incident is not None else None
    try:
        s.demo = world is not None or demo_truth(con) is not None
    except Exception:  # noqa: BLE001 - an incident without a meta table is not the demo
        s.demo = False
    base = Path(suite_dir or os.environ.get("ONCALL_REPLAY_SUITE") or DEFAULT_SUITE)
    try:
        suite = load_suite(base)
        s.targets = {n: t.model for n, t in sorted(suite.targets.items()) if not t.judge}
    except SuiteError as exc:
        s.suite_problem = str(exc)
    s.prompt_dirs = [base / "prompts"]
    if world is not None:  # the suite's own entries of the same name win (oncall.replay.suite.load_suite_for)
        for name, (model, _) in REPLAY_TARGETS.items():
            s.targets.setdefault(name, model)
        s.prompt_dirs.append(world.variants)
        s.suite_problem = None
    s.gateway, s.gateway_problem = _gateway_doc(world.gateway if world is not None else None)
    s.aliases, s.aliases_problem = _search_aliases(world.search if world is not None else None)
    return s


def _action_targets() -> tuple[dict[str, Any], str | None]:
    """oncall.toml's action targets, or why they cannot be read (said in the notes)."""
    from oncall.actions.config import load_config

    try:
        return load_config().targets, None
    except Exception as exc:  # noqa: BLE001 - ConfigError: said in the notes
        return {}, f"cannot read the action targets: {exc}"


def _target_file(target: Any, key: str) -> tuple[Path | None, str | None]:
    """The file a target's setting names, or why it names none."""
    try:
        return target.path(key), None
    except Exception as exc:  # noqa: BLE001 - a target without that setting, or a bad path
        return None, str(exc)


def _gateway_doc(demo_gateway: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The LiteLLM config.yaml behind the action target the runbooks name (`gateway`; on the demo, the
    world's gateway.yaml, which replaces it), else the only litellm-config target."""
    path: Path | None = demo_gateway
    if path is None:
        targets, problem = _action_targets()
        if problem:
            return None, problem
        litellm = [t for t in targets.values() if t.adapter == "litellm-config"]
        target = next((t for t in litellm if t.name == "gateway"), litellm[0] if len(litellm) == 1 else None)
        if target is None:
            return None, "no LiteLLM gateway action target in oncall.toml ([actions.targets.gateway])"
        path, problem = _target_file(target, "config")
        if path is None:
            return None, problem
    try:
        from ruamel.yaml import YAML

        assert path is not None
        doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - unreadable or not YAML
        return None, f"cannot read the gateway config {path}: {exc}"
    return (doc if isinstance(doc, dict) else None), None


def _search_aliases(demo_search: Path | None) -> tuple[dict[str, str] | None, str | None]:
    """The aliases of the index-alias target index-rollback acts on (`search`; on the demo, the world's
    alias file), read from its file; an Elasticsearch/OpenSearch target is not asked (nothing is
    contacted to suggest a step): its alias is left to the runbook's default, said in the notes."""
    from oncall.actions.adapters.index_alias import alias_table

    path: Path | None = demo_search
    if path is None:
        targets, problem = _action_targets()
        if problem:
            return None, problem
        target = targets.get(SEARCH_TARGET)
        if target is None or target.adapter != "index-alias":
            return None, f"no index-alias action target `{SEARCH_TARGET}` in oncall.toml"
        if target.get("path") in (None, ""):
            return None, f"target {SEARCH_TARGET} is a search service (not asked to suggest a step)"
        path, problem = _target_file(target, "path")
        if path is None:
            return None, problem
    try:
        assert path is not None
        return alias_table(json.loads(path.read_text(encoding="utf-8"))), None
    except Exception as exc:  # noqa: BLE001 - unreadable or not an alias file
        return None, f"cannot read the alias file {path}: {exc}"


# -- the steps of one cause ------------------------------------------------------------------------------
def next_steps(con: Any, change: dict[str, Any], setting: Setting) -> list[NextStep]:
    """The suggestions for one entry of `changes`, the test first, then the mitigation."""
    kind = change.get("kind")
    steps: list[NextStep] = []
    if kind == "new_served_model":
        steps += _served_model(con, change, setting)
    elif kind == "new_prompt_version":
        steps += _prompt_version(con, change, setting)
    elif kind == "new_retrieval_index":
        steps += _index(change, setting)
    elif kind == "metric_shift" and change.get("metric") in ERROR_METRICS:
        provider = (change.get("cohort") or {}).get("provider") or _failing_provider(con, change["filter"])
        if provider:
            steps.append(_outage(con, change, provider, setting))
    if _cost_shift(change):
        steps.append(_cost(con, change, setting))
    return steps


def steps_for_all(con: Any, changes: Sequence[Any], setting: Setting) -> list[list[NextStep]]:
    return [next_steps(con, _as_dict(c), setting) for c in changes]


def _as_dict(c: Any) -> dict[str, Any]:
    return c.to_dict() if hasattr(c, "to_dict") else dict(c)


def _cost_shift(change: dict[str, Any]) -> bool:
    if change.get("kind") == "metric_shift":
        return change.get("metric") in COST_METRICS and (change.get("after") or 0) > (change.get("before") or 0)
    return any(e.get("metric") in COST_METRICS and (e.get("after") or 0) > (e.get("before") or 0)
               and e.get("cohort") == change.get("cohort") for e in change.get("effects") or [])


def _terms(cohort: dict[str, Any]) -> list[str]:
    return [f"{k}={quote_value(str(v))}" for k, v in cohort.items()]


def _with(flt: str, term_key: str, value: str) -> str:
    """The filter with `key=value` added when it does not already say which value of that key."""
    words = shlex.split(flt) if flt else []
    if any(w.split("=", 1)[0] == term_key for w in words if "=" in w):
        return flt
    return " ".join([flt, f"{term_key}={quote_value(value)}"]).strip()


def baseline_window(change: dict[str, Any], extra: dict[str, str] | None = None) -> str:
    """The same cohort before the cause began (its cohort terms, `until=` its first appearance)."""
    cohort = dict(change.get("cohort") or {})
    cohort.update(extra or {})
    return " ".join(_terms(cohort) + [f"until={change['began_at']}"])


def _mode(con: Any, flt: str, column: str) -> str | None:
    """The most common value of a column among the filter's LLM calls (None when there is none)."""
    c = compile_on(con, flt)
    row = con.execute(f"SELECT {dialect_of(con)().mode(f's.{column}')} FROM spans s WHERE {c.where} "
                      f"AND s.{column} IS NOT NULL",
                      c.params).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def _db_args(setting: Setting) -> list[str]:
    return ["--db", setting.db] if setting.db else []


def _suite_args(setting: Setting) -> list[str]:
    return ["--suite", setting.suite_dir] if setting.suite_dir else []


def _replay_step(step_id: str, title: str, cohort: str, baseline: str, target: str, setting: Setting, *,
                 model: str | None = None, prompt: str | None = None, notes: list[str]) -> NextStep:
    argv = ["replay", cohort, "--target", target]
    if model:
        argv += ["--model", model]
    if prompt:
        argv += ["--prompt", prompt]
    argv += ["--baseline", baseline, "-n", str(SAMPLE), "--repeat", str(REPEAT), "--seed", str(SEED)]
    argv += _suite_args(setting) + _db_args(setting)
    params = {"cohort": cohort, "baseline": baseline, "target": target, "model": model, "prompt": prompt,
              "n": SAMPLE, "repeat": REPEAT, "seed": SEED}
    return NextStep("replay", step_id, title, argv, params, notes=notes)


def _runbook_step(name: str, title: str, values: dict[str, Any], change: dict[str, Any], setting: Setting,
                  notes: list[str]) -> NextStep:
    """`oncall runbook run NAME k=v …`: only the parameters the runbook declares (its defaults stand for
    the rest, said in notes)."""
    from oncall.runbook import RunbookError, find_runbook

    try:
        rb = find_runbook(name)
    except RunbookError as exc:
        notes = [*notes, str(exc)]
        declared = list(values)
    else:
        declared = list(rb.params)
        for p in rb.params.values():
            if p.name not in values or values[p.name] in (None, ""):
                notes = [*notes, f"{p.name}: the runbook's default ({p.default!r})"]
    given = {k: v for k, v in values.items() if k in declared and v not in (None, "")}
    why = f"next step of: {change.get('title') or change.get('description') or change.get('kind')}"
    argv = ["runbook", "run", name, *[f"{k}={v}" for k, v in given.items()], "--why", why, *_db_args(setting)]
    return NextStep("runbook", f"runbook:{name}", title, argv, given, runbook=name, notes=notes)


# -- a served-model change --------------------------------------------------------------------------------
def _served_model(con: Any, change: dict[str, Any], setting: Setting) -> list[NextStep]:
    before, after = str(change.get("before") or ""), str(change.get("after") or "")
    cohort = _with(change["filter"], "served_model", after) if after else change["filter"]
    baseline = baseline_window(change, {"served_model": before} if before else None)
    if not before:
        return []  # no snapshot before it to replay on, or to pin back to
    target, model, notes = _snapshot_target(change, before, setting)
    replay = _replay_step("replay-before", f"replay the cohort on the snapshot before ({before})", cohort, baseline,
                          target, setting, model=model, notes=notes)
    # The pin runbook's gate tests JSON: its cohort is where the cause broke JSON, when it did.
    narrow = _json_cohort(change)
    rb_cohort = cohort if narrow is None else " ".join(
        _terms(narrow) + [f"served_model={quote_value(after)}", f"since={change['began_at']}"])
    rb_baseline = baseline if narrow is None else baseline_window({**change, "cohort": narrow},
                                                                    {"served_model": before})
    rb_notes: list[str] = []
    if model:
        rb_notes.append(f"candidate: no replay target calls {before}; the gate needs one (replay/targets.toml)")
    provider = (change.get("cohort") or {}).get("provider") or _mode(con, change["filter"], "provider")
    requested = (change.get("cohort") or {}).get("model") or _mode(con, change["filter"], "model")
    deployment = (_deployment(setting.gateway, requested, (narrow or {}).get("feature"), before)
                  if requested else None)
    if deployment is None and requested:
        deployment = requested
        if setting.gateway is not None:
            rb_notes.append(f"deployment: no model_name in the gateway config serves {requested}; using it as named")
    values = {"cohort": rb_cohort, "baseline": rb_baseline, "candidate": None if model else target,
              "deployment": deployment, "snapshot": f"{provider}/{before}" if provider and before else before,
              "sample": SAMPLE}
    pin = _runbook_step(PIN_RUNBOOK, f"pin {deployment or 'the deployment'} to {before} (runbook {PIN_RUNBOOK})",
                        values, change, setting, rb_notes)
    return [replay, pin]


def _snapshot_target(change: dict[str, Any], before: str, setting: Setting) -> tuple[str, str | None, list[str]]:
    """(target, --model override, notes) for a replay on the snapshot before."""
    if setting.demo:
        return DEMO_PINNED, None, []
    targets = setting.targets
    exact = [n for n, model in targets.items() if model == before]
    if exact:
        return exact[0], None, []
    requested = (change.get("cohort") or {}).get("model")
    same = [n for n, model in targets.items() if requested and model == requested] or list(targets)
    if same:
        return same[0], before, [f"target: no replay target calls {before}; {same[0]} with --model {before}"]
    return "TARGET", before, [_no_target(setting)]


def _no_target(setting: Setting) -> str:
    return f"target: {setting.suite_problem or 'no replay target in the suite'}; name one with --target"


def _json_cohort(change: dict[str, Any]) -> dict[str, str] | None:
    """The narrowest cohort in which the cause moved a JSON metric (None when it moved none)."""
    cohorts = [e["cohort"] for e in change.get("effects") or [] if e.get("metric") in JSON_METRICS and e.get("cohort")]
    return max(cohorts, key=len) if cohorts else None


def _deployment(gateway: dict[str, Any] | None, requested: str, feature: str | None, before: str) -> str | None:
    """The gateway's model_name that serves requests for `requested`: the name itself, else the
    deployments whose litellm_params.model is that model (or already the snapshot before: the
    suggestion stays the same once the pin is made) — the broken feature's own when it has one."""
    entries = _model_list(gateway)
    if requested in [str(m.get("model_name")) for m in entries]:
        return requested
    serving = [str(m["model_name"]) for m in entries
               if str((m.get("litellm_params") or {}).get("model") or "").split("/", 1)[-1] in (requested, before)]
    if feature in serving:
        return feature
    return serving[0] if serving else None


def _model_list(gateway: dict[str, Any] | None) -> list[dict[str, Any]]:
    ml = (gateway or {}).get("model_list")
    return [m for m in ml if isinstance(m, dict) and m.get("model_name")] if isinstance(ml, list) else []


# -- a prompt-version change --------------------------------------------------------------------------------
def _prompt_version(con: Any, change: dict[str, Any], setting: Setting) -> list[NextStep]:
    before, after = str(change.get("before") or ""), str(change.get("after") or "")
    cohort = _with(change["filter"], "prompt_version", after) if after else change["filter"]
    baseline = baseline_window(change, {"prompt_version": before} if before else None)
    prompt_name = _mode(con, cohort, "prompt_name")
    model = _mode(con, cohort, "model")
    notes: list[str] = []
    variant = _previous_variant(setting, prompt_name, before)
    if variant is None:
        notes.append(f"prompt: no prompt variant with version {before} in the replay suite's prompts/ "
                     f"(write {prompt_name or 'NAME'}-{before}.md with `version: {before}`)")
        variant = f"{prompt_name or 'prompt'}-{before}"
    target, t_notes = _current_target(model, setting)
    if not before:
        return []  # no previous version to replay with or roll back to
    replay = _replay_step("replay-previous-prompt", f"replay the cohort with the previous version ({before})",
                          cohort, baseline, target, setting, prompt=variant, notes=notes + t_notes)
    values = {"prompt": prompt_name, "cohort": cohort, "baseline": baseline, "candidate": target,
              "previous_prompt": variant, "sample": SAMPLE}
    rollback = _runbook_step(PROMPT_RUNBOOK, f"roll {prompt_name or 'the prompt'} back to {before} "
                             f"(runbook {PROMPT_RUNBOOK})", values, change, setting, [])
    return [replay, rollback]


def _previous_variant(setting: Setting, prompt_name: str | None, version: str) -> str | None:
    """The suite's prompt variant holding `version` of the prompt (its file stem)."""
    from oncall.replay.suite import SuiteError, load_prompt

    found = []
    for p in [p for d in setting.prompt_dirs if d.is_dir() for p in sorted(d.glob("*.md"))]:
        try:
            v = load_prompt(p)
        except SuiteError:
            continue
        if v.version == version and (prompt_name is None or v.applies_to(prompt_name)) and p.stem not in found:
            found.append(p.stem)
    return found[0] if found else None


def _current_target(model: str | None, setting: Setting) -> tuple[str, list[str]]:
    """The replay target that calls the model the cohort uses today."""
    if setting.demo:
        return DEMO_CURRENT, []
    targets = setting.targets
    same = [n for n, m in targets.items() if model and m == model]
    if same:
        return same[0], []
    if targets:
        first = next(iter(targets))
        return first, [f"target: no replay target calls {model}; {first} named instead"]
    return "TARGET", [_no_target(setting)]


# -- an error burst on a provider ---------------------------------------------------------------------------
def _failing_provider(con: Any, flt: str) -> str | None:
    """The provider of nearly all (FAILING_SHARE) of a window's failed calls: a burst seen in all
    traffic when one provider carries it."""
    c = compile_on(con, flt)
    rows = con.execute(f"SELECT s.provider, count(*) FROM spans s WHERE {c.where} AND s.status = 'error' "
                       f"GROUP BY 1 ORDER BY 2 DESC, 1", c.params).fetchall()
    total = sum(int(r[1]) for r in rows)
    if rows and rows[0][0] is not None and total and int(rows[0][1]) >= FAILING_SHARE * total:
        return str(rows[0][0])
    return None


def _outage(con: Any, change: dict[str, Any], provider: str, setting: Setting) -> NextStep:
    flt = _with(change["filter"], "provider", provider)
    cls = _error_classes(con, flt)
    cohort = flt + (f" error={','.join(cls)}" if cls else "")
    notes: list[str] = []
    alias = _provider_alias(setting.gateway, provider, _mode(con, flt, "model"), _mode(con, flt, "feature"))
    if alias is None:
        alias = _mode(con, flt, "model")
        notes.append(f"alias: {setting.gateway_problem or 'no gateway model_name routes to ' + provider}; "
                     f"the model the failing calls requested ({alias}) instead")
    fallback = _fallback(setting.gateway, alias) if alias else None
    values = {"cohort": cohort, "alias": alias, "fallback": fallback}
    return _runbook_step(OUTAGE_RUNBOOK, f"flip {alias or 'the alias'} to its fallback"
                         + (f" {fallback}" if fallback else "") + f" (runbook {OUTAGE_RUNBOOK})",
                         values, change, setting, notes)


def _error_classes(con: Any, flt: str) -> list[str]:
    """The error classes of the window's failures, most common first."""
    c = compile_on(con, flt)
    rows = con.execute(f"SELECT s.error_type, count(*) FROM spans s WHERE {c.where} AND s.status = 'error' "
                       f"AND s.error_type IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1", c.params).fetchall()
    return [str(r[0]) for r in rows]


def _provider_alias(gateway: dict[str, Any] | None, provider: str, requested: str | None,
                    feature: str | None) -> str | None:
    """The app-facing model_name whose deployments call `provider` (the requested model's or the
    feature's name first, when several do)."""
    names: list[str] = []
    for m in _model_list(gateway):
        params = m.get("litellm_params") or {}
        model = str(params.get("model") or "")
        if model.split("/", 1)[0] == provider or params.get("custom_llm_provider") == provider:
            if str(m["model_name"]) not in names:
                names.append(str(m["model_name"]))
    names = [n for n in names if not _is_fallback_of(gateway, n)] or names
    for want in (requested, feature):
        if want in names:
            return want
    return names[0] if names else None


def _fallbacks(gateway: dict[str, Any] | None) -> dict[str, list[str]]:
    """router_settings.fallbacks (or litellm_settings'), as {model group: [fallback groups]}."""
    out: dict[str, list[str]] = {}
    for section in ("router_settings", "litellm_settings"):
        raw = ((gateway or {}).get(section) or {}).get("fallbacks") or []
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict):
                for k, v in item.items():
                    out.setdefault(str(k), []).extend(str(x) for x in (v if isinstance(v, list) else [v]))
    return out


def _is_fallback_of(gateway: dict[str, Any] | None, name: str) -> bool:
    return any(name in v for v in _fallbacks(gateway).values())


def _fallback(gateway: dict[str, Any] | None, alias: str) -> str | None:
    """The alias's fallback model group: its declared fallback, else a model_name `ALIAS-fallback`."""
    declared = _fallbacks(gateway).get(alias)
    if declared:
        return declared[0]
    names = [str(m["model_name"]) for m in _model_list(gateway)]
    return next((n for n in names if n == f"{alias}-fallback"), None)


# -- a new retrieval index ---------------------------------------------------------------------------------
def _index(change: dict[str, Any], setting: Setting) -> list[NextStep]:
    before, after = str(change.get("before") or ""), str(change.get("after") or "")
    if not before:
        return []  # no index before it to point the alias back at
    notes: list[str] = []  # no replay step: it would send the recorded documents again, not the index's
    named = sorted(a for a, index in (setting.aliases or {}).items() if index == after)
    alias = named[0] if named else None
    if alias is None:
        notes.append(f"alias: {setting.aliases_problem or 'no alias of the search target names ' + after}; "
                     "the runbook's default")
    cohort_terms = _terms(change.get("cohort") or {})
    values = {"alias": alias, "index": before, "cohort": change["filter"],
              "baseline": baseline_window(change, {"retrieval_index": before}),
              "feature": " ".join(cohort_terms) or None}
    return [_runbook_step(INDEX_RUNBOOK, f"point {alias or 'the alias'} back at {before} (runbook {INDEX_RUNBOOK})",
                          values, change, setting, notes)]


# -- a cost shift -----------------------------------------------------------------------------------------
def _cost(con: Any, change: dict[str, Any], setting: Setting) -> NextStep:
    cohort_terms = _terms(change.get("cohort") or {})
    cohort = " ".join(cohort_terms + [f"since={change['began_at']}"]
                      + ([f"until={change['ended_at']}"] if change.get("ended_at") else []))
    baseline = baseline_window(change)
    notes: list[str] = []
    requested = _mode(con, cohort, "model")
    feature = (change.get("cohort") or {}).get("feature") or _mode(con, cohort, "feature")
    names = [str(m["model_name"]) for m in _model_list(setting.gateway)]
    alias = next((n for n in (feature, requested) if n and n in names), None)
    if alias is None:
        alias = feature or requested
        notes.append(f"alias: {setting.gateway_problem or 'no gateway model_name for ' + str(alias)}; "
                     f"{alias} as the cohort names it")
    cheaper = _cheaper(setting.gateway, alias) if alias else None
    values = {"cohort": cohort, "baseline": baseline, "alias": alias, "cheaper": cheaper}
    return _runbook_step(COST_RUNBOOK, f"move {alias or 'the feature'} to a cheaper model"
                         + (f" ({cheaper})" if cheaper else "") + f" (runbook {COST_RUNBOOK})",
                         values, change, setting, notes)


def _cheaper(gateway: dict[str, Any] | None, alias: str) -> str | None:
    """A model group named for the alias as its cheaper variant (`ALIAS-mini`, `ALIAS-cheap…`)."""
    names = [str(m["model_name"]) for m in _model_list(gateway)]
    return next((n for n in names if n.startswith(alias + "-") and any(w in n[len(alias):] for w in
                                                                        ("mini", "cheap", "small", "lite"))), None)


# -- which suggestion was taken ------------------------------------------------------------------------------
TRAIL_KIND = "suggestion"


def cause_ref(change: dict[str, Any]) -> dict[str, Any]:
    """What names a cause in the trail: kind, metric, cohort, start (the timeline's change key) and title."""
    return {"kind": change.get("kind"), "metric": change.get("metric"), "cohort": change.get("cohort"),
            "began_at": change.get("began_at"), "title": change.get("title") or change.get("description")}


def record_taken(store: Any, change: dict[str, Any], step: NextStep, *, ref: dict[str, Any] | None = None,
                 actor: str | None = None) -> int:
    """A trail event: the responder took this suggestion for this cause (ref: the replay run or runbook)."""
    cause = cause_ref(change)
    return int(store.record_event(TRAIL_KIND, f"took the suggestion: {step.title} (for: {cause['title']})",
                                  {"cause": cause, "step": step.to_dict(), **(ref or {})}, actor=actor))


def taken(con: Any, changes: Sequence[Any], steps: Sequence[Sequence[NextStep]]) -> list[dict[str, Any]]:
    """Each suggestion taken: recorded by the console (trail kind "suggestion"), or a replay run or
    runbook run whose parameters are a suggestion's own (started from the command line)."""
    dicts = [_as_dict(c) for c in changes]
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    rows = con.execute("SELECT event_id, at_time, actor, kind, detail FROM trail WHERE kind IN ('suggestion', "
                       "'runbook') ORDER BY event_id").fetchall()
    events = [(r[0], r[1], r[2], r[3], json.loads(r[4]) if isinstance(r[4], str) and r[4] else (r[4] or {}))
              for r in rows]
    for _, at, actor, kind, d in events:
        if kind != TRAIL_KIND:
            continue
        step = d.get("step") or {}
        i = next((i for i, c in enumerate(dicts) if _same_cause(cause_ref(c), d.get("cause") or {})), None)
        key = (i if i is not None else -1, str(step.get("id")))
        if key in seen:
            continue
        seen.add(key)
        out.append({"cause": (d.get("cause") or {}).get("title"), "cause_index": i, "step": step.get("id"),
                    "title": step.get("title"), "command": step.get("command"), "at": at, "actor": actor,
                    "how": "console", "run_id": d.get("run_id"), "runbook": step.get("runbook")})
    for i, (c, cs) in enumerate(zip(dicts, steps, strict=False)):
        for s in cs:
            if (i, s.id) in seen:
                continue
            hit = _matching_run(con, s, events)
            if hit is not None:
                seen.add((i, s.id))
                out.append({"cause": cause_ref(c)["title"], "cause_index": i, "step": s.id, "title": s.title,
                            "command": s.command, "how": "command line", "runbook": s.runbook, **hit})
    return out


def _same_cause(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("kind", "metric", "cohort", "began_at"))


def _matching_run(con: Any, s: NextStep, events: list[tuple[Any, ...]]) -> dict[str, Any] | None:
    if s.kind == "runbook":
        for _, at, actor, kind, d in events:
            params = d.get("params") or {}
            if kind == "runbook" and d.get("runbook") == s.runbook and params.get("cohort") == s.params.get("cohort"):
                return {"at": at, "actor": actor}
        return None
    from oncall.replay.store import has_tables

    if not has_tables(con):
        return None
    p = s.params
    rows = con.execute("SELECT run_id, created_at, author, target, model, filter, baseline, prompt FROM replay_runs "
                       "ORDER BY run_id").fetchall()
    for run_id, created, author, target, model, flt, baseline, prompt in rows:
        pr = json.loads(prompt) if isinstance(prompt, str) and prompt else (prompt or {})
        variant = Path(str(pr.get("path"))).stem if isinstance(pr, dict) and pr.get("path") else None
        if (flt == p["cohort"] and target == p["target"] and baseline == p["baseline"]
                and (p["model"] is None or model == p["model"]) and variant == p["prompt"]):
            return {"at": created, "actor": author, "run_id": run_id}
    return None


# -- which cause a screen is on -------------------------------------------------------------------------------
def cause_for_filter(changes: Sequence[Any], filter_text: str) -> Any | None:
    """The cause a filter is about: the one whose filter it is, else the one whose filter terms it
    holds (a refined filter: the cause's cohort and window plus `feature=extract`), the most specific
    first. None when it is about none of them."""
    from oncall.query.filters import parse_filter

    def terms(text: str) -> set[str]:
        try:
            return {str(t) for t in parse_filter(text or "").terms}
        except ValueError:
            return set()

    mine = terms(filter_text)
    exact = [c for c in changes if terms(_as_dict(c).get("filter") or "") == mine]
    if exact:
        return exact[0]
    holding = [(len(t), c) for c in changes if (t := terms(_as_dict(c).get("filter") or "")) and t <= mine]
    return max(holding, key=lambda x: x[0])[1] if holding else None
