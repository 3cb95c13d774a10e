"""Connecting to ClickHouse with the real `clickhouse-connect` client (HTTP, HTTPS, or its in-process
chDB backend for `chdb://`), and turning what it raises into one line a responder can act on.

Every error names the source (`ref.display`, which never holds the password) and says what to
change; messages from the driver pass through `ref.scrub` so a password echoed in a DSN or a
server message never reaches the terminal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from oncall.sources.base import EXIT_SOURCE_FAILED, EXIT_SOURCE_USAGE, SourceError, SourceRef, SourceUsageError

# Server limits a responder may raise (or lower) per source, passed on every query as settings.
LIMIT_SETTINGS = ("max_execution_time", "max_memory_usage", "max_rows_to_read", "max_bytes_to_read",
                  "max_result_rows", "max_threads")
DEFAULT_SETTINGS = {"max_execution_time": 120}
CONNECT_TIMEOUT_S = 10
# The driver logs its own failures ("Unexpected Http Driver Exception", with the request URL) to the
# root handler; oncall reports each failure once, as one line that names the source.
logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)


def client_for(ref: SourceRef) -> Any:
    """A connected clickhouse-connect Client for the reference (SourceError when it cannot be had)."""
    try:
        import clickhouse_connect
    except ModuleNotFoundError:
        raise SourceUsageError(f"{ref.display}: the ClickHouse client is not installed; "
                               "pip install 'oncall[clickhouse]'", kind="missing-extra") from None
    settings = settings_for(ref)
    try:
        if ref.scheme == "chdb":
            if not ref.path or ref.path == "/":
                raise SourceUsageError(f"{ref.display}: chdb:// needs a path, e.g. chdb:///var/lib/chdb?table=otel_traces")
            return clickhouse_connect.get_client(dsn=f"chdb://{ref.path}")
        return clickhouse_connect.get_client(
            host=ref.host or "localhost", port=ref.port or 0, username=ref.user or "default",
            password=ref.secret or "", database=database_of(ref), secure=ref.scheme == "clickhouses",
            connect_timeout=CONNECT_TIMEOUT_S, send_receive_timeout=int(settings["max_execution_time"]) + 30,
            query_retries=0, autogenerate_session_id=False,
            verify=ref.params.get("verify", "true").lower() not in ("false", "0", "no"))
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - every driver failure becomes one actionable line
        raise translate(ref, exc) from None


def database_of(ref: SourceRef) -> str:
    """The database named by the URL: `?database=` (chdb://), else the path (`clickhouse://h/DB`)."""
    if ref.params.get("database"):
        return ref.params["database"]
    if ref.scheme != "chdb" and ref.path:
        return ref.path.strip("/")
    return "default"


def settings_for(ref: SourceRef) -> dict[str, int]:
    out = dict(DEFAULT_SETTINGS)
    for k in LIMIT_SETTINGS:
        if k in ref.params:
            v = ref.params[k]
            if not v.isdigit():
                raise SourceUsageError(f"{ref.display}: {k}={v!r} must be a whole number")
            out[k] = int(v)
    return out


@contextmanager
def errors_named(ref: SourceRef, what: str) -> Iterator[None]:
    """Run a query; any driver error leaves as a SourceError naming the source and `what` was asked."""
    try:
        yield
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise translate(ref, exc, what) from None


_CODE_RE = re.compile(r"Code:\s*(\d+)")

# ClickHouse error codes (src/Common/ErrorCodes.cpp) -> (exit code, what to change).
_CODES: dict[int, tuple[int, str]] = {
    81: (EXIT_SOURCE_USAGE, "the database does not exist; check the database in the URL (clickhouse://host/DATABASE "
                            "or ?database=)"),
    60: (EXIT_SOURCE_USAGE, "the table does not exist; check ?table= (SHOW TABLES lists them)"),
    516: (EXIT_SOURCE_FAILED, "authentication refused; check the user in the URL and the password in "
                              "$CLICKHOUSE_PASSWORD or [sources.NAME] in oncall.toml"),
    192: (EXIT_SOURCE_FAILED, "unknown user; check the user in the URL"),
    194: (EXIT_SOURCE_FAILED, "the server wants a password; set $CLICKHOUSE_PASSWORD or [sources.NAME] password_env"),
    497: (EXIT_SOURCE_FAILED, "the user may not read this table; ask for SELECT on it (GRANT SELECT)"),
    159: (EXIT_SOURCE_FAILED, "the server stopped the query at max_execution_time; narrow --since/--until or add "
                             "filters, or raise it with ?max_execution_time=SECONDS"),
    241: (EXIT_SOURCE_FAILED, "the server ran out of memory for this query (max_memory_usage); narrow the window "
                             "or the filter, or raise ?max_memory_usage=BYTES"),
    158: (EXIT_SOURCE_FAILED, "the server's row limit stopped the query (max_rows_to_read / max_result_rows); "
                             "narrow the window or the filter, or raise it with ?max_rows_to_read=N"),
    396: (EXIT_SOURCE_FAILED, "the server's row or byte limit stopped the query; narrow the window or the filter, "
                             "or raise ?max_rows_to_read= / ?max_bytes_to_read="),
    307: (EXIT_SOURCE_FAILED, "the server's byte limit stopped the query (max_bytes_to_read); narrow the window "
                              "or raise ?max_bytes_to_read=BYTES"),
    164: (EXIT_SOURCE_FAILED, "the user is read-only and may not change the settings oncall sends; "
                              "drop the ?max_… settings from the URL"),
    202: (EXIT_SOURCE_FAILED, "the server has too many queries running; try again in a moment"),
    47: (EXIT_SOURCE_USAGE, "the table lacks a column oncall expected; the schema may be a newer variant "
                            "(report it with the table's SHOW CREATE TABLE)"),
}


def translate(ref: SourceRef, exc: BaseException, what: str | None = None) -> SourceError:
    """One actionable line for whatever the driver raised."""
    text = ref.scrub(f"{type(exc).__name__}: {exc}")
    doing = f" ({what})" if what else ""
    m = _CODE_RE.search(text)
    if m and int(m.group(1)) in _CODES:
        code, advice = _CODES[int(m.group(1))]
        err_cls = SourceUsageError if code == EXIT_SOURCE_USAGE else SourceError
        kw = {"kind": f"clickhouse-{m.group(1)}"}
        return err_cls(f"{ref.display}: {advice}{doing}", **kw)  # type: ignore[arg-type]
    low = text.lower()
    if any(s in low for s in ("certificate", "ssl", "tls", "wrong version number")):
        return SourceError(f"{ref.display}: TLS failed ({_cause(text)}); for a plain-HTTP port use "
                           "clickhouse:// (not clickhouses://), or check the server's certificate "
                           "(?verify=false only for a test server)", kind="tls")
    if any(s in low for s in ("connection refused", "max retries", "name or service not known",
                              "failed to establish", "timed out", "nodename nor servname", "no route to host",
                              "temporary failure in name resolution", "connection reset", "remote end closed")):
        return SourceError(f"{ref.display}: cannot reach the server ({_cause(text)}); check host and port "
                           "(HTTP is 8123, HTTPS 8443) and that ClickHouse is running", kind="unreachable")
    if "authentication" in low or "password" in low:
        return SourceError(f"{ref.display}: {_CODES[516][1]}", kind="auth")
    if m:
        return SourceError(f"{ref.display}: the server refused the query{doing}: {_first_line(text)}",
                           kind=f"clickhouse-{m.group(1)}")
    return SourceError(f"{ref.display}: the query failed{doing}: {_first_line(text)}", kind="clickhouse")


_CAUSE_RES = (re.compile(r"\[SSL: [A-Z_]+\] [^'\")(]+"), re.compile(r"\[Errno -?\d+\] [^'\")(]+"),
               re.compile(r"(?:Read|Connect) timed out"), re.compile(r"certificate verify failed[^'\")(]*"))


def _cause(text: str) -> str:
    """The operating system's or TLS library's own words inside a driver's long exception text."""
    for rx in _CAUSE_RES:
        m = rx.search(text)
        if m:
            return m.group(0).strip(" .:")
    return _first_line(text)[:160]


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no message"
    return line[:300]
