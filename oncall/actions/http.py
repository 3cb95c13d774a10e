"""HTTP for adapters (httpx2, the project's HTTP stack): short timeouts, and every failure turned
into a TargetError whose message names the target and says what it answered, with secrets scrubbed."""

from __future__ import annotations

from typing import Any

import httpx2

from oncall.actions.errors import TargetError
from oncall.actions.secrets import scrub

DEFAULT_TIMEOUT = 10.0


def request(method: str, url: str, *, what: str, ok: tuple[int, ...] = (200,), timeout: float = DEFAULT_TIMEOUT,
            **kwargs: Any) -> httpx2.Response:
    """Send one request; a connection failure, a timeout or a status not in `ok` raises TargetError."""
    try:
        resp = httpx2.request(method, url, timeout=timeout, **kwargs)
    except httpx2.TimeoutException:
        raise TargetError(f"{what}: {method} {url} timed out after {timeout:g} s") from None
    except httpx2.HTTPError as exc:
        raise TargetError(f"{what}: {method} {url} failed: {scrub(str(exc)) or type(exc).__name__}") from None
    if resp.status_code not in ok:
        raise TargetError(f"{what}: {method} {url} answered {resp.status_code}: {body_excerpt(resp)}")
    return resp


def body_excerpt(resp: httpx2.Response, limit: int = 300) -> str:
    text = resp.text.strip().replace("\n", " ")
    return scrub(text[:limit] + ("…" if len(text) > limit else "")) or "(empty body)"


def json_body(resp: httpx2.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise TargetError(f"{what}: {resp.request.method} {resp.request.url} answered non-JSON: "
                          f"{body_excerpt(resp)}") from None
