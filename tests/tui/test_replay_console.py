"""Replay from the console (Pilot): pick a target, see the estimate, confirm, walk the pairs, label one,
cancel a long run keeping what finished. The target is the loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import html
import re
import sys
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Static

from oncall.postmortem.draft import build_draft
from oncall.tui import pairdiff
from oncall.tui.screens.replay import ReplayScreen, ReplaySetupModal
from oncall.tui.textview import OutputView, RichLinesView
from tests.tui.conftest import settle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from openai_server import OpenAIServer  # noqa: E402
from replay_helpers import write_suite  # noqa: E402

SIZE = (140, 40)
COHORT = "served_model=gpt-4o-2024-11-20 feature=extract"


@pytest.fixture
def suite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(srv: OpenAIServer, **kw) -> Path:
        suite = write_suite(tmp_path, srv.base_url, **kw)
        monkeypatch.setenv("ONCALL_REPLAY_SUITE", str(suite))
        monkeypatch.setenv("ONCALL_TEST_KEY", "sk-test-console-0123456789abcdef")
        return suite
    return make


def _text(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return getattr(r, "plain", str(r))


async def _start(pilot, app, n: str) -> None:
    app.open_explorer(COHORT)
    await settle(pilot)
    await pilot.press("R")
    await settle(pilot)
    assert isinstance(app.screen, ReplaySetupModal)
    app.screen.query_one("#n", Input).value = n
    await settle(pilot)
    assert "estimated $" in _text(app.screen, "#estimate")
    assert app.screen.query_one("#cancel", Button).has_focus  # the default is Cancel
    await pilot.click("#start")
    await pilot.pause()


async def _replay_until_done(pilot, app, n: int) -> ReplayScreen:
    """Start a replay of n requests and wait until it finished with all its pairs on the screen."""
    await settle(pilot)
    await _start(pilot, app, str(n))
    assert isinstance(app.screen, ReplayScreen)
    for _ in range(400):
        await pilot.pause(0.05)
        if not app.screen.running and len(app.screen.pairs) == n:
            break
    await settle(pilot)
    return app.screen


async def test_replay_the_cohort_walk_and_label_pairs(make_app, suite_env) -> None:
    with OpenAIServer() as srv:
        suite_env(srv, concurrency=2)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await _replay_until_done(pilot, app, 4)
            assert len(srv.completions()) == 4 and len(screen.pairs) == 4
            assert "finished" in _text(screen, "#replay-status")
            checks = screen.query_one("#replay-checks", RichLinesView).plain()
            assert "pair 1/4" in checks and "exact match" in checks and "json_valid" in checks
            assert screen.query_one("#replayed", OutputView).text.startswith("Answer to:")
            if pairdiff.available():  # the side-by-side diff of original and replay, d for the full texts
                assert screen.query_one("#replay-diff").display and not screen.query_one("#replay-panes").display
                assert len(screen.query(pairdiff.PairDiff)) == 1 and "diff above" in checks
                await pilot.press("d")
                assert screen.query_one("#replay-panes").display and not screen.query_one("#replay-diff").display
                assert "[-" in screen.query_one("#replay-checks", RichLinesView).plain()  # the word diff instead
            await pilot.press("j")
            assert "pair 2/4" in screen.query_one("#replay-checks", RichLinesView).plain()
            await pilot.press("b")
            await settle(pilot)
            assert "labelled bad" in screen.query_one("#replay-checks", RichLinesView).plain()
            cur = app.store.cursor()
            assert cur.execute("SELECT label FROM replay_labels").fetchall() == [("bad",)]
            kinds = [r[0] for r in cur.execute("SELECT kind FROM trail WHERE kind LIKE 'replay%' ORDER BY event_id")
                     .fetchall()]
            assert kinds == ["replay", "replay_label"]  # the run and the label are on the timeline
            md = build_draft(app.store).markdown  # and the postmortem's replay section lists the verdict
            labelled = screen.pairs[1]["request"]
            assert "labelled 1 replayed output(s): 0 good, 1 bad" in md and f"| `{labelled}` | 0 | bad |" in md


async def test_without_the_diff_extra_the_texts_and_word_diff_show(make_app, suite_env, monkeypatch) -> None:
    monkeypatch.setattr(pairdiff, "DiffView", None)
    with OpenAIServer() as srv:
        suite_env(srv, concurrency=2)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await _replay_until_done(pilot, app, 1)
            assert screen.query_one("#replay-panes").display and not screen.query_one("#replay-diff").display
            checks = screen.query_one("#replay-checks", RichLinesView).plain()
            assert pairdiff.INSTALL_HINT in checks and "{+" in checks


@pytest.mark.skipif(not pairdiff.available(), reason="textual-diff-view is not installed (pip install 'oncall[diff]')")
async def test_hostile_replay_text_is_shown_as_text_in_the_diff_view(make_app, suite_env) -> None:
    hostile = "[bold red]pwned[/bold red] \x1b[2J\x1b]0;title\x07 [@click=app.quit]x[/] `tick`"
    with OpenAIServer(answerer=lambda req: hostile) as srv:
        suite_env(srv, concurrency=2)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            screen = await _replay_until_done(pilot, app, 1)
            assert screen.query_one("#replay-diff").display
            svg = app.export_screenshot()
            shown = "".join(html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)).replace("\xa0", " ")
            assert "\x1b" not in shown and "\x07" not in shown and "␛[2J" in shown  # escapes shown, not sent
            assert "pwned[/bold red]" in shown and "[@click=app.quit]x[/]" in shown  # markup stays text
            assert app.is_running  # the link markup did nothing


async def test_cancel_keeps_what_finished(make_app, suite_env) -> None:
    with OpenAIServer(latency=0.3) as srv:
        suite_env(srv, concurrency=1)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await _start(pilot, app, "20")
            assert isinstance(app.screen, ReplayScreen)
            for _ in range(200):
                await asyncio.sleep(0.05)
                if len(srv.completions()) >= 2:
                    break
            await pilot.press("x")
            for _ in range(200):
                await pilot.pause(0.05)
                if not app.screen.running:
                    break
            await settle(pilot)
            assert not app.screen.running
            cur = app.store.cursor()
            status = cur.execute("SELECT status FROM replay_run_states ORDER BY state_id DESC LIMIT 1").fetchone()[0]
            kept = cur.execute("SELECT count(*) FROM replay_results").fetchone()[0]
            assert status == "interrupted" and 1 <= kept < 20
