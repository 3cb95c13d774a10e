"""`oncall receive`: live OTLP/HTTP traces into the incident."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import click

from oncall.cliutil import EXIT_OK, EXIT_PROBLEM, db_option, emit_json, fail, json_option, resolve_db
from oncall.display import iso_utc


def _iso(ts: float) -> str:
    return iso_utc(datetime.fromtimestamp(ts, UTC))

STATUS_EVERY = 10.0  # seconds between status lines on stderr


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs --token-env")
@click.option("--port", default=4318, show_default=True, type=click.IntRange(0, 65535),
              help="port (4318 is OTLP/HTTP's default; 0 picks a free one)")
@click.option("--token-env", metavar="NAME", default=None,
              help="environment variable holding the bearer token exporters must send")
@click.option("--flush-every", default=1.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="seconds between parts written (spans show in consoles within about this)")
@click.option("--max-body", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="largest request body in MiB, before and after gzip (413 above)")
@db_option
@json_option
@click.pass_context
def receive(ctx: click.Context, host: str, port: int, token_env: str | None, flush_every: float, max_body: int,
            db: str | None, as_json: bool) -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces, protobuf or JSON, gzip) into the incident until Ctrl-C.

    Point any OpenTelemetry exporter at it (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318). Spans are
    written at least every --flush-every seconds, through the same mapping, redaction and dedupe as
    `oncall load`, and acknowledged only once written: an exporter retries whatever was not.
    """
    from oncall.ingest.gcpace import pace_for_bulk_mapping
    from oncall.live.service import ReceiveService
    from oncall.store import StoreError, open_db
    from oncall.store.db import default_db_path

    pace_for_bulk_mapping()
    # Each request's rows become Arrow buffers in its own handler thread (live.payload); mimalloc,
    # pyarrow's default pool, keeps a heap per thread, which held ~250 MB more at 32 connections
    # (bench/receive.py: RSS 636 -> 347 MB at 10 s with the system allocator, same CPU per span).
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())

    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            fail(f"--token-env {token_env}: the environment variable is not set or empty")
    db_path = default_db_path(resolve_db(ctx, db))
    try:
        store = open_db(db_path)  # creates the incident if needed, and fails early on a bad one
    except StoreError as exc:
        fail(str(exc))
    service = ReceiveService(db_path, host=host, port=port, token=token, flush_every=flush_every,
                             max_body=max_body * 1024 * 1024)
    url = service.start()
    started = time.time()
    store.record_event("receive", f"receiving live OTLP traces on {url}", {"url": url})
    click.echo(f"oncall: receiving OTLP/HTTP traces on {url} into {db_path} (Ctrl-C to stop)", err=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        last = (time.monotonic(), 0)
        while not stop.wait(STATUS_EVERY if sys.stderr.isatty() or not as_json else 3600):
            now, accepted = time.monotonic(), service.receiver.stats.spans_accepted
            click.echo(_status_line(service, (accepted - last[1]) / max(1e-9, now - last[0])), err=True)
            last = (now, accepted)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        click.echo("oncall: stopping: writing what was received…", err=True)
        service.stop()
    stats = service.receiver.stats
    store.record_event("receive", f"stopped receiving on {url}: {stats.spans_written:,} spans written",
                       {"url": url, **{k: v for k, v in stats.as_dict().items() if k != 'last_arrival'}})
    store.close()
    summary = {"url": url, "db": str(db_path), "seconds": round(time.time() - started, 1), **stats.as_dict(),
               "compactions": len(service.compactor.merges) if service.compactor else 0,
               "compaction_errors": list(service.compactor.errors) if service.compactor else []}
    if summary.get("last_arrival"):
        summary["last_arrival"] = _iso(summary["last_arrival"])
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"oncall: received {stats.spans_accepted:,} spans in {stats.requests:,} requests; "
                   f"{stats.spans_written:,} new, {stats.duplicates:,} duplicates, {stats.rejected_spans:,} rejected, "
                   f"{stats.parts:,} parts", err=True)
    sys.exit(EXIT_PROBLEM if stats.failed_writes else EXIT_OK)


def _status_line(service: Any, rate: float) -> str:
    s = service.receiver.stats
    last = _iso(s.last_arrival) if s.last_arrival else "none yet"
    line = (f"oncall: {rate:,.0f} spans/s · {s.spans_accepted:,} accepted · {s.parts:,} parts · "
            f"last arrival {last}")
    if s.busy_responses:
        line += f" · {s.busy_responses:,} asked to retry (429)"
    if s.rejected_spans:
        line += f" · {s.rejected_spans:,} rejected"
    if s.failed_writes:
        line += f" · {s.failed_writes:,} failed writes ({s.last_error})"
    return line


# -- watch ------------------------------------------------------------------------------------------

def duration_seconds(value: str, what: str) -> float:
    """`90`, `90s`, `5m`, `1h`, `1d` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    v = value.strip().lower()
    try:
        secs = float(v[:-1]) * units[v[-1]] if v and v[-1] in units else float(v)
    except ValueError:
        fail(f"{what} {value!r}: give a duration such as 30s, 5m or 1h")
    if secs <= 0:
        fail(f"{what} {value!r}: must be more than zero")
    return secs


@click.command()
@click.argument("filter_words", nargs=-1, metavar="[FILTER...]")
@click.option("--notify", "notify", multiple=True, required=True, metavar="TARGET",
              help="where to send: a [notify.NAME] of oncall.toml, webhook=URL, slack=URL or pagerduty=ROUTING_KEY_ENV "
                   "(repeat for several)")
@click.option("--every", default="60s", show_default=True, help="how often to check")
@click.option("--window", default="1h", show_default=True, help="what-changed looks at this much recent traffic")
@click.option("--recent", default="5m", show_default=True,
              help="an alert resolves when its cohort is back within noise over this last stretch")
@click.option("--once", is_flag=True, help="check once and exit: 1 when it notified, 0 when not (cron, CI)")
@click.option("--source", default=None, metavar="URL|@NAME",
              help="watch a trace store (clickhouse://…, @NAME) instead of the incident; alerts sent are kept in --db")
@click.option("--config", "config_path", default=None, metavar="PATH", help="oncall.toml to read [notify] from")
@db_option
@json_option
@click.pass_context
def watch(ctx: click.Context, filter_words: tuple[str, ...], notify: tuple[str, ...], every: str, window: str,
          recent: str, once: bool, source: str | None, config_path: str | None, db: str | None, as_json: bool) -> None:
    """Run what-changed on a rolling window and notify once per new cause; resolve when it recovers.

    A new cause is a served model, prompt version, release or provider never seen before, or a metric
    shift beyond noise. Alerts carry the cause, its effects, counts and the command that opens it;
    what was sent is kept in the incident's journal, so a restart never sends it twice.
    """
    import datetime as dt

    from oncall.cliutil import open_store
    from oncall.live.notify import resolve_target
    from oncall.live.watch import check
    from oncall.sources.base import SourceError
    from oncall.sources.scratch import scratch_incident

    every_s = duration_seconds(every, "--every")
    window_td = dt.timedelta(seconds=duration_seconds(window, "--window"))
    recent_td = dt.timedelta(seconds=duration_seconds(recent, "--recent"))
    targets = [resolve_target(spec, config=config_path) for spec in notify]
    store = open_store(ctx, db, create=bool(source))  # watching a source: --db only keeps what was sent
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    notified = failed = False
    try:
        while True:
            if source:
                # The source's window is pulled into a scratch incident each check (oncall.sources.scratch);
                # the alerts sent are kept in the --db incident's journal.
                since = (dt.datetime.now(dt.UTC) - window_td).isoformat()
                try:
                    with scratch_incident(source, since, None, list(filter_words)) as (scratch, _, _):
                        result = check(store, targets, window=window_td, recent=recent_td,
                                       filter_words=list(filter_words), data=scratch, source=source)
                except SourceError as exc:  # the store is down or refused: say so, try again next time
                    if once:
                        fail(str(exc), exc.exit_code)
                    click.echo(f"oncall: {exc}", err=True)
                    failed = True
                    if stop.wait(every_s):
                        break
                    continue
            else:
                result = check(store, targets, window=window_td, recent=recent_td, filter_words=list(filter_words))
            notified |= result.notified
            failed |= bool(result.failed)
            if as_json:
                click.echo(json.dumps(result.as_dict(), default=str))
            else:
                for s in result.sent:
                    click.echo(f"{result.at} {s['action']:<8} {s['target']}: {s['summary']}")
                for f in result.failed:
                    click.echo(f"oncall: {f}", err=True)
                if not once:
                    click.echo(f"oncall: checked {result.at}: {result.changes} change(s) in the window, "
                               f"{len(result.open)} open alert(s)", err=True)
            if once or stop.wait(every_s):
                break
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    sys.exit(EXIT_PROBLEM if (notified or failed) else EXIT_OK)
