"""`?`: the bindings of the screen underneath, with their ids (for remapping in the config file)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def key_name(key: str) -> str:
    """`question_mark` -> `?`, `ctrl+q` stays `ctrl+q`: what the responder presses, not Textual's name."""
    mods, _, base = key.rpartition("+")
    return (mods + "+" if mods else "") + format_key(base)


def bindings_table(screen: Screen) -> Table:
    """One row per binding id with every key bound to it (`j, down`); the focused widget's built-in keys after."""
    table = Table(box=None, header_style="bold")
    for col in ("key", "does", "id"):
        table.add_column(col)
    keys: dict[object, list[str]] = {}
    first: dict[object, object] = {}
    for key, active in screen.active_bindings.items():
        b = active.binding
        ident: object = b.id if b.id is not None else (None, key)
        keys.setdefault(ident, []).append(key_name(key))
        first.setdefault(ident, b)
    # oncall's own bindings (with ids, remappable) first; the focused widget's built-in keys after them.
    for ident in sorted(keys, key=lambda i: isinstance(i, tuple)):
        b = first[ident]
        own = not isinstance(ident, tuple)
        table.add_row(Text(", ".join(keys[ident])), Text(b.description or b.action, style="" if own else "dim"),
                      Text(b.id or "", style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "close", id="help.close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("keys of this screen — remap them under [keys] in oncall.toml "
                              "(`oncall config` lists its files)", style="bold"))
            with VerticalScroll():
                yield Static(bindings_table(self.under))
            yield Static(Text("esc to close · ctrl+p for every command", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
