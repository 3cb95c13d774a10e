"""`oncall config`: which oncall.toml files are read, in which order, and which file set each key."""

from __future__ import annotations

import click

from oncall.cliutil import db_option, emit_json, fail, json_option
from oncall.safe_text import safe_text


@click.command("config")
@click.option("--config", "config_path", default=None, metavar="PATH",
              help="read this file in place of the project's oncall.toml (as `oncall action` does)")
@db_option
@json_option
def config_cmd(config_path: str | None, db: str | None, as_json: bool) -> None:
    """Show the oncall.toml files in their discovery order and the file that set each key."""
    from oncall.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc))
    files = [{"path": str(f.path), "role": f.role, "read": f.exists} for f in cfg.files]
    keys = [{"key": k, "file": str(p)} for k, p in cfg.provenance()]
    if as_json:
        emit_json({"files": files, "keys": keys})
        return
    click.echo("files, lowest precedence first:")
    for f in files:
        state = "read" if f["read"] else "not found"
        click.echo(f"  {f['role']:<8} {safe_text(f['path'], multiline=False)}  ({state})")
    if not keys:
        click.echo("no settings: every key has its default")
        return
    click.echo("keys:")
    width = max(len(k["key"]) for k in keys)
    for k in keys:
        click.echo(f"  {safe_text(k['key'], multiline=False):<{width}}  {safe_text(k['file'], multiline=False)}")
