"""The palette's own entries (screens, every key of the current screen, replay runs, recent filters),
rendered as plain text.

Textual's SystemCommandsProvider builds each hit with `matcher.highlight(title)` and a help string,
both of which parse markup: a replay filter or a filter the responder typed, holding `[/]` or
`[@click=…]`, would become markup in the palette. This provider builds `Content` objects from the
text itself, with the fuzzy match highlighted by offsets, so what is shown is exactly what it says.
"""

from __future__ import annotations

from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content


class OncallCommands(Provider):
    """Entries from `app.palette_entries(screen)`: (title, help, callback), already safe_text'd."""

    def _entries(self) -> list[tuple[str, str, Any]]:
        app: Any = self.app
        try:
            return list(app.palette_entries(self.screen))
        except Exception:  # noqa: BLE001 - the palette opens whatever the tables hold
            return []

    async def discover(self) -> Hits:
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(Content(title), callback, text=title, help=Content(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            score, offsets = matcher.fuzzy_search.match(query, title)
            if score > 0:
                content = Content(title)
                for o in offsets:
                    content = content.stylize(matcher.match_style, o, o + 1)
                yield Hit(score, content, callback, text=title, help=Content(help_text))
