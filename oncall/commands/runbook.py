"""`oncall runbook list | show NAME | run NAME [--param k=v] [--dry-run] [--yes]`."""

from __future__ import annotations

import sys
from typing import Any

import click

from oncall.cliutil import EXIT_OK, EXIT_PROBLEM, db_option, emit_json, fail, json_option, open_store


def _runbooks_option(f: Any) -> Any:
    return click.option("--runbooks", "runbooks_dir", default=None, metavar="DIR",
                        help="look for runbooks here first (also $ONCALL_RUNBOOKS; then ./runbooks, the shipped ones)")(f)


@click.group("runbook")
def runbook() -> None:
    """Runbooks: query steps, evidence gates and actions, in Markdown (runbooks/README.md)."""


@runbook.command("list")
@_runbooks_option
@db_option
@json_option
def list_cmd(runbooks_dir: str | None, db: str | None, as_json: bool) -> None:
    """The runbooks found, with when to use each."""
    from oncall.runbook import list_runbooks
    from oncall.safe_text import safe_text

    books, errors = list_runbooks(runbooks_dir)
    if as_json:
        emit_json({"runbooks": [{"name": b.name, "title": b.title, "when": b.when, "path": str(b.path)}
                                for b in books], "errors": [str(e) for e in errors]})
    else:
        for b in books:
            click.echo(f"{safe_text(b.name):<28} {safe_text(b.title)}")
            if b.when:
                click.echo(f"{'':<28} {safe_text(b.when.splitlines()[0])}")
        for e in errors:
            click.echo(f"oncall: warning: {safe_text(str(e))}", err=True)
    sys.exit(EXIT_PROBLEM if errors else EXIT_OK)


@runbook.command("show")
@click.argument("name")
@_runbooks_option
@db_option
@json_option
def show_cmd(name: str, runbooks_dir: str | None, db: str | None, as_json: bool) -> None:
    """A runbook's parameters and steps (nothing is run)."""
    from oncall.runbook import RunbookError, find_runbook
    from oncall.safe_text import safe_text

    try:
        rb = find_runbook(name, runbooks_dir)
    except RunbookError as exc:
        fail(str(exc))
    if as_json:
        emit_json(rb.to_dict())
        return
    click.echo(f"{safe_text(rb.title)}  ({rb.name}, {rb.path})")
    if rb.when:
        click.echo(f"when: {safe_text(rb.when)}")
    if rb.params:
        click.echo("parameters:")
        for p in rb.params.values():
            default = "required" if p.default is None and p.required else f"default {p.default!r}"
            click.echo(f"  {p.name} ({p.type}, {default})  {safe_text(p.help)}")
    if rb.targets:
        click.echo(f"targets: {', '.join(rb.targets)}")
    for s in rb.steps:
        click.echo(f"\n{safe_text(s.title)} [{s.kind}]")
        for c in s.commands:
            click.echo(f"    oncall {safe_text(c)}")
        for e in s.expectations:
            click.echo(f"    {safe_text(e.text)}")
        if s.kind == "action":
            click.echo(f"    target {s.target}: " + ", ".join(f"{k}={v}" for k, v in s.args.items()))


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        if "=" not in v:
            fail(f"--param takes NAME=VALUE, not {v!r}")
        k, _, val = v.partition("=")
        out[k.strip()] = val
    return out


@runbook.command("run")
@click.argument("name")
@click.argument("params", nargs=-1)
@click.option("--param", "param_opts", multiple=True, metavar="NAME=VALUE", help="a runbook parameter (repeatable)")
@click.option("--dry-run", is_flag=True, help="run the reading steps and plan the actions; write nothing, run no gate")
@click.option("--yes", is_flag=True, help="confirm every gate and action without asking (scripts)")
@click.option("--why", default=None, help="why you are running it (goes into the audit)")
@_runbooks_option
@db_option
@json_option
@click.pass_context
def run_cmd(ctx: click.Context, name: str, params: tuple[str, ...], param_opts: tuple[str, ...], dry_run: bool,
            yes: bool, why: str | None, runbooks_dir: str | None, db: str | None, as_json: bool) -> None:
    """Run a runbook: NAME k=v … (or --param k=v)."""
    from oncall.runbook import RunbookError, RunbookRun, find_runbook, resolve_params

    store = open_store(ctx, db, read_only=False)
    try:
        rb = find_runbook(name, runbooks_dir)
        values = resolve_params(rb, {**_params(params), **_params(param_opts)}, store.cursor())
    except RunbookError as exc:
        fail(str(exc))
    interactive = sys.stdin.isatty() and not as_json
    run = RunbookRun(rb, store, values, dry_run=dry_run, yes=yes, why=why, as_json=as_json,
                     confirm=_ask_action if interactive else None, confirm_gate=_ask_gate if interactive else None)
    events = []
    try:
        for ev in run.events():
            if as_json:
                events.append(ev.to_dict())
            else:
                _print_event(ev)
    except RunbookError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"runbook": rb.name, "params": values, "dry_run": dry_run, "outcome": run.outcome,
                   "events": events})
    sys.exit(EXIT_OK if run.outcome == "completed" else EXIT_PROBLEM)


def _ask_gate(command: str) -> bool:
    from oncall.safe_text import safe_text

    return click.confirm(f"run the evidence replay `{safe_text(command)}`?", default=False)


def _ask_action(plan: Any) -> bool | str:
    from oncall.safe_text import safe_text

    click.echo(f"\nabout to change {plan.target}: {safe_text(plan.summary)}")
    for line in plan.diff:
        click.echo(f"    {safe_text(line)}")
    if plan.production:
        return click.prompt(f"{plan.target} is production; type its name to confirm (anything else cancels)",
                            default="", show_default=False)
    return "yes" if click.confirm("apply this change?", default=False) else False


def _print_event(ev: Any) -> None:
    from oncall.display import gate_actual
    from oncall.safe_text import safe_text

    d = ev.data
    if ev.kind == "start":
        click.echo(safe_text(ev.text) + ("  (dry run: nothing is written)" if d.get("dry_run") else ""))
    elif ev.kind == "step":
        click.echo(f"\n== {safe_text(ev.text)}")
    elif ev.kind == "query":
        click.echo(f"$ {safe_text(d['command'])}")
        click.echo(safe_text(d.get("output", "")).rstrip())
        if d.get("stderr"):
            click.echo(safe_text(d["stderr"]), err=True)
    elif ev.kind == "gate":
        click.echo(f"gate: $ {safe_text(d['command'])}")
        if not d.get("ran"):
            click.echo(f"  not run: {d.get('note')}; it would need: " + "; ".join(d.get("expect", [])))
            return
        for c in d.get("checks", []):
            click.echo(f"  {'PASS' if c['passed'] else 'FAIL'}  {safe_text(c['expect'])}  (replay: {gate_actual(c)})")
        if d.get("note"):
            click.echo(f"  {safe_text(d['note'])}")
        click.echo(f"  gate {'passed' if d.get('passed') else 'FAILED'}"
                   + (f" (replay run {d['run_id']})" if d.get("run_id") else ""))
    elif ev.kind == "verify":
        click.echo(safe_text(ev.text))
    elif ev.kind == "plan":
        p = d["plan"]
        click.echo(f"plan: {safe_text(p['summary'])}")
        for line in p.get("diff") or []:
            click.echo(f"    {safe_text(line)}")
    elif ev.kind == "action":
        click.echo(safe_text(ev.text))
    elif ev.kind == "stop":
        click.echo(f"stopped: {safe_text(ev.text)}")
    elif ev.kind == "done":
        click.echo(f"\nrunbook {safe_text(ev.text)}")
