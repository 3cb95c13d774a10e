"""The console follows live traffic: what `oncall receive` writes shows up with no key pressed.

Spans are written exactly as the receiver writes them (oncall.live.partwrite.write_part, one part
per flush) while the app runs: the live marker appears, the explorer keeps its cursor on the same
request and says how many arrived above it, `home` follows the newest, and a new cause in what
changed is announced. Waits are hang guards, not timings (the project's rule).
"""

from __future__ import annotations

import datetime as dt
import time

import orjson
from rich.text import Text
from textual.widgets import Static

import oncall.tui.screens.overview as overview_mod
from oncall.live.partwrite import write_part
from oncall.live.payload import decode_body
from oncall.store import open_db
from oncall.tui.results import ResultsView
from tests.tui.conftest import settle
from tests.tui.test_live_refresh import shown_within_guard

SIZE = (160, 40)


def _llm_spans(n: int, served: str, start: dt.datetime, seed: int) -> list[dict]:
    spans = []
    for i in range(n):
        t = int((start + dt.timedelta(milliseconds=10 * i)).timestamp() * 1e9)
        spans.append({"traceId": f"{seed:08x}{i:024x}", "spanId": f"{seed:08x}{i:08x}", "name": "chat gpt-4o",
                      "kind": 3, "startTimeUnixNano": str(t), "endTimeUnixNano": str(t + 300_000_000),
                      "attributes": [{"key": k, "value": v} for k, v in {
                          "gen_ai.operation.name": {"stringValue": "chat"},
                          "gen_ai.provider.name": {"stringValue": "openai"},
                          "gen_ai.request.model": {"stringValue": "gpt-4o"},
                          "gen_ai.response.model": {"stringValue": served},
                          "tenant": {"stringValue": "acme"}, "feature": {"stringValue": "live-chat"},
                          "gen_ai.usage.input_tokens": {"intValue": "100"},
                          "gen_ai.usage.output_tokens": {"intValue": "40"}}.items()]})
    return spans


def receive(db_path, spans: list[dict]) -> None:
    """What the receiver does with one flush: the mapping, then one registered part."""
    body = orjson.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "support-bot"}}]}, "scopeSpans": [{"spans": spans}]}]})
    decoded = decode_body(body, "application/json", None, max_bytes=1 << 26, source="otlp-http://127.0.0.1:4318")
    with open_db(db_path) as db:
        write_part(db, decoded.table, source="otlp-http://127.0.0.1:4318", digest=str(time.time()))


def status(screen) -> str:
    r = screen.query_one("#status", Static).render()
    return r.plain if isinstance(r, Text) else str(r)


async def until(pilot, predicate, what: str) -> None:
    await shown_within_guard(pilot, predicate, what)


def newest(db_path) -> dt.datetime:
    with open_db(db_path, read_only=True) as db:
        return db.cursor().execute("SELECT max(start_time) FROM spans").fetchone()[0]


async def test_explorer_keeps_its_request_counts_new_rows_and_follows_at_home(make_app, demo_copy) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_explorer("")
        await settle(pilot)
        view = app.screen.query_one(ResultsView)
        await pilot.press("j", "j", "j")
        await settle(pilot)
        chosen, total = view.row(3)["request_id"], view.total
        after = newest(demo_copy) + dt.timedelta(seconds=1)
        receive(demo_copy, _llm_spans(25, "gpt-4o-2024-08-06", after, seed=1))
        await until(pilot, lambda: view.total == total + 25, "the new rows counted")
        await until(pilot, lambda: (view.row(view.cursor) or {}).get("request_id") == chosen, "cursor row re-read")
        assert view.cursor == 3 + 25 and view.has_focus
        await until(pilot, lambda: "25 new ↑ home follows" in status(app.screen), "N new")
        await until(pilot, lambda: "live" in status(app.screen), "the live marker")
        await pilot.press("home")
        await settle(pilot)
        assert "new" not in status(app.screen).split("(all requests)")[1].split("live")[0]
        # At the newest row it follows: the next arrivals keep it on the newest.
        receive(demo_copy, _llm_spans(5, "gpt-4o-2024-08-06", after + dt.timedelta(seconds=5), seed=2))
        await until(pilot, lambda: view.total == total + 30, "the next rows counted")
        assert view.cursor == 0
        await until(pilot, lambda: ((view.row(0) or {}).get("start_time") or after) >= after + dt.timedelta(seconds=5),
                    "the newest row at the cursor")


async def test_overview_grows_and_announces_a_new_cause(make_app, demo_copy, monkeypatch) -> None:
    monkeypatch.setattr(overview_mod, "CHANGES_EVERY_S", 0.0)
    app = make_app()
    notices: list[str] = []
    real_notify = app.notify

    def notify(message, *args, **kwargs):  # noqa: ANN001 - Textual's signature
        notices.append(str(message))
        return real_notify(message, *args, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        await until(pilot, lambda: screen._changes_loaded_once, "the first what-changed")
        before = {overview_mod.change_key(c) for c in screen.changes}
        head = str(screen.query_one("#incident", Static).render())
        after = newest(demo_copy) + dt.timedelta(seconds=1)
        receive(demo_copy, _llm_spans(150, "gpt-4o-2024-08-06", after, seed=3))
        receive(demo_copy, _llm_spans(150, "gpt-4o-mystery-0001", after + dt.timedelta(seconds=2), seed=4))
        await until(pilot, lambda: any("gpt-4o-mystery-0001" in n for n in notices), "the new cause announced")
        assert any("gpt-4o-mystery-0001" in overview_mod.short_description(c) for c in screen.changes
                   if overview_mod.change_key(c) not in before)
        await until(pilot, lambda: str(screen.query_one("#incident", Static).render()) != head, "the header grew")
        assert "live" in str(screen.query_one("#incident", Static).render())
