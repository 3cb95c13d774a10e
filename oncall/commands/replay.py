"""`oncall replay`: rerun the cohort's recorded conversations against a target; `replay show`, `replay list`.

Thin over oncall/replay (the core): this module parses flags, asks for confirmation, draws the
progress line on stderr and prints the summary. Exit codes: 0 finished, 1 the run stopped early
(a spend cap, a fatal target error, failed requests) or found nothing to replay, 2 bad input,
130 interrupted (what finished is kept; `--resume RUN_ID` continues).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from oncall.cliutil import EXIT_OK, EXIT_PROBLEM, db_option, emit_json, fail, json_option, open_store
from oncall.display import format_cost, iso_utc, time_text
from oncall.output import replay_summary_table, stderr, stdout
from oncall.safe_text import safe_rich, safe_text

SUBCOMMANDS = ("run", "show", "list")


class _ReplayGroup(click.Group):
    """`oncall replay FILTER...` runs a replay; `oncall replay show|list` read runs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in ("-h", "--help"):
            return super().parse_args(ctx, args)
        if not args or args[0] not in SUBCOMMANDS:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ReplayGroup, name="replay")
def replay() -> None:
    """Replay recorded requests against another model or prompt and compare (see `oncall replay run --help`)."""


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return iso_utc(v)  # UTC whatever zone the cursor returned it in
    return v


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        fail(f"--param {text!r}: expected KEY=VALUE, e.g. --param temperature=0")
    k, v = text.split("=", 1)
    try:
        value: Any = json.loads(v)
    except ValueError:
        value = v
    return k.strip(), value


class _Progress:
    """done/failed/retried, spend and ETA on stderr: one redrawn line on a terminal, a line every 5 s when piped."""

    def __init__(self, run_id: int, enabled: bool) -> None:
        self.run_id = run_id
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.t0 = time.monotonic()
        self.start_done: int | None = None

    def __call__(self, c: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.start_done is None:
            self.start_done = c.done + c.failed
        finished = c.done + c.failed + c.unreplayable * c.repeat
        if now - self.last < (0.2 if self.tty else 5.0) and finished < c.planned:
            return
        self.last = now
        key = (finished, c.retried, round(c.spent, 6))
        if key == getattr(self, "_shown", None):
            return
        self._shown = key
        rate = (c.done + c.failed - self.start_done) / max(now - self.t0, 1e-6)
        left = max(0, c.planned - finished)
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 and left else "—"
        width = 24
        filled = int(width * finished / c.planned) if c.planned else width
        line = (f"replay {self.run_id} [{'#' * filled}{'.' * (width - filled)}] {finished}/{c.planned} "
                f"done {c.done} failed {c.failed} retried {c.retried} spent {format_cost(c.spent)} ETA {eta}")
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _say(text: str, style: str = "") -> None:
    stderr.print(safe_rich(text, multiline=False, style=style), soft_wrap=True)


# -- run ------------------------------------------------------------------------------------------------
@replay.command(name="run")
@click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
@click.option("--request", "request_id", default=None, help="replay one request (any id or unique prefix)")
@click.option("--target", "target_name", default=None, help="target name in the suite's targets.toml")
@click.option("--suite", "suite_dir", default=None, envvar="ONCALL_REPLAY_SUITE",
              help="suite directory (default ./replay, or $ONCALL_REPLAY_SUITE)")
@click.option("--prompt", "prompt_file", default=None, help="prompt variant (file, or name in SUITE/prompts)")
@click.option("--model", default=None, help="override the target's model")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="override a parameter (JSON value)")
@click.option("-n", "n", type=click.IntRange(min=1), default=None, help="replay a uniform sample of N requests of the cohort")
@click.option("--seed", type=int, default=None, help="sampling seed for -n (repeatable sample)")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="replay each request K times (noise)")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="requests in flight (default: the target's)")
@click.option("--max-requests", type=click.IntRange(min=1), default=None, help="stop after this many API requests (retries count)")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, help="stop before spending more than this many USD")
@click.option("--judge", "judge_name", default=None, help="grade each pair with this judge target and the rubric")
@click.option("--baseline", default=None, help='baseline cohort for the summary, e.g. "served_model=gpt-4o-2024-08-06"')
@click.option("--resume", "resume_id", type=int, default=None, help="continue an interrupted run")
@click.option("--yes", is_flag=True, help="do not ask for confirmation above the suite's confirm_above")
@click.option("--no-progress", is_flag=True, help="no progress line on stderr")
@db_option
@json_option
@click.pass_context
def run(ctx: click.Context, filter_words: tuple[str, ...], request_id: str | None, target_name: str | None,
        suite_dir: str | None, prompt_file: str | None, model: str | None, params: tuple[str, ...], n: int | None,
        seed: int | None, repeat: int, concurrency: int | None, max_requests: int | None, max_cost: float | None,
        judge_name: str | None, baseline: str | None, resume_id: int | None, yes: bool, no_progress: bool,
        db: str | None, as_json: bool) -> None:
    """Replay FILTER's requests (or --request ID) against --target and compare each with its original."""
    import asyncio

    from oncall.replay import runner
    from oncall.replay.suite import SuiteError, check_params, load_suite_for

    store = open_store(ctx, db)
    con = store.cursor()
    if resume_id is not None:
        from oncall.replay.store import get_run

        existing = get_run(con, resume_id)
        if existing is None:
            fail(f"no replay run {resume_id} (see `oncall replay list`)")
        status = (existing.get("state") or {}).get("status")
        if status == "finished" and not (existing.get("state") or {}).get("reason"):
            fail(f"replay run {resume_id} already finished; `oncall replay show {resume_id}`", EXIT_PROBLEM)
        run_id = resume_id
        _say(f"resuming replay {run_id} against {existing['target']} ({existing['model']})")
    else:
        if target_name is None:
            fail("--target NAME is required (a target in targets.toml), or --resume RUN_ID")
        try:
            suite = load_suite_for(suite_dir, store.path)
            target = suite.target(target_name)
            variant = suite.prompt(prompt_file) if prompt_file else None
            judge = suite.target(judge_name) if judge_name else None
            overrides = check_params(dict(_param(p) for p in params), "--param")
        except SuiteError as exc:
            fail(str(exc))
        if model:
            target = type(target).from_public({**target.public(), "model": model})
        words = list(filter_words)
        if words or not request_id:
            from oncall.query.filters import FilterError, compile_filter

            try:
                compile_filter(con, words)
                if baseline:
                    compile_filter(con, [baseline])
            except FilterError as exc:
                fail(f"bad filter: {exc}")
        spec = runner.ReplaySpec(
            target=target, filter_words=words, request=request_id, prompt=variant, model=None, params=overrides,
            n=n, seed=seed, repeat=repeat, concurrency=concurrency or target.max_concurrency or suite.concurrency,
            max_requests=max_requests, max_cost=max_cost, judge=judge, rubric=suite.rubric,
            baseline=[baseline] if baseline else None, retry=suite.retry)
        try:
            runner.check_spec(spec)
            runner.api_key(target)
            if judge is not None:
                runner.api_key(judge)
            p = runner.plan(con, spec)
        except (SuiteError, runner.ReplayError) as exc:
            fail(str(exc))
        except LookupError as exc:  # unknown or ambiguous --request
            fail(str(exc), EXIT_PROBLEM)
        if not p.span_pks:
            fail("no requests match" + (f" {' '.join(words)}" if words else ""), EXIT_PROBLEM)
        _print_plan(spec, p)
        if p.replayable == 0:
            _say("nothing can be replayed faithfully (reasons above)", "bold red")
        est = p.estimate["cost"]
        if not yes and p.replayable and (est is None or est > suite.confirm_above):
            why = (f"estimated {format_cost(est)} is above confirm_above ${suite.confirm_above:g}" if est is not None
                   else "the cost cannot be estimated (no price for the model)")
            if not sys.stdin.isatty():
                fail(f"{why}; pass --yes to replay without asking")
            if not click.confirm(f"{why}. Replay {p.estimate['requests']} requests?", default=False, err=True):
                fail("not confirmed; nothing was sent", EXIT_PROBLEM)
        run_id = runner.create_run(store, spec, p)
        _say(f"replay {run_id} started (resume with `oncall replay --resume {run_id}`)")
    prog = _Progress(run_id, not no_progress and not as_json)
    # SIGINT is how a run is stopped (Ctrl-C, the console's `x`, a runbook's cancel). A process started
    # with SIGINT ignored (a background job of a script inherits that) would never stop: take it back.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        res = asyncio.run(runner.execute(store, run_id, progress=prog,
                                         max_requests=max_requests if resume_id is not None else None,
                                         max_cost=max_cost if resume_id is not None else None))
    except KeyboardInterrupt:
        prog.close()
        _say(f"interrupted: finished requests are kept; `oncall replay --resume {run_id}` continues", "yellow")
        sys.exit(130)
    except runner.ReplayError as exc:
        prog.close()
        fail(str(exc))
    prog.close()
    summ = runner.summarize(con, run_id, per_request=False)
    if as_json:
        emit_json(_jsonable({"run_id": run_id, "status": res.status, "reason": res.reason, **summ}))
    else:
        _print_summary(summ)
    if res.status == "failed":
        _say(f"replay {run_id} stopped: {res.reason}", "bold red")
    elif res.status == "stopped":
        _say(f"replay {run_id} stopped at a spend cap: {res.reason}; `oncall replay --resume {run_id}` continues "
             "(with the same caps)", "yellow")
    elif res.reason:
        _say(f"replay {run_id}: {res.reason}", "yellow")
    sys.exit(EXIT_OK if res.status == "finished" and not res.counts.get("failed") else EXIT_PROBLEM)


def _print_plan(spec: Any, p: Any) -> None:
    e = p.estimate
    t = spec.target
    cost = format_cost(e["cost"]) if e["cost"] is not None else "unknown (no price for the model)"
    _say(f"replay {p.replayable} of {len(p.span_pks)} requests x{spec.repeat} against {t.name} ({t.model} at "
         f"{t.base_url}); estimated {e['input_tokens']:,} input + {e['output_tokens']:,} output tokens, {cost}"
         + (f" (prices: {t.price_source})" if e["cost"] is not None else ""))
    if spec.max_cost is not None and e["cost"] is not None and e["cost"] > spec.max_cost:
        _say(f"the estimate is above --max-cost ${spec.max_cost:g}: the run will stop at the cap", "yellow")
    if e.get("context"):  # documents a retrieval gave the calls: sent again from the recorded messages
        _say(e["context"]["note"], "" if e["context"]["complete"] else "yellow")
    if p.unreplayable:
        _say(f"{len(p.unreplayable)} request(s) cannot be replayed faithfully and will be listed, not sent:", "yellow")
        for _, key, reason in p.unreplayable[:10]:
            _say(f"  {key}: {reason}")
        if len(p.unreplayable) > 10:
            _say(f"  … and {len(p.unreplayable) - 10} more (`oncall replay show RUN_ID --json`)")


def _print_summary(s: dict[str, Any]) -> None:
    r = s["run"]
    stdout.print(Text(f"replay {r['run_id']}  ", style="bold") + safe_rich(
        f"{r['target']} ({r['model']})  filter: {r['filter'] or '(all)'}  repeat {r['repeat']}", multiline=False))
    state = s.get("state") or {}
    stdout.print(safe_rich(f"status: {state.get('status')}" + (f" — {state['reason']}" if state.get("reason") else ""),
                           multiline=False), soft_wrap=True)
    table = replay_summary_table(s)
    stdout.print(table)
    c = s["counts"]
    stdout.print(safe_rich(f"pairs: {c['changed_pairs']} of {c['pairs']} differ from the original (exact match); "
                           f"{c['diverged']} diverged, {c['errors']} failed, {c['unreplayable']} not replayable",
                           multiline=False), soft_wrap=True)
    n = s["noise"]
    if "changed_beyond_noise" in n:
        checks = ", ".join(f"{k} {v}" for k, v in sorted(n["checks_changed"].items())) or "none"
        stdout.print(safe_rich(f"noise (repeat {n['repeat']}): {n['changed_beyond_noise']} request(s) changed beyond "
                               f"the model's own variation, {n['within_noise']} within noise; checks changed: {checks}",
                               multiline=False), soft_wrap=True)
    else:
        stdout.print(safe_rich(f"noise: {n['note']}", multiline=False), style="dim", soft_wrap=True)
    if s.get("context"):
        stdout.print(safe_rich(s["context"]["note"], multiline=False), style="" if s["context"]["complete"]
                     else "yellow", soft_wrap=True)
    for what in ("original", "replay"):
        fr = s["finish_reasons"][what]
        if fr:
            stdout.print(safe_rich(f"finish reasons ({what}): " + ", ".join(f"{k} {v}" for k, v in fr.items()),
                                   multiline=False), soft_wrap=True)
    if s.get("judge"):
        j = s["judge"]
        stdout.print(safe_rich("judge: " + ", ".join(f"{k} {v}" for k, v in j["verdicts"].items())
                               + f" (cost {format_cost(j['cost'])})", multiline=False), soft_wrap=True)
    for d in s["diverged"][:10]:
        stdout.print(safe_rich(f"{d['request']}: {d['diverged']}", multiline=False, max_len=300), soft_wrap=True)
    for u in s["unreplayable"][:10]:
        stdout.print(safe_rich(f"not replayable {u['span_pk']}: {u['reason']}", multiline=False, max_len=300),
                     style="yellow", soft_wrap=True)
    if s["errors"]:
        stdout.print(safe_rich("failed: " + ", ".join(f"{k} {v}" for k, v in s["errors"].items()), multiline=False),
                     style="red")
    cost = s["cost"]
    stdout.print(safe_rich(f"cost: replay {format_cost(cost['replay'])}"
                           + (f" + judge {format_cost(cost['judge'])}" if cost.get("judge") else ""), multiline=False))


def _print_pairs(s: dict[str, Any], limit: int) -> None:
    shown = 0
    for req in s.get("requests") or []:
        for pair in req.get("pairs") or []:
            if pair.get("checks") and pair["checks"]["exact_match"]:
                continue
            if shown >= limit:
                stdout.print(Text("… more differing pairs in `--json`", style="dim"))
                return
            shown += 1
            stdout.print(Text(f"\n{req['request']} #{pair['repeat_index']}", style="bold")
                         + Text(f"  {pair['status']}", style="dim"))
            line = Text()
            for op, text in pair.get("diff") or []:  # git's word-diff markers, so a pipe keeps the meaning
                t = safe_text(text)
                if op == "-":
                    line.append(f"[-{t}-]", style="red")
                elif op == "+":
                    line.append(f"{{+{t}+}}", style="green")
                else:
                    line.append(t, style="" if op == "=" else "dim")
            stdout.print(line)
            if pair.get("judge"):
                stdout.print(safe_rich(f"judge: {pair['judge'].get('verdict')} — {pair['judge'].get('reason')}",
                                       multiline=False, max_len=300), style="dim")


# -- show / list ------------------------------------------------------------------------------------------------
@replay.command(name="show")
@click.argument("run_id", type=int)
@click.option("--pairs", "n_pairs", type=click.IntRange(min=0), default=5, show_default=True, help="differing pairs to print with diffs")
@db_option
@json_option
@click.pass_context
def show(ctx: click.Context, run_id: int, n_pairs: int, db: str | None, as_json: bool) -> None:
    """A replay run: the summary table (baseline, original, replay), noise, and the differing pairs."""
    from oncall.replay import runner

    store = open_store(ctx, db, read_only=True, create=False)
    try:
        summ = runner.summarize(store.cursor(), run_id)
    except runner.ReplayError as exc:
        fail(str(exc), EXIT_PROBLEM)
    if as_json:
        emit_json(_jsonable(summ))
        return
    _print_summary(summ)
    _print_pairs(summ, n_pairs)


@replay.command(name="list")
@db_option
@json_option
@click.pass_context
def list_runs(ctx: click.Context, db: str | None, as_json: bool) -> None:
    """Replay runs in this incident, newest first."""
    from oncall.replay.store import list_runs as runs

    store = open_store(ctx, db, read_only=True, create=False)
    items = runs(store.cursor())
    if as_json:
        emit_json(_jsonable(items))
        return
    if not items:
        stdout.print("no replay runs yet (`oncall replay FILTER --target NAME`)")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("run", "created (UTC)", "target", "model", "filter", "repeat", "status", "results", "spent"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    for r in items:
        spent = (r.get("counts") or {}).get("spent")
        created = time_text(r.get("created_at"), date="short", seconds=False)
        table.add_row(str(r["run_id"]), created, safe_text(r["target"], multiline=False),
                      safe_text(r["model"], multiline=False), safe_text(r["filter"] or "", multiline=False, max_len=40),
                      str(r["repeat"]), safe_text(r["status"] or "", multiline=False),
                      f"{r['results']}/{(r['planned'] or 0) * (r['repeat'] or 1)}",
                      format_cost(spent) if spent is not None else "—")
    stdout.print(table)

