"""The `oncall` command line: parse, call the headless core, print (rich) or --json.

Contract (design §5): command names, flags, --json field names and exit codes are stable.
Exit codes: 0 ok, 1 the command ran and found a problem, 2 bad usage or bad input, 3 an internal
error (a bug; see cliutil). Errors go to stderr as one readable line (the traceback only with -v).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

import click

from oncall.cliutil import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    Ctx,
    db_option,
    emit_json,
    fail,
    json_option,
    open_store,
    resolve_db,
)

_NO_ARGS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OncallGroup(click.Group):
    """Turns any unexpected exception into one readable line (traceback with -v)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Like click's standalone mode, but a usage error is one line on stderr (design §5), not
        click's three-line usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_HELP as exc:  # bare `oncall`: the help text, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else (prog_name or "oncall")
            click.echo(f"oncall: error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("oncall: aborted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("oncall: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `oncall search | head`: the reader left; not an error of ours
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush does not raise again
            sys.exit(128 + signal.SIGPIPE)
        except Exception as exc:  # the last line of defence: never a bare traceback
            from oncall.errors import InputError
            from oncall.store import StoreError

            obj = ctx.find_object(Ctx)
            if obj is not None and obj.verbose:
                traceback.print_exc()
            if isinstance(exc, (InputError, StoreError)):  # the responder's input: they can fix it
                fail(str(exc), EXIT_USAGE)
            # Anything else is a bug in oncall: its own exit code, never 1 ("found a problem") or 2.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
            hint = "" if obj is not None and obj.verbose else "; re-run with -v for the traceback"
            click.echo(f"oncall: internal error: {type(exc).__name__}: {first}{hint}", err=True)
            sys.exit(EXIT_INTERNAL)


@click.group(cls=OncallGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", "db", default=None, envvar="ONCALL_DB",
              help="incident database (default ./incident.duckdb, or $ONCALL_DB)")
@click.option("-v", "--verbose", is_flag=True, help="show detail (tracebacks) on errors")
@click.version_option(package_name="oncall")
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbose: bool) -> None:
    """oncall: a terminal incident console for LLM features in production."""
    ctx.obj = Ctx(db, verbose)


# -- load ------------------------------------------------------------------------------------

# Problem kinds that mean "this is not input oncall can load" (exit 2 when it is the only file).
BAD_INPUT = ("unknown-format", "empty", "unusable", "unreadable", "too-deep", "truncated")

@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", default=None, help="force a format instead of detecting it (see `oncall formats`)")
@click.option("--map", "maps", multiple=True, metavar="FIELD=PATH",
              help="generic JSONL/CSV/Parquet: where a canonical field lives, e.g. output=response.text")
@click.option("--strict", is_flag=True, help="any problem is fatal and nothing from that file is written")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--since", default=None, metavar="T", help="source loads: window start (ISO, 01:00 UTC, or -6h)")
@click.option("--until", default=None, metavar="T", help="source loads: window end (default now)")
@click.option("--limit", "limit", type=int, default=None, metavar="N",
              help="source loads: at most N LLM calls (the newest)")
@db_option
@json_option
@click.pass_context
def load(ctx: click.Context, paths: tuple[str, ...], fmt: str | None, maps: tuple[str, ...], strict: bool,
         no_progress: bool, since: str | None, until: str | None, limit: int | None, db: str | None,
         as_json: bool) -> None:
    """Import trace exports (files, directories, globs; gzip/zstd ok) into the incident database,
    or pull a window from where the traces live:

    \b
      oncall load clickhouse://[user@]host[:port]/DATABASE?table=otel_traces --since -6h [FILTER...]
      oncall load @NAME --since 01:00 --until 02:00 tenant=acme     ([sources.NAME] in oncall.toml)
    """
    from oncall.sources.registry import is_source_ref

    if paths and is_source_ref(paths[0]):
        from oncall.commands.sources import load_from_source

        load_from_source(ctx, paths[0], list(paths[1:]), since=since, until=until, limit=limit, maps=maps,
                         fmt=fmt, no_progress=no_progress, db=db, as_json=as_json)
        return
    if since or until or limit is not None:
        fail("--since, --until and --limit apply to source loads (oncall load URL …), not to files")
    from oncall.ingest import registry
    from oncall.ingest.gcpace import pace_for_bulk_mapping
    from oncall.ingest.loader import LoadError, load_paths, summary
    from oncall.ingest.registry import FormatError, LoadOptions
    from oncall.output import ProgressBar, print_load_report
    from oncall.store.db import default_db_path, discard_if_unused, is_absent

    column_map: dict[str, str] = {}
    for m in maps:
        if "=" not in m:
            fail(f"--map {m!r}: expected FIELD=PATH, e.g. output=response.text")
        k, v = m.split("=", 1)
        column_map[k.strip()] = v.strip()
    if fmt is not None and fmt not in registry.names():
        fail(f"unknown format {fmt!r}; supported: {', '.join(registry.names())}")
    from oncall.ingest.cost import cost_summary
    from oncall.ingest.prices import PriceConfigError, overrides

    try:
        overrides()  # a bad oncall.toml is bad input before anything is written
    except PriceConfigError as exc:
        fail(str(exc))
    fresh = is_absent(default_db_path(resolve_db(ctx, db)))
    store = open_store(ctx, db)
    if fresh:  # runs before open_store's close (LIFO): a load that wrote nothing leaves no database
        ctx.call_on_close(lambda: discard_if_unused(store))
    bar = None if (no_progress or as_json or not sys.stderr.isatty()) else ProgressBar()
    pace_for_bulk_mapping()
    try:
        report = load_paths(store, list(paths), fmt=fmt, options=LoadOptions(strict=strict, column_map=column_map),
                            progress=bar.update if bar else None,
                            waiting=lambda: click.echo("oncall: another load is running on this incident; "
                                                       "waiting for it to finish", err=True))
    except (LoadError, FormatError) as exc:
        fail(str(exc))
    finally:
        if bar:
            bar.close()
    only = report.files[0] if len(report.files) == 1 else None
    if only is not None and only.status == "failed" and only.problems and only.problems[0].kind in BAD_INPUT:
        fail(str(only.problems[0]))  # the one file given is not loadable input: exit 2
    ids = [f.import_id for f in report.files if f.import_id is not None and f.status == "loaded"]
    summ = summary(store, ids)
    summ["cost"] = cost_summary(store.cursor(), ids)  # exported / estimated / unknown, unpriced models once each
    if ids:
        store.record_event("load", f"loaded {report.spans_added} spans from {len(ids)} file(s)",
                           {"files": [f.path for f in report.files if f.status == 'loaded']})
        _compact_after_load(store)
    if as_json:
        emit_json({**report.to_dict(), "summary": summ})
    else:
        print_load_report(report, summ)
    if report.bugs:  # every other file was loaded; the one oncall failed on is a bug (exit 3)
        click.echo(f"oncall: internal error: {report.bugs[0].problems[0]}", err=True)
        sys.exit(EXIT_INTERNAL)
    if strict and report.failed:  # --strict: the files with problems failed, the others loaded
        fail(f"--strict: {len(report.failed)} file(s) failed, nothing from them was loaded; first: "
             f"{report.failed[0].problems[0] if report.failed[0].problems else report.failed[0].path}")
    sys.exit(EXIT_PROBLEM if report.failed else EXIT_OK)


def _compact_after_load(store: Any) -> None:
    """Many loads make many parts: merge the small ones now (bounded, so a load never waits long).

    Compaction is an optimisation: if it fails, the load stands and the responder hears why."""
    import duckdb

    from oncall.store import StoreError
    from oncall.store.compact import AFTER_LOAD_POLICY, compact

    try:
        report = compact(store, AFTER_LOAD_POLICY)
    except (StoreError, duckdb.Error, OSError) as exc:
        click.echo(f"oncall: warning: the load is complete, but merging load parts failed: {exc} "
                   "(try `oncall compact`)", err=True)
        return
    # The pass after a load merges only small runs; past max_parts every query plans each part
    # (~0.5 ms a part a statement, bench/RESULTS.md "Many load parts"), so say how to merge them.
    if report.parts_after > AFTER_LOAD_POLICY.max_parts:
        click.echo(f"oncall: note: the incident has {report.parts_after} load parts; queries slow down past "
                   f"{AFTER_LOAD_POLICY.max_parts}. `oncall compact` merges them (readers are not blocked).",
                   err=True)


@cli.command()
@db_option
@json_option
def formats(db: str | None, as_json: bool) -> None:
    """List the import formats `oncall load` detects."""
    from oncall.ingest import registry

    items = [{"name": n, "description": d} for n, d in registry.available()]
    if as_json:
        emit_json(items)
    else:
        for it in items:
            click.echo(f"{it['name']:<18} {it['description']}")


# -- commands from other modules (one line each; keep this list sorted) ----------------------
# COMMANDS-REGISTRY (helpers: add `cli.add_command(...)` lines below this marker)
from oncall.commands.action import action  # noqa: E402
from oncall.commands.analyze import blast_radius, changes, compare  # noqa: E402
from oncall.commands.config import config_cmd  # noqa: E402
from oncall.commands.demo import demo  # noqa: E402
from oncall.commands.find import label, note, sample, search, show  # noqa: E402
from oncall.commands.handoff import export_group, postmortem_cmd, timeline_cmd  # noqa: E402
from oncall.commands.live import receive, watch  # noqa: E402
from oncall.commands.open import open_console  # noqa: E402
from oncall.commands.replay import replay  # noqa: E402
from oncall.commands.runbook import runbook  # noqa: E402
from oncall.commands.store import compact  # noqa: E402

for _command in (action, blast_radius, changes, compact, compare, config_cmd, demo, export_group, label, note,
                 open_console, postmortem_cmd, receive, replay, runbook, sample, search, show, timeline_cmd, watch):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="oncall", max_content_width=100)


if __name__ == "__main__":
    main()
