"""Terminal output for the CLI: tables, summaries, progress. Untrusted text goes through safe_text."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from oncall.display import metric_value  # the CLI's tables print metric values through display.py
from oncall.safe_text import safe_rich, safe_text


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`oncall search | head`: rich would exit 1 ("found a problem"); the CLI exits 141 like
        any Unix tool whose reader left (cli.OncallGroup.invoke)."""
        self.quiet = True
        raise BrokenPipeError


stdout = _Console(highlight=False, soft_wrap=False)
stderr = _Console(stderr=True, highlight=False)


class ProgressBar:
    """A progress bar on stderr for big inputs (only created when stderr is a TTY)."""

    MIN_BYTES = 8 * 1024 * 1024

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TimeRemainingColumn(), console=stderr, transient=True)
        self._tasks: dict[str, Any] = {}
        self._started = False

    def update(self, path: str, done: int, total: int) -> None:
        if total < self.MIN_BYTES and path not in self._tasks:
            return
        if not self._started:
            self._progress.start()
            self._started = True
        if path not in self._tasks:
            self._tasks[path] = self._progress.add_task(safe_text(path, multiline=False, max_len=40), total=total)
        self._progress.update(self._tasks[path], completed=min(done, total))

    def close(self) -> None:
        if self._started:
            self._progress.stop()


def print_load_report(report: Any, summ: dict[str, Any]) -> None:
    for f in report.files:
        name = safe_text(f.path, multiline=False)
        if f.status == "loaded":
            extra = f", {f.duplicates} duplicates dropped" if f.duplicates else ""
            # Nothing dropped without a word: how many records were read and how many were skipped.
            probs = f", {f.records:,} records read, {f.skipped:,} skipped" if f.skipped else ""
            # soft_wrap: one line per file however long the path, also when piped (rich wraps at 80).
            stdout.print(safe_rich(f"loaded   {name} ({f.format}): {f.spans} spans{extra}{probs}", multiline=False),
                         soft_wrap=True)
            if f.note:
                stdout.print(safe_rich(f"  note: {f.note}", multiline=False), style="yellow", soft_wrap=True)
        elif f.status == "already-loaded" or f.status == "skipped":
            stdout.print(safe_rich(f"skipped  {name}: {f.note}", multiline=False), style="dim", soft_wrap=True)
        else:
            stdout.print(safe_rich(f"FAILED   {name}", multiline=False), style="bold red", soft_wrap=True)
    for w in getattr(report, "warnings", []):
        stderr.print(safe_rich(f"warning: {w}", multiline=False, max_len=300), style="yellow", soft_wrap=True)
    problems = report.problems
    if problems:
        by_kind: dict[str, int] = {}
        for p in problems:
            by_kind[p.kind] = by_kind.get(p.kind, 0) + 1
        stderr.print(safe_rich(f"{len(problems)} problems: " +
                               ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())), multiline=False),
                     style="yellow")
        for p in problems[:20]:
            stderr.print(safe_rich(str(p), multiline=False, max_len=300), soft_wrap=True)
        if len(problems) > 20:
            stderr.print(f"… and {len(problems) - 20} more (oncall load --json lists them all)")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    # Errors beside "LLM calls" are failed LLM calls: a 429 also fails the agent and root spans above it.
    t.add_row("spans", f"{summ['spans']:,} ({summ['llm_spans']:,} LLM calls, {summ['llm_errors']:,} failed)")
    t.add_row("traces", f"{summ['traces']:,}")
    t.add_row("time range", f"{summ['start'] or '-'} → {summ['end'] or '-'}")
    # Counts are LLM calls (what a responder calls requests); tenants are on every span of a trace.
    for key, label in (("models_requested", "models requested"), ("models_served", "models served"),
                       ("tenants", "tenants (LLM calls)")):
        vals = [v for v in summ[key] if v.get("llm_calls", v["spans"])]
        if vals:
            t.add_row(label, safe_rich(", ".join(f"{v['value']} ({v.get('llm_calls', v['spans']):,})"
                                                 for v in vals[:8]), multiline=False))
    cost = summ.get("cost")
    if cost and (cost["exported"] or cost["estimated"] or cost["unknown"]):
        # "~" marks estimated costs everywhere they are shown (README "Cost").
        t.add_row("cost", f"{cost['exported']:,} exported, ~{cost['estimated']:,} estimated, "
                          f"{cost['unknown']:,} unknown (LLM calls)"
                          + (f"; {cost['other_spans_with_cost']:,} other span(s) carry a cost"
                             if cost.get("other_spans_with_cost") else ""))
    stdout.print(t)
    for m in (cost or {}).get("unpriced_models", []):
        stderr.print(safe_rich(f"note: {m['note']}", multiline=False, max_len=300), style="yellow", soft_wrap=True)


# -- metric tables (compare, replay show): one way to print a metric and its change -----------------


def metric_change(m: dict[str, Any]) -> tuple[str, str]:
    """A metric row's change (pp for ratios, % or the unit's delta otherwise) and the style its
    significance earns: bold red when significant, dim when noise or too few."""
    change = "—"
    if m["delta"] is not None:
        change = (f"{100 * m['delta']:+.1f} pp" if m["unit"] == "ratio"
                  else (f"{m['delta_pct']:+.0f} %" if m["delta_pct"] is not None
                        else metric_value(m["delta"], m["unit"])))
    sig = m["significance"]
    return change, "bold red" if sig == "significant" else ("dim" if sig in ("noise", "too few") else "")


def replay_summary_table(s: dict[str, Any]) -> Table:
    """A replay run's summary table (runner.summarize's metrics): baseline when the run has one, the
    originals, the replays, the change and what it means; `oncall replay show` and the console's
    compare screen print this one table."""
    from rich.text import Text

    has_base = any(m["baseline"] is not None for m in s["metrics"])
    table = Table(box=None, header_style="bold", pad_edge=False)
    cols = [("metric", "left")] + ([("baseline", "right")] if has_base else []) + [
        ("original", "right"), ("replay", "right"), ("change", "right"), ("", "left")]
    for col, just in cols:
        table.add_column(col, justify=just, no_wrap=True)
    for m in s["metrics"]:
        sig = m["significance"]
        change, style = metric_change(m)
        cells = [m["metric"]] + ([metric_value(m["baseline"], m["unit"])] if has_base else []) + [
            metric_value(m["original"], m["unit"]), metric_value(m["replay"], m["unit"]), Text(change, style=style),
            Text(sig if sig != "n/a" else "", style=style)]
        table.add_row(*cells)
    return table
