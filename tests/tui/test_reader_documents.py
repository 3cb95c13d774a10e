"""The reader on the demo's help-center calls: the documents each call was given sit beside its
output (score, source, id, excerpt), and an answer given from an empty retrieval says so."""

from __future__ import annotations

from oncall.tui.screens.reader import ReaderScreen
from oncall.tui.textview import OutputView, RichLinesView
from tests.tui.conftest import settle

SIZE = (140, 40)


async def test_reader_shows_the_documents_beside_the_output(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_reader("feature=help-center index=help-articles-v41 retrieved>0", None, 0)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ReaderScreen) and screen.current is not None
        d = screen.current
        side = screen.query_one("#side", RichLinesView).plain()
        assert f"documents given  {d['retrieved']} document" in side and "from help-articles-v41" in side
        for i, doc in enumerate(d["retrieved_docs"], 1):
            assert f"{i}.  {doc['score']:.2f}  {doc['source']}  [{doc['id']}]" in side
            assert doc["content"][:60] in side
        assert side.index("documents given") < side.index("[system]")  # before the conversation
        await pilot.press("j")
        await settle(pilot)
        assert screen.current["span_pk"] != d["span_pk"] and "documents given" in screen.query_one(
            "#side", RichLinesView).plain()

        first = app.screen
        app.open_reader("feature=help-center retrieved<1", None, 0)
        for _ in range(100):  # the new reader is on top and has read its first call (a loaded machine is slow)
            await settle(pilot)
            if app.screen is not first and getattr(app.screen, "current", None) is not None:
                break
        assert isinstance(app.screen, ReaderScreen) and app.screen is not first
        assert app.screen.filter_text == "feature=help-center retrieved<1"
        side = app.screen.query_one("#side", RichLinesView).plain()
        # The reader samples the cohort at random: most empty retrievals are on v42, a few (before the
        # switch) on v41, so the index is the one of the call on screen.
        index = app.screen.current["retrieval_index"]
        assert index in ("help-articles-v41", "help-articles-v42")
        assert f"documents given  EMPTY: no document from {index}" in side
        if app.screen.current["status"] != "error":  # one of them failed (no answer at all)
            assert "I'm sorry, I don't know" in app.screen.query_one("#output", OutputView).text
