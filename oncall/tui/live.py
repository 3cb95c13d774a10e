"""The one base for screens that show the incident's data and follow others' writes.

The app folds in others' writes every second (app._store_changed). The screen on top redraws at once
(`data_changed`), in place: no focus or cursor moves. A screen under it is only marked `stale` and
redraws when the responder comes back to it (`on_screen_resume`), so a burst of labels from a script
costs one redraw per screen actually looked at.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen


class LiveScreen(Screen):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stale = False

    def store_changed(self, on_top: bool) -> None:
        """Others wrote: redraw now when on top, else when the responder comes back."""
        if on_top:
            self.stale = False
            self.data_changed()
        else:
            self.stale = True

    def data_changed(self) -> None:
        """Read what this screen shows again (in a worker) and redraw it in place."""
        raise NotImplementedError

    def live_changed(self) -> None:
        """The live marker moved (app.live_marker: spans/s, last arrival): screens that show it redraw
        it; the others have nothing to do."""

    def on_screen_resume(self) -> None:
        if self.stale:
            self.stale = False
            self.data_changed()
