"""Helpers every CLI command module shares: --db/--json options, one-line errors, JSON output.

Exit codes (a contract scripts rely on; README "Exit codes"):
  0 ok; 1 the command ran and found a problem (a file that failed to load, an unknown request id,
  sessions still degraded); 2 bad usage or bad input (click usage errors, `InputError` from the
  core, a database that cannot be opened); 3 an internal error: an exception nobody expected, i.e.
  a bug in oncall. It prints one line and the traceback only with -v, so a script never mistakes a
  crash for a finding (1) or for its own typo (2).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class Ctx:
    def __init__(self, db: str | None, verbose: bool) -> None:
        self.db_path = db
        self.verbose = verbose


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one readable error line and exit."""
    click.echo(f"oncall: error: {message}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def db_option(f: Any) -> Any:
    """--db on every command (also accepted before the command name), even one that reads no
    incident (`runbook list`, `formats`): a responder who types it everywhere is never refused.

    $ONCALL_DB is read once, by the group's --db: if the command's own option read it too, the
    environment would override an explicit `oncall --db X search`.
    """
    return click.option("--db", "db", default=None,
                        help="incident database (default ./incident.duckdb, or $ONCALL_DB)")(f)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(f)


def resolve_db(ctx: click.Context, db: str | None) -> str | None:
    """The command's --db, else the group's --db, else $ONCALL_DB (None: the default path)."""
    obj = ctx.find_object(Ctx)
    return db or (obj.db_path if obj is not None else None) or os.environ.get("ONCALL_DB") or None


def open_store(ctx: click.Context, db: str | None, *, read_only: bool = False, create: bool = True):
    from oncall.store import StoreError, open_db

    try:
        store = open_db(resolve_db(ctx, db), read_only=read_only, create=create)
    except StoreError as exc:
        fail(str(exc))
    ctx.call_on_close(store.close)  # in-process callers (tests, scripts) may reopen the file right after
    return store
