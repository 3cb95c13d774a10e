"""`oncall timeline` and `oncall postmortem`: the hand-off, built from the incident database."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from oncall.cliutil import EXIT_OK, db_option, emit_json, fail, json_option, open_store
from oncall.fileio import write_atomic


# `oncall timeline [--since …]` prints it; `oncall timeline star KEY` stars an entry.
@click.group("timeline", invoke_without_command=True)
@click.option("--since", default=None, help="from this time (ISO, 01:00 UTC on the incident's day, or -30m)")
@click.option("--until", default=None, help="before this time")
@click.option("--starred", is_flag=True, help="only the entries starred for the report")
@db_option
@json_option
@click.pass_context
def timeline_cmd(ctx: click.Context, since: str | None, until: str | None, starred: bool, db: str | None,
                 as_json: bool) -> None:
    """What happened in the data and what the responder did, in order (times in UTC)."""
    if ctx.invoked_subcommand is not None:
        return
    from oncall.postmortem.timeline import timeline, timeline_document
    from oncall.query.filters import FilterError, _Builder
    from oncall.redact import redact_export
    from oncall.safe_text import safe_text

    store = open_store(ctx, db, read_only=True, create=False)
    try:
        b = _Builder(store.cursor(), "")
        lo = b.time("--since", since).isoformat() if since else None
        hi = b.time("--until", until).isoformat() if until else None
    except FilterError as exc:
        fail(str(exc))
    entries = timeline(store, since=lo, until=hi)
    if starred:
        entries = [e for e in entries if e.starred]
    if as_json:
        emit_json(timeline_document(entries))
        sys.exit(EXIT_OK)
    if not entries:
        click.echo("nothing on the timeline" + (" in that window" if since or until else ""))
        return
    click.echo("all times UTC")
    for e in entries:
        ref = e.ref.get("filter") or e.ref.get("request") or (f"replay run {e.ref['run_id']}" if e.ref.get("run_id")
                                                              else "") or (f"action {e.ref['action_id']}"
                                                                           if e.ref.get("action_id") else "")
        star = "*" if e.starred else " "
        who = f" ({e.actor})" if e.actor and e.source == "responder" else ""
        click.echo(f"{star} {e.at.replace('T', ' ').replace('Z', '')}  {e.source:<9} {e.kind:<10} "
                   f"{safe_text(redact_export(e.summary), multiline=False, max_len=120)}{safe_text(who, multiline=False)}")
        if ref:
            click.echo(f"  {'':<19}  {'':<9} {'':<10} -> {safe_text(ref, multiline=False, max_len=160)}")
        click.echo(f"  {'':<19}  {'':<9} {'':<10}    key {safe_text(e.key, multiline=False)}")


@timeline_cmd.command("star")
@click.argument("key")
@click.option("--off", is_flag=True, help="unstar it")
@db_option
@click.pass_context
def star_cmd(ctx: click.Context, key: str, off: bool, db: str | None) -> None:
    """Star a timeline entry (its key, from `oncall timeline`) for the postmortem."""
    from oncall.postmortem.timeline import star, timeline

    store = open_store(ctx, db)
    keys = {e.key for e in timeline(store)}
    if key not in keys:
        fail(f"no timeline entry with key {key!r} (`oncall timeline` lists the keys)")
    star(store, key, on=not off)
    click.echo(("unstarred " if off else "starred ") + key)


@click.command("postmortem")
@click.option("--out", "out", default=None, metavar="FILE", help="write the Markdown here (default: stdout)")
@click.option("--force", is_flag=True, help="replace --out if it exists (a draft someone may have edited)")
@click.option("--title", default=None, help="the incident's name (default: its first cause)")
@click.option("--summarize-with", "summarize_with", default=None, metavar="TARGET",
              help="add a machine-drafted summary written by this replay target (checked: it may quote only "
                   "numbers the draft contains; if the target fails, the draft is written without it)")
@click.option("--suite", "suite_dir", default=None, envvar="ONCALL_REPLAY_SUITE",
              help="replay suite holding the target (default ./replay, or $ONCALL_REPLAY_SUITE)")
@db_option
@json_option
@click.pass_context
def postmortem_cmd(ctx: click.Context, out: str | None, force: bool, title: str | None, summarize_with: str | None,
                   suite_dir: str | None, db: str | None, as_json: bool) -> None:
    """A postmortem draft in Markdown: summary, impact, timeline, evidence, replays, mitigation, queries."""
    from oncall.postmortem.draft import build_draft
    from oncall.postmortem.summary import SummaryError, insert_summary, resolve_target, summarize
    from oncall.safe_text import safe_text

    path = Path(out) if out else None
    if path is not None and not path.parent.exists():
        fail(f"cannot write {path}: directory {path.parent} does not exist")
    if path is not None and path.exists() and not force:
        # The console asks before it replaces a file; the CLI cannot ask, so it refuses: a draft on disk
        # is usually one a person has been editing.
        fail(f"{path} exists; refusing to replace it (use --force to replace it, or choose another --out)")
    target = None
    if summarize_with:
        try:  # a typo in the target, or a key not set, is refused before anything is built or written
            target = resolve_target(summarize_with, suite_dir)
        except SummaryError as exc:
            fail(str(exc))
    store = open_store(ctx, db, read_only=True, create=False)
    draft = build_draft(store, title=title)
    if target is not None:
        result = summarize(draft, target)
        draft.markdown = insert_summary(draft.markdown, result)
        draft.facts["machine_summary"] = result.to_dict()
        if result.status != "included":
            click.echo(f"oncall: warning: no machine summary: {safe_text(result.error or result.status)}; "
                       "the draft is complete without it", err=True)
    if path is not None:
        write_atomic(path, draft.markdown, "writing the postmortem draft")
    if as_json:
        emit_json({**draft.to_dict(), "out": out})
    elif out:
        click.echo(f"postmortem draft written to {out} ({len(draft.markdown.splitlines())} lines)")
    else:
        click.echo(draft.markdown)


@click.group("export")
def export_group() -> None:
    """Export the incident for other tools."""


@export_group.command("evalset")
@click.argument("filter_words", nargs=-1, metavar="[FILTER...]")
@click.option("--format", "fmt", type=click.Choice(["promptfoo", "inspect", "jsonl"]), required=True,
              help="promptfoo (promptfooconfig.yaml), inspect (task.py + dataset.jsonl) or jsonl")
@click.option("--out", "out", required=True, metavar="DIR", help="directory to write (created if missing)")
@click.option("--model", default=None, help="model the eval set calls (default: the requests' own)")
@db_option
@json_option
@click.pass_context
def evalset_cmd(ctx: click.Context, filter_words: tuple[str, ...], fmt: str, out: str, model: str | None,
                db: str | None, as_json: bool) -> None:
    """The labelled requests (default: label=bad,good) as a regression eval set with the checks that
    would have caught the incident."""
    from oncall.postmortem.evalset import EvalsetError, evalset_kind, export_evalset

    store = open_store(ctx, db)
    try:
        cases, files = export_evalset(store, " ".join(filter_words) if filter_words else None, fmt, Path(out),
                                      model=model)
    except EvalsetError as exc:
        fail(str(exc), 1 if "no request matches" in str(exc) else 2)
    if as_json:
        emit_json({"format": fmt, "out": out, "files": [str(f) for f in files], "cases": len(cases),
                   "bad": sum(1 for c in cases if c.label == "bad"), "good": sum(1 for c in cases if c.label == "good")})
        return
    click.echo(f"{len(cases)} request(s) exported as {evalset_kind(fmt)}: " + ", ".join(str(f) for f in files))
