"""Runbooks and actions in the console (Pilot), on the demo incident with a real flagd flag file as
the target (the shipped prompt-injected-agent runbook turns a tool's flag off):

- the palette lists every runbook by name, and `:runbook NAME k=v` runs one (bad parameters are an
  error and nothing runs);
- the confirmation shows the exact change and defaults to Cancel (enter on open leaves the file's
  bytes and the audit untouched); a production target needs its name typed;
- confirming writes the file and the run screen shows the verification; the actions screen lists it
  and `u` undoes it byte for byte;
- a gate's replay is confirmed the same way (Cancel by default), `x` cancels a run between steps;
- runbook text and command output full of markup is shown literally;
- read-only refuses runs and undo (a dry run is allowed) and says why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Button, Input, RichLog

from oncall.actions.audit import list_actions
from oncall.store import open_db
from oncall.tui.screens.actions import ActionDetailScreen, ActionsScreen, ConfirmActionModal
from oncall.tui.screens.modals import ErrorModal
from oncall.tui.screens.runbook import (
    ConfirmGateModal,
    RunbookParamsModal,
    RunbookRunScreen,
    RunbooksScreen,
)
from tests.tui.conftest import settle

ROOT = Path(__file__).resolve().parents[2]
SIZE = (150, 45)
FLAG = "agent-tools-send-email"
SHIPPED = ["cost-runaway", "model-deprecation", "prompt-injected-agent", "prompt-regression",
           "provider-model-regression", "provider-outage"]


@pytest.fixture
def flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A flagd flag file and an oncall.toml naming it `flags` in the working directory."""
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": {FLAG: {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                 "defaultVariant": "on"}}}, indent=2) + "\n")

    def configure(production: bool) -> Path:
        (tmp_path / "oncall.toml").write_text(
            f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{path}"\n'
            f"production = {'true' if production else 'false'}\n")
        return path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # the developer's own oncall.toml stays out
    monkeypatch.delenv("ONCALL_TOML", raising=False)
    monkeypatch.delenv("ONCALL_RUNBOOKS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the runbook's `oncall` query steps run this tree
    return configure


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll (a run's worker blocks on its modal, so workers.wait_for_complete would never return)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen is {pilot.app.screen!r}")
        await pilot.pause(0.05)


async def palette(pilot, text: str) -> list[str]:
    """`:` then `text` typed; the palette's entries once they settle."""
    app = pilot.app
    await pilot.press("colon")
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    await pilot.press(*text)
    await pilot.pause(0.6)  # the palette batches hits for 0.25 s
    lst = app.screen.query_one(CommandList)
    await wait_for(pilot, lambda: lst.option_count > 0, what="palette hits")
    return [lst.get_option_at_index(i).prompt.plain for i in range(lst.option_count)]


def run_screen(app) -> RunbookRunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunbookRunScreen))


async def until_modal(pilot, kind=ConfirmActionModal):
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind), what=kind.__name__)
    await pilot.pause()
    return pilot.app.screen


async def until_finished(pilot) -> RunbookRunScreen:
    await wait_for(pilot, lambda: any(isinstance(s, RunbookRunScreen) for s in pilot.app.screen_stack),
                   what="the run screen")
    screen = run_screen(pilot.app)
    await wait_for(pilot, lambda: screen.outcome is not None, what="the run to finish")
    await pilot.pause()
    return screen


def modal_text(modal) -> str:
    from textual.widgets import Static

    return "\n".join(getattr(s.render(), "plain", "") for s in modal.query(Static))


def notes(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def test_palette_lists_runbooks_by_name(make_app, flags) -> None:
    flags(production=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        lst = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: lst.option_count > 0)
        await pilot.pause(0.5)
        shown = [lst.get_option_at_index(i).prompt.plain for i in range(lst.option_count)]
        for name in SHIPPED:  # offered before anything is typed
            assert any(s.startswith(f"Runbook: {name} — ") for s in shown), (name, shown)
        assert any(s.startswith("Runbooks") for s in shown) and any(s.startswith("Actions") for s in shown)
        await pilot.press("escape")
        await pilot.pause()
        shown = await palette(pilot, "outage")
        assert shown[0].startswith("Runbook: provider-outage — Provider outage / 429 storm")
        await pilot.press("enter")  # opens the runbook screen on it
        await wait_for(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books)
        await pilot.pause()
        detail = app.screen.detail()
        assert "Provider outage / 429 storm" in detail and "parameters" in detail and "steps" in detail


async def test_run_from_the_palette_cancel_by_default_confirm_verify_undo(make_app, flags) -> None:
    path = flags(production=True)
    original = path.read_bytes()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = await palette(pilot, "runbook prompt-injected-agent variant=off")
        assert shown[0] == "Run runbook prompt-injected-agent variant=off\neach change is shown and confirmed " \
                           "before it is made"
        await pilot.press("enter")
        modal = await until_modal(pilot)
        text = modal_text(modal)
        # The exact change: target, summary and the diff lines.
        assert "plan flags (flagd-file set)  PRODUCTION" in text
        assert f"flag {FLAG} (defaultVariant): on → off" in text
        assert '-      "defaultVariant": "on"' in text and '+      "defaultVariant": "off"' in text
        assert modal.query_one("#typed", Input).has_focus and modal.query_one("#apply", Button).disabled
        await pilot.press("enter")  # enter on open: Cancel
        screen = await until_finished(pilot)
        assert path.read_bytes() == original
        assert list_actions(app.store) == []  # nothing was written, not even a `started` row
        assert "you cancelled the change: nothing was written" in screen.plain()
        assert screen.outcome == "stopped at an action"
        assert "$ oncall search kind=tool --limit 20" in screen.plain()  # the query step's output is there

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, RunbookRunScreen))
        await palette(pilot, "runbook prompt-injected-agent")
        await pilot.press("enter")
        modal = await until_modal(pilot)
        await pilot.press(*"flag")  # not yet the name: Apply stays disabled
        assert modal.query_one("#apply", Button).disabled
        await pilot.press("s")
        assert not modal.query_one("#apply", Button).disabled
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed"
        assert json.loads(path.read_text())["flags"][FLAG]["defaultVariant"] == "off"
        out = screen.plain()
        assert "✓ verified" in out and f"flag {FLAG} now resolves off = false" in out
        (act,) = list_actions(app.store)
        assert act["status"] == "verified" and act["runbook"] == "prompt-injected-agent"

        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.items)
        actions = app.screen
        assert actions.items[0]["action_id"] == act["action_id"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDetailScreen) and "plan" in app.screen.plain())
        detail = app.screen
        shown = detail.plain()
        assert "runbook: prompt-injected-agent" in shown and "verification" in shown and "before: " in shown
        await pilot.press("u")
        modal = await until_modal(pilot)
        assert f"undo action {act['action_id']}: flag {FLAG} back to on" in modal_text(modal)
        await pilot.press("enter")  # Cancel again: nothing changes
        await pilot.pause(0.3)
        assert json.loads(path.read_text())["flags"][FLAG]["defaultVariant"] == "off"
        await pilot.press("u")
        await until_modal(pilot)
        await pilot.press(*"flags", "enter")
        await wait_for(pilot, lambda: path.read_bytes() == original, what="the undo")
        await wait_for(pilot, lambda: "undone by action" in detail.plain(), what="the detail to show the undo")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(actions.items) == 2, what="the list to show the undo")
        line = actions.query_one("#actions-list").get_option_at_index(1).prompt.plain
        assert f"by {actions.items[0]['action_id']}" in line
    assert path.read_bytes() == original


async def test_u_on_the_finished_run_undoes_its_action(make_app, flags) -> None:
    """Once the runbook stopped, `u` on its screen undoes the action it wrote (confirmed as in the
    audit, Cancel first); the log says so and `u` leaves the footer: nothing of this run stands."""
    path = flags(production=False)
    original = path.read_bytes()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await palette(pilot, "runbook prompt-injected-agent")
        await pilot.press("enter")
        await until_modal(pilot)
        await pilot.press("tab", "enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed" and path.read_bytes() != original
        (act,) = list_actions(app.store)
        assert "u undoes its action" in str(screen.query_one("#run-status").render())
        assert app.screen is screen and screen.check_action("undo", ()) is True
        await pilot.press("u")
        modal = await until_modal(pilot)
        assert f"undo action {act['action_id']}?" in modal_text(modal)
        await pilot.press("enter")  # Cancel has the focus: nothing changes
        await pilot.pause(0.3)
        assert path.read_bytes() != original
        await pilot.press("u")
        await until_modal(pilot)
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: path.read_bytes() == original, what="the undo")
        await wait_for(pilot, lambda: f"undo of action {act['action_id']}: action" in screen.plain(),
                       what="the run's log to say the undo")
        assert screen.written == [] and screen.check_action("undo", ()) is False
        assert "u undoes" not in str(screen.query_one("#run-status").render())
    undo = max(list_actions(app.store), key=lambda a: a["action_id"])
    assert undo["undo_of"] == act["action_id"] and undo["status"] == "verified"


async def test_runbook_screen_form_dry_run_and_apply_button(make_app, flags) -> None:
    path = flags(production=False)
    original = path.read_bytes()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books)
        rb_screen = app.screen
        names = [b.name for b in rb_screen.books]
        assert set(SHIPPED) <= set(names)
        for _ in range(names.index("prompt-injected-agent")):
            await pilot.press("j")
        detail = rb_screen.detail()
        assert "flag            string     default 'agent-tools-send-email'" in detail
        assert "1. What is the agent calling, and since when?  [query]" in detail
        assert "target flags: op=set, flag=${flag}, variant=${variant}" in detail

        await pilot.press("d")  # dry run: reads and plans, nothing written, no confirmation
        form = await until_modal(pilot, RunbookParamsModal)
        assert form.query_one("#param-flag", Input).value == FLAG  # prefilled with the defaults
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed" and "(dry run: nothing is written" in screen.plain()
        assert '+      "defaultVariant": "off"' in screen.plain()
        assert path.read_bytes() == original and list_actions(app.store) == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is rb_screen)

        await pilot.press("enter")
        form = await until_modal(pilot, RunbookParamsModal)
        form.query_one("#param-variant", Input).value = "nosuch"
        await pilot.press("enter")  # a variant the flag does not have: the plan refuses, nothing written
        screen = await until_finished(pilot)
        assert "stopped: cannot plan the action on flags" in screen.plain() and path.read_bytes() == original
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is rb_screen)

        await pilot.press("enter")
        form = await until_modal(pilot, RunbookParamsModal)
        assert form.query_one("#param-variant", Input).value == "nosuch"  # the edit is kept after the failure
        form.query_one("#param-variant", Input).value = "off"
        await pilot.press("enter")
        modal = await until_modal(pilot)
        assert modal.query_one("#cancel", Button).has_focus  # the default is Cancel
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert path.read_bytes() == original and list_actions(app.store) == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is rb_screen)

        await pilot.press("enter")
        await until_modal(pilot, RunbookParamsModal)
        app.screen.query_one("#why", Input).value = "agent emailing customers"
        await pilot.press("enter")
        await until_modal(pilot)
        await pilot.click("#apply")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed"
        assert json.loads(path.read_text())["flags"][FLAG]["defaultVariant"] == "off"
        (act,) = list_actions(app.store)
        assert act["status"] == "verified"


async def test_bad_parameters_are_an_error_and_nothing_runs(make_app, flags) -> None:
    path = flags(production=False)
    original = path.read_bytes()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for typed, said in [
            ("runbook prompt-injected-agent nosuch=1", "no parameter nosuch; parameters: cohort, flag, variant"),
            ("runbook prompt-regression sample=many", "sample: 'many' is not a whole number"),
            ("runbook prompt-injected-agent cohort=nosuchkey=1", "parameter cohort"),
            ("runbook prompt-injected-agent variant", "expected NAME=VALUE or --dry-run, not 'variant'"),
            ("runbook no-such-book", "no runbook named 'no-such-book'"),
        ]:
            shown = await palette(pilot, typed)
            assert shown[0].startswith("runbook: ") and said in shown[0], (typed, shown)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what=f"the error for {typed}")
            assert said in modal_text(app.screen)
            await pilot.press("escape")
            await pilot.pause()
        assert not any(isinstance(s, RunbookRunScreen) for s in app.screen_stack)

        # The form says it too, and stays open.
        app.open_runbooks("prompt-regression")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books)
        await pilot.press("enter")
        form = await until_modal(pilot, RunbookParamsModal)
        form.query_one("#param-sample", Input).value = "many"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "not a whole number" in modal_text(form))
        assert app.screen is form
    assert path.read_bytes() == original


async def test_palette_dry_run_and_cancel_with_x(make_app, flags) -> None:
    path = flags(production=True)
    original = path.read_bytes()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = await palette(pilot, "runbook prompt-injected-agent --dry-run")
        assert shown[0].startswith("Run runbook prompt-injected-agent (dry run)")
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed" and "plan flags" in screen.plain()
        assert path.read_bytes() == original and list_actions(app.store) == []
        await pilot.press("escape")
        await pilot.pause()

        await palette(pilot, "runbook prompt-injected-agent")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbookRunScreen))
        await pilot.press("x")  # during the first step's queries: it finishes, nothing after it runs
        screen = await until_finished(pilot)
        assert screen.outcome == "cancelled"
        assert "cancelled; nothing after this step ran" in screen.plain()
        assert "$ oncall search kind=tool" in screen.plain()  # what ran stays
        assert "plan flags" not in screen.plain()
    assert path.read_bytes() == original


GATED = """\
---
title: Gated flip
when: test only
targets: [flags]
---
## 1. Evidence first
```gate
replay tenant=acme --target nowhere -n 2
expect errors <= 0
```
## 2. Flip
```action
target: flags
op: set
flag: agent-tools-send-email
variant: "off"
```
"""

HOSTILE = r"""---
title: "Hostile [bold red]title[/] [@click=app.quit]x[/] \e]0;pwned\a"
when: "[/] is not markup here"
params:
  cohort: {type: filter, default: 'tenant="[/]x[@click=app.quit]y[/]"'}
---
## 1. Look [b]here[/b] [@click=app.bell]
```oncall
search ${cohort} --limit 1
```
"""


async def test_gate_replay_is_confirmed_and_defaults_to_cancel(make_app, flags, tmp_path: Path) -> None:
    path = flags(production=False)
    original = path.read_bytes()
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "gated.md").write_text(GATED)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await palette(pilot, "runbook gated")
        await pilot.press("enter")
        modal = await until_modal(pilot, ConfirmGateModal)
        assert modal.query_one("#cancel", Button).has_focus
        assert "replay tenant=acme --target nowhere -n 2" in modal_text(modal)
        assert "expect errors <= 0" in modal_text(modal)
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "stopped at a gate"
        assert "the evidence gate did not pass: no later action runs" in screen.plain()
        assert not any(isinstance(s, ConfirmActionModal) for s in app.screen_stack)
    assert path.read_bytes() == original


async def test_markup_in_runbook_text_and_output_is_shown_literally(make_app, flags, tmp_path: Path) -> None:
    flags(production=False)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "hostile.md").write_text(HOSTILE)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = await palette(pilot, "runbook hostile")
        assert shown[0] == "Run runbook hostile\neach change is shown and confirmed before it is made"
        await pilot.press("escape")
        await pilot.pause()
        shown = await palette(pilot, "hostile")
        assert any("Hostile [bold red]title[/] [@click=app.quit]x[/] ␛]0;pwned␇" in s for s in shown), shown
        await pilot.press("escape")
        await pilot.pause()
        await palette(pilot, "runbook hostile")
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed"
        out = screen.plain()
        assert "== 1. Look [b]here[/b] [@click=app.bell]" in out
        assert "(filter: tenant=[/]x[@click=app.quit]y[/])" in out  # the command's own output, verbatim
        assert "␛]0;pwned␇" in out and "\x1b" not in out
        painted = "\n".join(strip.text for strip in screen.query_one(RichLog).lines)
        assert "[@click=app.quit]y[/]" in painted and "[b]here[/b]" in painted
        await pilot.press("escape")
        app.open_runbooks("hostile")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books)
        await pilot.pause()
        assert "Hostile [bold red]title[/] [@click=app.quit]x[/]" in app.screen.detail()
        assert app.is_running


async def test_read_only_refuses_runs_and_undo_but_dry_runs(make_app, flags, demo_copy: Path) -> None:
    from oncall.actions import execute, get_adapter, plan

    path = flags(production=False)
    store = open_db(demo_copy)
    try:
        p = plan(get_adapter("flags"), {"op": "set", "flag": FLAG, "variant": "off"})
        rec = execute(p, db=store, confirm=True, why="set up for the read-only test")
    finally:
        store.close()
    assert rec.status == "verified"
    flipped = path.read_bytes()
    app = make_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_runbooks("prompt-injected-agent")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbooksScreen) and app.screen.books)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunbooksScreen)  # no form: refused
        assert "read-only: running a runbook is disabled because the console was opened with --read-only" \
            in notes(app)
        assert "a dry run (d) is allowed" in notes(app)

        shown = await palette(pilot, "runbook prompt-injected-agent")
        assert "read-only console: refused (add --dry-run to read and plan)" in shown[0]
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert not any(isinstance(s, RunbookRunScreen) for s in app.screen_stack)

        await pilot.press("d")
        await until_modal(pilot, RunbookParamsModal)
        await pilot.press("enter")
        screen = await until_finished(pilot)
        assert screen.outcome == "completed" and "plan flags" in screen.plain()
        await pilot.press("escape")
        await pilot.pause()

        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.items)
        await pilot.press("u")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ActionsScreen)
        assert f"read-only: undo of action {rec.action_id} is disabled" in notes(app)
    assert path.read_bytes() == flipped


async def test_undo_refused_when_the_target_moved_since(make_app, flags, demo_copy: Path) -> None:
    from oncall.actions import execute, get_adapter, plan

    path = flags(production=False)
    store = open_db(demo_copy)
    try:
        rec = execute(plan(get_adapter("flags"), {"op": "set", "flag": FLAG, "variant": "off"}), db=store,
                      confirm=True)
    finally:
        store.close()
    moved = path.read_text().replace('"defaultVariant": "off"', '"defaultVariant": "on"')  # someone put it back
    path.write_text(moved)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionsScreen) and app.screen.items)
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the refusal")
        said = modal_text(app.screen)
        assert f"cannot undo action {rec.action_id}" in said
        assert f"flags changed since action {rec.action_id}" in said and "plan a new action instead" in said
        assert not any(isinstance(s, ConfirmActionModal) for s in app.screen_stack)
    assert path.read_text() == moved
