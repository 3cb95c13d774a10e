"""`oncall demo`: build the bundled demo incident (and open the console)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from oncall.cliutil import EXIT_OK, db_option, emit_json, fail, json_option, resolve_db
from oncall.demoworld import REPLAY_TARGETS, action_target_names, world_dir


def _check_replaceable(path: Path, force: bool) -> None:
    """Refuse to rebuild over an incident the demo did not build, or over a responder's work."""
    from oncall.demo import demo_truth
    from oncall.store import StoreError, open_db

    try:
        store = open_db(path, read_only=True)
    except StoreError as exc:
        fail(f"{path} exists and cannot be opened ({exc}); choose another --db")
    try:
        is_demo = demo_truth(store.cursor()) is not None
        spans = int(store.cursor().execute("SELECT count(*) FROM spans").fetchone()[0])
        work = {k: v for k, v in store.has_responder_work().items() if v}
    finally:
        store.close()
    if force:
        return
    if not is_demo and spans:
        fail(f"{path} holds an incident that the demo did not build; refusing to replace it "
             "(use --db to pick another file, or --force)")
    if work:
        lost = ", ".join(f"{n} {what}" for what, n in work.items())
        fail(f"{path} holds responder work that rebuilding the demo would erase ({lost}); "
             "refusing (use --db to build the demo elsewhere, or --force to erase it)")


@click.group(invoke_without_command=True)
@click.option("--no-tui", is_flag=True, help="only build the database; do not open the console")
@click.option("--seed", default=7, show_default=True, help="random seed (the same seed builds the same incident)")
@click.option("--hours", default=6.0, show_default=True, type=click.FloatRange(min=0.1, max=24 * 30),
              help="hours of traffic")
@click.option("--force", is_flag=True, help="replace an existing incident database that the demo did not build")
@db_option
@json_option
@click.pass_context
def demo(ctx: click.Context, no_tui: bool, seed: int, hours: float, force: bool, db: str | None,
         as_json: bool) -> None:
    """Build a realistic demo incident (silent model update, prompt cost regression, index rebuilt with
    another embedding model, 429 burst), and its world beside it: replay targets demo-pinned and
    demo-current, action targets gateway, flags, prompts and search (`oncall demo serve` serves them;
    commands and the console start them as needed)."""
    if ctx.invoked_subcommand is not None:
        return
    from oncall.demo import build_demo
    from oncall.ingest.loader import summary
    from oncall.output import ProgressBar, print_load_report
    from oncall.store import default_db_path, open_db
    from oncall.store.db import remove_incident

    path = default_db_path(resolve_db(ctx, db))
    if path.exists():
        _check_replaceable(path, force)
        remove_incident(path)
    bar = None if (as_json or not sys.stderr.isatty()) else ProgressBar()
    try:
        truth, report = build_demo(path, seed=seed, hours=hours, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    store = open_db(path, read_only=True)
    try:
        summ = summary(store)
    finally:
        store.close()
    if as_json:
        emit_json({"db": str(path), "truth": truth.to_dict(), **report.to_dict(), "summary": summ,
                   "world": {"dir": str(path.parent / world_dir(path).name),  # as the db was named
 "replay_targets": list(REPLAY_TARGETS),
                             "action_targets": action_target_names()}})
        sys.exit(EXIT_OK)
    print_load_report(report, summ)
    click.echo(f"\ndemo incident written to {path}")
    for ch in truth.changes:
        click.echo(f"  injected {ch.at}  {ch.kind:<18} {ch.description}")
    click.echo(f"its world, beside it in {world_dir(path)}: replay targets {', '.join(REPLAY_TARGETS)}; "
               f"action targets {', '.join(action_target_names())} (served on loopback while a command or the console "
               "needs them; `oncall demo serve` keeps them up)")
    if no_tui or not sys.stdout.isatty():
        click.echo(f"next: oncall open --db {path}   (or oncall changes --db {path})")
        return
    try:
        from oncall.tui.app import run_app
    except ModuleNotFoundError:
        click.echo(f"next: oncall changes --db {path}")
        return
    run_app(path)


@demo.command("serve")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="port on 127.0.0.1 (0: a free one)")
@db_option
@json_option
@click.pass_context
def serve(ctx: click.Context, port: int, db: str | None, as_json: bool) -> None:
    """Serve the demo's world on loopback until Ctrl-C: replay targets demo-pinned and demo-current,
    the gateway probe, the prompt registry. Writes where it listens beside the incident (serve.json),
    so `oncall replay --target demo-pinned` and runbooks use it; removes it on exit."""
    import json
    import signal
    import threading

    from oncall.demoworld import find_world
    from oncall.demoworld.server import DemoServer, live_url
    from oncall.store import default_db_path

    path = default_db_path(resolve_db(ctx, db))
    world = find_world(path)
    if world is None:
        fail(f"{path} is not a demo incident (no {world_dir(path)}); build one with `oncall demo --no-tui`")
    running = live_url(world)
    if running:
        fail(f"the demo world of {path} is already served at {running} ({world.serve_file})")
    try:
        srv = DemoServer(world, port)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    srv.announce()

    # The server runs on its own thread; this one only waits for Ctrl-C or SIGTERM, so a signal never
    # lands inside the server's request handling and stopping is always the same path.
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    info = {"url": srv.url, "serve_file": str(world.serve_file), "replay_targets": list(REPLAY_TARGETS),
            "action_targets": action_target_names(), "base_url": srv.url + "/v1"}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"serving the demo world of {path} at {srv.url} (Ctrl-C stops)\n"
                   f"  replay targets: {', '.join(REPLAY_TARGETS)} (OpenAI-compatible at {srv.url}/v1)\n"
                   f"  action targets: {', '.join(action_target_names())} (files in {world.dir})\n"
                   f"  written: {world.serve_file}")
    sys.stdout.flush()
    srv.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        srv.stop()
    if not as_json:
        click.echo("stopped")
