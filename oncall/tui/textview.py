"""A read-only view of one long text that renders only the visible lines (Line API).

A read-only TextArea took ~0.4 s to show a 200 KB output and Markdown ~4.7 s (design §6). This view
splits the text into display lines once per width (wrapping by slicing, O(n)) and paints only the rows
on screen, so a 200 KB output is ready in milliseconds and scrolling stays instant. The text must
already have passed safe_text (it is painted as-is, never parsed as markup).
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len, split_graphemes
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


def wrap_lines(text: str, width: int) -> list[str]:
    """Display lines no wider than `width` terminal cells: each source line cut at a space when one
    is near. ASCII lines (nearly all text) are cut by slicing, O(n); others by
    their characters' cell widths, so a line of CJK (two cells each) is not twice too wide."""
    width = max(8, width)
    out: list[str] = []
    for line in text.split("\n"):
        if cell_len(line) <= width:
            out.append(line)
        elif line.isascii():  # one cell per character
            while len(line) > width:
                cut = line.rfind(" ", width // 2, width)
                cut = width if cut <= 0 else cut + 1
                out.append(line[:cut])
                line = line[cut:]
            out.append(line)
        else:
            out.extend(_wrap_cells(line, width))
    return out


def _wrap_cells(line: str, width: int) -> list[str]:
    """wrap_lines for a line holding wide characters: never splits a character, loses nothing."""
    spans, _ = split_graphemes(line)
    out: list[str] = []
    start = size = 0  # where the display line being built starts (characters) and its width so far (cells)
    space_at, space_size = -1, 0  # just after its last space, and its width up to there
    for a, b, cells in spans:
        if size + cells > width and size > 0:
            if space_at > start and space_size >= width // 2:
                out.append(line[start:space_at])
                start, size = space_at, size - space_size
            else:
                out.append(line[start:a])
                start, size = a, 0
            space_at = -1
        size += cells
        if line[a:b] == " ":
            space_at, space_size = b, size
    out.append(line[start:])
    return out


class TextView(ScrollView):
    """The one renderer of long text in the console: display lines laid out once per width, painted
    only where visible, each painted line kept in an LRU cache keyed by line, width and horizontal
    scroll (toolong's cache of strips), so scrolling back over a 5,000-line draft or a 200 KB output
    paints nothing twice. A subclass says what its display lines are (`display_lines`); new content
    or a new width lays them out again and empties the cache."""

    CACHED_STRIPS = 2048

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's own keyword arguments
        super().__init__(**kwargs)
        self._lines: list[Any] = [""]  # str (painted with the line's style) or a rich Text
        self._styles: list[Style] | None = None
        self._width = 0
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(self.CACHED_STRIPS)

    def display_lines(self, width: int) -> tuple[list[Any], list[Style] | None, int]:
        """(display lines at this width, a style per line or None, the widest line in cells)."""
        raise NotImplementedError

    def _layout(self, force: bool = False) -> None:
        width = max(1, self.scrollable_content_region.width)
        if not force and width == self._width:
            return
        self._width = width
        lines, styles, longest = self.display_lines(width)
        self._lines, self._styles = lines or [""], styles
        self._strips.clear()
        self.virtual_size = Size(longest, len(self._lines))
        self.refresh()

    def on_resize(self) -> None:
        self._layout()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        if index >= len(self._lines):
            return Strip.blank(width)
        x = self.scroll_offset.x
        key = (index, width, x)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._paint(index, width, x)
            self._strips[key] = strip
        return strip

    def _paint(self, index: int, width: int, x: int) -> Strip:
        line = self._lines[index]
        if isinstance(line, str):  # cropped in cells (Strip.crop), not characters
            strip = Strip([Segment(line, self._styles[index] if self._styles else None)])
        else:
            strip = Strip(list(line.render(self.app.console)))
        return (strip.crop(x, x + width) if x else strip).adjust_cell_length(width)

    def cached_strips(self) -> int:
        """How many painted lines the cache holds (tests)."""
        return len(self._strips)


class OutputView(TextView, can_focus=True):
    BINDINGS = [
        Binding("pagedown,space", "page(1)", "page down", show=False, id="output.page_down"),
        Binding("pageup", "page(-1)", "page up", show=False, id="output.page_up"),
    ]

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's own keyword arguments
        super().__init__(**kwargs)
        self.text = ""
        self.wrap = True

    def load_text(self, text: str) -> None:
        self.text = text
        self._layout(force=True)
        self.scroll_to(0, 0, animate=False)

    def set_wrap(self, wrap: bool) -> None:
        self.wrap = wrap
        self._layout(force=True)

    def display_lines(self, width: int) -> tuple[list[Any], list[Style] | None, int]:
        lines = wrap_lines(self.text, width) if self.wrap else self.text.split("\n")
        return lines, None, width if self.wrap else max((cell_len(x) for x in lines), default=0)

    def action_page(self, direction: int) -> None:
        self.scroll_to(y=self.scroll_offset.y + direction * max(1, self.size.height - 1), animate=False)


class RichLinesView(TextView, can_focus=False):
    """Styled text (a rich Text built from safe_text pieces) in a fixed-size pane, painted line by line.

    Unlike a Static of changing height, replacing the content never re-lays out the screen, which is
    what made the reader's next/previous slow.
    """

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's own keyword arguments
        super().__init__(**kwargs)
        self._text = None

    def update(self, text, *, keep_scroll: bool = False) -> None:  # noqa: ANN001 - a rich Text
        """Show `text` from its top, or (keep_scroll: the same request redrawn) where the reader was."""
        self._text = text
        self._layout(force=True)
        if not keep_scroll:
            self.scroll_to(0, 0, animate=False)

    def plain(self) -> str:
        return self._text.plain if self._text is not None else ""

    def display_lines(self, width: int) -> tuple[list[Any], list[Style] | None, int]:
        if self._text is None:
            return [""], None, width
        return list(self._text.wrap(self.app.console, width)), None, width
