"""Reading a runbook: Markdown a human reads on GitHub, with front matter and three kinds of block.

    ---
    title: Provider outage / 429 storm
    when: A provider returns 429s or 5xx for every tenant; fail over to the fallback deployment.
    params:
      alias: {type: string, default: support-bot, help: the app-facing model name}
      cohort: {type: filter, default: "error=rate_limit"}
    targets: [gateway]
    ---
    ## 1. Is it the provider?
    ```oncall
    changes ${cohort}
    ```
    ## 2. Evidence: does the fallback answer?
    ```gate
    replay ${cohort} --target fallback -n 10
    expect error_rate <= 5%
    ```
    ## 3. Flip to the fallback
    ```action
    target: gateway
    op: repoint
    alias: ${alias}
    to: support-bot-fallback
    ```

`oncall` blocks hold reading commands (one per line) whose results are shown inline; a `gate`
block is a replay and the conditions its summary must meet before any later action runs; an
`action` block names a target from oncall.toml and the adapter's arguments. `${name}` is a
parameter, substituted (and validated) before anything runs. Everything else is prose, shown as
it is. Any mistake is reported with the file, the line and what is wrong.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from oncall.query.registry import METRICS, Fold
from oncall.replay.checks import REPLAY_COLUMNS
from oncall.runbook.model import (
    PARAM_TYPES,
    RUN_COUNTS,
    Expectation,
    Param,
    Runbook,
    RunbookError,
    Step,
    heading_number,
)
from oncall.runbook.params import PLACEHOLDER, ParamError, coerce

READING_COMMANDS = ("search", "show", "sample", "compare", "changes", "blast-radius")
_EXPECT = re.compile(r"^expect\s+([a-z_.]+)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+)\s*(%?)\s*(?:of\s+(original|baseline))?\s*$")
# What a gate can test: the metrics a replay summary computes (the registry's, over the columns a
# replay result carries) and the run's own counts (runbook/run.py).
REPLAY_METRICS = tuple(m.name for m in Fold(columns=REPLAY_COLUMNS).metrics)
GATE_METRICS = REPLAY_METRICS + tuple(RUN_COUNTS)


def _fail(path: Path, line: int, message: str) -> RunbookError:
    return RunbookError(f"{path}:{line}: {message}")


def parse_runbook(path: Path) -> Runbook:
    """Parse and check one runbook file (it is not run: parameters stay placeholders)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError(f"{path}: cannot read the runbook ({exc})") from None
    front, body, body_line = _split_front_matter(path, text)
    meta = _load_yaml(path, front, 2) if front is not None else {}
    if not isinstance(meta, dict):
        raise _fail(path, 2, "the front matter must be a mapping (title:, when:, params:, targets:)")
    known = {"name", "title", "when", "params", "targets"}
    for key in meta:
        if key not in known:
            raise _fail(path, _key_line(meta, key, 2), f"unknown front-matter key {key!r}; "
                        f"known: {', '.join(sorted(known))}")
    title = str(meta.get("title") or "").strip()
    if not title:
        raise _fail(path, 1, "the front matter needs a title")
    params = _params(path, meta.get("params") or {}, _key_line(meta, "params", 2), 2)
    targets = meta.get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise _fail(path, _key_line(meta, "targets", 2), "targets must be a list of target names from oncall.toml")
    steps = _steps(path, body, body_line, params, targets)
    name = str(meta.get("name") or path.stem)
    return Runbook(name=name, path=path, title=title, when=str(meta.get("when") or "").strip(), params=params,
                   targets=list(targets), steps=steps, body=body)


def _split_front_matter(path: Path, text: str) -> tuple[str | None, str, int]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise _fail(path, 1, "a runbook starts with front matter between two '---' lines (title, when, params)")
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1:]), i + 2
    raise _fail(path, 1, "the front matter is not closed by a '---' line")


def _load_yaml(path: Path, text: str, first_line: int) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        # Where the broken construct starts (an unclosed '[' …) says more than where parsing gave up.
        mark = exc.context_mark or exc.problem_mark
        line = first_line + (mark.line if mark else 0)
        raise _fail(path, line, f"not valid YAML: {exc.problem or exc}") from None


def _key_line(mapping: Any, key: str, first_line: int) -> int:
    try:
        return first_line + mapping.lc.key(key)[0]
    except (AttributeError, KeyError, TypeError):
        return first_line


def _params(path: Path, raw: Any, line: int, doc_line: int) -> dict[str, Param]:
    """`line` is where params: is; ruamel's positions count from the document's start, `doc_line`."""
    if not isinstance(raw, dict):
        raise _fail(path, line, "params must be a mapping of name: {type, default, help}")
    out: dict[str, Param] = {}
    for name, spec in raw.items():
        pline = _key_line(raw, name, doc_line)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise _fail(path, pline, f"parameter name {name!r} must be letters, digits and _")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise _fail(path, pline, f"parameter {name}: expected {{type, default, help}}, got {spec!r}")
        unknown = set(spec) - {"type", "default", "help", "choices", "required"}
        if unknown:
            raise _fail(path, pline, f"parameter {name}: unknown key(s) {', '.join(sorted(unknown))}")
        ptype = str(spec.get("type", "string"))
        if ptype not in PARAM_TYPES:
            raise _fail(path, pline, f"parameter {name}: type {ptype!r} is not one of {', '.join(PARAM_TYPES)}")
        choices = spec.get("choices")
        if ptype == "choice" and (not isinstance(choices, list) or not choices):
            raise _fail(path, pline, f"parameter {name}: a choice needs choices: [a, b, …]")
        p = Param(name=str(name), type=ptype, default=spec.get("default"), help=str(spec.get("help") or ""),
                  choices=[str(c) for c in choices] if choices else None,
                  required=bool(spec.get("required", spec.get("default") is None)), line=pline)
        if p.default is not None:
            try:
                p.default = coerce(p, p.default)
            except ParamError as exc:
                raise _fail(path, pline, f"default of {exc}") from None
        out[p.name] = p
    return out


def _steps(path: Path, body: str, body_line: int, params: dict[str, Param], targets: list[str]) -> list[Step]:
    tokens = MarkdownIt("commonmark").parse(body)
    heading = ""
    steps: list[Step] = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and i + 1 < len(tokens):
            heading = tokens[i + 1].content.strip()
            continue
        if tok.type != "fence":
            continue
        info = tok.info.strip().split()[0] if tok.info.strip() else ""
        if info not in ("oncall", "gate", "verify", "action"):
            continue
        start = body_line + (tok.map[0] if tok.map else 0) + 1  # first line inside the fence
        _check_placeholders(path, tok.content, start, params)
        if info == "oncall":
            step = _query_step(path, tok.content, start, heading)
        elif info == "gate":
            step = _gate_step(path, tok.content, start, heading)
        elif info == "verify":
            step = _verify_step(path, tok.content, start, heading)
        else:
            step = _action_step(path, tok.content, start, heading, targets)
        step.name = heading_number(heading) or f"{len(steps) + 1}"
        steps.append(step)
    if not steps:
        raise _fail(path, body_line, "the runbook has no steps (```oncall, ```gate, ```verify or ```action blocks)")
    return steps


def _check_placeholders(path: Path, content: str, start: int, params: dict[str, Param]) -> None:
    for offset, line in enumerate(content.splitlines()):
        for m in PLACEHOLDER.finditer(line):
            if m.group(1) not in params:
                raise _fail(path, start + offset, f"${{{m.group(1)}}} is not a parameter of this runbook; "
                            f"parameters: {', '.join(params) or '(none)'}")
        if "${" in PLACEHOLDER.sub("", line):
            raise _fail(path, start + offset, "a '${' that is not a ${name} parameter")


def _command_lines(content: str, start: int) -> list[tuple[int, str]]:
    out = []
    for offset, line in enumerate(content.splitlines()):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append((start + offset, s))
    return out


def _split(path: Path, line: int, text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise _fail(path, line, f"cannot split {text!r} into arguments ({exc})") from None


def _query_step(path: Path, content: str, start: int, heading: str) -> Step:
    commands = []
    for line, text in _command_lines(content, start):
        words = _split(path, line, text)
        if words and words[0] == "oncall":
            words, text = words[1:], text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
        if not words or words[0] not in READING_COMMANDS:
            raise _fail(path, line, f"an oncall block runs reading commands only ({', '.join(READING_COMMANDS)}); "
                        f"got {words[0] if words else 'nothing'!r}")
        commands.append(text)
    if not commands:
        raise _fail(path, start, "an empty oncall block")
    return Step(kind="query", heading=heading, line=start, commands=commands)


def _gate_step(path: Path, content: str, start: int, heading: str) -> Step:
    lines = _command_lines(content, start)
    if not lines:
        raise _fail(path, start, "an empty gate block (a replay line, then expect lines)")
    line, text = lines[0]
    words = _split(path, line, text)
    if words and words[0] == "oncall":
        words = words[1:]
        text = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
    if not words or words[0] != "replay":
        raise _fail(path, line, "a gate starts with the replay that gathers its evidence: `replay FILTER --target NAME …`")
    if "--target" not in words and not any(w.startswith("--target=") for w in words):
        raise _fail(path, line, "the gate's replay needs --target (the candidate fix)")
    expectations = []
    for eline, etext in lines[1:]:
        m = _EXPECT.match(etext)
        if not m:
            raise _fail(path, eline, f"expected `expect METRIC OP NUMBER[%] [of original|of baseline]` "
                        "(e.g. expect json_valid_rate >= 95%, expect cost_per_request <= 50% of original), "
                        f"got {etext!r}")
        metric, op, number, pct, relative = m.groups()
        if metric not in GATE_METRICS:
            raise _fail(path, eline, f"unknown gate metric {metric!r}; known: {', '.join(GATE_METRICS)}")
        value = float(number) / (100 if pct else 1)
        if relative and metric not in REPLAY_METRICS:
            raise _fail(path, eline, f"{metric} is a count of the replay; 'of {relative}' needs a metric of the "
                        f"summary ({', '.join(REPLAY_METRICS)})")
        expectations.append(Expectation(metric, op, value, etext, eline, relative))
    if not expectations:
        raise _fail(path, line, "a gate needs at least one `expect` line: evidence must be checked, not just gathered")
    return Step(kind="gate", heading=heading, line=start, commands=[text], expectations=expectations)


# A verify block: live evidence after an action. The first line is the cohort (a filter; empty: all
# calls), then conditions on its calls since the step began, each with its deadline:
#     ```verify
#     tenant=${tenant}
#     expect error_rate <= 1% within 10m
#     ```
_EXPECT_LIVE = re.compile(r"^expect\s+([a-z0-9_.]+)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+)\s*(%?)\s*within\s+([0-9.]+)\s*([smh])\s*$")
# What a verify can test: compare's metrics of the cohort's live calls (oncall/live/evidence.py), i.e.
# the registry's rates, means and quantiles of LLM calls that need no reference.
LIVE_METRICS = tuple(m.name for m in METRICS.values()
                     if m.entity == "llm" and m.reference is None and m.kind in ("rate", "mean", "quantile"))


def _verify_step(path: Path, content: str, start: int, heading: str) -> Step:
    lines = _command_lines(content, start)
    cohort = ""
    if lines and not lines[0][1].startswith("expect"):
        cohort = lines.pop(0)[1]
        _split(path, start, cohort)
    expectations = []
    for eline, etext in lines:
        m = _EXPECT_LIVE.match(etext)
        if not m:
            raise _fail(path, eline, "expected `expect METRIC OP NUMBER[%] within DURATION` (e.g. expect error_rate "
                        f"<= 1% within 10m): live evidence needs a deadline; got {etext!r}")
        metric, op, number, pct, amount, unit = m.groups()
        if metric not in LIVE_METRICS:
            raise _fail(path, eline, f"unknown live metric {metric!r}; known: {', '.join(LIVE_METRICS)}")
        within = float(amount) * {"s": 1, "m": 60, "h": 3600}[unit]
        if within <= 0:
            raise _fail(path, eline, "the deadline must be more than zero")
        expectations.append(Expectation(metric, op, float(number) / (100 if pct else 1), etext, eline,
                                        within_s=within))
    if not expectations:
        raise _fail(path, start, "a verify block needs at least one `expect METRIC OP NUMBER within DURATION`")
    return Step(kind="verify", heading=heading, line=start, commands=[cohort], expectations=expectations)


def _action_step(path: Path, content: str, start: int, heading: str, targets: list[str]) -> Step:
    data = _load_yaml(path, content, start)
    if not isinstance(data, dict):
        raise _fail(path, start, "an action block is a YAML mapping: target: NAME, then the adapter's arguments")
    target = data.get("target")
    if not isinstance(target, str) or not target:
        raise _fail(path, start, "an action needs `target:` (a target from oncall.toml)")
    if targets and target not in targets and not PLACEHOLDER.fullmatch(target):
        raise _fail(path, _key_line(data, "target", start), f"target {target!r} is not among the runbook's "
                    f"targets ({', '.join(targets)}); add it to the front matter's targets")
    args = {str(k): _plain(v) for k, v in data.items() if k not in ("target", "why")}
    why = data.get("why")
    return Step(kind="action", heading=heading, line=start, target=target, args=args,
                why=str(why) if why is not None else None)


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain Python (so plans and audits are plain JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)
