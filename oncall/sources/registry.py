"""Source references to sources: URL schemes, `@NAME` from oncall.toml, and where secrets come from.

Adding a source is one module in oncall/sources/ (see base.py for its contract) and one line in
SCHEMES. A reference is

    SCHEME://[user@]host[:port]/PATH?key=value…     e.g. clickhouse://default@ch:8123/otel?table=otel_traces
    SCHEME:///PATH?key=value…                       e.g. chdb:///var/lib/chdb?database=otel&table=otel_traces
    @NAME                                           [sources.NAME] in oncall.toml:

        [sources.prod]
        url = "clickhouses://oncall@ch.internal:8443/otel?table=otel_traces"
        password_env = "PROD_CH_PASSWORD"   # the variable holding the password ($CLICKHOUSE_PASSWORD if unset)

A password written into the URL itself is refused (it would land in shell history, the trail and
the incident): the secret comes from the environment: the variable oncall.toml's `password_env` names, else the
source's own (CLICKHOUSE_PASSWORD for ClickHouse), and nowhere else.
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType
from urllib.parse import parse_qsl, unquote, urlsplit

from oncall.config import load_config, refuse_literal_secrets
from oncall.sources.base import Source, SourceRef, SourceUsageError

# scheme -> (module under oncall.sources, the environment variable holding its secret).
SCHEMES: dict[str, tuple[str, str | None]] = {
    "clickhouse": ("clickhouse", "CLICKHOUSE_PASSWORD"),
    "clickhouses": ("clickhouse", "CLICKHOUSE_PASSWORD"),
    "chdb": ("clickhouse", None),  # in-process chDB: a path, no server, no password
}

_URL_RE = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_NAME_RE = re.compile(r"^@([A-Za-z0-9_.-]+)$")
_USERINFO_SECRET_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:?#]*:[^@]*@", re.IGNORECASE)


def is_source_ref(text: str) -> bool:
    """True when a `load` argument names a source (a known scheme or @NAME), not a file."""
    if _NAME_RE.match(text):
        return True
    m = _URL_RE.match(text)
    return bool(m) and m.group(1).lower() in SCHEMES


def parse_ref(text: str) -> SourceRef:
    """A SourceRef from a URL or @NAME, with its secret looked up (never taken from the URL)."""
    m = _NAME_RE.match(text)
    if m:
        return _named(m.group(1))
    return _parse_url(text, name=None, secret=None, secret_from=None, secret_env=None)


def _parse_url(text: str, *, name: str | None, secret: str | None, secret_from: str | None,
               secret_env: str | None) -> SourceRef:
    m = _URL_RE.match(text)
    where = f"@{name}" if name else "source"
    if not m:
        raise SourceUsageError(f"{where}: {_no_secret(text)!r} is not a source URL; "
                               f"use one of {', '.join(s + '://' for s in SCHEMES)} or @NAME")
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise SourceUsageError(f"{where}: unknown scheme {scheme}://; known: {', '.join(s + '://' for s in SCHEMES)}")
    if _USERINFO_SECRET_RE.match(text):  # before any parsing: a password may hold '#', '/' or '?'
        raise SourceUsageError(
            f"{_no_secret(text)}: a password in the URL is refused (it would be kept in the trail and "
            f"shell history); set {SCHEMES[scheme][1] or 'it'} in the environment or use [sources.NAME] "
            "in oncall.toml")
    parts = urlsplit(text)
    if parts.password is not None:
        # Do not echo it: the message names the URL with the password cut out.
        raise SourceUsageError(
            f"{_no_secret(text)}: a password in the URL is refused (it would be kept in the trail and "
            f"shell history); set {SCHEMES[scheme][1] or 'it'} in the environment or use [sources.NAME] "
            "in oncall.toml")
    try:
        port = parts.port
    except ValueError:
        raise SourceUsageError(f"{where}: {_no_secret(text)!r}: the port is not a number") from None
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    env_name = secret_env or SCHEMES[scheme][1]
    if secret is None and env_name and os.environ.get(env_name):
        secret, secret_from = os.environ[env_name], f"${env_name}"
    return SourceRef(scheme=scheme, host=parts.hostname, port=port,
                     user=unquote(parts.username) if parts.username else None,
                     path=unquote(parts.path.lstrip("/")) if scheme != "chdb" else unquote(parts.path),
                     params=params, name=name, secret=secret, secret_from=secret_from)


def _no_secret(text: str) -> str:
    """A URL with any user:password@ reduced to user@ (for messages about a refused URL)."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^/@:?#]*):[^@]*@", r"\1:***@", text, flags=re.IGNORECASE)


def _named(name: str) -> SourceRef:
    """[sources.NAME] from oncall.toml (the one loader: user file, then project file). The password is
    named by environment variable (`password_env`); a literal one is refused (the file is read by
    people and pasted into tickets)."""
    cfg = load_config()
    entry = cfg.entry("sources", name=name)  # ConfigError (exit 2) lists the names there are
    refuse_literal_secrets(entry.settings, entry.where())
    url = entry.settings.get("url")
    if not isinstance(url, str) or not url:
        raise SourceUsageError(f"{entry.where('url')}: needs url = \"clickhouse://…\"")
    env_name = entry.settings.get("password_env")
    if env_name is not None and not isinstance(env_name, str):
        raise SourceUsageError(f"{entry.where('password_env')} must be the name of an environment variable")
    secret, secret_from = None, None
    if env_name and os.environ.get(env_name):
        secret, secret_from = os.environ[env_name], f"${env_name}"
    return _parse_url(url, name=name, secret=secret, secret_from=secret_from, secret_env=env_name)


def module_for(scheme: str) -> ModuleType:
    modname = SCHEMES[scheme][0]
    return importlib.import_module(f"oncall.sources.{modname}")


def open_source(text_or_ref: str | SourceRef) -> Source:
    """The Source a reference names, connected and with its schema detected (SourceError if not)."""
    ref = parse_ref(text_or_ref) if isinstance(text_or_ref, str) else text_or_ref
    return module_for(ref.scheme).open_source(ref)
