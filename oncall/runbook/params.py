"""Runbook parameters: typed, validated and substituted before any step runs."""

from __future__ import annotations

import re
import shlex
from typing import Any

from oncall.runbook.model import Param, Runbook, RunbookError

# `${name}`: a runbook parameter in a step (parse.py checks each names a parameter; this module fills them in).
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ParamError(RunbookError):
    pass


def coerce(p: Param, value: Any) -> Any:
    """The value as the parameter's type; ParamError says which parameter and why."""
    text = str(value).strip()
    if p.type == "int":
        try:
            return int(text)
        except ValueError:
            raise ParamError(f"{p.name}: {value!r} is not a whole number") from None
    if p.type == "number":
        try:
            return float(text)
        except ValueError:
            raise ParamError(f"{p.name}: {value!r} is not a number") from None
    if p.type == "bool":
        if isinstance(value, bool):
            return value
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise ParamError(f"{p.name}: {value!r} is not true or false")
    if p.type == "choice":
        if text not in (p.choices or []):
            raise ParamError(f"{p.name}: {value!r} is not one of {', '.join(p.choices or [])}")
        return text
    if "\n" in text or "\x00" in text:
        raise ParamError(f"{p.name}: a value holds a line break or NUL")
    return text


def resolve_params(rb: Runbook, given: dict[str, str], con: Any = None) -> dict[str, Any]:
    """Every parameter's value: given (--param k=v) over default; filters compiled against the
    incident so a bad one stops the runbook before anything runs."""
    unknown = set(given) - set(rb.params)
    if unknown:
        raise ParamError(f"{rb.name}: no parameter {', '.join(sorted(unknown))}; "
                         f"parameters: {', '.join(rb.params) or '(none)'}")
    values: dict[str, Any] = {}
    for name, p in rb.params.items():
        if name in given:
            values[name] = coerce(p, given[name])
        elif p.default is not None:
            values[name] = p.default
        elif p.required:
            raise ParamError(f"{rb.name}: parameter {name} is required ({p.help or p.type}); "
                             f"pass --param {name}=VALUE")
        else:
            values[name] = ""
        if p.type == "filter" and con is not None and values[name]:
            from oncall.query.filters import compile_filter

            try:
                compile_filter(con, str(values[name]))
            except ValueError as exc:
                raise ParamError(f"{rb.name}: parameter {name}: {exc}") from None
    return values


def command_argv(template: str, values: dict[str, Any]) -> list[str]:
    """A step's command line as arguments. A word that is exactly ${name} becomes one argument
    holding the value (a filter's terms are split by the filter language itself, quotes kept);
    placeholders inside a word are replaced in it. Values never become shell syntax."""
    argv = []
    for word in shlex.split(template):
        m = PLACEHOLDER.fullmatch(word)
        if m:
            value = values[m.group(1)]
            if value != "":
                argv.append(_text(value))
            continue
        argv.append(PLACEHOLDER.sub(lambda mm: _text(values[mm.group(1)]), word))
    return argv


def substitute_args(args: Any, values: dict[str, Any]) -> Any:
    """An action's arguments with parameters filled in (a whole-value ${x} keeps x's type)."""
    if isinstance(args, dict):
        return {k: substitute_args(v, values) for k, v in args.items()}
    if isinstance(args, list):
        return [substitute_args(v, values) for v in args]
    if isinstance(args, str):
        m = PLACEHOLDER.fullmatch(args)
        if m:
            return values[m.group(1)]
        return PLACEHOLDER.sub(lambda mm: _text(values[mm.group(1)]), args)
    return args


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
