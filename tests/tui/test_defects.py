"""Console defects found in the issue-8 review, each driven through the real app (Pilot) on a real database.

Every test here failed on the console before its fix: a superseded count wrote over a newer one and
could not be interrupted, rows and text were cropped by characters instead of terminal cells, `g`
then a quick `j` labelled with the next request's id, unknown keymap ids were ignored silently, and
the trace view showed a $0.000373 cost as 0.0.
"""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Input, Static

from oncall.ingest.loader import load_paths
from oncall.store import open_db
from oncall.tui.app import OncallApp
from oncall.tui.results import ResultsView, format_row, header_line
from oncall.tui.screens.explorer import ExplorerScreen
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.trace import TraceScreen
from oncall.tui.textview import OutputView
from tests.tui.conftest import settle

SIZE = (120, 40)


def static_text(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return r.plain if isinstance(r, Text) else str(r)


async def wait_until(pilot, predicate, what: str, rounds: int = 600) -> None:
    """Pump the app until predicate() holds (a hang guard, not a speed assertion: ~60 s at most)."""
    for _ in range(rounds):
        if predicate():
            return
        await pilot.pause(0.1)
    screen = pilot.app.screen
    status = static_text(screen, "#status") if screen.query("#status") else ""
    raise AssertionError(f"never happened: {what} (screen {type(screen).__name__}, status {status!r})")


# -- superseded counts ---------------------------------------------------------------------------------
class RecordingConnection:
    """A DuckDB connection that records every execute (start, end, exception) and the cursors it makes."""

    def __init__(self, real: Any, log: list[dict[str, Any]]) -> None:
        self._real, self._log = real, log

    def execute(self, sql: str, params: Any = None) -> Any:
        entry = {"sql": sql, "done": False, "error": None, "conn": self._real}
        self._log.append(entry)
        try:
            return self._real.execute(sql, params) if params is not None else self._real.execute(sql)
        except Exception as exc:
            entry["error"] = exc
            raise
        finally:
            entry["done"] = True

    def cursor(self) -> RecordingConnection:
        return RecordingConnection(self._real.cursor(), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class RecordingStore:
    def __init__(self, store: Any, log: list[dict[str, Any]]) -> None:
        self._store, self._log = store, log

    def cursor(self) -> RecordingConnection:
        return RecordingConnection(self._store.cursor(), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


SLOW = "(SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 3) > 0"  # minutes of DuckDB work


def slow_filters(monkeypatch, slow_texts: set[str], gate: dict[str, threading.Event] | None = None) -> None:
    """Counts of the filters in slow_texts run a query that takes minutes unless interrupted; a filter in
    `gate` waits for its event before compiling (so a test decides which answer comes first)."""
    import oncall.query.filters as filters

    real = filters.compile_filter

    def compile_filter(con, flt, *args, **kwargs):
        if gate and flt in gate:
            gate[flt].wait(60)
        c = real(con, flt, *args, **kwargs)
        if flt in slow_texts:
            c.where = f"({c.where}) AND {SLOW}"
        return c

    monkeypatch.setattr(filters, "compile_filter", compile_filter)
    import oncall.query.search as search  # the explorer counts through the core's search.count_noted

    monkeypatch.setattr(search, "compile_filter", compile_filter)


async def submit(pilot, text: str) -> None:
    box = pilot.app.screen.query_one("#filter", Input)
    box.focus()
    box.value = text
    await pilot.press("enter")


async def test_a_superseded_count_never_writes_over_the_newer_one(make_app, monkeypatch) -> None:
    release = threading.Event()
    slow_filters(monkeypatch, set(), gate={"tenant=acme": release})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("")
        await settle(pilot)
        await submit(pilot, "tenant=acme")  # held before it even compiles
        await pilot.pause()
        await submit(pilot, "tenant=globex")
        view = app.screen.query_one(ResultsView)
        await wait_until(pilot, lambda: view.filter_text == "tenant=globex", "the newer filter's count")
        globex = view.total
        release.set()  # now the older count may finish: its answer must be dropped
        for _ in range(20):
            await pilot.pause(0.05)
        await settle(pilot)
        assert view.filter_text == "tenant=globex" and view.total == globex
        assert static_text(app.screen, "#status").startswith(f"1 of {globex:,}")


async def test_esc_interrupts_the_count_after_a_newer_filter(make_app, monkeypatch) -> None:
    slow_filters(monkeypatch, {"tenant=acme", "tenant=globex"})
    log: list[dict[str, Any]] = []
    app = make_app()
    app.store = RecordingStore(app.store, log)
    slow = [e for e in log if SLOW in e["sql"]]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.open_explorer("tenant=initech")
            await settle(pilot)
            view = app.screen.query_one(ResultsView)
            before = view.total
            await submit(pilot, "tenant=acme")
            def counts() -> list[dict[str, Any]]:  # the first page is fetched beside each count (prefetch)
                return [e for e in log if SLOW in e["sql"] and e["sql"].startswith("SELECT count(*)")]

            await wait_until(pilot, lambda: counts(), "the first slow count to start")
            await submit(pilot, "tenant=globex")  # supersedes the first: it is interrupted, not left running
            await wait_until(pilot, lambda: len(counts()) == 2, "the second slow count")
            await pilot.press("escape")  # the bar has focus: esc interrupts the count in flight, and its page
            slow = [e for e in log if SLOW in e["sql"]]
            await wait_until(pilot, lambda: all(e["done"] for e in slow), "both counts to end")
            await settle(pilot)
            assert all(type(e["error"]).__name__ == "InterruptException" for e in slow), [e["error"] for e in slow]
            assert static_text(app.screen, "#status").startswith("cancelled")
            assert view.filter_text == "tenant=initech" and view.total == before  # the rows shown stay
            assert isinstance(app.screen, ExplorerScreen)  # esc cancelled; it did not also go back
    finally:
        for e in [e for e in log if SLOW in e["sql"]]:  # never leave minutes of DuckDB work running after a failure
            if not e["done"]:
                e["conn"].interrupt()


async def test_a_newer_filter_interrupts_the_pages_of_the_one_before(make_app, monkeypatch) -> None:
    """Fetching the rows of a filter that has been replaced is interrupted, not left to finish."""
    import oncall.query.search as search

    real = search.compile_filter

    def compile_filter(con, flt, *args, **kwargs):  # the rows of tenant=acme take minutes to fetch
        c = real(con, flt, *args, **kwargs)
        if flt == "tenant=acme":
            c.where = f"({c.where}) AND {SLOW}"
        return c

    monkeypatch.setattr(search, "compile_filter", compile_filter)
    log: list[dict[str, Any]] = []
    app = make_app()
    app.store = RecordingStore(app.store, log)
    slow: list[dict[str, Any]] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            app.open_explorer("tenant=acme")
            await wait_until(pilot, lambda: any(SLOW in e["sql"] for e in log), "the slow page fetch to start")
            await submit(pilot, "tenant=globex")
            view = app.screen.query_one(ResultsView)
            slow = [e for e in log if SLOW in e["sql"]]
            await wait_until(pilot, lambda: all(e["done"] for e in slow),
                             "the old filter's pages to stop", rounds=100)
            await wait_until(pilot, lambda: view.filter_text == "tenant=globex" and view.row(0) is not None,
                             "the new filter's rows")
            assert all(type(e["error"]).__name__ == "InterruptException" for e in slow)
            assert view.row(0)["tenant"] == "globex"
            assert not [s for s in app.screen_stack if type(s).__name__ == "ErrorModal"]  # no error for it
    finally:
        for e in slow:
            if not e["done"]:
                e["conn"].interrupt()


# -- terminal cells, not characters ----------------------------------------------------------------------
CJK = "東京都の顧客サポート担当者が返金ポリシーについて質問しました"


@pytest.fixture
def cjk_db(tmp_path: Path) -> Path:
    src = tmp_path / "cjk.jsonl"
    with src.open("w", encoding="utf-8") as fh:
        for i in range(30):
            fh.write(json.dumps({"request_id": f"要求-{i:03d}-東京", "trace_id": f"{i:032x}",
                                 "timestamp": 1772359200 + i * 60, "tenant": "株式会社テスト", "feature": "サポート窓口",
                                 "model": "gpt-4o", "served_model": "gpt-4o-2024-11-20", "latency_ms": 800,
                                 "cost": 0.000373, "prompt": f"質問 {i}", "output": (CJK + " ") * 12},
                                ensure_ascii=False) + "\n")
    path = tmp_path / "cjk.duckdb"
    store = open_db(path)
    try:
        assert load_paths(store, [str(src)]).problems == []
    finally:
        store.close()
    return path


def test_format_row_is_exactly_the_width_in_cells() -> None:
    import datetime as dt

    row = {"start_time": dt.datetime(2026, 11, 24, 1, 2, 3, tzinfo=dt.UTC), "request_id": "要求-001-東京都港区",
           "tenant": "株式会社テスト", "feature": "サポート窓口", "served_model": "gpt-4o", "status": "ok",
           "latency_ms": 812.0, "cost": 0.000373, "label": None, "output_preview": CJK * 3}
    for width in (120, 121, 80):
        line = format_row(row, width)
        assert cell_len(line) == width, (width, cell_len(line))
    line, head = format_row(row, 120), header_line(120)
    for name, value in (("tenant", "株式会社"), ("ms", "812"), ("cost", "0.000373")):  # columns line up in cells
        assert cell_len(head[: head.index(name)]) == cell_len(line[: line.index(value)]), name


async def test_results_and_output_fit_the_view_in_cells(cjk_db: Path, make_app) -> None:
    app = make_app(cjk_db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        assert view.total == 30
        width = view.size.width
        for y in range(5):
            strip = view.render_line(y)
            assert cell_len(strip.text) == width, (y, cell_len(strip.text), width)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReaderScreen)
        out = app.screen.query_one("#output", OutputView)
        wide = out.scrollable_content_region.width
        assert out._lines and all(cell_len(line) <= wide for line in out._lines)
        assert "".join(out._lines).replace(" ", "") == out.text.replace(" ", "")  # nothing lost by wrapping
        for y in range(out.size.height):
            assert out.render_line(y).cell_length == out.size.width
            assert cell_len(out.render_line(y).text) == out.size.width
        await pilot.press("w")  # unwrapped: one long line, cropped at the view's edge in cells
        await pilot.pause()
        assert cell_len(out.render_line(0).text) == out.size.width


# -- the reader labels the request that was on screen ----------------------------------------------------
class HeldModule(types.ModuleType):
    """oncall.query.labels, with its add_label handed out only once `release` is set: the label worker
    (which imports it when it starts) waits there, so the test presses `j` before the worker goes on."""

    def __init__(self, real: types.ModuleType, release: threading.Event) -> None:
        super().__init__(real.__name__)
        self.__dict__.update({k: v for k, v in real.__dict__.items() if k != "add_label"})
        self._real, self._release = real, release

    def __getattr__(self, name: str) -> Any:
        if name == "add_label":
            self._release.wait(60)
        return getattr(self._real, name)


async def test_g_then_a_quick_j_labels_the_request_that_was_shown(make_app, monkeypatch) -> None:
    import oncall.query.labels as labels

    release = threading.Event()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("tenant=acme", None, 0)
        await settle(pilot)
        shown = app.screen.current
        monkeypatch.setitem(sys.modules, "oncall.query.labels", HeldModule(labels, release))
        await pilot.press("g", "j")
        await wait_until(pilot, lambda: app.screen.current and app.screen.current["span_pk"] != shown["span_pk"],
                         "j to show the next request")
        release.set()
        await wait_until(pilot, lambda: any("labelled good" in str(n.message) for n in app._notifications),
                         "the label to be saved")
        await settle(pilot)
        rows = app.store.cursor().execute("SELECT span_pk, request_key FROM labels").fetchall()
        assert rows == [(shown["span_pk"], shown["request_id"])]
        trail = app.store.cursor().execute("SELECT summary FROM trail WHERE kind = 'label'").fetchall()
        assert trail == [(f"labelled {shown['request_id']} good",)]


async def test_enter_before_the_rows_land_opens_the_reader_when_they_do(make_app, monkeypatch) -> None:
    """The count shows before the first page of rows; an `enter` typed in between is kept, not dropped
    (CI caught the drill pressing enter there under load: nothing opened)."""
    import oncall.query.search as search

    release = threading.Event()
    real = search.page_at

    def page_at(*args, **kwargs):  # the first page is held until the test lets it go
        release.wait(60)
        return real(*args, **kwargs)

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        monkeypatch.setattr(search, "page_at", page_at)
        app.open_explorer("tenant=acme")
        await wait_until(pilot, lambda: isinstance(app.screen, ExplorerScreen) and app.screen.query(ResultsView)
                         and app.screen.query_one(ResultsView).total > 0, "the count")
        view = app.screen.query_one(ResultsView)
        assert view.row(0) is None  # the rows are still held
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ExplorerScreen)
        release.set()
        await wait_until(pilot, lambda: isinstance(app.screen, ReaderScreen) and app.screen.current,
                         "the reader to open")
        assert app.screen.current["tenant"] == "acme"


# -- the keymap ------------------------------------------------------------------------------------------
async def test_unknown_binding_ids_in_the_config_are_reported(demo_copy: Path, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[keys]\n"reader.nxt" = "x"\n"reader.good" = "G"\n"explorer.zap" = "z"\n')
    monkeypatch.setenv("ONCALL_CONFIG", str(config))
    store = open_db(demo_copy, read_only=True)
    try:
        app = OncallApp(store, read_only=True)  # no keymap given: read from the config file
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            warnings = [str(n.message) for n in app._notifications if n.severity == "warning"]
            ours = [w for w in warnings if "unknown binding ids" in w]
            assert len(ours) == 1, warnings
            line = ours[0]
            assert str(config) in line and "\n" not in line
            assert "explorer.zap" in line and "reader.nxt (did you mean reader.next?)" in line
            assert "reader.good" not in line and "`?` lists each screen's ids" in line  # known ids are not named
            app.open_reader("", None, 0)  # and the known one still works
            await settle(pilot)
            assert isinstance(app.screen, ReaderScreen)
            assert any(b.binding.id == "reader.good" and k == "G" for k, b in app.screen.active_bindings.items())
        # what `oncall open` prints on stderr when it exits: the same line with every valid id
        [full] = app.keymap_problems
        assert full.startswith(line.split("; `?`")[0] + "; valid ids: ")
        valid = full.split("; valid ids: ")[1].split(", ")
        assert {"reader.next", "reader.good", "trace.fold", "app.quit"} <= set(valid) and "reader.nxt" not in valid
    finally:
        store.close()


async def test_a_valid_keymap_reports_nothing(make_app) -> None:
    app = make_app(keymap={"reader.next": "x,ctrl+n", "trace.fold": "f"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.keymap_problems == []
        assert not [n for n in app._notifications if "binding" in str(n.message)]


# -- costs -----------------------------------------------------------------------------------------------
async def test_trace_view_shows_a_small_cost_with_its_digits(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pk, cost = app.store.cursor().execute(
            "SELECT span_pk, cost FROM spans WHERE kind = 'llm' AND cost > 0 AND cost < 0.001 "
            "ORDER BY span_pk LIMIT 1").fetchone()
        app.open_trace(pk)
        await settle(pilot)
        assert isinstance(app.screen, TraceScreen)
        side = static_text(app.screen, "#span")
        cost_line = next(line for line in side.splitlines() if line.startswith("cost"))
        digits = f"{cost:.3g}"  # e.g. 0.000373
        assert cost_line.split()[-1] == f"${float(digits):.10f}".rstrip("0"), (cost_line, cost)
        assert cost_line.split()[-1] != "0.0"


# -- deep traces -----------------------------------------------------------------------------------------
DEPTH = 10_000


@pytest.fixture(scope="module")
def deep_db(tmp_path_factory) -> Path:
    from tests.deep_trace import build_deep_db

    path = tmp_path_factory.mktemp("deep-tui") / "deep.duckdb"
    build_deep_db(path, DEPTH)
    return path


async def test_a_10000_span_chain_in_the_reader_and_the_trace_screen(deep_db: Path) -> None:
    store = open_db(deep_db, read_only=True)
    try:
        app = OncallApp(store, read_only=True, keymap={})
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            pk = store.cursor().execute("SELECT span_pk FROM spans WHERE response_id = ?",
                                        [f"chatcmpl-deep-{DEPTH - 1}"]).fetchone()[0]
            app.open_reader("tenant=deepco", [pk], 0)  # the reader loads the request with its trace
            await settle(pilot)
            assert isinstance(app.screen, ReaderScreen) and app.screen.current["span_pk"] == pk
            await pilot.press("t")
            await settle(pilot)
            assert isinstance(app.screen, TraceScreen), getattr(app.screen, "detail", app.screen)
            from oncall.tui.spantree import SpanTreeView

            tree = app.screen.query_one(SpanTreeView)
            assert len(tree.spans) == len(tree.rows) == DEPTH
            assert tree.current["span_pk"] == pk and tree.current["depth"] == DEPTH - 1
            top = tree.scroll_offset.y
            assert top <= tree.cursor < top + tree.size.height  # the request is on screen, not row 1
            assert f"{DEPTH:,} spans" in static_text(app.screen, "#trace-title")
            for y in range(tree.size.height):  # every painted row fits the view, however deep
                assert cell_len(tree.render_line(y).text) == tree.size.width
            await pilot.press("home")
            await pilot.pause()
            assert tree.current["name"] == "agent.run" and "agent.run" in static_text(app.screen, "#span")
            await pilot.press("space")  # fold the root: the whole chain folds into one row
            await pilot.pause()
            assert len(tree.rows) == 1
            await pilot.press("space", "end")
            await pilot.pause()
            assert tree.current["span_pk"] == pk
            await pilot.press("enter")  # an LLM span: read it
            await settle(pilot)
            assert isinstance(app.screen, ReaderScreen) and app.screen.current["span_pk"] == pk
    finally:
        store.close()
