"""Building parameterized ClickHouse SQL: bound `{name:Type}` parameters for every value that came
from a person (filter values, table names, times), literals only for oncall's own constants (the
mapping's key tables)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def literal(text: str) -> str:
    """A ClickHouse string literal for one of oncall's own constants (never for user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ch_time(t: dt.datetime) -> str:
    """A UTC time as DateTime64(9) parameter text."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Params:
    """Bound parameters of one query: `p(value, type)` returns the `{pN:Type}` placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def p(self, value: Any, ch_type: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{ch_type}}}"

    def named(self, name: str, value: Any, ch_type: str) -> str:
        self.values[name] = value
        return f"{{{name}:{ch_type}}}"
