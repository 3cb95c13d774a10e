"""`oncall action run | list | show | undo | targets`: act on the systems an LLM feature runs on, with a
plan first, a confirmation, verification and an audit trail (core: oncall/actions)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from oncall.cliutil import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    db_option,
    emit_json,
    fail,
    json_option,
    open_store,
    resolve_db,
)
from oncall.output import stdout
from oncall.safe_text import safe_rich, safe_text


def _config_option(f: Any) -> Any:
    return click.option("--config", "config_path", default=None, metavar="PATH",
                        help="oncall.toml with the action targets (default ./oncall.toml, then "
                             "~/.config/oncall/oncall.toml, or $ONCALL_TOML)")(f)


def _fail_action(exc: Exception) -> None:
    from oncall.actions import BadArguments, ConfigError, Refused
    from oncall.actions.secrets import scrub

    code = EXIT_USAGE if isinstance(exc, (BadArguments, ConfigError, Refused)) else EXIT_PROBLEM
    fail(scrub(str(exc)), code)


def _parse_args(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--arg {pair!r}: expected KEY=VALUE, e.g. --arg alias=support-bot")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


@click.group("action")
def action() -> None:
    """Run, list, show and undo actions (planned, confirmed, verified, audited)."""


# -- run ----------------------------------------------------------------------------------------------
@action.command("run")
@click.argument("adapter")
@click.option("--target", "target_name", required=True, help="a target from oncall.toml ([actions.targets.NAME])")
@click.option("--arg", "arg_pairs", multiple=True, metavar="KEY=VALUE", help="an argument (op=… picks the operation)")
@click.option("--dry-run", is_flag=True, help="show the plan and stop: nothing is written")
@click.option("--yes", is_flag=True, help="confirm without asking (scripts); production targets otherwise need "
                                          "their name typed")
@click.option("--why", default=None, help="why (recorded in the audit and on the timeline)")
@click.option("--read-only", is_flag=True, help="open the incident read-only: only --dry-run is allowed")
@_config_option
@db_option
@json_option
@click.pass_context
def run(ctx: click.Context, adapter: str, target_name: str, arg_pairs: tuple[str, ...], dry_run: bool, yes: bool,
        why: str | None, read_only: bool, config_path: str | None, db: str | None, as_json: bool) -> None:
    """Plan an action on a target, and (confirmed) carry it out: oncall action run litellm-config
    --target gateway --arg op=repoint --arg alias=support-bot --arg to=support-bot-fallback"""
    from oncall.actions import ActionError, get_adapter, load_config, plan
    from oncall.actions.engine import check_writable

    args = _parse_args(arg_pairs)
    store = open_store(ctx, db, read_only=read_only, create=not read_only)
    try:
        if not dry_run:
            check_writable(store)
        config = load_config(config_path, incident=store.path)
        target = config.target(target_name)
        if target.adapter != adapter:
            fail(f"target {target_name!r} uses adapter {target.adapter!r}, not {adapter!r}")
        p = plan(get_adapter(target_name, config), args)
    except ActionError as exc:
        _fail_action(exc)
    _finish(ctx, store, p, dry_run=dry_run, yes=yes, why=why, as_json=as_json)


def _finish(ctx: click.Context, store: Any, p: Any, *, dry_run: bool, yes: bool, why: str | None,
            as_json: bool) -> None:
    from oncall.actions import ActionError, execute
    from oncall.actions.secrets import scrub

    if not as_json:
        print_plan(p)
    if dry_run:
        if as_json:
            emit_json(scrub({"plan": p.to_dict(), "action": None}))
        sys.exit(EXIT_OK)
    confirm = True if yes else _ask(p)
    try:
        rec = execute(p, db=store, confirm=confirm, why=why)
    except ActionError as exc:
        _fail_action(exc)
    if as_json:
        emit_json(scrub({"plan": p.to_dict(), "action": rec.to_dict()}))
    else:
        print_record(rec)
    sys.exit(EXIT_OK if rec.ok else EXIT_PROBLEM)


def _ask(p: Any) -> str | None:
    if not sys.stdin.isatty():
        fail("this action needs confirmation: run it in a terminal or pass --yes")
    if p.production:
        prompt = f"{p.target} is a production target. Type its name to apply (anything else cancels)"
    else:
        prompt = "Apply this change? [y/N]"
    answer = click.prompt(prompt, default="", show_default=False, err=True)
    from oncall.actions import confirmation_ok

    if not confirmation_ok(p, answer):
        click.echo("cancelled; nothing was written", err=True)
        sys.exit(EXIT_PROBLEM)
    return answer


def print_plan(p: Any) -> None:
    head = Text("plan ", style="bold") + safe_rich(f"{p.target} ({p.adapter} {p.op})", multiline=False)
    if p.production:
        head += Text("  PRODUCTION", style="bold red")
    stdout.print(head)
    stdout.print(Text("  ") + safe_rich(p.summary, multiline=False), soft_wrap=True)
    if not p.changes:
        stdout.print(Text("  already in this state: nothing would change", style="green"))
    for line in p.diff:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        stdout.print(Text("  ") + safe_rich(line, multiline=False, style=style), soft_wrap=True)
    for c in p.checks:
        stdout.print(Text("  ✓ ", style="green") + safe_rich(c, multiline=False), soft_wrap=True)
    for n in p.notes:
        stdout.print(Text("  note: ", style="yellow") + safe_rich(n, multiline=False), soft_wrap=True)


def print_record(rec: Any) -> None:
    style = "green" if rec.ok else "bold red" if rec.status in ("failed", "aborted") else "yellow"
    stdout.print(Text(f"action {rec.action_id} {rec.status}", style=style) + Text(": ")
                 + safe_rich(rec.result, multiline=False), soft_wrap=True)
    if rec.error:
        stdout.print(Text("  error: ", style="red") + safe_rich(rec.error, multiline=False), soft_wrap=True)
    v = rec.verification
    if v:
        mark = "✓" if v["ok"] else "✗"
        stdout.print(Text(f"  {mark} verify ({v.get('elapsed_s')} s): ") + safe_rich(v["message"], multiline=False),
                     soft_wrap=True)
    if rec.status in ("verified", "unverified"):
        stdout.print(Text(f"  undo with: oncall action undo {rec.action_id}", style="dim"))


# -- undo ---------------------------------------------------------------------------------------------
@action.command("undo")
@click.argument("action_id", type=int)
@click.option("--dry-run", is_flag=True, help="show the plan and stop")
@click.option("--yes", is_flag=True, help="confirm without asking")
@click.option("--why", default=None, help="why (recorded)")
@click.option("--read-only", is_flag=True, help="open the incident read-only: only --dry-run is allowed")
@_config_option
@db_option
@json_option
@click.pass_context
def undo_cmd(ctx: click.Context, action_id: int, dry_run: bool, yes: bool, why: str | None, read_only: bool,
             config_path: str | None, db: str | None, as_json: bool) -> None:
    """Put back what action ID changed (itself planned, confirmed and audited); refuses if the target
    changed since."""
    from oncall.actions import ActionError, load_config, plan_undo
    from oncall.actions.engine import check_writable

    store = open_store(ctx, db, read_only=read_only, create=not read_only)
    try:
        if not dry_run:
            check_writable(store)
        p = plan_undo(action_id, db=store, config=load_config(config_path, incident=store.path))
    except ActionError as exc:
        _fail_action(exc)
    _finish(ctx, store, p, dry_run=dry_run, yes=yes, why=why or f"undo action {action_id}", as_json=as_json)


# -- list / show / targets ------------------------------------------------------------------------------
@action.command("list")
@db_option
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, db: str | None, as_json: bool) -> None:
    """Every action in this incident, with its latest status."""
    from oncall.actions.audit import list_actions

    store = open_store(ctx, db, read_only=True, create=False)
    items = list_actions(store)
    if as_json:
        emit_json([_brief(a) for a in items])
        return
    if not items:
        click.echo("no actions yet")
        return
    t = Table(box=None, pad_edge=False)
    for col in ("id", "status", "started", "who", "target", "change"):
        t.add_column(col)
    for a in items:
        summary = (a.get("plan") or {}).get("summary", "")
        t.add_row(str(a["action_id"]), a["status"], str(a.get("started_at", ""))[:19], safe_rich(a.get("who") or "",
                  multiline=False), safe_rich(a.get("target") or "", multiline=False),
                  safe_rich(summary, multiline=False, max_len=80))
    stdout.print(t)


def _brief(a: dict[str, Any]) -> dict[str, Any]:
    plan = a.get("plan") or {}
    return {"action_id": a["action_id"], "status": a["status"], "started_at": a.get("started_at"),
            "finished_at": a.get("at_time"), "who": a.get("who"), "why": a.get("why"), "target": a.get("target"),
            "adapter": a.get("adapter"), "op": a.get("op"), "summary": plan.get("summary"),
            "undo_of": a.get("undo_of"), "runbook": a.get("runbook"), "step": a.get("step"),
            "result": a.get("result"), "error": a.get("error")}


@action.command("show")
@click.argument("action_id", type=int)
@db_option
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, action_id: int, db: str | None, as_json: bool) -> None:
    """One action: its plan (before → after, diff), who and why, result, verification and every phase."""
    from oncall.actions.audit import action_rows

    store = open_store(ctx, db, read_only=True, create=False)
    rows = action_rows(store, action_id)
    if not rows:
        fail(f"no action {action_id} in this incident (oncall action list shows them)", EXIT_PROBLEM)
    last = {**rows[-1], "started_at": rows[0]["at_time"]}
    if as_json:
        emit_json({**_brief(last), "plan": last.get("plan"), "gate": last.get("gate"), "before": last.get("before"),
                   "after": last.get("after"), "verification": last.get("verification"),
                   "applied": last.get("applied"), "phases": [{"status": r["status"], "at": r["at_time"]}
                                                               for r in rows]})
        return
    from oncall.actions import Plan

    b = _brief(last)
    stdout.print(Text(f"action {action_id} ", style="bold") + Text(b["status"]) +
                 Text(f"   {b['started_at']} by ") + safe_rich(b["who"] or "", multiline=False))
    if b["why"]:
        stdout.print(Text("  why: ") + safe_rich(b["why"], multiline=False), soft_wrap=True)
    if b["undo_of"]:
        stdout.print(Text(f"  undoes action {b['undo_of']}"))
    print_plan(Plan.from_dict(last["plan"]))
    stdout.print(Text("  before: ") + safe_rich(json.dumps(last.get("before")), multiline=False), soft_wrap=True)
    stdout.print(Text("  after:  ") + safe_rich(json.dumps(last.get("after")), multiline=False), soft_wrap=True)
    stdout.print(Text("  result: ") + safe_rich(b["result"] or "", multiline=False), soft_wrap=True)
    if b["error"]:
        stdout.print(Text("  error: ", style="red") + safe_rich(b["error"], multiline=False), soft_wrap=True)
    v = last.get("verification")
    if v:
        stdout.print(Text(f"  verification: {'ok' if v['ok'] else 'not verified'} ({v.get('elapsed_s')} s): ")
                     + safe_rich(v["message"], multiline=False), soft_wrap=True)
    for r in rows:
        stdout.print(Text(f"  {str(r['at_time'])[:23]}  {r['status']}", style="dim"))


@action.command("targets")
@_config_option
@db_option
@json_option
@click.pass_context
def targets_cmd(ctx: click.Context, config_path: str | None, db: str | None, as_json: bool) -> None:
    """The targets configured in oncall.toml (on a demo incident, the demo's), and the adapters oncall has."""
    from oncall.actions import ActionError, load_config
    from oncall.actions.registry import available
    from oncall.store import default_db_path

    try:
        cfg = load_config(config_path, incident=default_db_path(resolve_db(ctx, db)))
    except ActionError as exc:
        _fail_action(exc)
    items = [{"name": t.name, "adapter": t.adapter, "production": t.production,
              "source": str(t.source) if t.source else None} for t in cfg.targets.values()]
    if as_json:
        emit_json({"config": str(cfg.source) if cfg.source else None, "targets": items,
                   "adapters": [{"name": n, "description": d} for n, d in available()]})
        return
    demo_world = next((t.source.parent for t in cfg.targets.values() if t.source and t.source.name == "world.json"), None)
    if demo_world is not None:
        click.echo(f"a demo incident: its own targets, in {safe_text(str(demo_world), multiline=False)}")
    click.echo(f"targets from {safe_text(str(cfg.source), multiline=False) if cfg.source else '(no oncall.toml found)'}"
               + (" and the demo world" if demo_world is not None else ""))
    for it in items:
        click.echo(f"  {safe_text(it['name'], multiline=False):<20} {it['adapter']:<16}"
                   f"{' production' if it['production'] else ''}"
                   f"{'  (the demo world)' if it['source'] and it['source'].endswith('world.json') else ''}")
    click.echo("adapters")
    for n, d in available():
        click.echo(f"  {n:<16} {d}")
