"""Running a runbook: queries shown inline, evidence gates, then actions planned, confirmed, verified.

The runner is a generator of events (what the CLI prints and the console shows live), so both
drive the same code. Reading commands and the gates' replays run as `oncall` subprocesses against
the same incident — the CLI contract is what a runbook is written in, and many processes can work
on one incident at once. Actions go through oncall.actions (plan → confirm → write → verify →
record), with the runbook, the step and the gates' results in the audit.

Evidence before action: an action runs only if every gate before it ran and passed; a failed gate
stops the runbook before any later write. `--dry-run` runs the reading steps, shows each gate's
replay without running it (replays spend money) and plans each action without writing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oncall.live.evidence import wait_for_evidence
from oncall.runbook.model import Runbook, RunbookError, Step
from oncall.runbook.params import command_argv, substitute_args

if TYPE_CHECKING:
    from oncall.store.contracts import Store

# Exit codes of the oncall CLI (README "Exit codes"): 1 is a finding and the runbook goes on.
EXIT_PROBLEM = 1
CANCEL_POLL_S = 0.2  # how often a running command checks for a cancel
CANCEL_GRACE_S = 30.0  # how long an interrupted command may take to keep what it finished


@dataclass
class Event:
    kind: str  # start | step | query | gate | plan | action | stop | done
    step: Step | None = None
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "step": self.step.name if self.step else None,
                "heading": self.step.heading if self.step else None, "text": self.text, "data": self.data}


ConfirmFn = Callable[[Any], "bool | str"]


class RunbookRun:
    """One run of a runbook on an incident. Iterate events(); `outcome` says how it ended."""

    def __init__(self, rb: Runbook, db: Store, values: dict[str, Any], *, dry_run: bool = False, yes: bool = False,
                 confirm: ConfirmFn | None = None, confirm_gate: Callable[[str], bool] | None = None,
                 who: str | None = None, why: str | None = None, as_json: bool = False,
                 env: dict[str, str] | None = None, cancelled: Callable[[], bool] | None = None) -> None:
        self.rb, self.db, self.values = rb, db, values
        self.dry_run, self.yes = dry_run, yes
        self.confirm = confirm
        self.confirm_gate = confirm_gate
        self.who, self.why = who, why
        self.as_json = as_json
        self.env = env
        self.cancelled = cancelled or (lambda: False)
        self.gates: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.outcome = "not run"

    # -- the run -----------------------------------------------------------------------------------
    def events(self) -> Iterator[Event]:
        if self.db.read_only and not self.dry_run and any(s.kind == "action" for s in self.rb.steps):
            raise RunbookError(f"{self.db.path} is open read-only (--read-only): runbook actions are disabled; "
                               "use --dry-run to see the plan")
        yield Event("start", text=f"runbook {self.rb.name}: {self.rb.title}",
                    data={"params": self.values, "dry_run": self.dry_run})
        if not self.dry_run:
            self.db.record_event("runbook", f"started runbook {self.rb.name}" + (f": {self.why}" if self.why else ""),
                                 {"runbook": self.rb.name, "params": self.values}, actor=self.who)
        self.outcome = "completed"
        for step in self.rb.steps:
            if self.cancelled():
                self.outcome = "cancelled"
                yield Event("stop", step, "cancelled; nothing after this step ran")
                break
            yield Event("step", step, step.title)
            if step.kind == "query":
                yield from self._query(step)
            elif step.kind == "verify":
                ok = yield from self._verify(step)
                if not ok and not self.dry_run:
                    self.outcome = "cancelled" if self.cancelled() else "stopped at a verify"
                    yield Event("stop", step, "the live evidence did not meet the conditions in time: no later "
                                "action runs (the actions before it stay as they are; undo them if needed)")
                    break
            elif step.kind == "gate":
                ok = yield from self._gate(step)
                if not ok and not self.dry_run:
                    if self.cancelled():
                        self.outcome = "cancelled"
                        yield Event("stop", step, "cancelled during the evidence replay; no later action runs")
                    else:
                        self.outcome = "stopped at a gate"
                        yield Event("stop", step, "the evidence gate did not pass: no later action runs")
                    break
            else:
                ok = yield from self._action(step)
                if not ok:
                    if self.outcome == "completed":
                        self.outcome = "stopped at an action"
                    break
        if self.outcome == "completed" and self.cancelled():  # cancelled during the last step
            self.outcome = "cancelled"
        if not self.dry_run:
            self.db.record_event("runbook", f"runbook {self.rb.name} {self.outcome}",
                                 {"runbook": self.rb.name, "outcome": self.outcome, "gates": self.gates,
                                  "actions": [a.get("action_id") for a in self.actions]}, actor=self.who)
        yield Event("done", text=self.outcome, data={"outcome": self.outcome, "gates": self.gates,
                                                       "actions": self.actions})

    # -- steps -------------------------------------------------------------------------------------
    def _oncall(self, argv: list[str], as_json: bool) -> subprocess.CompletedProcess[str]:
        """Run one `oncall` command on the incident. A cancel (the console's `x`) interrupts it as
        Ctrl-C would — a gate's replay keeps what finished — instead of waiting for it to end."""
        import signal

        cmd = [sys.executable, "-m", "oncall", "--db", str(self.db.path), *argv]
        if as_json and "--json" not in argv:
            cmd.append("--json")
        env = {**os.environ, **(self.env or {}), "COLUMNS": os.environ.get("COLUMNS", "120")}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        interrupted = False
        while True:
            try:
                out, err = proc.communicate(timeout=CANCEL_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if not interrupted and self.cancelled():
                    interrupted = True
                    proc.send_signal(signal.SIGINT)
                    try:
                        out, err = proc.communicate(timeout=CANCEL_GRACE_S)
                        break
                    except subprocess.TimeoutExpired:
                        proc.kill()
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def _query(self, step: Step) -> Iterator[Event]:
        for template in step.commands:
            argv = command_argv(template, self.values)
            proc = self._oncall(argv, self.as_json)
            data: dict[str, Any] = {"command": "oncall " + _shell_join(argv), "exit": proc.returncode}
            if self.as_json and proc.stdout.strip():
                try:
                    data["result"] = json.loads(proc.stdout)
                except json.JSONDecodeError:
                    data["output"] = proc.stdout
            else:
                data["output"] = proc.stdout
            if proc.stderr.strip():
                data["stderr"] = proc.stderr.strip()
            yield Event("query", step, data["command"], data)
            if self.cancelled():
                return  # the run loop stops before the next step and says so
            if proc.returncode not in (0, EXIT_PROBLEM):
                raise RunbookError(f"{self.rb.path}:{step.line}: `{data['command']}` failed (exit {proc.returncode}): "
                                   f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no message'}")

    def _gate(self, step: Step) -> Iterator[Event]:
        argv = command_argv(step.commands[0], self.values)
        command = "oncall " + _shell_join(argv)
        if self.dry_run:
            yield Event("gate", step, command, {"command": command, "ran": False, "passed": None,
                                                "expect": [e.text for e in step.expectations],
                                                "note": "not run in --dry-run (a replay spends money)"})
            return True
        if not self.yes and (self.confirm_gate is None or not self.confirm_gate(command)):
            result = {"command": command, "ran": False, "passed": False, "note": "not confirmed"}
            self.gates.append(result)
            yield Event("gate", step, command, result)
            return False
        proc = self._oncall([*argv, "--yes"], True)
        result: dict[str, Any] = {"command": command, "ran": True, "exit": proc.returncode, "checks": []}
        try:
            summary = json.loads(proc.stdout)
        except json.JSONDecodeError:
            summary = None
        if self.cancelled():  # evidence cut short is no evidence: the gate fails closed
            run_id = (summary or {}).get("run_id") if isinstance(summary, dict) else None
            result.update(passed=False, run_id=run_id, note="cancelled while the replay ran; what finished is kept"
                          + (f" (replay run {run_id})" if run_id else ""))
            self.gates.append(result)
            yield Event("gate", step, command, result)
            return False
        if not isinstance(summary, dict):
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
            result.update(passed=False, note=f"the replay did not produce a summary: {last}")
            self.gates.append(result)
            yield Event("gate", step, command, result)
            return False
        metrics = gate_metrics(summary)
        columns = {col: {str(r["metric"]): r.get(col) for r in summary.get("metrics") or [] if isinstance(r, dict)}
                   for col in ("original", "baseline")}
        result["run_id"] = summary.get("run_id") or (summary.get("run") or {}).get("run_id")
        result["headline"] = summary.get("headline")
        passed = True
        for e in step.expectations:
            actual = metrics.get(e.metric)
            reference = columns[e.relative].get(e.metric) if e.relative else None
            ok = e.holds(actual, reference)
            passed &= ok
            result["checks"].append({"expect": e.text, "metric": e.metric, "actual": actual, "passed": ok,
                                     **({"reference": reference, "threshold": e.threshold(reference)}
                                        if e.relative else {})})
        result["passed"] = passed
        self.gates.append(result)
        yield Event("gate", step, command, result)
        return passed

    def _verify(self, step: Step) -> Iterator[Event]:
        """Wait for live traffic to meet the conditions (oncall/live/evidence.py); fail closed at the deadline."""
        cohort = str(substitute_args(step.commands[0], self.values)) if step.commands else ""
        words = shlex.split(cohort) if cohort else []
        within = max(e.within_s or 0 for e in step.expectations)
        if self.dry_run:
            yield Event("verify", step, f"verify (not run in --dry-run: it waits up to {within:g} s for live traffic): "
                        + "; ".join(e.text for e in step.expectations),
                        {"ran": False, "cohort": cohort, "expect": [e.text for e in step.expectations]})
            return True
        since = dt.datetime.now(dt.UTC)
        deadline = since + dt.timedelta(seconds=within)
        last = None
        for last in wait_for_evidence(self.db, words, since, step.expectations, deadline, cancelled=self.cancelled):
            state = "; ".join(f"{c['expect']}: {'no value' if c['actual'] is None else format(c['actual'], '.4g')}"
                              for c in last.checks)
            yield Event("verify", step, f"verify {cohort or '(all calls)'}: {last.requests} calls since "
                        f"{since:%H:%M:%S}Z; {state}" + ("" if last.passed else "; waiting"),
                        {"ran": True, "cohort": cohort, "requests": last.requests, "checks": last.checks,
                         "passed": last.passed})
        passed = bool(last is not None and last.passed and not self.cancelled())
        self.gates.append({"command": f"verify {cohort}".strip(), "ran": True, "passed": passed, "live": True,
                           "checks": last.checks if last else [], "requests": last.requests if last else 0,
                           "note": None if passed else "not met by the deadline (or too few calls): failed closed"})
        return passed

    def _action(self, step: Step) -> Iterator[Event]:
        from oncall.actions.engine import execute, get_adapter, plan
        from oncall.actions.errors import ActionError
        from oncall.actions.model import OK_STATUSES, VERIFIED

        args = substitute_args(step.args, self.values)
        target = substitute_args(step.target, self.values)
        try:
            adapter = get_adapter(str(target), incident=self.db.path)
            p = plan(adapter, args)
        except ActionError as exc:
            self.outcome = "stopped at an action"
            yield Event("stop", step, f"cannot plan the action on {target}: {exc}")
            return False
        yield Event("plan", step, p.summary, {"plan": p.to_dict()})
        if self.dry_run:
            return True
        missing = [g for g in self.gates if not g.get("passed")]
        if missing:
            self.outcome = "stopped at a gate"
            yield Event("stop", step, "an evidence gate before this action did not pass; nothing was written")
            return False
        if self.yes:
            answer: bool | str = True
        else:
            answer = self.confirm(p) if self.confirm else False
        try:
            rec = execute(p, db=self.db, confirm=answer, who=self.who, why=self._why(step),
                          runbook=self.rb.name, step=step.title,
                          gate={"gates": self.gates} if self.gates else None, adapter=adapter)
        except ActionError as exc:
            self.outcome = "stopped at an action"
            yield Event("stop", step, str(exc))
            return False
        data = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec.__dict__)
        self.actions.append({"action_id": rec.action_id, "status": rec.status, "result": rec.result})
        yield Event("action", step, f"action {rec.action_id} {rec.status}: {rec.result}", {"action": data})
        if rec.status not in OK_STATUSES and rec.status != VERIFIED:
            self.outcome = f"stopped: action {rec.action_id} {rec.status}"
            yield Event("stop", step, f"action {rec.action_id} ended {rec.status}; the runbook stops here")
            return False
        return True

    def _why(self, step: Any) -> str:
        """What an action's audit says it was for: the responder's own words (`--why`, the console's
        field) first, then the reason the runbook gives for the step."""
        written = substitute_args(step.why, self.values) if step.why else None
        parts = [w for w in (self.why, written) if w]
        return " — ".join(parts) if parts else f"runbook {self.rb.name}"


def gate_metrics(summary: dict[str, Any]) -> dict[str, float | None]:
    """The numbers a gate can test, from `oncall replay --json`: each metric's replay value, plus counts."""
    out: dict[str, float | None] = {}
    for row in summary.get("metrics") or []:
        if isinstance(row, dict) and "metric" in row:
            out[str(row["metric"])] = row.get("replay")
    counts = summary.get("counts") or {}
    replayed = (counts.get("ok") or 0) + (counts.get("diverged") or 0)
    out["replayed"] = replayed
    for k in ("errors", "diverged", "unreplayable"):
        if k in counts:
            out[k] = counts[k]
    if counts.get("pairs"):
        out["changed_rate"] = counts.get("changed_pairs", 0) / counts["pairs"]
    noise = summary.get("noise") or {}
    judged = (noise.get("changed_beyond_noise") or 0) + (noise.get("within_noise") or 0)
    if "changed_beyond_noise" in noise and judged:
        out["changed_beyond_noise_rate"] = noise["changed_beyond_noise"] / judged
    if out.get("finish_length_rate") is not None:
        out["truncation_rate"] = out["finish_length_rate"]  # the gate's name for the registry's metric
    else:
        finishes = (summary.get("finish_reasons") or {}).get("replay") or {}
        if isinstance(finishes, dict) and sum(finishes.values()):
            out["truncation_rate"] = finishes.get("length", 0) / sum(finishes.values())
    return out


def _shell_join(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)
