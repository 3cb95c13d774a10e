"""`oncall compare`, `oncall changes`, `oncall blast-radius`: what changed, for whom, and what it still touches."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from oncall.cliutil import EXIT_PROBLEM, db_option, emit_json, fail, json_option, open_store
from oncall.commands.live import duration_seconds
from oncall.commands.sources import in_place, incident_or_source, source_options
from oncall.display import jsonable
from oncall.output import metric_change, metric_value, stdout
from oncall.query.cost_marks import estimate_note
from oncall.query.filters import quote_value
from oncall.safe_text import safe_rich, safe_text


def _compile_or_fail(con: Any, words: list[str]) -> Any:
    from oncall.query.filters import FilterError, compile_filter

    try:
        return compile_filter(con, words)
    except FilterError as exc:
        fail(f"bad filter: {exc}")


def _jsonable(v: Any) -> Any:
    return jsonable(v)  # times in UTC whatever zone the cursor returned them in


# -- compare ----------------------------------------------------------------------------------------
@click.command()
@click.argument("filter_words", nargs=-1, metavar="FILTER...", required=True)
@click.option("--baseline", required=True, help='the baseline cohort, e.g. --baseline "tenant=acme until=01:00"')
@source_options
@db_option
@json_option
@click.pass_context
def compare(ctx: click.Context, filter_words: tuple[str, ...], baseline: str, source: str | None,
            source_since: str | None, source_until: str | None, db: str | None, as_json: bool) -> None:
    """Metrics of a cohort beside its baseline, with deltas and significance marks."""
    if source is not None:
        from oncall.query.compare import compare_on

        # In place: every aggregate computed in ClickHouse; None when the question needs pulled rows.
        res = in_place(source, source_since, source_until,
                       lambda engine: compare_on(engine, list(filter_words), [baseline]),
                       within=[list(filter_words), [baseline]])
        if res is not None:
            _show_compare(res, as_json)
            return
    with incident_or_source(ctx, db, source, source_since, source_until) as store:
        _compare(store, filter_words, baseline, as_json)


def _compare(store: Any, filter_words: tuple[str, ...], baseline: str, as_json: bool) -> None:
    from oncall.query.compare import compare as run_compare

    # --baseline is one argument read as filter text, the same rule as the positional arguments.
    _compile_or_fail(store.con, list(filter_words))
    _compile_or_fail(store.con, [baseline])
    _show_compare(run_compare(store.con, list(filter_words), [baseline]), as_json)


def _show_compare(res: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(_jsonable(res))
        return
    for n in res["notes"]:
        click.echo(f"note: {n}", err=True)
    c, b = res["cohort"], res["baseline"]
    stdout.print(Text("cohort   ", style="bold") + safe_rich(c["filter"] or "(all)", multiline=False)
                 + Text(f"   {c['requests']:,} requests", style="dim"))
    stdout.print(Text("baseline ", style="bold") + safe_rich(b["filter"] or "(all)", multiline=False)
                 + Text(f"   {b['requests']:,} requests", style="dim"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col, just in (("metric", "left"), ("cohort", "right"), ("baseline", "right"), ("change", "right"),
                      ("", "left")):
        table.add_column(col, justify=just, no_wrap=True)
    for m in res["metrics"]:
        sig = m["significance"]
        change, style = metric_change(m)
        est = m.get("estimated") or {}
        table.add_row(m["metric"], _marked(metric_value(m["cohort"], m["unit"]), est.get("cohort")),
                      _marked(metric_value(m["baseline"], m["unit"]), est.get("baseline")),
                      Text(change, style=style), Text(sig if sig != "n/a" else "", style=style))
    stdout.print(table)
    est = next((m["estimated"] for m in res["metrics"] if m.get("estimated")), {})
    for who in ("cohort", "baseline"):
        note = estimate_note(est.get(who), who)
        if note:
            stdout.print(Text(note, style="dim"))
    for what in ("served_models", "finish_reasons"):
        d = res[what]
        if d["cohort"] or d["baseline"]:
            stdout.print(Text(what.replace("_", " ") + ": ", style="bold")
                         + safe_rich(_dist(d["cohort"]), multiline=False) + Text("   baseline: ", style="dim")
                         + safe_rich(_dist(d["baseline"]), multiline=False))
    ks = res["json_key_sets"]
    if ks and ks["new_key_sets"]:
        stdout.print(Text("new JSON key sets: ", style="bold")
                     + safe_rich(_dist(ks["new_key_sets"]), multiline=False))


def _marked(text: str, estimated_share: float | None) -> str:
    return f"~{text}" if estimated_share and text != "—" else text


def _dist(d: dict[str, int]) -> str:
    total = sum(d.values()) or 1
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in list(d.items())[:5]) or "—"


# -- changes ----------------------------------------------------------------------------------------
@click.command()
@click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
@click.option("--bucket", "bucket_s", type=click.IntRange(min=1), default=None,
              help="bucket width in seconds (default: automatic)")
@click.option("--limit", "-n", "limit", default=20, show_default=True, type=click.IntRange(min=1), help="changes listed")
@source_options
@db_option
@json_option
@click.pass_context
def changes(ctx: click.Context, filter_words: tuple[str, ...], bucket_s: int | None, limit: int, source: str | None,
            source_since: str | None, source_until: str | None, db: str | None, as_json: bool) -> None:
    """What changed: new served models, prompt versions, releases, providers, and metric shifts, with times."""
    from oncall.cliutil import resolve_db

    if source is not None:
        # In place: every question of the algorithm asked in ClickHouse; None when it needs pulled rows.
        res = in_place(source, source_since, source_until,
                       lambda engine: _found_and_steps(engine.connection(), filter_words, bucket_s, limit, None))
        if res is not None:
            _show_changes(res["found"], res["steps"], filter_words, as_json)
            return
    with incident_or_source(ctx, db, source, source_since, source_until, list(filter_words)) as store:
        # The suggested commands name the incident as this command did (a --source scratch copy goes away).
        _changes(store, filter_words, bucket_s, limit, as_json, None if source else resolve_db(ctx, db))


def _changes(store: Any, filter_words: tuple[str, ...], bucket_s: int | None, limit: int, as_json: bool,
             db_arg: str | None = None) -> None:
    _compile_or_fail(store.con, list(filter_words))
    res = _found_and_steps(store.con, filter_words, bucket_s, limit, db_arg, store.path)
    _show_changes(res["found"], res["steps"], filter_words, as_json)


def _found_and_steps(con: Any, filter_words: tuple[str, ...], bucket_s: int | None, limit: int,
                     db_arg: str | None, incident: Any = None) -> dict[str, Any]:
    """The changes (at most `limit`) and each one's next steps, asked through `con` (the incident's, or a
    source's in place)."""
    from oncall.query.changes import changes as run_changes
    from oncall.query.next_steps import load_setting, steps_for_all

    found = run_changes(con, list(filter_words), bucket_s=bucket_s)[:limit]
    try:
        steps = steps_for_all(con, found, load_setting(con, db=db_arg, incident=incident))
    except Exception as exc:  # noqa: BLE001 - the causes stand without their suggestions; said, not hidden
        click.echo(f"oncall: warning: the next steps could not be worked out: {exc}", err=True)
        steps = [[] for _ in found]
    return {"found": found, "steps": steps}


def _show_changes(found: list[Any], steps: list[Any], filter_words: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        emit_json([{**c.to_dict(), "next_steps": [s.to_dict() for s in ss]}
                   for c, ss in zip(found, steps, strict=True)])
        return
    if not found:
        stdout.print("nothing significant changed" + (" in that cohort" if filter_words else ""))
        return
    for i, (c, ss) in enumerate(zip(found, steps, strict=True), start=1):
        since = c.began_at[11:16] + (f"-{c.ended_at[11:16]}" if c.ended_at else "")
        # A grid, so a line that wraps stays in its column instead of running under the times.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", no_wrap=True, width=2)
        grid.add_column(no_wrap=True, width=11)
        grid.add_column()
        grid.add_row(Text(f"{i}", style="bold"), Text(since, style="bold"),
                     safe_rich(c.title or c.description) + Text(f"  ({c.affected_requests:,} requests)", style="dim"))
        # What the cause moved, beneath it (a shift's first effect is its own headline).
        for e in (c.effects if c.kind != "metric_shift" else c.effects[1:]):
            grid.add_row(Text(""), Text(""), Text("  - ", style="dim") + safe_rich(e["description"])
                         + Text(f"  (measured on {e['measured_on']:,} {e['counts']})", style="dim"))
        stdout.print(grid)
        # The filter is for copying: one unbroken line (the terminal wraps it, rich does not).
        stdout.print(Text("    filter: ", style="dim") + safe_rich(c.filter, multiline=False)
                     + Text(f"  ({c.affected_requests:,} LLM calls, errors included)", style="dim"), soft_wrap=True)
        if c.split and c.split.get("values"):
            # The served-model split of the cohort: failed calls have no served model, and are in it.
            parts = ", ".join(f"{'no ' + c.split['by'].replace('_', ' ') + ' (failed)' if v == 'none' else v} {n:,}"
                              for v, n in c.split["values"].items())
            stdout.print(Text(f"    by {c.split['by'].replace('_', ' ')}: ", style="dim")
                         + safe_rich(parts, multiline=False, max_len=300), soft_wrap=True)
        note = estimate_note(c.cost_estimated, "cost/request")
        if note:
            stdout.print(Text("    " + note, style="dim"), soft_wrap=True)
        if c.also_in:
            # Written as filter terms (quoted where needed), so each cohort can be pasted as a filter.
            also = "; ".join(" ".join(f"{k}={quote_value(v)}" for k, v in co.items()) or "all traffic"
                             for co in c.also_in[:6])
            more = f" and {len(c.also_in) - 6} more" if len(c.also_in) > 6 else ""
            stdout.print(Text("    also in: ", style="dim") + safe_rich(also + more, multiline=False, max_len=300),
                         soft_wrap=True)
        _print_next_steps(ss)


def _print_next_steps(steps: list[Any]) -> None:
    """A cause's next steps (oncall/query/next_steps.py): what each does, then its command on one
    unbroken line for copying, then what was left to a default."""
    for s in steps:
        stdout.print(Text("    next: ", style="bold cyan") + safe_rich(s.title, multiline=False), soft_wrap=True)
        stdout.print(Text("      ") + safe_rich(s.command, multiline=False, max_len=2000), soft_wrap=True)
        for note in s.notes:
            stdout.print(Text("      (", style="dim") + safe_rich(note, multiline=False, max_len=300, style="dim")
                         + Text(")", style="dim"), soft_wrap=True)


# -- blast radius -----------------------------------------------------------------------------------
EXIT_CANNOT_TELL = 4  # blast-radius: carried requests after the mitigation are too few to say either way
WAIT_POLL_S = 10.0  # blast-radius --wait: how often live data is looked at again
@click.command("blast-radius")
@click.argument("filter_words", nargs=-1, metavar="FILTER...", required=True)
@click.option("--mitigated-at", default=None, help="when the fix went out (ISO, 01:00 or -30m; default: when "
                                                   "the bad requests stop)")
@click.option("--limit", "-n", "limit", default=50, show_default=True, type=click.IntRange(min=1), help="sessions listed")
@click.option("--wait", "wait", default=None, metavar="DURATION",
              help="live traffic: look again every 10 s until the sessions recover or DURATION (e.g. 10m) passes; "
                   "still degraded or too few requests at the deadline exits as without --wait")
@db_option
@json_option
@click.pass_context
def blast_radius(ctx: click.Context, filter_words: tuple[str, ...], mitigated_at: str | None, limit: int,
                 wait: str | None, db: str | None, as_json: bool) -> None:
    """Sessions whose later turns carry outputs of the bad model or prompt, and whether they are still degraded.

    Exits 1 when they are still degraded, 4 when there are too few requests to tell."""
    from oncall.query.blast_radius import blast_radius as run
    from oncall.query.filters import FilterError, _Builder

    store = open_store(ctx, db, read_only=True, create=False)
    _compile_or_fail(store.con, list(filter_words))
    when = None
    if mitigated_at:
        try:
            when = _Builder(store.con, "").time("--mitigated-at", mitigated_at)
        except FilterError as exc:
            fail(str(exc))
    deadline = time.monotonic() + (duration_seconds(wait, "--wait") if wait else 0)
    while True:
        res = run(store.con, list(filter_words), mitigated_at=when, limit=limit)
        after = res["after_mitigation"]
        still_degraded = bool(res["contaminated_sessions"] and after and after.get("still_degraded"))
        # No contaminated session is a finding (nothing carried); carried ones too few to test are not.
        cannot_tell = bool(res["contaminated_sessions"]) and res["verdict"] == "cannot tell"
        code = EXIT_PROBLEM if still_degraded else (EXIT_CANNOT_TELL if cannot_tell else 0)
        if code == 0 or time.monotonic() >= deadline:
            break  # recovered, or the deadline passed: fail closed with the last verdict
        if not as_json:
            click.echo(f"oncall: {'still degraded' if still_degraded else 'too few requests to tell'}; "
                       f"looking again in {WAIT_POLL_S:g} s (--wait)", err=True)
        time.sleep(max(0.0, min(WAIT_POLL_S, deadline - time.monotonic())))
        store.refresh()
    if as_json:
        emit_json(res)
        raise SystemExit(code)
    at = (res["mitigated_at"] or "")[:19].replace("T", " ")
    if res.get("mitigated_at_source") == "last bad request":
        when_text = f"the last bad request at {at} UTC; give --mitigated-at for the real fix time"
    else:
        when_text = f"the mitigation at {at} UTC" if at else "the mitigation"
    stdout.print(Text(f"{res['sessions_with_bad_outputs']:,} sessions got an answer from the bad cohort; "
                      f"{res['contaminated_sessions']:,} carried it into later turns "
                      f"({res['carried_requests']:,} requests, {res['carried_requests_after_mitigation']:,} "
                      f"after {when_text})", style="bold"))
    if after and after["metrics"]:
        t = Table(box=None, header_style="bold", pad_edge=False, title="after the mitigation: contaminated vs clean "
                  f"sessions ({after['contaminated_requests']:,} vs {after['clean_requests']:,} requests)")
        for col in ("metric", "contaminated", "clean", "significance"):
            t.add_column(col, no_wrap=True)
        for m in after["metrics"]:
            unit = "ratio" if m["metric"].endswith("_rate") else ""
            t.add_row(m["metric"], metric_value(m["contaminated"], unit), metric_value(m["clean"], unit), m["significance"])
        stdout.print(t)
    if res["contaminated_sessions"] and after:
        if after["verdict"] == "degraded":
            stdout.print(Text("still degraded", style="bold red"))
        elif after["verdict"] == "not degraded":
            stdout.print(Text("no significant degradation left", style="green"))
        else:
            stdout.print(Text(f"cannot tell whether it is still degraded: {after.get('reason') or 'too few requests'}",
                              style="bold yellow"))
    if res["sessions"]:
        stdout.print(Text(f"sessions: {res['sessions_listed']:,} of {res['sessions_total']:,}"
                          + (" (--limit N lists more)" if res["sessions_listed"] < res["sessions_total"] else ""),
                          style="bold"))
        t = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("session", "tenant", "user", "carried", "after fix", "last turn (UTC)"):
            t.add_column(col, no_wrap=True)
        for s in res["sessions"]:
            t.add_row(safe_rich(s["session_id"], multiline=False), safe_rich(s["tenant"], multiline=False),
                      safe_rich(s["user_id"], multiline=False), str(s["carried_requests"]), str(s["after_mitigation"]),
                      safe_text(s["last"][:19].replace("T", " ")))
        stdout.print(t)
    if code:
        raise SystemExit(code)
