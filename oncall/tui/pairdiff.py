"""The side-by-side diff of one replay pair (original | replay), through textual-diff-view.

textual-diff-view is an optional extra (`pip install 'oncall[diff]'`): it is AGPL-3.0 and oncall is
Apache-2.0, so it is not pulled in by a plain install. Without it, or for outputs too long for its
character-level highlighting (a SequenceMatcher per changed line: quadratic in the line's length),
the compare screen shows the two outputs in their own panes and the word diff under the checks.

The texts are passed through safe_text by the caller; the diff view renders them as Content (never
markup) with Pygments highlighting, which is asked for by file name (".txt", or ".json" when both
sides are JSON) so no content guessing runs on a key press.
"""

from __future__ import annotations

import os
import types
from typing import Any

from oncall.query.quality import is_json

try:  # the optional extra
    import textual_diff_view._diff_view as _dv
    from textual import highlight as _highlight
    from textual.content import Content
    from textual_diff_view import DiffView
except ImportError:  # a plain install (the fallback test sets DiffView to None instead)
    DiffView = None  # type: ignore[assignment,misc]
else:
    # DiffView asks Pygments to guess each side's language from its file name on every mount: 15 ms
    # a side, a third of a j/k press. Ours are ".txt" or ".json" by construction, so the diff view's
    # module (only its own reference to textual.highlight) gets the answer directly.
    _LANGUAGES = {".json": "json", ".txt": "text"}

    def _guess_language(code: str, path: str | None) -> str:
        return _LANGUAGES.get(os.path.splitext(path or "")[1]) or _highlight.guess_language(code, path)

    _dv.highlight = types.SimpleNamespace(highlight=_highlight.highlight, guess_language=_guess_language)

# Longest output (characters, either side) shown in the diff view; beyond it the word diff is used.
MAX_CHARS = 10_000
INSTALL_HINT = "side-by-side diff view: pip install 'oncall[diff]'"


def available() -> bool:
    return DiffView is not None


def fits(original: str, replay: str) -> bool:
    """Whether this pair goes in the diff view: the library is there, the outputs differ, both fit."""
    return available() and original != replay and max(len(original), len(replay)) <= MAX_CHARS


if DiffView is not None:
    class PairDiff(DiffView):
        """DiffView with oncall's title: what is compared, and the line counts, as plain text."""

        def __init__(self, original: str, replay: str, label: str, **kwargs: Any) -> None:
            ext = ".json" if is_json(original) and is_json(replay) else ".txt"
            super().__init__(f"original{ext}", f"replay{ext}", original, replay, split=True, wrap=True,
                             annotations=True, **kwargs)
            self.label = label

        def get_title(self) -> Content:
            additions, removals = self.counts
            return Content(f"original | {self.label}   +{additions} -{removals} lines")


def pair_diff(original: str, replay: str, label: str, **kwargs: Any) -> Any:
    """A diff view widget for one pair; call only when fits() is true."""
    return PairDiff(original, replay, label, **kwargs)
