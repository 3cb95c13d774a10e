"""Overview: the incident at a glance — header numbers, time series per cohort, and what changed.

What changed is one line per cause (or unexplained shift) with its effects beneath it. Enter on a
cause (or on one of its effects) opens the explorer on the cause's cohort and window; `r` reads a
sample of that cohort.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Footer, OptionList, Sparkline, Static
from textual.widgets.option_list import Option

from oncall.display import format_cost, list_time, percent, spans_days, time_text
from oncall.query.cost_marks import marked
from oncall.query.overview import CHARTED, overview_glance
from oncall.query.registry import METRICS
from oncall.safe_text import safe_text
from oncall.tui.live import LiveScreen
from oncall.tui.nextsteps import step_bindings

# While data keeps arriving, what-changed (the costly part) runs again at most this often.
CHANGES_EVERY_S = 10.0


def bucket_values(rows: list[dict[str, Any]], metric: str) -> list[float]:
    """One value per bucket of a series row set (metrics.series_sets), 0 where the bucket has none."""
    m = METRICS[metric]
    out = []
    for r in rows:
        if m.kind == "quantile":
            out.append(float(r.get(metric) or 0.0))
        else:
            n = r.get(f"{metric}__n")
            out.append(float(r.get(f"{metric}__x") or 0.0) / float(n) if n else 0.0)
    return out


def short_description(ch: Any) -> str:
    """The change without its ISO start/end or effects: the time column already says when, and the
    effects have their own lines."""
    text = getattr(ch, "title", "") or ch.description
    text = text.replace(f" from {ch.began_at}", "")
    return text.replace(f" to {ch.ended_at}", "") if ch.ended_at else text


def change_lines(found: list[Any]) -> list[tuple[int, str, dict[str, Any] | None]]:
    """(change index, kind of line, effect) per line of the list: a cause's line, then its effects
    (a shift's first effect is its own headline, so it is not repeated)."""
    out: list[tuple[int, str, dict[str, Any] | None]] = []
    for i, ch in enumerate(found):
        out.append((i, "change", None))
        effects = ch.effects[1:] if ch.kind == "metric_shift" else ch.effects
        out += [(i, "effect", e) for e in effects]
    return out


def change_key(ch: Any) -> tuple[str, str, str]:
    """What identifies one entry of what-changed across refreshes (its times and counts move)."""
    return (ch.kind, str(ch.metric), str(ch.title or ch.description))


def peak_text(metric: str, v: float) -> str:
    """A sparkline's peak in its metric's unit (display.metric_text: %, $, ms, chars)."""
    return METRICS[metric].text(v)


class OverviewScreen(LiveScreen):
    BINDINGS = [
        Binding("e", "explore", "explorer", id="overview.explorer"),
        Binding("r", "read", "reader (sample)", id="overview.reader"),
        Binding("f5", "refresh", "refresh", id="overview.refresh"),
        Binding("R", "replay", "replay change", show=False, id="overview.replay"),
        Binding("tab", "cause(1)", "next cause", id="overview.next_cause"),
        Binding("shift+tab", "cause(-1)", "previous cause", show=False, id="overview.previous_cause"),
        *step_bindings("overview"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("loading the incident…", style="dim"), id="incident")
        with Vertical(id="charts"):
            yield Grid(id="grid")
        yield Static(Text("what changed (enter opens the cohort)", style="bold"), id="changes-title")
        yield OptionList(id="changes")
        yield Footer()

    def on_mount(self) -> None:
        self.changes: list[Any] = []
        self.lines: list[tuple[int, str, dict[str, Any] | None]] = []
        self._head_text = Text()
        self._changes_at = 0.0  # monotonic time of the last what-changed run
        self._changes_loaded_once = False
        self._days = False  # the incident spans days: what-changed's times carry their date
        # What-changed waits for the header and charts' queries: run side by side, the two shared
        # the two cores and the first screen came later, while what-changed finished no sooner.
        self._header_queried = threading.Event()
        self.load()
        self.load_changes()

    def data_changed(self) -> None:
        """The refresh hook: others wrote to the incident (app._store_changed). The header and charts
        again; the what-changed list too, at most every CHANGES_EVERY_S while data keeps arriving (live
        traffic), keeping the change under the cursor and announcing a cause that was not there. On a
        source the numbers are the source's window, not the incident's: nothing to redo (f5 asks again)."""
        if self.app.source is not None:
            return
        self.load()
        if self._changes_loaded_once and time.monotonic() - self._changes_at >= CHANGES_EVERY_S:
            self.load_changes()

    def live_changed(self) -> None:
        """The live marker (app.live_marker) moved: the header line shows it."""
        self._show_header()

    def _show_header(self) -> None:
        t = self._head_text.copy()
        if self.app.live_marker:
            t.append(self.app.live_marker, style="bold green" if self.app.live_marker.startswith("●") else "dim")
        self.query_one("#incident", Static).update(t)

    def action_refresh(self) -> None:
        self.load()
        self.load_changes()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        """The header and charts: the incident's, or the source's computed in place (app.ask); the
        first time, the answer asked at launch (oncall/tui/launch.py)."""
        try:
            early = self.app.take_early("glance")
            g = early.result() if early is not None else self.app.ask(overview_glance)
            self._days = spans_days(g.head.first, g.head.last)  # before what-changed (it waits for this)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not load the overview", str(exc))
            return
        finally:
            self._header_queried.set()
        overall = {"bucket_s": g.bucket_s, "rows": g.overall}
        by_tenant = {"rows": g.by_key}
        self.app.call_from_thread(self._loaded, g.head, overall, g.top, by_tenant)

    @work(thread=True, exclusive=True, group="changes")
    def load_changes(self) -> None:
        """What changed takes longest (every cohort's series): it fills in after the header and charts."""
        from oncall.query.changes import changes

        self._changes_at = time.monotonic()
        early = self.app.take_early("changes")  # asked at launch beside the header's questions
        if early is None:
            self._header_queried.wait(10)
        try:
            found = early.result() if early is not None else self.app.ask(changes)
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.app.show_error, "could not compute what changed", str(exc))
            return
        self.app.call_from_thread(self._changes_loaded, found)

    def _loaded(self, head: Any, overall: dict, top: list[str], by_tenant: dict | None) -> None:
        t = Text()
        if self.app.source is not None:
            t.append("in place ", style="bold cyan")
            t.append(safe_text(self.app.source.display, multiline=False, max_len=80) + "  ", style="cyan")
        t.append("incident " if self.app.source is None else "window ", style="bold")
        t.append(f"{time_text(head.first, seconds=False)} → {time_text(head.last, seconds=False)} UTC   "
                 if head.first else "no data   ")
        t.append(f"{head.calls:,} requests   ", style="bold")
        rate = head.error_rate
        t.append(f"error rate {percent(rate)}   " if rate is not None else "", style="red" if rate and rate > 0.02 else "")
        t.append(f"cost {marked(format_cost(head.cost or 0), 'estimated' if head.estimated_costs else None)}   ")
        if self.app.read_only:
            t.append("read-only   ", style="bold yellow")
        self._head_text = t
        self._show_header()

        grid = self.query_one("#grid", Grid)
        grid.remove_children()
        cohorts: list[tuple[str, list[dict[str, Any]]]] = [("all", overall["rows"])]
        for tenant in top:
            rows = [r for r in (by_tenant or {}).get("rows", []) if r["grp"] == tenant]
            cohorts.append((f"tenant={tenant}", rows))
        # Each sparkline has its peak beside it: the bars alone do not say whether 1 % or 76 % fail.
        head_cell = Text("cohort", style="bold")
        head_cell.append(" (peaks)", style="dim")
        widgets: list[Any] = [Static(head_cell)]
        for name in CHARTED:  # a title over its chart and its peak: the chart's column alone cut it
            widgets.append(Static(Text(METRICS[name].label, style="bold"), classes="chart-title"))
        for label, rows in cohorts:
            widgets.append(Static(Text(safe_text(label, multiline=False, max_len=24))))
            for name in CHARTED:
                values = bucket_values(rows, name)
                widgets.append(Sparkline(values))
                widgets.append(Static(Text(peak_text(name, max(values, default=0.0)), style="dim")))
        grid.mount(*widgets)

    def _changes_loaded(self, found: list[Any]) -> None:
        keep = self.highlighted_change()
        keep_key = change_key(keep) if keep is not None else None
        if self._changes_loaded_once:
            before = {change_key(c) for c in self.changes}
            for ch in found:
                if change_key(ch) not in before:  # a cause (or shift) that appeared while the console was open
                    self.app.notify(safe_text(f"new in what changed: {short_description(ch)}", multiline=False,
                                              max_len=300), title="what changed", severity="warning",
                                    markup=False, timeout=15)
        first = not self._changes_loaded_once
        self._changes_loaded_once = True
        title = Text(f"what changed: {len(found)} (enter opens the cohort, r reads a sample, tab next cause, "
                     "s next steps)" if found else
                     "what changed: nothing significant", style="bold yellow" if found else "bold green")
        self.query_one("#changes-title", Static).update(title)
        options = self.query_one("#changes", OptionList)
        options.clear_options()
        self.changes = found
        self.app.known_changes = found
        self.lines = change_lines(found)
        # When: `01:12`, `01:12-01:40`, with the day when the incident spans days (`11-24 01:12`).
        when = [list_time(ch.began_at, self._days, seconds=False) + (
            f"-{list_time(ch.ended_at, False, seconds=False)}" if ch.ended_at else "") for ch in found]
        width = max((len(w) for w in when), default=5)
        for n, (i, kind, effect) in enumerate(self.lines):
            ch = found[i]
            if kind == "change":
                line = Text(f"{when[i]:<{width}} ", style="bold")
                line.append(safe_text(short_description(ch), multiline=False, max_len=200))
                line.append(f"  ({ch.affected_requests:,} requests)", style="dim")
            else:
                assert effect is not None
                line = Text(" " * 4 + "└ ", style="dim")
                line.append(safe_text(effect["description"], multiline=False, max_len=200))
                line.append(f"  ({effect['measured_on']:,} {effect['counts']})", style="dim")
            options.add_option(Option(line, id=f"line-{n}"))
        if found and first:
            options.highlighted = 0  # enter opens the top change straight away (nothing is highlighted otherwise)
            options.focus()
        elif found:  # a refresh while live: the cursor stays on the change it was on, focus where it was
            at = next((n for n, (i, kind, _) in enumerate(self.lines)
                       if kind == "change" and change_key(found[i]) == keep_key), 0)
            options.highlighted = at

    def action_cause(self, step: int) -> None:
        """tab / shift+tab: the next or previous cause in what-changed, over its effects' lines."""
        options = self.query_one("#changes", OptionList)
        causes = [n for n, (_, kind, _) in enumerate(self.lines) if kind == "change"] if self.changes else []
        if not causes:
            return
        at = options.highlighted if options.highlighted is not None else -1
        later = [n for n in causes if (n > at if step > 0 else n < at)]
        options.highlighted = (later[0] if step > 0 else later[-1]) if later else (causes[0] if step > 0 else causes[-1])
        options.focus()

    def highlighted_change(self) -> Any | None:
        """The change under the cursor (an effect's line belongs to its cause)."""
        options = self.query_one("#changes", OptionList)
        idx = options.highlighted
        if idx is None or not getattr(self, "lines", None) or idx >= len(self.lines):
            return None
        return self.changes[self.lines[idx][0]]

    def _cause_filters(self, ch: Any) -> list[str]:
        """What opening a cause needs at home: its cohort, and the same cohort before it began (the
        baseline its compare, replay and runbook gates read)."""
        from oncall.query.next_steps import baseline_window

        return [ch.filter, baseline_window({"cohort": ch.cohort, "began_at": ch.began_at})]

    @on(OptionList.OptionSelected, "#changes")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        ch = self.changes[self.lines[event.option_index][0]]
        self.app.bring_home(self._cause_filters(ch), "opening the cause",
                            lambda: self.app.open_explorer(ch.filter))

    def action_explore(self) -> None:
        self.app.bring_home([""], "exploring the window", lambda: self.app.open_explorer(""))

    def action_replay(self) -> None:
        """Replay a sample of the highlighted change's cohort (its filter and window)."""
        # The highlighted line may be an effect: it belongs to its cause (the list has a line per
        # effect, so the line number is not the change's index).
        from oncall.query.next_steps import baseline_window

        ch = self.highlighted_change()
        if ch is not None:  # the baseline offered: the same cohort before the cause began
            baseline = baseline_window({"cohort": ch.cohort, "began_at": ch.began_at})
            self.app.bring_home(self._cause_filters(ch), "replaying the cause",
                                lambda: self.app.open_replay(ch.filter, baseline=baseline))
        else:
            self.app.notify("highlight a change in the what-changed list first", markup=False)

    def action_next_steps(self) -> None:
        """The highlighted cause's next steps: the replay that tests it, the runbook that mitigates it."""
        self.action_take_step(None)

    def action_take_step(self, index: int | None) -> None:
        ch = self.highlighted_change()
        if ch is None:
            self.app.open_next_steps(None, index)  # says why there is none
            return
        self.app.bring_home(self._cause_filters(ch), "the cause's next steps",
                            lambda: self.app.open_next_steps(ch, index))

    def action_read(self) -> None:
        """A sample of the highlighted change's cohort (all requests when nothing changed)."""
        ch = self.highlighted_change()
        flt = ch.filter if ch is not None else ""
        self.app.bring_home([flt], "reading a sample", lambda: self.app.open_reader(flt, None, 0))
