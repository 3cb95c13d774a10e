"""A cause's next steps from the console (Pilot, the demo incident): `s` lists them on the overview,
`1`-`3` open the prefilled replay dialog or runbook form from the overview, the explorer and the reader,
and starting a suggested replay records in the trail which suggestion was taken."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from oncall.tui.nextsteps import NextStepsModal
from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.screens.replay import ReplayScreen, ReplaySetupModal
from oncall.tui.screens.runbook import RunbookParamsModal
from tests.tui.conftest import settle

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from openai_server import OpenAIServer  # noqa: E402

SIZE = (140, 40)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A replay suite with the demo's targets on the loopback server, and the previous prompt version."""
    def make(srv: OpenAIServer) -> Path:
        suite = tmp_path / "suite"
        (suite / "prompts").mkdir(parents=True)
        text = "[settings]\nconfirm_above = 1000\n"
        for name in ("demo-pinned", "demo-current"):
            text += (f'\n[targets.{name}]\nbase_url = "{srv.base_url}"\nmodel = "gpt-4o"\n'
                     f'api_key_env = "ONCALL_TEST_KEY"\nprice_in = 2.5\nprice_out = 10\n')
        (suite / "targets.toml").write_text(text)
        (suite / "prompts" / "support-bot-v12.md").write_text(
            (ROOT / "replay" / "prompts" / "support-bot-v12.md").read_text(encoding="utf-8"))
        monkeypatch.setenv("ONCALL_REPLAY_SUITE", str(suite))
        monkeypatch.setenv("ONCALL_TEST_KEY", "sk-test-console-0123456789abcdef")
        return suite
    return make


def _plain(screen, selector: str) -> str:
    r = screen.query_one(selector, Static).render()
    return getattr(r, "plain", str(r))


def _cause(app, kind: str):
    return next(c for c in app.known_changes if c.kind == kind)


async def _highlight(pilot, kind: str) -> None:
    overview = pilot.app.screen
    line = next(n for n, (i, k, _) in enumerate(overview.lines) if k == "change" and overview.changes[i].kind == kind)
    overview.query_one("#changes").highlighted = line
    await settle(pilot)


async def test_overview_key_lists_the_steps_and_opens_the_prefilled_replay(make_app, demo_suite) -> None:
    with OpenAIServer() as srv:
        demo_suite(srv)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await _highlight(pilot, "new_served_model")
            cause = _cause(app, "new_served_model")
            await pilot.press("s")
            await settle(pilot)
            assert isinstance(app.screen, NextStepsModal)
            assert [s.id for s in app.screen.steps] == ["replay-before", "runbook:provider-model-regression"]
            await pilot.press("1")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ReplaySetupModal)
            cohort = f"model=gpt-4o since={cause.began_at} served_model=gpt-4o-2024-11-20"
            assert modal.filter_text == cohort
            assert modal.query_one("#target", Select).value == "demo-pinned"
            assert modal.query_one("#n", Input).value == "20" and modal.query_one("#repeat", Input).value == "3"
            assert modal.query_one("#baseline", Input).value == f"model=gpt-4o served_model=gpt-4o-2024-08-06 " \
                                                                f"until={cause.began_at}"
            # What it will do, before it does it: the estimate, nothing sent yet.
            assert "20 of 20 requests x3" in _plain(modal, "#estimate") and srv.exchanges == []
            await pilot.click("#start")
            await settle(pilot)
            assert isinstance(app.screen, ReplayScreen)
            run_id = app.screen.run_id
            rows = app.store.cursor().execute("SELECT kind, detail FROM trail WHERE kind = 'suggestion'").fetchall()
            assert len(rows) == 1
            detail = json.loads(rows[0][1])
            assert detail["step"]["id"] == "replay-before" and detail["run_id"] == run_id
            assert detail["cause"]["kind"] == "new_served_model"
            await pilot.press("x")  # cancel the run: this test is about what was offered, not the replay
            await settle(pilot)


async def test_explorer_and_reader_keys_open_the_prefilled_runbook_form(make_app, demo_suite) -> None:
    with OpenAIServer() as srv:
        demo_suite(srv)
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            cause = _cause(app, "new_prompt_version")
            app.open_explorer(cause.filter)
            await settle(pilot)
            await pilot.press("2")  # the prompt rollback
            await settle(pilot)
            form = app.screen
            assert isinstance(form, RunbookParamsModal) and form.rb.name == "prompt-regression"
            assert form.query_one("#param-cohort", Input).value == cause.filter
            assert form.query_one("#param-baseline", Input).value == (
                f"tenant=acme feature=support-bot prompt_version=v12 until={cause.began_at}")
            assert form.query_one("#param-candidate", Input).value == "demo-current"
            assert form.query_one("#param-previous_prompt", Input).value == "support-bot-v12"
            assert form.query_one("#why", Input).value.startswith("next step of: prompt version v12 -> v13")
            will = _plain(form, "#will-run")  # the gate's replay, filled in, before anything runs
            assert f"replay {cause.filter} --target demo-current" in will and "--prompt support-bot-v12" in will
            await pilot.press("escape")
            await settle(pilot)
            burst = _cause(app, "metric_shift")
            app.open_reader(burst.filter)
            await settle(pilot)
            assert isinstance(app.screen, ReaderScreen)
            await pilot.press("1")  # the burst's only step: the fallback runbook
            await settle(pilot)
            form = app.screen
            assert isinstance(form, RunbookParamsModal) and form.rb.name == "provider-outage"
            assert form.query_one("#param-cohort", Input).value == burst.filter + " error=rate_limit"
            await pilot.press("escape")
            await settle(pilot)
            app.open_explorer("tenant=globex")  # about no cause: said, nothing opens
            await settle(pilot)
            await pilot.press("s")
            await settle(pilot)
            assert not isinstance(app.screen, (NextStepsModal, RunbookParamsModal, ReplaySetupModal))
