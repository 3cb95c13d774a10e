"""The export modal shared by the timeline and postmortem screens: asks for a path, asks again
before overwriting a file that exists, and writes nothing itself (the screen writes, in a worker)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from oncall.safe_text import safe_text


def resolve(path_text: str) -> Path:
    """The path typed, relative to the working directory, with ~ expanded."""
    p = Path(os.path.expanduser(path_text.strip()))
    return p if p.is_absolute() else Path(os.getcwd()) / p


class ExportModal(ModalScreen[Path | None]):
    """Dismisses with the absolute path to write, or None. An existing file needs a second enter."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="export.cancel")]

    def __init__(self, what: str, default: str) -> None:
        super().__init__()
        self.what = what
        self.default = default
        self._confirmed: Path | None = None  # the existing file the responder agreed to overwrite

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(safe_text(f"export {self.what} to (enter writes, esc cancels)", multiline=False),
                              style="bold"))
            yield Input(value=self.default, id="export-path")
            yield Static(Text(safe_text(f"relative paths are in {os.getcwd()}", multiline=False), style="dim"),
                         id="export-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def hint(self) -> str:
        r = self.query_one("#export-hint", Static).render()
        return getattr(r, "plain", str(r))

    @on(Input.Changed, "#export-path")
    def changed(self) -> None:
        self._confirmed = None

    @on(Input.Submitted, "#export-path")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            return
        path = resolve(event.value)
        hint = self.query_one("#export-hint", Static)
        if path.is_dir():
            hint.update(Text(safe_text(f"{path} is a directory: type a file name", multiline=False), style="red"))
            return
        if not path.parent.is_dir():
            hint.update(Text(safe_text(f"directory {path.parent} does not exist", multiline=False), style="red"))
            return
        if path.exists() and self._confirmed != path:
            self._confirmed = path
            hint.update(Text(safe_text(f"{path} exists: enter again to overwrite it, or change the name",
                                       multiline=False), style="bold yellow"))
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
