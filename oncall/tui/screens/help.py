"""`?`: the bindings of the screen underneath, with their ids (for remapping in the config file)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from oncall.tui.keys import config_path


def bindings_table(screen: Screen) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("key", "does", "id"):
        table.add_column(col)
    seen = set()
    rows = []
    for key, active in screen.active_bindings.items():
        b = active.binding
        if b.id in seen and b.id is not None:
            continue
        seen.add(b.id)
        rows.append((b.id is None, key, b))
    # oncall's own bindings (with ids, remappable) first; the focused widget's built-in keys after them.
    for _, key, b in sorted(rows, key=lambda r: r[0]):
        table.add_row(Text(b.key_display or key), Text(b.description or b.action), Text(b.id or "", style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(f"keys of this screen — remap them in {config_path()} under [keys]", style="bold"))
            with VerticalScroll():
                yield Static(bindings_table(self.under))
            yield Static(Text("esc to close · ctrl+p for every command", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
