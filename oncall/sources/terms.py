"""What of a filter an HTTP API can be asked for: the few terms whose pushdown is always a superset.

The stores' APIs filter on their own fields (a span kind, a name, an error flag, a trace id); the
canonical columns come from the mapping, which may read several fields. A term is pushed only where
the API field decides it the way the mapping does; the rest is decided after mapping by
`pull.ExactFilter`. These helpers read the parsed filter; each source says which it uses.
"""

from __future__ import annotations

from oncall.query.filters import Filter
from oncall.sources.base import SourceUsageError

LOCAL_ONLY = ("label",)


def refuse_local_terms(flt: Filter) -> None:
    """`label=` names the incident's own labels: a source cannot answer it."""
    for t in flt.terms:
        if t.key in LOCAL_ONLY:
            raise SourceUsageError(f"term '{t}': labels live in the local incident, not in the source; load the "
                                   "cohort first (oncall load URL …), then filter it with label=")


def kinds(flt: Filter) -> frozenset[str] | None:
    """The span kinds the filter can match: {'llm'} by default (requests are LLM calls), the values of
    `kind=`, or None (any kind) when a `kind!=`/`kind~` term makes it open-ended."""
    wanted: frozenset[str] | None = frozenset({"llm"})
    seen = False
    for t in flt.terms:
        if t.key != "kind":
            continue
        if t.op != "=":
            return None
        vals = frozenset(v.lower() for v in t.values)
        wanted = vals if not seen else (wanted or frozenset()) & vals
        seen = True
    return wanted


def equals(flt: Filter, key: str) -> tuple[str, ...] | None:
    """The values a `key=v1,v2` term allows (the intersection when several terms name `key`); None if
    there is no such term."""
    allowed: tuple[str, ...] | None = None
    for t in flt.terms:
        if t.key == key and t.op == "=" and "" not in t.values:
            allowed = t.values if allowed is None else tuple(v for v in allowed if v in t.values)
    return allowed


def wants_errors_only(flt: Filter) -> bool:
    """True when every row the filter matches is an error (`status=error`, or any `error=` term)."""
    for t in flt.terms:
        if t.key == "status" and t.op == "=" and t.values == ("error",):
            return True
        if t.key == "error" and t.op in ("=", "~") and "" not in t.values:
            return True
    return False
