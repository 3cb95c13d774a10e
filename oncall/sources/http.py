"""HTTP for the stores' own APIs (Phoenix, MLflow, Langfuse, LangSmith): one client per source, every
failure turned into one line naming the source and what to change, rate limits honoured.

- Base URL: `SCHEME://host[:port]` becomes http or https. `?tls=true|false` decides when given;
  otherwise a loopback host, or an explicit port other than 443, means plain http (Phoenix on
  :6006 and MLflow on :5000 serve http by default), and anything else https (Langfuse Cloud,
  a store behind a load balancer).
- 429 and 503 are waited out: `Retry-After` (seconds or an HTTP date) when the server sends it,
  else an exponential backoff; each wait at most MAX_WAIT, the pull's total wait at most
  TOTAL_WAIT, after which the pull fails with exit 1 and says how long it waited.
- Connection errors, TLS, timeouts, 401/403 (the key), 404 (the project/experiment), other 4xx
  and 5xx: SourceError / SourceUsageError whose text passes through `ref.scrub`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from oncall.sources.base import PullStats, SourceError, SourceRef, SourceUsageError

TIMEOUT = httpx2.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)
MAX_WAIT = 60.0  # longest single wait a 429/503 may ask for
TOTAL_WAIT = 300.0  # all waits of one pull together
RETRIES_5XX = 3


def base_url(ref: SourceRef, *, default_port: int | None = None) -> str:
    """http(s)://host:port for a `SCHEME://host[:port]/…` reference (see the module doc for TLS)."""
    if not ref.host:
        raise SourceUsageError(f"{ref.display}: needs a host: {ref.scheme}://HOST[:PORT]/…")
    tls = ref.params.get("tls")
    if tls is not None:
        if tls.lower() not in ("true", "false", "1", "0"):
            raise SourceUsageError(f"{ref.display}: ?tls={tls}: use tls=true or tls=false")
        secure = tls.lower() in ("true", "1")
    else:
        secure = not (_is_loopback(ref.host) or (ref.port is not None and ref.port != 443))
    port = ref.port or default_port
    host = f"[{ref.host}]" if ":" in ref.host else ref.host
    return f"{'https' if secure else 'http'}://{host}{f':{port}' if port else ''}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Api:
    """One store's HTTP API. `what` texts name the request in errors ("listing spans")."""

    def __init__(self, ref: SourceRef, base: str, *, headers: Mapping[str, str] | None = None,
                 auth: tuple[str, str] | None = None, verify: bool = True,
                 key_hint: str = "the API key", sleep: Callable[[float], None] = time.sleep) -> None:
        self.ref = ref
        self.base = base.rstrip("/")
        self.key_hint = key_hint
        self.sleep = sleep
        self.waited = 0.0  # seconds spent waiting out rate limits in this pull
        self.requests = 0
        self.bytes = 0
        self.client = httpx2.Client(base_url=self.base, headers=dict(headers or {}), auth=auth, verify=verify,
                                    timeout=TIMEOUT, follow_redirects=True)

    def close(self) -> None:
        self.client.close()

    def account(self, stats: PullStats) -> PullStats:
        """`stats` with what this client moved: bytes received, requests, time spent rate limited."""
        stats.bytes = self.bytes
        stats.notes.append(f"{self.requests} requests to {self.base}")
        if self.waited:
            stats.notes.append(f"waited {self.waited:.0f} s for rate limits")
        return stats

    def get(self, path: str, what: str, params: Any = None, *, not_found: str | None = None) -> Any:
        return self.request("GET", path, what, params=params, not_found=not_found)

    def post(self, path: str, what: str, body: Any, *, not_found: str | None = None) -> Any:
        return self.request("POST", path, what, json=body, not_found=not_found)

    def request(self, method: str, path: str, what: str, *, not_found: str | None = None, **kwargs: Any) -> Any:
        """The JSON answer of one request, waiting out 429/503 and retrying 5xx a few times."""
        failures = 0
        while True:
            resp = self._send(method, path, what, **kwargs)
            status = resp.status_code
            if status in (429, 503):
                self._wait(resp, what, failures)
                failures += 1
                continue
            if 500 <= status < 600 and failures < RETRIES_5XX:
                self._pause(min(2.0 ** failures, MAX_WAIT), what, status)
                failures += 1
                continue
            break
        self.requests += 1
        self.bytes += len(resp.content)
        if status in (401, 403):
            raise SourceError(f"{self.ref.display}: {what}: the server refused the credentials ({status} "
                              f"{self._excerpt(resp)}); check {self.key_hint}", kind="auth")
        if status == 404:
            raise SourceUsageError(f"{self.ref.display}: {what}: {not_found or 'not found'} (404 "
                                   f"{self._excerpt(resp)})", kind="missing")
        if status >= 400:
            cls = SourceUsageError if status in (400, 422) else SourceError
            raise cls(f"{self.ref.display}: {what}: the server answered {status}: {self._excerpt(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise SourceError(f"{self.ref.display}: {what}: the answer is not JSON ({self._excerpt(resp)}); "
                              "is the URL pointing at the right server?", kind="protocol") from None

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx2.Response:
        try:
            return self.client.request(method, path, **kwargs)
        except httpx2.TimeoutException:
            raise SourceError(f"{self.ref.display}: {what}: timed out talking to {self.base}; is the server "
                              "overloaded, or the window too wide?", kind="timeout") from None
        except httpx2.HTTPError as exc:
            detail = self.ref.scrub(_first_line(exc))
            if _is_tls(exc):
                raise SourceError(f"{self.ref.display}: {what}: TLS failed with {self.base} ({detail}); for a "
                                  "plain-http server add ?tls=false", kind="tls") from None
            if isinstance(exc, httpx2.ConnectError):
                raise SourceError(f"{self.ref.display}: cannot reach {self.base} ({detail}); check the host and "
                                  "port, and that the server is running", kind="unreachable") from None
            raise SourceError(f"{self.ref.display}: {what}: {detail}", kind="protocol") from None

    def _wait(self, resp: httpx2.Response, what: str, failures: int) -> None:
        asked = retry_after(resp.headers.get("retry-after"))
        delay = asked if asked is not None else min(2.0 ** failures, MAX_WAIT)
        if delay > MAX_WAIT or self.waited + delay > TOTAL_WAIT:
            raise SourceError(
                f"{self.ref.display}: {what}: the server keeps answering {resp.status_code} (rate limited; "
                f"asked to wait {delay:.0f} s after {self.waited:.0f} s of waiting); try a narrower window or "
                "filter, or again later", kind="rate-limit")
        self._pause(delay, what, resp.status_code)

    def _pause(self, delay: float, what: str, status: int) -> None:
        self.waited += delay
        self.sleep(delay)

    def _excerpt(self, resp: httpx2.Response, limit: int = 200) -> str:
        text = " ".join(resp.text.split())
        return self.ref.scrub(text[:limit] + ("…" if len(text) > limit else "")) or "(empty body)"


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in type(seen).__name__ or "CERTIFICATE" in str(seen).upper():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
