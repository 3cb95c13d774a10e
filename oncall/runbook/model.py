"""What a parsed runbook is: its front matter, parameters and steps (oncall/runbook/parse.py builds it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAM_TYPES = ("string", "int", "number", "bool", "filter", "choice")
_NUMBERED = re.compile(r"^(\d+)[.)]\s")


def heading_number(heading: str) -> str | None:
    """The number a heading starts with (`2. Flip` -> "2"), or None."""
    m = _NUMBERED.match(heading.strip())
    return m.group(1) if m else None

# What a gate can test besides the replay summary's metrics: the run's own counts and shares
# (runbook/run.py gate_metrics computes each), and `truncation_rate`, the gate name of the
# registry's finish_length_rate.
RUN_COUNTS = {
    "truncation_rate": "finish_length_rate of the replays (finish=length among successful calls with a finish reason)",
    "changed_rate": "share of replayed pairs whose output differs from the original",
    "changed_beyond_noise_rate": "share of requests changed beyond the replays' own variation (--repeat)",
    "replayed": "requests replayed (ok or diverged)",
    "errors": "replays that failed",
    "diverged": "replays that diverged from the recorded conversation",
    "unreplayable": "requests that could not be rebuilt",
}


class RunbookError(Exception):
    """A runbook that cannot be used as written: the message names the file, line and what is wrong."""


@dataclass
class Param:
    name: str
    type: str = "string"
    default: Any = None
    help: str = ""
    choices: list[str] | None = None
    required: bool = False
    line: int = 0


@dataclass
class Expectation:
    """One condition of an evidence gate: `expect json_valid_rate >= 95%`."""

    metric: str
    op: str
    value: float
    text: str
    line: int
    relative: str | None = None  # "original" | "baseline": value is a fraction of that column
    within_s: float | None = None  # a verify block's deadline: live evidence must meet it within this

    def threshold(self, reference: float | None) -> float | None:
        if self.relative is None:
            return self.value
        return None if reference is None else self.value * reference

    def holds(self, actual: float | None, reference: float | None = None) -> bool:
        limit = self.threshold(reference)
        if actual is None or limit is None:
            return False  # no number, no evidence: a gate fails closed
        return {">=": actual >= limit, "<=": actual <= limit, ">": actual > limit,
                "<": actual < limit, "==": actual == limit, "!=": actual != limit}[self.op]


@dataclass
class Step:
    """A block of a runbook: a query whose result is shown, an evidence gate, or an action."""

    kind: str  # query | gate | verify | action
    heading: str
    line: int
    # query: oncall reading commands (one per line); gate: the replay command line; verify: the cohort filter.
    commands: list[str] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)
    # action: the target (oncall.toml) and the adapter's arguments, still with {param} placeholders.
    target: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    why: str | None = None
    name: str = ""  # the heading's own number ("2" for "## 2. Flip"), else the block's place

    @property
    def title(self) -> str:
        """How the step is named everywhere, its number once: `2. Flip to the fallback`."""
        heading = self.heading.strip()
        if not heading:
            return f"step {self.name}"
        return heading if heading_number(heading) == self.name else f"{self.name}. {heading}"


@dataclass
class Runbook:
    name: str
    path: Path
    title: str
    when: str
    params: dict[str, Param]
    targets: list[str]
    steps: list[Step]
    body: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "title": self.title, "when": self.when,
            "targets": self.targets,
            "params": [{"name": p.name, "type": p.type, "default": p.default, "help": p.help,
                        "choices": p.choices, "required": p.required} for p in self.params.values()],
            "steps": [{"name": s.name, "kind": s.kind, "heading": s.heading, "line": s.line,
                       "commands": s.commands, "expect": [e.text for e in s.expectations],
                       "target": s.target, "args": s.args, "why": s.why} for s in self.steps],
        }
