"""Small modal screens: a note input and a scrollable error view (errors never crash the console)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from oncall.safe_text import safe_text


class NoteModal(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel", id="note.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("note on this request (enter saves, esc cancels)", style="bold"))
            yield Input(placeholder="why is it good or bad?", id="note")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "close", id="error.close")]

    def __init__(self, title: str, detail: str) -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(safe_text(self.title_text, multiline=False), style="bold red"))
            with VerticalScroll():
                yield Static(Text(safe_text(self.detail, max_len=20_000)))
            yield Static(Text("esc to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
