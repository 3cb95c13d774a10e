"""A cause's next steps in the console: `s` lists them, `1`-`3` takes one, from the overview (the
highlighted cause), the explorer and the reader (the cause their filter is about).

The steps are computed by the core (oncall/query/next_steps.py) exactly as `oncall changes` prints
them; this module only shows them and opens the prefilled replay dialog or runbook form. Nothing
runs from here: the dialog shows its estimate and the form what its gates and actions will do, and
the responder starts it. When they do, the trail records which suggestion was taken.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from oncall.safe_text import safe_text

KEY = "s"
TAKE_KEYS = 3  # 1, 2, 3 take a step straight away


def step_bindings(screen: str) -> list[Binding]:
    """The screen's next-steps keys (ids `SCREEN.next_steps`, `SCREEN.step_N`)."""
    return [Binding(KEY, "next_steps", "next steps", id=f"{screen}.next_steps"),
            *[Binding(str(i), f"take_step({i - 1})", f"take next step {i}", show=False, id=f"{screen}.step_{i}")
              for i in range(1, TAKE_KEYS + 1)]]


def step_text(i: int, step: Any) -> Text:
    t = Text(f"{i}  ", style="bold")
    t.append(safe_text(step.title, multiline=False, max_len=160), style="bold")
    t.append("\n   $ " + safe_text(step.command, multiline=False, max_len=400), style="dim")
    for note in step.notes:
        t.append("\n   (" + safe_text(note, multiline=False, max_len=200) + ")", style="yellow")
    return t


class NextStepsModal(ModalScreen[int | None]):
    """The cause's steps with their commands; enter or 1-9 takes one, esc closes."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="next_steps.cancel")]

    def __init__(self, cause_title: str, steps: list[Any]) -> None:
        super().__init__()
        self.cause_title = cause_title
        self.steps = steps

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("next steps for ", style="bold")
                         + Text(safe_text(self.cause_title, multiline=False, max_len=160)))
            options = OptionList(id="next-steps")
            for i, s in enumerate(self.steps, start=1):
                options.add_option(Option(step_text(i, s), id=f"step-{i}"))
            yield options
            yield Static(Text("enter or 1-9 opens it prefilled (nothing runs before you start it) · esc closes",
                              style="dim"))

    def on_mount(self) -> None:
        options = self.query_one("#next-steps", OptionList)
        if self.steps:
            options.highlighted = 0
        options.focus()

    def on_key(self, event: Any) -> None:
        if event.character and event.character.isdigit() and 1 <= int(event.character) <= len(self.steps):
            event.stop()
            self.dismiss(int(event.character) - 1)

    @on(OptionList.OptionSelected, "#next-steps")
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)

    def action_cancel(self) -> None:
        self.dismiss(None)
