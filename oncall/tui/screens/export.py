"""Writing an export from the console: a modal that asks where (prefilled, beside the incident), refuses
a folder that does not exist, and asks before it replaces a file (Cancel is the default).

The timeline's and the postmortem's ctrl+s use it. An export is a file, not an incident write: a
read-only console may export.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from oncall.fileio import write_atomic  # noqa: F401 - the screens' import of the one writer
from oncall.safe_text import safe_text


def resolve_path(typed: str, base: Path) -> Path:
    """The path typed into the modal: `~` expanded, a relative one beside the incident (`base`)."""
    p = Path(typed.strip()).expanduser()
    return p if p.is_absolute() else base / p


def path_problem(path: Path, *, folder: bool = False) -> str | None:
    """Why `path` cannot be written, or None (an existing file, or for a `folder` export an existing
    folder, is not a problem: it is asked about)."""
    if folder and path.exists() and not path.is_dir():
        return f"{path} is a file: name a folder (created if missing)"
    if not folder and path.is_dir():
        return f"{path} is a folder: name a file in it"
    if not path.parent.is_dir():
        return f"cannot write {path}: folder {path.parent} does not exist"
    return None


class ConfirmOverwriteModal(ModalScreen[bool]):
    """`FILE exists: replace it?` with Cancel focused (enter on open keeps the file)."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="overwrite.cancel")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text.assemble(safe_text(str(self.path), multiline=False), (" already exists.", "bold")))
            yield Static(Text("Replace it? (enter keeps it · tab to Replace)", style="dim"))
            with Horizontal(id="export-buttons"):
                yield Button("Cancel", id="keep", variant="default")
                yield Button("Replace", id="replace", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed, "#replace")
    def replace(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#keep")
    def action_cancel(self) -> None:
        self.dismiss(False)


class ExportPathModal(ModalScreen[Path | None]):
    """Asks where to write `what`; dismisses with the path (checked, replacing confirmed) or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel", id="export.cancel")]

    def __init__(self, what: str, default: Path, *, base: Path, note: str | None = None,
                 folder: bool = False) -> None:
        super().__init__()
        self.what = what
        self.default = default
        self.base = base
        self.note = note
        self.folder = folder  # the export is a folder of files (an eval set), not one file

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(safe_text(f"export {self.what} to", multiline=False), style="bold"))
            if self.note:
                yield Static(Text(safe_text(self.note, multiline=False), style="yellow"), id="export-note")
            yield Input(value=str(self.default), id="export-path")
            yield Static(Text(""), id="export-error")
            yield Static(Text("enter writes · esc cancels · a relative path is beside the incident "
                              f"({safe_text(str(self.base), multiline=False)})", style="dim"))

    def on_mount(self) -> None:
        box = self.query_one("#export-path", Input)
        box.focus()
        box.cursor_position = len(box.value)

    def _error(self, message: str) -> None:
        self.query_one("#export-error", Static).update(Text(safe_text(message, multiline=False), style="red"))

    @on(Input.Submitted, "#export-path")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self._error("type a file name")
            return
        path = resolve_path(event.value, self.base)
        problem = path_problem(path, folder=self.folder)
        if problem:
            self._error(problem)
            return
        if not path.exists() or (self.folder and not any(path.iterdir())):
            self.dismiss(path)
            return

        def decided(replace: bool | None) -> None:
            if replace:
                self.dismiss(path)
            else:
                self._error(f"{path} kept: type another name, or enter again to be asked again")
                self.query_one("#export-path", Input).focus()

        self.app.push_screen(ConfirmOverwriteModal(path), decided)

    def action_cancel(self) -> None:
        self.dismiss(None)
