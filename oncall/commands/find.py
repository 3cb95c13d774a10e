"""`oncall search`, `oncall show`, `oncall sample`, `oncall label`, `oncall note`: find and read requests."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from oncall.cliutil import EXIT_PROBLEM, db_option, emit_json, fail, json_option, open_store
from oncall.display import (
    document_lines,
    format_cost_cell,
    is_failure,
    jsonable,
    public_status,
    request_fields,
    retrieval_header,
    status_text,
    time_text,
)
from oncall.output import stdout
from oncall.query.ids import request_key
from oncall.redact import redact_text
from oncall.safe_text import safe_rich, safe_text


def _filter_or_fail(con: Any, words: tuple[str, ...]) -> Any:
    from oncall.query.filters import FilterError, compile_filter, parse_filter

    try:
        flt = parse_filter(list(words))
        compile_filter(con, flt)  # resolves times, validates regexes
        return flt
    except FilterError as exc:
        fail(f"bad filter: {exc}")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """A span row for --json: times in UTC whatever zone the cursor returned them in, and `status` in
    the word every screen shows (`status_code`: the export's own)."""
    return jsonable(public_status(d))


def _cell(value: Any) -> Text:
    """A one-line table cell of untrusted text: inert, never wrapped."""
    return Text(safe_text(value, multiline=False, max_len=300), no_wrap=True, overflow="ellipsis")


# -- search -----------------------------------------------------------------------------------------
@click.command()
@click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
@click.option("--limit", "-n", "limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="how many requests (newest first)")
@click.option("--distinct", "distinct", multiple=True, metavar="COLUMN",
              help="also count the distinct values of COLUMN (user_id, session_id, tenant, …); repeatable")
@db_option
@json_option
@click.pass_context
def search(ctx: click.Context, filter_words: tuple[str, ...], limit: int, distinct: tuple[str, ...], db: str | None,
           as_json: bool) -> None:
    """Matching requests, newest first: FILTER is terms like tenant=acme since=01:00 "refund"."""
    from oncall.query.search import count, count_distinct
    from oncall.query.search import search as run_search

    store = open_store(ctx, db, read_only=True, create=False)
    flt = _filter_or_fail(store.con, filter_words)
    page = run_search(store.con, flt, limit=limit)
    total = count(store.con, flt)
    distinct_counts = count_distinct(store.con, flt, list(distinct))
    if as_json:
        emit_json({"filter": flt.text, "total": total, "notes": page.notes,
                   "requests": [_jsonable(r) for r in page.rows],
                   **({"distinct": distinct_counts} if distinct else {})})
        return
    for n in page.notes:
        click.echo(f"note: {n}", err=True)
    for col, n in distinct_counts.items():
        click.echo(f"distinct {col}: {n}", err=True)
    # Columns by terminal width: the request id, time, tenant and status always; the rest as room allows.
    width = stdout.width
    table = Table(box=None, pad_edge=False, header_style="bold")
    cols = ["time", "request", "tenant", "status"]
    if width >= 110:
        cols += ["feature", "served model", "ms", "cost"]
    if width >= 150:
        cols += ["prompt", "tokens", "label"]
    costs = [format_cost_cell(r["cost"], r.get("cost_source")) for r in page.rows]
    sizes = {"time": 14, "request": 21, "tenant": 9, "status": 10, "feature": 12, "served model": 18, "ms": 6,
             "cost": max([4, *map(len, costs)]), "prompt": 8, "tokens": 9, "label": 5}  # a cost is never cut
    for name in cols:
        table.add_column("time (UTC)" if name == "time" else name, no_wrap=True, overflow="ellipsis",
                         width=sizes[name])
    # Rich squeezes fixed columns to make room for one long cell, so the output column gets an exact width.
    out_width = max(10, width - sum(sizes[c] for c in cols) - 2 * len(cols) - 1)
    table.add_column("output", no_wrap=True, overflow="ellipsis", width=out_width)
    for r, cost in zip(page.rows, costs, strict=True):
        status = status_text(r["status"], r["error_type"], short=True)
        tokens = f"{r['input_tokens'] or 0}/{r['output_tokens'] or 0}" if r["input_tokens"] is not None else ""
        cell: dict[str, Any] = {
            "time": time_text(r["start_time"], date="short"),
            "request": _cell(request_key(r)), "tenant": _cell(r["tenant"]),
            "status": Text(status, style="red" if is_failure(r["status"]) else ""),
            "feature": _cell(r["feature"]), "served model": _cell(r["served_model"] or r["model"]),
            "ms": f"{r['latency_ms']:.0f}" if r["latency_ms"] is not None else "",
            "cost": cost,  # "~" = estimated
            "prompt": _cell(r["prompt_version"]), "tokens": tokens, "label": _cell(r["label"])}
        table.add_row(*[cell[c] for c in cols], Text(safe_text(r["output_preview"], multiline=False,
                                                                max_len=out_width), no_wrap=True))
    stdout.print(table)
    stdout.print(Text(f"{len(page.rows)} of {total:,} matching requests" +
                      (f" (filter: {safe_text(flt.text, multiline=False)})" if flt.terms else ""), style="dim"))


# -- show -------------------------------------------------------------------------------------------
@click.command()
@click.argument("request_id")
@click.option("--raw", is_flag=True, help="include the lossless original record")
@db_option
@json_option
@click.pass_context
def show(ctx: click.Context, request_id: str, raw: bool, db: str | None, as_json: bool) -> None:
    """One request: conversation, tool calls, models, tokens, cost, metadata, labels, trace tree.

    REQUEST_ID is any id you were handed: the app's request id, the provider's response id
    (chatcmpl-…), a trace or span id, a Langfuse or LangSmith id — or a unique prefix of one.
    """
    from oncall.query.detail import request_detail
    from oncall.query.ids import AmbiguousRequest, UnknownRequest, resolve_request

    store = open_store(ctx, db, read_only=True, create=False)
    try:
        pk = resolve_request(store.con, request_id)
    except (UnknownRequest, AmbiguousRequest) as exc:
        if as_json:
            emit_json({"error": str(exc), "suggestions": getattr(exc, "suggestions", None)
                       or getattr(exc, "candidates", [])})
            sys.exit(EXIT_PROBLEM)
        fail(str(exc), EXIT_PROBLEM)
    d = request_detail(store.con, pk, with_raw=raw)
    if as_json:
        d["trace"] = [_jsonable(s) for s in d["trace"]]
        d["labels"] = [_jsonable(x) for x in d["labels"]]
        d["notes"] = [_jsonable(x) for x in d["notes"]]
        emit_json(_jsonable(d))
        return
    print_request(d)


def print_request(d: dict[str, Any]) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for k, v in request_fields(d):
        head.add_row(k, safe_rich(v, multiline=False))
    stdout.print(head)
    header = retrieval_header(d)
    if header is not None:  # the documents the call was given (the retrieval that fed it)
        stdout.print(Text("\n── documents given ──", style="bold cyan"))
        stdout.print(safe_rich(header, multiline=False, style="bold red" if d.get("retrieved") == 0 else ""),
                     soft_wrap=True)
        if d.get("retrieval_query"):
            stdout.print(safe_rich("query: " + d["retrieval_query"], multiline=False, max_len=300), soft_wrap=True)
        for line, excerpt in document_lines(d.get("retrieved_docs")):
            stdout.print(safe_rich(line, multiline=False, max_len=200, style="cyan"), soft_wrap=True)
            if excerpt:
                stdout.print(safe_rich("   " + excerpt, multiline=False, max_len=400), soft_wrap=True)
    for title, msgs in (("input", d.get("input_messages")), ("output", d.get("output_messages"))):
        stdout.print(Text(f"\n── {title} ──", style="bold cyan"))
        if not msgs:
            text = d.get(f"{title}_text")
            stdout.print(safe_rich(text) if text else Text("(not in the export)", style="dim"))
            continue
        for m in msgs:
            stdout.print(Text(f"[{m.get('role')}]", style="bold"), end=" ")
            stdout.print(safe_rich(m.get("content") or ""))
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                stdout.print(Text("  → tool call ", style="yellow") + safe_rich(
                    f"{fn.get('name')}({fn.get('arguments')})  id={tc.get('id')}"))
    if d.get("labels"):
        stdout.print(Text("\n── labels ──", style="bold cyan"))
        for lab in d["labels"]:
            stdout.print(safe_rich(f"{time_text(lab['at'])}  {lab['label']}  {lab['author']}  {lab['note'] or ''}"))
    if d.get("notes"):  # notes the responder wrote on this request (the console's `n`)
        stdout.print(Text("\n── notes ──", style="bold cyan"))
        for n in d["notes"]:
            stdout.print(safe_rich(f"{time_text(n['at'])}  {n['author']}  {n['text']}"))
    meta = d.get("attributes") or {}
    if meta:
        stdout.print(Text("\n── metadata ──", style="bold cyan"))
        skip = ("gen_ai.input.messages", "gen_ai.output.messages", "llm.input_messages", "llm.output_messages")
        for k in sorted(meta):
            if not any(k.startswith(s) for s in skip):
                stdout.print(safe_rich(k, multiline=False, max_len=60, style="dim"), end=" = ")
                v = meta[k]
                stdout.print(safe_rich(v if isinstance(v, str) else json.dumps(v), multiline=False, max_len=200))
    if d.get("trace"):
        from oncall.query.detail import tree_indent

        shown, total = len(d["trace"]), d.get("trace_spans") or len(d["trace"])
        stdout.print(Text("\n── trace ──", style="bold cyan")
                     + (Text(f"  {shown:,} of {total:,} spans: the first by time and this request's ancestors",
                             style="dim") if total > shown else Text("")), soft_wrap=True)
        for s in d["trace"]:
            line = Text(tree_indent(s["depth"]) + ("▶ " if s["focus"] else "• "))
            line.append(safe_text(s["name"], multiline=False, max_len=60), style="bold" if s["focus"] else "")
            off = f"+{s['offset_ms']:.0f}ms" if s.get("offset_ms") is not None else ""
            dur = f"{s['latency_ms']:.0f}ms" if s.get("latency_ms") is not None else ""
            line.append(f"  {s['kind']}  {off} {dur}", style="dim")
            if s.get("status") == "error":
                line.append(f"  error {s.get('error_type') or ''}", style="red")
            stdout.print(line)


# -- sample -----------------------------------------------------------------------------------------
@click.command()
@click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
@click.option("-n", "n", default=10, show_default=True, type=click.IntRange(min=1),
              help="how many requests")
@click.option("--by", default=None, help="stratify by a key (tenant, model, served_model, feature, …)")
@click.option("--seed", type=int, default=None, help="make the sample repeatable")
@db_option
@json_option
@click.pass_context
def sample(ctx: click.Context, filter_words: tuple[str, ...], n: int, by: str | None, seed: int | None,
           db: str | None, as_json: bool) -> None:
    """N requests of a cohort in full, to read (pipe into `less -R`)."""
    from oncall.query.sample import sample as run_sample

    store = open_store(ctx, db, read_only=True, create=False)
    flt = _filter_or_fail(store.con, filter_words)
    rows = run_sample(store.con, flt, n, by=by, seed=seed)  # a bad --by is an InputError: exit 2
    if as_json:
        emit_json({"filter": flt.text, "seed": seed, "by": by, "requests": [_jsonable(r) for r in rows]})
        return
    if not rows:  # say so: an empty screen at 2 AM reads as "the command is broken"
        click.echo("no requests match" + (f" {safe_text(flt.text, multiline=False)}" if flt.terms else ""), err=True)
    for i, r in enumerate(rows, start=1):
        stdout.print(Text(f"━━ {i}/{len(rows)}  ", style="bold") + safe_rich(request_key(r), multiline=False)
                     + Text(f"  {time_text(r['start_time'])}  ", style="dim")
                     + safe_rich(" ".join(str(x) for x in (r["tenant"], r["feature"], r["served_model"] or r["model"],
                                                           r["prompt_version"]) if x), multiline=False))
        if r["status"] == "error":
            stdout.print(Text("error: ", style="red") + safe_rich(r["error"] or r["error_type"]))
        last_user = next((m for m in reversed(json.loads(r["input_messages"] or "[]")) if m.get("role") == "user"),
                         None)
        if last_user:
            stdout.print(Text("user: ", style="bold") + safe_rich(last_user.get("content") or ""))
        stdout.print(Text("output: ", style="bold") + safe_rich(r["output_text"] or ""))
        stdout.print()


# -- label / note -----------------------------------------------------------------------------------
@click.command()
@click.argument("request_id")
@click.argument("verdict", type=click.Choice(["good", "bad"]))
@click.option("--note", default=None, help="why")
@db_option
@json_option
@click.pass_context
def label(ctx: click.Context, request_id: str, verdict: str, note: str | None, db: str | None,
          as_json: bool) -> None:
    """Label a request good or bad (stored with time and $USER; shown by show, counted by compare)."""
    from oncall.query.ids import AmbiguousRequest, UnknownRequest, resolve_request
    from oncall.query.labels import add_label

    store = open_store(ctx, db, create=False)
    try:
        pk = resolve_request(store.con, request_id)
    except (UnknownRequest, AmbiguousRequest) as exc:
        fail(str(exc), EXIT_PROBLEM)
    note = redact_text(note)  # a pasted key in a note must not land in the trail
    label_id = add_label(store, pk, verdict, note)
    if as_json:
        emit_json({"label_id": label_id, "request": request_id, "span_pk": pk, "label": verdict, "note": note})
    else:
        click.echo(f"labelled {safe_text(request_id, multiline=False)} {verdict}")


@click.command()
@click.argument("text", nargs=-1, required=True)
@db_option
@json_option
@click.pass_context
def note(ctx: click.Context, text: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """A free note on the incident timeline."""
    from oncall.query.labels import add_note

    if not " ".join(text).strip():
        fail("a note needs some text")
    store = open_store(ctx, db, create=False)
    body = redact_text(" ".join(text)) or ""  # a pasted key in a note must not land in the trail
    try:
        note_id = add_note(store, body)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"note_id": note_id, "text": body})
    else:
        click.echo(f"note {note_id} added")
