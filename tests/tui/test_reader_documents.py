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

        app.open_reader("feature=help-center retrieved<1", None, 0)
        await settle(pilot)
        side = app.screen.query_one("#side", RichLinesView).plain()
        assert "documents given  EMPTY: no document from help-articles-v42" in side
        assert "I'm sorry, I don't know" in app.screen.query_one("#output", OutputView).text
