"""The one gate every untrusted string passes before display or the clipboard.

Outputs, prompts, metadata and ids come from the traced application and its users: they may hold
terminal escape sequences (OSC 52 writes the clipboard, OSC 0 the window title, CSI clears the
screen), C1 controls (`\\x9b` is a one-byte CSI on many terminals), bidi overrides that make text
read differently than it is, and Rich/Textual markup (`[@click=…]`) that would become live
actions. safe_text() turns all of that into visible, inert characters; safe_rich() wraps the
result in a rich Text so no markup parser ever sees it.
"""

from __future__ import annotations

from rich.text import Text

# Bidi embeddings/overrides/isolates and marks that reorder how text reads.
_BIDI = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C}


def _build_table(keep_newlines: bool) -> dict[int, str]:
    table: dict[int, str] = {}
    for c in range(0x20):
        if keep_newlines and c in (0x0A, 0x09):
            continue
        table[c] = chr(0x2400 + c)  # ␛ for ESC, ␇ for BEL, …
    table[0x7F] = "\u2421"  # ␡
    for c in range(0x80, 0xA0):
        table[c] = f"\\x{c:02x}"
    for c in _BIDI:
        table[c] = f"<U+{c:04X}>"
    table[0xFEFF] = "<U+FEFF>"
    table[0x2028] = "\u2424" if not keep_newlines else "\n"
    table[0x2029] = "\u2424" if not keep_newlines else "\n"
    return table


_MULTILINE = _build_table(keep_newlines=True)
_ONELINE = _build_table(keep_newlines=False)


def safe_text(value: object, *, multiline: bool = True, max_len: int | None = None) -> str:
    """Inert, printable text: controls become visible symbols, bidi overrides become <U+XXXX>.

    multiline=False also turns newlines and tabs into symbols (table cells, titles, toasts).
    max_len truncates with an ellipsis (after sanitising, so nothing is cut mid-escape).
    """
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if max_len is not None and len(s) > max_len * 4:
        s = s[: max_len * 4]  # bound the work on a 1 MB single line before translating
    s = s.translate(_MULTILINE if multiline else _ONELINE)
    if max_len is not None and len(s) > max_len:
        s = s[: max(0, max_len - 1)] + "…"
    return s


def safe_rich(value: object, *, multiline: bool = True, max_len: int | None = None, style: str = "") -> Text:
    """A rich Text of safe_text(value): never parsed as markup."""
    return Text(safe_text(value, multiline=multiline, max_len=max_len), style=style, no_wrap=False)
